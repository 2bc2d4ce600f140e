"""The ``yolo`` source: a dataset in Ultralytics' layout (``data.<split>.path`` = its root,
``data.<split>.split`` = the subfolder to read)::

    <root>/data.yaml                 names: [a, b, ...] or {0: a, 1: b, ...}; kpt_shape: [J, 2 or 3]
    <root>/images/<split>/**/x.jpg
    <root>/labels/<split>/**/x.txt   one object per line: class cx cy w h [px py [v] ...], normalised

Labels (the shared contract, in the image's own pixels): detection ``(K, 5)`` float32 ``[class, x1,
y1, x2, y2]``; keypoints (``model.task: keypoints``, ``kpt_shape`` in data.yaml) ``(K, 5 + 3J)``
rows with COCO visibility (with ``[J, 2]`` a point is visible, v = 2, unless it is at 0, 0: v = 0).
A detection line with more than 5 values and no ``kpt_shape`` is a polygon (Ultralytics' segment
format) and gives its bounding box, as Ultralytics does. An image without a label file, or with an
empty one, is a negative. A coordinate outside 0..1 (Ultralytics refuses them too), a class outside
``names``, or a line that is not numbers of the expected count is an error naming file:line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.data.errors import DataError
from tasks.data.images import image_files
from tasks.data.sources import FileSource


def read_data_yaml(root: Path) -> dict:
    import yaml

    path = root / "data.yaml"
    if not path.is_file():
        raise DataError(f"{path}: no such file; a yolo dataset root holds data.yaml (names:), images/ and labels/")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"{path}: not readable YAML ({e})") from e
    if not isinstance(data, dict) or "names" not in data:
        raise DataError(f"{path}: needs 'names' (a list of class names, or a mapping 0: name, 1: name, ...)")
    return data


def class_names(names, where: Path) -> list[str]:
    """``names`` of data.yaml as a list: a list, or a mapping whose keys are 0..n-1."""
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        return [str(names[i]) for i in range(len(names))]
    raise DataError(f"{where}: names must be a list or a mapping with keys 0..n-1; got {names!r}")


class YoloSource(FileSource):
    def __init__(self, root: str | Path, split: str, task: str, gray: bool) -> None:
        self.root, self.task, self.gray = Path(root), task, gray
        if task not in ("detection", "keypoints"):
            raise DataError(
                f"data source yolo gives detection or keypoints labels; model.task is {task!r} "
                "(segmentation: use masks or coco; classification: imagefolder)"
            )
        data = read_data_yaml(self.root)
        self.classes = class_names(data["names"], self.root / "data.yaml")
        self.joints, self.dims = 0, 0
        if task == "keypoints":
            shape = data.get("kpt_shape")
            if not (isinstance(shape, list) and len(shape) == 2 and shape[0] > 0 and shape[1] in (2, 3)):
                raise DataError(
                    f"{self.root / 'data.yaml'}: model.task keypoints needs kpt_shape: [J, 2 or 3]; got {shape!r}"
                )
            self.joints, self.dims = int(shape[0]), int(shape[1])
        self.images_dir = self.root / "images" / split
        self.labels_dir = self.root / "labels" / split
        if not self.images_dir.is_dir():
            raise DataError(f"{self.images_dir}: no such folder (data.<split>.split names a subfolder of images/)")
        self.files = image_files(self.images_dir, recursive=True)

    def label_file(self, i: int) -> Path:
        return (self.labels_dir / self.files[i].relative_to(self.images_dir)).with_suffix(".txt")

    def label(self, i: int, hw: tuple[int, int]) -> np.ndarray:
        path = self.label_file(i)
        width = 5 + 3 * self.joints
        if not path.is_file():
            return np.zeros((0, width), np.float32)
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read label file ({e})") from e
        rows = [self._row(f"{path}:{n}", line, hw) for n, line in enumerate(lines, 1) if line.strip()]
        return np.asarray(rows, np.float32).reshape(len(rows), width)

    def _row(self, where: str, line: str, hw: tuple[int, int]) -> list[float]:
        h, w = hw
        try:
            v = [float(t) for t in line.split()]
        except ValueError:
            raise DataError(
                f"{where}: not a label line ({line.strip()[:60]!r}); expected numbers: {self._form()}"
            ) from None
        n_kpt = self.joints * self.dims
        polygon = not self.joints and len(v) >= 7 and len(v) % 2 == 1
        if len(v) != 5 + n_kpt and not polygon:
            raise DataError(f"{where}: {len(v)} values; expected {self._form()}")
        cls = v[0]
        if cls != int(cls) or not 0 <= cls < len(self.classes):
            raise DataError(f"{where}: class {v[0]:g} is not one of data.yaml's names (0..{len(self.classes) - 1})")
        kpts = np.asarray(v[5:], np.float64).reshape(-1, self.dims) if self.joints else np.zeros((0, 2))
        coords = np.asarray(v[1:] if polygon else v[1:5], np.float64)
        xy = np.concatenate([coords, kpts[:, :2].reshape(-1)])
        if ((xy < 0) | (xy > 1)).any():
            raise DataError(
                f"{where}: coordinate(s) {[round(float(c), 4) for c in xy[(xy < 0) | (xy > 1)]]} outside 0..1: YOLO labels "
                "are normalised by the image size (class cx cy w h, each in 0..1)"
            )
        if polygon:
            px, py = coords[0::2], coords[1::2]
            box = [px.min() * w, py.min() * h, px.max() * w, py.max() * h]
        else:
            cx, cy, bw, bh = coords
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
        row = [cls, *box]
        for p in kpts:
            vis = p[2] if self.dims == 3 else (0.0 if p[0] == p[1] == 0 else 2.0)
            if vis not in (0, 1, 2):
                raise DataError(f"{where}: keypoint visibility {vis:g} is not 0, 1 or 2")
            row += [p[0] * w, p[1] * h, vis]
        return row

    def _form(self) -> str:
        if self.joints:
            per = "px py" + (" v" if self.dims == 3 else "")
            return f"class cx cy w h followed by {self.joints} x '{per}' ({5 + self.joints * self.dims} values)"
        return "class cx cy w h (5 values), or class x1 y1 x2 y2 ... (a polygon)"
