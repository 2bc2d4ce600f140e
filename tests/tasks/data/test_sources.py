"""Raw image sources: the bundled MNIST loader, ImageFolder trees and .npz files, and their errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from examples.mnist import SPLITS, mnist_digits
from tasks.data.geometry import fit, warp_image
from tasks.data.sources import DataError, ImageFolderSource, RawSplit, load_loader_split, load_npz


@pytest.fixture(scope="module")
def digits() -> dict[str, RawSplit]:
    return mnist_digits(0)  # lru-cached: loaded once per process


def _rows(images: np.ndarray) -> set[bytes]:
    return {img.tobytes() for img in images}


# --- the mnist_digits loader -------------------------------------------------------------------


def test_mnist_splits_sizes_and_types(digits):
    assert {k: len(v.labels) for k, v in digits.items()} == {"train": 3500, "calib": 500, "eval": 1000}
    assert SPLITS == {"train": 3500, "calib": 500, "eval": 1000}
    for split in digits.values():
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (28, 28)
        assert split.labels.dtype == np.int64 and len(split.labels) == len(split.images)
        assert split.classes == [str(i) for i in range(10)]
        assert set(np.unique(split.labels)) <= set(range(10))
    # every class appears in the small splits too (the shuffle mixes the label-sorted source)
    assert len(np.unique(digits["calib"].labels)) == 10
    assert len(np.unique(digits["eval"].labels)) == 10


def test_mnist_splits_are_disjoint(digits):
    rows = {k: _rows(v.images) for k, v in digits.items()}
    assert {k: len(r) for k, r in rows.items()} == {"train": 3500, "calib": 500, "eval": 1000}  # no duplicates
    assert not rows["train"] & rows["calib"]
    assert not rows["train"] & rows["eval"]
    assert not rows["calib"] & rows["eval"]


# sha256 of images + labels of each split for seed 0: the splits (and so dvc.lock) must not drift
SEED0 = {
    "train": "90b290cb123a75e63ee39aa239ee951b2d637ed4edad8702dc07c1803546c895",
    "calib": "3f417864fadb03acd09a93ef49081ac0f23dd0152322cf442d0d4897526cec6e",
    "eval": "537d5455536a12c8a6044820c74a0e0f8d1b09c042d2c2f469795987935a24bc",
}


def test_mnist_splits_fixed_for_a_seed(digits):
    got = {k: hashlib.sha256(v.images.tobytes() + v.labels.tobytes()).hexdigest() for k, v in digits.items()}
    assert got == SEED0
    assert digits["calib"].labels[:6].tolist() == [8, 8, 3, 1, 7, 5]


def test_mnist_shuffled_with_the_seed(digits):
    # the source is sorted by label; the splits are a seeded permutation of it
    labels = np.concatenate([digits[k].labels for k in SPLITS])
    assert (np.diff(labels) < 0).any()
    assert len(labels) == 5000


def test_load_loader_split(digits):
    calib = load_loader_split("mnist_digits", "calib", 0)
    np.testing.assert_array_equal(calib.images, digits["calib"].images)


def test_load_loader_split_unknown_split():
    with pytest.raises(DataError, match="no 'test' split.*calib"):
        load_loader_split("mnist_digits", "test", 0)


def test_unknown_loader_lists_registered():
    with pytest.raises(KeyError, match="mnist_digits"):
        load_loader_split("cifar", "eval", 0)


# --- ImageFolder -----------------------------------------------------------------------------


def _write_folder(root, digits, per_class: int = 3) -> dict[str, list[np.ndarray]]:
    """Digits 0, 1, 7 as classes 'zero', 'one', 'seven' (sorted: one, seven, zero)."""
    ev = digits["eval"]
    names = {0: "zero", 1: "one", 7: "seven"}
    written: dict[str, list[np.ndarray]] = {}
    for digit, name in names.items():
        (root / name).mkdir(parents=True)
        imgs = ev.images[ev.labels == digit][:per_class]
        for i, img in enumerate(imgs):
            Image.fromarray(img, mode="L").save(root / name / f"{i}.png")
        written[name] = list(imgs)
    (root / "zero" / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    (root / ".cache").mkdir()  # ignored: hidden
    return written


def load_imagefolder(root, size_hw, gray: bool) -> RawSplit:
    """Every sample of an ImageFolderSource, resized to ``size_hw`` as prepare fits it."""
    src = ImageFolderSource(root, gray)
    images = [src.image(i) for i in range(len(src))]
    return RawSplit(
        np.stack([warp_image(img, fit(img.shape[:2], size_hw, letterbox=False)) for img in images]),
        np.array([src.label(i, img.shape[:2]) for i, img in enumerate(images)]),
        src.classes,
    )


def test_imagefolder_labels_classes_and_resize(tmp_path, digits):
    written = _write_folder(tmp_path / "imgs", digits)
    raw = load_imagefolder(tmp_path / "imgs", (16, 20), gray=True)
    assert raw.classes == ["one", "seven", "zero"]
    assert raw.images.dtype == np.uint8 and raw.images.shape == (9, 16, 20)
    np.testing.assert_array_equal(raw.labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert raw.labels.dtype == np.int64
    for j, (_name, imgs) in enumerate(sorted(written.items())):
        for i, img in enumerate(imgs):
            expected = np.asarray(Image.fromarray(img, mode="L").resize((20, 16), Image.BILINEAR))
            np.testing.assert_array_equal(raw.images[3 * j + i], expected)


def test_imagefolder_rgb(tmp_path, digits):
    written = _write_folder(tmp_path / "imgs", digits, per_class=1)
    raw = load_imagefolder(tmp_path / "imgs", (28, 28), gray=False)
    assert raw.images.shape == (3, 28, 28, 3)
    # gray PNGs become RGB with equal channels; no resize at the same size
    np.testing.assert_array_equal(raw.images[2, ..., 0], written["zero"][0])
    np.testing.assert_array_equal(raw.images[..., 0], raw.images[..., 2])


def test_imagefolder_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no such image folder"):
        load_imagefolder(tmp_path / "absent", (28, 28), gray=True)


def test_imagefolder_without_class_subfolders(tmp_path, digits):
    (tmp_path / "flat").mkdir()
    Image.fromarray(digits["eval"].images[0]).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="no class subfolders"):
        load_imagefolder(tmp_path / "flat", (28, 28), gray=True)


def test_imagefolder_class_folders_without_images(tmp_path):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="hold no images"):
        load_imagefolder(tmp_path / "imgs", (28, 28), gray=True)


def test_imagefolder_unreadable_image(tmp_path, digits):
    _write_folder(tmp_path / "imgs", digits, per_class=1)
    bad = tmp_path / "imgs" / "one" / "broken.png"
    bad.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(DataError, match="cannot read image") as e:
        load_imagefolder(tmp_path / "imgs", (28, 28), gray=True)
    assert str(bad) in str(e.value)


# --- .npz ------------------------------------------------------------------------------------


def test_npz_x_y(tmp_path, digits):
    ev = digits["eval"]
    np.savez(tmp_path / "d.npz", x=ev.images[:10], y=ev.labels[:10].astype(np.int32))
    raw = load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(raw.images, ev.images[:10])
    assert raw.images.dtype == np.uint8
    np.testing.assert_array_equal(raw.labels, ev.labels[:10])
    assert raw.labels.dtype == np.int64
    assert raw.classes == [str(i) for i in range(int(ev.labels[:10].max()) + 1)]


def test_npz_with_classes_and_integer_pixels(tmp_path, digits):
    ev = digits["eval"]
    x = ev.images[:6].astype(np.int64)  # not uint8, but within 0..255: converted
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]), classes=np.array(["cat", "dog", "emu"]))
    raw = load_npz(tmp_path / "d.npz")
    assert raw.classes == ["cat", "dog", "emu"]
    assert raw.images.dtype == np.uint8
    np.testing.assert_array_equal(raw.images, ev.images[:6])


def test_npz_masks_255_is_ignore_not_a_class(tmp_path):
    y = np.zeros((2, 4, 4), np.uint8)
    y[0, 1, 1], y[1, 0, :] = 1, 255  # a binary mask with a VOC "void" row
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4, 4), np.uint8), y=y)
    assert load_npz(tmp_path / "d.npz").classes == ["0", "1"]


def test_npz_rgb(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(4))
    raw = load_npz(tmp_path / "d.npz")
    assert raw.images.shape == (4, 8, 8, 3)


def test_npz_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such .npz"):
        load_npz(tmp_path / "absent.npz")


def test_npz_missing_y(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4, 4), np.uint8), labels=np.zeros(2))
    with pytest.raises(DataError, match="'y'") as e:
        load_npz(tmp_path / "d.npz")
    assert "labels" in str(e.value)  # says what the file has


@pytest.mark.parametrize("bad", [-1.0, 256.0, 300])
def test_npz_values_outside_0_255(tmp_path, bad):
    x = np.zeros((2, 4, 4), np.float32 if isinstance(bad, float) else np.int32)
    x[1, 2, 3] = bad
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    with pytest.raises(DataError, match="outside 0..255"):
        load_npz(tmp_path / "d.npz")


def test_npz_label_count_mismatch(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4, 4), np.uint8), y=np.array([0, 1]))
    with pytest.raises(DataError, match="one label per image"):
        load_npz(tmp_path / "d.npz")


def test_npz_not_an_npz(tmp_path):
    (tmp_path / "d.npz").write_bytes(np.random.default_rng(0).bytes(200))
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz(tmp_path / "d.npz")
