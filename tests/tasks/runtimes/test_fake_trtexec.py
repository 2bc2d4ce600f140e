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
from tasks.runtimes.tensorrt_recipe import Profile, Sources, TrtPlan, parse_version, plan, timing_cache_path
from tasks.runtimes.trtexec_log import decode_version, parse
from tests.fakes import FAKES, TRTEXEC_FIXTURES, install_trtexec
from tests.tasks.runtimes.test_tensorrt_recipe import sources  # noqa: F401 (a fixture: two small model files)

VERSIONS = ["8.6.1", "10.3.0", "11.0.0"]
#: one version per option-parser behaviour the recipe depends on (tests/fakes/trtexec's header): 8.2 (--workspace,
#: --buildOnly), 8.4 (--memPoolSize read by stod), 8.6 (--skipInference, --staticPlugins), 10.0 (unit = the last
#: character), 10.3 and 10.16 (a plain number gets "M"; "MiB" is bytes), 11.0 (strongly typed), 11.4.1 (DLA again)
PARSERS = ["8.2.3", "8.4.1", "8.6.1", "10.0.1", "10.3.0", "10.16.1", "11.0.0", "11.4.1"]
PRECISION_LINE = {"8.6.1": "FP32+FP16+INT8", "10.3.0": "FP32+FP16+INT8", "11.0.0": "Strongly Typed"}
BANNER = {"8.6.1": "v8601", "10.3.0": "v100300", "11.0.0": "v110000"}  # as the real banners encode them


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)


def build(tmp_path: Path, version: str, precision: str, sources: Sources, fail: str | None = None, profile=None, **kw):
    """Plan, put the uploads in a fresh build folder, run: (plan, build folder, completed process)."""
    exe = install_trtexec(tmp_path / f"trt-{version}", version, fail)
    trt = dataclasses.replace(TensorRT(), trtexec=str(exe), **kw)
    p = plan(version, precision, trt, sources, "../timing.cache", profile)
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
        b"EDGEFORGE FAKE TRT ENGINE\n" + hashlib.sha256(p.uploads["model.onnx"].read_bytes()).hexdigest().encode()
    )
    assert json.loads((folder / "layers.json").read_text())["Layers"] == []
    meta = check_build(done.stdout, done.returncode, p, "fake-device")
    assert meta["tensorrt_version"] == version and meta["recipe"] == p.recipe and meta["trt_build_seconds"] > 0
    cache = folder.parent / "timing.cache"
    first = cache.read_bytes()
    assert first.startswith(b"EDGEFORGE FAKE TIMING CACHE\n")
    assert run(p.argv, folder).returncode == 0
    assert cache.read_bytes().startswith(first) and len(cache.read_bytes()) > len(first)  # reused, appended


def engine_info(folder: Path) -> dict:
    """The JSON line of an engine the FAKE wrote: version, printed precision, shapes, builder ``config``."""
    return json.loads((folder / "model.engine").read_bytes().split(b"\n", 3)[2])


@pytest.mark.parametrize("version", PARSERS)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-minmax", "int8-mixed"])
def test_every_recipe_command_is_accepted_by_its_version_parser(version, precision, tmp_path, sources):
    """The recipe's full argv against each version's option parser, as the FAKE replays it: every option
    known, none deprecated, the workspace understood as the MiB asked for, TF32 off where FP32 must stay FP32."""
    level = {"builder_optimization_level": 3} if parse_version(version) >= (8, 6, 0) else {}
    p, folder, done = build(tmp_path, version, precision, sources, workspace_mib=256, **level)
    assert done.returncode == 0, done.stdout
    assert not re.findall(r"\[[EW]\] --", done.stdout)  # no unknown option, no deprecated alias
    assert "Skip inference: Enabled" in done.stdout and f"TensorRT version: {version}" in done.stdout
    echo = "Workspace: 256 MiB" if parse_version(version) < (8, 4, 0) else "workspace: 256 MiB,"
    assert echo in done.stdout
    assert ("BuilderOptimizationLevel: 3" in done.stdout) is bool(level)
    config = engine_info(folder)["config"]
    assert config["workspace_mib"] == 256 and config["tf32"] is (precision not in ("fp32", "int8-mixed"))
    assert check_build(done.stdout, 0, p, "dev")["trt_tf32"] is config["tf32"]


