"""Hailo builds through the device agent, with the FAKE ``hailo`` CLI (tests/fakes/hailo, replaying real
Dataflow Compiler output from tests/fixtures/hailo). What is real: the recipe, the agent's step runner
(subprocess, exit codes, output checks, log parsing), the upload and sha256-verified download through
LocalHost and the agent zipapp. What is not: every DFC line (recorded elsewhere) and the .har/.hef
files (placeholders the FAKE names as such)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tasks.agent import hailo
from tasks.agent.agent import AgentError
from tasks.agent.client import AgentError as ClientAgentError
from tasks.agent.client import device
from tasks.config.schema import Hailo, Target
from tasks.data.split import save_split
from tasks.io import sha256_file
from tasks.layout import Layout
from tasks.runtimes import hailo_recipe as recipe
from tasks.runtimes import hailo_rt
from tests.fakes import HAILO_FIXTURES, install_hailo
from tests.tasks.quant.conftest import conv_model_with_constant_weights, save


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    """A job folder's inputs: ``model.onnx`` (x (N, 2, 8, 8) -> Conv -> Relu) and a 7-entry NHWC ``calib.npy``."""
    d = tmp_path_factory.mktemp("hailo-inputs")
    save(conv_model_with_constant_weights(), d / "model.onnx")
    np.save(d / "calib.npy", np.zeros((7, 8, 8, 2), np.float32))
    return d


