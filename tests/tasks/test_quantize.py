"""Stage quantize: the ONNX each precision builds from (``--precision`` makes one)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tasks import quantize
from tasks.io import read_json, sha256_file
from tasks.layout import LAYOUT, ORT_INT8_LAYOUTS
from tests.conftest import build_main, write_params


def _elem(model: onnx.ModelProto, io: str) -> int:
    return getattr(model.graph, io)[0].type.tensor_type.elem_type


def test_fp32_is_the_verified_export_and_fp16_halves_the_weights(workdir, params, exported):
    quantize.main(["--precision", "fp32"])
    quantize.main(["--precision", "fp16"])
    assert sha256_file(LAYOUT.precision_onnx("fp32")) == sha256_file(exported)
    half = onnx.load(str(LAYOUT.precision_onnx("fp16")))
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    assert {i.data_type for i in half.graph.initializer if i.data_type in floats} == {onnx.TensorProto.FLOAT16}
    assert _elem(half, "input") == _elem(half, "output") == onnx.TensorProto.FLOAT  # FP32 I/O by default
    meta = read_json(LAYOUT.quantize_metrics("fp16"))
    assert meta == read_json(LAYOUT.quantize_dir("fp16") / "quantize.json")
    assert meta["keep_io_types"] is True and meta["sha256"] == sha256_file(LAYOUT.precision_onnx("fp16"))
    assert meta["source_onnx_sha256"] == sha256_file(exported)
    onnx.checker.check_model(half, full_check=True)  # the converter's boundary Casts sorted into place


def test_fp16_with_float16_io(workdir, params, exported):
    params["build"]["fp16_keep_io_types"] = False
    write_params(params)
    quantize.main(["--precision", "fp16"])
    half = onnx.load(str(LAYOUT.precision_onnx("fp16")))
    assert _elem(half, "input") == onnx.TensorProto.FLOAT16


def test_precision_not_in_the_build_list_fails_and_leaves_nothing(workdir, params, exported, capsys):
    with pytest.raises(SystemExit) as e:
        quantize.main(["--precision", "fp8"])
    assert e.value.code == 1
    assert (
        "edgeforge quantize: error: --precision 'fp8' is not in build.precisions (fp32, fp16, int8-minmax)"
        in capsys.readouterr().err
    )
    assert not LAYOUT.quantize_dir("fp8").exists() and not LAYOUT.quantize_metrics("fp8").exists()


def test_int8_writes_qdq_model_trt_cache_and_ranges(workdir, params, exported, capsys):
    from tasks.quant import read_cache, read_cache_header, read_ranges_json

    quantize.main(["--precision", "int8-minmax"])
    out = LAYOUT.quantize_dir("int8-minmax")
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    ranges = read_ranges_json(out / "ranges.json")
    cache = read_cache(out / "calibration.cache")
    assert set(cache) == set(ranges) and params["model"]["input"]["name"] in cache
    for name, (lo, hi) in ranges.items():  # scale = amax / 127, to float32 precision
        assert cache[name] == pytest.approx(max(abs(lo), abs(hi)) / 127, rel=1e-6)
    assert read_cache_header(out / "calibration.cache") == (8601, "MinMaxCalibration")
    meta = read_json(LAYOUT.quantize_metrics("int8-minmax"))
    assert meta["calibrator"] == "minmax" and meta["samples"] == 32 and meta["quantized_nodes"]
    assert meta["residual_adds"] == 0  # the example CNN has no residual Add
    assert meta["cache_sha256"] == sha256_file(out / "calibration.cache")
    # the FP16-glue form TensorRT 11 builds strongly typed, beside the FP32-glue model, hash recorded
    assert LAYOUT.fp16_glue_onnx("int8-minmax") == out / "model.fp16glue.onnx"
    assert meta["fp16_glue_sha256"] == sha256_file(out / "model.fp16glue.onnx")
    assert meta["fp16_glue"] == {"file": "model.fp16glue.onnx", "opset": 19, "opset_from": 18, "boundary_casts": 2}
    # 32 calibration images (the fast config) is below the 100 the stage warns about
    assert "WARNING: calibrating on only 32 images" in capsys.readouterr().err
    from tasks.runtimes import get_runtime

    x = np.load(workdir / "artifacts/prepare/eval/x.npy")[:8]
    fp32 = get_runtime("onnxruntime").load(exported).infer(x)["logits"]
    int8 = get_runtime("onnxruntime").load(out / "model.onnx").infer(x)["logits"]
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.75


def test_int8_calibration_samples_of_the_wrong_shape_fail_clearly(workdir, params, exported, capsys):
    from tasks.data.split import save_split

    x = np.random.default_rng(0).random((8, 3, 28, 28), np.float32)  # not blank: blank images are refused first
    save_split(workdir / "artifacts/prepare/calib", x, np.zeros(8))
    with pytest.raises(SystemExit):
        quantize.main(["--precision", "int8-minmax"])
    err = capsys.readouterr().err
    assert "quantize@int8-minmax: error:" in err and "(8, 3, 28, 28)" in err and "Traceback" not in err
    assert not LAYOUT.quantize_dir("int8-minmax").exists()


def test_int8_for_onnxruntime_uses_the_layout_it_fuses(workdir, params, exported):

    quantize.main(["--precision", "int8-minmax"])
    out = LAYOUT.quantize_dir("int8-minmax")
    trt = onnx.load(str(out / "model.onnx"))
    # TensorRT layout: FP32 weights quantized in the graph (Q -> DQ); ORT layouts: int8 weights feed DQ directly
    assert _weight_quantization(trt) == {"QuantizeLinear": onnx.TensorProto.FLOAT}
    for layout in ORT_INT8_LAYOUTS:
        ort_layout = onnx.load(str(LAYOUT.precision_onnx("int8-minmax", "onnxruntime", layout)))
        assert _weight_quantization(ort_layout) == {"DequantizeLinear": onnx.TensorProto.INT8}
    assert (
        LAYOUT.precision_onnx("int8-minmax", "tensorrt") == LAYOUT.precision_onnx("int8-minmax") == out / "model.onnx"
    )
    build_main(["--target", "local", "--precision", "int8-minmax"])  # which ORT layout: tests/tasks/test_choices.py
    rec = read_json(LAYOUT.build_metrics("local", "int8-minmax"))
    chosen = LAYOUT.precision_onnx("int8-minmax", "onnxruntime", rec["device_choices"]["ort_int8_layout"])
    assert rec["source_onnx_sha256"] == sha256_file(chosen)


def _weight_quantization(model: onnx.ModelProto) -> dict[str, int]:
    """{op type: dtype} of the Q/DQ nodes whose quantized input is a weight (a >1-D initializer)."""
    weights = {i.name: i.data_type for i in model.graph.initializer if len(i.dims) > 1}
    return {
        n.op_type: weights[n.input[0]]
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] in weights
    }


def test_int8_records_calibration_coverage_and_warns_of_a_class_calibration_lacks(workdir, params, exported, capsys):
    from tasks.data.split import Split, save_split

    calib, ev = Split(LAYOUT.split("calib")), Split(LAYOUT.split("eval"))
    lacking = int(np.asarray(ev.y)[0])  # a digit the evaluation split has
    keep = np.asarray(calib.y) != lacking
    save_split(LAYOUT.split("calib"), np.asarray(calib.x)[keep], np.asarray(calib.y)[keep])
    quantize.main(["--precision", "int8-minmax"])
    cov = read_json(LAYOUT.quantize_metrics("int8-minmax"))["coverage"]
    assert cov == read_json(LAYOUT.quantize_dir("int8-minmax") / "quantize.json")["coverage"]
    assert cov["calib"]["samples"] == int(keep.sum()) and cov["eval"]["samples"] == 96
    assert cov["calib"]["per_class"][str(lacking)] == 0 < cov["eval"]["per_class"][str(lacking)]
    assert sum(cov["eval"]["per_class"].values()) == 96 and cov["calib"]["counted"] == "samples"
    assert {"per_image_mean", "pixel_range"} <= set(cov["calib"]["brightness"])
    assert any(f"class '{lacking}'" in w for w in cov["warnings"])
    err = capsys.readouterr().err
    assert "calibration coverage: calib" in err and f"warning: class '{lacking}'" in err
    quantize.main(["--precision", "fp16"])  # nothing is calibrated: no coverage
    assert "coverage" not in read_json(LAYOUT.quantize_metrics("fp16"))


@pytest.mark.parametrize("precision", ["int8-minmax", "int8-mixed"])
def test_int8_refuses_a_calibration_split_of_blank_placeholder_images(workdir, params, exported, capsys, precision):
    """Never calibrate on placeholder data: a split of blank images (here the zeros a pipeline
    might write when no data was found) fails the stage clearly, leaving nothing."""
    from tasks.data.split import save_split

    params["build"]["precisions"] = [precision]
    write_params(params)
    save_split(workdir / "artifacts/prepare/calib", np.zeros((32, 1, 28, 28), np.float32), np.zeros(32))
    with pytest.raises(SystemExit):
        quantize.main(["--precision", precision])
    err = capsys.readouterr().err
    assert f"quantize@{precision}: error: the calibration split" in err and "Traceback" not in err
    assert "holds only blank images (32 of 32" in err and "data.calib" in err
    assert not LAYOUT.quantize_dir(precision).exists() and not LAYOUT.quantize_metrics(precision).exists()


def test_the_stage_makes_only_the_precisions_added_and_removes_those_dropped(workdir, params, exported, capsys):
    """quantize over every precision, in a DVC project: adding a precision to build.precisions makes
    that one and keeps the others as they were; dropping one removes its model and record."""
    import shutil

    from tests.conftest import ROOT

    shutil.copy(ROOT / "dvc.yaml", workdir / "dvc.yaml")
    params["build"]["precisions"] = ["fp32", "fp16"]
    write_params(params)
    quantize.main([])
    made = {p: LAYOUT.quantize_metrics(p).read_bytes() for p in ("fp32", "fp16")}
    mtimes = {p: LAYOUT.quantize_metrics(p).stat().st_mtime_ns for p in made}
    assert all(len(read_json(LAYOUT.quantize_metrics(p))["inputs_sha256"]) == 64 for p in made)
    capsys.readouterr()

    params["build"]["precisions"] = ["fp32", "bf16", "fp16"]
    write_params(params)
    quantize.main([])
    err = capsys.readouterr().err
    assert {p: LAYOUT.quantize_metrics(p).read_bytes() for p in made} == made
    assert {p: LAYOUT.quantize_metrics(p).stat().st_mtime_ns for p in made} == mtimes
    assert "quantize@fp32: unchanged since it was made: kept" in err and "quantize@fp16: unchanged" in err
    assert "quantize@bf16: unchanged" not in err and read_json(LAYOUT.quantize_metrics("bf16"))["precision"] == "bf16"

    params["build"]["precisions"] = ["fp32", "bf16"]
    write_params(params)
    quantize.main([])
    err = capsys.readouterr().err
    assert not LAYOUT.quantize_dir("fp16").exists() and not LAYOUT.quantize_metrics("fp16").exists()
    assert f"quantize: removed {LAYOUT.quantize_dir('fp16')} (no longer in build.precisions)" in err
    assert LAYOUT.quantize_metrics("fp32").read_bytes() == made["fp32"]
    assert sorted(p.name for p in LAYOUT.quantize_root.iterdir()) == ["bf16", "fp32"]
