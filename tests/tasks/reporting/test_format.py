"""The summary's INT8-fallback fields (from a build record) and how the Markdown and terminal tables
show them: the precision reads ``int8-entropy (partial: N layers not INT8)`` and a line under the
table names the layers and the fix."""

from __future__ import annotations

import io

from tasks.records import BuildRecord
from tasks.reporting.format import cell, markdown, print_table
from tasks.reporting.summary import int8_fallbacks

LAYERS = [f"/features/conv{i}/Conv" for i in range(8)]


def build_record(**extra) -> BuildRecord:
    base = dict(
        target="orin",
        precision="int8-entropy",
        runtime="tensorrt",
        artifact="model.engine",
        runtime_version="10.3.0",
        host="orin:22",
        sha256="0" * 64,
        size_bytes=1,
        source_onnx_sha256="1" * 64,
        build_seconds=1.0,
    )
    return BuildRecord.from_json({**base, **extra})


def test_summary_counts_the_layers_the_build_log_named():
    b = build_record(
        int8_fallback_tensors=["t0", "t1", "(Unnamed Layer* 7) [Constant]_output"], int8_fallback_layers=LAYERS[:2]
    )
    assert int8_fallbacks(b) == {
        "int8_fallbacks": 2,
        "int8_fallback_layers": LAYERS[:2],
        "int8_fallback_tensors": ["t0", "t1", "(Unnamed Layer* 7) [Constant]_output"],
    }
    # only tensors the parser made itself (no ONNX node): they are counted instead
    only = build_record(int8_fallback_tensors=["(Unnamed Layer* 7) [Constant]_output"], int8_fallback_layers=[])
    assert int8_fallbacks(only)["int8_fallbacks"] == 1
    # a clean implicit-INT8 build records 0; other builds record nothing
    assert int8_fallbacks(build_record(int8_fallback_tensors=[], int8_fallback_layers=[]))["int8_fallbacks"] == 0
    assert int8_fallbacks(build_record(precision="fp16")) == {
        "int8_fallbacks": None,
        "int8_fallback_layers": [],
        "int8_fallback_tensors": [],
    }


def _row(precision: str, layers: list[str], tensors: list[str] | None = None, **kw) -> dict:
    n = len(layers) or len(tensors or [])
    return {
        "key": f"orin-{precision}",
        "target": "orin",
        "precision": precision,
        "runtime": "tensorrt",
        "value": 98.5,
        "accepted": True,
        "verdict": "accepted",
        "reason": "",
        "int8_fallbacks": n if precision.startswith("int8") else None,
        "int8_fallback_layers": layers,
        "int8_fallback_tensors": tensors if tensors is not None else [f"{x}_out" for x in layers],
        **kw,
    }


def _summary(*rows) -> dict:
    return {"reference": {"metric": "top1", "label": "top-1 %", "value": 99.0}, "rows": list(rows)}


def test_precision_cell_says_how_many_layers_left_int8():
    assert cell(_row("int8-entropy", LAYERS), "precision") == "int8-entropy (partial: 8 layers not INT8)"
    assert cell(_row("int8-entropy", LAYERS[:1]), "precision") == "int8-entropy (partial: 1 layer not INT8)"
    assert cell(_row("int8-entropy", [], ["(Unnamed Layer* 7) [Constant]_output"]), "precision") == (
        "int8-entropy (partial: 1 tensor not INT8)"
    )
    assert cell(_row("int8-entropy", []), "precision") == "int8-entropy"  # 0: nothing left INT8
    assert cell(_row("fp16", []), "precision") == "fp16"
    assert cell(_row("int8-entropy", LAYERS), "runtime") == "tensorrt"


def test_markdown_names_the_first_layers_and_the_fix():
    md = markdown(_summary(_row("fp16", []), _row("int8-entropy", LAYERS)))
    assert "| orin | int8-entropy (partial: 8 layers not INT8) | tensorrt |" in md
    assert "| orin | fp16 | tensorrt |" in md
    (note,) = [line for line in md.splitlines() if line.startswith("- orin-int8-entropy:")]
    assert ", ".join(LAYERS[:6]) + " (+2 more)" in note and LAYERS[6] not in note
    assert "target.orin.tensorrt.int8: qdq" in note
    assert "- orin-fp16" not in md


