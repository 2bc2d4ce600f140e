"""TensorRT targets through the device agent, on FAKE hardware: the FAKE trtexec (tests/fakes/trtexec,
replaying real trtexec logs) builds and benchmarks, the FAKE ``tensorrt`` + ``pycuda`` packages
(tests/fakes/trt_python, on the agent subprocess's PYTHONPATH only) run its engines, which are the
ONNX they were built from run by ONNX Runtime on the CPU. What is real: the agent's code paths, the
requests and answers, the host's parsing, and ONNX Runtime's outputs. What is not: every trtexec
number (they are the recorded logs' numbers, from other machines) and every notion of a GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tasks.records import BuildRecord
from tasks.runtimes.base import BuildError
from tasks.runtimes.tensorrt_rt import trtexec_figures
from tasks.runtimes.trtexec_log import parse
from tests.fakes import FAKES, TRT_PYTHON, TRTEXEC_FIXTURES, install_trtexec, trt_python_env
from tests.tasks.agent.test_agent import ort_reference, run_agent
from tests.tasks.quant.conftest import conv_model_with_constant_weights, save

#: the real --loadEngine log the fake replays for each major version, and its median latency (ms)
REPLAYED = {
    "10.3.0": ("trt10.16_rtx6000ada_loadengine_fp16_ok.log", 0.0368652),
    "11.0.0": ("trt11.0_b200_loadengine_cudagraph_summary_tail_ok.log", 0.0402832),
    "8.6.1": ("trt8.4_xavier_agx_loadengine_batch16_summary_ok.log", 0.401947),
}
FLAGS = {"10.3.0": ["--useSpinWait"], "11.0.0": ["--includeDataTransfers", "--noCudaGraph"], "8.6.1": ["--useSpinWait"]}
SHAPES_MAX2 = ["--minShapes=x:1x2x8x8", "--optShapes=x:2x2x8x8", "--maxShapes=x:2x2x8x8"]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None,
    reason="a real tensorrt package is installed: the fake would not be the one imported",
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """``model.onnx`` (x (N, 2, 8, 8) -> Conv -> Relu -> y) and 7 samples ``x.npy``."""
    d = tmp_path_factory.mktemp("trt")
    save(conv_model_with_constant_weights(), d / "model.onnx")
    np.save(d / "x.npy", np.random.default_rng(0).normal(size=(7, 2, 8, 8)).astype(np.float32))
    return d


def engine(folder: Path, version: str, shapes: list[str] = (), **fake) -> tuple[Path, str]:
    """(the fake trtexec, the engine's path relative to ``folder``), built through the agent."""
    tag = f"{version}-{len(shapes)}-{'-'.join(map(str, fake.values()))}"
    exe = install_trtexec(folder / f"bin-{tag}", version, **fake)
    reply, _ = run_agent(
        folder,
        "build",
        {
            "runtime": "tensorrt",
            "out_dir": f"build-{tag}",
            "engine": "model.engine",
            "log": "build.log",
            "timeout": 60,
            "argv": [str(exe), f"--onnx={folder / 'model.onnx'}", "--saveEngine=model.engine", *shapes],
        },
    )
    assert reply["result"]["exit_code"] == 0 and reply["result"]["artifact"] == "model.engine"
    return exe, f"build-{tag}/model.engine"


def bench_request(exe, artifact: str, sizes=(1, 2), **extra) -> dict:
    return {
        "runtime": "tensorrt",
        "artifact": artifact,
        "input": "x.npy",
        "batch_sizes": list(sizes),
        "warmup_s": 0.0,
        "min_duration_s": 0.0,
        "min_iterations": 5,
        "threads": None,
        "trtexec": str(exe) if exe else None,
        **extra,
    }


def fake_trt(version: str) -> dict:
    return trt_python_env(dict(os.environ), version)


@pytest.mark.parametrize("version", ["10.3.0", "11.0.0"])
def test_benchmark_gives_edgeforge_latencies_and_trtexec_beside_them(folder, version):
    exe, art = engine(folder, version, SHAPES_MAX2)
    reply, _ = run_agent(folder, "benchmark", bench_request(exe, art), env=fake_trt(version))
    res = reply["result"]
    # EdgeForge's own figure: per-call seconds of TrtModel.infer (here: the fake, i.e. ONNX Runtime on the CPU)
    assert set(res["latency_s"]) == {"b1", "b2"} and all(len(v) >= 5 and min(v) > 0 for v in res["latency_s"].values())
    assert res["cold"]["load_s"] > 0 and res["cold"]["first_inference_s"] > 0
    assert res["runtime_version"] == version and res["slices"] == {} and "latency_unavailable" not in res
    trt = res["trtexec"]
    assert trt["tensorrt"] == version and trt["settings"] == {
        "cuda_graph": False,
        "data_transfers": True,
        "spin_wait": True,
    }
    for b in (1, 2):
        run = trt["runs"][f"b{b}"]
        assert run["exit_code"] == 0
        assert run["argv"] == [
            str(exe),
            f"--loadEngine={folder / art}",
            f"--shapes=x:{b}x2x8x8",
            "--warmUp=0",
            "--duration=0",
            "--iterations=5",
            *FLAGS[version],
        ]
        # the fake's echo of what it was told: every version measures with copies and without CUDA graph
        for echoed in ("Data transfers: Enabled", "CUDA Graph: Disabled") if version == "10.3.0" else ():
            assert echoed in run["log"]
        assert "CUDA graph" not in run["log"]  # TensorRT 11's capture lines are gone with --noCudaGraph


@pytest.mark.parametrize(
    "version, defaults",
    [
        ("10.3.0", {"cuda_graph": False, "data_transfers": True, "spin_wait": False}),
        ("11.0.0", {"cuda_graph": True, "data_transfers": False, "spin_wait": True}),
        ("8.6.1", {"cuda_graph": False, "data_transfers": True, "spin_wait": False}),
    ],
)
def test_host_reads_the_replayed_summary_and_the_version_defaults(folder, version, defaults):
    exe, art = engine(folder, version)
    reply, _ = run_agent(folder, "benchmark", bench_request(exe, art, sizes=[1]), env=fake_trt(version))
    figures = trtexec_figures(reply["result"]["trtexec"], "fake-device")
    b1 = figures["b1"]
    fixture, median = REPLAYED[version]
    # the recorded log's numbers, from the machine that printed it (nothing was measured here)
    assert b1["latency"]["median"] == median
    recorded = parse((TRTEXEC_FIXTURES / fixture).read_text()).summary
    assert {k: b1[k] for k in recorded} == recorded and "throughput_qps" in b1 and "gpu_compute_time" in b1
    assert b1["tensorrt"] == version and b1["argv"][:2] == [str(exe), f"--loadEngine={folder / art}"]
    assert {k: v for k, v in b1["defaults"].items() if k != "source"} == defaults
    assert b1["defaults"]["source"].startswith("trtexec ")
    assert b1["settings"] == {"cuda_graph": False, "data_transfers": True, "spin_wait": True}


@pytest.mark.parametrize("version", ["10.3.0", "11.0.0"])
def test_infer_matches_onnxruntime_splitting_batches_above_the_profile(folder, version):
    x = np.load(folder / "x.npy")
    want = ort_reference(folder / "model.onnx", x)
    for shapes, max_batch in ((SHAPES_MAX2, 2), ((), 1)):  # no shapes: trtexec fixes the dynamic batch to 1
        _, art = engine(folder, version, list(shapes))
        out = f"out-{version}-{max_batch}.npz"
        reply, _ = run_agent(
            folder,
            "infer",
            {"runtime": "tensorrt", "artifact": art, "input": "x.npy", "output": out, "batch_size": 5, "threads": None},
            env=fake_trt(version),
        )
        assert reply["result"] == {"outputs": ["y"], "samples": 7}
        with np.load(folder / out) as got:  # batches of 5 and 2, run as slices of at most max_batch
            assert list(got) == ["y"] and got["y"].dtype == np.float32
            np.testing.assert_allclose(got["y"], want, atol=1e-5, rtol=0)


def test_benchmark_above_the_profile_runs_in_slices_and_skips_trtexec(folder):
    exe, art = engine(folder, "10.3.0", SHAPES_MAX2)
    reply, _ = run_agent(folder, "benchmark", bench_request(exe, art, sizes=[1, 5]), env=fake_trt("10.3.0"))
    res = reply["result"]
    assert set(res["latency_s"]) == {"b1", "b5"} and res["slices"] == {"b5": 3}
    assert "optimisation profile (batch 1 to 2 for x)" in res["trtexec"]["runs"]["b5"]["skipped"]
    figures = trtexec_figures(res["trtexec"], "fake-device")
    assert figures["b5"]["skipped"] and "latency" in figures["b1"]


def test_without_tensorrt_python_benchmark_gives_trtexec_only_and_says_what_to_install(folder):
    exe, art = engine(folder, "10.3.0")
    reply, _ = run_agent(folder, "benchmark", bench_request(exe, art, sizes=[1], input_name="x"))
    res = reply["result"]
    assert res["latency_s"] == {} and res["cold"] is None and res["runtime_version"] == "10.3.0"
    assert "python3-libnvinfer" in res["latency_unavailable"] and "pip install pycuda" in res["latency_unavailable"]
    assert res["trtexec"]["runs"]["b1"]["argv"][2] == "--shapes=x:1x2x8x8"
    assert trtexec_figures(res["trtexec"], "orin")["b1"]["latency"]["median"] == REPLAYED["10.3.0"][1]
    # without the input name trtexec cannot be given --shapes: skipped, saying why
    reply, _ = run_agent(folder, "benchmark", bench_request(exe, art, sizes=[1]))
    assert "input name is unknown" in reply["result"]["trtexec"]["runs"]["b1"]["skipped"]
    # inference has nothing to fall back on
    reply, _ = run_agent(
        folder,
        "infer",
        {
            "runtime": "tensorrt",
            "artifact": art,
            "input": "x.npy",
            "output": "never.npz",
            "batch_size": 2,
            "threads": None,
        },
        expect=1,
    )
    assert reply["kind"] == "missing_runtime" and "python3-libnvinfer" in reply["error"]
    assert not (folder / "never.npz").exists()


def test_tensorrt_older_than_8_5_is_refused_naming_its_version(folder):
    exe, art = engine(folder, "8.4.1")
    reply, _ = run_agent(
        folder,
        "infer",
        {
            "runtime": "tensorrt",
            "artifact": art,
            "input": "x.npy",
            "output": "old.npz",
            "batch_size": 2,
            "threads": None,
        },
        expect=1,
        env=fake_trt("8.4.1"),
    )
    assert reply["kind"] == "missing_runtime" and "TensorRT 8.4.1 is too old" in reply["error"]
    assert ">= 8.5" in reply["error"]
    # benchmarks still get trtexec's figure (given the input's name, which TrtModel would have read)
    reply, _ = run_agent(folder, "benchmark", bench_request(exe, art, sizes=[1], input_name="x"), env=fake_trt("8.4.1"))
    res = reply["result"]
    assert "TensorRT 8.4.1 is too old" in res["latency_unavailable"] and res["trtexec"]["runs"]["b1"]["exit_code"] == 0


def test_an_engine_of_another_tensorrt_version_is_a_failure(folder):
    exe, art = engine(folder, "10.3.0")
    reply, stderr = run_agent(folder, "benchmark", bench_request(exe, art), expect=1, env=fake_trt("10.16.1"))
    assert reply["kind"] == "failed" and "TensorRT 10.16.1 cannot deserialize" in reply["error"]
    assert "written for TensorRT 10.3.0" in stderr  # the (fake) runtime's own log line


def test_a_failing_trtexec_load_is_an_error_quoting_its_errors(folder):
    exe, art = engine(folder, "10.3.0", fail_load="trt10.3_jetson_plugin_inference_fail.log")
    reply, _ = run_agent(folder, "benchmark", bench_request(exe, art, sizes=[1]), env=fake_trt("10.3.0"))
    run = reply["result"]["trtexec"]["runs"]["b1"]
    assert run["exit_code"] == 1 and "&&&& FAILED" in run["log"]
    with pytest.raises(BuildError) as e:
        trtexec_figures(reply["result"]["trtexec"], "jetson")
    msg = str(e.value)
    assert msg.startswith("jetson: trtexec --loadEngine (TensorRT 10.3.0) exited with code 1 for batch 1")
    assert "pluginV2DynamicExtRunner.cpp::execute::126" in msg and "Error occurred during inference" in msg
    assert f"--loadEngine={folder / art}" in msg


def test_remote_latencies_and_outputs_on_a_local_tensorrt_target(folder, tmp_path, monkeypatch):
    """The host side end to end: a local target, the agent uploaded and called as on a device."""
    from tasks.agent import remote
    from tasks.agent.client import device
    from tasks.config.schema import Target, TensorRT

    exe, art = engine(folder, "11.0.0", SHAPES_MAX2)
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    (build_dir / "model.engine").write_bytes((folder / art).read_bytes())
    (build_dir / "build.log").write_text("not uploaded\n")
    engine_record(build_dir)
    for key, value in fake_trt("11.0.0").items():
        monkeypatch.setenv(key, value)
    target = Target(runtime="tensorrt", tensorrt=TensorRT(trtexec=str(exe)))
    x = np.load(folder / "x.npy")
    bench = SimpleNamespace(batch_sizes=[1, 4], warmup_s=0.0, min_duration_s=0.0, min_iterations=3)
    with device("trt11", target) as dev:
        lat, info = remote.latencies(dev, build_dir, x, bench)
        again, info_again = remote.latencies(dev, build_dir, x, bench, trtexec=False)
        y = remote.outputs(dev, build_dir, x, batch_size=3)
    assert set(lat) == {1, 4} and all(len(v) >= 3 for v in lat.values()) and info["slices"] == {"b4": 2}
    assert info["trtexec"]["b1"]["latency"]["median"] == REPLAYED["11.0.0"][1]
    assert info["trtexec"]["b1"]["defaults"]["cuda_graph"] is True and "skipped" in info["trtexec"]["b4"]
    assert set(again) == {1, 4} and "trtexec" not in info_again
    np.testing.assert_allclose(y["y"], ort_reference(folder / "model.onnx", x), atol=1e-5, rtol=0)


def test_remote_latencies_with_nothing_measurable_is_an_error(folder, tmp_path):
    from tasks.agent import remote
    from tasks.agent.client import device
    from tasks.config.schema import Target, TensorRT

    exe, art = engine(folder, "10.3.0")
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    (build_dir / "model.engine").write_bytes((folder / art).read_bytes())
    engine_record(build_dir)
    bench = SimpleNamespace(batch_sizes=[1], warmup_s=0.0, min_duration_s=0.0, min_iterations=3)
    with device("orin", Target(runtime="tensorrt", tensorrt=TensorRT(trtexec=str(exe)))) as dev:
        lat, info = remote.latencies(dev, build_dir, np.load(folder / "x.npy"), bench, input_name="x")
        assert lat == {} and "pycuda" in info["latency_unavailable"] and "latency" in info["trtexec"]["b1"]
        with pytest.raises(BuildError, match="orin: nothing could be measured: .*python3-libnvinfer.*input name"):
            remote.latencies(dev, build_dir, np.load(folder / "x.npy"), bench)


def test_trtexec_runs_get_the_builds_load_arguments_and_profile(folder, tmp_path):
    """The build record's trt_load_args (plugin libraries here) reach every trtexec --loadEngine: a trtexec that
    has not loaded an engine's plugins cannot deserialize it. trt_profile's batch range skips the batches a DLA
    engine's static batch-1 profile cannot take, also when TensorRT's Python (and so the engine's own profile) is
    missing on the device."""
    from tasks.agent.remote import _trt_load

    lib = folder / "libcustom_plugins.so"
    lib.write_bytes(b"FAKE PLUGIN LIBRARY")
    exe, art = engine(folder, "10.3.0", [f"--staticPlugins={lib}"])
    req = bench_request(exe, art, sizes=[1, 4], input_name="x")
    bare = run_agent(folder, "benchmark", req)[0]["result"]["trtexec"]["runs"]
    assert bare["b1"]["exit_code"] == 1 and "IPluginCreator not found" in bare["b1"]["log"]
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    (build_dir / "model.engine").write_bytes((folder / art).read_bytes())
    engine_record(build_dir, trt_load_args=[f"--staticPlugins={lib}"], trt_profile={"min": 1, "opt": 1, "max": 1})
    load = _trt_load(build_dir)
    assert load == {"trtexec_args": [f"--staticPlugins={lib}"], "profile_batches": [1, 1]}
    runs = run_agent(folder, "benchmark", {**req, **load})[0]["result"]["trtexec"]["runs"]
    assert runs["b1"]["exit_code"] == 0 and runs["b1"]["argv"][-1] == f"--staticPlugins={lib}"
    assert "outside the engine's optimisation profile (batch 1 to 1 for x)" in runs["b4"]["skipped"]
    assert trtexec_figures({"tensorrt": "10.3.0", "defaults": {}, "settings": {}, "runs": runs}, "orin")["b1"]
    engine_record(build_dir)  # a record of an older EdgeForge: nothing extra to pass
    assert _trt_load(build_dir) == {"trtexec_args": [], "profile_batches": None}


def test_the_fake_tensorrt_packages_say_so():
    for path in sorted(TRT_PYTHON.rglob("*.py")) + [TRT_PYTHON / "README.md"]:
        assert "FAKE" in path.read_text()[:200], path
    assert (FAKES / "trt_python" / "tensorrt" / "__init__.py").is_file()
    # nothing outside the agent subprocesses imports them
    probe = subprocess.run([sys.executable, "-c", "import tensorrt"], capture_output=True, text=True)
    assert probe.returncode != 0


def engine_record(build_dir: Path, **extra) -> None:
    """``build.json`` of a TensorRT build folder holding ``model.engine``, as the build stage writes it
    (``extra``: the recipe's ``trt_*`` facts)."""
    from tasks.io import sha256_file

    engine = build_dir / "model.engine"
    BuildRecord(
        target="local",
        precision="fp32",
        runtime="tensorrt",
        artifact=engine.name,
        runtime_version="11.0.0",
        host="local",
        sha256=sha256_file(engine),
        size_bytes=engine.stat().st_size,
        source_onnx_sha256="",
        build_seconds=0.0,
        extra=extra,
    ).write(build_dir / "build.json")
