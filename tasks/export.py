"""Stage ``export``: PyTorch -> ONNX (dynamo exporter, TorchScript fallback), verified and
simplified.

Checks: the graph's input/output names match the config, the batch axis is dynamic *and*
works (the model runs at two batch sizes in ONNX Runtime), ``onnx.checker`` passes.
With ``model.format=onnx`` the given file is only checked and simplified.
Outputs: ``artifacts/export/model.onnx``; metrics ``metrics/export.json``. What the exporters print
and log goes to ``.edgeforge/logs/exporter.log`` (not an output: it must outlive a failed run).
"""

from __future__ import annotations

import collections
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from tasks import stage
from tasks.capture import output_to
from tasks.config import Config
from tasks.io import sha256_file, write_json
from tasks.layout import LAYOUT
from tasks.models.load import CheckpointError, load_torch_model
from tasks.text import plain

PROBE_BATCHES = (1, 3)
# Not a DVC out: outs are deleted when a stage fails, which is when this log is wanted
EXPORTER_LOG = LAYOUT.exporter_log


def _dims(value_info) -> list:
    return [
        d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in value_info.type.tensor_type.shape.dim
    ]


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


def torch_export(cfg: Config, path: Path, log: Callable[[str], None], exporter_log: Path = EXPORTER_LOG) -> dict:
    """Export the torch model to ``path``; returns which exporter succeeded and why any failed.
    The exporters' own output (tracebacks, graph dumps, warnings) goes to ``exporter_log``."""
    import logging
    import warnings

    import torch

    # torch's own noise, not the user's: it lists torchvision ops it skips, and a deprecation inside torch
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)", category=FutureWarning)
    m, spec = cfg.model, cfg.model.input
    module = load_torch_model(m)
    example = torch.zeros(2, *spec.shape, dtype=torch.float32)  # batch 2: batch 1 gets specialised
    info: dict = {"exporter": cfg.export.exporter, "fallback_used": False}
    order = [cfg.export.exporter] + (["torchscript"] if cfg.export.fallback and cfg.export.exporter == "dynamo" else [])
    if m.format == "torchscript":
        order = ["torchscript"]  # the dynamo exporter cannot take a ScriptModule: no point failing first
    elif m.format == "pt2":
        order = ["dynamo"]  # an ExportedProgram is already torch.export'ed; the TorchScript exporter cannot take it
    exporter_log.parent.mkdir(parents=True, exist_ok=True)
    exporter_log.write_text("")  # this run's log only
    for i, exporter in enumerate(order):
        try:
            with output_to(exporter_log) as f:
                print(f"=== {exporter} exporter ===", file=f)
                if exporter == "dynamo":
                    dyn = ({0: torch.export.Dim("batch")},) if spec.dynamic_batch else None
                    prog = torch.onnx.export(
                        module,
                        (example,),
                        dynamo=True,
                        opset_version=cfg.export.opset,
                        input_names=[spec.name],
                        output_names=m.outputs,
                        dynamic_shapes=dyn,
                        verbose=False,
                    )
                    prog.save(str(path))
                else:
                    axes = {n: {0: "batch"} for n in [spec.name, *m.outputs]} if spec.dynamic_batch else None
                    torch.onnx.export(
                        module,
                        (example,),
                        str(path),
                        dynamo=False,
                        opset_version=cfg.export.opset,
                        input_names=[spec.name],
                        output_names=m.outputs,
                        dynamic_axes=axes,
                    )
            info["exporter"] = exporter
            return info
        except Exception as e:  # exporters raise many types; the reason is recorded, not hidden
            # torch.onnx wraps the actual cause (its own first line is only "Failed to export ...")
            cause = e
            while cause.__cause__ is not None:
                cause = cause.__cause__
            prefix = f"{type(e).__name__}: " + (f"{type(cause).__name__}: " if cause is not e else "")
            reason = prefix + (plain(cause).strip().splitlines() or [""])[0][:300]
            info.setdefault("failures", {})[exporter] = reason
            if i + 1 < len(order):
                log(f"{exporter} exporter failed ({reason}); falling back to {order[i + 1]}")
                info["fallback_used"] = True
            else:
                raise stage.StageError(
                    f"ONNX export failed with every exporter tried: {info['failures']}; "
                    f"full exporter log: {exporter_log}"
                ) from e
    raise AssertionError("unreachable")


