"""ExecuTorch backend: the PyTorch model lowered to XNNPACK as a ``.pte`` program, converted on the host.

ExecuTorch programs come from the PyTorch model, not the ONNX (``torch.export`` -> ``to_edge_transform_and_lower``
with the ``XnnpackPartitioner`` -> ``to_executorch``), so this runtime converts on the host
(``converts_on_host``) and the device only loads the program (:mod:`tasks.agent.executorch_model`):

- ``fp32``: the exported model, every op XNNPACK supports delegated to it (the rest run in ExecuTorch's
  portable kernels; ``delegated_ops``/``portable_ops`` count them);
- ``int8-minmax``: ExecuTorch's own PT2E flow: ``XNNPACKQuantizer`` with its symmetric config
  (int8 weights per output channel, int8 activations per tensor, observed min/max), calibrated on the
  calibration split (``quant.samples`` images), then ``convert_pt2e`` and the same lowering: XNNPACK runs
  the quantized convolutions and linears as int8 kernels. The other calibrators (entropy, percentile,
  mixed) are EdgeForge's ONNX passes and do not apply (:mod:`tasks.device.support`).

The batch dimension is exported dynamic with an upper bound (``HostSource.max_batch``: the largest batch a
stage runs); the bound is in the file name (``model.b<N>.pte``), and the ONNX output names, in the program's
output order, in ``model.b<N>.pte.names``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import onnx

from tasks.agent import executorch_model
from tasks.runtimes.base import BuildError, Built, HostSource, Runtime, Session, agent_errors_as_build_errors

PRECISIONS = ("fp32", "int8-minmax")


@contextlib.contextmanager
def _quiet() -> None:
    """ExecuTorch's imports, without their side effects on this process's logging: torchao logs a warning
    per CUDA kernel library it cannot load on a CPU-only machine, and ``xnnpack_partitioner`` calls
    ``logging.basicConfig`` when imported (a root handler on the stderr of that moment, level WARNING)."""
    log, root = logging.getLogger("torchao"), logging.getLogger()
    level, root_handlers, root_level = log.level, root.handlers[:], root.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
        root.handlers[:] = root_handlers
        root.setLevel(root_level)


def _output_names(onnx_path: Path) -> list[str]:
    return [o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output]


def _export(model, example, max_batch: int):
    import torch

    dynamic = None
    if max_batch > 1:
        dynamic = ({0: torch.export.Dim("batch", min=1, max=max_batch)},)
    return torch.export.export(model, example, dynamic_shapes=dynamic, strict=False)


def _quantize(model, example, src: HostSource, max_batch: int):
    """PT2E: annotate with XNNPACK's quantizer, observe the calibration split, convert to Q/DQ."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(_export(model, example, max_batch).module(), quantizer)
    seen = 0
    with torch.no_grad():
        for x in src.calibration():
            prepared(torch.from_numpy(x))
            seen += len(x)
    if not seen:
        raise BuildError("executorch int8-minmax: the calibration split is empty (artifacts/prepare/calib)")
    return convert_pt2e(prepared), seen


def convert(src: HostSource, out_dir: Path) -> Built:
    """``src.precision``'s ``.pte`` (with its ``.names``) in ``out_dir``."""
    if src.precision not in PRECISIONS:
        raise BuildError(f"executorch builds {', '.join(PRECISIONS)}; {src.precision!r} is not one of them")
    t0 = time.perf_counter()
    with _quiet():
        import torch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        model = src.torch_model()
        max_batch = max(1, src.max_batch)
        # the example at the bound: torch.export specialises a dimension of size 1 (a batch-1 example would fix
        # the batch), and ExecuTorch 1.5's memory plan sized the input for 15 samples with a batch-2 example
        # whatever the Dim's max (checked: 16 and above failed with "resize a bounded tensor")
        example = (torch.zeros(max_batch, *src.input_shape),)
        facts: dict = {"converter": "torch.export + XnnpackPartitioner", "max_batch": max_batch}
        try:
            if src.precision == "int8-minmax":
                model, seen = _quantize(model, example, src, max_batch)
                facts |= {"quantizer": "XNNPACKQuantizer (PT2E, symmetric, per-channel weights)", "calib_samples": seen}
            program = to_edge_transform_and_lower(
                _export(model, example, max_batch), partitioner=[XnnpackPartitioner()]
            ).to_executorch()
        except BuildError:
            raise
        except Exception as e:  # torch.export / lowering errors: many types, each with its own message
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BuildError(f"executorch could not convert the model ({src.precision}): {first}") from e
    out = out_dir / f"model.b{max_batch}.pte"
    out.write_bytes(program.buffer)
    names = _output_names(src.export_onnx)
    out.with_name(out.name + ".names").write_text("\n".join(names) + "\n")
    ops = [n for n in program.exported_program().graph.nodes if n.op == "call_function"]
    delegated = sum("executorch_call_delegate" in str(n.target) for n in ops)
    facts |= {
        "delegated_ops": delegated,
        "portable_ops": len(ops) - delegated - sum("getitem" in str(n.target) for n in ops),
        "runtime_version": executorch_model.version(),
        "host_convert_seconds": time.perf_counter() - t0,
    }
    return Built(out, facts)


class EtSession(executorch_model.EtModel, Session):
    def __init__(self, path: Path, threads: int | None) -> None:
        with agent_errors_as_build_errors():
            super().__init__(path, threads)


class ExecuTorchRuntime(Runtime):
    name = "executorch"
    artifact_suffix = ".pte"
    converts_on_host = True

    def version(self) -> str:
        return executorch_model.version()

    def convert(self, src: HostSource, out_dir: Path) -> Built:
        return convert(src, out_dir)

    def load(self, artifact: Path, threads: int | None = None, choices: dict | None = None) -> Session:
        return EtSession(artifact, threads)
