"""Typed records: the JSON a stage writes reads back as the same record, optional fields left out
while None, keys a record does not declare kept in ``extra``."""

from __future__ import annotations

import json

import pytest

from tasks.records import BenchmarkRecord, BuildRecord, EvaluateRecord, QuantizeRecord, RecordError, built_artifact


def build(**extra) -> BuildRecord:
    return BuildRecord(
        target="local",
        precision="fp16",
        runtime="openvino",
        artifact="model.xml",
        runtime_version="2026.0",
        host="local",
        sha256="ab" * 32,
        size_bytes=10,
        source_onnx_sha256="cd" * 32,
        build_seconds=0.5,
        extra=extra,
    )


def test_a_record_round_trips_through_its_file_with_the_runtimes_own_facts(tmp_path):
    rec = build(inference_precision="f32", int8_ops=0)
    rec.write(tmp_path / "build.json")
    data = json.loads((tmp_path / "build.json").read_text())
    # flat, as the metrics files always were: the runtime's facts beside the declared fields
    assert data["inference_precision"] == "f32" and data["artifact"] == "model.xml" and "extra" not in data
    assert BuildRecord.read(tmp_path / "build.json") == rec


def test_optional_fields_are_left_out_while_none_and_read_back_as_none():
    q = QuantizeRecord(precision="fp32", source_onnx_sha256="x", sha256="y")
    assert "accepted" not in q.to_json() and "kept_fp32" not in q.to_json()
    assert QuantizeRecord.from_json(q.to_json()).accepted is None
    mixed = QuantizeRecord.from_json({**q.to_json(), "accepted": False, "reason": "no plan", "trials": [1]})
    assert mixed.accepted is False and mixed.extra == {"trials": [1]}


def test_the_latency_budget_is_written_even_when_there_is_none():
    """``max_p99_ms: null`` says "no budget"; it is not an optional field."""
    assert BenchmarkRecord(runtime="onnxruntime", runtime_version="1", host="local").to_json()["max_p99_ms"] is None


def test_missing_and_incomplete_records_name_the_stage_to_run(tmp_path):
    with pytest.raises(RecordError, match=r"dvc repro evaluate"):
        EvaluateRecord.read(tmp_path / "nope.json")
    (tmp_path / "old.json").write_text(json.dumps({"metric": "top1", "value": 1.0}))
    with pytest.raises(RecordError, match=r"EvaluateRecord: missing field\(s\) samples, task"):
        EvaluateRecord.read(tmp_path / "old.json")
    with pytest.raises(RecordError, match="holds no build"):
        built_artifact(tmp_path)


def test_built_artifact_is_the_file_its_record_names(tmp_path):
    build().write(tmp_path / "build.json")
    assert built_artifact(tmp_path) == tmp_path / "model.xml"
