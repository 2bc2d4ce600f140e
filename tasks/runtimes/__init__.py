"""Runtimes by registered name. Backends are imported lazily, so that a machine without
(say) TensorRT can still run everything else."""

from __future__ import annotations

import importlib

from tasks.registry import UnknownName
from tasks.runtimes.base import BuildError, BuildOptions, Built, Runtime, Session

_MODULES = {
    "coreml": "tasks.runtimes.coreml_rt:CoreMLRuntime",
    "executorch": "tasks.runtimes.executorch_rt:ExecuTorchRuntime",
    "hailo": "tasks.runtimes.hailo_rt:HailoRuntime",
    "litert": "tasks.runtimes.litert_rt:LiteRTRuntime",
    "onnxruntime": "tasks.runtimes.onnxruntime_rt:OnnxRuntime",
    "openvino": "tasks.runtimes.openvino_rt:OpenVinoRuntime",
    "tensorrt": "tasks.runtimes.tensorrt_rt:TensorRTRuntime",
    "torch": "tasks.runtimes.torch_rt:TorchRuntime",
}


def names() -> list[str]:
    return sorted(_MODULES)


def get_runtime(name: str) -> Runtime:
    if name not in _MODULES:
        raise UnknownName(f"unknown runtime {name!r}; registered: {', '.join(names())}")
    module, _, cls = _MODULES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["BuildError", "BuildOptions", "Built", "Runtime", "Session", "get_runtime", "names"]
