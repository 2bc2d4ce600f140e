"""TensorRT targets through the device agent, on FAKE hardware: the FAKE trtexec (tests/fakes/trtexec,
replaying real trtexec logs) builds and benchmarks, the FAKE ``tensorrt`` + ``pycuda`` packages
(tests/fakes/trt_python, on the agent subprocess's PYTHONPATH only) run its engines, which are the
ONNX they were built from run by ONNX Runtime on the CPU. What is real: the agent's code paths, the
requests and answers, the host's parsing, and ONNX Runtime's outputs. What is not: every trtexec
number (they are the recorded logs' numbers, from other machines) and every notion of a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

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


@pytest.mark.parametrize("built, device", [("10.3.0", "10.16.1"), ("8.5.3", "8.6.1")])
def test_an_engine_of_another_tensorrt_version_is_a_failure_naming_that_cause(folder, built, device):
    exe, art = engine(folder, built)
    reply, stderr = run_agent(folder, "benchmark", bench_request(exe, art), expect=1, env=fake_trt(device))
    err = reply["error"]
    assert reply["kind"] == "failed" and f"TensorRT {device} cannot deserialize" in err
    # the cause TensorRT's own lines point to, quoted, and what to do; not a list of every possible cause
    assert "built by another TensorRT version" in err and "rebuild it with this device's TensorRT" in err
    assert f"expecting library version {device} got {built}" in err and "plugin" not in err.split("To fix:")[1]
    assert f"expecting library version {device} got {built}" in stderr  # the runtime's log line, as printed


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
    (``extra``: the recipe's ``trt_*`` facts, e.g. ``trt_plugins``)."""
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


# ---- plugins, data-dependent output shapes (issue #14)


