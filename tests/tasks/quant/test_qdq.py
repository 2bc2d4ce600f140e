"""tasks.quant.qdq: explicit Q/DQ INT8 models from precomputed ranges, run in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from tasks.data.split import Split
from tasks.quant import QuantError, calibrate, quantizable_nodes, quantize_qdq
from tests.tasks.quant.conftest import conv_model_with_constant_weights, elementwise_model, save

CASE_NODES = ["node_Conv_19", "node_Conv_20", "node_linear", "node_linear_1"]  # Conv, Conv, Gemm, Gemm


def run(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def eval_x(case) -> np.ndarray:
    return np.ascontiguousarray(Split(case.eval).x)


def inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_quantizable_nodes_lists_the_weighted_ops_in_graph_order(case):
    assert quantizable_nodes(case.model) == CASE_NODES
    assert quantizable_nodes(case.model, op_types=["Gemm"]) == CASE_NODES[2:]


@pytest.mark.parametrize("method", ["entropy", "minmax", "percentile"])
def test_qdq_model_runs_and_agrees_with_fp32(case, ranges, method, tmp_path):
    out = tmp_path / "model.int8.onnx"
    facts = quantize_qdq(case.model, ranges[method], out)
    assert facts["quantized_nodes"] == CASE_NODES == facts["selected_nodes"]
    assert facts["excluded_nodes"] == [] and facts["constants_converted"] == 0
    # one Q/DQ pair per weighted-op input: 4 activations + 4 weights (kept FP32 behind Q->DQ)
    assert facts["quantize_linear"] == facts["dequantize_linear"] == 8
    x = eval_x(case)
    fp32, int8 = run(case.model, x), run(out, x)
    agree = float(np.mean(fp32.argmax(1) == int8.argmax(1)))
    assert agree >= 0.9, f"{method}: top-1 agrees with FP32 on only {agree:.1%} of {len(x)} samples"
    assert not np.array_equal(fp32, int8)  # it really is quantized


def test_qdq_model_is_symmetric_int8_per_channel_with_fp32_bias(case, ranges, tmp_path):
    out = tmp_path / "q.onnx"
    quantize_qdq(case.model, ranges["minmax"], out)
    m = onnx.load(str(out))
    values = inits(m)
    qdq = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for n in qdq:
        zp = values[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name  # signed, zero point 0
    producer = {o: n for n in m.graph.node for o in n.output}
    conv = next(n for n in m.graph.node if n.name == "node_Conv_19")
    assert producer[conv.input[0]].op_type == "DequantizeLinear"
    w_dq = producer[conv.input[1]]
    assert w_dq.op_type == "DequantizeLinear" and values[w_dq.input[1]].shape == (16,)  # per output channel
    assert producer[w_dq.input[0]].op_type == "QuantizeLinear"  # FP32 weight behind Q->DQ (TensorRT 8.x)
    assert conv.input[2] in values and values[conv.input[2]].dtype == np.float32  # bias not int32
    # the input's scale is amax / 127 of its calibrated range
    in_q = next(n for n in qdq if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    lo, hi = ranges["minmax"]["input"]
    assert values[in_q.input[1]] == pytest.approx(max(abs(lo), abs(hi)) / 127, rel=1e-6)
    # no Q/DQ on outputs of weighted ops (TensorRT's placement): the logits come straight from the Gemm
    assert producer["logits"].op_type == "Gemm"

    per_tensor = tmp_path / "pt.onnx"
    assert quantize_qdq(case.model, ranges["minmax"], per_tensor, per_channel=False)["per_channel"] is False
    m = onnx.load(str(per_tensor))
    values, producer = inits(m), {o: n for n in m.graph.node for o in n.output}
    conv = next(n for n in m.graph.node if n.name == "node_Conv_19")
    assert values[producer[conv.input[1]].input[1]].size == 1


def test_one_node_at_a_time_and_exclusions(case, ranges, tmp_path):
    x = eval_x(case)[:8]
    for node in CASE_NODES:
        facts = quantize_qdq(case.model, ranges["minmax"], tmp_path / "one.onnx", nodes_to_quantize=[node])
        assert facts["quantized_nodes"] == [node]
        assert facts["excluded_nodes"] == [n for n in CASE_NODES if n != node]
        assert facts["quantize_linear"] == 2  # its activation input and its weight
        assert run(tmp_path / "one.onnx", x).shape == (8, 10)
    facts = quantize_qdq(case.model, ranges["minmax"], tmp_path / "ex.onnx", nodes_to_exclude=["node_linear_1"])
    assert facts["quantized_nodes"] == CASE_NODES[:3] and facts["excluded_nodes"] == ["node_linear_1"]


def test_unknown_or_filtered_out_node_names_are_clear_errors(case, ranges, tmp_path):
    out = tmp_path / "q.onnx"
    with pytest.raises(QuantError, match="nodes_to_quantize: no node named 'conv1'.*quantizable nodes: node_Conv_19"):
        quantize_qdq(case.model, ranges["minmax"], out, nodes_to_quantize=["conv1"])
    with pytest.raises(QuantError, match="every quantizable node is filtered out"):
        quantize_qdq(case.model, ranges["minmax"], out, nodes_to_exclude=CASE_NODES)
    assert not out.exists()


def test_a_missing_range_names_the_tensor(case, ranges, tmp_path):
    partial = {k: v for k, v in ranges["minmax"].items() if k != "max_pool2d"}
    with pytest.raises(QuantError, match="no calibrated range for tensor 'max_pool2d'"):
        quantize_qdq(case.model, partial, tmp_path / "q.onnx")
    with pytest.raises(QuantError, match=r"invalid activation ranges.*input: \(2.0, 1.0\)"):
        quantize_qdq(case.model, {**ranges["minmax"], "input": (2.0, 1.0)}, tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_weights_in_constant_nodes_are_quantized_as_weights(tmp_path):
    model = conv_model_with_constant_weights()
    assert not model.graph.initializer
    src = save(model, tmp_path / "const.onnx")
    assert quantizable_nodes(src) == ["conv"]
    rng = np.random.default_rng(0)
    batches = [rng.normal(0, 1, (b, 2, 8, 8)).astype(np.float32) for b in (4, 4, 3)]
    r = calibrate(src, iter(batches), "minmax", input_name="x")
    assert set(r) == {"x", "c", "y"}  # the Constant outputs are weights now, not activations
    facts = quantize_qdq(src, r, tmp_path / "q.onnx")
    assert facts["constants_converted"] == 2 and facts["quantized_nodes"] == ["conv"]
    m = onnx.load(str(tmp_path / "q.onnx"))
    assert not [n for n in m.graph.node if n.op_type == "Constant"]
    producer = {o: n for n in m.graph.node for o in n.output}
    w_dq = producer[next(n for n in m.graph.node if n.name == "conv").input[1]]
    w_q = producer[w_dq.input[0]]
    assert w_dq.op_type == "DequantizeLinear" and w_q.op_type == "QuantizeLinear" and w_q.input[0] == "W"
    assert "W" in inits(m) and inits(m)[w_dq.input[1]].shape == (4,)  # per-channel weight scales
    x = batches[0]
    fp32, int8 = run(src, x), run(tmp_path / "q.onnx", x)
    assert np.abs(fp32 - int8).max() <= 0.05 * np.abs(fp32).max()


def test_a_model_with_nothing_quantizable_is_a_clear_error(tmp_path):
    src = save(elementwise_model(), tmp_path / "elementwise.onnx")
    assert quantizable_nodes(src) == []
    with pytest.raises(
        QuantError,
        match=r"nothing to quantize: the model's op types are Add, Neg, Relu; "
        r"quantizable op types are Conv, ConvTranspose, Gemm, MatMul",
    ):
        quantize_qdq(src, {"x": (-1.0, 1.0)}, tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_per_channel_needs_opset_13(tmp_path):
    model = conv_model_with_constant_weights()
    model.opset_import[0].version = 12
    src = save(model, tmp_path / "old.onnx")
    r = {"x": (-1.0, 1.0), "c": (-2.0, 2.0), "y": (0.0, 2.0)}
    with pytest.raises(QuantError, match="per-channel Q/DQ needs ONNX opset >= 13"):
        quantize_qdq(src, r, tmp_path / "q.onnx")
    facts = quantize_qdq(src, r, tmp_path / "q.onnx", per_channel=False)
    assert facts["quantized_nodes"] == ["conv"]


@pytest.mark.parametrize("reduce_range, limit", [(False, 127), (True, 64)])
def test_reduce_range_keeps_int8_weights_within_7_bits(case, ranges, tmp_path, reduce_range, limit):
    from tasks.quant import ORT_EXTRA_OPTIONS

    out = tmp_path / "ort.onnx"
    facts = quantize_qdq(case.model, ranges["minmax"], out, extra_options=ORT_EXTRA_OPTIONS, reduce_range=reduce_range)
    assert facts["reduce_range"] is reduce_range
    m = onnx.load(str(out))
    weights = [v for t, v in inits(m).items() if v.dtype == np.int8 and v.ndim > 1]
    assert len(weights) == len(CASE_NODES)  # ORT layout: every weighted op has int8 weights
    assert max(int(np.abs(w).max()) for w in weights) == limit  # each channel's largest weight maps to the limit
    assert np.mean(run(case.model, eval_x(case)).argmax(1) == run(out, eval_x(case)).argmax(1)) >= 0.9


def test_u8s8_has_uint8_asymmetric_activations_and_full_range_int8_weights(case, ranges, tmp_path):
    from tasks.quant.qdq import ORT_U8S8_OPTIONS

    out = tmp_path / "u8s8.onnx"
    facts = quantize_qdq(case.model, ranges["minmax"], out, extra_options=ORT_U8S8_OPTIONS, activation_type="uint8")
    assert facts["activation_type"] == "uint8" and facts["options"]["ActivationSymmetric"] is False
    m = onnx.load(str(out))
    values = inits(m)
    zero_points = [values[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.uint8 for z in zero_points)
    assert any(int(z) != 128 for z in zero_points)  # asymmetric: the zero point follows the range
    weights = [v for v in values.values() if v.dtype == np.int8 and v.ndim > 1]
    assert len(weights) == len(CASE_NODES) and max(int(np.abs(w).max()) for w in weights) == 127
    assert np.mean(run(case.model, eval_x(case)).argmax(1) == run(out, eval_x(case)).argmax(1)) >= 0.9
    with pytest.raises(QuantError, match="activation_type 'uint4'"):
        quantize_qdq(case.model, ranges["minmax"], out, activation_type="uint4")
