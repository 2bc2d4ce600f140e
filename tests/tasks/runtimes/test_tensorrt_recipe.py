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
from tasks.runtimes.tensorrt_recipe import RecipeError, Sources, TrtPlan, check_build, parse_version, plan
from tests.tasks.runtimes.test_trtexec_log import EXPECTED, FIXTURES

TAIL_86 = [
    "--timingCacheFile=timing.cache",
    "--profilingVerbosity=detailed",
    "--exportLayerInfo=layers.json",
    "--skipInference",
]


@pytest.fixture
def sources(tmp_path) -> Sources:
    fp32, prec = tmp_path / "fp32.onnx", tmp_path / "prec.onnx"
    fp32.write_bytes(b"fp32")
    prec.write_bytes(b"precision")
    return Sources(fp32, prec, None)


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


# version, precision, int8 mode -> (model uploaded: fp32|precision, precision flags, recipe)
RECIPES = [
    ("8.6.1", "fp32", "qdq", "fp32", [], "weakly-typed"),
    ("8.6.1", "fp16", "qdq", "fp32", ["--fp16"], "weakly-typed"),
    ("8.6.1", "int8-entropy", "qdq", "precision", ["--int8", "--fp16"], "explicit-qdq"),
    ("8.6.1", "int8-mixed", "qdq", "precision", ["--int8"], "explicit-qdq"),
    ("10.3.0.30", "fp32", "qdq", "fp32", [], "weakly-typed"),
    ("10.3.0.30", "fp16", "calib", "fp32", ["--fp16"], "weakly-typed"),
    ("10.3.0.30", "int8-minmax", "qdq", "precision", ["--int8", "--fp16"], "explicit-qdq"),
    ("10.3.0.30", "int8-mixed", "qdq", "precision", ["--int8"], "explicit-qdq"),
    ("11.0.0", "fp32", "qdq", "fp32", [], "strongly-typed"),
    ("11.0.0", "fp16", "qdq", "precision", [], "strongly-typed"),
    ("11.0.0", "int8-percentile", "qdq", "precision", [], "strongly-typed"),
    ("11.0.0", "int8-mixed", "qdq", "precision", [], "strongly-typed"),
]


@pytest.mark.parametrize("version, precision, mode, model, flags, recipe", RECIPES)
def test_recipe_per_version_and_precision(version, precision, mode, model, flags, recipe, sources):
    p = plan(version, precision, settings(int8=mode), sources, "timing.cache")
    assert p.argv == ["trtexec", "--onnx=model.onnx", "--saveEngine=model.engine", *flags, *TAIL_86]
    assert p.uploads == {"model.onnx": sources.fp32_onnx if model == "fp32" else sources.precision_onnx}
    assert (p.recipe, p.flags, p.engine, p.log, p.layer_info) == (
        recipe,
        flags,
        "model.engine",
        "build.log",
        "layers.json",
    )


def test_every_setting_in_order_on_tensorrt_10(sources):
    assert argv(
        "10.3.0",
        "fp16",
        sources,
        workspace_mib=2048,
        dla_core=1,
        builder_optimization_level=5,
        extra_args=["--verbose", "--noTF32"],
    ) == [
        "trtexec",
        "--onnx=model.onnx",
        "--saveEngine=model.engine",
        "--fp16",
        "--memPoolSize=workspace:2048MiB",
        "--useDLACore=1",
        "--allowGPUFallback",
        "--builderOptimizationLevel=5",
        *TAIL_86,
        "--verbose",
        "--noTF32",
    ]


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
    assert argv("8.4.1", "fp32", sources, workspace_mib=64)[3:] == [
        "--memPoolSize=workspace:64MiB",
        "--timingCacheFile=timing.cache",
        "--profilingVerbosity=detailed",
        "--exportLayerInfo=layers.json",
        "--buildOnly",
    ]
    assert argv("8.5.2", "fp32", sources)[-1] == "--buildOnly"
    assert argv("8.6.0", "fp32", sources)[-1] == "--skipInference"


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
    "version, kw, match",
    [
        ("8.0.1", {}, "not supported: EdgeForge builds with TensorRT 8.2"),
        ("8.5.2", {"builder_optimization_level": 3}, "needs TensorRT 8.6"),
        ("10.3.0", {"builder_optimization_level": 6}, "0 to 5"),
        ("11.0.0", {"dla_core": 0}, "no DLA support"),
        ("11.4.0", {"dla_core": 0}, "no DLA support"),
        ("10.3.0", {"int8": "ptq"}, "allowed: qdq, calib"),
        ("10.3.0", {"workspace_mib": 0}, "workspace_mib"),
        ("10.3.0", {"extra_args": "--verbose"}, "list of strings"),
    ],
)
def test_settings_refusals(version, kw, match, sources):
    with pytest.raises(RecipeError, match=match):
        plan(version, "fp16", settings(**kw), sources, "timing.cache")


def test_dla_returns_in_11_4_1(sources):
    assert "--useDLACore=0" in argv("11.4.1", "fp16", sources, dla_core=0)


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
    from tasks.runtimes.tensorrt_recipe import Profile

    p = plan("10.3.0", "fp16", settings(), sources, "timing.cache", Profile("input", (1, 64, 64), 32, 64))
    assert ["--minShapes=input:1x1x64x64", "--optShapes=input:32x1x64x64", "--maxShapes=input:64x1x64x64"] == [
        a for a in p.argv if a.split("=")[0] in ("--minShapes", "--optShapes", "--maxShapes")
    ]
    assert not any(a.startswith("--minShapes") for a in plan("10.3.0", "fp16", settings(), sources, "t").argv)