#: --memPoolSize=workspace:<value> -> the MiB each parser understands, as its Build Options echo it
UNITS = {
    "8.4.1": {"256": "256", "256MiB": "256", "256M": "256"},
    "8.6.1": {"256": "256", "256MiB": "256", "256M": "256"},
    "10.0.1": {"256": "256", "256MiB": "256", "256M": "2.68435e+08"},
    "10.3.0": {"256": "256", "256MiB": "0.000244141", "256M": "256"},
    "10.16.1": {"256": "256", "256MiB": "0.000244141", "256M": "256"},
    "11.0.0": {"256": "256", "256MiB": "0.000244141", "256M": "256"},
}


@pytest.mark.parametrize("version", sorted(UNITS))
def test_each_parser_reads_the_workspace_unit_its_own_way(version, tmp_path, sources):
    """The old recipe's ``workspace:<N>MiB`` was N bytes from TensorRT 10.1 on; only a plain number is MiB
    everywhere (sampleOptions.cpp: tests/fakes/trtexec's header)."""
    exe = install_trtexec(tmp_path, version)
    for value, mib in UNITS[version].items():
        done = run([str(exe), f"--onnx={sources.fp32_onnx}", f"--memPoolSize=workspace:{value}"], tmp_path)
        assert done.returncode == 0 and f"Memory Pools: workspace: {mib} MiB," in done.stdout, (value, done.stdout)
    done = run([str(exe), f"--onnx={sources.fp32_onnx}", "--memPoolSize=workspace:256X"], tmp_path)
    if parse_version(version) >= (10, 0, 0):
        assert done.returncode == 1 and "invalid unit specifier 'X'" in done.stdout
    else:  # std::stod reads the leading number and ignores the rest
        assert done.returncode == 0 and "workspace: 256 MiB" in done.stdout
    bad = run([str(exe), f"--onnx={sources.fp32_onnx}", "--memPoolSize=workspac:256"], tmp_path)
    assert bad.returncode == 1 and "[E] Unknown memory pool: workspac" in bad.stdout


@pytest.mark.parametrize(
    "version, accepted, warned",
    [
        ("8.5.2", ["--buildOnly"], False),
        ("8.6.1", ["--buildOnly", "--skipInference"], True),
        ("9.3.0", ["--buildOnly"], True),
    ],
)
def test_build_only_is_a_deprecated_alias_from_8_6_until_10(version, accepted, warned, tmp_path, sources):
    exe = install_trtexec(tmp_path, version)
    for flag in accepted:
        done = run([str(exe), f"--onnx={sources.fp32_onnx}", flag], tmp_path)
        assert done.returncode == 0 and "Skip inference: Enabled" in done.stdout
        deprecated = "[W] --buildOnly flag has been deprecated by --skipInference flag." in done.stdout
        assert deprecated is (warned and flag == "--buildOnly")
    gone = run(
        [str(install_trtexec(tmp_path / "10", "10.0.1")), f"--onnx={sources.fp32_onnx}", "--buildOnly"], tmp_path
    )
    assert gone.returncode == 1 and "[E] Unknown option: --buildOnly" in gone.stdout


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


def test_tf32_is_off_in_the_engine_though_the_10_x_log_still_suggests_notf32(tmp_path, sources):
    """TensorRT 10.7+ prints its TF32 hint whenever no precision flag is given, --noTF32 or not (sampleOptions.cpp
    v10.16:1319-1327): the build record's trt_tf32 comes from the recipe, not from the log."""
    p, folder, done = build(tmp_path, "10.16.1", "fp32", sources)
    assert "--noTF32" in p.argv and "TF32 is enabled by default" in done.stdout
    assert engine_info(folder)["config"]["tf32"] is False
    assert check_build(done.stdout, 0, p, "orin")["trt_tf32"] is False
    _, _, fp16 = build(tmp_path / "fp16", "10.16.1", "fp16", sources)
    assert "TF32 is enabled by default" not in fp16.stdout  # printed only without a precision flag


# ---- DLA


