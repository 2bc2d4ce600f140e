"""EdgeForge device agent, uploaded alone to a device: ``<python> agent.py <probe|build|benchmark|infer> '<JSON>'``.

The last stdout line is one JSON object: ``{"ok": true, "agent_version", "result"}`` (exit 0) or
``{"ok": false, "agent_version", "kind", "error"}``, kind usage (exit 2), missing_runtime, bad_input
or failed (exit 1); progress goes to stderr. Request paths are relative to the cwd or absolute.
Module-level imports are stdlib only (Python >= 3.8); numpy, onnxruntime, openvino, tensorrt and pycuda
are imported where needed. The host's runtimes and latency loop import this file, so both run one
implementation.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
import zipfile
from pathlib import Path

AGENT_VERSION = "1"
#: the commands (agent.py alone); the agent's zipapp adds its other modules' (client.DEVICE_MODULES):
#: release-trust, release-staged, release-install, release-activate, release-rollback, release-status, monitor
USAGE = "usage: agent.py {probe|peak|build|benchmark|infer} '<request JSON object>'"
#: the ISA flags the peaks and device choices read (tasks/device/isa.py): x86 FMA/AVX-512/VNNI/BF16/FP16/AMX,
#: Arm NEON, dot-product (asimddp), BF16, I8MM, FP16 arithmetic (fphp scalar, asimdhp vector), SVE
CPU_FLAGS = (
    *("fma", "f16c", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16"),
    *("amx_bf16", "amx_fp16", "amx_int8", "asimd", "asimddp", "bf16", "i8mm", "fphp", "asimdhp", "sve"),
)
#: Arm "CPU implementer" codes (Arm ARM, MIDR_EL1) of the vendors whose boards EdgeForge meets
ARM_VENDORS = {
    "0x41": "ARM",
    "0x4e": "NVIDIA",
    "0x51": "Qualcomm",
    "0x48": "HiSilicon",
    "0x61": "Apple",
    "0xc0": "Ampere",
}
#: (device-tree SoC, Jetson model keyword, CUDA compute capability), newest first
JETSON_SOCS = (
    ("tegra234", "orin", "8.7"),
    ("tegra194", "xavier", "7.2"),
    ("tegra186", "tx2", "6.2"),
    ("tegra210", "nano", "5.3"),
    ("tegra210", "tx1", "5.3"),
)
ORT_DISTS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
TRT_DEBS = ("libnvinfer-bin", "libnvinfer10", "libnvinfer8")
SUBPROCESS_TIMEOUT_S = 10
OV_DEVICE = "CPU"


class AgentError(Exception):
    """A request the agent cannot serve; ``kind``: usage, missing_runtime, bad_input or failed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def log(msg: str) -> None:
    print(f"agent: {msg}", file=sys.stderr, flush=True)


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:500] if lines else type(e).__name__


def _import(module: str, install: str | None = None):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise AgentError(
            "missing_runtime",
            f"{module} cannot be imported by {sys.executable} ({e}); install it "
            f"on the device: {install or f'{sys.executable} -m pip install {module}'}",
        ) from e


# ---- probe: facts that stay put while the device is unchanged (no uptime, load, free memory, hostname)


def _sh(*argv: str) -> str:
    """stdout of ``argv`` whatever its exit status (callers parse it strictly); "" when it cannot run."""
    try:
        return subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _search(pattern: str, text: str, flags: int = 0) -> str | None:
    m = re.search(pattern, text, flags)
    return m.group(1).strip() if m else None


def _version(*dists: str) -> str | None:
    """Version of the first installed distribution (package metadata: nothing is imported)."""
    for name in dists:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _deb_version(package: str) -> str | None:
    """Upstream version of an installed Debian package ("8.5.2-1+cuda11.4" -> "8.5.2")."""
    return _search(r"^(\d+(?:\.\d+)*)", _sh("dpkg-query", "-W", "-f=${Version}", package))


def decode_trt_version(n: int) -> str:
    """trtexec's banner number: 8601 -> "8.6.1"; from TensorRT 10 on MMmmpp, 100300 -> "10.3.0"."""
    major, rest = divmod(n, 10000 if n >= 100000 else 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _gpus() -> list:
    """nvidia-smi's GPUs; on a Jetson (no usable nvidia-smi) its SoC, from the device tree."""
    lines = _sh("nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader").splitlines()
    gpus = [
        {"name": name.strip(), "compute_capability": cc.strip()}
        for name, _, cc in (line.rpartition(",") for line in lines)
        if name.strip() and re.fullmatch(r"\d+\.\d+", cc.strip())
    ]
    model = _read("/proc/device-tree/model").strip("\x00 \n")
    compatible = _read("/proc/device-tree/compatible").lower()
    for soc, keyword, cc in () if gpus else JETSON_SOCS:
        if soc in compatible or ("jetson" in model.lower() and keyword in model.lower()):
            return [{"name": model or soc, "compute_capability": cc}]
    return gpus


def _cpu_id(cpuinfo: str) -> dict:
    """Vendor, family, model and nominal clock: stable facts only (never the volatile "cpu MHz").
    x86: vendor_id, cpu family, model; Arm: implementer, architecture, part. The clock is the model
    name's "@ 2.70GHz", else cpufreq's cpuinfo_max_freq, else on x86 with an invariant TSC
    (constant_tsc, tsc_known_freq: a VM without cpufreq whose model name says only "AMD EPYC") the
    TSC rate, BogoMIPS / 2, which runs at the base clock; else None (``mhz_source`` says which).
    Physical cores: distinct (physical id, core id) pairs (SMT siblings share their vector units)."""
    field = lambda key: _search(rf"^{key}\s*:\s*(.+)$", cpuinfo, re.M)  # noqa: E731
    implementer = field("CPU implementer")
    ghz = _search(r"@\s*([\d.]+)\s*GHz", field("model name") or "")
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    cores = set(re.findall(r"^physical id\s*:\s*(\d+)\s*$(?:.*\n)*?^core id\s*:\s*(\d+)", cpuinfo, re.M))
    number = lambda v: int(v) if v and v.isdigit() else v  # noqa: E731
    flags = set((field("flags") or "").split())
    bogomips = _search(r"^([\d.]+)$", field("bogomips") or "")
    if ghz:
        mhz, source = round(float(ghz) * 1000), "model name"
    elif max_khz.isdigit():
        mhz, source = int(max_khz) // 1000, "cpufreq cpuinfo_max_freq"
    elif {"constant_tsc", "tsc_known_freq"} <= flags and bogomips:
        mhz, source = round(float(bogomips) / 2), "TSC (BogoMIPS / 2: the base clock)"
    else:
        mhz, source = None, None
    return {
        "vendor": field("vendor_id") or (ARM_VENDORS.get(implementer.lower(), implementer) if implementer else None),
        "family": number(field("cpu family") or field("CPU architecture")),
        "model_id": number(field("model")) if field("vendor_id") else field("CPU part"),
        "mhz_nominal": mhz,
        "mhz_source": source,
        "physical_cores": len(cores) or None,
    }


def cmd_probe(req: dict) -> dict:
    """The device fingerprint; ``trtexec`` (a path or null) gives TensorRT's version when nothing else does."""
    trtexec = _get(req, "trtexec")
    cpuinfo = _read("/proc/cpuinfo")
    cpu_model = next(
        filter(
            None, (_search(rf"^{key}\s*:\s*(.+)$", cpuinfo, re.M) for key in ("model name", "Hardware", "Processor"))
        ),
        None,
    )
    flags = set((_search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo, re.M) or "").split())
    mem_kib = _search(r"^MemTotal:\s*(\d+)\s*kB", _read("/proc/meminfo"), re.M)
    l4t = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+(?:\.\d+)*)", _read("/etc/nv_tegra_release"))
    try:
        cuda = str(json.loads(_read("/usr/local/cuda/version.json"))["cuda"]["version"])
    except (ValueError, KeyError, TypeError):
        nvcc = r"release [\d.]+, V([\d.]+)"
        cuda = (
            _search(r"CUDA Version\s+([\d.]+)", _read("/usr/local/cuda/version.txt"))
            or _search(nvcc, _sh("nvcc", "--version"))
            or _search(nvcc, _sh("/usr/local/cuda/bin/nvcc", "--version"))
        )
    trt = _version("tensorrt") or next(filter(None, map(_deb_version, TRT_DEBS)), None)
    banner = None if trt or not trtexec else _search(r"\[TensorRT v(\d+)\]", _sh(trtexec, "--help"))
    return {
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "distro": _search(r'^PRETTY_NAME="?([^"\n]*)"?', _read("/etc/os-release"), re.M),
        },
        "arch": platform.machine(),
        "cpu": {
            "model": cpu_model or platform.processor() or None,
            "cores": os.cpu_count(),
            "flags": sorted(f for f in CPU_FLAGS if f in flags),
            **_cpu_id(cpuinfo),
        },
        "ram_gib": round(int(mem_kib) / 2**20, 1) if mem_kib else None,
        "python": platform.python_version(),
        "gpu": _gpus(),
        "l4t": f"{l4t.group(1)}.{l4t.group(2)}" if l4t else None,
        "jetpack": _deb_version("nvidia-jetpack"),
        "cuda": cuda,
        "tensorrt": trt or (decode_trt_version(int(banner)) if banner else None),
        "onnxruntime": _version(*ORT_DISTS),
        "openvino": _version("openvino"),
        "numpy": _version("numpy"),
        "power_mode": _search(r"NV Power Mode:\s*(\S+)", _sh("nvpmodel", "-q")),
        "agent_version": AGENT_VERSION,
    }


