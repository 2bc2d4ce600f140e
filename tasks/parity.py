"""Stage ``parity``: ONNX Runtime (FP32) against PyTorch on real evaluation inputs, batched
(``parity.batch_size``) over the whole eval split and one sample at a time on the first
``parity.batch1_samples``.

Fails, writing nothing, when any output leaves its tolerance: the message names the output,
the worst element's index and both values. Outputs: ``artifacts/parity/reference.npz`` (the
PyTorch FP32 outputs on the eval split: the reference that ``evaluate`` scores against),
``artifacts/parity/fidelity_targets.npz`` (``model.task`` fidelity: those outputs decoded into the
ground truth every precision is scored against, :mod:`tasks.metrics.fidelity`; empty for a labelled
task) and ``metrics/parity.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tasks import stage
from tasks.config import Config
from tasks.config.load import decoded_as
from tasks.config.schema import Tolerance
from tasks.data.split import Split, classes_of
from tasks.io import write_json
from tasks.layout import LAYOUT
from tasks.metrics import fidelity
from tasks.metrics.accuracy import agreement
from tasks.metrics.numeric import compare
from tasks.metrics.task import check_decodable, check_reference, ground_truth, score
from tasks.runtimes import get_runtime


def tolerance(cfg: Config, output: str) -> Tolerance:
    return cfg.parity.outputs.get(output) or Tolerance(atol=cfg.parity.atol, rtol=cfg.parity.rtol)


def _collect(sessions, batches) -> tuple[dict, dict]:
    ref: dict[str, list] = {}
    got: dict[str, list] = {}
    for x in batches:
        for store, sess in zip((ref, got), sessions):
            for name, arr in sess.infer(x).items():
                store.setdefault(name, []).append(arr)
    return ({k: np.concatenate(v) for k, v in ref.items()}, {k: np.concatenate(v) for k, v in got.items()})


def run(cfg: Config, onnx_path: Path, eval_dir: Path, log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Returns (metrics, reference outputs by name). Raises StageError outside tolerance."""
    split = Split(eval_dir)
    candidate = get_runtime("onnxruntime").load(onnx_path)
    if cfg.model.format == "onnx":
        reference, ref_kind = candidate, "onnxruntime (model.format=onnx: no PyTorch model to compare with)"
    else:
        reference, ref_kind = get_runtime("torch").session(cfg.model), "torch"
    b = cfg.parity.batch_size
    classes = classes_of(eval_dir)
    for x, _ in split.batches(1, limit=1):  # a decoder that does not fit the outputs fails here, not after the split
        check_decodable(cfg, candidate.infer(x), classes)
    ref, got = _collect((reference, candidate), (x for x, _ in split.batches(b)))
    n1 = min(cfg.parity.batch1_samples, len(split))
    ref1, got1 = _collect(
        (reference, candidate), (x[i : i + 1] for x, _ in split.batches(n1, limit=n1) for i in range(len(x)))
    )
    metrics: dict = {"reference": ref_kind, "samples": len(split), "batch1_samples": n1, "outputs": {}}
    failures = []
    for name in cfg.model.outputs:
        tol = tolerance(cfg, name)
        per = {}
        for mode, (r, g) in {f"batch{b}": (ref[name], got[name]), "batch1": (ref1[name], got1[name])}.items():
            s = compare(r, g, tol.atol, tol.rtol)
            if r.ndim == 2 and decoded_as(cfg) == "classification":
                s["top1_agreement"] = agreement(r, g)
            per[mode] = s
            if s["violations"]:
                failures.append((name, mode, s))
        metrics["outputs"][name] = per
    check_reference(cfg, ref)
    truth = ground_truth(cfg, split.y, lambda: ref, classes)
    theirs, mine = score(cfg, ref, truth, classes, split.meta), score(cfg, got, truth, classes, split.meta)
    metrics.update(
        task=cfg.model.task, metric=theirs["metric"], reference_value=theirs["value"], onnx_value=mine["value"]
    )
    if cfg.model.task == "fidelity":
        metrics["fidelity_of"] = cfg.eval.fidelity_of
    if failures:
        name, mode, s = max(failures, key=lambda f: f[2]["max_abs"])
        raise stage.StageError(
            f"parity failed for output {name!r} ({mode}, {s['violations']} element(s) outside tolerance): "
            f"worst element {s['worst_index']}: torch={s['worst_ref']:.9g} onnx={s['worst_got']:.9g} "
            f"(|diff|={abs(s['worst_got'] - s['worst_ref']):.3g} > atol {s['atol']:g} + rtol {s['rtol']:g}*|torch|). "
            f"Loosen parity.outputs.{name}.atol/rtol if this error is acceptable, or investigate the export"
        )
    log(
        f"{len(split)} samples; max |diff| "
        + ", ".join(f"{n}={max(v['max_abs'] for v in per.values()):.2e}" for n, per in metrics["outputs"].items())
    )
    return metrics, ref


def fidelity_targets(cfg: Config, ref: dict, eval_dir: Path) -> dict[str, np.ndarray]:
    """What ``LAYOUT.fidelity_targets`` holds: for ``model.task`` fidelity, FP32's eval-split outputs
    decoded as ``eval.fidelity_of`` plus ``fidelity_of`` itself (evaluate checks it); else nothing."""
    if cfg.model.task != "fidelity":
        return {}
    return {**fidelity.targets(cfg, ref, classes_of(eval_dir)), "fidelity_of": np.array(cfg.eval.fidelity_of)}


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("parity").parse_args(argv)
    out, targets, metrics_path = LAYOUT.reference, LAYOUT.fidelity_targets, LAYOUT.parity_metrics
    with stage.stage_errors("parity", outputs=[out, targets, metrics_path]):
        cfg = stage.load(args)
        metrics, ref = run(cfg, LAYOUT.onnx, LAYOUT.split("eval"), lambda m: stage.log("parity", m))
        _save(out, ref)
        _save(targets, fidelity_targets(cfg, ref, LAYOUT.split("eval")))
        write_json(metrics_path, metrics)


if __name__ == "__main__":
    main()
