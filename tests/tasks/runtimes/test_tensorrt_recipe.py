"""TensorRT build recipes: the exact trtexec command per TensorRT version, precision and INT8 mode,
the refusals, and check_build on every real trtexec log in tests/fixtures/trtexec."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest

from tasks.config.schema import TensorRT
from tasks.quant.trt_cache import write_cache
from tasks.runtimes import get_runtime
from tasks.runtimes.base import BuildError, BuildOptions
from tasks.runtimes.tensorrt_check import check_build
from tasks.runtimes.tensorrt_recipe import Profile, RecipeError, Sources, TrtPlan, parse_version, plan
from tests.tasks.runtimes.test_trtexec_log import EXPECTED, FIXTURES

TAIL_86 = [
    "--timingCacheFile=timing.cache",
    "--profilingVerbosity=detailed",
    "--exportLayerInfo=layers.json",
    "--skipInference",
]


def qdq_onnx(path, qdq: bool = True):
    """A real one-node ONNX at ``path``: x -> QuantizeLinear -> DequantizeLinear -> y (an INT8
    model's calibrated scale), or x -> Relu -> y without ``qdq``. The recipe reads only its ops."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.int8(0), "z")]
    nodes = (
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ]
        if qdq
        else [helper.make_node("Relu", ["x"], ["y"])]
    )
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y")]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:], inits)), str(path))
    return path


@pytest.fixture
def sources(tmp_path) -> Sources:
    fp32, prec, glue = tmp_path / "fp32.onnx", tmp_path / "prec.onnx", tmp_path / "glue.onnx"
    fp32.write_bytes(b"fp32")
    qdq_onnx(prec)  # INT8 builds check that their model holds Q/DQ (calibrated scales)
    qdq_onnx(glue)
    return Sources(fp32, prec, None, glue)


def settings(**kw) -> TensorRT:
    return dataclasses.replace(TensorRT(), trtexec="trtexec", **kw)


