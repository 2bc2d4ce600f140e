"""``edgeforge monitor``: the device command on a release folder made here (installed.json, a tiny real
ONNX model run by ONNX Runtime, golden inputs) and on a FAKE Jetson-like sysfs tree (values as an Orin
reports them; a throttled CPU clock and a hot zone), then the host side's findings and MLflow run
(sqlite in the test's folder). Durations are a second or two: behaviour, never speed, is checked."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tasks.agent import agent, client
from tasks.agent import monitor as device_monitor
from tasks.config.schema import Monitor, Target
from tasks.release import monitor
from tests.tasks.quant.conftest import conv_model_with_constant_weights, save

RELEASE = "1.2.0-0123456789ab"


def make_release(root: Path, validated_p50_ms: float | None = 1.0) -> Path:
    """``root/releases/<id>/`` as release-install leaves it (the files monitor reads), ``root/current`` -> it."""
    rel = root / "releases" / RELEASE
    (rel / "artifact").mkdir(parents=True)
    (rel / "golden").mkdir()
    save(conv_model_with_constant_weights(), rel / "artifact" / "model.onnx")
    np.save(rel / "golden" / "inputs.npy", np.random.default_rng(0).normal(size=(3, 2, 8, 8)).astype(np.float32))
    recipe = {"runtime": "onnxruntime", "precision": "fp32", "threads": 1, "choices": None}
    manifest = {
        "format": "edgeforge-release/1",
        "version": "1.2.0",
        "golden": {"inputs": "golden/inputs.npy", "outputs": "golden/outputs.npz", "samples": 3},
        "metrics": {"latency_p50_ms": validated_p50_ms, "latency_p99_ms": None},
        "artifact": {"runtime": "onnxruntime", "files": ["artifact/model.onnx"], "recipe": recipe},
    }
    (rel / "manifest.json").write_text(json.dumps(manifest))
    installed = {
        "release": RELEASE,
        "version": "1.2.0",
        "bundle_sha256": "0123456789ab" + "0" * 52,
        "runtime": "onnxruntime",
        "artifact": "artifact/model.onnx",
        "recipe": recipe,
        "rebuilt": False,
    }
    (rel / "installed.json").write_text(json.dumps(installed))
    os.symlink(f"releases/{RELEASE}", root / "current")
    return rel


def fake_jetson_sysfs(d: Path) -> Path:
    """A FAKE sysfs tree laid out as a Jetson AGX Orin's (L4T 35): cpufreq in kHz (cpu0 held at 729.6 of
    2201.6 MHz), the GPU's devfreq in Hz under /sys/devices/17000000.ga10b listed in /sys/class/devfreq
    beside a non-GPU engine (vic), thermal zones in millidegrees (gpu-thermal at 91.25 degC) and one
    zone without a temp file (not reported)."""
    for cpu, cur in enumerate([729600, 2201600, 2201600, 2201600]):
        f = d / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        f.mkdir(parents=True)
        (f / "scaling_cur_freq").write_text(f"{cur}\n")
        (f / "cpuinfo_max_freq").write_text("2201600\n")
    for dev, node, cur, top in [
        ("17000000.ga10b", "gpu", 1300500000, 1300500000),
        ("15340000.vic", "vic", 115200000, 729600000),
    ]:
        df = d / f"sys/devices/{dev}/devfreq/{dev}"
        (d / f"sys/devices/{dev}/of_node").mkdir(parents=True)
        (d / f"sys/devices/{dev}/of_node/name").write_text(node + "\x00")
        df.mkdir(parents=True)
        (df / "device").symlink_to("../..")
        (df / "cur_freq").write_text(f"{cur}\n")
        (df / "max_freq").write_text(f"{top}\n")
        (d / "sys/class/devfreq").mkdir(parents=True, exist_ok=True)
        (d / f"sys/class/devfreq/{dev}").symlink_to(f"../../devices/{dev}/devfreq/{dev}")
    for i, (kind, milli) in enumerate([("cpu-thermal", "48500"), ("gpu-thermal", "91250"), ("tj-thermal", None)]):
        z = d / f"sys/class/thermal/thermal_zone{i}"
        z.mkdir(parents=True)
        (z / "type").write_text(kind + "\n")
        if milli:
            (z / "temp").write_text(milli + "\n")
    return d


@pytest.fixture
def release_root(tmp_path) -> Path:
    make_release(tmp_path / "release")
    return tmp_path / "release"


def request(root: Path, sysfs: Path | str = "/", **kw) -> dict:
    return {"root": str(root), "seconds": 1.0, "rate_hz": 20.0, "window_s": 0.5, "sysfs": str(sysfs), **kw}


def test_monitor_runs_the_active_release_and_reads_a_fake_jetson_sysfs(release_root, tmp_path):
    res = device_monitor.cmd_monitor(request(release_root, fake_jetson_sysfs(tmp_path / "FAKE_sysfs")))
    assert res["release"] == RELEASE and res["runtime"] == "onnxruntime" and res["validated_p50_ms"] == 1.0
    assert [w["window"] for w in res["windows"]] == [0, 1] and res["unavailable"] == []
    for w in res["windows"]:
        assert w["count"] >= 1 and w["missed"] >= 0
        assert 0 < w["p50_ms"] <= w["p99_ms"] <= w["max_ms"]
        assert w["clocks"] == {
            "cpu0": {"cur_mhz": 729.6, "max_mhz": 2201.6},
            **{f"cpu{i}": {"cur_mhz": 2201.6, "max_mhz": 2201.6} for i in (1, 2, 3)},
            "gpu": {"cur_mhz": 1300.5, "max_mhz": 1300.5, "device": "17000000.ga10b"},
        }
        assert w["temps_c"] == {"cpu-thermal": 48.5, "gpu-thermal": 91.25}  # tj-thermal has no temp
    assert res["windows"][0]["t_s"] < res["windows"][1]["t_s"]


def test_monitor_reports_only_what_this_machine_exposes(release_root):
    res = device_monitor.cmd_monitor(request(release_root, seconds=0.3, window_s=1.0))
    w = res["windows"][0]
    cpufreq = list(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq"))
    zones = [z for z in Path("/sys/class/thermal").glob("thermal_zone*") if (z / "temp").is_file()]
    assert len([n for n in w["clocks"] if n.startswith("cpu")]) == len(cpufreq)  # none invented
    assert len(w["temps_c"]) == len(zones)
    assert any("cpufreq" in u for u in res["unavailable"]) == (not cpufreq)
    assert any("thermal" in u for u in res["unavailable"]) == (not zones)


def test_an_overrunning_inference_misses_its_deadlines():
    windows = device_monitor.run_schedule(lambda: time.sleep(0.15), 1.0, 10.0, 1.0, "/")
    (w,) = windows
    assert w["count"] >= 1 and w["missed"] >= w["count"]  # every call ends past its 100 ms slot
    quick = device_monitor.run_schedule(lambda: None, 1.0, 4.0, 0.5, "/")
    assert [x["count"] for x in quick] == [2, 2] and all(x["missed"] == 0 for x in quick)


def test_gpu_clock_of_a_fake_jetson_nano_sysfs(tmp_path):
    """L4T 32 (Nano): the GPU's devfreq at /sys/devices/gpu.0/devfreq/57000000.gpu, max_freq set by nvpmodel."""
    d = tmp_path / "FAKE_nano_sysfs/sys/devices/gpu.0/devfreq/57000000.gpu"
    d.mkdir(parents=True)
    (d / "cur_freq").write_text("76800000\n")
    (d / "max_freq").write_text("921600000\n")
    clocks = device_monitor.gpu_clocks(str(tmp_path / "FAKE_nano_sysfs"))
    assert clocks == {"gpu": {"cur_mhz": 76.8, "max_mhz": 921.6, "device": "57000000.gpu"}}
    assert device_monitor.gpu_clocks(str(tmp_path / "nothing")) == {}


