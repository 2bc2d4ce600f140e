"""Stage ``prepare``: materialise the calibration and evaluation splits as model-ready arrays
and, for the bundled example, train the model.

Outputs (``artifacts/prepare/``): ``calib/`` and ``eval/`` (``x.npy`` float32 NCHW after the
input spec's preprocessing, ``y.npy`` labels, ``meta.npy`` for images read from files: see
``tasks/data/split.py``), ``classes.json``, and ``model.pt`` when ``prepare.train`` names a
trainer. Metrics: ``metrics/prepare.json``. Samples are streamed: read, checked and written one at
a time (``tasks/data/stream.py``). With ``data.generate``, the named example dataset writer first
writes the files the splits are read from (:mod:`tasks.data.generate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tasks import stage
from tasks.config import Config
from tasks.data.catalog import open_split
from tasks.data.checks import empty_classes, shared_digests
from tasks.data.generate import generate
from tasks.data.preprocess import preprocess
from tasks.data.sources import DataError, Source, load_loader_split
from tasks.data.stream import Streamed, subset, write_split
from tasks.io import atomic_dir, sha256_file, write_json
from tasks.layout import LAYOUT
from tasks.models.trainers import get_trainer


def describe(cfg: Config, split: str) -> str:
    """Where a split comes from, for messages: its path, or the loader and split name."""
    src = getattr(cfg.data, split)
    return f"{src.path}" if src.source != "loader" else f"loader {cfg.data.loader!r} ({split} split)"


def check_splits(
    cfg: Config, sources: dict[str, Source], streamed: dict[str, Streamed], log: Callable[[str], None]
) -> None:
    """Calibration and evaluation must not share samples (by content, over the whole splits); every
    class of the evaluation split needs samples to be scored. An empty class in the calibration
    split, or one that only ``limit``'s subset leaves out, is a warning."""
    cal, ev = sources["calib"], sources["eval"]
    if cal.named and ev.named and cal.classes != ev.classes:
        raise DataError(
            f"data.calib ({describe(cfg, 'calib')}) has classes {cal.classes[:6]}... but data.eval "
            f"({describe(cfg, 'eval')}) has {ev.classes[:6]}...: the same class index would mean two categories. "
            "Set data.category_ids (the category id of class 0, 1, ...) so both splits map ids alike"
        )
    both = shared_digests(streamed["calib"].digests, streamed["eval"].digests)
    if both:
        i, j = both[0]
        where = f"calib #{i} = eval #{j}"
        if sources["calib"].fitted:
            where = f"{sources['calib'].where(i)} = {sources['eval'].where(j)}"
        raise DataError(
            f"data.calib ({describe(cfg, 'calib')}) and data.eval ({describe(cfg, 'eval')}) share {len(both)} "
            f"sample(s) with identical content (e.g. {where}): calibrating or choosing layers on "
            "evaluation images makes every INT8 accuracy figure optimistic. Point them at disjoint images"
        )
    if cfg.model.task == "fidelity":  # no labels to check: scored against the FP32 model's own outputs
        return
    for split in ("calib", "eval"):
        ids, classes = streamed[split].class_ids, sources[split].classes
        if ids is None:
            continue
        where = f"data.{split} ({describe(cfg, split)})"
        empty = empty_classes(ids, classes)
        if empty and split == "eval":
            raise DataError(
                f"{where}: class(es) {', '.join(map(repr, empty))} have no samples, so the model's "
                "accuracy on them cannot be measured (and a drop there would go unseen); add images "
                "of every class to the evaluation split"
            )
        if empty:
            log(
                f"WARNING: {where}: class(es) {', '.join(map(repr, empty))} have no samples; the calibration "
                "ranges will not have seen them"
            )
        left_out = [c for c in empty_classes(ids[streamed[split].used], classes) if c not in empty]
        if left_out:
            log(
                f"WARNING: {where}: data.{split}.limit={getattr(cfg.data, split).limit} leaves class(es) "
                f"{', '.join(map(repr, left_out))} without samples; raise the limit to cover every class"
            )


def run(cfg: Config, out: Path, log: Callable[[str], None] = print) -> dict:
    if cfg.prepare.train and cfg.data.eval.source != "loader" and not cfg.data.generate:
        raise DataError(
            "prepare.train trains on the loader's train split; set data.eval.source=loader "
            "or prepare.train=null to bring your own checkpoint"
        )
    metrics: dict = {"splits": {}}
    if cfg.data.generate:  # an example's files, written before its splits are read from them
        folder, facts = generate(cfg.data.generate, cfg.data.generate_dir, cfg.data.seed)
        metrics["generated"] = {"writer": cfg.data.generate, "folder": str(folder), **facts}
        log(f"data.generate: wrote {cfg.data.generate!r} to {folder}")
    sources = {split: open_split(cfg, split) for split in ("calib", "eval")}
    streamed = {}
    for split, src in sources.items():
        streamed[split] = write_split(cfg, split, src, subset(cfg, split, len(src)), out / split)
        n = len(streamed[split].used)
        metrics["splits"][split] = {"samples": n, "classes": len(src.classes)}
        log(f"{split}: {n} samples")
    check_splits(cfg, sources, streamed, log)
    # the longer list: a split may not show the last classes (class maps, .npz labels named by id)
    write_json(out / "classes.json", max((s.classes for s in sources.values()), key=len))
    if cfg.prepare.train:
        trainer = get_trainer(cfg.prepare.train)
        raw = load_loader_split(cfg.data.loader, "train", cfg.data.seed)
        x = preprocess(raw.images, cfg.model.input)
        t0 = time.perf_counter()
        p = cfg.prepare
        train = trainer(
            x,
            raw.labels,
            out / "model.pt",
            epochs=p.epochs,
            batch_size=p.batch_size,
            lr=p.lr,
            seed=p.seed,
            progress=lambda e, n, loss: log(f"epoch {e}/{n} loss {loss:.4f}"),
        )
        train["seconds"] = time.perf_counter() - t0
        train["train_samples"] = int(len(raw.labels))
        metrics["train"] = train
    return metrics


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("prepare").parse_args(argv)
    out, metrics_path = LAYOUT.prepare_dir, LAYOUT.prepare_metrics
    with stage.stage_errors("prepare", outputs=[out, metrics_path]):
        cfg = stage.load(args)
        with atomic_dir(out) as tmp:
            metrics = run(cfg, tmp, lambda m: stage.log("prepare", m))
        if LAYOUT.trained_checkpoint.exists():
            metrics["checkpoint_sha256"] = sha256_file(LAYOUT.trained_checkpoint)
        write_json(metrics_path, metrics)


if __name__ == "__main__":
    main()
