"""Fixtures for the quantization library: the ``exported`` model and ``prepared`` splits of the
shared conftest (untrained seeded MnistCNN, 32 calibration and 96 evaluation real digits), built
once per session (the export alone takes ~10 s), plus tiny hand-built ONNX graphs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tasks.layout import LAYOUT
from tests.conftest import fast_params


@dataclasses.dataclass(frozen=True)
class Case:
    model: Path  # exported FP32 ONNX, input 'input' (batch, 1, 28, 28) float32, output 'logits' (batch, 10)
    calib: Path  # prepared split folder (x.npy, y.npy)
    eval: Path


@pytest.fixture(scope="session")
def case(tmp_path_factory) -> Case:
    """What the ``exported`` + ``prepared`` fixtures make, made once for the session."""
    import torch

    from examples.mnist import MnistCNN
    from tasks import export, prepare
    from tasks.config import Config, from_dict

    root = tmp_path_factory.mktemp("quant-case")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        cfg = from_dict(Config, fast_params())
        torch.manual_seed(0)
        torch.save(MnistCNN().state_dict(), root / "model.pt")
        prepare.run(cfg, root / LAYOUT.prepare_dir, log=lambda m: None)
        export.run(cfg, root / LAYOUT.onnx, log=lambda m: None)
    return Case(root / LAYOUT.onnx, root / LAYOUT.prepare_dir / "calib", root / LAYOUT.prepare_dir / "eval")


def calib_batches(case: Case, batch_size: int = 12):
    """The calibration split as float32 (B, 1, 28, 28) batches; 32 samples -> 12, 12, 8."""
    from tasks.data.split import Split

    return (x for x, _ in Split(case.calib).batches(batch_size))


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def conv_model_with_constant_weights(seed: int = 0) -> onnx.ModelProto:
    """x (N, 2, 8, 8) -> Conv(W, B from Constant nodes, 4 out channels, 3x3, pad 1) -> Relu -> y.
    No initializers at all: the weights are Constant nodes, as some exporters emit them."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, (4, 2, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, (4,)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["W"], name="const_w", value=numpy_helper.from_array(w)),
        helper.make_node("Constant", [], ["B"], name="const_b", value=numpy_helper.from_array(b)),
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "const_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def elementwise_model() -> onnx.ModelProto:
    """x (N, 16) -> Relu -> r; x -> Neg -> n; r + n -> y. Only Relu/Neg/Add: nothing quantizable,
    and every tensor's extremes sit where the input's are."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Neg", ["x"], ["n"], name="neg"),
        helper.make_node("Add", ["r", "n"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "elementwise",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


#: Histogram bins for entropy in tests: its KL search is pure Python in ORT (~1 s per tensor at the
#: default 2048 bins); 512 keeps a real search (windows of 128..512 bins) at a quarter of the cost.
TEST_ENTROPY_BINS = 512


@pytest.fixture(scope="session")
def ranges(case) -> dict:
    """``{method: ranges}`` of every registered calibrator on the case model and calib split."""
    from tasks.quant import CALIBRATORS, calibrate

    return {
        m: calibrate(
            case.model,
            calib_batches(case),
            m,
            input_name="input",
            num_bins=TEST_ENTROPY_BINS if m == "entropy" else None,
        )
        for m in CALIBRATORS.names()
    }


def outlier_mlp(seed: int = 0) -> onnx.ModelProto:
    """x (N, 8) -> Gemm ``first`` (8->8) -> Relu -> Gemm ``wide`` (8->16) -> Relu -> Gemm ``head``
    (16->4) -> y. ``wide`` emits one constant channel of 1000 that ``head`` ignores (zero weights),
    so FP32 is unaffected, but per-tensor INT8 of ``head``'s input (scale ~1000/127) rounds every
    informative feature (~1) to zero: ``head`` is the one clearly sensitive layer."""
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0, 0.5, (8, 8)).astype(np.float32)
    w1 = rng.normal(0, 0.5, (16, 8)).astype(np.float32)
    b1 = np.zeros(16, np.float32)
    w1[0] = 0.0
    b1[0] = 1000.0
    w2 = rng.normal(0, 1.0, (4, 16)).astype(np.float32)
    w2[:, 0] = 0.0
    inits = [
        numpy_helper.from_array(a, n)
        for a, n in (
            (w0, "w0"),
            (np.zeros(8, np.float32), "b0"),
            (w1, "w1"),
            (b1, "b1"),
            (w2, "w2"),
            (np.zeros(4, np.float32), "b2"),
        )
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w0", "b0"], ["g0"], name="first", transB=1),
        helper.make_node("Relu", ["g0"], ["r0"], name="relu0"),
        helper.make_node("Gemm", ["r0", "w1", "b1"], ["g1"], name="wide", transB=1),
        helper.make_node("Relu", ["g1"], ["r1"], name="relu1"),
        helper.make_node("Gemm", ["r1", "w2", "b2"], ["y"], name="head", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "outlier_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def resblock_model(seed: int = 0) -> onnx.ModelProto:
    """A small ResNet-like graph, x (N, 3, 16, 16) -> y (N, 5), every node named:

    - stem: Conv ``stem`` -> BatchNormalization ``bn`` (not folded) -> Relu -> MaxPool -> ``p0``;
    - downsample block: Conv ``a1`` (stride 2) -> Relu -> Conv ``a2``; shortcut Conv ``ds``
      (1x1, stride 2) of ``p0``; Add ``add_ds`` (a2, ds) -> Relu -> ``r1``;
    - identity block: Conv ``b1`` -> Relu -> Conv ``b2``; Add ``add_id`` (b2, r1) -> Relu -> ``r2``;
    - head: Resize ``up`` (x2 nearest) -> InstanceNormalization ``inorm`` -> Conv ``head`` (1x1)
      -> Relu -> GlobalAveragePool ``gap`` -> Flatten -> Gather ``pick`` (3 of 4 features) ->
      LayerNormalization ``ln`` -> Gemm ``fc`` -> y.

    Tensors are named after their producer (``stem`` -> ``stem_out``). The residual inputs are
    ``ds_out`` (downsample block) and ``r1`` (identity block); ``a2_out``/``b2_out`` are the
    branches TensorRT fuses into their Conv."""
    rng = np.random.default_rng(seed)

    def w(name, *shape, scale=None):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        a = rng.normal(0, scale if scale is not None else (2.0 / fan_in) ** 0.5, shape).astype(np.float32)
        return numpy_helper.from_array(a, name)

    inits = [
        w("stem_w", 8, 3, 3, 3),
        w("bn_scale", 8, scale=0.1),
        w("bn_bias", 8, scale=0.1),
        w("bn_mean", 8, scale=0.1),
        numpy_helper.from_array(np.abs(rng.normal(1, 0.1, 8)).astype(np.float32), "bn_var"),
        w("a1_w", 16, 8, 3, 3),
        w("a2_w", 16, 16, 3, 3),
        w("ds_w", 16, 8, 1, 1),
        w("b1_w", 16, 16, 3, 3),
        w("b2_w", 16, 16, 3, 3),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up_scales"),
        numpy_helper.from_array(np.ones(16, np.float32), "in_scale"),
        numpy_helper.from_array(np.zeros(16, np.float32), "in_bias"),
        w("head_w", 4, 16, 1, 1),
        numpy_helper.from_array(np.array([0, 2, 3], np.int64), "pick_idx"),
        numpy_helper.from_array(np.ones(3, np.float32), "ln_scale"),
        numpy_helper.from_array(np.zeros(3, np.float32), "ln_bias"),
        w("fc_w", 5, 3),
        numpy_helper.from_array(np.zeros(5, np.float32), "fc_b"),
    ]
    n = helper.make_node
    conv3 = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        n("Conv", ["x", "stem_w"], ["stem_out"], name="stem", **conv3),
        n("BatchNormalization", ["stem_out", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn_out"], name="bn"),
        n("Relu", ["bn_out"], ["r0"], name="relu0"),
        n("MaxPool", ["r0"], ["p0"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p0", "a1_w"], ["a1_out"], name="a1", strides=[2, 2], **conv3),
        n("Relu", ["a1_out"], ["ar1"], name="relu_a1"),
        n("Conv", ["ar1", "a2_w"], ["a2_out"], name="a2", **conv3),
        n("Conv", ["p0", "ds_w"], ["ds_out"], name="ds", kernel_shape=[1, 1], strides=[2, 2]),
        n("Add", ["a2_out", "ds_out"], ["s1"], name="add_ds"),
        n("Relu", ["s1"], ["r1"], name="relu1"),
        n("Conv", ["r1", "b1_w"], ["b1_out"], name="b1", **conv3),
        n("Relu", ["b1_out"], ["br1"], name="relu_b1"),
        n("Conv", ["br1", "b2_w"], ["b2_out"], name="b2", **conv3),
        n("Add", ["b2_out", "r1"], ["s2"], name="add_id"),
        n("Relu", ["s2"], ["r2"], name="relu2"),
        n("Resize", ["r2", "", "up_scales"], ["up_out"], name="up", mode="nearest"),
        n("InstanceNormalization", ["up_out", "in_scale", "in_bias"], ["inorm_out"], name="inorm"),
        n("Conv", ["inorm_out", "head_w"], ["head_out"], name="head", kernel_shape=[1, 1]),
        n("Relu", ["head_out"], ["rh"], name="relu_head"),
        n("GlobalAveragePool", ["rh"], ["gap_out"], name="gap"),
        n("Flatten", ["gap_out"], ["flat"], name="flatten"),
        n("Gather", ["flat", "pick_idx"], ["pick_out"], name="pick", axis=1),
        n("LayerNormalization", ["pick_out", "ln_scale", "ln_bias"], ["ln_out"], name="ln"),
        n("Gemm", ["ln_out", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "resblock",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
