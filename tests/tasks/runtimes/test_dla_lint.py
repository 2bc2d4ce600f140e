"""The pre-upload DLA lint on tiny ONNX models made with onnx.helper: one per rule of "DLA Supported
Layers and Restrictions" it implements (refusals for inputs DLA cannot take; predicted GPU fallbacks
for the rest), each with a model that passes the same rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tasks.runtimes.base import BuildError
from tasks.runtimes.dla_lint import check, predicted_fallbacks


def model(nodes, shape=(1, 8, 16, 16), inits=(), out_shape=None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in dict(inits).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def reasons(m: onnx.ModelProto) -> dict[str, str]:
    return {f["node"]: f["reason"] for f in predicted_fallbacks(m)}


def weight(cout: int, cin: int, k: int, d: int = 2) -> np.ndarray:
    return np.zeros((cout, cin, *([k] * d)), np.float32)


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((1, 3, "height", 224), "dimension 2 is dynamic \\(height\\): DLA does not support dynamic dimensions"),
        ((5000, 3, 8, 8), "batch 5000: DLA's maximum batch is 4096"),
        ((1, 3, 8, 9000), "dimension 3 is 9000: DLA's maximum is 8192"),
    ],
)
def test_inputs_dla_cannot_take_are_refused_before_the_upload(shape, match, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(model([helper.make_node("Relu", ["x"], ["y"], name="r")], shape), str(path))
    with pytest.raises(BuildError, match=f"(?s)orin: .*cannot run on DLA.*{match}.*Nothing was uploaded"):
        check(path, "orin")


def test_a_dynamic_batch_is_fine_the_build_fixes_it(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(model([helper.make_node("Relu", ["x"], ["y"], name="r")], ("batch", 3, 8, 8)), str(path))
    assert check(path, "orin") == {"dla_lint": {"predicted_fallbacks": [], "predicted_share": 0.0}}


def test_convolution_limits():
    conv = lambda name, w, **kw: helper.make_node("Conv", ["x", w], [name], name=name, **kw)  # noqa: E731
    m = model(
        [
            conv("ok", "w3", pads=[1, 1, 1, 1], strides=[2, 2]),
            conv("big_kernel", "w33"),
            conv("pad_ge_kernel", "w3", pads=[3, 3, 3, 3]),
            conv("stride_9", "w3", strides=[9, 9]),
            conv("dilation_33", "w3", dilations=[33, 33]),
            conv("conv3d", "w3d"),
        ],
        inits={"w3": weight(8, 8, 3), "w33": weight(8, 8, 33), "w3d": weight(8, 8, 3, 3)},
    )
    why = reasons(m)
    assert "ok" not in why
    assert why["big_kernel"] == "kernel size 33 is outside [1, 32]"
    assert why["pad_ge_kernel"] == "padding [3, 3, 3, 3] is not smaller than the kernel [3, 3]"
    assert why["stride_9"] == "stride 9 is outside [1, 8]"
    assert why["dilation_33"] == "dilation 33 is outside [1, 32]"
    assert why["conv3d"] == "3 spatial dimensions: DLA runs two only"


def test_the_kernel_of_a_quantized_weight_comes_from_its_inferred_shape():
    """A Q/DQ model's Conv reads its weight through DequantizeLinear and may carry no kernel_shape."""
    m = model(
        [
            helper.make_node("DequantizeLinear", ["w3_q", "scale"], ["w3"], name="dq3"),
            helper.make_node("DequantizeLinear", ["w33_q", "scale"], ["w33"], name="dq33"),
            helper.make_node("Conv", ["x", "w3"], ["a"], name="conv3", pads=[1, 1, 1, 1]),
            helper.make_node("Conv", ["a", "w33"], ["y"], name="conv33"),
        ],
        inits={"scale": 0.1},
    )
    for name, k in (("w3_q", 3), ("w33_q", 33)):
        m.graph.initializer.append(numpy_helper.from_array(np.zeros((8, 8, k, k), np.int8), name))
    assert reasons(m) == {"conv33": "kernel size 33 is outside [1, 32]"}


def test_deconvolution_needs_zero_padding_one_group_no_dilation():
    deconv = lambda name, w, **kw: helper.make_node("ConvTranspose", ["x", w], [name], name=name, **kw)  # noqa: E731
    m = model(
        [
            deconv("ok", "w2", strides=[2, 2]),
            deconv("wide_ok", "w1x64"),
            deconv("padded", "w2", pads=[1, 1, 1, 1]),
            deconv("grouped", "w2", group=2),
            deconv("square_24", "w24"),
        ],
        inits={"w2": weight(8, 8, 2), "w1x64": np.zeros((8, 8, 1, 64), np.float32), "w24": weight(8, 8, 24)},
    )
    why = reasons(m)
    assert "ok" not in why and "wide_ok" not in why
    assert why["padded"] == "padding must be 0"
    assert why["grouped"] == "grouped deconvolution must be 1"
    assert why["square_24"] == "square kernels in [23, 32] are disabled on DLA"


