"""tasks.quant.placement and the TensorRT Q/DQ layout: Q/DQ on the inputs of weighted ops and on
the residual input of residual Adds; none on normalisation, Resize, Gather or pooling inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tasks.quant import ORT_EXTRA_OPTIONS, QuantError, calibrate, quantize_qdq
from tasks.quant.placement import ResidualAdd, residual_adds
from tests.tasks.quant.conftest import resblock_model, save

#: What the TensorRT layout quantizes in ``resblock_model``: each weighted op's activation input
#: (shared by its consumers) and the residual inputs ``ds_out`` and ``r1``.
TRT_TENSORS = {"x", "p0", "ar1", "ds_out", "r1", "br1", "inorm_out", "ln_out"}
WEIGHTED = ["stem", "a1", "a2", "ds", "b1", "b2", "head", "fc"]


def quantized_tensors(path) -> set[str]:
    """Activation tensors with a QuantizeLinear (weights, kept FP32 behind Q->DQ, left out)."""
    m = onnx.load(str(path))
    weights = {t.name for t in m.graph.initializer}
    return {n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in weights}


def node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


@pytest.fixture(scope="module")
def resblock(tmp_path_factory):
    """``(model path, minmax ranges of every tensor, evaluation batch)``."""
    src = save(resblock_model(), tmp_path_factory.mktemp("resblock") / "resblock.onnx")
    rng = np.random.default_rng(0)
    batches = [rng.normal(0, 1, (8, 3, 16, 16)).astype(np.float32) for _ in range(4)]
    ranges = calibrate(src, iter(batches), "minmax", input_name="x")
    return src, ranges, rng.normal(0, 1, (16, 3, 16, 16)).astype(np.float32)


def test_residual_adds_follow_model_optimizers_rule():
    """Downsample block: both inputs have a Conv backbone; the branch farther from the common
    ancestor (a2, 3 nodes from p0) is fused, the shortcut Conv's output is the residual input.
    Identity block: only b2 has a backbone (r1 comes from a Relu after an Add)."""
    assert residual_adds(resblock_model()) == [
        ResidualAdd(add="add_ds", residual="ds_out", fused="a2_out", backbone="a2"),
        ResidualAdd(add="add_id", residual="r1", fused="b2_out", backbone="b2"),
    ]


def _graph(nodes, inits) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", 4, 8, 8]) for o in nodes[-1].output],
        [numpy_helper.from_array(np.full(s, 0.1, np.float32), n) for n, s in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_adds_that_are_not_residual():
    """No residual Add: a bias Add (constant input), an Add with a graph input, and the ConvNeXt
    shape Conv -> Add + Conv -> Relu -> Add, where the common ancestor is the backbone itself."""
    w = {"w": (4, 4, 1, 1), "b": (1, 4, 1, 1)}
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv")
    relu = helper.make_node("Relu", ["c"], ["r"], name="relu")
    bias = _graph([conv, helper.make_node("Add", ["c", "b"], ["y"], name="add")], w)
    graph_input = _graph([conv, helper.make_node("Add", ["c", "x"], ["y"], name="add")], w)
    convnext = _graph([conv, relu, helper.make_node("Add", ["c", "r"], ["y"], name="add")], w)
    for model in (bias, graph_input, convnext):
        onnx.checker.check_model(model)
        assert residual_adds(model) == []


def test_tensorrt_layout_quantizes_weighted_inputs_and_residual_inputs_only(resblock, tmp_path):
    src, ranges, _ = resblock
    out = tmp_path / "trt.onnx"
    facts = quantize_qdq(src, ranges, out)
    assert quantized_tensors(out) == TRT_TENSORS
    # none on normalisation, Resize, Gather or pooling inputs (the ORT layout puts some there)
    assert not quantized_tensors(out) & {"stem_out", "r0", "r2", "up_out", "rh", "flat", "pick_out", "bn_out"}
    assert facts["residual_adds"] == ["add_ds", "add_id"]
    assert facts["quantize_linear"] == facts["dequantize_linear"] == len(TRT_TENSORS) + len(WEIGHTED)
    assert facts["options"]["EdgeForgePlacement"] == "tensorrt"
    m = onnx.load(str(out))
    producer = {o: n for n in m.graph.node for o in n.output}
    for add, fused, conv in (("add_ds", "a2_out", "a2"), ("add_id", "b2_out", "b2")):
        ins = {producer[i].op_type: producer[i] for i in node(m, add).input}
        assert ins["Conv"].name == conv and fused in node(m, add).input  # Conv straight into the Add: fusible
        assert ins["DequantizeLinear"].output[0] != fused  # the other input is the dequantized residual
    for op in ("BatchNormalization", "Resize", "InstanceNormalization", "Gather", "LayerNormalization"):
        n = next(n for n in m.graph.node if n.op_type == op)
        assert all(producer[i].op_type != "DequantizeLinear" for i in n.input if i in producer), op


def test_ort_placement_is_unchanged_and_adds_no_residual_qdq(resblock, tmp_path):
    src, ranges, _ = resblock
    out = tmp_path / "ort.onnx"
    facts = quantize_qdq(src, ranges, out, extra_options=ORT_EXTRA_OPTIONS)
    assert facts["residual_adds"] == [] and facts["options"]["EdgeForgePlacement"] == "ort"
    # ORT's own registry: normalisation, pooling and Resize inputs quantized, outputs of weighted ops too
    assert {"stem_out", "r0", "up_out", "a2_out", "b2_out"} <= quantized_tensors(out)


def test_residual_input_is_quantized_only_when_its_conv_is(resblock, tmp_path):
    """A Conv kept FP32 fuses nothing in INT8: its Add's residual input gets no Q/DQ."""
    src, ranges, _ = resblock
    facts = quantize_qdq(src, ranges, tmp_path / "ex.onnx", nodes_to_exclude=["a2"])
    assert facts["residual_adds"] == ["add_id"]
    assert quantized_tensors(tmp_path / "ex.onnx") == TRT_TENSORS - {"ar1", "ds_out"}
    facts = quantize_qdq(src, ranges, tmp_path / "one.onnx", nodes_to_quantize=["b2"])
    assert facts["residual_adds"] == ["add_id"] and quantized_tensors(tmp_path / "one.onnx") == {"br1", "r1"}
    facts = quantize_qdq(src, ranges, tmp_path / "ds.onnx", nodes_to_quantize=["ds"])
    assert facts["residual_adds"] == [] and quantized_tensors(tmp_path / "ds.onnx") == {"p0"}


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_tensorrt_layout_runs_and_stays_close_to_fp32(resblock, tmp_path, runtime):
    src, ranges, x = resblock
    out = tmp_path / "trt.onnx"
    quantize_qdq(src, ranges, out)

    def run(path) -> np.ndarray:
        if runtime == "openvino":
            import openvino as ov

            return ov.Core().compile_model(str(path), "CPU")(x)[0]
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0]

    fp32, int8 = run(src), run(out)
    rel = float(np.linalg.norm(int8 - fp32) / np.linalg.norm(fp32))
    assert 0 < rel < 0.15, f"{runtime}: relative L2 error {rel:.3f} against FP32"


def test_unknown_placement_is_a_clear_error(resblock, tmp_path):
    src, ranges, _ = resblock
    out = tmp_path / "q.onnx"
    with pytest.raises(QuantError, match=r"EdgeForgePlacement='trt' is not a Q/DQ placement; use one of tensorrt, ort"):
        quantize_qdq(src, ranges, out, extra_options={"EdgeForgePlacement": "trt"})
    assert not out.exists()


def test_a_missing_residual_range_names_the_tensor(resblock, tmp_path):
    src, ranges, _ = resblock
    partial = {k: v for k, v in ranges.items() if k != "ds_out"}
    with pytest.raises(QuantError, match="no calibrated range for tensor 'ds_out'"):
        quantize_qdq(src, partial, tmp_path / "q.onnx")