def instance_norm_model() -> onnx.ModelProto:
    """x (N, 2, 8, 8) -> InstanceNormalization -> y: TensorRT < 10 imports it as the
    InstanceNormalization_TRT plugin of libnvinfer_plugin, 10+ natively (the FAKE's header)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 8, 8])
    scale = numpy_helper.from_array(np.array([1.5, 0.5], np.float32), "scale")
    bias = numpy_helper.from_array(np.array([0.1, -0.2], np.float32), "bias")
    node = helper.make_node("InstanceNormalization", ["x", "scale", "bias"], ["y"], epsilon=1e-5)
    return helper.make_model(
        helper.make_graph([node], "instnorm", [x], [y], [scale, bias]), opset_imports=[helper.make_opsetid("", 17)]
    )


def custom_op_model() -> onnx.ModelProto:
    """x -> com.microsoft:FastGelu -> y: an op outside the ONNX domain, which TensorRT's parser imports
    as a plugin named after it (a library the build loads must provide it; ONNX Runtime runs it here)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 8, 8])
    node = helper.make_node("FastGelu", ["x"], ["y"], domain="com.microsoft")
    return helper.make_model(
        helper.make_graph([node], "custom", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )


def nonzero_model() -> onnx.ModelProto:
    """x (N, 2, 8, 8) -> Relu -> y, and NonZero(y) -> idx (4, K): K depends on the values."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 8, 8])
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, [4, "K"])
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("NonZero", ["y"], ["idx"])]
    return helper.make_model(
        helper.make_graph(nodes, "nonzero", [x], [y, idx]), opset_imports=[helper.make_opsetid("", 17)]
    )


def fake_plugin_library(folder: Path, creators: list[list[str]]) -> Path:
    """A FAKE plugin library: a copy of a real shared library this process has loaded (libm), so
    ctypes can load it as the agent loads a plugin library, with the FAKE tensorrt's sidecar naming
    the plugin creators it "registers" when loaded (tests/fakes/trt_python/tensorrt/__init__.py)."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    real = next(line.split()[-1] for line in maps if re.search(r"/libm\.so[.\d]*$", line))
    folder.mkdir(parents=True, exist_ok=True)
    lib = Path(shutil.copy(real, folder / "libfake_plugins.so"))
    Path(f"{lib}.fake_plugins.json").write_text(json.dumps({"creators": creators}))
    return lib


def onnx_engine(folder: Path, model: onnx.ModelProto, name: str, version: str, *flags: str) -> str:
    """The FAKE trtexec's engine of ``model`` (saved as ``<name>.onnx``) for TensorRT ``version``, built
    through the agent with ``flags``: its path relative to ``folder``."""
    onnx.save(model, str(folder / f"{name}.onnx"))
    exe = install_trtexec(folder / f"bin-{name}-{version}", version)
    out = f"build-{name}-{version}"
    reply, _ = run_agent(
        folder,
        "build",
        {
            "runtime": "tensorrt",
            "out_dir": out,
            "engine": "model.engine",
            "log": "build.log",
            "timeout": 60,
            "argv": [str(exe), f"--onnx={folder / f'{name}.onnx'}", "--saveEngine=model.engine", *flags],
        },
    )
    assert reply["result"]["artifact"] == "model.engine"
    return f"{out}/model.engine"


def infer_request(art: str, out: str, batch_size: int = 8, **extra) -> dict:
    return {
        "runtime": "tensorrt",
        "artifact": art,
        "input": "x.npy",
        "output": out,
        "batch_size": batch_size,
        "threads": None,
        **extra,
    }


def reference(folder: Path, name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """ONNX Runtime's outputs of ``<name>.onnx`` by name."""
    sess = ort.InferenceSession(str(folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))


def test_tensorrt_s_own_plugins_are_registered_before_deserialising(folder):
    """An engine TensorRT 8.6 built with its InstanceNormalization_TRT plugin loads only after
    init_libnvinfer_plugins, which NVIDIA's samples and trtexec call first."""
    x = np.load(folder / "x.npy")
    for version in ("8.6.1", "10.3.0"):  # a plugin on 8.x, native on 10 (both load)
        art = onnx_engine(folder, instance_norm_model(), "instnorm", version, *SHAPES_MAX2)
        want = reference(folder, "instnorm", x)
        reply, _ = run_agent(folder, "infer", infer_request(art, f"in-{version}.npz", 2), env=fake_trt(version))
        assert reply["result"] == {"outputs": ["y"], "samples": 7}
        with np.load(folder / f"in-{version}.npz") as got:
            np.testing.assert_allclose(got["y"], want["y"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_a_missing_plugin_library_is_named_with_tensorrt_s_errors_and_the_build_s_library_loads(folder, version):
    lib = fake_plugin_library(folder / f"plugins-{version}", [["FastGelu", "1"]])
    art = onnx_engine(folder, custom_op_model(), "custom", version, *SHAPES_MAX2, f"--staticPlugins={lib}")
    reply, stderr = run_agent(folder, "infer", infer_request(art, "never.npz", 2), expect=1, env=fake_trt(version))
    err = reply["error"]
    assert reply["kind"] == "failed" and f"TensorRT {version} cannot deserialize {art}" in err
    # the cause TensorRT's lines point to (a plugin), which one, the evidence, and what to do
    assert "holds a plugin no library loaded here registers (FastGelu version 1)" in err
    assert "getPluginCreator could not find plugin: FastGelu version: 1" in err and "IPluginCreator not found" in err
    assert "target.<name>.tensorrt.plugins" in err and "loaded besides TensorRT's own: none" in err
    assert "another TensorRT version" not in err and "getPluginCreator could not find plugin" in stderr
    assert not (folder / "never.npz").exists()
    # with the library the build loaded, the engine deserialises and runs
    reply, _ = run_agent(
        folder, "infer", infer_request(art, f"c-{version}.npz", 2, plugins=[str(lib)]), env=fake_trt(version)
    )
    x = np.load(folder / "x.npy")
    with np.load(folder / f"c-{version}.npz") as got:
        np.testing.assert_allclose(got["y"], reference(folder, "custom", x)["y"], atol=1e-5, rtol=0)
    # benchmarks load it too
    reply, _ = run_agent(folder, "benchmark", bench_request(None, art, plugins=[str(lib)]), env=fake_trt(version))
    assert set(reply["result"]["latency_s"]) == {"b1", "b2"}


def test_the_plugins_request_key_is_checked(folder):
    _, art = engine(folder, "10.3.0")
    for plugins, why in (
        ("libx.so", "must be null or a list of the plugin libraries"),
        ([""], "must be null or a list"),
    ):
        reply, _ = run_agent(
            folder, "infer", infer_request(art, "n.npz", plugins=plugins), expect=1, env=fake_trt("10.3.0")
        )
        assert reply["kind"] == "bad_input" and "'plugins'" in reply["error"] and why in reply["error"]
    reply, _ = run_agent(
        folder, "infer", infer_request(art, "n.npz", plugins=["/nowhere/libp.so"]), expect=1, env=fake_trt("10.3.0")
    )
    assert (
        reply["kind"] == "bad_input"
        and "plugin library '/nowhere/libp.so' does not exist on this device" in reply["error"]
    )


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "11.0.0"])
def test_data_dependent_outputs_come_back_in_their_real_shape(folder, version):
    """NonZero's output is (4, K), K known only after execution: -1 after set_input_shape, memory from an
    output allocator (reallocate_output before 10, reallocate_output_async from 10), shape from notify_shape."""
    x = np.load(folder / "x.npy")[:2]
    np.save(folder / "x2.npy", x)
    art = onnx_engine(folder, nonzero_model(), "nonzero", version, *SHAPES_MAX2)
    want = reference(folder, "nonzero", x)
    req = {**infer_request(art, f"nz-{version}.npz", 2), "input": "x2.npy"}
    reply, _ = run_agent(folder, "infer", req, env=fake_trt(version))
    assert reply["result"] == {"outputs": ["y", "idx"], "samples": 2}
    with np.load(folder / f"nz-{version}.npz") as got:
        assert got["idx"].shape == want["idx"].shape == (4, int((want["y"] > 0).sum()))
        np.testing.assert_array_equal(got["idx"], want["idx"].astype(np.float32))
        np.testing.assert_allclose(got["y"], want["y"], atol=1e-6, rtol=0)
    # timing runs a batch above the profile in slices; their data-dependent outputs are not joined
    reply, _ = run_agent(folder, "benchmark", bench_request(None, art, sizes=[1, 2, 5]), env=fake_trt(version))
    assert set(reply["result"]["latency_s"]) == {"b1", "b2", "b5"} and reply["result"]["slices"] == {"b5": 3}


def test_data_dependent_outputs_of_several_calls_are_refused_not_joined(folder):
    art = onnx_engine(folder, nonzero_model(), "nonzero", "10.3.0", *SHAPES_MAX2)
    # 7 samples: NonZero's rows of separate calls have no batch axis to join them on, and one call of 7 is
    # above the engine's profile (max 2), whatever the batch size asked for
    for bs in (2, 7):
        reply, _ = run_agent(folder, "infer", infer_request(art, "nz7.npz", bs), expect=1, env=fake_trt("10.3.0"))
        assert reply["kind"] == "bad_input" and "['idx'] have data-dependent shapes" in reply["error"]
        assert "the 7 samples must run in one call, but the model takes batches of 1 to 2 (x)" in reply["error"]
        assert "eval.batch_size >= 7" in reply["error"] and "model.input.dynamic_batch" in reply["error"]
        assert not (folder / "nz7.npz").exists()


def test_data_dependent_outputs_run_all_samples_in_one_call_the_profile_takes(folder):
    """eval.batch_size 2 but a profile up to 8: the 7 samples run as one call, NonZero's rows as they come."""
    art = onnx_engine(
        folder,
        nonzero_model(),
        "nonzero8",
        "10.3.0",
        "--minShapes=x:1x2x8x8",
        "--optShapes=x:2x2x8x8",
        "--maxShapes=x:8x2x8x8",
    )
    x = np.load(folder / "x.npy")
    want = reference(folder, "nonzero8", x)
    reply, _ = run_agent(folder, "infer", infer_request(art, "nz8.npz", 2), env=fake_trt("10.3.0"))
    assert reply["result"] == {"outputs": ["y", "idx"], "samples": len(x)}
    with np.load(folder / "nz8.npz") as got:
        np.testing.assert_array_equal(got["idx"], want["idx"].astype(np.float32))
        np.testing.assert_allclose(got["y"], want["y"], atol=1e-6, rtol=0)


def test_remote_runs_pass_the_plugin_libraries_of_the_build_record(folder, tmp_path, monkeypatch):
    """The host side: benchmark and evaluate send the build record's ``trt_plugins`` (the libraries
    trtexec loaded for the build) with every run, so the engine deserialises on the device."""
    from tasks.agent import remote
    from tasks.agent.client import AgentError, device
    from tasks.config.schema import Target, TensorRT

    lib = fake_plugin_library(tmp_path / "plugins", [["FastGelu", "1"]])
    art = onnx_engine(folder, custom_op_model(), "custom", "10.3.0", *SHAPES_MAX2, f"--staticPlugins={lib}")
    x = np.load(folder / "x.npy")
    for key, value in fake_trt("10.3.0").items():
        monkeypatch.setenv(key, value)
    bench = SimpleNamespace(batch_sizes=[1], warmup_s=0.0, min_duration_s=0.0, min_iterations=3)
    for plugins in ([str(lib)], None):
        build_dir = tmp_path / f"build-{bool(plugins)}"
        build_dir.mkdir()
        (build_dir / "model.engine").write_bytes((folder / art).read_bytes())
        engine_record(build_dir, **({"trt_plugins": plugins} if plugins else {}))
        with device("jetson", Target(runtime="tensorrt", tensorrt=TensorRT())) as dev:
            if plugins:
                y = remote.outputs(dev, build_dir, x, batch_size=2)
                np.testing.assert_allclose(y["y"], reference(folder, "custom", x)["y"], atol=1e-5, rtol=0)
                lat, _ = remote.latencies(dev, build_dir, x, bench, trtexec=False)
                assert set(lat) == {1}
            else:  # an older record without the field: the device says which plugin is missing
                with pytest.raises(AgentError, match="holds a plugin no library loaded here registers"):
                    remote.outputs(dev, build_dir, x, batch_size=2)


@pytest.mark.parametrize(
    "lines, cause",
    [
        # TensorRT 8.2 (NVIDIA/TensorRT issue #2041)
        (
            [
                "1: [stdArchiveReader.cpp::StdArchiveReader::40] Error Code 1: Serialization (Serialization assertion "
                "stdVersionRead == serializationVersion failed.Version tag does not match. Note: Current Version: 213, "
                "Serialized Engine Version: 205)",
                "4: [runtime.cpp::deserializeCudaEngine::50] Error Code 4: Internal Error (Engine deserialization failed.)",
            ],
            "it was built by another TensorRT version",
        ),
        # TensorRT 7 (LizhenWangT/StyleAvatar issue #10)
        (
            [
                "INVALID_CONFIG: The engine plan file is generated on an incompatible device, expecting compute 8.9 got "
                "compute 8.6, please rebuild"
            ],
            "it was built for another GPU",
        ),
        # TensorRT 7.2 (onnx/onnx-tensorrt issue #597)
        (
            ["INVALID_ARGUMENT: getPluginCreator could not find plugin InstanceNormalization_TRT version 1"],
            "registers (InstanceNormalization_TRT version 1)",
        ),
        ([], "one of: the engine holds a plugin no library loaded here registers; it was built by another TensorRT"),
    ],
)
def test_a_failed_deserialisation_is_explained_by_the_lines_tensorrt_logged(lines, cause):
    from tasks.agent.agent import TRT_LOAD_CAUSES, trt_load_failure

    msg = trt_load_failure("8.2.1", "model.engine", lines, ["/opt/libp.so"])
    assert msg.startswith("TensorRT 8.2.1 cannot deserialize model.engine: ") and cause in msg
    assert "loaded besides TensorRT's own: /opt/libp.so" in msg and (lines[-1] if lines else "nothing") in msg
    # what to do: the fix of the cause the lines point to, or of every cause when they point to none
    fixes = [fix for _, why, fix in TRT_LOAD_CAUSES if why in msg]
    assert msg.split("To fix: ")[1] == "; or ".join(fixes) and len(fixes) == (3 if not lines else 1)


def test_probe_records_a_jetson_s_gpu_and_compute_capability_from_the_device_tree(monkeypatch):
    """No usable nvidia-smi on a Jetson: the SoC in /proc/device-tree gives the GPU's compute capability.
    Contents as read on the boards (NUL-separated): Nano and TX1, rbonghi/jetson_stats issue #48 (JetPack
    4.3 / 3.2); AGX Orin, NVIDIA/jetson-gpio issue #125."""
    from tasks.agent import agent

    boards = {
        "NVIDIA Jetson Nano Developer Kit\x00": ("nvidia,jetson-nano\x00nvidia,tegra210\x00", "5.3"),
        "jetson_tx1\x00": ("nvidia,jetson-cv\x00nvidia,tegra210\x00", "5.3"),
        "Jetson AGX Orin Developer Kit\x00": (
            "nvidia,p3737-0000+p3701-0005\x00nvidia,p3701-0005\x00nvidia,tegra234\x00nvidia,tegra23x\x00",
            "8.7",
        ),
    }
    monkeypatch.setattr(agent, "_sh", lambda *argv: "")  # no nvidia-smi
    for model, (compatible, cc) in boards.items():
        files = {"/proc/device-tree/model": model, "/proc/device-tree/compatible": compatible}
        monkeypatch.setattr(agent, "_read", lambda path, files=files: files.get(path, ""))
        assert agent._gpus() == [{"name": model.strip("\x00"), "compute_capability": cc}]
