"""Stage quantize@int8-mixed on a MnistCNN built with one clearly sensitive layer: its second
BatchNorm emits (after a short training, so that its predictions vary) a constant channel of 1000 that the first Linear ignores (zero weights), so FP32
is unaffected but per-tensor INT8 of that Linear's input rounds every informative feature to
zero. The calibration split is relabelled with the FP32 model's own confident predictions, so
FP32 scores 100% on it and any drop is quantization's."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tasks import evaluate, quantize
from tasks.io import read_json, sha256_file
from tasks.layout import LAYOUT, ORT_INT8_LAYOUTS, ort_int8_onnx
from tests.conftest import build_main, write_params

SENSITIVE = "node_linear"  # the first Linear's Gemm in the dynamo export: its input carries the outlier
CONV2 = "node_Conv_20"  # the second conv (BatchNorm folded in) emits the outlier channel: harmless in
# TensorRT's layout (no Q/DQ on a conv's output), fatal in ONNX Runtime's (the output is quantized)


@pytest.fixture
def sensitive(workdir, params):
    import torch

    from examples.mnist import train_mnist_cnn
    from tasks.config import Config, from_dict
    from tasks.data.split import Split, save_split
    from tasks.export import run as export
    from tasks.prepare import run as prepare

    OUT, PREP = LAYOUT.onnx, LAYOUT.prepare_dir

    params["build"]["precisions"] = ["fp32", "int8-mixed"]
    params["data"]["calib"]["limit"] = 400
    params["quant"].update(sensitivity_samples=200, sqnr_samples=32)
    write_params(params)
    cfg = from_dict(Config, params)
    prepare(cfg, PREP, log=lambda m: None)
    calib = Split(PREP / "calib")
    train_mnist_cnn(calib.x, calib.y, workdir / "model.pt", epochs=3, batch_size=32, lr=0.003, seed=0)
    sd = torch.load(workdir / "model.pt", weights_only=True)
    sd["features.5.bias"][0] = 1000.0
    sd["head.1.weight"][:, :49] = 0.0  # channel 0 of the flattened 32x7x7 features
    torch.save(sd, workdir / "model.pt")
    export(cfg, OUT, log=lambda m: None)
    x = np.ascontiguousarray(calib.x)
    logits = ort.InferenceSession(str(OUT), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    top2 = np.sort(logits, axis=1)
    keep = top2[:, -1] - top2[:, -2] > 0.05
    save_split(PREP / "calib", x[keep], logits[keep].argmax(1))
    assert keep.sum() >= 200 and len(set(logits[keep].argmax(1).tolist())) >= 5
    return params


def test_int8_mixed_keeps_the_sensitive_layers_fp32_and_explains_why(sensitive):
    from tasks import parity

    quantize.main(["--precision", "int8-mixed"])
    out, meta = LAYOUT.quantize_dir("int8-mixed"), read_json(LAYOUT.quantize_metrics("int8-mixed"))
    assert meta["accepted"] is True and meta["reason"] == ""
    # both layers are fatal to INT8 (the Linear in every layout, the conv in ONNX Runtime's); which
    # of the two drops more depends on the trained weights' rounding (thread count, CPU kernels)
    assert sorted(k["node"] for k in meta["kept_fp32"]) == sorted([SENSITIVE, CONV2])
    # its kept layers are FP32 on purpose: no FP16-glue form (TensorRT 11 builds the FP32-glue model)
    assert not LAYOUT.fp16_glue_onnx("int8-mixed").exists() and "fp16_glue_sha256" not in meta
    assert [k["rank"] for k in meta["kept_fp32"]] == [1, 2]
    # The drops' sizes depend on the CPU's INT8 kernels (VNNI or not); what holds everywhere is
    # each one against the budget: all-INT8 and keeping one miss it, keeping both meets it
    budget = sensitive["quant"]["max_drop"]
    assert all(k["drop"] > budget and "dropped" in k["why"] for k in meta["kept_fp32"])
    assert [t["kept"] for t in meta["trials"]] == [0, 1, 2]
    assert min(t["drop"] for t in meta["trials"][:2]) > budget
    assert meta["subset_drop"] <= budget and max(meta["layout_drops"].values()) == meta["subset_drop"]
    assert meta["sensitivity_method"] == "task" and meta["calibrator"] == "percentile" and meta["layers"] == 4
    table = read_json(out / "sensitivity.json")
    assert [r["rank"] for r in table["layers"]] == [1, 2, 3, 4]
    assert {r["node"] for r in table["layers"][:2]} == {SENSITIVE, CONV2}
    conv2 = next(r for r in table["layers"] if r["node"] == CONV2)
    assert conv2["layout_drops"]["model.onnx"] <= budget and all(
        budget < conv2["layout_drops"][ort_int8_onnx(n)] for n in ORT_INT8_LAYOUTS
    )
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    for f in ("model.onnx", *map(ort_int8_onnx, ORT_INT8_LAYOUTS), "calibration.cache", "ranges.json"):
        assert (out / f).is_file(), f
    assert meta["ort_sha256"] == {n: sha256_file(out / ort_int8_onnx(n)) for n in ORT_INT8_LAYOUTS}
    assert meta["sha256"] == sha256_file(out / "model.onnx")
    assert SENSITIVE not in meta["quantized_nodes"] and CONV2 not in meta["quantized_nodes"]  # no Q/DQ on their inputs
    assert "node_Conv_19" in meta["quantized_nodes"] and "node_linear_1" in meta["quantized_nodes"]
    parity.main([])
    build_main(["--target", "local", "--precision", "int8-mixed"])
    evaluate.main(["--target", "local", "--precision", "int8-mixed"])
    assert "mixed precision" not in read_json(LAYOUT.evaluate_metrics("local", "int8-mixed"))["reason"]


def test_int8_mixed_without_room_to_keep_layers_is_rejected_not_shipped(sensitive, capsys):
    from tasks import parity

    sensitive["quant"]["max_kept_fraction"] = 0.0
    write_params(sensitive)
    quantize.main(["--precision", "int8-mixed"])
    meta = read_json(LAYOUT.quantize_metrics("int8-mixed"))
    # rejected because the only plan left (all INT8) misses the budget, whatever the CPU's INT8 drop is
    assert (
        meta["accepted"] is False and meta["kept_fp32"] == [] and meta["subset_drop"] > sensitive["quant"]["max_drop"]
    )
    assert "no plan keeping up to 0 of 4 layers" in meta["reason"]
    assert "REJECTED" in capsys.readouterr().err
    parity.main([])
    build_main(["--target", "local", "--precision", "int8-mixed"])
    evaluate.main(["--target", "local", "--precision", "int8-mixed"])
    ev = read_json(LAYOUT.evaluate_metrics("local", "int8-mixed"))
    assert ev["accepted"] is False and "mixed precision: no plan keeping up to 0 of 4 layers" in ev["reason"]


def test_a_model_with_nothing_quantizable_fails_clearly_and_leaves_nothing(workdir, params, prepared, capsys):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    OUT = LAYOUT.onnx

    params["build"]["precisions"] = ["fp32", "int8-mixed"]
    write_params(params)
    inits = [
        numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("starts", [0]), ("ends", [10]), ("axes", [1]))
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], name="flatten"),
            helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["logits"], name="slice"),
        ],
        "no_weights",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(OUT))
    with pytest.raises(SystemExit) as e:
        quantize.main(["--precision", "int8-mixed"])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert "quantize@int8-mixed: error:" in err and "nothing to quantize" in err and "Traceback" not in err
    assert not LAYOUT.quantize_dir("int8-mixed").exists() and not LAYOUT.quantize_metrics("int8-mixed").exists()