# ---- runtimes: models take float32 (B, C, H, W) batches and return every output as float32 by name


def _single_input(path, names: list) -> None:
    if len(names) != 1:
        raise AgentError("bad_input", f"{path}: EdgeForge handles single-input image models; this one has {names}")


def ort_providers() -> list:
    """This device's ONNX Runtime execution providers in ORT's order (the remote Azure EP left out)."""
    return [p for p in _import("onnxruntime").get_available_providers() if p != "AzureExecutionProvider"]


def not_per_sample(batch, outputs) -> list:
    """The names of ``outputs`` (``(name, dims)`` pairs) whose rows do not follow the input's batch
    dimension ``batch``: a dimension is an int, a symbol's name, or None when shape inference left it
    unknown. Scalars and outputs whose first dimension is not ``batch`` (NonZero: ``[rank, n]``,
    NonMaxSuppression: ``[n, 3]``, ``n`` depending on the values) are data-dependent: a batch's results
    cannot be split into per-sample rows, nor several batches' joined. With ``batch`` unknown only
    scalars are."""
    if batch is None:
        return [n for n, d in outputs if d is not None and len(d) == 0]
    return [n for n, d in outputs if d is None or len(d) == 0 or d[0] is None or d[0] != batch]


def infer_all(model, batches) -> dict:
    """Every output of ``model`` over ``batches`` (arrays of samples, in order). Per-sample outputs:
    one call per batch, joined along the batch axis. A model with data-dependent outputs
    (``model.data_dependent``, see :func:`not_per_sample`) runs all the samples in one call instead,
    and its outputs come back as that call gives them; a model whose batch range (``min_batch`` ..
    ``max_batch``, None: any) cannot take them all at once is refused, saying what to change."""
    np = _import("numpy")
    dd = list(getattr(model, "data_dependent", None) or [])
    if not dd:
        parts: dict = {}
        for x in batches:
            for name, value in model.infer(x).items():
                parts.setdefault(name, []).append(value)
        return {name: np.concatenate(values) for name, values in parts.items()}
    x = np.concatenate(list(batches))
    n, lo, hi = len(x), getattr(model, "min_batch", 1), getattr(model, "max_batch", None)
    if n < lo or (hi is not None and n > hi):
        takes = f"a batch of exactly {lo}" if lo == hi else f"batches of {lo} to {hi}"
        raise AgentError(
            "bad_input",
            f"outputs {dd} have data-dependent shapes (NonZero, NonMaxSuppression, ...): their rows do not follow "
            f"the batch, so the {n} samples must run in one call, but the model takes {takes} "
            f"({model.input_name}). Export it with a dynamic batch (model.input.dynamic_batch: true; a TensorRT "
            f"engine's profile then reaches eval.batch_size, so set eval.batch_size >= {n}), or evaluate as many "
            f"samples as one call takes (data.eval.limit), or give the model per-sample outputs (e.g. detections "
            "padded to a fixed count)",
        )
    return dict(model.infer(x))


ORT_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED"}


class OrtModel:
    """An ONNX Runtime session (float16 inputs get the batches cast); ``save_optimized``: a path to
    write the graph to as ORT_ENABLE_EXTENDED optimizes it; ``choices``: the build's device choices
    (``graph_optimization_level``: disabled/basic/extended/all, ``allow_spinning``), else ORT's defaults."""

    def __init__(
        self, path, threads: int | None = None, providers: list | None = None, save_optimized=None, choices=None
    ) -> None:
        ort, self._np, choices = _import("onnxruntime"), _import("numpy"), choices or {}
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads, so.inter_op_num_threads = int(threads), 1
        level = "extended" if save_optimized else choices.get("graph_optimization_level", "all")
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS.get(level, "ORT_ENABLE_ALL"))
        if "allow_spinning" in choices:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if choices["allow_spinning"] else "0")
        if save_optimized:
            so.optimized_model_filepath = str(save_optimized)
        try:
            self._s = ort.InferenceSession(str(path), so, providers=providers or ort_providers())
        except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise AgentError("failed", f"onnxruntime cannot load {path}: {e}") from e
        inputs = self._s.get_inputs()
        _single_input(path, [i.name for i in inputs])
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self._s.get_outputs()]
        self._dtype = self._np.float16 if inputs[0].type == "tensor(float16)" else self._np.float32
        # the shapes ONNX shape inference gave the graph when ORT resolved it (a symbol's name, an int, None)
        batch = (inputs[0].shape or [None])[0]
        self.min_batch, self.max_batch = (batch, batch) if isinstance(batch, int) and batch > 0 else (1, None)
        self.data_dependent = not_per_sample(batch, [(o.name, o.shape) for o in self._s.get_outputs()])

    def infer(self, x) -> dict:
        outs = self._s.run(None, {self.input_name: x.astype(self._dtype, copy=False)})
        return {n: self._np.asarray(o, dtype=self._np.float32) for n, o in zip(self.output_names, outs)}

    def steps(self) -> list:
        """``infer`` as three steps to time apart (:func:`time_chain`), through ORT's IOBinding:
        ``input_copy`` casts the batch to the input's dtype and binds it (``bind_cpu_input``: the CPU
        provider reads a float32 batch in place), ``compute`` runs (``run_with_iobinding``, outputs
        bound to memory ORT allocates), ``output_copy`` copies the outputs out of ORT's tensors
        (``copy_outputs_to_cpu``) as float32; its result is what ``infer`` returns."""
        np, io, held = self._np, self._s.io_binding(), []
        for n in self.output_names:
            io.bind_output(n)

        def put(x) -> None:
            held[:] = [np.ascontiguousarray(x, dtype=self._dtype)]  # bound in place: kept alive until the next
            io.bind_cpu_input(self.input_name, held[0])

        def get(_) -> dict:
            return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, io.copy_outputs_to_cpu())}

        return [("input_copy", put), ("compute", lambda _: self._s.run_with_iobinding(io)), ("output_copy", get)]


def build_onnxruntime(
    onnx_path, out_dir, threads: int | None = None, optimize: bool = True, providers=None, choices=None
) -> tuple:
    """``(artifact, meta)``: ``out_dir/model.onnx``, the graph this ONNX Runtime optimized, or the input
    as is when ``optimize`` is false or ORT cannot save it; loaded back as a check (with the session
    options of ``choices``, the build's device choices)."""
    out, providers, optimized = Path(out_dir) / "model.onnx", providers or ort_providers(), False
    if optimize:
        try:
            OrtModel(onnx_path, threads, providers, save_optimized=out)
            optimized = out.is_file()
        except AgentError as e:
            OrtModel(onnx_path, threads, providers)  # a model ORT cannot load at all fails here
            log(f"saving the optimized graph failed ({e}); using {onnx_path} as is")
    if not optimized:
        shutil.copyfile(onnx_path, out)
    OrtModel(out, threads, providers, choices=choices)
    return out, {"providers": providers, "optimized": optimized}


# Where the build records the inference precision an IR must run in (OpenVINO itself does not apply a
# precision hint kept in the model: it is read back and passed when compiling).
OV_PRECISION_KEY = ["edgeforge", "inference_precision"]
# The outputs that are not per-sample (JSON list), from ONNX shape inference on the host: OpenVINO's own
# shapes write every dynamic dimension as "?", so NonMaxSuppression's [n, 3] looks like [batch, 3].
OV_NOT_PER_SAMPLE_KEY = ["edgeforge", "not_per_sample"]


def ov_inference_precision(precision: str, emulated: bool = False) -> str | None:
    """The plugin's inference precision for a build: ``f32`` for fp32 and int8 (the ops the Q/DQ
    model leaves in float are FP32 there too), ``bf16`` for bf16, ``f16`` for fp16 on a device with
    native FP16 compute; fp16 ``emulated`` (no native FP16 compute): None, the plugin's own choice
    (f32, or bf16 where the CPU has it), recorded as it really ran (``runtime_precisions``)."""
    if precision == "fp16":
        return None if emulated else "f16"
    return "bf16" if precision == "bf16" else "f32"


