"""The ``coco`` source: an image folder plus a COCO instances JSON (``data.<split>.path``,
``data.<split>.annotations``), read one image at a time.

Labels by ``model.task`` (the shared contract), in the image's own pixels:

- detection: ``(K, 5)`` float32 ``[class, x1, y1, x2, y2]`` from COCO's ``bbox`` ``[x, y, w, h]``;
- keypoints: ``(K, 5 + 3J)`` float32 rows ``[class, x1, y1, x2, y2, kx1, ky1, v1, ...]`` (COCO's
  ``keypoints`` triples; J from the category's ``keypoints`` names, else from the annotations);
- segmentation: a class map ``(h, w)``: 0 = background, class ``c`` = ``c + 1`` (the classes are
  ``["background", *names]``), crowd regions 255 (ignore), masks (polygons, RLE or uncompressed RLE)
  decoded by faster-coco-eval's mask API (pycocotools' ``frPyObjects``/``merge``/``decode``),
  larger objects painted first so a small object on top of a large one stays visible.

Category ids become class indices by ``data.category_ids`` (the id of class 0, 1, ...), by default
the JSON's categories sorted by id. COCO's 80 classes have ids 1..90 with gaps: a model trained on
COCO has 80 outputs, class 0 = id 1 (person) ... class 79 = id 90 (toothbrush), and reading the id
(or id - 1) as the class index is the classic error. An annotation whose category is not in the
mapping is an error naming the file, the annotation and the id.

``iscrowd: 1`` annotations are dropped for detection and keypoints (the label contract has no crowd
flag; COCO's evaluator would ignore detections matched to them, so on crowd-heavy data the mAP
reads slightly lower than pycocotools' on the original JSON) and are "ignore" (255) for
segmentation. An image without annotations is a valid negative. Images are listed by the JSON
(sorted by id); one missing on disk, or whose size differs from the JSON's, is an error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tasks.data.errors import DataError
from tasks.data.images import read_image
from tasks.data.sources import Source

TASKS = ("detection", "keypoints", "segmentation")


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: no such COCO annotations file (data.<split>.annotations: an instances JSON)")
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO instances file (no 'images' list)")
    return data


def category_mapping(data: dict, path: Path, category_ids: list[int] | None) -> tuple[dict[int, int], list[str]]:
    """``{category id: class index}`` and the class names (by ``data.category_ids``, else the
    JSON's categories sorted by id)."""
    names = {}
    for c in data.get("categories", []):
        try:
            names[int(c["id"])] = str(c.get("name", c["id"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: category {c!r} has no integer 'id'") from e
    if category_ids is None:
        if not names:
            raise DataError(f"{path}: no 'categories'; list them in the JSON or set data.category_ids")
        category_ids = sorted(names)
    if len(set(category_ids)) != len(category_ids):
        raise DataError(f"data.category_ids {category_ids} lists an id twice; give each class its own id")
    return {cid: i for i, cid in enumerate(category_ids)}, [names.get(cid, str(cid)) for cid in category_ids]


class CocoSource(Source):
    named = True

    def __init__(self, images: str | Path, annotations: str | Path, task: str, category_ids, gray: bool) -> None:
        self.root, self.path, self.task, self.gray = Path(images), Path(annotations), task, gray
        if task not in TASKS:
            raise DataError(
                f"data source coco gives {', '.join(TASKS)} labels; model.task is {task!r} "
                "(use imagefolder for classification, images for task fidelity)"
            )
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such image folder (data.<split>.path of a coco source)")
        data = _load_json(self.path)
        self.index, names = category_mapping(data, self.path, category_ids)
        if task == "segmentation" and len(names) > 254:
            raise DataError(
                f"{self.path}: {len(names)} categories do not fit a class map (0 = background, 255 = ignore)"
            )
        self.classes = ["background", *names] if task == "segmentation" else names
        self.images = sorted(data["images"], key=lambda im: im.get("id", 0))
        self.anns: dict[int, list[dict]] = {im.get("id"): [] for im in self.images}
        for a in data.get("annotations", []):
            self._check_annotation(a)
            self.anns[a["image_id"]].append(a)
        self.joints = self._joints(data) if task == "keypoints" else 0
        missing = [im.get("file_name") for im in self.images if not (self.root / str(im.get("file_name"))).is_file()]
        if missing:
            raise DataError(
                f"{self.root / str(missing[0])}: image listed in {self.path} is missing on disk "
                f"({len(missing)} of {len(self.images)} missing); data.<split>.path must be the folder "
                "the JSON's file_name entries are relative to"
            )

    def _check_annotation(self, a: dict) -> None:
        aid = a.get("id")
        if a.get("image_id") not in self.anns:
            raise DataError(f"{self.path}: annotation {aid} refers to image_id {a.get('image_id')!r}, not in 'images'")
        cid = a.get("category_id")
        if cid not in self.index:
            raise DataError(
                f"{self.path}: annotation {aid} has category_id {cid!r}, which is not in the class mapping "
                f"(ids {sorted(self.index)[:12]}{' ...' if len(self.index) > 12 else ''}): add it to "
                "data.category_ids (the id of class 0, 1, ...) or drop the annotation"
            )
        box = a.get("bbox")
        if self.task != "segmentation" and not a.get("iscrowd", 0):
            if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
                raise DataError(f"{self.path}: annotation {aid} has no 'bbox' [x, y, width, height] ({box!r})")

    def _joints(self, data: dict) -> int:
        counts = {len(c["keypoints"]) for c in data.get("categories", []) if c.get("keypoints")}
        counts |= {len(a["keypoints"]) // 3 for v in self.anns.values() for a in v if a.get("keypoints")}
        if len(counts) != 1:
            raise DataError(
                f"{self.path}: model.task keypoints needs one keypoint count for every category and annotation; "
                f"found {sorted(counts) or 'none'}"
            )
        return counts.pop()

    def __len__(self) -> int:
        return len(self.images)

    def where(self, i: int) -> str:
        return str(self.root / str(self.images[i]["file_name"]))

    def image(self, i: int) -> np.ndarray:
        img = read_image(self.where(i), self.gray)
        want = (self.images[i].get("height"), self.images[i].get("width"))
        if None not in want and img.shape[:2] != want:
            raise DataError(
                f"{self.where(i)}: image is {img.shape[0]}x{img.shape[1]} (h x w) but {self.path} says "
                f"{want[0]}x{want[1]}: the annotations belong to another version of the image"
            )
        return img

    def label(self, i: int, hw: tuple[int, int]) -> np.ndarray:
        anns = self.anns[self.images[i].get("id")]
        if self.task == "segmentation":
            return self._class_map(anns, hw)
        rows = []
        for a in anns:
            if a.get("iscrowd", 0):
                continue
            x, y, w, h = (float(v) for v in a["bbox"])
            row = [self.index[a["category_id"]], x, y, x + w, y + h]
            if self.task == "keypoints":
                kp = a.get("keypoints") or [0.0] * (3 * self.joints)
                if len(kp) != 3 * self.joints:
                    raise DataError(
                        f"{self.path}: annotation {a.get('id')} has {len(kp)} keypoint values; "
                        f"expected {3 * self.joints} ({self.joints} x [x, y, v])"
                    )
                row += [float(v) for v in kp]
            rows.append(row)
        return np.asarray(rows, np.float32).reshape(len(rows), 5 + 3 * self.joints)

    def _class_map(self, anns: list[dict], hw: tuple[int, int]) -> np.ndarray:
        from faster_coco_eval.core import mask as mask_api

        h, w = hw
        out = np.zeros((h, w), np.uint8)
        for a in sorted(anns, key=lambda a: -float(a.get("area", 0))):
            segm = a.get("segmentation")
            if not segm:
                continue
            try:
                if isinstance(segm, list):  # polygons
                    rle = mask_api.merge(mask_api.frPyObjects(segm, h, w))
                elif isinstance(segm.get("counts"), list):  # uncompressed RLE
                    rle = mask_api.frPyObjects(segm, h, w)
                else:  # compressed RLE
                    rle = {"size": segm["size"], "counts": segm["counts"]}
                    if isinstance(rle["counts"], str):
                        rle["counts"] = rle["counts"].encode()
                m = mask_api.decode(rle).astype(bool)
            except (TypeError, ValueError, KeyError, AttributeError) as e:
                raise DataError(f"{self.path}: annotation {a.get('id')} has an unreadable segmentation ({e})") from e
            if m.shape != (h, w):
                raise DataError(
                    f"{self.path}: annotation {a.get('id')}'s mask is {m.shape[0]}x{m.shape[1]}, its image {h}x{w}"
                )
            out[m] = 255 if a.get("iscrowd", 0) else self.index[a["category_id"]] + 1
        return out
