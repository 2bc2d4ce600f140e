"""``evaluate@<target>`` (the second half of stage ``measure@<target>``): for each precision, the task metric (``model.task``: top-1, COCO mAP,
mIoU, or Dice for one-channel segmentation; overall and per class) of the built artifact, run on its target, against the PyTorch FP32
reference outputs that ``parity`` saved; and the three-way parity of its outputs (PyTorch ->
the precision's ONNX run by ONNX Runtime here -> the artifact on its target).

The eval split goes to a device once (content-addressed) and the predictions come back; the
metric is computed here. The classes that dropped most are named (an average can hide one
class that collapsed), and for binary segmentation the images that dropped most. A precision is rejected (the stage itself succeeds: the verdict is a
result) when its metric drops more than ``eval.max_drop`` points, when its artifact leaves the
``parity.artifact`` tolerance of its precision family (or an output's ``parity.artifact_outputs``
override) against its ONNX, or when an
``int8-mixed`` plan missed ``quant.max_drop`` in the quantize stage. A ``fidelity`` model (no labels)
is scored against FP32's decoded outputs that ``parity`` stored (``fidelity_targets.npz``), not the split's labels.
Output per precision: ``metrics/evaluate/<target>/<precision>.json`` (kept when its inputs did not
change, :mod:`tasks.reuse`; ``--precision`` evaluates one); the build's skipped record when the build does not apply
to the device (:mod:`tasks.device.support`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tasks import stage
from tasks.agent import remote
from tasks.agent.client import device
from tasks.config import Config
from tasks.config.load import family
from tasks.config.schema import ArtifactTolerance
from tasks.data.split import Split, classes_of
from tasks.layout import LAYOUT
from tasks.metrics.accuracy import agreement
from tasks.metrics.task import score, worst_class_drops, worst_image_drops
from tasks.metrics.three_way import three_way
from tasks.records import EvaluateRecord, QuantizeRecord, built_artifact, built_from
from tasks.reuse import each_measured
from tasks.runtimes.local import local_outputs


def artifact_outputs(
    cfg: Config, target_name: str, artifact: Path, split: Split, log: Callable[[str], None] = print
) -> dict[str, np.ndarray]:
    target = cfg.target[target_name]
    if target.transport == "local":
        return local_outputs(artifact, target.runtime, split, cfg.eval.batch_size, target.threads)
    with device(target_name, target, log) as dev:  # on the device, through its agent
        return remote.outputs(dev, artifact.parent, split.x, cfg.eval.batch_size)


def artifact_tolerance(cfg: Config, output: str, fam: str) -> ArtifactTolerance:
    """``parity.artifact_outputs.<output>.<family>``, else ``parity.artifact.<family>``, else exact."""
    return (
        cfg.parity.artifact_outputs.get(output, {}).get(fam)
        or cfg.parity.artifact.get(fam)
        or ArtifactTolerance(atol=0.0, rtol=0.0)
    )


def truth(cfg: Config, split: Split, targets: Path | None):
    """The split's labels, or for ``model.task`` fidelity FP32's decoded outputs from ``targets``
    (parity's ``fidelity_targets.npz``), checked to be decoded as ``eval.fidelity_of`` says."""
    if cfg.model.task != "fidelity":
        return np.asarray(split.y)
    if targets is None or not Path(targets).is_file():
        raise stage.StageError(f"model.task fidelity needs FP32's decoded outputs ({targets}); run `dvc repro parity`")
    with np.load(targets) as z:
        got = {k: z[k] for k in z.files}
    made_as = str(got.pop("fidelity_of", ""))
    if made_as != cfg.eval.fidelity_of:
        raise stage.StageError(
            f"{targets} holds FP32's outputs decoded as {made_as or 'nothing (a labelled task)'!r} but "
            f"eval.fidelity_of is {cfg.eval.fidelity_of!r}; run `dvc repro parity`"
        )
    return got


def run(
    cfg: Config,
    target_name: str,
    artifact: Path,
    eval_dir: Path,
    reference: Path,
    quantized: QuantizeRecord | None = None,
    source_onnx: Path | None = None,
    precision: str = "fp32",
    log: Callable[[str], None] = print,
    targets: Path | None = None,
) -> EvaluateRecord:
    """``quantized``: the quantize stage's metrics for this precision (an ``int8-mixed`` plan that
    missed ``quant.max_drop`` there stays rejected whatever its accuracy here). ``source_onnx``:
    the ONNX the artifact was built from; with it, the three-way parity is computed and judged
    with :func:`artifact_tolerance`. ``targets``: ``model.task`` fidelity's ground truth (:func:`truth`)."""
    split = Split(eval_dir)
    labels = truth(cfg, split, targets)
    classes = classes_of(eval_dir)
    got = artifact_outputs(cfg, target_name, artifact, split, log)
    with np.load(reference) as z:
        ref = {k: z[k] for k in z.files}
    missing = [n for n in cfg.model.outputs if n not in got]
    if missing:
        raise stage.StageError(
            f"the artifact has no output(s) {missing}; it has {sorted(got)}: "
            "check model.outputs against the exported ONNX"
        )
    mine, theirs = score(cfg, got, labels, classes, split.meta), score(cfg, ref, labels, classes, split.meta)
    name = mine["metric"]
    drop = theirs["value"] - mine["value"]
    worst = worst_class_drops(theirs["per_class"], mine["per_class"])
    reasons = []
    if drop > cfg.eval.max_drop:
        reasons.append(f"{name} drop {drop:.2f} points > eval.max_drop {cfg.eval.max_drop:g}")
    res = {
        "samples": len(split),
        "task": cfg.model.task,
        "metric": name,
        "value": mine["value"],
        "reference_value": theirs["value"],
        "drop": drop,
        "max_drop": cfg.eval.max_drop,
        "details": {k: v for k, v in mine.items() if k not in ("metric", "value", "per_class", "per_image")},
        "per_class": mine["per_class"],
        "worst_class_drop": worst[0]["drop"] if worst else 0.0,
        "worst_classes": worst,
    }
    if "per_image" in mine:  # binary segmentation: the images the precision got most wrong
        images = worst_image_drops(theirs["per_image"], mine["per_image"])
        res["worst_images"] = images
        res["worst_image_drop"] = images[0]["drop"] if images else 0.0
    if cfg.model.task == "classification":
        res["top1_agreement"] = agreement(ref[cfg.model.scores_output], got[cfg.model.scores_output])
    if source_onnx is not None:
        onnx_out = local_outputs(source_onnx, "onnxruntime", split, cfg.eval.batch_size)
        fam = family(precision)
        par = three_way(
            {k: ref[k] for k in got},
            onnx_out,
            got,
            lambda name: artifact_tolerance(cfg, name, fam),
            cfg.parity.histogram_bins,
        )
        res["parity"] = par
        if par["failed"]:
            reasons.append(f"three-way parity ({fam}): {par['worst']}")
    if quantized and quantized.accepted is False:
        reasons.append(f"mixed precision: {quantized.reason}")
    res["accepted"] = not reasons
    res["reason"] = "; ".join(reasons)
    return EvaluateRecord.from_json(res)


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("evaluate", matrix=True).parse_args(argv)
    with stage.stage_errors(f"evaluate@{args.target}"):
        cfg = stage.load(args)
        each_measured(
            "evaluate",
            cfg,
            args,
            LAYOUT.evaluate_metrics,
            LAYOUT.evaluate_metrics_dir,
            lambda p, log: _evaluate(cfg, args.target, p, log),
        )


def _evaluate(cfg: Config, t: str, precision: str, log: Callable[[str], None]) -> EvaluateRecord:
    build_dir = LAYOUT.build_dir(t, precision)
    rec = run(
        cfg,
        t,
        built_artifact(build_dir),
        LAYOUT.split("eval"),
        LAYOUT.reference,
        quantized=QuantizeRecord.read_if(LAYOUT.quantize_metrics(precision)),
        source_onnx=built_from(precision, cfg.target[t].runtime, build_dir),
        precision=precision,
        log=log,
        targets=LAYOUT.fidelity_targets,
    )
    verdict = "accepted" if rec.accepted else f"REJECTED ({rec.reason})"
    extra = (
        ""
        if not rec.parity
        else " ".join(
            f"max|artifact-onnx| {n}={s['max_abs']:.2g}" for n, s in rec.parity["legs"]["onnx_artifact"].items()
        )
    )
    log(f"{rec.metric} {rec.value:.2f} (reference {rec.reference_value:.2f}); {extra}: {verdict}")
    return rec


if __name__ == "__main__":
    main()
