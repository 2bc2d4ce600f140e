"""A FAKE OF NVIDIA's tensorrt PYTHON PACKAGE FOR TESTS ON MACHINES WITHOUT A GPU: NOT TensorRT.

Only the surface ``TrtModel`` (tasks/agent/agent.py) uses, with the TensorRT >= 8.5 tensor API's
names. Its engines are the files the FAKE trtexec (tests/fakes/trtexec) writes: ``EDGEFORGE FAKE
TRT ENGINE``, the ONNX's sha256, a JSON (version, precision, --min/opt/maxShapes), then the ONNX;
executing one runs that ONNX with ONNX Runtime on the CPU, reading and writing the FAKE pycuda's
"device" memory. The version is ``$EDGEFORGE_FAKE_TRT_VERSION`` (default 10.3.0); like TensorRT, it
refuses an engine written for another version. Optimisation profile: the shapes the build was given,
else every dynamic dimension fixed to 1, as trtexec does when a build names no shapes ("Dynamic
dimensions required for input: x, but no shapes were provided. Automatically overriding shape to:
1x1x28x28", tests/fixtures/trtexec/trt10.16_h100_fp32_build_bench_ok.log).
"""

from __future__ import annotations

import enum
import json
import os
import sys

import numpy as np

__version__ = os.environ.get("EDGEFORGE_FAKE_TRT_VERSION", "10.3.0")
ENGINE_HEADER = b"EDGEFORGE FAKE TRT ENGINE\n"


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


class Logger:
    VERBOSE, INFO, WARNING, ERROR, INTERNAL_ERROR = 4, 3, 2, 1, 0

    def __init__(self, min_severity: int = WARNING) -> None:
        self.min_severity = min_severity

    def log(self, severity: int, msg: str) -> None:
        if severity <= self.min_severity:
            print(f"[TRT] [E] {msg}", file=sys.stderr, flush=True)


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes):
        """The engine, or None after logging why (as TensorRT does)."""
        parts = bytes(data).split(b"\n", 3)
        if len(parts) < 4 or parts[0] + b"\n" != ENGINE_HEADER:
            self.logger.log(Logger.ERROR, "FAKE tensorrt: not an engine the FAKE trtexec wrote")
            return None
        info = json.loads(parts[2])
        if info["tensorrt"] != __version__:
            self.logger.log(
                Logger.ERROR, f"FAKE tensorrt {__version__}: the engine was written for TensorRT {info['tensorrt']}"
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


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self._e, self._shapes, self._addresses = engine, {}, {}

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
        # TensorRT infers output shapes from the input shapes; this fake runs the model on zeros
        feeds = {n: np.zeros(s, nptype(self._e._dtype[n])) for n, s in self._shapes.items()}
        return tuple(self._run(feeds)[name].shape)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self._addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        from pycuda.driver import _MEMORY  # the FAKE pycuda's "device" memory

        feeds = {}
        for name, shape in self._shapes.items():
            dtype = np.dtype(nptype(self._e._dtype[name]))
            count = int(np.prod(shape))
            feeds[name] = np.frombuffer(_MEMORY[self._addresses[name]], dtype, count).reshape(shape)
        for name, value in self._run(feeds).items():
            raw = np.ascontiguousarray(value, nptype(self._e._dtype[name])).view(np.uint8).reshape(-1)
            _MEMORY[self._addresses[name]][: raw.size] = raw.tobytes()
        return True
