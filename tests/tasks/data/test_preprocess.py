"""uint8 images -> normalised float32 NCHW model input, as the input spec says."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tasks.config.schema import InputSpec
from tasks.data.preprocess import input_hw, preprocess
from tasks.data.sources import DataError


def _images(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_gray_dtype_shape_and_normalisation():
    spec = InputSpec()  # gray [1, 28, 28], scale 1/255, mean 0.1307, std 0.3081
    imgs = _images((5, 28, 28))
    imgs[2, 3, 4] = 200
    x = preprocess(imgs, spec)
    assert x.dtype == np.float32
    assert x.shape == (5, 1, 28, 28)
    assert x.flags.c_contiguous
    assert x[2, 0, 3, 4] == pytest.approx((200 / 255 - 0.1307) / 0.3081, abs=1e-6)
    np.testing.assert_allclose(x[:, 0], (imgs / 255 - 0.1307) / 0.3081, atol=1e-5)


def test_gray_with_trailing_channel_axis():
    imgs = _images((2, 28, 28))
    np.testing.assert_array_equal(preprocess(imgs[..., None], InputSpec()), preprocess(imgs, InputSpec()))


def test_rgb_to_gray():
    imgs = np.zeros((1, 28, 28, 3), np.uint8)
    imgs[0, 5, 6] = (255, 0, 0)
    imgs[0, 7, 8] = (10, 100, 200)
    spec = InputSpec(scale=1.0, mean=[0.0], std=[1.0])
    x = preprocess(imgs, spec)
    assert x.shape == (1, 1, 28, 28)
    assert x[0, 0, 5, 6] == pytest.approx(0.299 * 255, rel=1e-6)
    assert x[0, 0, 7, 8] == pytest.approx(0.299 * 10 + 0.587 * 100 + 0.114 * 200, rel=1e-6)
    assert x[0, 0, 0, 0] == 0


def test_rgb_per_channel_mean_std():
    imgs = np.zeros((1, 2, 2, 3), np.uint8)
    imgs[0, 0, 1] = (255, 51, 0)
    spec = InputSpec(shape=[3, 2, 2], channel_order="rgb", mean=[0.5, 0.1, 0.0], std=[0.5, 0.2, 1.0])
    x = preprocess(imgs, spec)
    assert x.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(x[0, :, 0, 1], [(1.0 - 0.5) / 0.5, (0.2 - 0.1) / 0.2, 0.0], atol=1e-6)


def test_bgr_order_reverses_channels():
    imgs = _images((3, 6, 6, 3))
    rgb = preprocess(imgs, InputSpec(shape=[3, 6, 6], channel_order="rgb", scale=1.0, mean=[0.0], std=[1.0]))
    bgr = preprocess(imgs, InputSpec(shape=[3, 6, 6], channel_order="bgr", scale=1.0, mean=[0.0], std=[1.0]))
    np.testing.assert_array_equal(bgr, rgb[:, ::-1])
    np.testing.assert_array_equal(bgr[:, 0], imgs[..., 2])  # channel 0 is blue


def test_gray_images_for_rgb_model_are_repeated():
    imgs = _images((2, 6, 6))
    x = preprocess(imgs, InputSpec(shape=[3, 6, 6], channel_order="rgb", scale=1.0, mean=[0.0], std=[1.0]))
    for c in range(3):
        np.testing.assert_array_equal(x[:, c], imgs)


def test_resize_to_spec():
    imgs = _images((2, 40, 32))
    spec = InputSpec(scale=1.0, mean=[0.0], std=[1.0])
    x = preprocess(imgs, spec)
    assert x.shape == (2, 1, 28, 28)
    expected = np.asarray(Image.fromarray(imgs[1].astype(np.float32), mode="F").resize((28, 28), Image.BILINEAR))
    np.testing.assert_allclose(x[1, 0], expected, atol=1e-4)


def test_explicit_resize():
    spec = InputSpec(shape=[1, 16, 24], resize=[16, 24])
    assert input_hw(spec) == (16, 24)
    assert input_hw(InputSpec()) == (28, 28)
    assert preprocess(_images((1, 28, 28)), spec).shape == (1, 1, 16, 24)


def test_shape_mismatch_names_resize():
    spec = InputSpec(resize=[32, 32])  # shape stays [1, 28, 28]
    with pytest.raises(DataError, match="model.input.resize") as e:
        preprocess(_images((2, 28, 28)), spec)
    assert "[1, 32, 32]" in str(e.value) and "[1, 28, 28]" in str(e.value)


def test_channel_count_mismatch():
    with pytest.raises(DataError, match="4 channels"):
        preprocess(_images((1, 28, 28, 4)), InputSpec())
