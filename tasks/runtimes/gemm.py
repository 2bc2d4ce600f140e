"""The peak GEMM of a runtime that converts on the host (ExecuTorch, LiteRT).

ONNX Runtime's and OpenVINO's measured peaks are the agent's chained (n x n) GEMMs run in the runtime
itself (:func:`tasks.agent.agent.gemm_onnx`). A runtime that converts on the host has no ONNX front end on
the device, so the same FP32 GEMMs are converted here by the runtime's own converter
(:meth:`Runtime.convert`, as a build is) at each precision family it builds: fp32, and int8
(``int8-minmax``, calibrated by the converter on random activations of the GEMM's scale). The agent then
times each converted model with the runtime's model class (``agent.MODELS``), as it times the ONNX ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from tasks.agent import agent
from tasks.runtimes import get_runtime
from tasks.runtimes.base import BuildError, HostSource

#: runtime -> {family: the precision its GEMM is converted at}
FAMILIES = {
    "executorch": {"fp32": "fp32", "int8": "int8-minmax"},
    "litert": {"fp32": "fp32", "int8": "int8-minmax"},
}
#: the GEMM: LAYERS chained (SIDE x SIDE) @ (SIDE x SIDE) MatMuls (ONNX Runtime's and OpenVINO's largest size)
SIDE, LAYERS = 512, 4


def input_shape(runtime: str, side: int = SIDE) -> list[int]:
    """The GEMM's input as ``runtime``'s model takes it: LiteRT's front end (onnx2tf) takes image-like 4-D
    inputs only (MatMul broadcasts over the two leading 1s), ExecuTorch the (side, side) matrix."""
    return [1, 1, side, side] if runtime == "litert" else [side, side]


def _reshaped(onnx_path: Path, shape: list[int]) -> Path:
    """The GEMM with input and output ``shape`` (the same MatMuls, broadcast), beside ``onnx_path``."""
    model = onnx.load(str(onnx_path))
    for v in (model.graph.input[0], model.graph.output[0]):
        dims = v.type.tensor_type.shape.dim
        del dims[:]
        for d in shape:
            dims.add().dim_value = d
    onnx.checker.check_model(model)
    out = onnx_path.with_name(f"gemm.{len(shape)}d.onnx")
    onnx.save(model, str(out))
    return out


def _torch_gemm(onnx_path: Path):
    """The ONNX GEMM as a torch module (bias-free Linears holding its weights): ExecuTorch converts from torch."""
    import torch

    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    layers = []
    for i in range(len(weights)):
        w = weights[f"w{i}"]  # y = x @ w; Linear computes x @ weight.T
        lin = torch.nn.Linear(*w.shape, bias=False)
        lin.weight.data = torch.from_numpy(np.ascontiguousarray(w.T))
        layers.append(lin)
    return torch.nn.Sequential(*layers).eval()


def convert(
    runtime: str,
    folder: Path,
    threads: int | None = None,
    side: int = SIDE,
    layers: int = LAYERS,
    families: tuple[str, ...] | None = None,
) -> dict:
    """``{family: the converted GEMM's artifact (its side files beside it) or why it could not be converted}``
    for each family of ``FAMILIES[runtime]`` (or of ``families``), each in ``folder/<family>/``."""
    folder.mkdir(parents=True, exist_ok=True)
    src_onnx, shape = folder / "gemm.onnx", input_shape(runtime, side)
    src_onnx.write_bytes(agent.gemm_onnx(side, layers, "fp32", np))
    if len(shape) != 2:
        src_onnx = _reshaped(src_onnx, shape)
    rt, out = get_runtime(runtime), {}
    for family, precision in FAMILIES[runtime].items():
        if families is not None and family not in families:
            continue
        (folder / family).mkdir(exist_ok=True)
        src = HostSource(
            precision=precision,
            onnx=src_onnx,
            export_onnx=src_onnx,
            torch_model=lambda: _torch_gemm(src_onnx),
            input_shape=tuple(shape[1:]),
            # activations of the GEMM's scale (its weights keep it), seeded: the same int8 model every time
            calibration=lambda: iter([np.random.default_rng(1).standard_normal(shape).astype(np.float32)]),
            max_batch=shape[0],
            threads=threads,
        )
        try:
            out[family] = rt.convert(src, folder / family).artifact
        except BuildError as e:
            out[family] = f"{runtime} could not convert its {family} GEMM: {e}"
    return out
