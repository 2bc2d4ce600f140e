"""TensorRT calibration caches (the text ``IInt8Calibrator.read/writeCalibrationCache`` exchange)
and a plain JSON copy of the ranges.

Cache format (TensorRT writes and reads it; TensorRT <= 10 implicit INT8 builds consume it, e.g.
``trtexec --int8 --calib=<file>``)::

    TRT-8601-EntropyCalibration2
    input: 3c010204
    relu: 3d1f7c5a

Line 1 is ``TRT-<version>-<algorithm>``: ``<version>`` is TensorRT's ``NV_TENSORRT_VERSION``
(8.6.1 -> 8601: major*1000 + minor*100 + patch before 10; 10.3.0 -> 100300: major*10000 + ...),
``<algorithm>`` the calibrator's (``EntropyCalibration2``, ``MinMaxCalibration``,
``EntropyCalibration``, ``LegacyCalibration``). TensorRT ignores a cache whose version or
algorithm differ from the builder's and calibrator's, so write it for the device's TensorRT.
Each further line is ``<tensor name>: <hex>``, the big-endian IEEE-754 float32 bits of the
tensor's scale ``amax / 127`` (``amax = max(|min|, |max|)``), e.g. amax 127.0 -> ``3f800000``.
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tasks.io import read_json, write_json
from tasks.quant.common import QuantError, Ranges, amax, check_ranges

ALGORITHMS = ("EntropyCalibration2", "MinMaxCalibration", "EntropyCalibration", "LegacyCalibration")
DEFAULT_TRT_VERSION = 8601  # TensorRT 8.6.1 (JetPack 5.1.x / 6.0 DP); pass the device's


def trt_version_number(version: int | str) -> int:
    """TensorRT's ``NV_TENSORRT_VERSION`` for ``"8.6.1"``/``"10.3.0.30"``; ints pass through."""
    if isinstance(version, int):
        return version
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)*", str(version).strip())
    if not m:
        raise QuantError(f"TensorRT version {version!r} is not like '8.6.1' or 8601")
    major, minor, patch = int(m[1]), int(m[2]), int(m[3] or 0)
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def scale_hex(scale: float) -> str:
    """8 hex digits: the big-endian IEEE-754 float32 bits of ``scale`` (1.0 -> ``3f800000``)."""
    return struct.pack(">f", np.float32(scale)).hex()


def hex_scale(text: str) -> float:
    """Inverse of :func:`scale_hex`; accepts TensorRT's unpadded form too (``0``)."""
    return struct.unpack(">f", bytes.fromhex(text.strip().zfill(8)))[0]


def scales(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """``{tensor: amax / 127}`` rounded to float32, the int8 symmetric scale of each range."""
    return {n: float(np.float32(np.float32(amax(r)) / np.float32(127.0))) for n, r in check_ranges(ranges).items()}


def _algorithm_for(method: str) -> str:
    from tasks.quant.calibrators import get_calibrator

    return get_calibrator(method).trt_algorithm


def _atomic_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_cache(
    ranges: Mapping[str, tuple[float, float]],
    path: str | Path,
    method: str,
    trt_version: int | str = DEFAULT_TRT_VERSION,
    *,
    algorithm: str | None = None,
) -> Path:
    """Write a TensorRT calibration cache of ``ranges`` (one line per tensor, sorted by name).

    ``method``: the calibrator that produced the ranges; it picks the header's algorithm
    (``minmax`` -> ``MinMaxCalibration``, ``entropy``/``percentile`` -> ``EntropyCalibration2``)
    unless ``algorithm`` names one: the header must match the calibrator class that will load the
    cache (``trtexec --calib`` loads into an ``IInt8EntropyCalibrator2``).
    """
    algo = algorithm or _algorithm_for(method)
    if algo not in ALGORITHMS:
        raise QuantError(f"unknown TensorRT calibration algorithm {algo!r}; allowed: {', '.join(ALGORITHMS)}")
    bad = [n for n in ranges if not n or "\n" in n or "\r" in n]
    if bad:
        raise QuantError(f"tensor names cannot be empty or span lines in a calibration cache: {bad[:3]}")
    lines = [f"TRT-{trt_version_number(trt_version)}-{algo}"]
    lines += [f"{name}: {scale_hex(s)}" for name, s in sorted(scales(ranges).items())]
    return _atomic_text(Path(path), "\n".join(lines) + "\n")


def read_cache_header(path: str | Path) -> tuple[int, str]:
    """``(version, algorithm)`` from a cache's first line, e.g. ``(8601, "EntropyCalibration2")``."""
    with open(path) as f:
        first = f.readline().strip()
    m = re.fullmatch(r"TRT-(\d+)-(\w+)", first)
    if not m:
        raise QuantError(
            f"{path}: not a TensorRT calibration cache (first line {first[:60]!r}, "
            "expected 'TRT-<version>-<algorithm>')"
        )
    return int(m[1]), m[2]


def read_cache(path: str | Path) -> dict[str, float]:
    """``{tensor: scale}`` from a TensorRT calibration cache (scale = amax / 127, float32 values)."""
    read_cache_header(path)
    out: dict[str, float] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if lineno == 1 or not line.strip():
                continue
            name, sep, hx = line.rpartition(":")  # names may hold ':' (e.g. 'conv1:0'); the hex cannot
            if not sep or not re.fullmatch(r"[0-9a-fA-F]{1,8}", hx.strip()):
                raise QuantError(f"{path}:{lineno}: expected '<tensor>: <hex float32>', got {line[:80]!r}")
            out[name] = hex_scale(hx)
    return out


def write_ranges_json(ranges: Mapping[str, tuple[float, float]], path: str | Path) -> Path:
    """Write ``{tensor: [min, max]}`` (sorted, atomically) for later stages and people."""
    return write_json(path, {n: [lo, hi] for n, (lo, hi) in sorted(check_ranges(ranges).items())})


def read_ranges_json(path: str | Path) -> Ranges:
    """Ranges written by :func:`write_ranges_json`."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise QuantError(f"{path}: expected a JSON object {{tensor: [min, max]}}")
    return check_ranges(data)