def test_pooling_limits():
    pool = lambda name, op="MaxPool", **kw: helper.make_node(op, ["x"], [name], name=name, **kw)  # noqa: E731
    m = model(
        [
            pool("ok", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
            pool("kernel_9", "AveragePool", kernel_shape=[9, 9]),
            pool("stride_17", kernel_shape=[2, 2], strides=[17, 17]),
            pool("pad_8", kernel_shape=[8, 8], pads=[8, 8, 8, 8]),
        ]
    )
    why = reasons(m)
    assert "ok" not in why
    assert why["kernel_9"] == "kernel size 9 is outside [1, 8]"
    assert why["stride_17"] == "stride 17 is outside [1, 16]"
    assert why["pad_8"] == "padding 8 is outside [0, 7]"


def test_activations_and_clipped_relu():
    m = model(
        [
            helper.make_node("Relu", ["x"], ["a"], name="relu"),
            helper.make_node("Clip", ["a", "zero", "six"], ["b"], name="relu6"),
            helper.make_node("Clip", ["b", "minus_one", "six"], ["c"], name="clip_negative"),
            helper.make_node("HardSwish", ["c"], ["d"], name="hardswish"),
            helper.make_node("Exp", ["d"], ["e"], name="exp"),
            helper.make_node("Abs", ["e"], ["f"], name="abs"),
        ],
        inits={"zero": 0.0, "six": 6.0, "minus_one": -1.0},
    )
    why = reasons(m)
    assert set(why) == {"clip_negative", "hardswish", "exp"}
    assert why["clip_negative"] == "Clip(-1.0, 6.0) is not a Clipped ReLU with its maximum in [1, 127]"
    assert why["hardswish"].startswith("HardSwish is not one of DLA's activations (ReLU, Sigmoid, TanH")
    assert why["exp"] == "Exp: DLA's Unary layer runs ABS only"


def test_elementwise_division_and_constant_inputs():
    value = numpy_helper.from_array(np.ones((1, 8, 1, 1), np.float32))
    shape = numpy_helper.from_array(np.array([1, -1], np.int64))
    m = model(
        [
            helper.make_node("Constant", [], ["k"], name="/head/Constant_output_0", value=value),
            helper.make_node("Mul", ["x", "k"], ["a"], name="mul"),
            helper.make_node("Div", ["a", "k"], ["b"], name="/head/Div"),
            helper.make_node("Constant", [], ["s"], name="shape_const", value=shape),
            helper.make_node("Reshape", ["b", "s"], ["y"], name="reshape"),
        ]
    )
    why = reasons(m)
    assert why["/head/Constant_output_0"] == "a Constant layer feeding Div, Mul: DLA runs no Constant layers"
    assert why["/head/Div"] == "DIV: DLA's ElementWise layer runs Sum, Sub, Product, Max and Min only"
    assert "mul" not in why and "shape_const" not in why  # a shape input is read at build time, not a layer
    assert why["reshape"].startswith("Reshape becomes a Shuffle layer")


def test_concatenation_on_the_channel_axis_and_4d_slices():
    m = model(
        [
            helper.make_node("Concat", ["x", "x"], ["c1"], name="channels", axis=1),
            helper.make_node("Concat", ["c1", "c1"], ["c2"], name="height", axis=2),
            helper.make_node("Slice", ["c2", "starts", "ends", "axes"], ["s4"], name="slice_4d"),
            helper.make_node("Reshape", ["s4", "shape3"], ["r3"], name="to_3d"),
            helper.make_node("Slice", ["r3", "starts", "ends", "axes"], ["y"], name="slice_3d"),
        ],
        inits={"starts": np.array([0]), "ends": np.array([4]), "axes": np.array([1]), "shape3": np.array([1, 16, -1])},
    )
    for t in m.graph.initializer:  # Slice/Reshape take int64 inputs
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.int64), t.name))
    why = reasons(m)
    assert "channels" not in why and "slice_4d" not in why
    assert why["height"] == "concatenation on axis 2: DLA concatenates along the channel axis only"
    assert why["slice_3d"] == "a 3-D input: DLA slices 4-D tensors only"


def test_resize_scales():
    resize = lambda name, scales, mode="nearest": helper.make_node(  # noqa: E731
        "Resize", ["x", "", scales], [name], name=name, mode=mode
    )
    m = model(
        [resize("x2", "s2"), resize("x1_5", "s1_5"), resize("linear_x8", "s8", "linear"), resize("batch", "sb")],
        inits={"s2": [1, 1, 2, 2], "s1_5": [1, 1, 1.5, 1.5], "s8": [1, 1, 8, 8], "sb": [2, 1, 2, 2]},
    )
    why = reasons(m)
    assert "x2" not in why
    assert why["x1_5"] == "scales [1.5, 1.5]: height and width scales must be integers in [1, 32] for this mode"
    assert why["linear_x8"] == "scales [8.0, 8.0]: height and width scales must be integers in [1, 4] for this mode"
    assert why["batch"] == "scales [2.0, 1.0, 2.0, 2.0]: DLA needs exactly 4 with the first two 1"


def test_global_pooling_and_operators_without_a_dla_layer(tmp_path):
    m = model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
            helper.make_node("GlobalAveragePool", ["c"], ["g"], name=""),
            helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
            helper.make_node("TopK", ["f", "k"], ["y", "i"], name="topk"),
        ],
        inits={"w": weight(8, 8, 1), "k": np.array([1], np.int64)},
    )
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array([1], np.int64), "k"))
    why = reasons(m)
    assert why["node_of_g"].startswith("GlobalAveragePool is imported as a Reduce layer")  # TensorRT's name for it
    assert why["topk"] == "TopK has no DLA layer in 'DLA Supported Layers and Restrictions'"
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    lint = check(path, "orin")["dla_lint"]
    assert [f["node"] for f in lint["predicted_fallbacks"]] == ["node_of_g", "flatten", "topk"]
    assert lint["predicted_share"] == 0.75


def test_an_unreadable_model_is_refused_by_name(tmp_path):
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(BuildError, match=f"orin: cannot read {bad} to check it against DLA's restrictions"):
        check(Path(bad), "orin")
