"""Write the detection canvases as a COCO dataset: PNG images plus a COCO "instances" JSON per split.

``write_coco`` writes any images with ``[class, x1, y1, x2, y2]`` boxes in the layout of COCO's own
release (``<split>/<image>.png``, ``annotations/instances_<split>.json``); the registered example
writer ``mnist_coco`` (``data.generate``, see :mod:`tasks.data.generate`) writes the calib and eval
canvases of :func:`examples.canvas.canvas_splits` that way, so the YOLO example reads its data back
through the ``coco`` data source as a user's COCO data would be read.

Category ids are deliberately not the class indices: digit ``d`` has id ``CATEGORY_IDS[d]``
(non-contiguous, starting above 0, as COCO's 80 classes use 80 of the ids 1..90), so a reader that
took ``category_id`` (or ``category_id - 1``) as the class index would score the wrong classes.
The categories are listed in id order; sorted by id they give the digits in order, which is how a
reader maps COCO's ids to contiguous class indices by default.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from examples.canvas import DIGIT_CLASSES, canvas_splits
from tasks.data.generate import WRITERS

CATEGORY_IDS = [3 * d + 2 for d in range(10)]  # digit d -> COCO category id: 2, 5, 8, ..., 29
SPLITS = ("calib", "eval")


def write_coco(
    root: Path,
    split: str,
    images: np.ndarray,
    boxes: np.ndarray,
    names: Sequence[str],
    category_ids: Sequence[int],
) -> dict:
    """Write ``images`` uint8 (N, H, W) gray or (N, H, W, 3) RGB as ``root/<split>/<id:012d>.png`` and
    their boxes int or float (N, K, 5) rows ``[class, x1, y1, x2, y2]`` in pixels (x2/y2 exclusive,
    class -1 = padding) as ``root/annotations/instances_<split>.json``.

    Class ``c`` becomes category ``category_ids[c]`` named ``names[c]``; image ids are 1..N and
    annotation ids 1..M (COCO's evaluation treats id 0 as "unmatched"); ``bbox`` is COCO's
    ``[x, y, width, height]`` = ``[x1, y1, x2 - x1, y2 - y1]``, ``area`` the box's, ``iscrowd`` 0.
    Returns the paths written (relative to ``root``) and the image and box counts.
    """
    from PIL import Image

    if len(names) != len(category_ids) or len(set(category_ids)) != len(category_ids):
        raise ValueError(f"need one distinct category id per class name; got {list(category_ids)} for {list(names)}")
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    coco_images, annotations = [], []
    for i, (image, rows) in enumerate(zip(images, boxes, strict=True)):
        image_id = i + 1
        file_name = f"{image_id:012d}.png"  # COCO's own naming: the zero-padded image id
        Image.fromarray(np.asarray(image, np.uint8)).save(folder / file_name)
        h, w = image.shape[:2]
        coco_images.append({"id": image_id, "file_name": file_name, "height": int(h), "width": int(w)})
        for cls, x1, y1, x2, y2 in np.asarray(rows)[np.asarray(rows)[:, 0] >= 0].tolist():
            bw, bh = float(x2 - x1), float(y2 - y1)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(category_ids[int(cls)]),
                    "bbox": [float(x1), float(y1), bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    categories = sorted(
        (
            {"id": int(cid), "name": str(n), "supercategory": "digit"}
            for cid, n in zip(category_ids, names, strict=True)
        ),
        key=lambda c: c["id"],
    )
    ann_path = root / "annotations" / f"instances_{split}.json"
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"images": coco_images, "annotations": annotations, "categories": categories}
    ann_path.write_text(json.dumps(doc))
    return {
        "images": split,
        "annotations": ann_path.relative_to(root).as_posix(),
        "image_count": len(coco_images),
        "boxes": len(annotations),
    }


@WRITERS.register("mnist_coco")
def write_mnist_coco(root: Path, seed: int) -> dict:
    """The calib and eval canvases of ``canvas_splits(seed)`` as COCO: ``root/{calib,eval}/*.png`` and
    ``root/annotations/instances_{calib,eval}.json``, digit ``d`` as category ``CATEGORY_IDS[d]``."""
    splits = canvas_splits(seed)
    return {
        split: write_coco(root, split, splits[split].images, splits[split].boxes, DIGIT_CLASSES, CATEGORY_IDS)
        for split in SPLITS
    }
