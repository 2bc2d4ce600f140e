"""The canvas examples: generated boxes and masks against the pasted pixels, the models' shapes
and ONNX export, and a short run of each trainer."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from examples.canvas import (
    CANVAS,
    MASK_THRESHOLD,
    MAX_IOU,
    SPLITS,
    Canvases,
    box_iou,
    canvas_splits,
    make_canvases,
    mnist_boxes,
    mnist_masks,
    resize_digit,
)
from examples.canvas_models import MnistCenterNet, MnistUNet, train_mnist_centernet, train_mnist_unet
from examples.canvas_yolo import MnistYolo
from examples.mnist import mnist_digits
from tasks.data.sources import LOADERS, load_loader_split
from tasks.models.decoders import decode_centernet
from tasks.models.load import ARCHS
from tasks.models.trainers import TRAINERS

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def splits() -> dict[str, Canvases]:
    return canvas_splits(0)  # lru-cached: generated once per process


def _boxes(c: Canvases, i: int) -> np.ndarray:
    return c.boxes[i][c.boxes[i, :, 0] >= 0]


def test_loaders_registered_with_contract_shapes(splits):
    assert {"mnist_boxes", "mnist_masks"} <= set(LOADERS.names())
    boxes, masks = mnist_boxes(0), mnist_masks(0)
    for name, n in SPLITS.items():
        b, m = boxes[name], masks[name]
        assert b.images.shape == m.images.shape == (n, CANVAS, CANVAS) and b.images.dtype == np.uint8
        assert b.labels.shape == (n, 3, 5) and b.labels.dtype == np.int64
        assert m.labels.shape == (n, CANVAS, CANVAS) and m.labels.dtype == np.int64
        assert b.classes == [str(d) for d in range(10)]
        assert m.classes == ["background", *b.classes]
    assert SPLITS == {"train": 3000, "calib": 300, "eval": 500}
    assert load_loader_split("mnist_boxes", "eval", 0) is boxes["eval"]


def test_box_rows_counts_and_overlap(splits):
    for c in splits.values():
        valid = c.boxes[..., 0] >= 0
        counts = valid.sum(1)
        assert set(np.unique(counts)) == {1, 2, 3}
        assert (valid == (np.arange(3) < counts[:, None])).all()  # boxes first, then padding
        assert (c.boxes[~valid] == -1).all() and (c.sources[~valid] == -1).all() and (c.sources[valid] >= 0).all()
        b = c.boxes[valid]
        assert ((b[:, 0] >= 0) & (b[:, 0] <= 9)).all()
        assert ((b[:, 1:3] >= 0) & (b[:, 3:] <= CANVAS) & (b[:, 3:] > b[:, 1:3])).all()
        for i in np.nonzero(counts > 1)[0][:300]:
            bx = _boxes(c, i)[:, 1:]
            assert all(box_iou(bx[p], bx[q]) <= MAX_IOU for p in range(len(bx)) for q in range(p))


def test_boxes_tightly_enclose_the_digit_pixels(splits):
    for c in splits.values():
        for i in range(0, len(c.images), 3):
            img, bx = c.images[i], _boxes(c, i)
            covered = np.zeros_like(img, bool)
            for _, x1, y1, x2, y2 in bx:
                covered[y1:y2, x1:x2] = True
                crop = img[y1:y2, x1:x2] > 0  # x2/y2 exclusive: the edge rows and columns hold ink
                assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
            assert not (img[~covered] > 0).any()
            for j, (_, x1, y1, x2, y2) in enumerate(bx):
                others = [o for k, o in enumerate(bx[:, 1:]) if k != j]
                grown = np.array([max(x1 - 1, 0), max(y1 - 1, 0), min(x2 + 1, CANVAS), min(y2 + 1, CANVAS)])
                if any(box_iou(grown, o) > 0 for o in others):
                    continue  # not isolated: a neighbour's ink may lie in the margin
                ys, xs = np.nonzero(img[grown[1] : grown[3], grown[0] : grown[2]])
                assert (xs.min() + grown[0], ys.min() + grown[1], xs.max() + 1 + grown[0], ys.max() + 1 + grown[1]) == (
                    x1,
                    y1,
                    x2,
                    y2,
                )


def test_masks_mark_bright_digit_pixels_with_their_class(splits):
    for c in splits.values():
        assert ((c.masks > 0) == (c.images > MASK_THRESHOLD)).all()
        for i in range(len(c.images)):
            bx = _boxes(c, i)
            if len(bx) == 1:
                np.testing.assert_array_equal(c.masks[i], (c.images[i] > MASK_THRESHOLD) * (1 + bx[0, 0]))
            else:
                for cls in np.unique(c.masks[i][c.masks[i] > 0]):
                    inside = np.zeros((CANVAS, CANVAS), bool)
                    for _, x1, y1, x2, y2 in bx[bx[:, 0] == cls - 1]:
                        inside[y1:y2, x1:x2] = True
                    assert inside[c.masks[i] == cls].all()
    m = mnist_masks(0)["calib"]
    np.testing.assert_array_equal(m.labels, splits["calib"].masks)


def test_canvases_are_built_from_their_own_split(splits):
    digits = mnist_digits(0)  # its splits hold disjoint digits (tests/tasks/data/test_sources.py)
    for name, c in splits.items():
        pool = digits[name]
        single = np.nonzero((c.boxes[:, :, 0] >= 0).sum(1) == 1)[0][:40]
        for i in single:
            src, (cls, x1, y1, x2, y2) = c.sources[i, 0], c.boxes[i, 0]
            assert cls == pool.labels[src]
            crop = c.images[i, y1:y2, x1:x2]
            found = False
            for size in range(18, 35):  # the pasted digit is the source digit at one of the sizes
                patch = resize_digit(pool.images[src], size)
                ys, xs = np.nonzero(patch)
                tight = patch[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
                found |= tight.shape == crop.shape and (tight == crop).all()
            assert found, (name, i)


def test_generation_is_deterministic_per_seed():
    pool = mnist_digits(0)["eval"]
    a, b, c = (make_canvases(pool.images, pool.labels, 40, np.random.default_rng(s)) for s in (5, 5, 6))
    for field in ("images", "boxes", "masks", "sources"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.images, c.images)
    assert canvas_splits(0) is canvas_splits(0)


# --- models ---------------------------------------------------------------------------------------


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial BN statistics, so that eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


X = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, 64, 64), dtype=np.float32))


def test_centernet_outputs():
    assert ARCHS.get("mnist_centernet") is MnistCenterNet
    net = _randomised(MnistCenterNet())
    assert sum(p.numel() for p in net.parameters()) < 300_000
    with torch.no_grad():
        hm, wh, off = net(X)
    assert hm.shape == (2, 10, 16, 16) and wh.shape == off.shape == (2, 2, 16, 16)
    assert ((hm >= 0) & (hm <= 1)).all() and (wh > 0).all() and ((off >= 0) & (off <= 1)).all()
    dets = decode_centernet({"heatmap": hm.numpy(), "wh": wh.numpy(), "offset": off.numpy()})
    assert len(dets) == 2 and all(d.shape[1] == 6 for d in dets)


def test_unet_outputs():
    assert ARCHS.get("mnist_unet") is MnistUNet
    net = _randomised(MnistUNet())
    assert sum(p.numel() for p in net.parameters()) < 300_000
    with torch.no_grad():
        assert net(X).shape == (2, 11, 64, 64)


@pytest.mark.parametrize(
    "arch,names", [(MnistCenterNet, ["heatmap", "wh", "offset"]), (MnistUNet, ["logits"]), (MnistYolo, ["output0"])]
)
def test_onnx_export_matches_torch(tmp_path, arch, names):
    import onnx

    net = _randomised(arch())
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        net,
        (X,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=names,
        dynamic_axes={"input": {0: "batch"}},
    )
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not ops & {"TopK", "NonMaxSuppression", "Softmax", "Loop", "If"}, ops  # every op quantizes
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x3 = torch.cat([X, -X[:1]])
    got = sess.run(names, {"input": x3.numpy()})
    with torch.no_grad():
        ref = net(x3)
    for g, r in zip(got, ref if isinstance(ref, tuple) else (ref,)):
        np.testing.assert_allclose(g, r.numpy(), atol=1e-4, rtol=0)


# --- trainers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,trainer,arch,labels,keys",
    [
        ("mnist_centernet", train_mnist_centernet, MnistCenterNet, "boxes", {"heatmap_loss", "wh_loss", "offset_loss"}),
        ("mnist_unet", train_mnist_unet, MnistUNet, "masks", {"train_pixel_acc"}),
    ],
)
def test_trainer_runs_and_saves_a_loadable_state_dict(tmp_path, splits, name, trainer, arch, labels, keys):
    assert TRAINERS.get(name) is trainer
    c = splits["calib"]
    x = ((c.images[:48].astype(np.float32) / 255 - 0.1307) / 0.3081)[:, None]
    y = getattr(c, labels)[:48].astype(np.int64)
    calls, states = [], []
    for run in range(2):
        metrics = trainer(
            x, y, tmp_path / f"m{run}.pt", epochs=1, batch_size=32, lr=1e-3, seed=0, progress=lambda *a: calls.append(a)
        )
        assert np.isfinite(metrics["train_loss"]) and metrics["epochs"] == 1 and keys <= set(metrics)
        model = arch()
        model.load_state_dict(torch.load(tmp_path / f"m{run}.pt", weights_only=True))
        states.append(model.state_dict())
    assert [a[:2] for a in calls] == [(1, 1), (1, 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m0.pt", "m1.pt"]  # no temporary left behind
    for k, v in states[0].items():  # same seed, same weights
        torch.testing.assert_close(states[1][k], v, rtol=0, atol=1e-5)