class OvModel:
    """An OpenVINO IR compiled for the CPU plugin, in the inference precision its build recorded:
    without it a CPU with bf16 (AVX-512 BF16, AMX) runs an "fp32" model in bf16. ``scenario``: the
    build's device choice for it (``{"performance_hint", "num_streams"}``), else the latency hint."""

    def __init__(self, path, threads: int | None = None, scenario: dict | None = None) -> None:
        core, self._np, scenario = _import("openvino").Core(), _import("numpy"), scenario or {}
        config = {
            "PERFORMANCE_HINT": scenario.get("performance_hint") or "LATENCY",
            **({"NUM_STREAMS": int(scenario["num_streams"])} if scenario.get("num_streams") else {}),
            **({"INFERENCE_NUM_THREADS": int(threads)} if threads else {}),
        }
        try:
            model = core.read_model(str(path))
            if model.has_rt_info(OV_PRECISION_KEY):
                config["INFERENCE_PRECISION_HINT"] = str(model.get_rt_info(OV_PRECISION_KEY).astype(str))
            self.compiled = core.compile_model(model, OV_DEVICE, config)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with its own text
            raise AgentError("failed", f"openvino cannot load {path}: {_first_line(e)}") from e
        _single_input(path, [i.get_any_name() for i in model.inputs])
        # names from the IR as saved: compilation merges a removed node's tensor names into its neighbour's
        self.input_name = model.inputs[0].get_any_name()
        self.output_names = [o.get_any_name() for o in model.outputs]
        self._request = self.compiled.create_infer_request()
        batch = _ov_dims(model.inputs[0].get_partial_shape())
        batch = batch[0] if batch else None
        self.min_batch, self.max_batch = (batch, batch) if isinstance(batch, int) else (1, None)
        if model.has_rt_info(OV_NOT_PER_SAMPLE_KEY):  # decided by ONNX shape inference at the build
            self.data_dependent = json.loads(str(model.get_rt_info(OV_NOT_PER_SAMPLE_KEY).astype(str)))
        else:  # an IR from elsewhere: OpenVINO's shapes ("?" for every dynamic dimension: NMS's rows pass)
            self.data_dependent = not_per_sample(
                batch or "?", [(o.get_any_name(), _ov_dims(o.get_partial_shape())) for o in model.outputs]
            )

    def infer(self, x) -> dict:
        # share_inputs: no copy of the batch into OpenVINO (it is contiguous float32 and outlives the
        # synchronous call); ~25 us less per call, which is a third of a small model's latency
        # share_outputs + one copy each: OpenVINO's own output copy (and a fresh port list from
        # compiled.outputs per call) cost ~0.3 ms a call on ResNet-18 against benchmark_app
        res = self._request.infer(
            {0: self._np.ascontiguousarray(x, dtype=self._np.float32)}, share_inputs=True, share_outputs=True
        )
        if getattr(self, "_ports", None) is None:
            self._ports = list(self.compiled.outputs)
        return {n: self._np.array(res[o], dtype=self._np.float32) for n, o in zip(self.output_names, self._ports)}

    def steps(self) -> list:
        """``infer`` as three steps to time apart (:func:`time_chain`), on one InferRequest: ``input_copy``
        sets the batch as the input tensor, shared as ``infer`` shares it (no copy; OpenVINO reads the
        numpy buffer), ``compute`` is ``start_async`` + ``wait``, ``output_copy`` copies each
        ``get_output_tensor(i).data`` out as float32; its result is what ``infer`` returns."""
        ov, np, req, held = _import("openvino"), self._np, self.compiled.create_infer_request(), []

        def put(x) -> None:
            x = np.ascontiguousarray(x, dtype=np.float32)
            # shared, not copied: kept alive until the next; a read-only array (a memory-mapped split)
            # cannot be shared (OpenVINO's Tensor refuses it) and is copied first
            held[:] = [x if x.flags.writeable else x.copy()]
            req.set_input_tensor(ov.Tensor(held[0], shared_memory=True))

        def run(_) -> None:
            req.start_async()
            req.wait()

        def get(_) -> dict:
            return {
                n: np.array(req.get_output_tensor(i).data, dtype=np.float32) for i, n in enumerate(self.output_names)
            }

        return [("input_copy", put), ("compute", run), ("output_copy", get)]

    def infer_streams(self, x) -> None:
        """Run the batch spread over the compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS asynchronous
        requests (one chunk each, as benchmark_app keeps every stream busy); timing only: no outputs.
        A model of fixed batch runs it as one call."""
        if self.max_batch is not None:
            self._request.infer({0: self._np.ascontiguousarray(x, dtype=self._np.float32)}, share_inputs=True)
            return
        if getattr(self, "_queue", None) is None:
            n = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self._queue = _import("openvino").AsyncInferQueue(self.compiled, max(1, n))
        for chunk in self._np.array_split(self._np.ascontiguousarray(x, dtype=self._np.float32), len(self._queue)):
            if len(chunk):
                self._queue.start_async({0: chunk}, share_inputs=True)
        self._queue.wait_all()


def offline_runner(runtime: str, artifact, threads, choices: dict | None):
    """The callable that runs an offline batch as the build's choices say: OpenVINO with an ``offline``
    scenario gets its own compiled model (throughput hint) and every stream busy; None: the usual model."""
    if runtime != "openvino" or not (choices or {}).get("offline"):
        return None
    return OvModel(artifact, threads, choices["offline"]).infer_streams


def _ov_dims(shape) -> list | None:
    """An OpenVINO PartialShape as ints, ``"?"`` for a dynamic dimension; None for a dynamic rank."""
    if shape.rank.is_dynamic:
        return None
    return [d.get_length() if d.is_static else "?" for d in shape]


#: runtime-model layers that hold or move data rather than compute: an FP16 weight constant (fp16's
#: compressed IR) or a reorder into bf16 says nothing about the precision the model computes in
OV_DATA_LAYERS = ("Const", "Input", "Output", "Parameter", "Result", "Reorder", "Convert")


def ov_runtime_precisions(compiled, compute_only: bool = False) -> dict:
    """``{precision: count}`` of the ops the plugin executes, e.g. ``{"FP32": 40, "I8": 12}``; with
    ``compute_only``, of the layers that compute (not :data:`OV_DATA_LAYERS`)."""
    infos = (op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops())
    counts = collections.Counter(
        str(i["runtimePrecision"].astype(str)).upper()
        for i in infos
        if "runtimePrecision" in i
        and not (compute_only and "layerType" in i and str(i["layerType"].astype(str)) in OV_DATA_LAYERS)
    )
    return dict(sorted(counts.items()))


def build_openvino(
    onnx_path,
    out_dir,
    precision: str,
    threads: int | None = None,
    io_names=None,
    emulated: bool = False,
    choices: dict | None = None,
) -> tuple:
    """``(artifact, meta)``: ``out_dir/model.xml`` + ``model.bin`` (FP16 weights for fp16), inputs and
    outputs named ``io_names`` in order (conversion can add aliases), compiled once on the CPU plugin.
    An ``int8-*`` build that executes no int8 op fails, and so does a native (not ``emulated``) bf16
    build that executes no op in BF16; an fp16 build whose f16 hint the plugin did not honour records
    ``emulated`` with what it ran instead."""
    ov = _import("openvino")
    out = Path(out_dir) / "model.xml"
    try:
        model = ov.convert_model(str(onnx_path))
        io_names = io_names or {}
        for ports, names in ((model.inputs, io_names.get("inputs")), (model.outputs, io_names.get("outputs"))):
            for port, name in zip(ports, names) if names and len(names) == len(ports) else ():
                port.get_tensor().set_names({name})
        # the build's device choice (tasks/device/choices.py) where the host sent one: the same rule
        hint = (choices or {}).get("inference_precision", ov_inference_precision(precision, emulated))
        if hint:
            model.set_rt_info(hint, OV_PRECISION_KEY)
        if io_names.get("not_per_sample") is not None:
            model.set_rt_info(json.dumps(io_names["not_per_sample"]), OV_NOT_PER_SAMPLE_KEY)
        ov.save_model(model, str(out), compress_to_fp16=precision == "fp16")
    except Exception as e:
        raise AgentError("failed", f"openvino could not convert {onnx_path}: {_first_line(e)}") from e
    try:
        compiled = OvModel(out, threads).compiled
    except AgentError as e:
        raise AgentError(e.kind, f"openvino converted {onnx_path} but cannot compile it for {OV_DEVICE}: {e}") from e
    ops, weights = ov_runtime_precisions(compiled), out.with_suffix(".bin")
    compute = ov_runtime_precisions(compiled, compute_only=True)
    meta = {
        "device": OV_DEVICE,
        "weights_file": weights.name,
        "weights_sha256": sha256(weights),
        "size_bytes": out.stat().st_size + weights.stat().st_size,
        "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
        "runtime_precisions": ops,
        "compute_precisions": compute,
        "int8_ops": ops.get("I8", 0) + ops.get("U8", 0),
    }
    if precision.startswith("int8-") and meta["int8_ops"] == 0:
        raise AgentError(
            "failed",
            f"openvino compiled {onnx_path} with no op executing in int8 (runtime "
            f"precisions {ops}): its Q/DQ nodes were not turned into int8 kernels",
        )
    if precision == "bf16" and not emulated and not compute.get("BF16"):
        raise AgentError(
            "failed",
            f"openvino compiled {onnx_path} with INFERENCE_PRECISION_HINT bf16 but no op computes in BF16 "
            f"(compute precisions {compute}; the plugin's capabilities: {ov_capabilities()}): this CPU plugin has "
            "no bf16 kernels here; leave bf16 out of build.precisions for this target, or set "
            "bench.emulated: measure to build and measure it anyway",
        )
    if precision == "fp16" and hint == "f16" and not (compute.get("F16") or compute.get("FP16")):
        meta["emulated"] = (
            f"OpenVINO computed no op in f16 despite the f16 hint (compute precisions {compute}; capabilities "
            f"{ov_capabilities()}): no speed-up expected from fp16"
        )
    return out, meta


