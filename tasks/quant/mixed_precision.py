"""The ``int8-mixed`` precision of the quantize stage: INT8 with the layers that cost accuracy kept FP32,
chosen automatically within ``quant.max_drop``.

1. Calibrate with ``quant.mixed_calibrator``, as ``int8-<calibrator>`` does.
2. Sensitivity, on ``quant.sensitivity_samples`` labelled images of the *calibration* split (for a
   ``fidelity`` model, unlabelled: scored against the FP32 ONNX's own outputs on them) (the
   evaluation split stays held out for the verdict the evaluate stage gives: choosing layers on
   it would make that verdict optimistic): the SQNR of every layer (always; cheap) and, with
   ``quant.sensitivity`` = ``task`` (or ``auto`` up to ``quant.sensitivity_max_task_layers``
   layers), the task-metric drop (top-1, mAP or mIoU: ``model.task``) with that layer alone INT8, the worse of the two Q/DQ layouts (ONNX
   Runtime's also quantizes the layer's output). Ranked most sensitive first.
3. Search: keep the 0, 1, 2, ... most sensitive layers FP32 until the task-metric drop against FP32 on
   the same subset is within ``quant.max_drop`` in *both* Q/DQ layouts (TensorRT's and the one
   ONNX Runtime fuses), at most ``quant.max_kept_fraction`` of the layers.
4. Write the plan's models, cache and ranges, ``sensitivity.json`` (the ranked table) and
   ``sensitivity.png``. A plan that never met the budget is still written, marked
   ``accepted: false`` with its measured drop; the evaluate stage then rejects the precision.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tasks.config import Config
from tasks.data.split import Split, classes_of
from tasks.io import write_json
from tasks.metrics.task import ground_truth, primary
from tasks.metrics.task import score as task_score
from tasks.quant.common import QuantError
from tasks.quant.mixed import max_kept_for, search
from tasks.quant.qdq import quantizable_nodes
from tasks.quant.recipes import calibrate_split, layouts, peak_rss_mb, write_calibration, write_layouts
from tasks.quant.sensitivity import local_sqnr, one_at_a_time, plot, rank
from tasks.runtimes.local import local_outputs


class Scorer:
    """``scorer(model) -> the task metric`` (the primary figure, percent points) on the first ``n``
    images of the calibration split, run by the local ONNX Runtime as the build would run it.
    ``metric``: its key, ``model.task``'s until a call has scored (Dice for a one-channel
    segmentation model, which only its outputs tell). A ``fidelity`` model (no labels) is scored
    against the outputs of ``fp32`` (the FP32 ONNX) on the same images, decoded as ``eval.fidelity_of``."""

    def __init__(self, cfg: Config, calib_dir: Path, n: int, fp32: Path) -> None:
        self.cfg, self.n, self.split = cfg, n, Split(calib_dir)
        self.meta = None if self.split.meta is None else self.split.meta[:n]
        self.classes = classes_of(calib_dir)
        self.truth = ground_truth(cfg, self.split.y[:n], lambda: self.outputs(fp32), self.classes)
        self.metric = primary(cfg.model.task)[0]

    def outputs(self, model: Path) -> dict[str, np.ndarray]:
        return local_outputs(model, "onnxruntime", self.split, self.cfg.eval.batch_size, limit=self.n)

    def __call__(self, model: Path) -> float:
        res = task_score(self.cfg, self.outputs(model), self.truth, self.classes, self.meta)
        self.metric = res["metric"]
        return res["value"]


def method_for(cfg: Config, n_layers: int) -> str:
    m = cfg.quant.sensitivity
    if m == "auto":
        return "task" if n_layers <= cfg.quant.sensitivity_max_task_layers else "sqnr"
    return m


def to_mixed(cfg: Config, onnx_path: Path, calib_dir: Path, out: Path, log: Callable[[str], None]) -> dict:
    q = cfg.quant
    calibrator = q.mixed_calibrator
    nodes = quantizable_nodes(onnx_path)
    if not nodes:
        raise QuantError(
            f"{onnx_path}: nothing to quantize (no Conv, ConvTranspose, Gemm or MatMul node); "
            "remove int8-mixed from build.precisions"
        )
    ranges, n_cal, calib_s = calibrate_split(cfg, calibrator, onnx_path, calib_dir, log)
    log(f"mixed: calibrated with {calibrator} on {n_cal} images in {calib_s:.1f} s")
    split = Split(calib_dir)
    n = min(q.sensitivity_samples, len(split))
    score = Scorer(cfg, calib_dir, n, onnx_path)
    baseline = score(onnx_path)
    method = method_for(cfg, len(nodes))
    metric = score.metric

    t0 = time.perf_counter()
    sqnr = local_sqnr(
        onnx_path,
        ranges,
        (x for x, _ in split.batches(q.batch_size, limit=min(n, q.sqnr_samples))),
        input_name=cfg.model.input.name,
        per_channel=q.per_channel,
    )
    drops = None
    if method == "task":
        drops = one_at_a_time(
            onnx_path,
            ranges,
            score,
            baseline,
            per_channel=q.per_channel,
            layouts=layouts(cfg),
            progress=lambda i, k, node, d: log(
                f"sensitivity {i}/{k}: {node} alone INT8 drops {metric} {d:+.2f} points"
            ),
        )
    rows = rank(sqnr, drops)
    sens_s = time.perf_counter() - t0
    log(
        f"mixed: sensitivity of {len(nodes)} layers ({method}) on {n} images in {sens_s:.1f} s; "
        f"most sensitive: {rows[0]['node']}"
    )

    t1 = time.perf_counter()
    ranked = [r["node"] for r in rows]
    with tempfile.TemporaryDirectory(prefix="edgeforge-mixed-") as td:
        trial_drops: dict[int, dict] = {}
        quantized: dict[int, dict] = {}  # quantize_qdq facts of model.onnx per number kept FP32

        def try_plan(kept: list[str]) -> float:
            trial = Path(td) / str(len(kept))
            trial.mkdir()
            quantized[len(kept)] = write_layouts(cfg, onnx_path, ranges, trial, keep_fp32=kept)
            drops_ = {f: baseline - score(trial / f) for f in layouts(cfg)}
            trial_drops[len(kept)] = drops_
            return max(drops_.values())

        plan = search(
            ranked,
            try_plan,
            q.max_drop,
            max_kept_for(len(nodes), q.max_kept_fraction),
            progress=lambda kept, d: log(f"mixed: {len(kept)} layer(s) FP32 -> {metric} drop {d:+.2f} points"),
        )
        chosen = Path(td) / str(len(plan["kept"]))
        for f in chosen.iterdir():
            f.replace(out / f.name)
        meta = write_calibration(cfg, calibrator, ranges, out, quantized[len(plan["kept"])])
    search_s = time.perf_counter() - t1

    by_node = {r["node"]: r for r in rows}
    kept = [
        {
            "node": k,
            "op_type": by_node[k]["op_type"],
            "rank": by_node[k]["rank"],
            "drop": by_node[k]["drop"],
            "sqnr_db": by_node[k]["sqnr_db"],
            "why": (
                f"rank {by_node[k]['rank']} of {len(rows)} by "
                + (f"{metric} drop alone INT8" if drops else "SQNR")
                + f"; the plan without it dropped {plan['trials'][i]['drop']:.2f} > {q.max_drop:g} points"
            ),
        }
        for i, k in enumerate(plan["kept"])
    ]
    write_json(
        out / "sensitivity.json",
        {"method": method, "samples": n, "metric": metric, "baseline": baseline, "layers": rows},
    )
    plot(
        rows,
        out / "sensitivity.png",
        f"INT8 sensitivity per layer ({calibrator} ranges, {n} images)",
        kept=plan["kept"],
    )
    verdict = "within budget" if plan["accepted"] else f"REJECTED: {plan['reason']}"
    log(
        f"mixed: {len(plan['kept'])} of {len(nodes)} layers kept FP32, {metric} drop {plan['drop']:.2f} points on "
        f"{n} calibration images: {verdict}"
    )
    return {
        **meta,
        "samples": n_cal,
        "calibration_seconds": calib_s,
        "sensitivity_method": method,
        "sensitivity_samples": n,
        "sensitivity_seconds": sens_s,
        "search_seconds": search_s,
        "metric": metric,
        "baseline": baseline,
        "max_drop": q.max_drop,
        "subset_drop": plan["drop"],
        "layout_drops": trial_drops[len(plan["kept"])],
        "layers": len(nodes),
        "kept_fp32": kept,
        "trials": plan["trials"],
        "accepted": plan["accepted"],
        "reason": plan["reason"],
        "peak_rss_mb": peak_rss_mb(),
    }
