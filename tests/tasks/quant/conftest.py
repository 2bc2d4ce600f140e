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
