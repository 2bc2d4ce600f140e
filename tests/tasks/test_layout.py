"""The layout: every path under its root; what dvc.yaml must declare (tests/test_dvc_yaml.py checks
dvc.yaml against it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.layout import LAYOUT, Layout


def test_paths_are_under_the_root_and_the_default_is_the_current_folder(tmp_path):
    lay = Layout(tmp_path)
    for p in (
        lay.onnx,
        lay.reference,
        lay.summary,
        lay.quantize_dir("fp16"),
        lay.build_metrics("a", "fp32"),
        lay.fingerprint("a"),
        lay.pipeline_lock,
        lay.exporter_log,
        lay.checkpoint_record,
    ):
        assert p.is_relative_to(tmp_path)
    assert LAYOUT.onnx == Path("artifacts/export/model.onnx") and LAYOUT.root == Path(".")


def test_int8_builds_for_onnx_runtime_start_from_its_own_layout():
    assert LAYOUT.precision_onnx("int8-minmax", "onnxruntime", "u8s8").name == "model.ort.u8s8.onnx"
    assert LAYOUT.precision_onnx("int8-minmax", "onnxruntime", "s8s8r7").name == "model.ort.s8s8r7.onnx"
    with pytest.raises(ValueError, match="ort_layout"):
        LAYOUT.precision_onnx("int8-minmax", "onnxruntime")
    with pytest.raises(ValueError, match="u8s8, s8s8r7"):
        LAYOUT.precision_onnx("int8-minmax", "onnxruntime", "u8u8")
    assert LAYOUT.precision_onnx("int8-minmax", "openvino").name == "model.onnx"
    assert LAYOUT.precision_onnx("fp16", "onnxruntime").name == "model.onnx"


def test_device_stages_own_one_folder_per_target_with_a_file_or_folder_per_precision():
    d = Layout().declared()
    assert d["build"]["outs"] == [Path("artifacts/build/${item.target}")]
    assert d["measure"]["metrics"] == [
        Path("metrics/benchmark/${item.target}"),
        Path("metrics/evaluate/${item.target}"),
    ]
    assert d["quantize"]["metrics"] == [Path("metrics/quantize")]
    assert LAYOUT.build_dir("jetson", "int8-mixed") == Path("artifacts/build/jetson/int8-mixed")
    assert LAYOUT.build_dir("jetson", "fp16").parent == LAYOUT.builds("jetson")
    assert LAYOUT.evaluate_metrics("jetson", "fp16") == Path("metrics/evaluate/jetson/fp16.json")
    assert LAYOUT.benchmark_metrics("jetson", "fp16").parent == LAYOUT.benchmark_metrics_dir("jetson")
    # the drivers' own state is never a DVC output
    declared = {p for kinds in d.values() for paths in kinds.values() for p in paths}
    assert not any(p.parts[0] == ".edgeforge" for p in declared)
