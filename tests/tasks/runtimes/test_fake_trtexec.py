"""The FAKE trtexec (tests/fakes/trtexec) run as a subprocess the way the device agent runs
trtexec: the recipe's argv in a build folder holding the uploads. Its output must read like the
real logs it replays (trtexec_log.parse: version, status) and satisfy check_build."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.config.schema import TensorRT
from tasks.quant.trt_cache import write_cache
from tasks.runtimes.base import BuildError
from tasks.runtimes.tensorrt_check import check_build
from tasks.runtimes.tensorrt_recipe import Sources, plan
from tasks.runtimes.trtexec_log import decode_version, parse
from tests.fakes import FAKES, TRTEXEC_FIXTURES, install_trtexec
from tests.tasks.runtimes.test_tensorrt_recipe import sources  # noqa: F401 (a fixture: two small model files)

VERSIONS = ["8.6.1", "10.3.0", "11.0.0"]
PRECISION_LINE = {"8.6.1": "FP32+FP16+INT8", "10.3.0": "FP32+FP16+INT8", "11.0.0": "Strongly Typed"}
BANNER = {"8.6.1": "v8601", "10.3.0": "v100300", "11.0.0": "v110000"}  # as the real banners encode them


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)


def build(tmp_path: Path, version: str, precision: str, sources: Sources, fail: str | None = None, **kw):
    """Plan, put the uploads in a fresh build folder, run: (plan, build folder, completed process)."""
    exe = install_trtexec(tmp_path / f"trt-{version}", version, fail)
    p = plan(version, precision, dataclasses.replace(TensorRT(), trtexec=str(exe), **kw), sources, "../timing.cache")
    folder = tmp_path / f"trt-{version}" / f"build-{precision}"
    folder.mkdir()
    for name, local in p.uploads.items():
        shutil.copy(local, folder / name)
    return p, folder, run(p.argv, folder)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_build_passes_and_writes_the_engine_layers_and_timing_cache(version, tmp_path, sources):
    p, folder, done = build(tmp_path, version, "int8-entropy", sources)
    assert done.returncode == 0, done.stdout + done.stderr
    log = parse(done.stdout)
    assert (log.status, log.tensorrt_version, log.precision) == ("passed", version, PRECISION_LINE[version])
    assert done.stdout.startswith(f"&&&& RUNNING TensorRT.trtexec [TensorRT {BANNER[version]}] # {p.argv[0]} --onnx=")
    engine = (folder / "model.engine").read_bytes()
    assert engine.startswith(
        b"EDGEFORGE FAKE TRT ENGINE\n" + hashlib.sha256(sources.precision_onnx.read_bytes()).hexdigest().encode()
    )
    assert json.loads((folder / "layers.json").read_text())["Layers"] == []
    meta = check_build(done.stdout, done.returncode, p, "fake-device")
    assert meta["tensorrt_version"] == version and meta["recipe"] == p.recipe and meta["trt_build_seconds"] > 0
    cache = folder.parent / "timing.cache"
    first = cache.read_bytes()
    assert first.startswith(b"EDGEFORGE FAKE TIMING CACHE\n")
    assert run(p.argv, folder).returncode == 0
    assert cache.read_bytes().startswith(first) and len(cache.read_bytes()) > len(first)  # reused, appended


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-minmax", "int8-mixed"])
def test_every_recipe_command_is_accepted(version, precision, tmp_path, sources):
    _, _, done = build(tmp_path, version, precision, sources, workspace_mib=256, builder_optimization_level=3)
    assert done.returncode == 0, done.stdout
    assert "Skip inference: Enabled" in done.stdout and "BuilderOptimizationLevel: 3" in done.stdout
    assert "Memory Pools: workspace: 256 MiB" in done.stdout


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_implicit_int8_on_dla_is_accepted_before_tensorrt_11(version, tmp_path, sources):
    cache = write_cache({"input": (-1.0, 1.0)}, tmp_path / "calibration.cache", "entropy", trt_version=version)
    p, folder, done = build(
        tmp_path, version, "int8-entropy", dataclasses.replace(sources, calib_cache=cache), int8="calib", dla_core=0
    )
    assert done.returncode == 0, done.stdout
    assert (folder / "calibration.cache").read_bytes() == cache.read_bytes()
    for printed in ("Calibration: calibration.cache", "DLACore: 0", "Allow GPU fallback for DLA: Enabled"):
        assert printed in done.stdout
    assert check_build(done.stdout, 0, p, "xavier")["trt_precision"] == "FP32+FP16+INT8"


def test_tensorrt_11_rejects_precision_flags_like_the_real_one(tmp_path):
    exe = install_trtexec(tmp_path, "11.0.0")
    done = run([str(exe), "--onnx=model.onnx", "--fp16", "--int8", "--best", "--calib=c.cache"], tmp_path)
    assert done.returncode == 1
    fixture = (TRTEXEC_FIXTURES / "trt11.0_b200_stronglytyped_build_and_fp16_int8_unknown_option_fail.log").read_text()
    real = re.findall(r"\[E\] (Unknown option: --(?:fp16|int8|best))$", fixture, re.M)
    fake = re.findall(r"\[E\] (Unknown option: .*)$", done.stdout, re.M)
    assert real == fake[:3] and fake[3] == "Unknown option: --calib c.cache"
    log = parse(done.stdout)
    assert (log.status, log.tensorrt_version) == ("failed", "11.0.0")
    assert not (tmp_path / "model.engine").exists()


def test_options_follow_the_version(tmp_path):
    exe = install_trtexec(tmp_path, "8.5.2")
    done = run([str(exe), "--onnx=m.onnx", "--skipInference", "--builderOptimizationLevel=3"], tmp_path)
    assert done.returncode == 1
    assert re.findall(r"\[E\] (.*)", done.stdout) == [
        "Unknown option: --skipInference",
        "Unknown option: --builderOptimizationLevel 3",
    ]


def test_a_missing_onnx_fails_like_the_parser(tmp_path, sources):
    exe = install_trtexec(tmp_path, "10.3.0")
    plan_ = plan("10.3.0", "fp16", dataclasses.replace(TensorRT(), trtexec=str(exe)), sources, "timing.cache")
    done = run(plan_.argv, tmp_path)  # nothing uploaded
    assert done.returncode == 1
    log = parse(done.stdout)
    assert log.status == "failed" and "Failed to parse ONNX model from file: model.onnx!" in " ".join(log.errors)
    with pytest.raises(BuildError, match="Failed to parse ONNX model from file: model.onnx"):
        check_build(done.stdout, done.returncode, plan_, "orin")


@pytest.mark.parametrize(
    "fixture", ["trt10.16_rtx6000ada_parse_plugin_not_found_fail.log", "trt8.5_could_not_find_implementation_fail.log"]
)
def test_fail_mode_replays_a_real_failure(fixture, tmp_path, sources):
    p, folder, done = build(tmp_path, "10.3.0", "fp16", sources, fail=fixture)
    assert done.returncode == 1 and not (folder / "model.engine").exists()
    log = parse(done.stdout)
    assert (log.status, log.tensorrt_version) == ("failed", "10.3.0")
    assert log.errors and log.errors[0] in (TRTEXEC_FIXTURES / fixture).read_text()
    with pytest.raises(BuildError, match="fake-device: TensorRT engine build failed"):
        check_build(done.stdout, done.returncode, p, "fake-device")


@pytest.mark.parametrize("version", VERSIONS)
def test_help_shows_the_banner_the_probe_decodes(version, tmp_path):
    done = run([str(install_trtexec(tmp_path, version)), "--help"], tmp_path)
    assert done.returncode == 0
    code = re.match(r"&&&& RUNNING TensorRT\.trtexec \[TensorRT v(\d+)\]", done.stdout)
    assert code and decode_version(int(code[1])) == version


def test_the_fake_says_so_and_needs_only_the_standard_library():
    text = (FAKES / "trtexec").read_text()
    assert text.startswith("#!/usr/bin/env python3\n")
    assert "A FAKE OF NVIDIA trtexec FOR TESTS ON MACHINES WITHOUT A GPU" in text[:400]
    imported = {
        a.name.split(".")[0] for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Import) for a in node.names
    }
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ImportFrom)}
    assert imported <= sys.stdlib_module_names


# ---- --loadEngine: the benchmark runs of the agent (agent.trtexec_runs)

LOAD_LOGS = {
    "8.6.1": "trt8.4_xavier_agx_loadengine_batch16_summary_ok.log",
    "10.3.0": "trt10.16_rtx6000ada_loadengine_fp16_ok.log",
    "11.0.0": "trt11.0_b200_loadengine_cudagraph_summary_tail_ok.log",
}


def fake_engine(tmp_path: Path, version: str, sources: Sources, *shapes: str) -> tuple[Path, Path]:
    exe = install_trtexec(tmp_path / f"trt-{version}", version)
    done = run([str(exe), f"--onnx={sources.fp32_onnx}", "--saveEngine=model.engine", *shapes], exe.parent)
    assert done.returncode == 0, done.stdout
    return exe, exe.parent / "model.engine"


def test_the_engine_carries_the_onnx_it_was_built_from(tmp_path, sources):
    _, eng = fake_engine(tmp_path, "10.3.0", sources, "--maxShapes=x:4x3x8x8")
    header, digest, info, onnx = eng.read_bytes().split(b"\n", 3)
    assert header == b"EDGEFORGE FAKE TRT ENGINE" and onnx == sources.fp32_onnx.read_bytes()
    assert digest.decode() == hashlib.sha256(onnx).hexdigest()
    assert json.loads(info) == {
        "tensorrt": "10.3.0",
        "precision": "FP32",
        "shapes": {"min": None, "opt": None, "max": "x:4x3x8x8"},
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_load_engine_replays_a_real_passing_run_of_the_same_major_version(version, tmp_path, sources):
    exe, eng = fake_engine(tmp_path, version, sources)
    flags = ["--includeDataTransfers", "--noCudaGraph"] if version == "11.0.0" else ["--useSpinWait"]
    argv = [
        str(exe),
        f"--loadEngine={eng}",
        "--shapes=x:4x3x8x8",
        "--warmUp=500",
        "--duration=2",
        "--iterations=20",
        *flags,
    ]
    done = run(argv, tmp_path)
    assert done.returncode == 0, done.stdout
    log = parse(done.stdout)
    assert (log.status, log.tensorrt_version, log.command) == ("passed", version, " ".join(argv))
    # the recorded run's summary, unchanged: these numbers come from the machine in LOAD_LOGS, not from here
    assert log.summary == parse((TRTEXEC_FIXTURES / LOAD_LOGS[version]).read_text()).summary
    if version == "10.3.0":  # the only one of the three logs that echoes its inference options
        for echoed in (
            "Input inference shape : x=4x3x8x8",
            "Iterations: 20",
            "Duration: 2s (+ 500ms warm up)",
            "Data transfers: Enabled",
            "Spin-wait: Enabled",
            "CUDA Graph: Disabled",
            "TensorRT version: 10.3.0",
        ):
            assert f"[I] {echoed}\n" in done.stdout
    assert ("Capturing CUDA graph" in done.stdout) is False


def test_load_engine_refuses_files_it_did_not_write_or_of_another_version(tmp_path, sources):
    exe10, eng10 = fake_engine(tmp_path, "10.3.0", sources)
    exe11, _ = fake_engine(tmp_path, "11.0.0", sources)
    (tmp_path / "real.engine").write_bytes(b"\x00ftrt serialized engine")
    for exe, eng, why in (
        (exe10, tmp_path / "real.engine", "this fake did not write it"),
        (exe10, tmp_path / "missing.engine", "this fake did not write it"),
        (exe11, eng10, "it was written for TensorRT 10.3.0"),
    ):
        done = run([str(exe), f"--loadEngine={eng}"], tmp_path)
        log = parse(done.stdout)
        assert done.returncode == 1 and log.status == "failed"
        assert log.errors[0] == f"EDGEFORGE FAKE trtexec: cannot load {eng}: {why}"
        assert "Engine set up failed" in log.errors


@pytest.mark.parametrize(
    "version, accepted, unknown",
    [
        (
            "10.3.0",
            ["--useSpinWait", "--useCudaGraph", "--noDataTransfers"],
            ["--includeDataTransfers", "--noCudaGraph", "--noSpinWait"],
        ),
        ("11.0.0", ["--includeDataTransfers", "--noCudaGraph", "--noSpinWait", "--useSpinWait"], ["--fp16"]),
    ],
)
def test_inference_options_follow_the_version(version, accepted, unknown, tmp_path, sources):
    exe, eng = fake_engine(tmp_path, version, sources)
    assert run([str(exe), f"--loadEngine={eng}", *accepted], tmp_path).returncode == 0
    done = run([str(exe), f"--loadEngine={eng}", *unknown], tmp_path)
    assert done.returncode == 1
    assert re.findall(r"\[E\] (.*)", done.stdout) == [f"Unknown option: {u}" for u in unknown]


def test_fail_load_replays_a_real_inference_failure(tmp_path, sources):
    exe, eng = fake_engine(tmp_path, "10.3.0", sources)
    (exe.parent / "fake_trtexec.json").write_text(
        json.dumps(
            {
                "tensorrt": "10.3.0",
                "fail": None,
                "fail_load": "trt10.3_jetson_plugin_inference_fail.log",
                "fixtures": str(TRTEXEC_FIXTURES),
            }
        )
    )
    done = run([str(exe), f"--loadEngine={eng}", "--shapes=x:1x3x8x8"], tmp_path)
    log = parse(done.stdout)
    assert done.returncode == 1 and (log.status, log.tensorrt_version) == ("failed", "10.3.0")
    assert log.errors == [
        "Error[2]: [pluginV2DynamicExtRunner.cpp::execute::126] Error Code 2: Internal Error "
        "(Assertion pluginUtils::isSuccess(status) failed. )",
        "Error occurred during inference",
    ]