def argv(version: str, precision: str, sources: Sources, **kw) -> list[str]:
    return plan(version, precision, settings(**kw), sources, "timing.cache").argv


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8.6.1", (8, 6, 1)),
        ("10.3.0.30", (10, 3, 0)),
        ("11.0.0", (11, 0, 0)),
        ("8.5", (8, 5, 0)),
        (" 8.2.3 ", (8, 2, 3)),
    ],
)
def test_versions_parse(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("bad", ["", "abc", "8", "v8.6.1", "8.6.1-rc", None, 8601])
def test_garbage_versions_are_refused_by_name(bad, sources):
    with pytest.raises(RecipeError, match="TensorRT version") as e:
        plan(bad, "fp32", settings(), sources, "timing.cache")
    assert repr(bad) in str(e.value)


# version, precision, int8 mode -> (model uploaded: Sources field, precision flags, recipe). INT8 glue runs FP16
# on every version but int8-mixed's: --fp16 on 8.x/10.x, the FP16-glue model's types on 11 (strongly typed)
RECIPES = [
    ("8.6.1", "fp32", "qdq", "fp32", ["--noTF32"], "weakly-typed"),
    ("8.6.1", "fp16", "qdq", "fp32", ["--fp16"], "weakly-typed"),
    ("8.6.1", "int8-entropy", "qdq", "precision", ["--int8", "--fp16"], "explicit-qdq"),
    ("8.6.1", "int8-mixed", "qdq", "precision", ["--int8", "--noTF32"], "explicit-qdq"),
    ("10.3.0.30", "fp32", "qdq", "fp32", ["--noTF32"], "weakly-typed"),
    ("10.3.0.30", "fp16", "calib", "fp32", ["--fp16"], "weakly-typed"),
    ("10.3.0.30", "int8-minmax", "qdq", "precision", ["--int8", "--fp16"], "explicit-qdq"),
    ("10.3.0.30", "int8-mixed", "qdq", "precision", ["--int8", "--noTF32"], "explicit-qdq"),
    ("11.0.0", "fp32", "qdq", "fp32", ["--noTF32"], "strongly-typed"),
    ("11.0.0", "fp16", "qdq", "precision", [], "strongly-typed"),
    ("11.0.0", "int8-percentile", "qdq", "fp16_glue", [], "strongly-typed"),
    ("11.1.0", "int8-minmax", "qdq", "fp16_glue", [], "strongly-typed"),
    ("11.0.0", "int8-mixed", "qdq", "precision", ["--noTF32"], "strongly-typed"),
]


@pytest.mark.parametrize("version, precision, mode, model, flags, recipe", RECIPES)
def test_recipe_per_version_and_precision(version, precision, mode, model, flags, recipe, sources):
    p = plan(version, precision, settings(int8=mode), sources, "timing.cache")
    assert p.argv == ["trtexec", "--onnx=model.onnx", "--saveEngine=model.engine", *flags, *TAIL_86]
    assert p.uploads == {"model.onnx": getattr(sources, f"{model}_onnx")}
    assert p.meta["trt_onnx"] == f"{model}_onnx"
    int8_glue = ("fp32" if precision == "int8-mixed" else "fp16") if precision.startswith("int8-") else None
    assert p.meta["trt_int8_glue"] == int8_glue
    assert (p.recipe, p.flags, p.engine, p.log, p.layer_info) == (
        recipe,
        flags,
        "model.engine",
        "build.log",
        "layers.json",
    )
    # TF32 is TensorRT's default on SM 8.x: FP32 layers of fp32 and int8-mixed builds must stay FP32
    assert p.meta["trt_tf32"] is ("--noTF32" not in flags) and p.load_args == []


def test_every_setting_in_order_on_tensorrt_10(sources, tmp_path):
    lib = "/opt/plugins/libcustom.so"
    p = plan(
        "10.3.0",
        "fp16",
        settings(
            workspace_mib=2048,
            dla_core=1,
            builder_optimization_level=5,
            hardware_compatibility="ampere+",
            plugins=[lib],
            extra_args=["--verbose", "--dumpLayerInfo"],
        ),
        sources,
        "timing.cache",
        Profile("input", (1, 28, 28), 4, 64),
        target="orin",
        gpu={"name": "Orin", "compute_capability": "8.7"},
    )
    assert p.argv == [
        "trtexec",
        "--onnx=model.onnx",
        "--saveEngine=model.engine",
        "--fp16",
        "--minShapes=input:1x1x28x28",  # DLA: a static batch-1 profile instead of 1..64
        "--optShapes=input:1x1x28x28",
        "--maxShapes=input:1x1x28x28",
        "--useDLACore=1",
        "--allowGPUFallback",
        "--memPoolSize=workspace:2048",  # a plain number: MiB on every parser (no MiB suffix: bytes on 10.1+)
        "--builderOptimizationLevel=5",
        "--hardwareCompatibilityLevel=ampere+",
        f"--staticPlugins={lib}",
        *TAIL_86,
        "--verbose",
        "--dumpLayerInfo",
    ]
    assert p.load_args == [f"--staticPlugins={lib}", "--useDLACore=1"]
    assert p.meta["trt_profile"] == {"input": "input", "min": 1, "opt": 1, "max": 1}
    assert p.meta["trt_dla"]["core"] == 1 and p.meta["trt_dla"]["static_batch"] == 1
    assert "batch-1 slices" in p.meta["trt_dla"]["note"] and "layers.json" in p.meta["trt_dla"]["note"]
    assert (p.meta["trt_plugins"], p.meta["trt_load_args"]) == ([lib], p.load_args)
    assert (p.meta["trt_workspace_mib"], p.meta["trt_hardware_compatibility"]) == (2048, "ampere+")


def test_tensorrt_82_uses_workspace_and_build_only(sources):
    assert argv("8.2.3", "fp16", sources, workspace_mib=1024) == [
        "trtexec",
        "--onnx=model.onnx",
        "--saveEngine=model.engine",
        "--fp16",
        "--workspace=1024",
        "--timingCacheFile=timing.cache",
        "--profilingVerbosity=detailed",
        "--exportLayerInfo=layers.json",
        "--buildOnly",
    ]


def test_mempool_from_84_and_skip_inference_from_86(sources):
    assert argv("8.4.1", "fp16", sources, workspace_mib=64)[3:] == [
        "--fp16",
        "--memPoolSize=workspace:64",
        "--timingCacheFile=timing.cache",
        "--profilingVerbosity=detailed",
        "--exportLayerInfo=layers.json",
        "--buildOnly",
    ]
    for version in ("8.6.1", "10.0.1", "10.3.0", "10.16.1", "11.0.0"):
        assert "--memPoolSize=workspace:64" in argv(version, "fp16", sources, workspace_mib=64)
    assert argv("8.5.2", "fp32", sources)[-1] == "--buildOnly"
    assert argv("8.6.0", "fp32", sources)[-1] == "--skipInference"


@pytest.mark.parametrize(
    "version, flag", [("8.2.3", "--plugins"), ("8.5.2", "--plugins"), ("8.6.1", "--staticPlugins")]
)
def test_plugin_libraries_are_loaded_by_the_build_and_by_every_load(version, flag, sources):
    libs = ["/opt/a.so", "/opt/b.so"]
    extra = ["--dynamicPlugins=/opt/c.so", "--setPluginsToSerialize=/opt/c.so"] if version == "8.6.1" else []
    p = plan(version, "fp16", settings(plugins=libs, extra_args=extra), sources, "t")
    assert [a for a in p.argv if "lugins" in a.split("=")[0]] == [
        f"{flag}=/opt/a.so",
        f"{flag}=/opt/b.so",
        *extra,
    ]
    # what a --loadEngine needs: the libraries the process loads (serialized ones travel in the engine)
    assert p.load_args == [f"{flag}=/opt/a.so", f"{flag}=/opt/b.so", *extra[:1]]
    assert p.meta["trt_plugins"] == libs + (["/opt/c.so"] if extra else [])


def test_version_compatible_engines_need_the_flag_when_loaded_too(sources):
    p = plan("10.3.0", "int8-minmax", settings(version_compatible=True), sources, "t")
    assert "--versionCompatible" in p.argv and p.load_args == ["--versionCompatible"]
    assert p.meta["trt_version_compatible"] is True
    p = plan("10.9.0", "fp16", settings(hardware_compatibility="sameComputeCapability"), sources, "t")
    assert "--hardwareCompatibilityLevel=sameComputeCapability" in p.argv and p.load_args == []


@pytest.mark.parametrize("version", ["8.2.3", "10.3.0", "10.7.0", "11.4.1", "11.5.0"])
def test_dla_builds_where_tensorrt_has_dla(version, sources):
    p = plan(version, "fp16", settings(dla_core=0), sources, "t", Profile("x", (3, 8, 8), 8, 32))
    assert ["--useDLACore=0", "--allowGPUFallback"] == [a for a in p.argv if "DLA" in a or "GPUFallback" in a]
    assert "--maxShapes=x:1x3x8x8" in p.argv and p.load_args == ["--useDLACore=0"]
    assert p.meta["trt_dla"]["gpu_fallback"] is True
    static = plan(version, "int8-minmax", settings(dla_core=1), sources, "t")  # a static input model
    assert static.meta["trt_dla"]["static_batch"] is None and static.meta["trt_profile"] is None


def test_timing_cache_is_named_after_the_tensorrt_version_and_the_gpu():
    from tasks.runtimes.tensorrt_recipe import timing_cache_path

    orin = {"name": "NVIDIA Jetson AGX Orin Developer Kit", "compute_capability": "8.7"}
    assert timing_cache_path("timing.cache", "10.3.0.30", orin) == (
        "timing.trt10.3.0.30.NVIDIA-Jetson-AGX-Orin-Developer-Kit.sm87.cache"
    )
    # a JetPack upgrade (another TensorRT) or another GPU starts a fresh file in the same folder
    assert timing_cache_path("caches/tc.bin", "8.6.2", {"name": "Xavier", "compute_capability": "7.2"}) == (
        "caches/tc.trt8.6.2.Xavier.sm72.bin"
    )
    assert timing_cache_path("/var/tc", "11.0.0", None) == "/var/tc.trt11.0.0.gpu-unknown.cache"


def test_calib_is_implicit_int8_with_the_cache_uploaded(sources, tmp_path):
    cache = write_cache({"input": (-1.0, 1.0)}, tmp_path / "calibration.cache", "entropy", trt_version="10.3.0")
    p = plan(
        "10.3.0.30",
        "int8-entropy",
        settings(int8="calib"),
        dataclasses.replace(sources, calib_cache=cache),
        "timing.cache",
    )
    assert p.argv == [
        "trtexec",
        "--onnx=model.onnx",
        "--saveEngine=model.engine",
        "--int8",
        "--fp16",
        "--calib=calibration.cache",
        *TAIL_86,
    ]
    assert p.uploads == {"model.onnx": sources.fp32_onnx, "calibration.cache": cache}
    assert (p.recipe, p.flags) == ("implicit", ["--int8", "--fp16", "--calib=calibration.cache"])


def test_calib_cache_of_another_tensorrt_is_refused(sources, tmp_path):
    cache = write_cache({"input": (-1.0, 1.0)}, tmp_path / "c.cache", "entropy", trt_version="8.6.1")
    with pytest.raises(RecipeError, match=r"written for TensorRT 8\.6\.1 .*device runs TensorRT 10\.3\.0") as e:
        plan("10.3.0", "int8-entropy", settings(int8="calib"), dataclasses.replace(sources, calib_cache=cache), "t")
    assert "quant.trt_version: 10.3.0" in str(e.value)


def test_calib_cache_trtexec_cannot_load_is_refused(sources, tmp_path):
    cache = write_cache({"input": (-1.0, 1.0)}, tmp_path / "c.cache", "minmax", trt_version="8.6.1")
    with pytest.raises(RecipeError, match="MinMaxCalibration.*IInt8EntropyCalibrator2"):
        plan("8.6.1", "int8-minmax", settings(int8="calib"), dataclasses.replace(sources, calib_cache=cache), "t")


@pytest.mark.parametrize(
    "version, precision, calib, match",
    [
        ("11.0.0", "int8-entropy", True, "removed implicit INT8.*int8: qdq"),
        ("10.3.0", "int8-mixed", True, "--layerPrecisions"),
        ("8.6.1", "int8-entropy", False, "needs quantize's calibration.cache"),
    ],
)
def test_calib_refusals(version, precision, calib, match, sources, tmp_path):
    cache = write_cache({"x": (0.0, 1.0)}, tmp_path / "c.cache", "entropy", trt_version=version) if calib else None
    with pytest.raises(RecipeError, match=match):
        plan(version, precision, settings(int8="calib"), dataclasses.replace(sources, calib_cache=cache), "t")


@pytest.mark.parametrize(
    "version, precision, kw, match",
    [
        ("8.0.1", "fp16", {}, "not supported: EdgeForge builds with TensorRT 8.2"),
        ("8.5.2", "fp16", {"builder_optimization_level": 3}, "needs TensorRT 8.6"),
        ("10.3.0", "fp16", {"builder_optimization_level": 6}, "0 to 5"),
        ("10.8.0", "fp16", {"dla_core": 0}, "10.7 was the last 10.x release with DLA.*8.2 - 10.7"),
        ("10.16.1", "int8-minmax", {"dla_core": 0}, "TensorRT 10.16.1 has no DLA"),
        ("11.0.0", "fp16", {"dla_core": 0}, "has no DLA.*11.4.1\\+ \\(AGX Orin"),
        ("11.4.0", "fp16", {"dla_core": 0}, "has no DLA"),
        ("10.3.0", "fp32", {"dla_core": 0}, "fp32 cannot run on DLA.*FP16 and INT8 layers only.*drop fp32"),
        ("11.4.1", "fp32", {"dla_core": 1}, "fp32 cannot run on DLA"),
        ("10.3.0", "fp16", {"int8": "ptq"}, "allowed: qdq, calib"),
        ("10.3.0", "fp16", {"workspace_mib": 0}, "workspace_mib"),
        ("10.3.0", "fp16", {"dla_core": 0, "max_gpu_fallback": 20}, "max_gpu_fallback = 20: expected a fraction"),
        ("10.3.0", "fp16", {"max_gpu_fallback": "0.2"}, "max_gpu_fallback = '0.2': expected a fraction from 0"),
        ("10.3.0", "fp16", {"extra_args": "--verbose"}, "list of strings"),
        ("10.3.0", "fp16", {"extra_args": ["--useDLACore=0"]}, "decided by target.orin.tensorrt.dla_core"),
        ("10.3.0", "fp16", {"extra_args": ["--memPoolSize=workspace:64MiB"]}, "tensorrt.workspace_mib"),
        ("10.3.0", "fp16", {"extra_args": ["--noTF32"]}, "set by the recipe"),
        ("10.3.0", "fp16", {"extra_args": ["--vc"]}, "tensorrt.version_compatible"),
        # INT8 never comes from extra_args: without a Q/DQ model or a cache trtexec calibrates on random data
        ("10.3.0", "fp16", {"extra_args": ["--int8"]}, "tensorrt.int8 .*never random data"),
        ("8.6.1", "fp32", {"extra_args": ["--best"]}, "tensorrt.int8 .*never random data"),
        ("10.3.0", "fp16", {"extra_args": ["--calib=mine.cache"]}, "calibration.cache"),
        ("10.3.0", "fp16", {"plugins": ["libcustom.so"]}, "not an absolute path"),
        ("8.5.2", "fp16", {"version_compatible": True}, "--versionCompatible needs TensorRT 8.6"),
        ("10.3.0", "fp16", {"version_compatible": True, "plugins": ["/p.so"]}, "--setPluginsToSerialize"),
        ("8.5.2", "fp16", {"hardware_compatibility": "ampere+"}, "needs TensorRT 8.6"),
        ("10.8.0", "fp16", {"hardware_compatibility": "sameComputeCapability"}, "needs TensorRT 10.9"),
        ("10.3.0", "fp16", {"hardware_compatibility": "turing+"}, "allowed: ampere\\+, sameComputeCapability"),
    ],
)
def test_settings_refusals(version, precision, kw, match, sources):
    with pytest.raises(RecipeError, match=match) as e:
        plan(version, precision, settings(**kw), sources, "timing.cache", target="orin")
    if "no DLA" in match or "DLA" in str(e.value):
        assert "target.orin.tensorrt.dla_core" in str(e.value)


def test_ampere_plus_is_refused_on_a_gpu_older_than_ampere(sources):
    xavier = {"name": "Jetson AGX Xavier", "compute_capability": "7.2"}
    with pytest.raises(RecipeError, match="compute capability is 7.2"):
        plan("8.6.2", "fp16", settings(hardware_compatibility="ampere+"), sources, "t", gpu=xavier)


def test_dla_returns_in_11_4_1(sources):
    assert "--useDLACore=0" in argv("11.4.1", "fp16", sources, dla_core=0)
    # other memory pools than the workspace stay the user's to set
    assert argv("10.3.0", "fp16", sources, extra_args=["--memPoolSize=dlaSRAM:1"])[-1] == "--memPoolSize=dlaSRAM:1"


def test_unknown_precision_and_missing_model_are_refused(sources, tmp_path):
    with pytest.raises(RecipeError, match="precision 'int4'"):
        plan("10.3.0", "int4", settings(), sources, "t")
    with pytest.raises(RecipeError, match="does not exist: run the export/quantize stages"):
        plan("10.3.0", "fp32", settings(), Sources(tmp_path / "no.onnx", tmp_path / "no.onnx"), "t")
    assert issubclass(RecipeError, BuildError)


# The passing *build* logs (the other passing fixtures load an engine or are fragments).
BUILDS = {
    "trt8.4_gtx1070_fp16_build_bench_verbose_ok.log": ("8.4.1", "FP32+FP16"),
    "trt8.6_h100_fp16_build_bench_ok.log": ("8.6.1", "FP32+FP16"),
    "trt10.16_h100_fp32_build_bench_ok.log": ("10.16.1", "FP32"),
    "trt11.0_b200_build_skipinference_ok.log": ("11.0.0", "Strongly Typed"),
}


def fixture_plan() -> TrtPlan:
    return TrtPlan(
        argv=["trtexec", "--onnx=model.onnx", "--saveEngine=model.engine"],
        uploads={},
        recipe="weakly-typed",
        flags=["--fp16"],
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_build_on_every_fixture(name):
    text = (FIXTURES / name).read_text()
    status, _, _, error = EXPECTED[name]
    exit_code = 0 if status == "passed" else 1
    if name in BUILDS:
        meta = check_build(text, exit_code, fixture_plan(), "jetson")
        assert (meta["tensorrt_version"], meta["trt_precision"]) == BUILDS[name]
        assert meta["trt_build_seconds"] > 0 and meta["recipe"] == "weakly-typed" and meta["flags"] == ["--fp16"]
        assert meta["command"] == "trtexec --onnx=model.onnx --saveEngine=model.engine"
        return
    with pytest.raises(BuildError) as e:
        check_build(text, exit_code, fixture_plan(), "jetson")
    msg = str(e.value)
    assert msg.startswith("jetson: TensorRT engine build failed")
    assert "command: trtexec --onnx=model.onnx --saveEngine=model.engine" in msg
    if error is not None:
        assert error in msg


def test_check_build_quotes_the_error_lines():
    text = (FIXTURES / "trt10.16_rtx6000ada_parse_plugin_not_found_fail.log").read_text()
    with pytest.raises(BuildError, match="(?s)Plugin not found.*hint: TensorRT's ONNX parser lacks an operator"):
        check_build(text, 1, fixture_plan(), "ada")


def test_check_build_refuses_a_nonzero_exit_and_another_version():
    text = (FIXTURES / "trt10.16_h100_fp32_build_bench_ok.log").read_text()
    with pytest.raises(BuildError, match="exited with code 3"):
        check_build(text, 3, fixture_plan(), "h100")
    stale = dataclasses.replace(fixture_plan(), trt_version="10.3.0")
    with pytest.raises(BuildError, match="(?s)TensorRT 10.16.1, the recipe was planned for 10.3.0.*re-run probe"):
        check_build(text, 0, stale, "h100")


def test_the_tensorrt_runtime_points_to_the_device(tmp_path):
    rt = get_runtime("tensorrt")
    assert (rt.name, rt.artifact_suffix) == ("tensorrt", ".engine")
    with pytest.raises(BuildError, match="builds happen on the device through the agent"):
        rt.build(tmp_path / "m.onnx", "fp16", tmp_path, BuildOptions())
    if importlib.util.find_spec("tensorrt") is None:  # the usual case: engines never run on this machine
        for call in (rt.version, lambda: rt.load(tmp_path / "model.engine")):
            with pytest.raises(
                BuildError,
                match="TensorRT is not installed on this machine: TensorRT engines are built and run on the device",
            ):
                call()


def test_dynamic_batch_profile_covers_the_benchmarked_batches(sources):
    """Without --min/opt/maxShapes trtexec fixes a dynamic batch at 1 (trt10.16_h100_fp32_build_bench_ok.log)."""
    p = plan("10.3.0", "fp16", settings(), sources, "timing.cache", Profile("input", (1, 64, 64), 32, 64))
    assert ["--minShapes=input:1x1x64x64", "--optShapes=input:32x1x64x64", "--maxShapes=input:64x1x64x64"] == [
        a for a in p.argv if a.split("=")[0] in ("--minShapes", "--optShapes", "--maxShapes")
    ]
    assert not any(a.startswith("--minShapes") for a in plan("10.3.0", "fp16", settings(), sources, "t").argv)


@pytest.mark.parametrize("missing", [None, "absent"])
def test_int8_on_tensorrt_11_without_the_fp16_glue_model_is_refused(sources, missing, tmp_path):
    src = dataclasses.replace(sources, fp16_glue_onnx=None if missing is None else tmp_path / "absent.onnx")
    with pytest.raises(RecipeError, match=r"FP16-glue Q/DQ model .* re-run the quantize stage \(dvc repro quantize\)"):
        plan("11.0.0", "int8-minmax", settings(), src, "timing.cache")
    # 10.x builds the FP32-glue model with --int8 --fp16 and needs no FP16-glue model
    assert plan("10.3.0", "int8-minmax", settings(), src, "timing.cache").uploads["model.onnx"] == src.precision_onnx


@pytest.mark.parametrize(
    "version, precision, field, match",
    [
        ("10.3.0", "int8-minmax", "precision_onnx", "trtexec calibrate on random data"),
        ("8.6.1", "int8-mixed", "precision_onnx", "trtexec calibrate on random data"),
        ("11.0.0", "int8-entropy", "fp16_glue_onnx", "engine without INT8 layers"),
        ("11.0.0", "int8-mixed", "precision_onnx", "engine without INT8 layers"),
    ],
)
def test_int8_build_of_a_model_without_qdq_is_refused(version, precision, field, match, sources, tmp_path):
    """A stale or placeholder model under an INT8 name (no calibrated scales) is never built: on
    TensorRT <= 10 `--int8` would calibrate it on random data."""
    plain = dataclasses.replace(sources, **{field: qdq_onnx(tmp_path / "plain.onnx", qdq=False)})
    with pytest.raises(RecipeError, match=match) as e:
        plan(version, precision, settings(), plain, "t")
    assert "no QuantizeLinear/DequantizeLinear" in str(
        e.value
    ) and "(dvc repro quantize) on the calibration split" in str(e.value)
    (tmp_path / "garbage.onnx").write_bytes(b"not an ONNX file")
    garbage = dataclasses.replace(sources, **{field: tmp_path / "garbage.onnx"})
    with pytest.raises(RecipeError, match="cannot read"):
        plan(version, precision, settings(), garbage, "t")


def test_calib_cache_without_tensor_scales_is_refused(sources, tmp_path):
    cache = write_cache({"input": (-1.0, 1.0)}, tmp_path / "c.cache", "entropy", trt_version="10.3.0")
    cache.write_text(cache.read_text().splitlines()[0] + "\n")  # the header alone
    with pytest.raises(RecipeError, match="no tensor scales: trtexec would calibrate every tensor on random data"):
        plan("10.3.0", "int8-entropy", settings(int8="calib"), dataclasses.replace(sources, calib_cache=cache), "t")
