"""A user's binary segmenter as the tests bring it: a real ONNX file whose single output is an
``(N, 1, H, W)`` sigmoid probability map (as DBNet-style text detectors export), and 0/1 masks of
the bundled MNIST digits (digit pixels > 0.5 of full scale)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def digit_masks(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W)`` digits -> uint8 masks, 1 where the pixel is above half scale."""
    return (images.astype(np.float32) / 255.0 > 0.5).astype(np.uint8)


def threshold_net(
    path: Path, mean: float, std: float, cut: float = 0.5, gain: float = 40.0, sigmoid: bool = True
) -> Path:
    """A two-layer convolutional net whose output ``prob`` is ``sigmoid(gain * (pixel - cut))``
    (pixel in 0..1 before the input's mean/std), i.e. above 0.5 exactly where the pixel is above
    ``cut``; without ``sigmoid`` it ends before it (logits). Input ``image`` float32
    ``(N, 1, 28, 28)``, dynamic batch; opset 17."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # conv1 (3x3, centre tap only): z = pixel - cut, as x * std + mean - cut, in two channels
    # (the pixel and its negation) so that the ReLU between the layers loses nothing
    w1 = np.zeros((2, 1, 3, 3), np.float32)
    w1[0, 0, 1, 1], w1[1, 0, 1, 1] = std, -std
    b1 = np.array([mean - cut, cut - mean], np.float32)
    # conv2 (1x1): gain * (relu(z) - relu(-z)) = gain * z
    w2 = np.array([gain, -gain], np.float32).reshape(1, 2, 1, 1)
    b2 = np.zeros(1, np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["z"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["z"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["logit" if sigmoid else "prob"]),
    ]
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["logit"], ["prob"]))
    graph = helper.make_graph(
        nodes,
        "threshold_net",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1, 28, 28])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def write_project(root: Path, params: dict, n_calib: int = 40, n_eval: int = 60, sigmoid: bool = True) -> dict:
    """A user's project in ``root``: ``textdet.onnx`` (:func:`threshold_net`), ``data/calib.npz``
    and ``data/eval.npz`` (digits, their masks, with a 255 "ignore" border, and class names), and
    ``params`` (a fast config) set to run them by config alone. Returns ``params``."""
    from examples.mnist import mnist_digits

    splits = mnist_digits(0)
    (root / "data").mkdir(exist_ok=True)
    for split, n in (("calib", n_calib), ("eval", n_eval)):
        images = splits[split].images[:n]
        masks = digit_masks(images)
        masks[:, 0, :] = 255  # VOC-style void row: scored nowhere
        np.savez(root / f"data/{split}.npz", x=images, y=masks, classes=np.array(["background", "digit"]))
    m = params["model"]
    m.update(format="onnx", checkpoint="textdet.onnx", arch=None, task="segmentation")
    m.update(outputs=["prob"], scores_output="prob")
    m["input"]["name"] = "image"
    threshold_net(root / "textdet.onnx", m["input"]["mean"][0], m["input"]["std"][0], sigmoid=sigmoid)
    params["data"]["calib"] = {"source": "npz", "path": "data/calib.npz", "limit": None}
    params["data"]["eval"] = {"source": "npz", "path": "data/eval.npz", "limit": None}
    return params
