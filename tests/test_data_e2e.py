"""End to end: `dvc repro prepare` on a user's YOLO dataset with a bad label line, in a fresh copy
of the repository: one clear error naming file:line, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import fresh_repo, sh
from tests.tasks.data.files import png

pytestmark = pytest.mark.e2e


def _yolo(root: Path) -> Path:
    (root / "data.yaml").parent.mkdir(parents=True)
    (root / "data.yaml").write_text("names: [digit]\n")
    for split, seed in (("train", 1), ("val", 2)):
        png(root / "images" / split / "a.png", (48, 64), seed=seed)
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n0 1.5 0.5 0.25 0.25\n")
    return root


def test_repro_prepare_names_the_bad_yolo_line_and_writes_nothing(tmp_path):
    data = _yolo(tmp_path / "dataset")
    splits = [
        f"data.{s}.{k}={v}"
        for s, sub in (("calib", "train"), ("eval", "val"))
        for k, v in (("source", "yolo"), ("path", data), ("split", sub))
    ]
    repo = fresh_repo(tmp_path / "repo", ["model=mnist_centernet", "prepare=none", "data=mnist_boxes", *splits])
    r = sh(["dvc", "repro", "prepare"], repo, check=False)
    assert r.returncode != 0
    err = [line for line in r.stderr.splitlines() if line.startswith("edgeforge prepare: error:")]
    assert err == [
        f"edgeforge prepare: error: {data / 'labels/val/a.txt'}:2: coordinate(s) [1.5] outside 0..1: YOLO labels "
        "are normalised by the image size (class cx cy w h, each in 0..1)"
    ]
    assert "Traceback" not in r.stderr + r.stdout
    assert not (repo / "artifacts" / "prepare").exists() and not (repo / "metrics" / "prepare.json").exists()
