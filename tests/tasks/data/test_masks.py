"""The masks source (images + same-named PNG class maps) and the images source (unlabelled)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tasks.config import Config, from_dict
from tasks.data.errors import DataError
from tasks.data.masks import MaskSource, UnlabelledSource
from tasks.io import read_json
from tasks.prepare import run
from tests.tasks.data.files import png


def _mask(path, mask: np.ndarray, palette: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(mask.astype(np.uint8), mode="L")
    if palette:  # VOC's class maps are palette PNGs: the pixel values are the indices
        im = im.convert("P")
        im.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    im.save(path)


def _split(root, seed: int, top: int = 2) -> dict:
    png(root / "img" / "a.png", (20, 40), seed=seed)
    png(root / "img" / "sub" / "b.jpg", (30, 30), seed=seed + 1)
    m = np.zeros((20, 40), np.uint8)
    m[:, 20:] = top
    m[0, :] = 255
    _mask(root / "ann" / "a.png", m)
    _mask(root / "ann" / "sub" / "b.png", np.ones((30, 30), np.uint8), palette=False)
    return {"source": "masks", "path": str(root / "img"), "annotations": str(root / "ann"), "limit": None}


def _params(params, calib: dict, ev: dict) -> Config:
    params["model"]["task"] = "segmentation"
    params["model"]["input"]["shape"] = [1, 40, 40]
    params["data"]["calib"], params["data"]["eval"] = calib, ev
    return from_dict(Config, params)


def test_class_maps_resized_nearest_and_letterboxed_with_ignore(params, workdir):
    cfg = _params(params, _split(workdir / "cal", 1, top=3), _split(workdir / "val", 2))
    cfg.model.input.letterbox = True
    metrics = run(cfg, workdir / "out", log=lambda m: None)
    assert read_json(workdir / "out" / "classes.json") == ["0", "1", "2", "3"]  # calib goes up to class 3
    assert metrics["splits"]["eval"] == {"samples": 2, "classes": 3}
    y = np.load(workdir / "out" / "eval" / "y.npy")
    assert y.dtype == np.int64 and y.shape == (2, 40, 40)
    assert (y[0, :10] == 255).all() and (y[0, 30:] == 255).all()  # letterbox padding: ignore
    assert (y[0, 10] == 255).all()  # the image's own ignore row
    assert set(np.unique(y[0, 11:30, :20])) == {0} and set(np.unique(y[0, 11:30, 20:])) == {2}
    assert set(np.unique(y[1])) == {1}  # the 30x30 image fills the 40x40 input


def test_binary_masks_saved_as_0_and_255_are_refused(params, workdir):
    cal = _split(workdir / "cal", 1)
    ev = _split(workdir / "val", 2)
    for f in (workdir / "val" / "ann").rglob("*.png"):
        m = np.asarray(Image.open(f))
        _mask(f, np.where(m > 0, 255, 0), palette=False)
    with pytest.raises(DataError, match=r"data.eval: the class maps under .*val/ann hold only 0 and 255"):
        run(_params(params, cal, ev), workdir / "out", log=lambda m: None)


def test_missing_wrong_size_and_rgb_class_maps_are_named(tmp_path):
    _split(tmp_path, 1)
    src = MaskSource(tmp_path / "img", tmp_path / "ann", gray=True)
    with pytest.raises(DataError, match=r"ann/a.png: class map is 20x40 but its image is 20x41"):
        src.label(0, (20, 41))
    (tmp_path / "ann" / "sub" / "b.png").unlink()
    with pytest.raises(DataError, match=r"ann/sub/b.png: no class map for image .*img/sub/b.jpg"):
        src.label(1, (30, 30))
    png(tmp_path / "ann" / "sub" / "b.png", (30, 30), rgb=True)
    with pytest.raises(DataError, match=r"sub/b.png: a RGB image is not a class map"):
        src.label(1, (30, 30))
    bit = Image.fromarray(np.eye(30, dtype=bool))
    bit.save(tmp_path / "ann" / "sub" / "b.png")
    assert set(np.unique(src.label(1, (30, 30)))) == {0, 1}  # a 1-bit PNG: foreground 1


def test_unlabelled_images_follow_the_contract(params, workdir):
    for split, seed in (("cal", 1), ("val", 2)):
        png(workdir / split / "x" / "a.png", (28, 28), seed=seed)
        png(workdir / split / "b.png", (56, 40), seed=seed + 5)
        (workdir / split / "notes.txt").write_text("not an image")
    params["data"]["calib"] = {"source": "images", "path": "cal", "limit": None}
    params["data"]["eval"] = {"source": "images", "path": "val", "limit": None}
    params["model"]["task"] = "segmentation"  # any task: the labels are "none" (-1) and no class is checked
    run(from_dict(Config, params), workdir / "out", log=lambda m: None)
    assert read_json(workdir / "out" / "classes.json") == []
    assert np.load(workdir / "out" / "eval" / "x.npy").shape == (2, 1, 28, 28)
    y = np.load(workdir / "out" / "eval" / "y.npy")
    assert y.dtype == np.int64 and y.tolist() == [-1, -1]
    src = UnlabelledSource(workdir / "val", gray=True)
    assert [src.where(i).rsplit("/", 1)[-1] for i in range(len(src))] == ["b.png", "a.png"]
    assert src.label(0, (1, 1)) == -1 and src.classes == []
    (workdir / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        UnlabelledSource(workdir / "empty", gray=True)
