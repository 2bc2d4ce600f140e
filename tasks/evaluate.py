"""Stage ``evaluate@<target>-<precision>``: the task metric (``model.task``: top-1, COCO mAP or
mIoU, overall and per class) of the built artifact, run on its target, against the PyTorch FP32
reference outputs that ``parity`` saved; and the three-way parity of its outputs (PyTorch ->
the precision's ONNX run by ONNX Runtime here -> the artifact on its target).

The eval split goes to a device once (content-addressed) and the predictions come back; the
metric is computed here. The classes that dropped most are named (an average can hide one
class that collapsed). A precision is rejected (the stage itself succeeds: the verdict is a
result) when its metric drops more than ``eval.max_drop`` points, when its artifact leaves the
``parity.artifact`` tolerance of its precision family (or an output's ``parity.artifact_outputs``
override) against its ONNX, or when an
``int8-mixed`` plan missed ``quant.max_drop`` in the quantize stage.
Output: ``metrics/evaluate/<key>.json``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from tasks import stage
from tasks.config import Config
from tasks.config.load import family
from tasks.config.schema import ArtifactTolerance
from tasks.data.split import Split
from tasks.io import read_json, write_json
from tasks.metrics.task import score, worst_class_drops
from tasks.runtimes import get_runtime


def metrics_path(key: str) -> Path:
    return stage.METRICS / "evaluate" / f"{key}.json"


def classes_of(eval_dir: Path) -> list[str]:
    """Class names written by the prepare stage beside the split (indices if absent)."""
    path = Path(eval_dir).parent / "classes.json"
    return [str(c) for c in read_json(path)] if path.is_file() else []


def local_outputs(model: Path, runtime: str, split: Split, batch_size: int, threads: int | None = None,
                  limit: int | None = None) -> dict:
    """Every output of ``model`` loaded by ``runtime`` in this process, over the split (or its
    first ``limit`` samples)."""
    sess = get_runtime(runtime).load(model, threads)
    out: dict[str, list] = {}
    for x, _ in split.batches(batch_size, limit=limit):
        for k, v in sess.infer(x).items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


def artifact_outputs(cfg: Config, target_name: str, artifact: Path, split: Split,
                     log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    target = cfg.target[target_name]
    if target.transport == "local":
        return local_outputs(artifact, target.runtime, split, cfg.eval.batch_size, target.threads)
    from tasks.agent import remote
    from tasks.agent.client import device

    with device(target_name, target, log) as dev:  # on the device, through its agent
        return remote.outputs(dev, artifact.parent, split.x, cfg.eval.batch_size)


def artifact_tolerance(cfg: Config, output: str, fam: str) -> ArtifactTolerance:
    """``parity.artifact_outputs.<output>.<family>``, else ``parity.artifact.<family>``, else exact."""
    return (cfg.parity.artifact_outputs.get(output, {}).get(fam) or cfg.parity.artifact.get(fam)
            or ArtifactTolerance(atol=0.0, rtol=0.0))


def run(cfg: Config, target_name: str, artifact: Path, eval_dir: Path, reference: Path,
        quantized: dict | None = None, source_onnx: Path | None = None, precision: str = "fp32",
        log: Callable[[str], None] = print) -> dict:
    """``quantized``: the quantize stage's metrics for this precision (an ``int8-mixed`` plan that
    missed ``quant.max_drop`` there stays rejected whatever its accuracy here). ``source_onnx``:
    the ONNX the artifact was built from; with it, the three-way parity is computed and judged
    with :func:`artifact_tolerance`."""
    split = Split(eval_dir)
    labels = np.asarray(split.y)
    classes = classes_of(eval_dir)
    got = artifact_outputs(cfg, target_name, artifact, split, log)
    with np.load(reference) as z:
        ref = {k: z[k] for k in z.files}
    missing = [n for n in cfg.model.outputs if n not in got]
    if missing:
        raise stage.StageError(f"the artifact has no output(s) {missing}; it has {sorted(got)}: "
                               "check model.outputs against the exported ONNX")
    mine, theirs = score(cfg, got, labels, classes), score(cfg, ref, labels, classes)
    name = mine["metric"]
    drop = theirs["value"] - mine["value"]
    worst = worst_class_drops(theirs["per_class"], mine["per_class"])
    reasons = []
    if drop > cfg.eval.max_drop:
        reasons.append(f"{name} drop {drop:.2f} points > eval.max_drop {cfg.eval.max_drop:g}")
    res = {"samples": int(len(labels)), "task": cfg.model.task, "metric": name, "value": mine["value"],
           "reference_value": theirs["value"], "drop": drop, "max_drop": cfg.eval.max_drop,
           "details": {k: v for k, v in mine.items() if k not in ("metric", "value", "per_class")},
           "per_class": mine["per_class"], "worst_class_drop": worst[0]["drop"] if worst else 0.0,
           "worst_classes": worst}
    if cfg.model.task == "classification":
        from tasks.metrics.accuracy import agreement

        res["top1_agreement"] = agreement(ref[cfg.model.scores_output], got[cfg.model.scores_output])
    if source_onnx is not None:
        from tasks.metrics.three_way import three_way

        onnx_out = local_outputs(source_onnx, "onnxruntime", split, cfg.eval.batch_size)
        fam = family(precision)
        par = three_way({k: ref[k] for k in got}, onnx_out, got, lambda name: artifact_tolerance(cfg, name, fam),
                        cfg.parity.histogram_bins)
        res["parity"] = par
        if par["failed"]:
            reasons.append(f"three-way parity ({fam}): {par['worst']}")
    if quantized and quantized.get("accepted") is False:
        reasons.append(f"mixed precision: {quantized['reason']}")
    res["accepted"] = not reasons
    res["reason"] = "; ".join(reasons)
    return res


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("evaluate", matrix=True).parse_args(argv)
    k = stage.key(args.target, args.precision)
    with stage.stage_errors(f"evaluate@{k}", outputs=[metrics_path(k)]):
        cfg = stage.load(args)
        from tasks.build import artifact, out_dir
        from tasks.parity import OUT as REF
        from tasks.prepare import OUT as PREP
        from tasks.quantize import metrics_path as quantize_metrics
        from tasks.quantize import source

        qm = quantize_metrics(args.precision)
        log = lambda m: stage.log(f"evaluate@{k}", m)  # noqa: E731
        res = run(cfg, args.target, artifact(out_dir(k)), PREP / "eval", REF,
                  quantized=read_json(qm) if qm.is_file() else None,
                  source_onnx=source(args.precision, cfg.target[args.target].runtime), precision=args.precision,
                  log=log)
        verdict = "accepted" if res["accepted"] else f"REJECTED ({res['reason']})"
        par = res.get("parity")
        extra = "" if not par else " ".join(
            f"max|artifact-onnx| {n}={s['max_abs']:.2g}" for n, s in par["legs"]["onnx_artifact"].items())
        log(f"{res['metric']} {res['value']:.2f} (reference {res['reference_value']:.2f}); {extra}: {verdict}")
        write_json(metrics_path(k), res)


if __name__ == "__main__":
    main()