def test_terminal_table_marks_the_precision_and_prints_the_layers_verbatim():
    out = io.StringIO()
    tensors = ["(Unnamed Layer* 7) [Constant]_output"]  # square brackets: not rich markup
    print_table(_summary(_row("int8-minmax", [], tensors), _row("fp32", [])), file=out)
    text = out.getvalue()
    cells = [line.split("│")[2].strip() for line in text.splitlines() if line.startswith("│")]
    assert " ".join(cells[:4]) == "int8-minmax (partial: 1 tensor not INT8)"  # the cell wraps in its column
    assert cells[4] == "fp32"
    assert "⚠ orin-int8-minmax: partial: 1 tensor not INT8" in text
    assert "(Unnamed Layer* 7) [Constant]_output" in text and "tensorrt.int8: qdq" in text
    assert "orin-fp32:" not in text


def test_markdown_and_terminal_show_the_calibration_coverage_and_its_warnings():
    warning = "class 'cat' has 3 samples in the evaluation split but none in the calibration split: ..."
    s = {
        **_summary(_row("int8-minmax", [])),
        "calibration": {"line": "calib 8 samples, 1/2 classes", "warnings": [warning]},
    }
    md = markdown(s)
    assert "- calibration coverage: calib 8 samples, 1/2 classes\n" in md and f"- warning: {warning}\n" in md
    out = io.StringIO()
    print_table(s, file=out)
    assert "calibration coverage: calib 8 samples" in out.getvalue() and "warning: class 'cat'" in out.getvalue()
    assert "calibration coverage" not in markdown(_summary(_row("fp32", [])))  # nothing calibrated: no line


def test_keypoint_summaries_head_the_worst_part_column_by_keypoint():
    from tasks.reporting.format import columns

    summary = _summary(_row("fp16", []))
    assert ("worst_class_drop", "worst class drop") in columns(summary)
    summary["reference"].update(metric="oks_ap", label="OKS AP .5:.95", parts="keypoint")
    assert ("worst_class_drop", "worst keypoint drop") in columns(summary)
    assert "| worst keypoint drop |" in markdown(summary) and "OKS AP .5:.95" in markdown(summary)


E2E = {"preprocess_ms": 0.4, "input_copy_ms": 0.01, "compute_ms": 1.5, "output_copy_ms": 0.02, "decode_ms": 0.3}


def test_end_to_end_beside_the_compute_only_p50():
    """Each build's batch-1 end to end (the median whole call) in a column beside p50, and a line under
    the table with its parts; a device's (no whole call, no preprocessing there) reads as a lower bound."""
    local = _row("fp32", [], latency_p50_ms=1.6, end_to_end_ms=2.3, end_to_end_parts_ms=2.23)
    local["end_to_end"] = {**E2E, "total_ms": 2.3, "sum_of_parts_ms": 2.23}
    device = _row("fp16", [], key="orin-fp16", latency_p50_ms=1.6, end_to_end_ms=None, end_to_end_parts_ms=1.83)
    device["end_to_end"] = {**E2E, "preprocess_ms": None, "total_ms": None, "sum_of_parts_ms": 1.83}
    assert cell(local, "end_to_end_ms") == "2.30" and cell(device, "end_to_end_ms") == "≥1.83"
    md = markdown(_summary(local, device, _row("int8-minmax", [])))
    assert "| e2e ms (b1) |" in md
    (line,) = [x for x in md.splitlines() if x.startswith("- orin-fp32: end to end")]
    assert "preprocess 0.40 + input copy 0.01 + compute 1.50 + output copy 0.02 + decode 0.30 = 2.23" in line
    assert "whole call 2.30" in line and "compute-only p50 1.60" in line
    (line,) = [x for x in md.splitlines() if x.startswith("- orin-fp16: end to end")]
    assert "preprocess n/a" in line and "no whole call measured" in line
    out = io.StringIO()
    print_table(_summary(local), file=out)
    assert "orin-fp32: end to end (b1) ms: preprocess 0.40" in out.getvalue()
