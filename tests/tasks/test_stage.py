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
        "edgeforge build@x: error: unknown runtime 'tensorrt2'; registered: coreml, executorch, hailo, litert, onnxruntime, openvino, tensorrt, torch\n"
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


class _Items:
    """A per-target stage's items, each writing its own output folder under ``root``; ``fail`` maps an
    item to the exception it raises half-way (after writing part of its output)."""

    def __init__(self, root, fail: dict[str, BaseException]) -> None:
        self.root, self.fail, self.ran = root, fail, []

    def out(self, item: str):
        return self.root / item

    def work(self, item: str) -> None:
        self.ran.append(item)
        self.out(item).mkdir(exist_ok=True)
        (self.out(item) / "part.bin").write_text(item)
        if item in self.fail:
            raise self.fail[item]
        (self.out(item) / "record.json").write_text("{}")

    def run(self, items: list[str]) -> None:
        with stage.stage_errors("build@dev"):
            stage.each(items, self.work, lambda i: [self.out(i)], lambda i: f"build@dev-{i}")


def test_each_removes_a_failed_items_outputs_and_runs_the_others_then_exits_1(tmp_path, capsys):
    from tasks.hosts.base import DeviceUnreachable
    from tasks.quant.common import QuantError

    items = _Items(tmp_path, {"fp16": stage.StageError("fp16 parity failed"), "int8": DeviceUnreachable("no answer")})
    (tmp_path / "fp16").mkdir()
    (tmp_path / "fp16" / "record.json").write_text("{} from an earlier run")  # stale: goes too
    with pytest.raises(SystemExit) as e:
        items.run(["fp32", "fp16", "int8", "bf16"])
    assert e.value.code == 1  # one failure was not transient
    assert items.ran == ["fp32", "fp16", "int8", "bf16"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bf16", "fp32"]
    assert all((tmp_path / i / "record.json").is_file() for i in ("fp32", "bf16"))
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "edgeforge build@dev-fp16: error: fp16 parity failed",
        "edgeforge build@dev-int8: error: no answer",
        "edgeforge build@dev: error: 2 failed: build@dev-fp16, build@dev-int8",
    ]

    # every failure transient (the device did not answer): 75, which the drivers retry
    items = _Items(tmp_path, {"fp32": DeviceUnreachable("no answer"), "bf16": DeviceUnreachable("still none")})
    with pytest.raises(SystemExit) as e:
        items.run(["fp32", "bf16"])
    assert e.value.code == stage.TRANSIENT_EXIT == 75 and not list(tmp_path.iterdir())
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == "edgeforge build@dev: error: 2 failed: build@dev-fp32, build@dev-bf16"
    )

    # nothing failed: no exit, no message
    items = _Items(tmp_path, {})
    items.run(["fp32"])
    assert (tmp_path / "fp32" / "record.json").is_file() and capsys.readouterr().err == ""

    # a known error of another kind, the same way
    items = _Items(tmp_path, {"fp32": QuantError("calibration split is empty")})
    with pytest.raises(SystemExit) as e:
        items.run(["fp32"])
    assert e.value.code == 1 and not (tmp_path / "fp32").exists()
    assert "edgeforge build@dev-fp32: error: calibration split is empty" in capsys.readouterr().err


def test_each_lets_a_bug_raise_at_once_with_its_traceback(tmp_path, capsys):
    items = _Items(tmp_path, {"fp16": KeyError("latency")})
    with pytest.raises(KeyError, match="latency"):
        items.run(["fp32", "fp16", "int8"])
    assert items.ran == ["fp32", "fp16"]  # the items after the bug do not run
    assert (tmp_path / "fp32" / "record.json").is_file() and not (tmp_path / "fp16").exists()
    assert "error" not in capsys.readouterr().err
