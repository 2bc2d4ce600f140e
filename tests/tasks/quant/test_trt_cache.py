"""tasks.quant.trt_cache: TensorRT calibration cache text and the ranges JSON."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.quant import (
    QuantError,
    read_cache,
    read_cache_header,
    read_ranges_json,
    scale_hex,
    scales,
    trt_version_number,
    write_cache,
    write_ranges_json,
)


def test_scale_hex_by_hand():
    # IEEE-754 float32, big-endian: 1.0 = 0 01111111 000... = 3f800000
    assert scale_hex(1.0) == "3f800000"
    assert scale_hex(2.0) == "40000000"
    assert scale_hex(0.5) == "3f000000"
    assert scale_hex(0.0) == "00000000"
    assert scale_hex(1 / 127) == "3c010204"  # amax 1.0


def test_cache_lines_for_known_ranges(tmp_path):
    path = write_cache(
        {"b": (0.0, 127.0), "a": (-254.0, 3.0), "input": (-1.0, 0.5)},
        tmp_path / "c.cache",
        "entropy",
        trt_version="8.6.1",
    )
    assert path.read_text() == (
        "TRT-8601-EntropyCalibration2\n"
        "a: 40000000\n"  # amax 254 -> scale 2.0
        "b: 3f800000\n"  # amax 127 -> scale 1.0
        "input: 3c010204\n"
    )  # amax 1.0 -> 1/127


@pytest.mark.parametrize(
    "method, algorithm",
    [("minmax", "MinMaxCalibration"), ("entropy", "EntropyCalibration2"), ("percentile", "EntropyCalibration2")],
)
def test_round_trip_gives_amax_over_127_in_float32(ranges, method, algorithm, tmp_path):
    r = ranges[method]
    path = write_cache(r, tmp_path / f"{method}.cache", method, trt_version=100300)
    assert read_cache_header(path) == (100300, algorithm)
    got = read_cache(path)
    assert set(got) == set(r) and "input" in got
    for name, (lo, hi) in r.items():
        expected = np.float32(np.float32(max(abs(lo), abs(hi))) / np.float32(127))
        assert np.float32(got[name]) == expected, name
    assert got == scales(r)
    assert len(path.read_text().splitlines()) == len(r) + 1


def test_algorithm_override_and_bad_values(tmp_path):
    path = write_cache({"x": (0.0, 1.0)}, tmp_path / "c.cache", "minmax", algorithm="EntropyCalibration2")
    assert read_cache_header(path) == (8601, "EntropyCalibration2")  # what trtexec --calib loads
    with pytest.raises(QuantError, match="unknown TensorRT calibration algorithm 'Entropy3'"):
        write_cache({"x": (0.0, 1.0)}, tmp_path / "d.cache", "minmax", algorithm="Entropy3")
    with pytest.raises(QuantError, match="unknown calibrator 'kl'"):
        write_cache({"x": (0.0, 1.0)}, tmp_path / "d.cache", "kl")
    with pytest.raises(QuantError, match="invalid activation ranges"):
        write_cache({"x": (float("nan"), 1.0)}, tmp_path / "d.cache", "minmax")
    assert not (tmp_path / "d.cache").exists()


def test_trt_version_numbers():
    assert trt_version_number("8.6.1") == 8601
    assert trt_version_number("8.5.2.2") == 8502
    assert trt_version_number("10.3.0") == 100300
    assert trt_version_number("10.14.1") == 101401
    assert trt_version_number(7103) == 7103
    with pytest.raises(QuantError, match="not like '8.6.1'"):
        trt_version_number("latest")


def test_read_cache_takes_what_tensorrt_writes(tmp_path):
    path = tmp_path / "trt.cache"
    path.write_text(
        "TRT-8401-EntropyCalibration2\n"
        "input: 3caa54fc\n"
        "(Unnamed Layer* 64) [Shuffle]_output: 0\n"  # TensorRT does not pad zeros
        "conv1:0: 3f800000\n"
    )  # names may contain ':'
    assert read_cache_header(path) == (8401, "EntropyCalibration2")
    got = read_cache(path)
    assert got["(Unnamed Layer* 64) [Shuffle]_output"] == 0.0 and got["conv1:0"] == 1.0
    assert got["input"] == pytest.approx(0.020792, rel=1e-4)


def test_read_cache_rejects_what_is_not_a_cache(tmp_path):
    bad = tmp_path / "bad.cache"
    bad.write_text('{"input": [0, 1]}\n')
    with pytest.raises(QuantError, match="not a TensorRT calibration cache"):
        read_cache(bad)
    bad.write_text("TRT-8601-MinMaxCalibration\ninput 3f800000\n")
    with pytest.raises(QuantError, match=r"bad.cache:2: expected '<tensor>: <hex float32>'"):
        read_cache(bad)


def test_ranges_json_round_trip(ranges, tmp_path):
    path = write_ranges_json(ranges["entropy"], tmp_path / "out" / "ranges.json")
    assert read_ranges_json(path) == ranges["entropy"]
    path.write_text('{"input": [1.0]}')
    with pytest.raises(QuantError, match="invalid activation ranges"):
        read_ranges_json(path)
