"""Real dataset files written in a test's tmp folder: PNG images (PIL) and COCO JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def png(path: Path, hw: tuple[int, int], value: int = 0, seed: int | None = None, rgb: bool = False) -> Path:
    """A PNG of ``hw`` filled with ``value`` (or seeded noise, so that two images differ)."""
    shape = (*hw, 3) if rgb else hw
    if seed is None:
        img = np.full(shape, value, np.uint8)
    else:
        img = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def coco_json(path: Path, images: list[dict], annotations: list[dict], categories: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(annotations):
        a.setdefault("id", i + 1)
        a.setdefault("iscrowd", 0)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


# COCO-style non-contiguous category ids: classes 0, 1, 2 are ids 1, 3, 7
CATEGORIES = [{"id": 7, "name": "kite"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]


def coco_split(root: Path, seed: int) -> tuple[Path, Path]:
    """Three images (two sizes), boxes of classes person/car/kite, one crowd box, one negative image."""
    images = [
        {"id": 1, "file_name": "a.png", "height": 100, "width": 200},
        {"id": 2, "file_name": "sub/b.png", "height": 80, "width": 80},
        {"id": 3, "file_name": "c.png", "height": 60, "width": 40},
    ]
    for k, im in enumerate(images):
        png(root / "images" / im["file_name"], (im["height"], im["width"]), seed=seed * 10 + k)
    anns = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "area": 1200},
        {"image_id": 1, "category_id": 7, "bbox": [100.5, 10, 50, 60.25], "area": 3000},
        {"image_id": 1, "category_id": 3, "bbox": [0, 0, 200, 100], "area": 20000, "iscrowd": 1},
        {"image_id": 2, "category_id": 3, "bbox": [5, 5, 10, 10], "area": 100},
    ]
    return root / "images", coco_json(root / "instances.json", images, anns, CATEGORIES)