def verify(model: onnx.ModelProto, cfg: Config, path: Path) -> list[str]:
    """Names, dynamic batch (declared and working), and the ONNX checker. Returns the outputs with no
    batch axis (data-dependent: NonZero, NonMaxSuppression) of a dynamic-batch model, else []."""
    spec = cfg.model.input
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if [i.name for i in inputs] != [spec.name]:
        raise stage.StageError(
            f"ONNX inputs are {[i.name for i in inputs]}; model.input.name is {spec.name!r} "
            "(set it to the graph's single input name)"
        )
    outs = [o.name for o in model.graph.output]
    if outs != cfg.model.outputs:
        raise stage.StageError(f"ONNX outputs are {outs}; model.outputs is {cfg.model.outputs} (make them match)")
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise stage.StageError(f"onnx.checker rejected the model: {plain(e).splitlines()[0]}") from e
    if not spec.dynamic_batch:
        return []
    from tasks.runtimes.onnxruntime_rt import OrtSession

    sess = OrtSession(path, threads=1)
    # outputs whose rows do not follow the batch by shape inference (NonZero, NonMaxSuppression): no batch
    # axis to declare; one baked in by mistake (x.view(2, -1)) still fails the probe below
    dd = set(sess.data_dependent)
    fixed = [
        (v.name, _dims(v)[0])
        for v in [*inputs, *(o for o in model.graph.output if o.name not in dd)]
        if not _dims(v) or not isinstance(_dims(v)[0], str)
    ]
    if fixed:
        raise stage.StageError(
            f"the batch axis is fixed in the exported graph ({', '.join(f'{n}: batch={d}' for n, d in fixed)}); "
            "model.input.dynamic_batch=true needs a dynamic axis 0. Avoid hard-coded batch sizes in "
            "forward() (e.g. x.view(2, -1) -> x.flatten(1)), or set dynamic_batch=false"
        )
    for b in PROBE_BATCHES:
        x = np.zeros((b, *spec.shape), np.float32)
        try:
            got = sess.infer(x)
        except Exception as e:  # ORT raises its own types
            raise stage.StageError(
                f"the exported graph declares a dynamic batch but fails at batch {b}: "
                f"{plain(e).splitlines()[0][:300]}. A batch size is baked into the graph "
                "(e.g. a reshape); avoid hard-coded batch sizes in forward()"
            ) from e
        bad = {n: a.shape for n, a in got.items() if n not in dd and a.shape[:1] != (b,)}
        if bad:
            raise stage.StageError(f"at batch {b} the outputs have shapes {bad}: the batch axis does not propagate")
    return [o for o in sess.output_names if o in dd]


def checkpoint_fingerprint(cfg: Config) -> dict | None:
    """The checkpoint this export reads, as DVC tracks it (a dep of this stage): path, size and sha256,
    hashed before it is read (the release's ``checkpoint_sha256``); None when it is not a file."""
    path = Path(cfg.model.checkpoint)
    if not path.is_file():
        return None
    return {"path": str(path), "size_bytes": path.stat().st_size, "sha256": sha256_file(path)}


def run(cfg: Config, out: Path, log: Callable[[str], None] = print, exporter_log: Path = EXPORTER_LOG) -> dict:
    t0 = time.perf_counter()
    checkpoint = checkpoint_fingerprint(cfg)
    with tempfile.TemporaryDirectory(prefix="edgeforge-export-") as td:
        raw = Path(td) / "raw.onnx"
        if cfg.model.format == "onnx":
            src = Path(cfg.model.checkpoint)
            if not src.is_file():
                raise CheckpointError(f"ONNX model {src} not found (model.checkpoint)")
            shutil.copyfile(src, raw)
            info: dict = {"exporter": "none (model.format=onnx)", "fallback_used": False}
        else:
            info = torch_export(cfg, raw, log, exporter_log)
        try:
            model = onnx.load(str(raw))
        except Exception as e:  # protobuf DecodeError and friends
            raise CheckpointError(
                f"{raw if cfg.model.format != 'onnx' else cfg.model.checkpoint}: not a readable "
                f"ONNX file ({type(e).__name__})"
            ) from e
        verify(model, cfg, raw)
        before = len(model.graph.node)
        if cfg.export.simplify:
            import onnxsim

            model, ok = onnxsim.simplify(model)
            if not ok:
                raise stage.StageError("onnxsim could not validate the simplified model; set export.simplify=false")
        tmp_out = Path(td) / "model.onnx"
        onnx.save(model, str(tmp_out))
        not_per_sample = verify(model, cfg, tmp_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp_out, out)
    log(f"{info['exporter']} export: {before} -> {len(model.graph.node)} nodes")
    if not_per_sample:
        log(
            f"outputs {not_per_sample} have no batch axis (their shape depends on the values: NonZero, "
            "NonMaxSuppression, ...): evaluate runs all the samples in one call instead of batches"
        )
    return {
        **info,
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0),
        "nodes_before": before,
        "nodes_after": len(model.graph.node),
        "op_histogram": op_histogram(model),
        "input_shape": _dims(model.graph.input[0]),
        "not_per_sample": not_per_sample,
        "sha256": sha256_file(out),
        "checkpoint": checkpoint,
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("export").parse_args(argv)
    with stage.stage_errors("export", outputs=[LAYOUT.onnx, LAYOUT.export_metrics]):
        cfg = stage.load(args)
        write_json(LAYOUT.export_metrics, run(cfg, LAYOUT.onnx, lambda m: stage.log("export", m)))


if __name__ == "__main__":
    main()