def test_the_device_module_imports_only_the_stdlib_and_the_agent():
    tree = ast.parse(Path(device_monitor.__file__).read_text(), feature_version=(3, 8))  # JetPack 5: Python 3.8
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert names - sys.stdlib_module_names == {"agent", "."}  # `from . import agent` or `import agent`


def test_no_active_release_and_bad_requests_are_refused(tmp_path, release_root):
    with pytest.raises(agent.AgentError) as e:
        device_monitor.cmd_monitor(request(tmp_path / "empty"))
    assert e.value.kind == "no_release" and "no release is active" in str(e.value)
    for key, bad in [("seconds", 0), ("rate_hz", "10"), ("window_s", True)]:
        with pytest.raises(agent.AgentError) as e:
            device_monitor.cmd_monitor(request(release_root, **{key: bad}))
        assert e.value.kind == "bad_input" and key in str(e.value)


def test_findings_drift_throttled_clock_and_hot_zone(release_root, tmp_path):
    res = device_monitor.cmd_monitor(request(release_root, fake_jetson_sysfs(tmp_path / "FAKE_sysfs")))
    res["validated_p50_ms"] = 1e-6  # far below any real inference: every window drifts
    report = monitor.analyse(res, Monitor(max_drift=25.0, min_clock_fraction=0.75, max_temp_c=85.0))
    found = {(f["kind"], f["name"]): f for f in report["findings"]}
    assert set(found) == {("drift", "p50"), ("clock", "cpu0"), ("temperature", "gpu-thermal")}
    assert found[("clock", "cpu0")]["windows"] == [0, 1]
    assert found[("clock", "cpu0")]["worst"] == pytest.approx(729.6 / 2201.6)
    assert found[("temperature", "gpu-thermal")]["worst"] == 91.25
    assert all(w["drift_pct"] > 25 for w in report["windows"])
    calm = monitor.analyse(
        {**res, "validated_p50_ms": 1e6}, Monitor(max_drift=25.0, min_clock_fraction=0.3, max_temp_c=95.0)
    )
    assert calm["findings"] == [] and all(w["drift_pct"] < 0 for w in calm["windows"])


