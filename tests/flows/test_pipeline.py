"""The pipeline flow over a tiny real DVC repository (tests/flows/tiny.py) under Prefect's test
harness: dependency order, DVC deciding what runs, one stage at a time per device while devices
work side by side, retries of transient device errors only, timeouts, failures that stop only
their own branch, and bad input failing fast with params.yaml untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.dvc_graph import read
from flows.pipeline import HOST_SLOT, PipelineError, pipeline, slot_of
from tasks.config import load_config
from tests.flows.tiny import make, plan, runs

FAST = dict(retry_delay_s=0.05)


@pytest.fixture
def tiny(tmp_path, prefect):
    return make(tmp_path / "tiny")


def dvc(root: Path, *args: str) -> str:
    return subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def test_stages_are_read_from_dvc_with_their_devices(tiny):
    stages = {s.name: s for s in read(tiny)}
    assert set(stages) == {"prepare", "build@dev_a", "build@dev_b", "build@dev_a2", "report"}
    assert stages["report"].upstream == ("build@dev_a", "build@dev_a2", "build@dev_b")
    assert stages["build@dev_b"].target == "dev_b" and stages["prepare"].target is None
    targets = load_config(tiny / "params.yaml").target
    # two targets on one device address share its slot; the host's stages hold the host slot
    assert (
        slot_of(stages["build@dev_a"], targets)
        == slot_of(stages["build@dev_a2"], targets)
        != slot_of(stages["build@dev_b"], targets)
    )
    assert slot_of(stages["prepare"], targets) == HOST_SLOT


def test_runs_in_order_devices_in_parallel_one_stage_per_device_and_dvc_records_it(tiny):
    # dev_b's build outlasts the start of dev_a's by far: starting a stage takes DVC's lock twice
    # and a server slot (about a second on a busy 2-core CI machine), so a 1.5 s build could end first
    plan(tiny, "build@dev_b", sleep=5)
    for t in ("dev_a", "dev_a2"):
        plan(tiny, f"build@{t}", sleep=1.5)
    summary = pipeline(root=str(tiny), **FAST)
    assert sorted(summary["ran"]) == sorted(["prepare", "build@dev_a", "build@dev_b", "build@dev_a2", "report"])
    r = {x["stage"]: x for x in runs(tiny)}
    assert all(r[f"build@{t}"]["start"] >= r["prepare"]["end"] for t in ("dev_a", "dev_b", "dev_a2"))
    assert r["report"]["start"] >= max(r[f"build@{t}"]["end"] for t in ("dev_a", "dev_b", "dev_a2"))
    a, a2, b = r["build@dev_a"], r["build@dev_a2"], r["build@dev_b"]
    assert a["end"] <= a2["start"] or a2["end"] <= a["start"], "two stages shared one device"
    assert b["start"] < max(a["end"], a2["end"]) and min(a["start"], a2["start"]) < b["end"], (
        "stages of different devices did not overlap"
    )
    assert "Data and pipelines are up to date" in dvc(tiny, "status")  # every stage recorded in dvc.lock
    # nothing changed: DVC runs nothing again
    assert pipeline(root=str(tiny), **FAST)["ran"] == []
    # a changed input re-runs exactly what depends on it
    (tiny / "in.txt").write_text("v2\n")
    assert len(pipeline(root=str(tiny), **FAST)["ran"]) == 5
    assert (tiny / "out/report.txt").read_text().startswith("report v2")


def test_transient_device_error_is_retried_other_failures_are_not(tiny):
    plan(tiny, "build@dev_a", fail="75 0")  # device unreachable once, then fine
    plan(tiny, "build@dev_b", fail="1 0")  # a real failure: never retried
    with pytest.raises(PipelineError) as e:
        pipeline(root=str(tiny), retries=2, **FAST)
    msg = str(e.value)
    assert "build@dev_b" in msg and "planned failure 1" in msg and "report" in msg  # report not run
    attempts = [x for x in runs(tiny) if x["stage"] in ("build@dev_a", "build@dev_b")]
    assert [x["rc"] for x in attempts if x["stage"] == "build@dev_a"] == [75, 0]
    assert [x["rc"] for x in attempts if x["stage"] == "build@dev_b"] == [1]
    # the other devices' builds are cached: the next run does only what failed and what follows
    second = pipeline(root=str(tiny), **FAST)
    assert sorted(second["ran"]) == ["build@dev_b", "report"]


def test_a_stage_past_its_timeout_is_stopped(tiny):
    plan(tiny, "prepare", sleep=60)
    with pytest.raises(PipelineError, match=r"prepare: timed out after 2 s"):
        pipeline(root=str(tiny), timeouts={"prepare": 2}, **FAST)
    assert not (tiny / "out/prepare.txt").exists()
    assert not [x for x in runs(tiny) if x["stage"] == "prepare"]  # killed before it could finish


def test_bad_override_fails_fast_and_leaves_params_untouched(tiny):
    before = (tiny / "params.yaml").read_text()
    (tiny / "conf").mkdir()
    (tiny / "conf/config.yaml").write_text(yaml.safe_dump({"model": {"checkpoint": "x"}}))
    with pytest.raises(PipelineError, match="checkpoint nope.pt not found"):
        pipeline(root=str(tiny), checkpoint="nope.pt", **FAST)
    with pytest.raises(PipelineError, match="cannot compose|bad config"):
        pipeline(root=str(tiny), overrides=["modle.checkpoint=x"], **FAST)
    assert (tiny / "params.yaml").read_text() == before and runs(tiny) == []


def test_a_second_run_in_the_same_workspace_is_refused(tiny):
    from flows.pipeline import workspace_lock

    with workspace_lock(tiny):
        with pytest.raises(PipelineError, match="another EdgeForge pipeline run is using"):
            pipeline(root=str(tiny), **FAST)
