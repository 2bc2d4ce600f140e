"""The COCO writer: the detection canvases written as PNGs + an instances JSON that a COCO reader
(faster-coco-eval's ``COCO``) loads back to the same pixels, boxes and classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from faster_coco_eval import COCO
from PIL import Image

from examples.canvas import DIGIT_CLASSES, canvas_splits
from examples.coco_writer import CATEGORY_IDS, write_coco, write_mnist_coco
from tasks.data.generate import WRITERS


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    return root, write_mnist_coco(root, 0)


def test_layout_and_facts_of_the_registered_writer(written):
    root, facts = written
    assert WRITERS.get("mnist_coco") is write_mnist_coco
    splits = canvas_splits(0)
    for split in ("calib", "eval"):
        assert facts[split]["annotations"] == f"annotations/instances_{split}.json"
        assert facts[split]["image_count"] == len(splits[split].images) == len(list((root / split).glob("*.png")))
        assert facts[split]["boxes"] == int((splits[split].boxes[..., 0] >= 0).sum())
    assert sorted(p.name for p in root.iterdir()) == ["annotations", "calib", "eval"]


def test_category_ids_are_not_the_class_indices(written):
    root, _ = written
    doc = json.loads((root / "annotations/instances_eval.json").read_text())
    ids = [c["id"] for c in doc["categories"]]
    assert ids == sorted(ids) == CATEGORY_IDS and [c["name"] for c in doc["categories"]] == DIGIT_CLASSES
    assert all(i != d and i != d + 1 for d, i in enumerate(ids))  # neither the index nor index + 1
    assert len(set(np.diff(ids))) == 1 and ids[0] > 1  # gaps between the ids


@pytest.mark.parametrize("split", ["calib", "eval"])
def test_a_coco_reader_gets_the_canvases_back(written, split):
    root, _ = written
    canvases = canvas_splits(0)[split]
    coco = COCO(str(root / f"annotations/instances_{split}.json"))
    index = {cid: d for d, cid in enumerate(CATEGORY_IDS)}
    assert sorted(coco.getImgIds()) == list(range(1, len(canvases.images) + 1))
    for i in list(range(0, len(canvases.images), 37)) + [len(canvases.images) - 1]:
        info = coco.loadImgs(i + 1)[0]
        assert (info["height"], info["width"]) == canvases.images[i].shape
        with Image.open(root / split / info["file_name"]) as im:
            assert im.mode == "L"
            np.testing.assert_array_equal(np.asarray(im), canvases.images[i])  # PNG is lossless
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[i + 1]))
        got = [
            [
                index[a["category_id"]],
                a["bbox"][0],
                a["bbox"][1],
                a["bbox"][0] + a["bbox"][2],
                a["bbox"][1] + a["bbox"][3],
            ]
            for a in anns
        ]
        want = canvases.boxes[i][canvases.boxes[i, :, 0] >= 0].tolist()
        assert sorted(got) == sorted(want)
        assert all(a["iscrowd"] == 0 and a["area"] == a["bbox"][2] * a["bbox"][3] and a["id"] > 0 for a in anns)


def test_rgb_images_float_boxes_and_padding(tmp_path):
    images = np.zeros((2, 10, 12, 3), np.uint8)
    images[1, 2:5, 3:7] = (255, 0, 0)
    boxes = np.array([[[-1, -1, -1, -1, -1]], [[1, 3.0, 2.0, 7.5, 5.0]]], np.float32)
    facts = write_coco(tmp_path, "val", images, boxes, ["cat", "dog"], [17, 18])
    assert facts == {"images": "val", "annotations": "annotations/instances_val.json", "image_count": 2, "boxes": 1}
    doc = json.loads((tmp_path / facts["annotations"]).read_text())
    assert doc["images"][0] == {"id": 1, "file_name": "000000000001.png", "height": 10, "width": 12}
    assert doc["annotations"] == [
        {"id": 1, "image_id": 2, "category_id": 18, "bbox": [3.0, 2.0, 4.5, 3.0], "area": 13.5, "iscrowd": 0}
    ]
    with Image.open(tmp_path / "val/000000000002.png") as im:
        np.testing.assert_array_equal(np.asarray(im), images[1])


def test_one_distinct_category_id_per_class(tmp_path):
    images, boxes = np.zeros((1, 4, 4), np.uint8), np.full((1, 1, 5), -1)
    with pytest.raises(ValueError, match="one distinct category id per class"):
        write_coco(tmp_path, "val", images, boxes, ["a", "b"], [3, 3])
    with pytest.raises(ValueError, match="one distinct category id per class"):
        write_coco(tmp_path, "val", images, boxes, ["a", "b"], [3])


def test_prepare_reads_the_example_back_through_the_coco_source(workdir):
    """`example=mnist_yolo` as composed: prepare writes the COCO files, reads them with the coco
    source (category ids mapped by data.category_ids) and gets the loader's canvases and boxes."""
    import yaml

    from tasks.config import Config, from_dict
    from tasks.config.compose import compose
    from tasks.data.preprocess import preprocess
    from tasks.prepare import run

    compose(workdir / "params.yaml", ["example=mnist_yolo", "prepare.train=null"])
    cfg = from_dict(Config, yaml.safe_load((workdir / "params.yaml").read_text()))
    assert (cfg.data.calib.source, cfg.data.eval.source, cfg.eval.decoder) == ("coco", "coco", "yolov8")
    metrics = run(cfg, workdir / "out", log=lambda m: None)
    assert metrics["generated"]["writer"] == "mnist_coco"
    assert (workdir / "data/generated/mnist_coco/annotations/instances_eval.json").is_file()
    for split in ("calib", "eval"):
        canvases = canvas_splits(0)[split]
        x, y = np.load(workdir / "out" / split / "x.npy"), np.load(workdir / "out" / split / "y.npy")
        np.testing.assert_array_equal(x, preprocess(canvases.images, cfg.model.input))
        assert y.dtype == np.float32 and y.shape == canvases.boxes.shape
        for got, want in zip(y, canvases.boxes, strict=True):  # the same boxes, padding last
            got, want = got[got[:, 0] >= 0], want[want[:, 0] >= 0]
            assert sorted(got.tolist()) == sorted(want.astype(np.float32).tolist())
        meta = np.load(workdir / "out" / split / "meta.npy")
        assert (meta == [64, 64, 1, 1, 0, 0]).all()  # already the input size: nothing to map back
