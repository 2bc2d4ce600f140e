"""tasks/reuse.py: which items of a per-target stage are kept. Each item's digest covers exactly the
inputs ``dvc.yaml`` declares for its stage, narrowed to the item; tested in a small project of plain
files (no model, no DVC run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tasks.records import QuantizeRecord
from tasks.reuse import DIGEST_KEY, REDO_ENV, StageInputs, inputs_of, item_digest, keep_or_make, prune, recorded

DVC_YAML = """
stages:
  quantize:
    cmd: python -m tasks.quantize
    deps:
      - src
      - data.txt
    params:
      - build.precisions
      - quant
    outs:
      - artifacts/quantize:
          persist: true
  build:
    matrix:
      target: ${build.targets}
    cmd: python -m tasks.build --target ${item.target}
    deps:
      - src
      - artifacts/probe/${item.target}.json
      - artifacts/quantize
    params:
      - build.precisions
      - target.${item.target}
  measure:
    matrix: {target: "${build.targets}"}
    cmd: python -m tasks.benchmark --target ${item.target}
    deps: [src, "artifacts/build/${item.target}", metrics/quantize]
    params: [build.precisions, bench]
"""

PARAMS = {
    "build": {"targets": ["local", "board"], "precisions": ["fp32", "int8-minmax"]},
    "quant": {"calibrator": "minmax", "samples": 32},
    "target": {"local": {"runtime": "onnxruntime"}, "board": {"runtime": "openvino"}},
    "bench": {"min_iterations": 5},
    "eval": {"batch_size": 8},  # declared by no stage here
}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _params(p: dict) -> None:
    Path("params.yaml").write_text(yaml.safe_dump(p))


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A DVC-shaped project as the current directory: dvc.yaml, params.yaml, code, data, and each
    precision's models, builds and records."""
    monkeypatch.chdir(tmp_path)
    Path("dvc.yaml").write_text(DVC_YAML)
    _params(json.loads(json.dumps(PARAMS)))
    _write(Path("src/stage.py"), "X = 1\n")
    _write(Path("data.txt"), "calibration\n")
    for target in ("local", "board"):
        _write(Path(f"artifacts/probe/{target}.json"), json.dumps({"cpu": target}))
    for p in ("fp32", "int8-minmax"):
        _write(Path(f"artifacts/quantize/{p}/model.onnx"), f"model {p}")
        _write(Path(f"metrics/quantize/{p}.json"), json.dumps({"precision": p}))
        _write(Path(f"artifacts/build/local/{p}/build.json"), json.dumps({"precision": p}))
    return tmp_path


def _build(precision: str, target: str = "local") -> str:
    """``build@<target>``'s digest of one precision, read afresh from the project (as a new stage
    process would)."""
    return item_digest(StageInputs("build", target), target, precision)


def test_the_digest_is_stable_and_names_its_item(project):
    first = _build("fp32")
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert _build("fp32") == first  # a second read of the same project
    assert _build("int8-minmax") != first and _build("fp32", "board") != first  # one per item
    assert item_digest(StageInputs("quantize"), None, "fp32") == item_digest(inputs_of("quantize"), None, "fp32")


def test_a_declared_dep_file_or_a_file_in_a_declared_dep_folder_changes_every_item(project):
    before = {p: _build(p) for p in ("fp32", "int8-minmax")}
    quantize_before = item_digest(inputs_of("quantize"), None, "fp32")
    _write(Path("data.txt"), "other calibration images\n")  # quantize's dep, not build's
    assert {p: _build(p) for p in before} == before
    assert item_digest(inputs_of("quantize"), None, "fp32") != quantize_before

    steps = [
        lambda: _write(Path("src/stage.py"), "X = 22\n"),  # a changed module of the stage's code
        lambda: _write(Path("src/sub/helper.py"), "Y = 2\n"),  # a new one
        lambda: Path("src/sub/helper.py").rename("src/sub/renamed.py"),  # same content, other name
        lambda: _write(Path("artifacts/probe/local.json"), json.dumps({"cpu": "another cpu"})),
        lambda: Path("artifacts/probe/local.json").unlink(),  # a dep gone
    ]
    seen = [before]
    for step in steps:
        step()
        now = {p: _build(p) for p in before}
        assert all(now[p] not in [s[p] for s in seen] for p in before), step
        seen.append(now)


def test_a_declared_param_changes_the_digest_an_undeclared_one_does_not(project):
    params = json.loads(json.dumps(PARAMS))
    before = item_digest(inputs_of("quantize"), None, "int8-minmax")
    build_before = _build("int8-minmax")

    params["eval"]["batch_size"] = 64  # no stage here declares eval
    _params(params)
    assert item_digest(inputs_of("quantize"), None, "int8-minmax") == before

    params["quant"]["calibrator"] = "entropy"  # quantize declares the whole quant section
    _params(params)
    assert item_digest(inputs_of("quantize"), None, "int8-minmax") != before
    assert _build("int8-minmax") == build_before  # build does not declare quant

    params["target"]["local"]["runtime"] = "openvino"  # target.${item.target}: this target's only
    board_before = _build("int8-minmax", "board")
    _params(params)
    assert _build("int8-minmax") != build_before
    assert _build("int8-minmax", "board") == board_before


