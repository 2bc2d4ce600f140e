"""What every stage entry point shares: a known error is one line and removes the outputs; a bug keeps
its traceback."""

from __future__ import annotations

import pytest

from tasks import stage
from tasks.runtimes import get_runtime


def test_an_unknown_name_is_one_line_naming_the_registered_ones(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SystemExit) as e, stage.stage_errors("build@x", outputs=[out]):
        get_runtime("tensorrt2")
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err == (
        "edgeforge build@x: error: unknown runtime 'tensorrt2'; registered: onnxruntime, openvino, tensorrt, torch\n"
    )
    assert not out.exists()


def test_a_bare_key_error_is_a_bug_and_keeps_its_traceback(tmp_path, capsys):
    """Regression: any KeyError counted as a user's mistake, so a programming bug printed one line and
    hid where it happened."""
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyError, match="latency"), stage.stage_errors("report", outputs=[out]):
        {"rows": []}["latency"]
    assert "edgeforge report: error" not in capsys.readouterr().err
    assert not out.exists()  # outputs go on any failure


def test_a_record_an_older_version_wrote_is_one_line_naming_the_stage_to_rerun(tmp_path, capsys):
    from tasks.io import write_json
    from tasks.records import BuildRecord

    write_json(tmp_path / "build.json", {"artifact": "model.onnx", "target": "local"})
    with pytest.raises(SystemExit), stage.stage_errors("benchmark@local-fp32"):
        BuildRecord.read(tmp_path / "build.json")
    err = capsys.readouterr().err
    assert err.startswith(f"edgeforge benchmark@local-fp32: error: {tmp_path / 'build.json'}: BuildRecord: missing")
    assert "dvc repro --force build" in err