def ov_capabilities() -> list:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES (e.g. ["BF16", "FP32", "INT8"]); [] when unreadable."""
    try:
        return list(_import("openvino").Core().get_property(OV_DEVICE, "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # an older plugin without the property: the message only loses a detail
        return []


TRT_PYTHON = (
    "sudo apt-get install python3-libnvinfer (JetPack; on x86: pip install tensorrt) and "
    f"{sys.executable} -m pip install pycuda"
)


#: what TensorRT logs when an engine cannot be deserialised, by cause (first match wins); the lines
#: are the real ones the FAKE tensorrt replays (tests/fakes/trt_python/tensorrt/__init__.py cites them)
TRT_LOAD_CAUSES = (
    (
        r"IPluginCreator not found|could not find plugin",
        "the engine holds a plugin no library loaded here registers",
        "give the agent the plugin libraries the build loaded (target.<name>.tensorrt.plugins; the build "
        "record's trt_plugins, which benchmark and evaluate pass on)",
    ),
    (
        r"not compatible with this version of TensorRT|Version tag does not match|Magic tag does not match",
        "it was built by another TensorRT version",
        "rebuild it with this device's TensorRT (re-run probe and build on the device)",
    ),
    (
        r"incompatible device|expecting compute",
        "it was built for another GPU",
        "rebuild it on this device (re-run build)",
    ),
)


def trt_logger(trt):
    """A TensorRT logger (``trt.ILogger`` subclass, pyCoreDoc.h's recipe) printing warnings and errors
    to stderr and keeping the error lines, the evidence a failed deserialisation is explained with."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors = []

        def log(self, severity, msg) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                self.errors.append(str(msg))
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR, trt.ILogger.WARNING):
                tag = "W" if severity == trt.ILogger.WARNING else "E"
                print(f"[TRT] [{tag}] {msg}", file=sys.stderr, flush=True)

    return Logger()


def load_trt_plugins(trt, logger, paths: list) -> list:
    """Register plugins as trtexec does before it deserialises (trtexec.cpp 8.5.1:188-194, v10.3.0:
    292-304; NVIDIA's Python samples, e.g. samples/python/detectron2/infer.py 8.5.1:41, v11.1:43):
    TensorRT's own (``init_libnvinfer_plugins``), then each library of the build loaded into the
    process (ctypes, samples/python/onnx_custom_plugin/load_plugin_lib.py): a library registers its
    creators when loaded (``--plugins``/``--staticPlugins``). A library that exports the entry
    points of ``IPluginRegistry::loadLibrary`` (``getCreators`` from 10, ``getPluginCreators`` in
    8.6: plugin/common/vfcCommon.cpp at v10.3.0:73 / v8.6.1:73) is a ``--dynamicPlugins`` one and is
    registered through ``load_library`` (8.6+, pyPlugin.cpp v8.6.1:262). Returns the libraries
    (kept loaded for the model's life)."""
    import ctypes

    trt.init_libnvinfer_plugins(logger, "")
    libs = []
    for p in paths:
        if not Path(p).is_file():
            raise AgentError(
                "bad_input",
                f"plugin library {p!r} does not exist on this device (cwd {os.getcwd()}): install it there, "
                "at the path the build loaded it from (target.<name>.tensorrt.plugins)",
            )
        try:
            lib = ctypes.CDLL(os.path.abspath(p))
        except OSError as e:
            raise AgentError("failed", f"the plugin library {p} does not load: {e}") from e
        registry = trt.get_plugin_registry()
        if any(hasattr(lib, s) for s in ("getCreators", "getPluginCreators")) and hasattr(registry, "load_library"):
            if registry.load_library(os.path.abspath(p)) is None:
                raise AgentError(
                    "failed",
                    f"TensorRT cannot register the plugins of {p} (IPluginRegistry.load_library; a creator "
                    f"already registered fails it): {' | '.join(logger.errors[-3:]) or 'no error logged'}",
                )
        libs.append(lib)
    return libs


def trt_load_failure(version: str, path, errors: list, plugins: list) -> str:
    """Why TensorRT ``version`` returned no engine for ``path``: the causes its error lines point to
    (all of them when they point to none) and what to do, quoting the lines."""
    text = " ".join(errors)
    causes = [c for c in TRT_LOAD_CAUSES if re.search(c[0], text)] or list(TRT_LOAD_CAUSES)
    missing = sorted(set(re.findall(r"could not find plugin:? (\S+) version:? (\S+)", text)))
    why = "one of: " + "; ".join(c[1] for c in causes) if len(causes) > 1 else causes[0][1]
    if missing:
        why += " (" + ", ".join(f"{name} version {v}" for name, v in missing) + ")"
    said = " | ".join(line.strip() for line in errors[-4:]) or "nothing (no error lines were logged)"
    return (
        f"TensorRT {version} cannot deserialize {path}: {why}. TensorRT logged: {said}. Plugin libraries "
        f"loaded besides TensorRT's own: {', '.join(map(str, plugins)) or 'none'}. To fix: "
        + "; or ".join(c[2] for c in causes)
    )


def trt_output_allocator(trt, cuda):
    """An ``IOutputAllocator`` for outputs whose shape depends on values (NonZero, NonMaxSuppression:
    -1 dims after ``set_input_shape``), as trtexec allocates them (samples/common/sampleDevice.h
    v10.3.0:483-523, sampleInference.cpp v10.3.0:1497-1509, 1734) and NVIDIA's
    samples/python/dds_faster_rcnn/infer.py does. TensorRT < 10 calls ``reallocate_output``, 10+
    ``reallocate_output_async`` (falling back to the former: pyCore.cpp v10.3.0:536-545), then
    ``notify_shape``; both are defined. Keeps one device buffer per output, grown as needed."""

    class OutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers, self.shapes = {}, {}

        def reallocate_output(self, tensor_name, memory, size, alignment):
            size = max(int(size), 1)  # TensorRT needs a non-null pointer even for an empty output
            if tensor_name not in self.buffers or self.buffers[tensor_name][0] < size:
                self.buffers[tensor_name] = (size, cuda.mem_alloc(size))
            return int(self.buffers[tensor_name][1])

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

    return OutputAllocator()