def test_a_precision_reads_only_its_own_folder_of_a_shared_output(project):
    """``artifacts/quantize`` (build), ``artifacts/build/<target>`` and ``metrics/quantize``
    (measure) are narrowed to the precision's own folder or record: changing int8's leaves fp32's
    digest as it was."""
    build = {p: _build(p) for p in ("fp32", "int8-minmax")}
    measure = {p: item_digest(inputs_of("measure", "local"), "local", p) for p in ("fp32", "int8-minmax")}

    _write(Path("artifacts/quantize/int8-minmax/model.onnx"), "model int8-minmax, calibrated again")
    assert _build("fp32") == build["fp32"] and _build("int8-minmax") != build["int8-minmax"]

    for changed in ("artifacts/build/local/int8-minmax/build.json", "metrics/quantize/int8-minmax.json"):
        _write(Path(changed), json.dumps({"precision": "int8-minmax", "rebuilt": changed}))
        now = {p: item_digest(inputs_of("measure", "local"), "local", p) for p in measure}
        assert now["fp32"] == measure["fp32"] and now["int8-minmax"] != measure["int8-minmax"], changed
        measure = now

    # a precision's folder of another target is not this target's input
    _write(Path("artifacts/build/board/fp32/build.json"), "{}")
    assert item_digest(inputs_of("measure", "local"), "local", "fp32") == measure["fp32"]


def test_build_precisions_is_narrowed_to_the_precision_itself(project):
    """Adding a precision to the list, or reordering it, keeps the others' digests."""
    params = json.loads(json.dumps(PARAMS))
    before = {p: _build(p) for p in ("fp32", "int8-minmax")}
    quantize_before = item_digest(inputs_of("quantize"), None, "fp32")
    params["build"]["precisions"] = ["int8-minmax", "fp32", "fp16"]
    _params(params)
    assert {p: _build(p) for p in before} == before
    assert item_digest(inputs_of("quantize"), None, "fp32") == quantize_before
    assert _build("fp16") not in before.values()


def test_pycache_is_not_an_input(project):
    before = _build("fp32")
    _write(Path("src/__pycache__/stage.cpython-312.pyc"), "bytecode")
    _write(Path("src/sub/__pycache__/x.pyc"), "more bytecode")
    assert _build("fp32") == before


def test_nothing_is_reused_outside_a_dvc_project(tmp_path, monkeypatch, project):
    assert inputs_of("report") is None  # a stage dvc.yaml does not declare
    monkeypatch.chdir(tmp_path / "src")  # no dvc.yaml here
    assert inputs_of("build", "local") is None
    assert item_digest(None, "local", "fp32") is None
    assert inputs_of("build", "local", root=project) is not None  # the project's, from elsewhere


def test_prune_removes_only_what_is_no_longer_configured(project):
    keep = {"fp32", "fp16"}
    (project / "artifacts/quantize/fp16").mkdir()
    _write(project / "metrics/quantize/notes.txt", "not a record")
    gone = prune(project / "artifacts/quantize", keep)
    assert gone == [project / "artifacts/quantize/int8-minmax"]
    assert sorted(p.name for p in (project / "artifacts/quantize").iterdir()) == ["fp16", "fp32"]
    assert (project / "artifacts/quantize/fp32/model.onnx").read_text() == "model fp32"

    gone = prune(project / "metrics/quantize", keep, ".json")
    assert gone == [project / "metrics/quantize/int8-minmax.json"]  # the suffix is dropped to match
    assert sorted(p.name for p in (project / "metrics/quantize").iterdir()) == ["fp32.json", "notes.txt"]
    assert prune(project / "metrics/nothing-here", keep) == []


def _record(n: int) -> QuantizeRecord:
    return QuantizeRecord(precision="fp32", source_onnx_sha256="a" * 64, seconds=float(n))


def test_keep_or_make_keeps_a_record_made_from_the_same_inputs_and_remakes_on_others(tmp_path):
    path, logged, made = tmp_path / "metrics" / "fp32.json", [], []

    def make(n: int):
        def _make() -> QuantizeRecord:
            made.append(n)
            return _record(n)

        return _make

    rec = keep_or_make(path, "d1", logged.append, make(1))
    assert rec.seconds == 1.0 and rec.extra == {DIGEST_KEY: "d1"} and made == [1] and logged == []
    assert recorded(path) == "d1" and QuantizeRecord.read(path).seconds == 1.0
    written = path.read_bytes()

    assert keep_or_make(path, "d1", logged.append, make(2)) is None  # same inputs: kept as it is
    assert made == [1] and path.read_bytes() == written and logged == ["inputs unchanged since its last run: kept"]

    rec = keep_or_make(path, "d2", logged.append, make(3))  # other inputs: made again
    assert made == [1, 3] and rec.seconds == 3.0 and recorded(path) == "d2"

    keep_or_make(path, None, logged.append, make(4))  # outside a DVC project: always made, no digest
    assert made == [1, 3, 4] and recorded(path) is None and QuantizeRecord.read(path).seconds == 4.0
    keep_or_make(path, None, logged.append, make(5))
    assert made == [1, 3, 4, 5]


def test_edgeforge_redo_remakes_a_record_made_from_the_same_inputs(tmp_path, monkeypatch):
    """DVC leaves persisted outputs in place under --force: EDGEFORGE_REDO=1 is how to measure again."""
    path = tmp_path / "fp32.json"
    keep_or_make(path, "d1", print, lambda: _record(1))
    monkeypatch.setenv(REDO_ENV, "1")
    assert recorded(path) is None
    assert keep_or_make(path, "d1", print, lambda: _record(2)).seconds == 2.0
    monkeypatch.setenv(REDO_ENV, "0")  # 0 or empty: reuse as usual
    assert keep_or_make(path, "d1", print, lambda: _record(3)) is None and QuantizeRecord.read(path).seconds == 2.0


def test_recorded_is_none_for_a_missing_unreadable_or_digestless_record(tmp_path):
    path = tmp_path / "r.json"
    assert recorded(path) is None
    for text in ("not json", "[1, 2]", json.dumps({"precision": "fp32"})):
        path.write_text(text)
        assert recorded(path) is None, text
    path.write_text(json.dumps({"precision": "fp32", DIGEST_KEY: "d"}))
    assert recorded(path) == "d"