def test_monitor_run_is_logged_to_mlflow(cfg, release_root, tmp_path):
    res = device_monitor.cmd_monitor(request(release_root, fake_jetson_sysfs(tmp_path / "FAKE_sysfs")))
    report = monitor.analyse(res, cfg.release.monitor)
    ids = monitor.log_run(cfg, "jetson", report)
    c = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = c.get_run(ids["run_id"])
    assert run.info.run_name == "monitor jetson" and run.info.status == "FINISHED"
    assert c.get_experiment(run.info.experiment_id).name == cfg.report.experiment == ids["experiment"]
    tags = run.data.tags
    assert tags["target"] == "jetson" and tags["release"] == RELEASE and tags["release.version"] == "1.2.0"
    assert tags["release.bundle_sha256"].startswith("0123456789ab")
    assert tags["finding.clock"] == tags["finding.temperature"] == "true"
    assert "cpu0 clock" in tags["findings"] and "gpu-thermal" in tags["findings"]
    p50 = c.get_metric_history(run.info.run_id, "p50_ms")
    assert sorted(m.step for m in p50) == [0, 1]
    assert [m.value for m in c.get_metric_history(run.info.run_id, "temp_c.gpu-thermal")] == [91.25, 91.25]
    assert run.data.metrics["clock.cpu0.fraction"] == pytest.approx(729.6 / 2201.6)
    assert run.data.params["rate_hz"] == "20.0"


def local_cfg(cfg, workdir: Path):
    t = Target(runtime="onnxruntime", workdir=str(workdir))
    m = dataclasses.replace(cfg.release.monitor, rate_hz=20.0, window_s=1.0)
    return dataclasses.replace(
        cfg, target={**cfg.target, "dev": t}, release=dataclasses.replace(cfg.release, monitor=m)
    )


needs_packaging = pytest.mark.skipif(
    not hasattr(client, "DEVICE_MODULES"), reason="the agent dispatches `monitor` once the zipapp packaging lands"
)


@needs_packaging
def test_monitor_through_a_local_device(cfg, tmp_path, capsys):
    make_release(tmp_path / "dev" / "release", validated_p50_ms=1e6)
    report = monitor.monitor(local_cfg(cfg, tmp_path / "dev"), "dev", 2 / 60)
    assert report["release"] == RELEASE and len(report["windows"]) == 2
    assert not [f for f in report["findings"] if f["kind"] == "drift"]
    out = capsys.readouterr().out
    assert f"release {RELEASE}" in out and report["mlflow"]["run_id"] in out


@needs_packaging
def test_a_device_without_an_active_release_says_to_deploy(cfg, tmp_path, capsys):
    from tests.conftest import write_params

    params = dataclasses.asdict(local_cfg(cfg, tmp_path / "nothing"))
    write_params(params)
    with pytest.raises(SystemExit) as e:
        monitor.main(["--target", "dev", "--minutes", "0.01"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "edgeforge monitor: error: dev has no active release: run edgeforge deploy --target dev" in err


def test_minutes_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        monitor.main(["--target", "dev", "--minutes", "0"])
    assert "--minutes: must be a number of minutes > 0" in capsys.readouterr().err
