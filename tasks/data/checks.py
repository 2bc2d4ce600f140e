"""Checks on the splits a user brings, before anything is computed from them: samples shared by the
calibration and evaluation splits (which make every INT8 accuracy figure optimistic), and classes
with no samples (which cannot be scored)."""

from __future__ import annotations

import hashlib

import numpy as np


def digest(image: np.ndarray) -> bytes:
    """The content digest of one sample: its pixels (the image as decoded, so the same file under
    two names or in two folders has the same digest) and their shape."""
    return hashlib.blake2b(repr(image.shape).encode() + np.ascontiguousarray(image).tobytes(), digest_size=16).digest()


def digests(images: np.ndarray) -> list[bytes]:
    """One :func:`digest` per sample."""
    return [digest(img) for img in images]


def shared_digests(a: list[bytes], b: list[bytes]) -> list[tuple[int, int]]:
    """``(index in a, index in b)`` of every digest of ``b`` that is also in ``a`` (the first such
    one of ``a``), in ``b``'s order."""
    first: dict[bytes, int] = {}
    for i, d in enumerate(a):
        first.setdefault(d, i)
    return [(first[d], j) for j, d in enumerate(b) if d in first]


def shared(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """:func:`shared_digests` of two image arrays."""
    return shared_digests(digests(a), digests(b))


def empty_classes(labels: np.ndarray, classes: list[str]) -> list[str]:
    """Classes (by name) no sample is labelled with; only for one class id per sample (``(N,)``
    labels): boxes and masks need not show every class in every split."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not len(classes):
        return []
    counts = np.bincount(labels[labels >= 0], minlength=len(classes))
    return [c for c, n in zip(classes, counts) if n == 0]


def constant_samples(batches) -> tuple[int, int]:
    """``(constant, total)``: how many samples of the float ``(B, ...)`` ``batches`` hold one
    value in every pixel (a blank or placeholder image: zeros, a fill value), and how many there are."""
    constant = total = 0
    for x in batches:
        flat = np.asarray(x).reshape(len(x), -1)
        constant += int((flat.min(axis=1) == flat.max(axis=1)).sum()) if flat.size else len(flat)
        total += len(flat)
    return constant, total