def test_fp32_on_dla_is_an_fp16_engine_that_prints_precision_fp32(tmp_path, sources):
    """Why the recipe refuses fp32 on DLA: trtexec 8.x-10.x gives the builder FP16 for --useDLACore without
    --int8 (sampleEngines.cpp v10.3.0:1143) while printing the options' Precision: FP32."""
    exe = install_trtexec(tmp_path, "10.3.0")
    done = run([str(exe), f"--onnx={sources.fp32_onnx}", "--saveEngine=model.engine", "--useDLACore=0"], tmp_path)
    assert done.returncode == 0 and parse(done.stdout).precision == "FP32"
    assert engine_info(tmp_path)["config"]["fp16"] is True
    with pytest.raises(BuildError, match="fp32 cannot run on DLA"):
        plan("10.3.0", "fp32", dataclasses.replace(TensorRT(), dla_core=0), sources, "t")


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "10.7.0", "11.4.1"])
def test_dla_builds_take_a_static_profile(version, tmp_path, sources):
    p, folder, done = build(
        tmp_path, version, "int8-minmax", sources, profile=Profile("x", (3, 8, 8), 4, 64), dla_core=1
    )
    assert done.returncode == 0, done.stdout
    assert "DLACore: 1" in done.stdout and "Allow GPU fallback for DLA: Enabled" in done.stdout
    info = engine_info(folder)
    assert info["shapes"] == {"min": "x:1x3x8x8", "opt": "x:1x3x8x8", "max": "x:1x3x8x8"}
    assert info["config"]["dla_core"] == 1 and info["config"]["dla_static_shapes"] is True
    meta = check_build(done.stdout, 0, p, "orin")
    assert meta["trt_dla"]["static_batch"] == 1 and meta["trt_profile"]["max"] == 1


@pytest.mark.parametrize("version", ["10.8.0", "10.16.1", "11.0.0", "11.4.0"])
def test_tensorrt_without_dla_fails_the_build_and_the_recipe_refuses_first(version, tmp_path, sources):
    exe = install_trtexec(tmp_path, version)
    done = run([str(exe), f"--onnx={sources.fp32_onnx}", "--useDLACore=0", "--allowGPUFallback"], tmp_path)
    log = parse(done.stdout)
    assert done.returncode == 1 and log.errors[:3] == [
        "Cannot create DLA engine, 0 not available",
        "Network And Config setup failed",
        "Building engine failed",
    ]
    fake = TrtPlan(argv=["trtexec"], uploads={})
    with pytest.raises(BuildError, match="hint: this device has no such DLA core"):
        check_build(done.stdout, 1, fake, "orin")
    with pytest.raises(BuildError, match=f"TensorRT {version} has no DLA"):
        plan(version, "fp16", dataclasses.replace(TensorRT(), dla_core=0), sources, "t")


def test_a_dla_core_the_device_lacks_fails(tmp_path, sources):
    exe = install_trtexec(tmp_path, "10.3.0")  # 2 DLA cores, as on AGX Orin / Xavier
    done = run([str(exe), f"--onnx={sources.fp32_onnx}", "--useDLACore=2", "--int8"], tmp_path)
    assert done.returncode == 1 and "[E] Cannot create DLA engine, 2 not available" in done.stdout


# ---- plugins, compatibility, timing cache


@pytest.mark.parametrize("version", ["8.4.1", "10.3.0", "11.0.0"])
def test_plugin_libraries_are_needed_to_load_the_engine(version, tmp_path, sources):
    lib = tmp_path / "libcustom_plugins.so"
    lib.write_bytes(b"\x7fELF FAKE PLUGIN LIBRARY")
    p, folder, done = build(tmp_path, version, "fp16", sources, plugins=[str(lib)])
    assert done.returncode == 0, done.stdout
    assert f"[I] Loading supplied plugin library: {lib}" in done.stdout and "deprecated" not in done.stdout
    assert engine_info(folder)["config"]["plugins"] == [str(lib)]
    assert check_build(done.stdout, 0, p, "orin")["trt_plugins"] == [str(lib)]
    exe, engine = p.argv[0], folder / "model.engine"
    bare = run([exe, f"--loadEngine={engine}"], folder)  # what a benchmark without the build's plugins gets
    assert bare.returncode == 1 and "IPluginCreator not found in Plugin Registry" in bare.stdout
    loaded = run([exe, f"--loadEngine={engine}", *p.load_args], folder)
    assert loaded.returncode == 0 and parse(loaded.stdout).status == "passed"


