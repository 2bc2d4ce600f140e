"""The coco source: an image folder and a COCO instances JSON, through prepare as a user runs it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tasks.config import Config, from_dict
from tasks.data.coco import CocoSource
from tasks.data.errors import DataError
from tasks.io import read_json
from tasks.prepare import run
from tests.tasks.data.files import coco_json, coco_split, png


def _detection(params: dict, workdir, letterbox: bool = True) -> Config:
    cal_imgs, cal_json = coco_split(workdir / "cal", seed=1)
    ev_imgs, ev_json = coco_split(workdir / "val", seed=2)
    params["model"].update(task="detection", outputs=["dets"])
    params["model"]["input"].update(shape=[3, 64, 64], channel_order="rgb", mean=[0.0] * 3, std=[1.0] * 3)
    params["model"]["input"]["letterbox"] = letterbox
    params["eval"]["decoder"] = "boxes"
    params["data"]["calib"] = {"source": "coco", "path": str(cal_imgs), "annotations": str(cal_json), "limit": None}
    params["data"]["eval"] = {"source": "coco", "path": str(ev_imgs), "annotations": str(ev_json), "limit": None}
    return from_dict(Config, params)


def test_boxes_in_original_pixels_with_meta_and_letterboxed_inputs(params, workdir):
    cfg = _detection(params, workdir)
    metrics = run(cfg, workdir / "out", log=lambda m: None)
    assert metrics["splits"]["eval"] == {"samples": 3, "classes": 3}
    assert read_json(workdir / "out" / "classes.json") == ["person", "car", "kite"]  # sorted by id: 1, 3, 7
    ev = workdir / "out" / "eval"
    y = np.load(ev / "y.npy")
    assert y.dtype == np.float32 and y.shape == (3, 2, 5)  # at most 2 boxes per image: the crowd box is dropped
    np.testing.assert_allclose(y[0], [[0, 10, 20, 40, 60], [2, 100.5, 10, 150.5, 70.25]])  # xywh -> x1y1x2y2
    np.testing.assert_allclose(y[1], [[1, 5, 5, 15, 15], [-1, -1, -1, -1, -1]])
    assert (y[2, :, 0] == -1).all()  # no annotations: a negative image
    meta = np.load(ev / "meta.npy")
    np.testing.assert_allclose(meta[0], [100, 200, 0.32, 0.32, 16, 0])  # letterboxed: 64x32 centred
    np.testing.assert_allclose(meta[2], [60, 40, 64 / 60, 64 / 60, 0, 10], rtol=1e-6)  # 43 wide: 10 + 11
    x = np.load(ev / "x.npy")
    assert x.shape == (3, 3, 64, 64) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, :16], 114 / 255, rtol=1e-6)  # the padding rows


def test_resize_without_letterbox_scales_each_axis(params, workdir):
    run(_detection(params, workdir, letterbox=False), workdir / "out", log=lambda m: None)
    meta = np.load(workdir / "out" / "eval" / "meta.npy")
    np.testing.assert_allclose(meta[0], [100, 200, 0.64, 0.32, 0, 0])


def test_category_ids_map_classes_and_unknown_ids_are_named(params, workdir):
    cfg = _detection(params, workdir)
    cfg.data.category_ids = [3, 1, 7]  # class 0 = car
    run(cfg, workdir / "out", log=lambda m: None)
    assert read_json(workdir / "out" / "classes.json") == ["car", "person", "kite"]
    assert np.load(workdir / "out" / "eval" / "y.npy")[0, 0, 0] == 1  # person is class 1 now
    cfg.data.category_ids = [1, 3]  # COCO's trap: a mapping that leaves out a category in use
    with pytest.raises(DataError, match=r"cal/instances.json: annotation 2 has category_id 7, which is not in"):
        run(cfg, workdir / "out2", log=lambda m: None)


def test_missing_image_and_size_mismatch_are_named(params, workdir):
    cfg = _detection(params, workdir)
    (workdir / "val" / "images" / "sub" / "b.png").unlink()
    with pytest.raises(DataError, match=r"val/images/sub/b.png: image listed in .*missing on disk \(1 of 3"):
        run(cfg, workdir / "out", log=lambda m: None)
    png(workdir / "val" / "images" / "sub" / "b.png", (80, 81), seed=5)
    with pytest.raises(DataError, match=r"sub/b.png: image is 80x81 \(h x w\) but .* says 80x80"):
        run(cfg, workdir / "out", log=lambda m: None)


def test_a_corrupt_image_is_named(params, workdir):
    cfg = _detection(params, workdir)
    (workdir / "val" / "images" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"val/images/c.png: cannot read image"):
        run(cfg, workdir / "out", log=lambda m: None)


def test_a_bad_json_or_reference_is_named(tmp_path):
    png(tmp_path / "i" / "a.png", (8, 8))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not a readable JSON"):
        CocoSource(tmp_path / "i", bad, "detection", None, gray=True)
    images = [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}]
    ann = coco_json(tmp_path / "a.json", images, [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]}], [{"id": 1}])
    with pytest.raises(DataError, match="annotation 1 refers to image_id 9"):
        CocoSource(tmp_path / "i", ann, "detection", None, gray=True)
    with pytest.raises(DataError, match="model.task is 'classification'"):
        CocoSource(tmp_path / "i", ann, "classification", None, gray=True)


def test_keypoint_rows_follow_the_contract(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}]
    png(tmp_path / "i" / "a.png", (20, 30))
    cats = [{"id": 1, "name": "person", "keypoints": ["nose", "tail"]}]
    anns = [
        {"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 8], "keypoints": [3, 4, 2, 0, 0, 0], "num_keypoints": 1},
        {"image_id": 1, "category_id": 1, "bbox": [5, 5, 2, 2], "keypoints": [], "num_keypoints": 0},
    ]
    src = CocoSource(tmp_path / "i", coco_json(tmp_path / "k.json", images, anns, cats), "keypoints", None, True)
    y = src.label(0, (20, 30))
    assert y.dtype == np.float32 and y.shape == (2, 5 + 3 * 2)
    np.testing.assert_allclose(y[0], [0, 1, 2, 11, 10, 3, 4, 2, 0, 0, 0])
    np.testing.assert_allclose(y[1, 5:], 0)  # no keypoints labelled: every v = 0


def test_segmentation_class_map_from_polygons_rle_and_crowd(params, workdir):
    from faster_coco_eval.core import mask as mask_api

    def split(name: str, seed: int):
        images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 40}]
        png(workdir / name / "a.png", (20, 40), seed=seed)
        square = np.zeros((20, 40), np.uint8, order="F")
        square[10:20, 30:40] = 1
        rle = mask_api.encode(np.asfortranarray(square))
        rle["counts"] = rle["counts"].decode()  # as JSON stores it
        anns = [
            {"image_id": 1, "category_id": 5, "segmentation": [[0, 0, 20, 0, 20, 10, 0, 10]], "area": 200},
            {"image_id": 1, "category_id": 9, "segmentation": rle, "area": 100},
            {
                "image_id": 1,
                "category_id": 5,
                "segmentation": {"size": [20, 40], "counts": [400, 20, 380]},
                "iscrowd": 1,
            },
        ]
        cats = [{"id": 5, "name": "road"}, {"id": 9, "name": "sign"}]
        return {
            "source": "coco",
            "path": str(workdir / name),
            "annotations": str(coco_json(workdir / f"{name}.json", images, anns, cats)),
            "limit": None,
        }

    params["model"].update(task="segmentation")
    params["model"]["input"].update(shape=[1, 40, 40], letterbox=True)
    params["data"]["calib"], params["data"]["eval"] = split("cal", 1), split("val", 2)
    run(from_dict(Config, params), workdir / "out", log=lambda m: None)
    assert read_json(workdir / "out" / "classes.json") == ["background", "road", "sign"]
    y = np.load(workdir / "out" / "eval" / "y.npy")
    assert y.dtype == np.int64 and y.shape == (1, 40, 40)
    # letterboxed 20x40 -> 20x40 rows 10..29: padding above and below is ignore (255)
    assert (y[0, :10] == 255).all() and (y[0, 30:] == 255).all()
    img = y[0, 10:30]
    assert (img[0:10, 0:20] == 1).all()  # the road polygon
    assert (img[10:20, 30:40] == 2).all()  # the sign's compressed RLE
    assert (img[0:20, 20:21] == 255).all()  # the crowd's uncompressed RLE (column 20): ignore
    assert (img[10:20, 0:20] == 0).all()  # background


def test_images_are_read_in_json_id_order(tmp_path):
    images = [{"id": 2, "file_name": "b.png"}, {"id": 1, "file_name": "a.png"}]
    png(tmp_path / "i" / "a.png", (4, 4), value=1)
    png(tmp_path / "i" / "b.png", (4, 4), value=2)
    src = CocoSource(tmp_path / "i", coco_json(tmp_path / "j.json", images, [], [{"id": 1}]), "detection", None, True)
    assert [src.where(i).endswith(n) for i, n in enumerate(["a.png", "b.png"])] == [True, True]
    assert src.image(1)[0, 0] == 2 and src.label(1, (4, 4)).shape == (0, 5)
    assert json.loads((tmp_path / "j.json").read_text())["images"][0]["id"] == 2
    assert Image.open(tmp_path / "i" / "a.png").size == (4, 4)


def test_a_perfect_detector_scores_100_on_the_prepared_letterboxed_split(params, workdir):
    """The eval split's meta, read back through Split, maps input-pixel detections onto the labels
    in original pixels: boxes a perfect model would output on the letterboxed inputs score mAP 100."""
    from tasks.data.geometry import boxes_to_input
    from tasks.data.split import Split, classes_of
    from tasks.metrics.task import score

    cfg = _detection(params, workdir)
    run(cfg, workdir / "out", log=lambda m: None)
    split = Split(workdir / "out" / "eval")
    assert split.meta is not None and split.meta.shape == (3, 6)
    y = np.asarray(split.y)
    dets = np.zeros((len(y), y.shape[1], 6), np.float32)
    for i, (rows, meta) in enumerate(zip(y, split.meta)):
        dets[i, :, :4] = boxes_to_input(rows[:, 1:], meta)
        dets[i, :, 4], dets[i, :, 5] = np.where(rows[:, 0] >= 0, 0.9, 0.0), np.maximum(rows[:, 0], 0)
    res = score(cfg, {"dets": dets}, y, classes_of(split.root), split.meta)
    assert res["value"] == pytest.approx(100.0)
    assert score(cfg, {"dets": dets}, y, classes_of(split.root))["value"] < 50  # unmapped boxes miss


def test_splits_whose_categories_differ_are_refused_until_category_ids_maps_them(params, workdir):
    cfg = _detection(params, workdir)
    data = json.loads((workdir / "val" / "instances.json").read_text())
    data["categories"].append({"id": 2, "name": "bicycle"})  # eval's sorted ids: 1, 2, 3, 7
    (workdir / "val" / "instances.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"the same class index would mean two categories. Set data.category_ids"):
        run(cfg, workdir / "out", log=lambda m: None)
    cfg.data.category_ids = [1, 3, 7]
    run(cfg, workdir / "out2", log=lambda m: None)
    assert read_json(workdir / "out2" / "classes.json") == ["person", "car", "kite"]
