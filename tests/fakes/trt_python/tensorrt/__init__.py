"""A FAKE OF NVIDIA's tensorrt PYTHON PACKAGE FOR TESTS ON MACHINES WITHOUT A GPU: NOT TensorRT.

Only the surface ``TrtModel`` (tasks/agent/agent.py) uses, with the TensorRT >= 8.5 tensor API's
names. Its engines are the files the FAKE trtexec (tests/fakes/trtexec) writes: ``EDGEFORGE FAKE
TRT ENGINE``, the ONNX's sha256, a JSON (version, precision, --min/opt/maxShapes), then the ONNX;
executing one runs that ONNX with ONNX Runtime on the CPU, reading and writing the FAKE pycuda's
"device" memory. The version is ``$EDGEFORGE_FAKE_TRT_VERSION`` (default 10.3.0). Optimisation
profile: the shapes the build was given, else every dynamic dimension fixed to 1, as trtexec does
when a build names no shapes ("Dynamic dimensions required for input: x, but no shapes were
provided. Automatically overriding shape to: 1x1x28x28",
tests/fixtures/trtexec/trt10.16_h100_fp32_build_bench_ok.log).

Behaviour replayed, and where it comes from (NVIDIA/TensorRT = NVIDIA's repository at that tag):

- Loggers: ``ILogger`` subclasses must call ``ILogger.__init__`` (pybind11 raises otherwise; the
  ILogger docstring, NVIDIA/TensorRT v10.3.0 python/docstrings/infer/pyCoreDoc.h:29-37) and get
  ``log(severity, msg)``; ``Logger`` prints ``[TRT] [E] <msg>`` like the real default logger.
  Severities are ``ILogger.INTERNAL_ERROR`` (0) .. ``VERBOSE`` (4) (pyCore.cpp 8.5.1:517-524).
- Another TensorRT version's engine is refused with the real text: before 10, ``6: The engine plan
  file is not compatible with this version of TensorRT, expecting library version <this> got
  <engine's>, please rebuild.`` then ``4: [runtime.cpp::deserializeCudaEngine::66] Error Code 4:
  Internal Error (Engine deserialization failed.)`` (TensorRT 8.5, RootKit-Org/AI-Aimbot issue
  #109); from 10, ``IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (The engine plan
  file is not compatible with this version of TensorRT, expecting library version <this> got
  <engine's>.)`` (TensorRT 10.12, westNeighbor/ComfyUI-ultimate-openpose-estimator issue #9).
- Plugins: an engine holds the plugins the ONNX parser of its build version put in it, and
  deserialising it needs each plugin's creator in the registry. Which ops become plugins
  (onnx/onnx-tensorrt = the parser): ``InstanceNormalization`` -> ``InstanceNormalization_TRT``
  v1 before TensorRT 10 (release/8.5-GA builtin_op_importers.cpp:2207; release/8.6-GA
  ModelImporter.hpp:33 leaves kNATIVE_INSTANCENORM off, 10.0-GA ModelImporter.hpp:39 turns it
  on: native from 10), ``RoiAlign`` -> ``ROIAlign_TRT`` v1 from 8.5 (release/8.5-GA
  builtin_op_importers.cpp:4214), and an op the parser has no importer for -> a plugin named
  after its op type, version ``plugin_version`` (default "1"), namespace ``plugin_namespace``
  (FallbackPluginImporter, release/8.6-GA builtin_op_importers.cpp:5395-5400; ModelImporter.cpp:166).
  The FAKE treats every op outside the ONNX domain as such a plugin (the real parser dispatches by
  op type alone). Creators come from ``init_libnvinfer_plugins`` (TensorRT's own plugins), from a
  library loaded into the process (a plugin library registers its creators when it is loaded,
  REGISTER_TENSORRT_PLUGIN; trtexec dlopens ``--plugins``/``--staticPlugins``, trtexec.cpp
  v10.3.0:292-304) or from ``IPluginRegistry.load_library`` (8.6+, trtexec's ``--dynamicPlugins``,
  sampleEngines.cpp v10.3.0:125; it fails when a creator is already registered,
  NvInferRuntimeCommon.h v10.3.0:205-208). A FAKE plugin library is any shared library with a
  ``<library>.fake_plugins.json`` beside it (``{"creators": [[name, version], ...]}``); the FAKE
  sees it loaded when ``/proc/self/maps`` maps it (ctypes.CDLL, as NVIDIA's
  samples/python/onnx_custom_plugin/load_plugin_lib.py does). A missing creator is refused with
  the lines TensorRT logs: ``3: getPluginCreator could not find plugin: <name> version: <v>``
  (TensorRT 8.6, open-mmlab/mmdetection issue #11511; 10.0.1, NVIDIA/TensorRT-LLM issue #1584),
  then before 10 ``1: [pluginV2Runner.cpp::load::300] Error Code 1: Serialization (Serialization
  assertion creator failed.Cannot deserialize plugin since corresponding IPluginCreator not found
  in Plugin Registry)`` and ``4: [runtime.cpp::deserializeCudaEngine::66] Error Code 4: Internal
  Error (Engine deserialization failed.)`` (TensorRT 8.5 Python, NVIDIA/TensorRT issue #2675),
  from 10 ``1: [pluginV2Runner.cpp::load::294] ...`` (the same message; TensorRT-LLM #1584).
- Data-dependent output shapes: after ``set_input_shape`` an output's shape is what TensorRT can
  compute from the input shapes; a dimension that depends on values (NonZero, NonMaxSuppression)
  is -1 (trtexec allocates such outputs with an ``IOutputAllocator``: ``isDynamic`` =
  getTensorShape has a -1, sampleInference.cpp v10.3.0:176, 1497-1509, 1734). The FAKE computes
  shapes with ONNX shape inference (data propagation on); a dimension it leaves symbolic is -1
  (ops it cannot infer: the shapes of a run on zeros). ``execute_async_v3`` then asks the output's
  allocator for memory and reports the shape: ``reallocate_output(name, memory, size, alignment)``
  before 10; from 10 ``reallocate_output_async(name, memory, size, alignment, stream)`` when the
  allocator defines it, else ``reallocate_output``; then ``notify_shape(name, dims)``
  (PyOutputAllocator, python/src/infer/pyCore.cpp 8.5.1:436-481, v10.3.0:497-587, v11.1:591-680).
  A data-dependent output with neither an allocator nor an address fails the execution.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from pathlib import Path

import numpy as np

__version__ = os.environ.get("EDGEFORGE_FAKE_TRT_VERSION", "10.3.0")
ENGINE_HEADER = b"EDGEFORGE FAKE TRT ENGINE\n"
PLUGIN_SIDECAR = ".fake_plugins.json"
ALIGNMENT = 256  # what the FAKE passes as reallocate_output's alignment (cudaMalloc's)


def _v(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3])


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


_NUMPY = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
    DataType.INT64: np.int64,
}
_ONNX = {
    "tensor(float)": DataType.FLOAT,
    "tensor(float16)": DataType.HALF,
    "tensor(int8)": DataType.INT8,
    "tensor(int32)": DataType.INT32,
    "tensor(bool)": DataType.BOOL,
    "tensor(uint8)": DataType.UINT8,
    "tensor(int64)": DataType.INT64,
}


def nptype(dtype: DataType):
    return _NUMPY[dtype]


def _initialized(obj, base: type) -> None:
    """pybind11's rule for Python subclasses of a bound class: the base's ``__init__`` must run."""
    if not getattr(obj, "_fake_base_init", False):
        raise TypeError(f"{type(obj).__name__}.__init__() must be called when overriding __init__ ({base.__name__})")


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity  # exported into the class, as the bindings do

    def __init__(self) -> None:
        self._fake_base_init = True

    def log(self, severity, msg: str) -> None:
        raise NotImplementedError("ILogger.log must be overridden")


class Logger(ILogger):
    def __init__(self, min_severity=ILogger.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity, msg: str) -> None:
        if severity <= self.min_severity:
            print(f"[TRT] [{'FEWIV'[int(severity)]}] {msg}", file=sys.stderr, flush=True)


# ---- plugins

#: creators ``init_libnvinfer_plugins`` registers (TensorRT's own libnvinfer_plugin), as (name, version)
BUILTIN_CREATORS = (("InstanceNormalization_TRT", "1"), ("ROIAlign_TRT", "1"))


class IPluginCreator:
    def __init__(self, name: str, version: str, namespace: str = "") -> None:
        self.name, self.plugin_version, self.plugin_namespace = name, version, namespace


class IPluginRegistry:
    """The process-wide registry (``get_plugin_registry``): what was registered explicitly, plus the
    creators of every FAKE plugin library the process has loaded (seen in /proc/self/maps)."""

    def __init__(self) -> None:
        self._creators: dict[tuple[str, str, str], str] = {}  # (name, version, namespace) -> where from

    def _register(self, creators, origin: str) -> bool:
        keys = [(str(n), str(v), "") for n, v in creators]
        if any(k in self._creators for k in keys):
            return False
        self._creators.update(dict.fromkeys(keys, origin))
        return True

    def _all(self) -> dict[tuple[str, str, str], str]:
        found = dict(self._creators)
        for lib in _loaded_libraries():
            for name, version in _sidecar(lib) or ():
                found.setdefault((str(name), str(version), ""), lib)
        return found

    @property
    def plugin_creator_list(self) -> list[IPluginCreator]:
        return [IPluginCreator(*k) for k in self._all()]

    def get_plugin_creator(self, type: str, version: str, plugin_namespace: str = ""):  # noqa: A002 (the real name)
        return (
            IPluginCreator(type, version, plugin_namespace)
            if (type, version, plugin_namespace) in self._all()
            else None
        )

    def __getattr__(self, name: str):
        if name == "load_library" and _v(__version__) >= (8, 6):
            return self._load_library
        raise AttributeError(f"'tensorrt.IPluginRegistry' object has no attribute {name!r}")

    def _load_library(self, plugin_path: str):
        creators = _sidecar(str(plugin_path))
        if creators is None or not self._register(creators, str(plugin_path)):
            return None
        return object()  # the library handle (a capsule in the real bindings)


_REGISTRY = IPluginRegistry()


def get_plugin_registry() -> IPluginRegistry:
    return _REGISTRY


def init_libnvinfer_plugins(logger, namespace: str) -> bool:
    _REGISTRY._register(BUILTIN_CREATORS, "libnvinfer_plugin")
    return True


def _loaded_libraries() -> list[str]:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return sorted({line.split(None, 5)[5] for line in maps.splitlines() if len(line.split(None, 5)) == 6})


def _sidecar(lib: str):
    path = Path(lib + PLUGIN_SIDECAR)
    return json.loads(path.read_text())["creators"] if path.is_file() else None


def _plugins_of(onnx_bytes: bytes, built_by: tuple[int, ...]) -> list[tuple[str, str, str]]:
    """(name, version, namespace) of each plugin the ONNX parser of ``built_by`` puts in the engine."""
    import onnx

    found = []
    for node in onnx.load_from_string(onnx_bytes).graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        text = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in attrs.items()}
        if node.domain not in ("", "ai.onnx"):
            found.append((node.op_type, text.get("plugin_version", "1"), text.get("plugin_namespace", "")))
        elif node.op_type == "InstanceNormalization" and built_by < (10,):
            found.append(("InstanceNormalization_TRT", "1", ""))
        elif node.op_type == "RoiAlign" and built_by >= (8, 5):
            found.append(("ROIAlign_TRT", "1", ""))
    return list(dict.fromkeys(found))


# ---- runtime, engine, context


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        _initialized(logger, ILogger)
        self.logger = logger

    def get_plugin_registry(self) -> IPluginRegistry:
        if _v(__version__) < (8, 6):
            raise AttributeError("'tensorrt.Runtime' object has no attribute 'get_plugin_registry'")
        return _REGISTRY

    def _error(self, *lines: str) -> None:
        for line in lines:
            self.logger.log(ILogger.ERROR, line)

    def deserialize_cuda_engine(self, data: bytes):
        """The engine, or None after logging why (as TensorRT does)."""
        parts = bytes(data).split(b"\n", 3)
        if len(parts) < 4 or parts[0] + b"\n" != ENGINE_HEADER:
            self._error("FAKE tensorrt: not an engine the FAKE trtexec wrote")
            return None
        info, old = json.loads(parts[2]), _v(__version__) < (10,)
        if info["tensorrt"] != __version__:
            text = f"The engine plan file is not compatible with this version of TensorRT, expecting library version {__version__} got {info['tensorrt']}"
            self._error(
                *(
                    (
                        f"6: {text}, please rebuild.",
                        "4: [runtime.cpp::deserializeCudaEngine::66] Error Code 4: Internal Error (Engine deserialization failed.)",
                    )
                    if old
                    else (f"IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error ({text}.)",)
                )
            )
            return None
        registered = _REGISTRY._all()
        missing = [p for p in _plugins_of(parts[3], _v(info["tensorrt"])) if p not in registered]
        if missing:
            name, version, _ = missing[0]  # TensorRT stops at the first plugin it cannot create
            self._error(
                f"3: getPluginCreator could not find plugin: {name} version: {version}",
                f"1: [pluginV2Runner.cpp::load::{300 if old else 294}] Error Code 1: Serialization (Serialization "
                "assertion creator failed.Cannot deserialize plugin since corresponding IPluginCreator not found in "
                "Plugin Registry)",
                *(
                    [
                        "4: [runtime.cpp::deserializeCudaEngine::66] Error Code 4: Internal Error (Engine deserialization failed.)"
                    ]
                    if old
                    else []
                ),
            )
            return None
        return ICudaEngine(parts[3], info)


def _spec(text: str | None) -> dict[str, tuple[int, ...]]:
    """trtexec's shape spec ``x:1x3x8x8,y:...`` -> {name: dims}."""
    out = {}
    for item in filter(None, (text or "").split(",")):
        name, _, dims = item.rpartition(":")
        out[name.strip("'")] = tuple(int(d) for d in dims.split("x"))
    return out