class TrtModel:
    """A TensorRT engine run as an application runs it (the tensor API of TensorRT >= 8.5, pycuda): each
    ``infer`` copies the batch host->device, enqueues ``execute_async_v3`` on a stream, copies the outputs
    device->host and synchronizes. Batches above the optimisation profile's max batch (1 for a dynamic
    batch built without --maxShapes: trtexec then fixes dynamic dims to 1) run in slices, concatenated;
    slices below its min are zero-padded. I/O in the engine's own dtypes; outputs come back float32.

    ``plugins``: the plugin libraries the build loaded, registered before deserialising (with
    TensorRT's own, :func:`load_trt_plugins`). Outputs with data-dependent shapes
    (``data_dependent``: NonZero, NonMaxSuppression) get their memory from an output allocator and
    come back in their real shape; their rows do not follow the batch, so a batch that needs slices
    or padding is refused for them (``join=False``, for timing only, runs it anyway)."""

    def __init__(self, path, plugins=()) -> None:
        trt, self._np = _import("tensorrt", TRT_PYTHON), _import("numpy")
        _import("pycuda.autoinit", TRT_PYTHON)  # a CUDA context on device 0, released at exit
        self._cuda = cuda = _import("pycuda.driver", TRT_PYTHON)
        self.version = trt.__version__
        if tuple(int(v) for v in re.findall(r"\d+", self.version)[:2]) < (8, 5):
            raise AgentError(
                "missing_runtime",
                f"TensorRT {self.version} is too old for EdgeForge's own runs of "
                "engines: they need its tensor API (TensorRT >= 8.5); upgrade JetPack/TensorRT",
            )
        self._logger = trt_logger(trt)  # TensorRT needs it alive as long as its objects
        self._plugin_libs = load_trt_plugins(trt, self._logger, list(plugins))
        self._runtime = trt.Runtime(self._logger)
        self._engine = e = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if e is None:
            raise AgentError("failed", trt_load_failure(self.version, path, self._logger.errors, list(plugins)))
        self._ctx, names = e.create_execution_context(), [e.get_tensor_name(i) for i in range(e.num_io_tensors)]
        inputs = [n for n in names if e.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        _single_input(path, inputs)
        self.input_name, self.output_names = inputs[0], [n for n in names if n not in inputs]
        self._dtypes = {n: self._np.dtype(trt.nptype(e.get_tensor_dtype(n))) for n in names}
        shape = tuple(e.get_tensor_shape(self.input_name))
        self.static = -1 not in shape  # a static input takes no --shapes in trtexec
        lo, _, hi = (shape, shape, shape) if self.static else e.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self._stream, self._host, self._dev = cuda.Stream(), {}, {}
        # with every input dimension known, a -1 left in an output's shape depends on values
        # (sampleInference.cpp v10.3.0:176 isDynamic): such outputs take their memory from an allocator
        self._ctx.set_input_shape(self.input_name, tuple(lo))
        self.data_dependent = [o for o in self.output_names if -1 in tuple(self._ctx.get_tensor_shape(o))]
        self._allocator = trt_output_allocator(trt, cuda) if self.data_dependent else None
        for o in self.data_dependent:
            if not self._ctx.set_output_allocator(o, self._allocator):
                raise AgentError("failed", f"TensorRT refused an output allocator for {o} (its errors are above)")

    def _buffers(self, name: str, shape: tuple) -> tuple:
        """Pinned host array and device allocation for ``name`` (kept; the device one grows as needed)."""
        if (name, shape) not in self._host:
            self._host[(name, shape)] = self._cuda.pagelocked_empty(shape, self._dtypes[name])
        host = self._host[(name, shape)]
        if name not in self._dev or self._dev[name][0] < host.nbytes:
            self._dev[name] = (host.nbytes, self._cuda.mem_alloc(max(host.nbytes, 1)))
        self._ctx.set_tensor_address(name, int(self._dev[name][1]))
        return host, self._dev[name][1]

    def _run(self, x) -> dict:
        n, np, cuda, ctx = len(x), self._np, self._cuda, self._ctx
        pad = max(self.min_batch - n, 0)
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
        if not ctx.set_input_shape(self.input_name, x.shape):
            raise AgentError("bad_input", f"the engine refuses input shape {x.shape} for {self.input_name}")
        host, dev = self._buffers(self.input_name, x.shape)
        host[...] = x
        fixed = [o for o in self.output_names if o not in self.data_dependent]
        outs = {o: self._buffers(o, tuple(ctx.get_tensor_shape(o))) for o in fixed}
        cuda.memcpy_htod_async(dev, host, self._stream)
        if not ctx.execute_async_v3(self._stream.handle):
            raise AgentError("failed", "TensorRT's execute_async_v3 failed (its errors are above)")
        # the allocator has the data-dependent outputs' memory and shapes once enqueueV3 has returned
        # (notifyShape: "sometime between when it calls reallocateOutput and enqueueV3 returns")
        for o in self.data_dependent:
            shape = self._allocator.shapes[o]
            empty = cuda.pagelocked_empty if 0 not in shape else np.empty  # nothing to copy into an empty one
            outs[o] = (empty(shape, self._dtypes[o]), self._allocator.buffers[o][1])
        for o_host, o_dev in outs.values():
            if o_host.nbytes:
                cuda.memcpy_dtoh_async(o_host, o_dev, self._stream)
        self._stream.synchronize()
        return {
            o: np.array(h[:n] if pad and o not in self.data_dependent else h, dtype=np.float32)
            for o, (h, _) in outs.items()
        }

    def infer(self, x, join: bool = True) -> dict:
        """Every output for the batch ``x``; with ``join`` false (timing) the outputs of several calls
        are not joined: data-dependent ones come back as a list, one array per call."""
        n, mb = len(x), self.max_batch
        calls = -(-n // mb)
        if join and self.data_dependent and (calls > 1 or n < self.min_batch):
            how = f"{calls} calls of at most {mb}" if calls > 1 else f"one call padded to {self.min_batch}"
            raise AgentError(
                "bad_input",
                f"outputs {self.data_dependent} have data-dependent shapes (NonZero, NonMaxSuppression, ...): their "
                f"rows do not follow the batch, so a batch of {n} run as {how} (the engine's profile takes batch "
                f"{self.min_batch} to {mb} for {self.input_name}) cannot be joined. Run batches the profile takes "
                "(one call each), or give the model per-sample outputs (e.g. pad the detections to a fixed count)",
            )
        x = self._np.ascontiguousarray(x, dtype=self._dtypes[self.input_name])
        parts = [self._run(x[i : i + mb]) for i in range(0, n, mb)]
        if len(parts) == 1:
            return parts[0]
        return {
            o: [p[o] for p in parts] if o in self.data_dependent else self._np.concatenate([p[o] for p in parts])
            for o in self.output_names
        }


#: runtimes whose models the agent's other modules define (``<name>_model.py``, each registering itself on
#: import): ``MODELS[name](artifact, threads, choices)`` loads a host-converted artifact (a model with
#: ``input_name``, ``output_names``, ``min_batch``, ``max_batch``, ``data_dependent``, ``infer`` and
#: optionally ``steps``), ``VERSIONS[name]()`` is the runtime package's version
MODELS = {}
VERSIONS = {}


def runtime_version(runtime: str) -> str:
    if runtime in VERSIONS:
        return VERSIONS[runtime]()
    return _import("onnxruntime").__version__ if runtime == "onnxruntime" else _import("openvino").get_version()


def measure(fn, warmup_s: float, min_duration_s: float, min_iterations: int, clock=time.perf_counter) -> list:
    """Per-call seconds of ``fn``: after a time-based warm-up (>= 1 call), until both minimums are met."""
    end = clock() + warmup_s
    fn()
    while clock() < end:
        fn()
    lat = []
    start = clock()
    while len(lat) < min_iterations or clock() - start < min_duration_s:
        t0 = clock()
        fn()
        lat.append(clock() - t0)
    return lat


# ---- peak: a large GEMM timed in the runtime itself, per precision (in the spirit of the Empirical Roofline Toolkit)


def _pb(num: int, v) -> bytes:
    """One protobuf field: an int as a varint, bytes/str length-delimited (ONNX's wire format, no onnx package)."""
    out, (wire, data) = bytearray(), ((0, v) if isinstance(v, int) else (2, v.encode() if isinstance(v, str) else v))
    for n in [num << 3 | wire, data] if wire == 0 else [num << 3 | wire, len(data)]:
        while True:
            out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                break
    return bytes(out) + (b"" if wire == 0 else data)


def gemm_onnx(n: int, layers: int, family: str, np) -> bytes:
    """``layers`` chained (n, n) @ (n, n) MatMuls on resident weights (n x n input): fp32/fp16 as is; int8 as
    Q/DQ (uint8 activations, int8 weights: what VNNI/AMX/dot-product run) that ORT and OpenVINO fuse to int8 GEMMs."""
    rng, ft = np.random.default_rng(0), 10 if family == "fp16" else 1  # TensorProto FLOAT16 / FLOAT

    def tensor(name, dtype, a):
        a = np.asarray(a)
        return b"".join(_pb(1, d) for d in a.shape) + _pb(2, dtype) + _pb(8, name) + _pb(9, a.tobytes())

    def value(name, dtype):
        dims = b"".join(_pb(1, _pb(1, n)) for _ in range(2))
        return _pb(1, name) + _pb(2, _pb(1, _pb(1, dtype) + _pb(2, dims)))

    node = lambda op, ins, out: _pb(1, b"".join(_pb(1, i) for i in ins) + _pb(2, out) + _pb(4, op))  # noqa: E731
    body, prev, npt = b"", "x", np.float16 if ft == 10 else np.float32
    if family == "int8":
        body += _pb(5, tensor("s", 1, np.float32(4 / 127))) + _pb(5, tensor("z", 2, np.uint8(128)))
        body += _pb(5, tensor("sw", 1, np.float32(1 / 127 / n**0.5))) + _pb(5, tensor("zw", 3, np.int8(0)))
    for i in range(layers):
        if family == "int8":
            w = rng.integers(-127, 128, (n, n), dtype=np.int8)
            body += _pb(5, tensor(f"w{i}", 3, w)) + node("DequantizeLinear", [f"w{i}", "sw", "zw"], f"wd{i}")
            body += node("QuantizeLinear", [prev, "s", "z"], f"q{i}") + node(
                "DequantizeLinear", [f"q{i}", "s", "z"], f"d{i}"
            )
            body += node("MatMul", [f"d{i}", f"wd{i}"], f"y{i}")
        else:  # random signs / sqrt(n): the activations keep their scale (no overflow, no denormals)
            w = (rng.integers(0, 2, (n, n)) * 2 - 1) / n**0.5
            body += _pb(5, tensor(f"w{i}", ft, w.astype(npt))) + node("MatMul", [prev if i else "x", f"w{i}"], f"y{i}")
        prev = f"y{i}"
    body += _pb(2, "gemm") + _pb(11, value("x", ft)) + _pb(12, value(prev, ft))
    return _pb(1, 8) + _pb(8, _pb(1, "") + _pb(2, 13)) + _pb(7, body)


#: per runtime: family -> the precision it runs the GEMM in (OpenVINO's INFERENCE_PRECISION_HINT names;
#: ORT's fp16 is the fp16 model as its CPU provider runs it, with casts to fp32 where it lacks fp16 kernels)
PEAK_PRECISIONS = {
    "onnxruntime": {"fp32": "fp32", "fp16": "fp16", "int8": "u8s8"},
    "openvino": {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "u8s8"},
}
PEAK_PASSES = 2


def _peak_session(runtime: str, family: str, model: bytes, threads: int, folder: Path):
    """A callable running the GEMM once, or the reason this runtime cannot run ``family`` here."""
    np = _import("numpy")
    if runtime == "onnxruntime":
        ort = _import("onnxruntime")
        so = ort.SessionOptions()
        so.log_severity_level, so.intra_op_num_threads, so.inter_op_num_threads = 3, threads, 1
        try:
            s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        except Exception as e:
            return f"onnxruntime has no CPU kernels for this {family} GEMM: {_first_line(e)}"
        x = np.ones(s.get_inputs()[0].shape, np.float16 if family == "fp16" else np.float32)
        return lambda: s.run(None, {"x": x})
    core = _import("openvino").Core()
    caps, hint = core.get_property(OV_DEVICE, "OPTIMIZATION_CAPABILITIES"), PEAK_PRECISIONS[runtime][family]
    if family in ("bf16", "fp16") and family.upper() not in caps:
        return f"the OpenVINO {OV_DEVICE} plugin does not run {family} here (OPTIMIZATION_CAPABILITIES {caps})"
    (folder / "gemm.onnx").write_bytes(model)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    config["INFERENCE_PRECISION_HINT"] = "f32" if family == "int8" else hint
    try:
        compiled = core.compile_model(core.read_model(str(folder / "gemm.onnx")), OV_DEVICE, config)
    except Exception as e:  # OpenVINO raises RuntimeError subclasses with its own text
        return f"OpenVINO cannot compile the {family} GEMM for {OV_DEVICE}: {_first_line(e)}"
    ran = ov_runtime_precisions(compiled)
    want = ("I8", "U8") if family == "int8" else (hint.upper(),)
    if not any(ran.get(p) for p in want):
        return f"OpenVINO compiled the {family} GEMM with no {'/'.join(want)} op (runtime precisions {ran})"
    request, x = compiled.create_infer_request(), np.ones((int(compiled.inputs[0].shape[0]),) * 2, np.float32)
    return lambda: request.infer({0: x}, share_inputs=True)


def cmd_peak(req: dict) -> dict:
    """GFLOP/s (int8: GOP/s) per precision family the runtime runs here, on all ``threads``: ``layers``
    chained (n x n) GEMMs for each n of ``sizes`` (cache-resident to larger, as the Empirical Roofline
    Toolkit sweeps working sets). Every session is built first, then timed in ``PEAK_PASSES`` passes
    over all of them (a burst of other load then costs one pass, not a family), each call once to warm
    up and the best call within its share of ``budget_s`` per family counting; the best size wins.
    ``{family: {"skipped": why}}`` where the runtime cannot run the family. A runtime that converts on the
    host (``MODELS``) gets its GEMMs converted there (``models``: ``{family: artifact}``, one size, input
    ``sample_shape``), loaded with its model class and timed the same way."""
    runtime, np, layers, budget = _get(req, "runtime"), _import("numpy"), _get(req, "layers"), _get(req, "budget_s")
    threads, sizes, models = _get(req, "threads") or os.cpu_count() or 1, _get(req, "sizes"), _get(req, "models")
    if runtime not in PEAK_PRECISIONS and not (runtime in MODELS and models):
        raise AgentError(
            "bad_input",
            f"no peak kernel for runtime {runtime!r}; measured: {', '.join(PEAK_PRECISIONS)}, or a runtime of "
            "MODELS given its converted GEMMs (models)",
        )
    res, runs, folder = {}, {}, Path(_get(req, "out_dir"))
    folder.mkdir(parents=True, exist_ok=True)
    for family in PEAK_PRECISIONS.get(runtime, {}):
        for n in sizes:
            run = _peak_session(runtime, family, gemm_onnx(n, layers, family, np), threads, folder)
            if isinstance(run, str):
                res[family] = {"skipped": run}
                break
            runs[family, n] = (run, [])
    converted = {} if runtime in PEAK_PRECISIONS else models  # a runtime with its own ONNX GEMMs times those
    for family, artifact in converted.items():
        try:
            model, x = MODELS[runtime](artifact, threads, {}), np.ones(_get(req, "sample_shape"), np.float32)
        except AgentError as e:
            res[family] = {"skipped": f"{runtime} cannot load its {family} GEMM here: {e}"}
            continue
        runs[family, sizes[0]] = (lambda model=model, x=x: model.infer(x), [])
    for _ in range(PEAK_PASSES):
        for run, times in runs.values():
            run()
            end = time.perf_counter() + budget / len(sizes) / PEAK_PASSES
            while len(times) < 3 or time.perf_counter() < end:
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
    for (family, n), (_, times) in runs.items():
        gflops = 2 * n**3 * layers / min(times) / 1e9
        if gflops > res.get(family, {}).get("gflops", 0):
            rt_precision = PEAK_PRECISIONS[runtime][family] if runtime in PEAK_PRECISIONS else f"{family} (converted)"
            shape = [layers, n, n, n]
            res[family] = {"gflops": gflops, "runtime": runtime, "runtime_precision": rt_precision, "shape": shape}
            res[family]["seconds"] = min(times)
    log(f"peaks: {res}")
    return {"runtime": runtime, "runtime_version": runtime_version(runtime), "threads": threads, "measured": res}


def time_chain(steps, x, iterations: int, warmup: int = 2, max_s=None, clock=time.perf_counter) -> dict:
    """Per-call seconds of each of ``steps`` (``[(name, fn), ...]``, each ``fn`` taking the previous
    one's result, the first ``x``) and of the whole chain (``"total"``), over the same ``iterations``
    calls after ``warmup`` untimed ones: ``{name: [s, ...], ..., "total": [s, ...]}``. With ``max_s``,
    fewer calls once the timed ones took that long (at least 5)."""
    times: dict = {name: [] for name, _ in steps}
    times["total"] = []
    for i in range(warmup + iterations):
        if max_s is not None and len(times["total"]) >= 5 and sum(times["total"]) > max_s:
            break
        v, start = x, clock()
        t0 = start
        for name, fn in steps:
            v = fn(v)
            t1 = clock()
            if i >= warmup:
                times[name].append(t1 - t0)
            t0 = t1
        if i >= warmup:
            times["total"].append(t0 - start)
    return times


# ---- commands


def _name(v) -> bool:
    return isinstance(v, str) and v != ""


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


#: request key -> (check, what the value must be); any other key is a path or file name
CHECKS = {
    "trtexec": (lambda v: v is None or _name(v), "null or a path"),
    "runtime": (
        lambda v: v in ("onnxruntime", "openvino", "tensorrt") or v in MODELS,
        "onnxruntime, openvino, tensorrt or a runtime of the agent's modules (MODELS)",
    ),
    "sample_shape": (
        lambda v: isinstance(v, list) and len(v) > 0 and all(map(_count, v)),
        "one sample's shape (ints > 0)",
    ),
    "precision": (
        lambda v: v in ("fp32", "fp16", "bf16") or (_name(v) and v.startswith("int8-")),
        "fp32, fp16, bf16 or int8-*",
    ),
    "emulated": (lambda v: isinstance(v, bool), "true (the device has no native compute for the precision) or false"),
    "threads": (lambda v: v is None or _count(v), "null or an int > 0"),
    "timeout": (lambda v: v is None or (isinstance(v, (int, float)) and v > 0), "null or seconds > 0"),
    "io_names": (lambda v: v is None or isinstance(v, dict), 'null or {"inputs": [...], "outputs": [...]}'),
    "input_name": (lambda v: v is None or _name(v), "null or the engine's input tensor name"),
    "plugins": (
        lambda v: v is None or (isinstance(v, list) and all(map(_name, v))),
        "null or a list of the plugin libraries (paths on the device) the TensorRT build loaded",
    ),
    "argv": (lambda v: isinstance(v, list) and len(v) > 0 and all(map(_name, v)), "a command line (strings)"),
    "batch_sizes": (lambda v: isinstance(v, list) and len(v) > 0 and all(map(_count, v)), "a list of ints > 0"),
    "batch_size": (_count, "an int > 0"),
    "min_iterations": (_count, "an int > 0"),
    "sizes": (lambda v: isinstance(v, list) and len(v) > 0 and all(map(_count, v)), "a list of GEMM sides > 0"),
    "layers": (_count, "an int > 0 (chained GEMMs)"),
    "models": (
        lambda v: v is None or (isinstance(v, dict) and all(_name(k) and _name(p) for k, p in v.items())),
        "null or {family: the path of the GEMM the host converted}",
    ),
    "budget_s": (lambda v: isinstance(v, (int, float)) and v > 0, "seconds > 0"),
    "warmup_s": (lambda v: isinstance(v, (int, float)) and v >= 0, "seconds >= 0"),
    "min_duration_s": (lambda v: isinstance(v, (int, float)) and v >= 0, "seconds >= 0"),
    "trtexec_args": (lambda v: isinstance(v, list) and all(map(_name, v)), "a list of trtexec options"),
    "choices": (lambda v: v is None or isinstance(v, dict), "null or the build's device choices (an object)"),
    "offline_batch_sizes": (lambda v: isinstance(v, list) and all(map(_count, v)), "a list of ints > 0"),
    "profile_batches": (
        lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(map(_count, v))),
        "null or [min, max] batch of the engine's profile",
    ),
    "end_to_end_iterations": (lambda v: v is None or _count(v), "null or an int > 0"),
    "end_to_end_max_s": (lambda v: v is None or (isinstance(v, (int, float)) and v > 0), "null or seconds > 0"),
}
OPTIONAL = {
    "trtexec": None,
    "emulated": False,
    "threads": None,
    "timeout": None,
    "io_names": None,
    "input_name": None,
    "trtexec_args": [],
    "profile_batches": None,
    "plugins": None,
    "sizes": [256, 512],
    "layers": 4,
    "models": None,
    "budget_s": 0.3,  # per family: the best call of 0.3 s gave the same peaks as 0.5 s (within 0.5%, Zen 4)
    "end_to_end_iterations": None,
    "end_to_end_max_s": None,
    "choices": None,
    "offline_batch_sizes": [],
}


def _get(req: dict, key: str):
    check, what = CHECKS.get(key, (_name, "a path or file name"))
    value = req.get(key, OPTIONAL.get(key, ...))
    if value is ... or not check(value):
        raise AgentError("bad_input", f"request key {key!r} must be {what}, not {req.get(key)!r}")
    return value


def _file(req: dict, key: str) -> Path:
    path = Path(_get(req, key))
    if not path.is_file():
        raise AgentError("bad_input", f"{key} file {str(path)!r} does not exist (cwd {os.getcwd()}); upload it first")
    return path


def _hashes(folder: Path, files=None) -> dict:
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if files is None else files
    return {p.relative_to(folder).as_posix(): sha256(p) for p in files}


def build_tensorrt(req: dict) -> dict:
    """Run the host's trtexec command line (``argv``) in ``out_dir``, its stdout and stderr streamed
    into ``out_dir/<log>``. A non-zero exit is still a result: the host reads the log and decides."""
    argv, engine, timeout, log_name = _get(req, "argv"), _get(req, "engine"), _get(req, "timeout"), _get(req, "log")
    exe = os.path.abspath(argv[0]) if os.sep in argv[0] else argv[0]  # relative to the agent's cwd, not out_dir
    if shutil.which(exe) is None:
        raise AgentError(
            "missing_runtime",
            f"{argv[0]} is not an executable on this device (cwd {os.getcwd()}, "
            f"PATH {os.environ.get('PATH', '')}); install TensorRT or fix the target's trtexec path",
        )
    out_dir = Path(_get(req, "out_dir"))
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / log_name
    if (out_dir / engine).is_file():
        (out_dir / engine).unlink()  # an earlier build's engine must not pass for this one's
    log(f"running {' '.join(argv)} in {out_dir}")
    t0 = time.perf_counter()
    with open(log_path, "wb") as f:
        proc = subprocess.Popen([exe] + argv[1:], cwd=str(out_dir), stdout=f, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AgentError(
                "failed", f"{argv[0]} ran past its {timeout} s timeout and was killed; its output is in {log_path}"
            ) from None
    seconds = time.perf_counter() - t0
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    log(f"{argv[0]} exited with {code} after {seconds:.1f} s; the end of {log_path}:\n{tail}")
    return {
        "exit_code": code,
        "artifact": engine if (out_dir / engine).is_file() else None,
        "files": _hashes(out_dir),
        "build_seconds": seconds,
        "runtime": "tensorrt",
    }


#: trtexec's measurement defaults, from its "=== Inference Options ===" echo in tests/fixtures/trtexec logs of
#: runs without these flags (8.2, 8.4, 8.6, 10.16; 11.0.0: trt11.0_b200_build_skipinference_ok.log) and 11.0's
#: --help (NVIDIA/trt-samples-for-hackathon-cn @85ce6efc cookbook/07-Tool/trtexec/Help.txt: --includeDataTransfers,
#: --noCudaGraph, --noSpinWait are new; --useSpinWait, --useCudaGraph, --noDataTransfers became no-ops).
TRTEXEC_DEFAULTS = {
    10: {
        "cuda_graph": False,
        "data_transfers": True,
        "spin_wait": False,
        "source": "trtexec <= 10.x prints Data transfers: Enabled, Spin-wait: Disabled, CUDA Graph: Disabled",
    },
    11: {
        "cuda_graph": True,
        "data_transfers": False,
        "spin_wait": True,
        "source": "trtexec 11.x prints Data transfers: Disabled, Spin-wait: Enabled, CUDA Graph: Enabled",
    },
}
#: what every version is asked to measure, like TrtModel.infer (copies in and out, no CUDA graph), spin-waiting
TRTEXEC_SETTINGS = {"cuda_graph": False, "data_transfers": True, "spin_wait": True}
TRTEXEC_FLAGS = {10: ["--useSpinWait"], 11: ["--includeDataTransfers", "--noCudaGraph"]}


def trtexec_runs(req: dict, model, sample_shape: tuple, loop: list) -> dict:
    """trtexec's own figure beside EdgeForge's: ``trtexec --loadEngine`` per batch size with the request's
    warm-up (ms), duration (s, rounded up) and iterations, measuring as ``TRTEXEC_SETTINGS``, plus the
    build's ``trtexec_args`` (its plugin libraries, DLA core, --versionCompatible: what loading the
    engine needs). Batches outside the profile (the model's, else ``profile_batches`` from the build
    record) are skipped. Returns ``{"tensorrt", "defaults", "settings", "runs": {"b<B>": {"argv",
    "exit_code", "log"} or {"skipped"}}}``; a failed run is still a result (the host reads its log)."""
    exe, engine = _get(req, "trtexec"), os.path.abspath(_get(req, "artifact"))
    exe = os.path.abspath(exe) if os.sep in exe else exe
    banner = shutil.which(exe) and _search(r"\[TensorRT v(\d+)\]", _sh(exe, "--help"))
    if not banner:
        raise AgentError(
            "missing_runtime",
            f"trtexec {exe!r} does not run here or prints no [TensorRT vN] banner "
            "for --help; install TensorRT or fix the target's trtexec path",
        )
    version = decode_trt_version(int(banner))
    major = 11 if int(version.split(".")[0]) >= 11 else 10
    name, runs = getattr(model, "input_name", None) or _get(req, "input_name"), {}
    warmup_s, duration_s, iterations = loop
    lo, hi = (model.min_batch, model.max_batch) if model is not None else _get(req, "profile_batches") or (0, 0)
    for b in _get(req, "batch_sizes"):
        skip = (
            f"batch {b} is outside the engine's optimisation profile (batch {lo} to "
            f"{hi} for {name}); EdgeForge's own figure runs it in slices or padded"
            if hi and not lo <= b <= hi
            else None
            if name
            else "the input name is unknown: no TensorRT Python and no input_name requested"
        )
        if skip:
            runs[f"b{b}"] = {"skipped": skip}
            continue
        dims = "x".join(map(str, (b, *sample_shape)))
        shapes = [] if getattr(model, "static", False) else [f"--shapes={name}:{dims}"]
        argv = [
            exe,
            f"--loadEngine={engine}",
            *shapes,
            f"--warmUp={round(warmup_s * 1000)}",
            f"--duration={math.ceil(duration_s)}",
            f"--iterations={iterations}",
            *TRTEXEC_FLAGS[major],
            *_get(req, "trtexec_args"),
        ]
        log(f"running {' '.join(argv)}")  # bounded by its own --warmUp and --duration
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        runs[f"b{b}"] = {"argv": argv, "exit_code": proc.returncode, "log": proc.stdout}
    return {"tensorrt": version, "defaults": TRTEXEC_DEFAULTS[major], "settings": TRTEXEC_SETTINGS, "runs": runs}


def check_converted(req: dict) -> dict:
    """A host-converted artifact (``artifact``, uploaded): loaded by its runtime and run once on a batch of
    zeros of the model's smallest batch (``sample_shape``: one sample's (C, H, W)), so that a device whose
    runtime cannot run it fails the build, not the benchmark. ``meta``: the model's ``describe()``, if any."""
    runtime, artifact, np = _get(req, "runtime"), _file(req, "artifact"), _import("numpy")
    if runtime not in MODELS:
        raise AgentError("missing_runtime", f"this agent has no {runtime!r} runtime; it knows {sorted(MODELS)}")
    t0 = time.perf_counter()
    model = MODELS[runtime](artifact, _get(req, "threads"), _get(req, "choices") or {})
    x = np.zeros((model.min_batch or 1, *_get(req, "sample_shape")), dtype=np.float32)
    outs = model.infer(x)
    missing = [n for n in model.output_names if n not in outs]
    if missing:
        raise AgentError("failed", f"{runtime} ran {artifact.name} but returned no {', '.join(missing)}")
    describe = getattr(model, "describe", None)
    return {
        "artifact": artifact.name,
        "files": {},
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
        "build_seconds": time.perf_counter() - t0,
        "meta": {"checked_on_device": True, **(describe() if describe else {})},
    }


def cmd_build(req: dict) -> dict:
    runtime = _get(req, "runtime")
    if runtime == "tensorrt":
        return build_tensorrt(req)
    if runtime in MODELS:
        return check_converted(req)
    onnx_path, out_dir, precision, threads = (
        _file(req, "onnx"),
        Path(_get(req, "out_dir")),
        _get(req, "precision"),
        _get(req, "threads"),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if runtime == "onnxruntime":
        artifact, meta = build_onnxruntime(onnx_path, out_dir, threads, choices=_get(req, "choices"))
    else:
        artifact, meta = build_openvino(
            onnx_path, out_dir, precision, threads, _get(req, "io_names"), _get(req, "emulated"), _get(req, "choices")
        )
    written = [artifact] + ([artifact.with_suffix(".bin")] if runtime == "openvino" else [])
    return {
        "artifact": artifact.name,
        "files": _hashes(out_dir, written),
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
        "build_seconds": time.perf_counter() - t0,
        "meta": meta,
    }


def _load(req: dict, trt_optional: bool = False) -> tuple:
    """``(runtime, model, x, numpy)``: the request's model and its float32 ``input`` samples; with
    ``trt_optional``, a TensorRT model that cannot load for want of its Python packages is that error."""
    runtime = _get(req, "runtime")
    artifact, threads, path, np = _file(req, "artifact"), _get(req, "threads"), _file(req, "input"), _import("numpy")
    try:
        x = np.asarray(np.load(str(path), allow_pickle=False), dtype=np.float32)
        if x.ndim == 0 or len(x) == 0:
            raise ValueError(f"no samples (shape {x.shape})")
    except ValueError as e:
        raise AgentError("bad_input", f"input {str(path)!r} is not an (N, ...) .npy array of numbers: {e}") from e
    if runtime == "tensorrt":
        try:
            return runtime, TrtModel(artifact, _get(req, "plugins") or []), x, np
        except AgentError as e:
            if not trt_optional or e.kind != "missing_runtime":
                raise
            return runtime, e, x, np
    choices = _get(req, "choices") or {}
    if runtime in MODELS:
        return runtime, MODELS[runtime](artifact, threads, choices), x, np
    if runtime == "onnxruntime":
        return runtime, OrtModel(artifact, threads, choices=choices), x, np
    return runtime, OvModel(artifact, threads, choices.get("single_stream")), x, np


def thermal_zones(sysfs: str = "/") -> dict:
    """Every readable thermal zone under ``<sysfs>/sys/class/thermal``: ``{type: deg C}`` (a repeated
    type gets ``.<zone>`` appended); a zone without a numeric ``temp`` is left out, never guessed."""
    temps = {}
    zones = Path(sysfs, "sys/class/thermal").glob("thermal_zone*")
    for zone in sorted(zones, key=lambda z: int(z.name[12:]) if z.name[12:].isdigit() else -1):
        milli = _read(str(zone / "temp")).strip()
        if milli.lstrip("-").isdigit():
            name = _read(str(zone / "type")).strip() or zone.name
            temps[name if name not in temps else f"{name}.{zone.name}"] = int(milli) / 1000
    return temps


def cpu_clocks(sysfs: str = "/") -> dict:
    """``{"cpu<N>": {"cur_mhz", "max_mhz"}}`` from cpufreq's ``scaling_cur_freq`` and ``cpuinfo_max_freq``
    (kHz) under ``<sysfs>/sys/devices/system/cpu``; a CPU without a current clock is left out, an
    unreadable maximum is None (a VM without cpufreq: {})."""
    out = {}
    cpus = Path(sysfs, "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")
    for d in sorted(cpus, key=lambda c: int(c.parent.name[3:]) if c.parent.name[3:].isdigit() else -1):
        cur, top = (_read(str(d / f)).strip() for f in ("scaling_cur_freq", "cpuinfo_max_freq"))
        if cur.isdigit():
            out[d.parent.name] = {"cur_mhz": int(cur) / 1000, "max_mhz": int(top) / 1000 if top.isdigit() else None}
    return out


def hygiene() -> dict:
    """Conditions a measurement runs under (volatile: never part of the fingerprint): 1-minute
    load average, every thermal zone's temperature (deg C), CPU clock range (MHz), power mode."""
    mhz = [c["cur_mhz"] for c in cpu_clocks().values()]
    return {
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "temperature_c": thermal_zones(),
        "cpu_mhz": {"min": min(mhz), "max": max(mhz)} if mhz else None,
        "power_mode": _search(r"NV Power Mode:\s*(\S+)", _sh("nvpmodel", "-q")),
    }


def cmd_benchmark(req: dict) -> dict:
    """Per-call seconds per batch size, cold start, hygiene. TensorRT also gets ``trtexec`` (see
    :func:`trtexec_runs`); without its Python packages ``latency_s`` is {}, ``cold`` null and
    ``latency_unavailable`` says what to install. With ``end_to_end_iterations``, ONNX Runtime and
    OpenVINO also time batch 1's input copy, compute and output copy apart (``io_split_s``:
    :func:`time_chain` of the model's ``steps``)."""
    before, t0 = hygiene(), time.perf_counter()
    runtime, model, x, np = _load(req, trt_optional=True)
    sizes, loop = _get(req, "batch_sizes"), [_get(req, k) for k in ("warmup_s", "min_duration_s", "min_iterations")]
    res = {"latency_s": {}, "cold": None}
    if isinstance(model, AgentError):
        res["latency_unavailable"] = str(model)
    else:
        # timing only: outputs of data-dependent shape from several calls need not be joined
        infer = (lambda b: model.infer(b, join=False)) if runtime == "tensorrt" else model.infer
        t1 = time.perf_counter()
        infer(np.ascontiguousarray(x[:1]))  # the first (cold) inference, timed on its own
        res["cold"] = {"load_s": t1 - t0, "first_inference_s": time.perf_counter() - t1}
        offline, off_sizes = None, _get(req, "offline_batch_sizes")
        if off_sizes and runtime != "tensorrt":
            offline = offline_runner(runtime, _file(req, "artifact"), _get(req, "threads"), _get(req, "choices"))
        for b in sizes:
            batch = np.ascontiguousarray(x[np.arange(b) % len(x)])  # the samples repeated up to the batch size
            run = offline if offline and b in off_sizes else infer
            res["latency_s"][f"b{b}"] = measure(lambda: run(batch), *loop)  # noqa: B023 (called here)
            log(f"b{b}: {len(res['latency_s'][f'b{b}'])} calls")
        # batch 1 split into input copy, compute, output copy (trtexec splits TensorRT's)
        n, max_s = _get(req, "end_to_end_iterations"), _get(req, "end_to_end_max_s")
        if n and runtime != "tensorrt" and hasattr(model, "steps"):
            res["io_split_s"] = time_chain(model.steps(), np.ascontiguousarray(x[:1]), n, max_s=max_s)
    if runtime == "tensorrt":
        trt, exe = (None if isinstance(model, AgentError) else model), _get(req, "trtexec")
        if exe is None and trt is None:
            raise model
        res["trtexec"] = trtexec_runs(req, trt, x.shape[1:], loop) if exe else None
        res["runtime_version"] = trt.version if trt else res["trtexec"]["tensorrt"]
        # calls per batch, for the batch sizes above the engine's profile (timed in slices)
        res["slices"] = {f"b{b}": -(-b // trt.max_batch) for b in sizes if trt and b > trt.max_batch}
    else:
        res["runtime_version"] = runtime_version(runtime)
    return {**res, "hygiene": {"before": before, "after": hygiene()}}


def save_npz(out, arrays: dict) -> None:
    """``arrays`` as float32 in an ``.npz`` at ``out`` (atomically): np.savez's layout, without its
    reserved keyword names (an output may be called ``file``)."""
    np, out = _import("numpy"), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(str(tmp), "w") as z:
        for name, value in arrays.items():
            with z.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, np.asarray(value, dtype=np.float32))
    os.replace(str(tmp), str(out))


def cmd_infer(req: dict) -> dict:
    _, model, x, _np = _load(req)
    out, bs = Path(_get(req, "output")), _get(req, "batch_size")
    save_npz(out, infer_all(model, (x[i : i + bs] for i in range(0, len(x), bs))))
    return {"outputs": model.output_names, "samples": len(x)}


COMMANDS = {"probe": cmd_probe, "peak": cmd_peak, "build": cmd_build, "benchmark": cmd_benchmark, "infer": cmd_infer}


def main(argv: list | None = None) -> int:
    """The command line; fd 1 then points at stderr (native libraries' writes included), the reply at stdout."""
    argv = sys.argv[1:] if argv is None else argv
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        try:
            req = json.loads(argv[1]) if len(argv) == 2 and argv[0] in COMMANDS else None
        except ValueError:
            req = None
        if not isinstance(req, dict):
            commands = "|".join(COMMANDS)  # with the commands the zipapp's modules added
            raise AgentError("usage", f"{USAGE.replace('probe|peak|build|benchmark|infer', commands)}; got {argv!r}")
        reply, code = {"ok": True, "agent_version": AGENT_VERSION, "result": COMMANDS[argv[0]](req)}, 0
    except Exception as e:
        if not isinstance(e, AgentError):
            traceback.print_exc()
            e = AgentError("failed", f"{argv[0]} failed: {type(e).__name__}: {e}")
        reply = {"ok": False, "agent_version": AGENT_VERSION, "kind": e.kind, "error": str(e)}
        code = 2 if e.kind == "usage" else 1
        log(f"error ({e.kind}): {e}")
    sys.stdout.flush()
    with os.fdopen(reply_fd, "w") as out:
        out.write(json.dumps(reply) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
