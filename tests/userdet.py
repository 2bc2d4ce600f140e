"""A user's Ultralytics-layout detector as the tests bring it: a real ONNX file whose single output is
the Ultralytics head ``(N, 4 + C, A)`` (the example architecture ``mnist_yolo``, trained briefly on
the MNIST canvases, exported by ``torch.onnx``), and a dataset in Ultralytics' YOLO layout whose
images are NOT the model's square input (64 high, 80 wide), so that letterbox does real work."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PAD = 16  # the canvases (64x64) are widened to 64x80 with this many black columns, split left/right
TRAIN = 512  # training canvases: ~17 s for 10 epochs on one core of a 2-core Xeon
EPOCHS = 10
MEAN, STD = 0.045, 0.179  # the training canvases' pixel mean and std after /255 (examples/canvas.py)


def train_detector(path: Path, seed: int = 0) -> Path:
    """Train ``MnistYolo`` (seeded) for ``EPOCHS`` on ``TRAIN`` 64x64 training canvases and export it to
    ONNX at ``path``: input ``images`` float32 (N, 1, 64, 64), output ``output0`` (N, 4 + 10, 80),
    dynamic batch, opset 17 (what ``yolo export format=onnx`` gives, in miniature)."""
    import torch

    from examples.canvas import canvas_splits
    from examples.canvas_yolo import MnistYolo, train_mnist_yolo

    train = canvas_splits(seed)["train"]
    x = (train.images[:TRAIN, None].astype(np.float32) / 255.0 - MEAN) / STD
    weights = path.with_suffix(".pt")
    train_mnist_yolo(x, train.boxes[:TRAIN], weights, epochs=EPOCHS, batch_size=32, lr=3e-3, seed=seed)
    net = MnistYolo()
    net.load_state_dict(torch.load(weights, weights_only=True))
    net.eval()
    torch.onnx.export(
        net,
        (torch.zeros(1, 1, 64, 64),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={"images": {0: "N"}, "output0": {0: "N"}},
    )
    weights.unlink()
    return path


def write_yolo_split(root: Path, split: str, images: np.ndarray, boxes: np.ndarray) -> None:
    """Canvases uint8 (N, 64, 64) with boxes (N, K, 5) ``[class, x1, y1, x2, y2]`` (pixels, class -1 =
    padding) as ``root/images/<split>/<i>.png`` 64x80 (each canvas shifted right by ``i % (PAD + 1)``
    black columns) and ``root/labels/<split>/<i>.txt`` lines ``class cx cy w h`` normalised by 80 and 64."""
    from PIL import Image

    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i, (image, rows) in enumerate(zip(images, boxes, strict=True)):
        left = i % (PAD + 1)
        wide = np.pad(image, ((0, 0), (left, PAD - left)))
        h, w = wide.shape
        Image.fromarray(wide).save(root / "images" / split / f"{i:04d}.png")
        lines = [
            f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            for c, x1, y1, x2, y2 in (
                (int(r[0]), r[1] + left, r[2], r[3] + left, r[4]) for r in rows.tolist() if r[0] >= 0
            )
        ]
        (root / "labels" / split / f"{i:04d}.txt").write_text("".join(line + "\n" for line in lines))


def write_project(root: Path, params: dict, n_calib: int = 48, n_eval: int = 96) -> dict:
    """A user's project in ``root``: ``detector.onnx`` (:func:`train_detector`), the calib and eval
    canvases as a YOLO dataset ``datasets/digits`` (``data.yaml`` names 0..9, splits ``train`` and
    ``val``), and ``params`` (a fast config) set to run them by config alone. Returns ``params``."""
    from examples.canvas import DIGIT_CLASSES, canvas_splits

    splits = canvas_splits(0)
    data = root / "datasets" / "digits"
    data.mkdir(parents=True)
    (data / "data.yaml").write_text("names: [" + ", ".join(f"'{n}'" for n in DIGIT_CLASSES) + "]\n")
    for split, sub, n in (("calib", "train", n_calib), ("eval", "val", n_eval)):
        write_yolo_split(data, sub, splits[split].images[:n], splits[split].boxes[:n])
    train_detector(root / "detector.onnx")
    m = params["model"]
    m.update(format="onnx", checkpoint="detector.onnx", arch=None, task="detection")
    m.update(outputs=["output0"], scores_output="output0")
    # the model was trained on black canvases: pad with black (Ultralytics' own models use 114)
    m["input"].update(
        name="images", shape=[1, 64, 64], channel_order="gray", letterbox=True, pad_value=0, mean=[MEAN], std=[STD]
    )
    params["prepare"]["train"] = None
    params["eval"]["decoder"] = "yolov8"
    params["data"]["calib"] = {"source": "yolo", "path": "datasets/digits", "split": "train", "limit": None}
    params["data"]["eval"] = {"source": "yolo", "path": "datasets/digits", "split": "val", "limit": None}
    return params
