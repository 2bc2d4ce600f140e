"""The device agent run as the device runs it: ``python agent.py <command> '<JSON>'`` in a
subprocess, from a scratch folder, on tiny ONNX models (a 3x3 conv and its Q/DQ INT8 form) with the
real ONNX Runtime and OpenVINO of this machine."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov
import pytest

from tasks.agent import agent as agent_module
from tasks.io import sha256_file
from tests.conftest import ROOT
from tests.tasks.quant.conftest import conv_model_with_constant_weights, save

AGENT = ROOT / "tasks" / "agent" / "agent.py"
IO_NAMES = {"inputs": ["x"], "outputs": ["y"]}
PROBE_KEYS = {
    "os",
    "arch",
    "cpu",
    "ram_gib",
    "python",
    "gpu",
    "l4t",
    "jetpack",
    "cuda",
    "tensorrt",
    "onnxruntime",
    "openvino",
    "numpy",
    "power_mode",
    "agent_version",
}


def run_agent(
    cwd: Path, command: str, request: dict | str, expect: int = 0, env: dict | None = None
) -> tuple[dict, str]:
    """The reply (last stdout line) and stderr of one agent call, after checking its exit code."""
    req = request if isinstance(request, str) else json.dumps(request)
    r = subprocess.run(
        [sys.executable, str(AGENT), command, req], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == expect, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    reply = json.loads(r.stdout.strip().splitlines()[-1])
    assert reply["agent_version"] == agent_module.AGENT_VERSION
    assert reply["ok"] is (expect == 0)
    return reply, r.stderr


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A scratch folder with ``fp32.onnx`` (x (N, 2, 8, 8) -> Conv -> Relu -> y), its Q/DQ INT8
    form ``int8.onnx`` (minmax ranges) and 7 input samples ``x.npy``."""
    from tasks.quant import calibrate
    from tasks.quant.qdq import quantize_qdq

    d = tmp_path_factory.mktemp("agent")
    save(conv_model_with_constant_weights(), d / "fp32.onnx")
    x = np.random.default_rng(0).normal(size=(7, 2, 8, 8)).astype(np.float32)
    np.save(d / "x.npy", x)
    quantize_qdq(d / "fp32.onnx", calibrate(d / "fp32.onnx", [x], "minmax", input_name="x"), d / "int8.onnx")
    return d


def build(cwd: Path, runtime: str, onnx: str, precision: str, out_dir: str) -> dict:
    reply, _ = run_agent(
        cwd,
        "build",
        {
            "runtime": runtime,
            "onnx": onnx,
            "out_dir": out_dir,
            "precision": precision,
            "threads": 1,
            "io_names": IO_NAMES,
        },
    )
    res = reply["result"]
    assert res["runtime"] == runtime and res["build_seconds"] > 0
    assert res["files"] == {name: sha256_file(cwd / out_dir / name) for name in res["files"]}
    assert res["artifact"] in res["files"]
    return res


