"""The yolo source: Ultralytics' images/ + labels/ + data.yaml layout, through prepare."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.config import Config, from_dict
from tasks.data.errors import DataError
from tasks.data.yolo import YoloSource
from tasks.io import read_json
from tasks.prepare import run
from tests.tasks.data.files import png


def _dataset(root, names="[cat, dog]", kpt_shape: str | None = None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(f"names: {names}\n" + (f"kpt_shape: {kpt_shape}\n" if kpt_shape else ""))
    for split, seed in (("train", 1), ("val", 2)):
        png(root / "images" / split / "a.png", (100, 200), seed=seed, rgb=True)
        png(root / "images" / split / "deep" / "b.jpg", (50, 50), seed=seed + 10, rgb=True)
        png(root / "images" / split / "neg.png", (40, 40), seed=seed + 20, rgb=True)
        labels = root / "labels" / split
        (labels / "deep").mkdir(parents=True)
        (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n\n1 0.25 0.75 0.5 0.5\n")
        (labels / "deep" / "b.txt").write_text("1 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3\n")  # a polygon
        # neg.png has no label file: a negative
    return root


def _params(params, root):
    params["model"].update(task="detection", outputs=["dets"])
    params["model"]["input"].update(shape=[3, 32, 32], channel_order="rgb", mean=[0.0] * 3, std=[1.0] * 3)
    params["eval"]["decoder"] = "boxes"
    params["data"]["calib"] = {"source": "yolo", "path": str(root), "split": "train", "limit": None}
    params["data"]["eval"] = {"source": "yolo", "path": str(root), "split": "val", "limit": None}
    return from_dict(Config, params)


def test_boxes_from_normalised_lines_and_polygons(params, workdir):
    cfg = _params(params, _dataset(workdir / "ds", names="{0: cat, 1: dog}"))
    metrics = run(cfg, workdir / "out", log=lambda m: None)
    assert metrics["splits"]["eval"] == {"samples": 3, "classes": 2}
    assert read_json(workdir / "out" / "classes.json") == ["cat", "dog"]
    y = np.load(workdir / "out" / "eval" / "y.npy")  # files sorted by path: a.png, deep/b.jpg, neg.png
    assert y.dtype == np.float32 and y.shape == (3, 2, 5)
    np.testing.assert_allclose(y[0], [[0, 80, 30, 120, 70], [1, 0, 50, 100, 100]])  # 200 wide, 100 high
    np.testing.assert_allclose(y[1, 0], [1, 5, 5, 15, 15])  # the polygon's bounding box in the 50x50 image
    assert (y[1, 1:, 0] == -1).all() and (y[2, :, 0] == -1).all()
    np.testing.assert_allclose(np.load(workdir / "out" / "eval" / "meta.npy")[0], [100, 200, 0.32, 0.16, 0, 0])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 1.2 0.2 0.2", r"a.txt:2: coordinate\(s\) \[1.2\] outside 0..1"),
        ("0 0.5 0.5 0.2", r"a.txt:2: 4 values; expected class cx cy w h"),
        ("0 0.5 0.5 zero 0.2", r"a.txt:2: not a label line \('0 0.5 0.5 zero 0.2'\)"),
        ("2 0.5 0.5 0.2 0.2", r"a.txt:2: class 2 is not one of data.yaml's names \(0..1\)"),
    ],
)
def test_bad_label_lines_are_named_by_file_and_line(params, workdir, line, message):
    root = _dataset(workdir / "ds")
    (root / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n" + line + "\n")
    with pytest.raises(DataError, match=message) as e:
        run(_params(params, root), workdir / "out", log=lambda m: None)
    assert str(root / "labels" / "val" / "a.txt") in str(e.value)
    assert not (workdir / "out" / "classes.json").exists()


def test_keypoints_with_and_without_visibility(tmp_path):
    root = _dataset(tmp_path / "ds", kpt_shape="[2, 3]")
    (root / "labels" / "val" / "a.txt").write_text("1 0.5 0.5 0.5 0.5 0.25 0.5 2 0 0 0\n")
    src = YoloSource(root, "val", "keypoints", gray=False)
    y = src.label(0, (100, 200))
    assert y.shape == (1, 5 + 3 * 2) and y.dtype == np.float32
    np.testing.assert_allclose(y[0], [1, 50, 25, 150, 75, 50, 50, 2, 0, 0, 0])
    (root / "data.yaml").write_text("names: [a, b]\nkpt_shape: [2, 2]\n")
    (root / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.5 0.5 0.25 0.5 0 0\n")
    y = YoloSource(root, "val", "keypoints", gray=False).label(0, (100, 200))
    np.testing.assert_allclose(y[0, 5:], [50, 50, 2, 0, 0, 0])  # (0, 0) is an unlabelled point
    (root / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.5 0.5 0.25 0.5\n")
    with pytest.raises(DataError, match=r"a.txt:1: 7 values; expected class cx cy w h followed by 2 x 'px py'"):
        YoloSource(root, "val", "keypoints", gray=False).label(0, (100, 200))


def test_layout_errors_name_what_is_missing(tmp_path):
    with pytest.raises(DataError, match=r"ds/data.yaml: no such file"):
        YoloSource(tmp_path / "ds", "val", "detection", gray=True)
    root = _dataset(tmp_path / "ds2")
    with pytest.raises(DataError, match=r"images/test: no such folder"):
        YoloSource(root, "test", "detection", gray=True)
    with pytest.raises(DataError, match=r"needs kpt_shape"):
        YoloSource(root, "val", "keypoints", gray=True)
    (root / "data.yaml").write_text("names: {1: a, 2: b}\n")
    with pytest.raises(DataError, match=r"keys 0..n-1"):
        YoloSource(root, "val", "detection", gray=True)
    with pytest.raises(DataError, match="model.task is 'segmentation'"):
        YoloSource(root, "val", "segmentation", gray=True)
