"""count_flops on hand-built ONNX graphs with hand-computed counts (MAC = 2 FLOPs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tasks.metrics.flops import count_flops

F = TensorProto.FLOAT
EXAMPLE = Path(__file__).resolve().parents[3] / "artifacts" / "export" / "model.onnx"


def init(name: str, shape: tuple[int, ...], dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def graph_model(nodes, inputs, inits=(), outputs=("y",), opset=18) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
        [helper.make_tensor_value_info(o, F, None) for o in outputs],
        list(inits),
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    return m


def conv_model(batch="N") -> onnx.ModelProto:
    # x (N, 3, 8, 8) * w (4, 3, 3, 3), pad 1 -> y (N, 4, 8, 8)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    return graph_model([node], [("x", [batch, 3, 8, 8])], [init("w", (4, 3, 3, 3)), init("b", (4,))])


CONV_FLOPS = 2 * 4 * 8 * 8 * 3 * 3 * 3 + 4 * 8 * 8  # MACs x2 + one bias add per output = 14080


def test_conv_with_bias():
    r = count_flops(conv_model())
    assert r["total"] == CONV_FLOPS == 14080
    assert r["per_sample"] == 14080.0
    assert r["by_op"] == {"Conv": 14080}
    assert r["nodes"] == [{"name": "Conv_0", "op_type": "Conv", "flops": 14080}]
    assert r["uncounted"] == []


def test_batch_size_scales_linearly_and_model_is_untouched():
    m = conv_model()
    before = m.SerializeToString()
    r = count_flops(m, batch_size=4)
    assert r["total"] == 4 * CONV_FLOPS and r["per_sample"] == CONV_FLOPS
    assert m.SerializeToString() == before


def test_grouped_and_depthwise_conv():
    grouped = helper.make_node("Conv", ["x", "wg"], ["g"], group=4)  # -> (1, 8, 8, 8)
    depthwise = helper.make_node(
        "Conv", ["g", "wd"], ["y"], group=8, strides=[2, 2], pads=[1, 1, 1, 1]
    )  # -> (1, 8, 4, 4)
    m = graph_model([grouped, depthwise], [("x", [1, 8, 10, 10])], [init("wg", (8, 2, 3, 3)), init("wd", (8, 1, 3, 3))])
    r = count_flops(m)
    # grouped: each output sees Cin/group = 2 channels x 9 taps; depthwise: 1 channel x 9 taps
    assert [n["flops"] for n in r["nodes"]] == [2 * 8 * 8 * 8 * 2 * 9, 2 * 8 * 4 * 4 * 1 * 9]  # 18432, 2304
    assert r["total"] == 18432 + 2304


@pytest.mark.parametrize("trans_a", [0, 1])
def test_gemm_trans_b_with_bias(trans_a):
    a_shape = [16, 4] if trans_a else [4, 16]  # M = 4, K = 16
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=trans_a, transB=1)
    m = graph_model([node], [("a", a_shape)], [init("b", (10, 16)), init("c", (10,))])  # B^T: K x N = 16 x 10
    # dim 0 of a static input is taken as its batch, so batch_size must agree with it
    assert count_flops(m, batch_size=a_shape[0])["total"] == 2 * 4 * 10 * 16 + 4 * 10 == 1320


def test_gemm_without_bias():
    node = helper.make_node("Gemm", ["a", "b"], ["y"])
    m = graph_model([node], [("a", [3, 5])], [init("b", (5, 2))])
    assert count_flops(m, batch_size=3)["total"] == 2 * 3 * 2 * 5


def test_batched_and_broadcast_matmul():
    # (2, 3, 5, 7) @ (7, 4) -> (2, 3, 5, 4): 120 outputs x 7 MACs
    m = graph_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", [2, 3, 5, 7])], [init("b", (7, 4))])
    assert count_flops(m, batch_size=2)["total"] == 2 * 2 * 3 * 5 * 4 * 7 == 1680
    # (N, 5, 7) @ (2, 1, 7, 4) broadcasts to (2, N, 5, 4): same count at N = 3
    m = graph_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", ["N", 5, 7])], [init("b", (2, 1, 7, 4))])
    assert count_flops(m, batch_size=3)["total"] == 1680


def test_conv_transpose():
    # x (1, 4, 5, 5), w (Cin 4, Cout/group 6, 3, 3), stride 2 -> y (1, 6, 11, 11)
    # every input element scatters into 6 x 9 outputs: 100 x 54 MACs, plus 6 x 121 bias adds
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2])
    m = graph_model([node], [("x", [1, 4, 5, 5])], [init("w", (4, 6, 3, 3)), init("b", (6,))])
    assert count_flops(m)["total"] == 2 * 100 * 54 + 6 * 121 == 11526
    # group 2: w (4, 3, 3, 3) -> Cout 6, each input element reaches 3 x 9 outputs
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], group=2)
    m = graph_model([node], [("x", [1, 4, 5, 5])], [init("w", (4, 3, 3, 3))])
    assert count_flops(m)["total"] == 2 * 100 * 27 == 5400


def test_elementwise_pool_norm_softmax_and_shape_ops():
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "bb", "mu", "var"], ["bn"]),  # 2 x 144
        helper.make_node("Relu", ["bn"], ["r"]),  # 144
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),  # 36 out x 4
        helper.make_node("GlobalAveragePool", ["p"], ["gap"]),  # 36 inputs
        helper.make_node("Flatten", ["gap"], ["f"]),  # 0
        helper.make_node("Softmax", ["f"], ["y"]),  # 5 x 4
    ]
    inits = [init(n, (4,)) for n in ("s", "bb", "mu", "var")]
    r = count_flops(graph_model(nodes, [("x", [1, 4, 6, 6])], inits))
    assert r["by_op"] == {
        "BatchNormalization": 288,
        "Relu": 144,
        "MaxPool": 144,
        "GlobalAveragePool": 36,
        "Flatten": 0,
        "Softmax": 20,
    }
    assert r["total"] == 288 + 144 + 144 + 36 + 20


def test_qdq_conv_counts_like_its_float_source():
    # explicit quantization: x -> Q -> DQ, weight = DQ(int8 initializer), both feed the Conv
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "b"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits = [
        numpy_helper.from_array(np.float32(0.1), "sx"),
        numpy_helper.from_array(np.int8(0), "zx"),
        init("wq", (4, 3, 3, 3), np.int8),
        init("sw", (4,)),
        init("zw", (4,), np.int8),
        init("b", (4,)),
    ]
    qdq = count_flops(graph_model(nodes, [("x", ["N", 3, 8, 8])], inits), batch_size=2)
    fp32 = count_flops(conv_model(), batch_size=2)
    assert qdq["by_op"]["Conv"] == fp32["by_op"]["Conv"] == 2 * CONV_FLOPS
    assert qdq["by_op"]["QuantizeLinear"] == qdq["by_op"]["DequantizeLinear"] == 0
    assert qdq["total"] == fp32["total"] and qdq["uncounted"] == []


def test_unsorted_graph_is_sorted_before_inference():
    # a converter that appends its input Cast last (the fp16 converter does): ORT copes, so must we
    nodes = [helper.make_node("Relu", ["c"], ["y"]), helper.make_node("Cast", ["x"], ["c"], to=F)]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, ["N", 6])], [helper.make_tensor_value_info("y", F, None)]
    )
    r = count_flops(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), batch_size=3)
    assert r["by_op"] == {"Cast": 0, "Relu": 18} and r["uncounted"] == []


def test_unknown_op_is_reported_uncounted():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mystery", ["r"], ["y"], domain="custom")]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, [2, 3])], [helper.make_tensor_value_info("y", F, None)]
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("custom", 1)])
    r = count_flops(m, batch_size=2)
    assert r["total"] == 6 and r["uncounted"] == ["Mystery"]
    assert r["nodes"][1] == {"name": "Mystery_1", "op_type": "Mystery", "flops": None}


def test_dynamic_non_batch_dim_raises_naming_the_input():
    m = graph_model([helper.make_node("Relu", ["img"], ["y"])], [("img", ["N", 3, "H", 8])])
    with pytest.raises(ValueError, match=r"graph input 'img' has dynamic dim 2 \('H'\)"):
        count_flops(m)


def test_static_batch_mismatch_and_bad_batch_size_raise():
    with pytest.raises(ValueError, match="static batch of 1; count with batch_size=1"):
        count_flops(conv_model(batch=1), batch_size=8)
    assert count_flops(conv_model(batch=1))["total"] == CONV_FLOPS
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        count_flops(conv_model(), batch_size=0)


def test_path_input_and_example_model(tmp_path):
    p = tmp_path / "conv.onnx"
    onnx.save(conv_model(), p)
    assert count_flops(p)["total"] == count_flops(str(p))["total"] == CONV_FLOPS
    if EXAMPLE.exists():  # reported, not asserted: the example model may change
        r = count_flops(EXAMPLE)
        print(f"\nexample model {EXAMPLE.name}: {r['total']:,} FLOPs/sample {r['by_op']} uncounted={r['uncounted']}")
