"""Stage ``prepare``: materialise the calibration and evaluation splits as model-ready arrays
and, for the bundled example, train the model.

Outputs (``artifacts/prepare/``): ``calib/`` and ``eval/`` (``x.npy`` float32 NCHW after the
input spec's preprocessing, ``y.npy`` int64), ``classes.json``, and ``model.pt`` when
``prepare.train`` names a trainer. Metrics: ``metrics/prepare.json``. With ``data.generate``, the
named example dataset writer first writes the files the splits are read from
(:mod:`tasks.data.generate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tasks import stage
from tasks.config import Config
from tasks.data.checks import empty_classes, shared
from tasks.data.generate import generate
from tasks.data.preprocess import input_hw, preprocess
from tasks.data.sources import DataError, RawSplit, load_imagefolder, load_loader_split, load_npz
from tasks.data.split import save_split
from tasks.io import atomic_dir, sha256_file, write_json
from tasks.layout import LAYOUT
from tasks.models.trainers import get_trainer


def read_whole_split(cfg: Config, split: str) -> RawSplit:
    """Every sample of ``data.<split>``, before ``limit``."""
    src = getattr(cfg.data, split)
    if src.source == "loader":
        raw = load_loader_split(cfg.data.loader, split, cfg.data.seed)
    elif src.source == "npz":
        raw = load_npz(src.path)
    else:
        raw = load_imagefolder(src.path, input_hw(cfg.model.input), cfg.model.input.channel_order == "gray")
    if len(raw.labels) == 0:
        raise DataError(f"data.{split} is empty")
    return raw


def limited(cfg: Config, split: str, raw: RawSplit) -> RawSplit:
    """``data.<split>.limit`` samples of ``raw``, a subset drawn with ``data.seed`` (all when no limit)."""
    limit = getattr(cfg.data, split).limit
    if limit is None or limit >= len(raw.labels):
        return raw
    idx = np.sort(np.random.default_rng(cfg.data.seed).choice(len(raw.labels), limit, replace=False))
    return RawSplit(raw.images[idx], raw.labels[idx], raw.classes)


def read_split(cfg: Config, split: str) -> RawSplit:
    """The samples of ``data.<split>`` the pipeline uses (``limit`` applied)."""
    return limited(cfg, split, read_whole_split(cfg, split))


def describe(cfg: Config, split: str) -> str:
    """Where a split comes from, for messages: its path, or the loader and split name."""
    src = getattr(cfg.data, split)
    return f"{src.path}" if src.source != "loader" else f"loader {cfg.data.loader!r} ({split} split)"


def check_splits(
    cfg: Config, whole: dict[str, RawSplit], used: dict[str, RawSplit], log: Callable[[str], None]
) -> None:
    """Calibration and evaluation must not share samples (by content, over the whole splits); every
    class of the evaluation split needs samples to be scored. An empty class in the calibration
    split, or one that only ``limit``'s subset leaves out, is a warning."""
    both = shared(whole["calib"].images, whole["eval"].images)
    if both:
        i, j = both[0]
        raise DataError(
            f"data.calib ({describe(cfg, 'calib')}) and data.eval ({describe(cfg, 'eval')}) share {len(both)} "
            f"sample(s) with identical content (e.g. calib #{i} = eval #{j}): calibrating or choosing layers on "
            "evaluation images makes every INT8 accuracy figure optimistic. Point them at disjoint images"
        )
    for split in ("calib", "eval"):
        where = f"data.{split} ({describe(cfg, split)})"
        empty = empty_classes(whole[split].labels, whole[split].classes)
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
        left_out = [c for c in empty_classes(used[split].labels, used[split].classes) if c not in empty]
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
    classes: list[str] | None = None
    whole = {split: read_whole_split(cfg, split) for split in ("calib", "eval")}
    used = {split: limited(cfg, split, raw) for split, raw in whole.items()}
    check_splits(cfg, whole, used, log)
    for split, raw in used.items():
        save_split(out / split, preprocess(raw.images, cfg.model.input), raw.labels)
        metrics["splits"][split] = {"samples": int(len(raw.labels)), "classes": len(raw.classes)}
        classes = classes or raw.classes
        log(f"{split}: {len(raw.labels)} samples")
    write_json(out / "classes.json", classes)
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