class ICudaEngine:
    def __init__(self, onnx: bytes, info: dict) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        self._onnx = onnx
        self._session = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
        io = [(t, TensorIOMode.INPUT) for t in self._session.get_inputs()]
        io += [(t, TensorIOMode.OUTPUT) for t in self._session.get_outputs()]
        self._names = [t.name for t, _ in io]
        self._mode = {t.name: mode for t, mode in io}
        self._dtype = {t.name: _ONNX[t.type] for t, _ in io}
        self._shape = {t.name: tuple(d if isinstance(d, int) else -1 for d in t.shape) for t, _ in io}
        given = {k: _spec(v) for k, v in info.get("shapes", {}).items()}
        self._profile = {}
        for t, _mode in io[: len(self._session.get_inputs())]:
            fixed = tuple(1 if d < 0 else d for d in self._shape[t.name])
            self._profile[t.name] = tuple(given.get(k, {}).get(t.name, fixed) for k in ("min", "opt", "max"))
        self._inferred: dict[tuple, dict[str, tuple[int, ...]]] = {}

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._mode[name]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._dtype[name]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._shape[name]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> tuple:
        return self._profile[name] if profile_index == 0 else ()

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)

    def _output_shapes(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Output shapes for these input shapes as shape inference finds them, -1 where it cannot."""
        key = tuple(sorted(shapes.items()))
        if key not in self._inferred:
            import onnx

            model = onnx.load_from_string(self._onnx)
            for inp in model.graph.input:
                for dim, value in zip(inp.type.tensor_type.shape.dim, shapes.get(inp.name, ())):
                    dim.dim_value = value
            for out in model.graph.output:
                out.type.tensor_type.ClearField("shape")
            inferred = {}
            for out in onnx.shape_inference.infer_shapes(model, data_prop=True).graph.output:
                if out.type.tensor_type.HasField("shape"):
                    dims = out.type.tensor_type.shape.dim
                    inferred[out.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
            if len(inferred) < len(model.graph.output):  # ops shape inference does not know: run them on zeros
                feeds = {n: np.zeros(s, nptype(self._dtype[n])) for n, s in shapes.items()}
                outs = self._session.run(None, feeds)
                ran = {o.name: tuple(v.shape) for o, v in zip(self._session.get_outputs(), outs)}
                inferred = {n: inferred.get(n, ran[n]) for n in ran}
            self._inferred[key] = inferred
        return self._inferred[key]


class IOutputAllocator:
    """Base of an application's output allocator; subclasses call ``IOutputAllocator.__init__``."""

    def __init__(self) -> None:
        self._fake_base_init = True


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self._e, self._shapes, self._addresses, self._allocators = engine, {}, {}, {}

    def set_input_shape(self, name: str, shape) -> bool:
        lo, _, hi = self._e._profile[name]
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
            print(
                f"[TRT] [E] FAKE tensorrt: shape {shape} of {name} is outside the profile {lo}..{hi}",
                file=sys.stderr,
                flush=True,
            )
            return False
        self._shapes[name] = shape
        return True

    def _run(self, feeds: dict) -> dict:
        outs = self._e._session.run(None, feeds)
        return {o.name: v for o, v in zip(self._e._session.get_outputs(), outs)}

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if self._e._mode[name] == TensorIOMode.INPUT:
            return self._shapes.get(name, self._e._shape[name])
        return self._e._output_shapes(self._shapes)[name]

    def set_tensor_address(self, name: str, address: int) -> bool:
        self._addresses[name] = int(address)
        return True

    def set_output_allocator(self, name: str, output_allocator: IOutputAllocator) -> bool:
        _initialized(output_allocator, IOutputAllocator)
        self._allocators[name] = output_allocator
        return True

    def _allocate(self, name: str, nbytes: int, stream_handle: int) -> int | None:
        alloc, current = self._allocators[name], self._addresses.get(name, 0)
        asynchronous = _v(__version__) >= (10,) and "reallocate_output_async" in dir(type(alloc))
        try:
            if asynchronous:
                return alloc.reallocate_output_async(name, current, nbytes, ALIGNMENT, stream_handle)
            return alloc.reallocate_output(name, current, nbytes, ALIGNMENT)
        except Exception as e:  # the bindings print the exception and TensorRT gets nullptr
            method = "reallocateOutputAsync" if asynchronous else "reallocateOutput"
            print(f"[ERROR] Exception caught in {method}(): {e}", file=sys.stderr, flush=True)
            return None

    def execute_async_v3(self, stream_handle: int) -> bool:
        from pycuda.driver import _MEMORY  # the FAKE pycuda's "device" memory

        feeds = {}
        for name, shape in self._shapes.items():
            dtype = np.dtype(nptype(self._e._dtype[name]))
            count = int(np.prod(shape))
            feeds[name] = np.frombuffer(_MEMORY[self._addresses[name]], dtype, count).reshape(shape)
        declared = self._e._output_shapes(self._shapes)
        for name, value in self._run(feeds).items():
            raw = np.ascontiguousarray(value, nptype(self._e._dtype[name])).view(np.uint8).reshape(-1)
            if name in self._allocators:
                address = self._allocate(name, raw.size, stream_handle)
                if not address or int(address) not in _MEMORY or len(_MEMORY[int(address)]) < raw.size:
                    print(f"[TRT] [E] FAKE tensorrt: no memory of {raw.size} bytes for output {name}", file=sys.stderr)
                    return False
                _MEMORY[int(address)][: raw.size] = raw.tobytes()
                self._allocators[name].notify_shape(name, tuple(value.shape))
            elif name in self._addresses:  # real TensorRT writes there whatever the size: the FAKE checks
                if len(_MEMORY[self._addresses[name]]) < raw.size:
                    print(
                        f"[TRT] [E] FAKE tensorrt: output {name} ({raw.size} bytes, declared shape {declared[name]}) "
                        "does not fit the memory at its address",
                        file=sys.stderr,
                        flush=True,
                    )
                    return False
                _MEMORY[self._addresses[name]][: raw.size] = raw.tobytes()
            else:
                print(
                    f"[TRT] [E] FAKE tensorrt: output {name} (shape {declared[name]}) has neither an address nor an "
                    "output allocator",
                    file=sys.stderr,
                    flush=True,
                )
                return False
        return True
