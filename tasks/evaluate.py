"""Stage ``evaluate@<target>-<precision>``: top-1 (overall and per class) of the built artifact on the eval split,
against the PyTorch FP32 reference outputs that ``parity`` saved; the classes that dropped most are
named (an average can hide one class that collapsed). A drop above
``eval.max_drop`` points marks the precision rejected (the stage itself succeeds: the verdict
is a result); so does an ``int8-mixed`` plan the quantize stage found over ``quant.max_drop``. Output: ``metrics/evaluate/<key>.json``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks import stage
from tasks.config import Config
from tasks.data.split import Split
from tasks.io import read_json, write_json
from tasks.metrics.accuracy import agreement, per_class_top1, top1, worst_class_drops
from tasks.runtimes import get_runtime


def metrics_path(key: str) -> Path:
    return stage.METRICS / "evaluate" / f"{key}.json"


def classes_of(eval_dir: Path) -> list[str]:
    """Class names written by the prepare stage beside the split (indices if absent)."""
    path = Path(eval_dir).parent / "classes.json"
    return [str(c) for c in read_json(path)] if path.is_file() else []


def run(cfg: Config, target_name: str, artifact: Path, eval_dir: Path, reference: Path,
        quantized: dict | None = None) -> dict:
    """``quantized``: the quantize stage's metrics for this precision; an ``int8-mixed`` plan
    that did not meet ``quant.max_drop`` there stays rejected whatever its accuracy here."""
    target = cfg.target[target_name]
    split = Split(eval_dir)
    name = cfg.model.scores_output
    if target.transport == "local":
        sess = get_runtime(target.runtime).load(artifact, target.threads)
        scores = np.concatenate([sess.infer(x)[name] for x, _ in split.batches(cfg.eval.batch_size)])
    else:  # on the device, through its agent
        from tasks.agent import remote
        from tasks.agent.client import device

        with device(target_name, target, lambda m: stage.log(f"evaluate@{target_name}", m)) as dev:
            scores = remote.outputs(dev, artifact.parent, split.x, cfg.eval.batch_size)[name]
    with np.load(reference) as z:
        ref = z[name]
    labels = np.asarray(split.y)
    acc, ref_acc = top1(scores, labels), top1(ref, labels)
    drop = ref_acc - acc
    classes = classes_of(eval_dir)
    per_ref, per_got = per_class_top1(ref, labels), per_class_top1(scores, labels)
    worst = worst_class_drops(per_ref, per_got)
    for w in worst:
        w["name"] = classes[w["class"]] if w["class"] < len(classes) else str(w["class"])
    reasons = []
    if drop > cfg.eval.max_drop:
        reasons.append(f"top-1 drop {drop:.2f} points > eval.max_drop {cfg.eval.max_drop:g}")
    if quantized and quantized.get("accepted") is False:
        reasons.append(f"mixed precision: {quantized['reason']}")
    accepted = not reasons
    return {
        "samples": int(len(labels)),
        "top1": acc,
        "reference_top1": ref_acc,
        "drop": drop,
        "top1_agreement": agreement(ref, scores),
        "per_class_top1": {classes[c] if c < len(classes) else str(c): v for c, v in per_got.items()},
        "worst_class_drop": worst[0]["drop"] if worst else 0.0,
        "worst_classes": worst,
        "max_drop": cfg.eval.max_drop,
        "accepted": bool(accepted),
        "reason": "; ".join(reasons),
    }


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("evaluate", matrix=True).parse_args(argv)
    k = stage.key(args.target, args.precision)
    with stage.stage_errors(f"evaluate@{k}", outputs=[metrics_path(k)]):
        cfg = stage.load(args)
        from tasks.build import artifact, out_dir
        from tasks.parity import OUT as REF
        from tasks.prepare import OUT as PREP

        from tasks.quantize import metrics_path as quantize_metrics

        qm = quantize_metrics(args.precision)
        res = run(cfg, args.target, artifact(out_dir(k)), PREP / "eval", REF,
                  quantized=read_json(qm) if qm.is_file() else None)
        verdict = "accepted" if res["accepted"] else f"REJECTED ({res['reason']})"
        stage.log(f"evaluate@{k}", f"top-1 {res['top1']:.2f}% (reference {res['reference_top1']:.2f}%): {verdict}")
        write_json(metrics_path(k), res)


if __name__ == "__main__":
    main()