def test_a_missing_plugin_library_fails_the_build_with_a_hint(tmp_path, sources):
    p, _, done = build(tmp_path, "10.3.0", "fp16", sources, plugins=["/nonexistent/libp.so"])
    assert done.returncode == 1
    with pytest.raises(BuildError, match="(?s)Unable to open library: /nonexistent/libp.so.*tensorrt.plugins"):
        check_build(done.stdout, 1, p, "orin")
    _, _, old = build(tmp_path / "84", "8.4.1", "fp16", sources, plugins=["/nonexistent/libp.so"])
    assert "[E] Could not load plugin library: /nonexistent/libp.so, due to:" in old.stdout  # 8.4 goes on


def test_version_and_hardware_compatible_engines(tmp_path, sources):
    p, folder, done = build(
        tmp_path, "10.3.0", "fp16", sources, version_compatible=True, hardware_compatibility="ampere+"
    )
    assert done.returncode == 0 and "Version Compatible: Enabled" in done.stdout
    config = engine_info(folder)["config"]
    assert config["version_compatible"] is True and config["hardware_compatibility"] == "ampere+"
    assert run([p.argv[0], f"--loadEngine={folder / 'model.engine'}", *p.load_args], folder).returncode == 0
    exe = install_trtexec(tmp_path / "103", "10.3.0")
    bad = run([str(exe), f"--onnx={sources.fp32_onnx}", "--hardwareCompatibilityLevel=sameComputeCapability"], tmp_path)
    assert "[E] Unknown hardwareCompatibilityLevel: sameComputeCapability. Valid options: none, ampere+." in bad.stdout


def test_the_timing_cache_of_another_tensorrt_is_another_file(tmp_path, sources):
    """A JetPack upgrade (8.6 -> 10.3 on the same Orin) starts a fresh cache beside the old one."""
    orin, written = {"name": "Orin", "compute_capability": "8.7"}, []
    for version in ("8.6.1", "10.3.0"):
        exe = install_trtexec(tmp_path / "bin" / version, version)
        cache = timing_cache_path("timing.cache", version, orin)
        p = plan(version, "fp16", dataclasses.replace(TensorRT(), trtexec=str(exe)), sources, f"../{cache}")
        (tmp_path / version).mkdir()
        shutil.copy(sources.fp32_onnx, tmp_path / version / "model.onnx")
        done = run(p.argv, tmp_path / version)
        assert check_build(done.stdout, done.returncode, p, "orin")["trt_timing_cache"] == f"../{cache}"
        written.append(cache)
    assert written == ["timing.trt8.6.1.Orin.sm87.cache", "timing.trt10.3.0.Orin.sm87.cache"]
    assert all((tmp_path / c).read_bytes().startswith(b"EDGEFORGE FAKE TIMING CACHE\n") for c in written)


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
        "config": {
            "fp16": False,
            "int8": False,
            "tf32": True,
            "dla_core": None,
            "gpu_fallback": False,
            "dla_static_shapes": None,
            "workspace_mib": None,
            "version_compatible": False,
            "hardware_compatibility": None,
            "plugins": [],
        },
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


