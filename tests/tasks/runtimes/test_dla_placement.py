"""Where a DLA build's layers ran, from the real DLA build logs in tests/fixtures/trtexec (SOURCES.md:
NVIDIA's DLA tutorial on Orin, ultralytics' DLA exports, NVIDIA/TensorRT#2318), and the bound
``tensorrt.max_gpu_fallback`` on the share, counted in the nodes of a model with the tutorial's
layer names (its ModelBN: four Conv+ReLU blocks, global average pooling, a flatten, a Gemm)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tasks.runtimes.base import BuildError
from tasks.runtimes.dla_placement import fused_names, parse, record, share

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "trtexec"
BN = "trt8.4_orin_dla_int8_batchnorm_layers_fragment.log"
GN = "trt8.4_orin_dla_int8_groupnorm_layers_fragment.log"


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


def model_bn(tmp_path: Path) -> Path:
    """NVIDIA's tutorial ModelBN as ONNX with the node names its build log prints (BatchNorm folded into
    the convolutions, ``x.view`` as one Flatten): 11 nodes, Conv_0 ... Relu_7, GlobalAveragePool_8, Gemm_15."""
    nodes, inits, x = [], [], "input"
    for i, (cin, cout) in enumerate([(3, 64), (64, 128), (128, 256), (256, 512)]):
        w = numpy_helper.from_array(np.zeros((cout, cin, 3, 3), "float32"), f"w{i}")
        inits.append(w)
        attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
        nodes += [
            helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"Conv_{2 * i}", **attrs),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"Relu_{2 * i + 1}"),
        ]
        x = f"r{i}"
    inits.append(numpy_helper.from_array(np.zeros((10, 512), "float32"), "linear.weight"))
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pool"], name="GlobalAveragePool_8"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="Flatten_14"),
        helper.make_node("Gemm", ["flat", "linear.weight"], ["output"], name="Gemm_15", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "model_bn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    path = tmp_path / "model_bn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_the_layer_sections_of_nvidias_dla_tutorial():
    bn = parse(text(BN))
    assert bn.dla_subgraphs[0] == "Conv_0...Relu_7" and len(bn.dla_subgraphs) == 2
    assert bn.gpu_layers == [
        {"type": "REDUCE", "name": "GlobalAveragePool_8"},
        {"type": "SHUFFLE", "name": "copied_squeeze_after_(Unnamed Layer* 20) [ElementWise]"},
    ]
    gn = parse(text(GN))
    assert gn.dla_subgraphs == ["Conv_0", "Relu_10...Conv_11", "Relu_21...Conv_22", "Relu_32...Conv_33", "Relu_43"]
    assert [g["type"] for g in gn.gpu_layers] == ["SHUFFLE", "PLUGIN_V2", "SHUFFLE", "SCALE", "SCALE", "SHUFFLE"]
    assert gn.fallbacks == [] and not gn.no_dla_layer


def test_fused_layer_names():
    assert fused_names("71 + (Unnamed Layer* 16) [Shuffle] + Mul_8") == ["71", "(Unnamed Layer* 16) [Shuffle]", "Mul_8"]
    assert fused_names("PWN(PWN(Sigmoid_1), Mul_2)") == ["Sigmoid_1", "Mul_2"]


def test_switch_warnings_with_the_reason_printed_before_them():
    div = parse(text("trt8.6_agx_orin_dla_div_reason_fragment.log")).fallbacks
    assert [f["type"] for f in div] == ["CONSTANT"] * 3 + ["ELEMENTWISE"]
    assert div[3] == {
        "name": "/model.22/Div",
        "type": "ELEMENTWISE",
        "reason": "DLA cores do not support DIV ElementWise operation",
    }
    assert all(f["reason"] is None for f in div[:3])  # TensorRT prints no reason for CONSTANT layers
    yolo = {f["name"]: f for f in parse(text("trt8.x_jetpack5_dla_slice_concat_reason_fragment.log")).fallbacks}
    assert yolo["/model.23/Slice_1"]["reason"] == "DLA only supports slicing 4 dimensional tensors"
    assert yolo["/model.23/Concat_2"]["reason"] == "DLA only supports concatenation on the C dimension"
    assert len(yolo) == 7 and yolo["(Unnamed Layer* 443) [Shuffle]"]["type"] == "SHUFFLE"
    trtexec = parse(text("trt8.x_orin_dla_fp16_constant_fallback_fragment.log")).fallbacks  # "[W] [TRT]" order
    assert len(trtexec) == 9 and trtexec[1]["name"] == "(Unnamed Layer* 277) [Shuffle]"


def test_the_older_wording_and_no_layer_on_dla():
    nmt = parse(text("trt8.x_dla_samplenmt_no_dla_layer_fragment.log"))
    assert nmt.no_dla_layer and len(nmt.fallbacks) == 10
    assert nmt.fallbacks[0] == {"name": "Embedding matrix", "type": None, "reason": None}


def test_reasons_of_the_2021_wording():
    # two lines of onnx/tensorflow-onnx#1632 (a Jetson DLA build log, 2021-07-29), as posted
    log = (
        "[W] [TRT] DLA only supports FP16 and Int8 precision type. Switching (Unnamed Layer* 275) [Gather] device "
        "type to GPU.\n[W] [TRT] DLA Layer shuffle_netv2/shufflenet_stage_2/shufflenet_unit1_11/conv2d_bn__re_lu_32"
        "/conv2d_32/Conv2D does not support dynamic shapes in any dimension.\n[07/29/2021-19:44:10] "
        "[07/29/2021-19:44:10] [W] [TRT] Default DLA is enabled but layer shuffle_netv2/shufflenet_stage_2/"
        "shufflenet_unit1_11/conv2d_bn__re_lu_32/conv2d_32/Conv2D is not supported on DLA, falling back to GPU.\n"
    )
    fallbacks = parse(log).fallbacks
    assert fallbacks[0]["reason"] == "DLA only supports FP16 and Int8 precision type"
    assert fallbacks[1]["reason"] == "does not support dynamic shapes in any dimension"


def test_share_in_model_nodes_and_the_record(tmp_path):
    onnx_path = model_bn(tmp_path)
    fraction, gpu, total, unmatched = share(parse(text(BN)), onnx.load(str(onnx_path)))
    assert (fraction, gpu, total) == (1 / 11, 1, 11)  # GlobalAveragePool_8 of 11 nodes
    assert unmatched == ["copied_squeeze_after_(Unnamed Layer* 20) [ElementWise]"]  # made by TensorRT
    rec = record(text(BN), onnx_path, 0.2, "orin", 0)
    assert rec["gpu_fallback_share"] == 0.0909 and rec["dla_placement_source"] == "layer sections"
    assert rec["gpu_fallback_layers"][0] == {"name": "GlobalAveragePool_8", "type": "REDUCE", "reason": None}
    assert rec["dla_layers"][0] == "Conv_0...Relu_7"


def test_fused_weights_are_not_reported_as_layers_tensorrt_made():
    """``SCALE: 71 + (Unnamed Layer* 16) [Shuffle] + Mul_8``: 71 is the GroupNorm scale, an initializer."""
    m = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("Reshape", ["x", "shape"], ["r"], name="Reshape_2"),
                helper.make_node("Mul", ["r", "71"], ["m"], name="Mul_8"),
                helper.make_node("Relu", ["m"], ["y"], name="Relu_10"),
            ],
            "gn_block",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 16, 16])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 16, 16])],
            [
                numpy_helper.from_array(np.ones((64, 1, 1), np.float32), "71"),
                numpy_helper.from_array(np.array([1, 64, 16, 16]), "shape"),
            ],
        )
    )
    fraction, gpu, total, unmatched = share(parse(text(GN)), m)
    assert (gpu, total) == (2, 3) and "71" not in unmatched
    assert "(Unnamed Layer* 16) [Shuffle]" in unmatched and "InstanceNormalization_5" in unmatched


def test_a_share_above_the_bound_is_rejected_naming_the_layers_and_the_key(tmp_path):
    onnx_path = model_bn(tmp_path)
    with pytest.raises(BuildError) as e:
        record(text(BN), onnx_path, 0.05, "orin", 1)
    msg = str(e.value)
    assert msg.startswith("orin: 9% of the model's layers (1 of 11 ONNX nodes) fell back from DLA core 1 to the GPU")
    assert "target.orin.tensorrt.max_gpu_fallback = 0.05" in msg and "GlobalAveragePool_8 (REDUCE" in msg
    assert record(text(BN), onnx_path, None, "orin", 1)["gpu_fallback_share"] == 0.0909  # null: no bound
    everything = record(text("trt8.x_dla_samplenmt_no_dla_layer_fragment.log"), onnx_path, None, "orin", 1)
    assert everything["gpu_fallback_share"] == 1.0 and everything["dla_placement_source"] == "warnings"
    with pytest.raises(BuildError, match="TensorRT found no layer it can run on DLA"):
        record(text("trt8.x_dla_samplenmt_no_dla_layer_fragment.log"), onnx_path, 0.99, "orin", 1)


def test_a_log_without_placement_lines_records_none(tmp_path):
    rec = record(text("trt10.16_h100_fp32_build_bench_ok.log"), model_bn(tmp_path), 0.0, "orin", 0)
    assert (rec["gpu_fallback_share"], rec["gpu_fallback_layers"], rec["dla_placement_source"]) == (0.0, [], "none")