def request(exe: Path, job: Path, out: Path, h: Hailo | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for f in ("model.onnx", "calib.npy"):
        shutil.copy2(job / f, out / f)
    steps = recipe.steps(h or Hailo(hailo=str(exe)))
    return {"steps": [s.to_json() for s in steps], "out_dir": str(out), "timeout": 60, "artifact": recipe.HEF}


def test_the_three_steps_run_and_their_logs_become_facts(tmp_path, job):
    exe = install_hailo(tmp_path / "bin")
    res = hailo.cmd_hailo_build(request(exe, job, tmp_path / "out"))
    assert [s["name"] for s in res["steps"]] == ["parser", "optimize", "compiler"]
    assert sorted(res["files"]) == ["compiler.log", "model.hef", "optimize.log", "parser.log"]
    assert res["files"]["model.hef"] == sha256_file(tmp_path / "out" / "model.hef")
    facts = res["facts"]
    assert facts["net"] == "model" and facts["calib_entries"] == 7  # the entries of the .npy it was given
    assert facts["reduced_optimization_level"] == 1 and facts["snr_db"] == {"model/output_layer1": 44.04}
    assert facts["contexts"] == 1 and facts["allocation_time"] == "5s" and facts["compilation_time"] == "0s"
    assert facts["warnings"] == {
        "optimize": ["Reducing optimization level to 1 because there's less data than recommended (1024)"]
    }
    hef = (tmp_path / "out" / "model.hef").read_text()
    assert hef.startswith("EDGEFORGE FAKE HAILO HEF") and sha256_file(job / "model.onnx") in hef


def test_facts_of_recorded_logs_other_than_the_replayed_ones():
    text = (HAILO_FIXTURES / "dfc_hailo8l_optimize_finetune_start_fragment.log").read_text()
    assert hailo.log_facts(text)["default_optimization_level"] == 2
    assert hailo.log_facts(text)["calib_entries"] == 64
    banner = (HAILO_FIXTURES / "dfc3.30_optimize_nan_params_fail_fragment.log").read_text()
    assert {k: hailo.log_facts(banner)[k] for k in ("dfc_version", "hailort_version")} == {
        "dfc_version": "3.30.0",
        "hailort_version": "4.20.0",
    }
    multi = "[info] Found valid partition to 4 contexts\n[info] Found valid partition to 5 contexts, Performance improved by 6.1%\n"
    assert hailo.log_facts(multi)["contexts"] == 5


@pytest.mark.parametrize(
    "step, fixture, quoted",
    [
        (
            "optimize",
            "dfc3.30_optimize_nan_params_fail_fragment.log",
            "BackendValueError: Unsupported NaN values were found in params",
        ),
        ("compiler", "dfc_hailo8_compiler_mapping_failed_fragment.log", "[error] Mapping Failed (allocation time: 2s)"),
        (
            "parser",
            "dfc_hailo8l_parser_end_node_recommendation_fail_fragment.log",
            "Parsing failed with recommendations for end node names: ['CCT_OCR_nchw_1",
        ),
    ],
)
def test_a_failing_step_is_named_with_the_tools_own_error(tmp_path, job, step, fixture, quoted):
    exe = install_hailo(tmp_path / "bin", fail={step: fixture})
    with pytest.raises(AgentError) as e:
        hailo.cmd_hailo_build(request(exe, job, tmp_path / "out"))
    assert e.value.kind == "failed"
    assert str(e.value).startswith(f"hailo {step} exited with code 1; it said:") and quoted in str(e.value)
    assert not (tmp_path / "out" / "model.hef").exists()
    assert "Traceback" not in str(e.value)  # the tool's account, not its stack
    assert f"command: {exe} {step}" in str(e.value)  # what reproduces its whole output on the build host


def test_a_step_that_exits_0_without_its_output_fails(tmp_path, job):
    exe = tmp_path / "hailo"
    exe.write_text("#!/bin/sh\necho '[info] Translation completed on ONNX model model'\n")
    exe.chmod(0o755)
    with pytest.raises(AgentError, match=r"hailo parser exited 0 but wrote no model\.har"):
        hailo.cmd_hailo_build(request(exe, job, tmp_path / "out"))


def test_a_step_past_its_timeout_is_killed_and_named(tmp_path, job):
    exe = tmp_path / "hailo"
    exe.write_text("#!/bin/sh\nexec sleep 30\n")
    exe.chmod(0o755)
    with pytest.raises(AgentError, match=r"hailo parser ran past its 0\.3 s timeout .* and was killed"):
        hailo.cmd_hailo_build({**request(exe, job, tmp_path / "out"), "timeout": 0.3})


def test_no_compiler_on_the_build_host_is_refused_naming_what_to_install(tmp_path, job):
    req = request(tmp_path / "nowhere" / "hailo", job, tmp_path / "out")
    with pytest.raises(AgentError) as e:
        hailo.cmd_hailo_build(req)
    assert e.value.kind == "missing_runtime"
    assert "Hailo Dataflow Compiler is not on this build host" in str(e.value)
    assert "hailo_dataflow_compiler" in str(e.value) and "Developer Zone" in str(e.value)


def test_a_build_through_the_agent_zipapp_on_a_local_target(tmp_path, job, monkeypatch):
    """build_on_device as the build stage calls it: upload, the agent's `hailo_build`, verified download."""
    layout = Layout(tmp_path / "project")
    layout.onnx.parent.mkdir(parents=True)
    shutil.copy2(job / "model.onnx", layout.onnx)
    x = np.random.default_rng(0).normal(size=(9, 2, 8, 8)).astype(np.float32)
    save_split(layout.split("calib"), x, np.zeros(9, np.int64))
    monkeypatch.setattr(hailo_rt, "LAYOUT", layout)
    cfg = SimpleNamespace(quant=SimpleNamespace(samples=6))
    exe = install_hailo(tmp_path / "bin")
    target = Target(runtime="hailo", hailo=Hailo(hailo=str(exe), hw_arch="hailo8l", optimization_level=2))
    out = tmp_path / "built"
    out.mkdir()
    with device("hailo-host", target) as dev:
        built = hailo_rt.build_on_device(cfg, dev, "int8-entropy", {}, out, layout.split("calib"))
    assert built["artifact"] == "model.hef" and (out / "model.hef").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["compiler.log", "model.hef", "optimize.log", "parser.log"]
    assert built["source_onnx_sha256"] == sha256_file(layout.onnx)
    hl = built["hailo"]
    assert hl["calib_entries"] == 6 and hl["calib_shape"] == [6, 8, 8, 2] and hl["facts"]["calib_entries"] == 6
    assert hl["commands"][1].endswith("--calib-set-path calib.npy --model-script model.alls")
    assert "--hw-arch hailo8l" in hl["commands"][2]
    assert "EdgeForge's calibrator for int8-entropy" in built["hailo_calibration"]
    hef = json.loads((out / "model.hef").read_text().partition("\n")[2])
    assert hef["model_script"] == "model_optimization_flavor(optimization_level=2)\n" and hef["hw_arch"] == "hailo8l"
    with device("hailo-host", Target(runtime="hailo", hailo=Hailo(hailo=str(tmp_path / "none")))) as dev:
        with pytest.raises(ClientAgentError, match="Hailo Dataflow Compiler is not on this build host"):
            hailo_rt.build_on_device(cfg, dev, "int8-minmax", {}, out, layout.split("calib"))
