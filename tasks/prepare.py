"""Stage ``prepare``: materialise the calibration and evaluation splits as model-ready arrays
and, for the bundled example, train the model.

Outputs (``artifacts/prepare/``): ``calib/`` and ``eval/`` (``x.npy`` float32 NCHW after the
input spec's preprocessing, ``y.npy`` int64), ``classes.json``, and ``model.pt`` when
``prepare.train`` names a trainer. Metrics: ``metrics/prepare.json``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from tasks import stage
from tasks.config import Config
from tasks.data.preprocess import input_hw, preprocess
from tasks.data.sources import DataError, RawSplit, load_imagefolder, load_loader_split, load_npz
from tasks.data.split import save_split
from tasks.io import atomic_dir, sha256_file, write_json
from tasks.layout import LAYOUT
from tasks.models.trainers import get_trainer


def read_split(cfg: Config, split: str) -> RawSplit:
    src = getattr(cfg.data, split)
    if src.source == "loader":
        raw = load_loader_split(cfg.data.loader, split, cfg.data.seed)
    elif src.source == "npz":
        raw = load_npz(src.path)
    else:
        raw = load_imagefolder(src.path, input_hw(cfg.model.input), cfg.model.input.channel_order == "gray")
    if src.limit is not None and src.limit < len(raw.labels):
        idx = np.sort(np.random.default_rng(cfg.data.seed).choice(len(raw.labels), src.limit, replace=False))
        raw = RawSplit(raw.images[idx], raw.labels[idx], raw.classes)
    if len(raw.labels) == 0:
        raise DataError(f"data.{split} is empty")
    return raw


def run(cfg: Config, out: Path, log: Callable[[str], None] = print) -> dict:
    metrics: dict = {"splits": {}}
    classes: list[str] | None = None
    for split in ("calib", "eval"):
        raw = read_split(cfg, split)
        save_split(out / split, preprocess(raw.images, cfg.model.input), raw.labels)
        metrics["splits"][split] = {"samples": int(len(raw.labels)), "classes": len(raw.classes)}
        classes = classes or raw.classes
        log(f"{split}: {len(raw.labels)} samples")
    write_json(out / "classes.json", classes)
    if cfg.prepare.train:
        trainer = get_trainer(cfg.prepare.train)
        if cfg.data.eval.source != "loader":
            raise DataError("prepare.train trains on the loader's train split; set data.eval.source=loader "
                            "or prepare.train=null to bring your own checkpoint")
        raw = load_loader_split(cfg.data.loader, "train", cfg.data.seed)
        x = preprocess(raw.images, cfg.model.input)
        t0 = time.perf_counter()
        p = cfg.prepare
        train = trainer(x, raw.labels, out / "model.pt", epochs=p.epochs, batch_size=p.batch_size, lr=p.lr,
                        seed=p.seed, progress=lambda e, n, loss: log(f"epoch {e}/{n} loss {loss:.4f}"))
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