def ort_reference(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


def _tool(folder: Path, name: str, script: str) -> None:
    (folder / name).write_text("#!/bin/sh\n" + textwrap.dedent(script))
    (folder / name).chmod(0o755)


def test_probe_is_complete_and_deterministic(tmp_path):
    first, _ = run_agent(tmp_path, "probe", {"trtexec": None})
    second, _ = run_agent(tmp_path, "probe", {"trtexec": None})
    fp = first["result"]
    assert fp == second["result"]
    assert set(fp) == PROBE_KEYS
    assert set(fp["os"]) == {"system", "release", "distro"} and set(fp["cpu"]) == {
        *("model", "cores", "flags", "vendor", "family", "model_id", "mhz_nominal", "mhz_source", "physical_cores")
    }
    assert fp["python"] == platform.python_version() and fp["arch"] == platform.machine()
    assert set(fp["cpu"]["flags"]) <= set(agent_module.CPU_FLAGS) and fp["cpu"]["flags"] == sorted(fp["cpu"]["flags"])
    assert fp["ram_gib"] > 0
    # versions from package metadata: the probe imports none of the runtimes
    assert fp["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert fp["openvino"] == importlib.metadata.version("openvino")
    assert fp["numpy"] == importlib.metadata.version("numpy")
    assert fp["agent_version"] == agent_module.AGENT_VERSION


def test_probe_reads_tensorrt_from_the_trtexec_banner(tmp_path):
    _tool(tmp_path, "trtexec", "echo '&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec'\nexit 1\n")
    without, _ = run_agent(tmp_path, "probe", {"trtexec": None})
    with_banner, _ = run_agent(tmp_path, "probe", {"trtexec": "./trtexec"})
    # a TensorRT package or deb on this machine takes precedence over the banner
    assert with_banner["result"]["tensorrt"] == (without["result"]["tensorrt"] or "10.3.0")


def test_probe_parses_nvidia_tools(tmp_path):
    """nvidia-smi, nvpmodel and dpkg-query as a Jetson-like device with a discrete GPU would answer."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "nvidia-smi", "printf 'NVIDIA H100 80GB HBM3, 9.0\\nNVIDIA L4, 8.9\\n'\n")
    _tool(bin_dir, "nvpmodel", "printf 'NV Power Mode: MAXN\\n0\\n'\n")
    _tool(
        bin_dir,
        "dpkg-query",
        """\
        case "$3" in
          nvidia-jetpack) printf '5.1.2-b104' ;;
          libnvinfer-bin) printf '8.5.2-1+cuda11.4' ;;
          *) echo "dpkg-query: no packages found matching $3" >&2; exit 1 ;;
        esac
    """,
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    fp = run_agent(tmp_path, "probe", {"trtexec": None}, env=env)[0]["result"]
    assert fp["gpu"] == [
        {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"},
        {"name": "NVIDIA L4", "compute_capability": "8.9"},
    ]
    assert fp["power_mode"] == "MAXN" and fp["jetpack"] == "5.1.2"
    try:  # a TensorRT wheel's metadata comes first
        assert fp["tensorrt"] == importlib.metadata.version("tensorrt")
    except importlib.metadata.PackageNotFoundError:
        assert fp["tensorrt"] == "8.5.2"


@pytest.mark.parametrize("number, version", [(8601, "8.6.1"), (100300, "10.3.0"), (110000, "11.0.0"), (8205, "8.2.5")])
def test_trtexec_banner_numbers_decode_to_versions(number, version):
    assert agent_module.decode_trt_version(number) == version


def test_onnxruntime_builds_its_optimized_graph_and_int8_qdq(models):
    res = build(models, "onnxruntime", "fp32.onnx", "fp32", "ort-fp32")
    assert res["artifact"] == "model.onnx" and set(res["files"]) == {"model.onnx"}
    assert res["runtime_version"] == ort.__version__
    assert res["meta"] == {"providers": ["CPUExecutionProvider"], "optimized": True}
    x = np.load(models / "x.npy")
    np.testing.assert_allclose(
        ort_reference(models / "ort-fp32" / "model.onnx", x), ort_reference(models / "fp32.onnx", x), atol=1e-5, rtol=0
    )

    res8 = build(models, "onnxruntime", str(models / "int8.onnx"), "int8-minmax", "ort-int8")  # absolute path too
    assert res8["meta"]["optimized"] is True
    got = ort_reference(models / "ort-int8" / "model.onnx", x)
    np.testing.assert_allclose(got, ort_reference(models / "int8.onnx", x), atol=1e-5, rtol=0)


def test_openvino_builds_fp32_fp16_and_int8(models):
    for precision, onnx in (("fp32", "fp32.onnx"), ("fp16", "fp32.onnx"), ("int8-minmax", "int8.onnx")):
        res = build(models, "openvino", onnx, precision, f"ov-{precision}")
        assert res["artifact"] == "model.xml" and set(res["files"]) == {"model.xml", "model.bin"}
        assert res["runtime_version"] == ov.get_version()
        meta = res["meta"]
        assert meta["weights_sha256"] == res["files"]["model.bin"] and meta["device"] == "CPU"
        assert (meta["int8_ops"] > 0) == (precision == "int8-minmax")
        assert ("F16" in meta["runtime_precisions"]) == (precision == "fp16")  # FP16 weights, decompressed
    # an int8 build that would run in FP32 is an error, not a silent FP32 artifact
    reply, _ = run_agent(
        models,
        "build",
        {"runtime": "openvino", "onnx": "fp32.onnx", "out_dir": "ov-bad", "precision": "int8-minmax", "threads": None},
        expect=1,
    )
    assert reply["kind"] == "failed" and "no op executing in int8" in reply["error"]


def test_missing_onnx_is_bad_input_naming_the_path(tmp_path):
    reply, stderr = run_agent(
        tmp_path,
        "build",
        {
            "runtime": "onnxruntime",
            "onnx": "nowhere/model.onnx",
            "out_dir": "out",
            "precision": "fp32",
            "threads": None,
        },
        expect=1,
    )
    assert reply["kind"] == "bad_input" and "nowhere/model.onnx" in reply["error"]
    assert "nowhere/model.onnx" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()  # nothing written for a request that cannot run


@pytest.mark.parametrize("request_", [{"runtime": "tflite"}, {"runtime": "onnxruntime", "onnx": 3}])
def test_malformed_requests_are_bad_input(tmp_path, request_):
    reply, _ = run_agent(tmp_path, "build", request_, expect=1)
    assert reply["kind"] == "bad_input"


@pytest.mark.parametrize("argv", [["deploy", "{}"], ["probe", "not json"], ["probe", "[]"], ["probe"]])
def test_unknown_command_or_malformed_request_is_usage(tmp_path, argv):
    r = subprocess.run([sys.executable, str(AGENT), *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    reply = json.loads(r.stdout.strip().splitlines()[-1])
    assert reply["ok"] is False and reply["kind"] == "usage" and "usage: agent.py" in reply["error"]


def test_tensorrt_build_with_a_missing_trtexec_is_missing_runtime(tmp_path):
    reply, _ = run_agent(
        tmp_path,
        "build",
        {
            "runtime": "tensorrt",
            "argv": ["/opt/nowhere/trtexec", "--onnx=m.onnx"],
            "out_dir": "trt",
            "engine": "model.engine",
            "log": "build.log",
            "timeout": None,
        },
        expect=1,
    )
    assert reply["kind"] == "missing_runtime" and "/opt/nowhere/trtexec" in reply["error"]
    assert not (tmp_path / "trt").exists()


def test_tensorrt_build_runs_argv_in_out_dir_and_reports_a_failing_exit(tmp_path):
    fake = tmp_path / "fake_trtexec.py"
    fake.write_text(
        textwrap.dedent("""\
        import sys
        from pathlib import Path
        Path("model.engine").write_bytes(b"engine bytes")
        print("&&&& RUNNING TensorRT.trtexec [TensorRT v100300]", sys.argv[1:])
        print("[E] something went wrong", file=sys.stderr)
        sys.exit(3)
    """)
    )
    (tmp_path / "trt").mkdir()
    (tmp_path / "trt" / "model.engine").write_bytes(b"stale engine of an earlier build")
    reply, stderr = run_agent(
        tmp_path,
        "build",
        {
            "runtime": "tensorrt",
            "argv": [sys.executable, str(fake), "--fp16"],
            "out_dir": "trt",
            "engine": "model.engine",
            "log": "build.log",
            "timeout": 60,
        },
    )
    res = reply["result"]
    assert res["exit_code"] == 3 and res["artifact"] == "model.engine" and res["runtime"] == "tensorrt"
    log = (tmp_path / "trt" / "build.log").read_text()
    assert "[TensorRT v100300] ['--fp16']" in log and "[E] something went wrong" in log
    assert (tmp_path / "trt" / "model.engine").read_bytes() == b"engine bytes"
    assert res["files"] == {n: sha256_file(tmp_path / "trt" / n) for n in ("build.log", "model.engine")}
    assert "[E] something went wrong" in stderr  # the log's last lines


def test_tensorrt_build_that_writes_no_engine_has_no_artifact(tmp_path):
    reply, _ = run_agent(
        tmp_path,
        "build",
        {
            "runtime": "tensorrt",
            "argv": [sys.executable, "-c", "print('no engine')"],
            "out_dir": "trt",
            "engine": "model.engine",
            "log": "build.log",
            "timeout": None,
        },
    )
    assert reply["result"]["exit_code"] == 0 and reply["result"]["artifact"] is None


@pytest.mark.parametrize("runtime, precision", [("onnxruntime", "fp32"), ("openvino", "fp16")])
def test_benchmark_measures_every_batch_size(models, runtime, precision):
    res = build(models, runtime, "fp32.onnx", precision, f"bench-{runtime}")
    reply, _ = run_agent(
        models,
        "benchmark",
        {
            "runtime": runtime,
            "artifact": f"bench-{runtime}/{res['artifact']}",
            "input": "x.npy",
            "batch_sizes": [1, 9],
            "warmup_s": 0.0,
            "min_duration_s": 0.0,
            "min_iterations": 5,
            "threads": 1,
            "end_to_end_iterations": 4,
        },
    )
    lat = reply["result"]["latency_s"]
    assert set(lat) == {"b1", "b9"}  # 9 > the 7 samples: built by repeating them
    # batch 1's input copy, compute and output copy timed apart over the same 4 calls, and each whole call
    split = reply["result"]["io_split_s"]
    assert set(split) == {"input_copy", "compute", "output_copy", "total"}
    assert all(len(v) == 4 and min(v) > 0 for v in split.values())
    assert all(len(v) >= 5 and min(v) > 0 for v in lat.values())
    assert reply["result"]["runtime_version"] == res["runtime_version"]
    cold = reply["result"]["cold"]
    assert cold["load_s"] > 0 and cold["first_inference_s"] > 0
    for when in ("before", "after"):
        h = reply["result"]["hygiene"][when]
        assert h["load_avg_1m"] >= 0 and isinstance(h["temperature_c"], dict)
        assert h["power_mode"] is None  # no nvpmodel here


def test_hygiene_reads_thermal_zones_and_clocks():
    from pathlib import Path

    from tasks.agent import agent

    h = agent.hygiene()
    zones = [z for z in Path("/sys/class/thermal").glob("thermal_zone*") if (z / "temp").is_file()]
    assert len(h["temperature_c"]) == len(zones)  # every readable zone, none invented
    clocks = list(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq"))
    assert (h["cpu_mhz"] is None) == (not clocks)
    if clocks:
        assert 0 < h["cpu_mhz"]["min"] <= h["cpu_mhz"]["max"]


@pytest.mark.parametrize("runtime, atol", [("onnxruntime", 1e-5), ("openvino", 1e-4)])
def test_infer_writes_every_output_matching_onnxruntime(models, runtime, atol):
    res = build(models, runtime, "fp32.onnx", "fp32", f"infer-{runtime}")
    reply, _ = run_agent(
        models,
        "infer",
        {
            "runtime": runtime,
            "artifact": f"infer-{runtime}/{res['artifact']}",
            "input": "x.npy",
            "output": f"out/{runtime}.npz",
            "batch_size": 3,
            "threads": None,
        },
    )
    assert reply["result"] == {"outputs": ["y"], "samples": 7}
    x = np.load(models / "x.npy")
    with np.load(models / "out" / f"{runtime}.npz") as got:
        assert list(got) == ["y"] and got["y"].dtype == np.float32
        np.testing.assert_allclose(got["y"], ort_reference(models / "fp32.onnx", x), atol=atol, rtol=0)


def test_agent_imports_only_the_stdlib_at_module_level():
    tree = ast.parse(AGENT.read_text(), feature_version=(3, 8))  # JetPack 5 devices run Python 3.8
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in top if isinstance(n, ast.ImportFrom)]
    assert names and all(n.split(".")[0] in sys.stdlib_module_names | {"__future__"} for n in names), names
    everywhere = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    everywhere |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not everywhere & {"tasks", "onnx", "torch"}  # the device has no copy of this repository