def _conv_relu(path: Path) -> Path:
    """input -> Conv (named) -> c -> Relu (unnamed) -> logits, with the Conv's weights as initializers."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w"], ["c"], name="/conv/Conv"),
            helper.make_node("Relu", ["c"], ["logits"]),
        ],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 6, 6])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_implicit_int8_warns_for_each_tensor_the_cache_has_no_scale_for(version, tmp_path, sources):
    """trtexec's "[W] [TRT] Missing scale and zero-point ..." for the network tensors (not the Conv's weights)
    that the cache lacks; the log parser and trt_lint name them and the layers that leave INT8."""
    from tasks.runtimes.trt_lint import int8_fallbacks

    model = _conv_relu(tmp_path / "fp32.onnx")
    cache = write_cache({"input": (-1.0, 1.0)}, tmp_path / "calibration.cache", "entropy", trt_version=version)
    src = dataclasses.replace(sources, fp32_onnx=model, calib_cache=cache)
    p, folder, done = build(tmp_path, version, "int8-entropy", src, int8="calib")
    assert done.returncode == 0, done.stdout + done.stderr
    warned = [s for s in done.stdout.splitlines() if "Missing scale and zero-point" in s]
    assert warned == [
        f"[01/01/2026-00:00:00] [W] [TRT] Missing scale and zero-point for tensor {t}, expect fall back to non-int8 "
        "implementation for any layer consuming or producing given tensor"
        for t in ("c", "logits")
    ]
    assert parse(done.stdout).int8_fallbacks == ["c", "logits"]
    assert int8_fallbacks(done.stdout, model) == {
        "int8_fallback_tensors": ["c", "logits"],
        "int8_fallback_layers": ["/conv/Conv", "node_of_logits"],
    }


def test_a_complete_or_foreign_cache_gives_no_missing_scale_warning(tmp_path, sources):
    model = _conv_relu(tmp_path / "fp32.onnx")
    ranges = {"input": (-1.0, 1.0), "c": (0.0, 9.0), "logits": (0.0, 9.0)}
    full = write_cache(ranges, tmp_path / "full" / "calibration.cache", "entropy", trt_version="10.3.0")
    # a cache of another TensorRT is ignored (the recipe refuses it first; see test_tensorrt_recipe)
    old = write_cache({"input": (-1.0, 1.0)}, tmp_path / "old" / "calibration.cache", "entropy", trt_version="8.6.1")
    exe = install_trtexec(tmp_path / "trt", "10.3.0")
    shutil.copy(model, tmp_path / "model.onnx")
    for cache in (full, old):
        done = run([str(exe), "--onnx=model.onnx", "--int8", "--fp16", f"--calib={cache}"], tmp_path)
        assert done.returncode == 0 and "Missing scale" not in done.stdout, done.stdout
    done = run([str(exe), "--onnx=model.onnx", "--fp16"], tmp_path)  # no INT8: nothing to warn about
    assert done.returncode == 0 and "Missing scale" not in done.stdout


@pytest.fixture
def qdq_sources(tmp_path) -> Sources:
    """Real models: a Conv -> Relu net, its Q/DQ model (FP32 glue) and the FP16-glue form of that."""
    import onnx

    from tasks.quant import quantize_qdq
    from tasks.quant.fp16_glue import to_fp16_glue
    from tests.tasks.quant.conftest import conv_model_with_constant_weights

    fp32, qdq, glue = tmp_path / "fp32.onnx", tmp_path / "qdq.onnx", tmp_path / "glue.onnx"
    onnx.save(conv_model_with_constant_weights(), str(fp32))
    quantize_qdq(fp32, {"x": (-3.0, 3.0), "c": (-5.0, 5.0), "y": (0.0, 5.0)}, qdq)
    to_fp16_glue(qdq, glue)
    return Sources(fp32, qdq, None, glue)


def strongly_typed_layers(folder: Path) -> dict | None:
    return json.loads((folder / "layers.json").read_text()).get("EdgeForgeFakeStronglyTyped")


def test_strongly_typed_layers_take_the_onnx_types(tmp_path, qdq_sources):
    # 11.x int8-minmax builds the FP16-glue model: its layers run FP16 (FP32 only at the output Cast)
    p, folder, done = build(tmp_path, "11.0.0", "int8-minmax", qdq_sources)
    assert done.returncode == 0, done.stdout
    assert p.uploads["model.onnx"] == qdq_sources.fp16_glue_onnx
    layers = strongly_typed_layers(folder)
    assert layers["conv"] == layers["relu"] == "FLOAT16" and set(layers.values()) == {"FLOAT16", "FLOAT"}
    # the FP32-glue Q/DQ model built strongly typed (what int8-mixed keeps on purpose) shows FP32 glue:
    # the numerics an FP32-glue int8-minmax build would have had on 11.x
    p, folder, done = build(tmp_path / "mixed", "11.0.0", "int8-mixed", qdq_sources)
    assert p.uploads["model.onnx"] == qdq_sources.precision_onnx
    assert strongly_typed_layers(folder) == {"conv": "FLOAT", "relu": "FLOAT"}
    # weakly typed builds choose precisions in the builder: the FAKE reports none
    _, folder, done = build(tmp_path, "10.3.0", "int8-minmax", qdq_sources)
    assert done.returncode == 0 and strongly_typed_layers(folder) is None
