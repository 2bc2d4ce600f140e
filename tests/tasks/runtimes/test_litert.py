"""LiteRT on this CPU: a tiny two-output model (a class map, NCHW, and a pooled vector) exported to
ONNX, converted at every precision (onnx2tf + TFLite's converter, INT8 calibrated on real MNIST
digits), run by ai_edge_litert's Interpreter and compared with ONNX Runtime on other real digits.
Tolerances are loose (INT8: a tenth of the output's range): what is checked is names, layout and
that each precision computes the model, not the converter's rounding. One conversion ~1-3 s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from examples.mnist import digits
from tasks.agent import agent
from tasks.agent.litert_model import LiteRTModel
from tasks.device.support import support
from tasks.runtimes import BuildError, Session, get_runtime, litert_convert
from tasks.runtimes.base import HostSource
from tasks.runtimes.litert_convert import ConversionError

OUTPUTS = ["classmap", "pooled"]


@pytest.fixture(scope="module")
def mnist() -> np.ndarray:
    """Real MNIST digits as float32 (N, 1, 28, 28) in [0, 1]."""
    x = digits()[0].astype(np.float32).reshape(-1, 1, 28, 28)
    return x / x.max()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A seeded conv net, dynamic batch: ``classmap`` (B, 3, 14, 14) = 1x1 conv of ReLU(3x3 conv,
    stride 2) and ``pooled`` (B, 5) = its spatial mean. Written with onnx.helper: no exporter to wait for."""
    rng = np.random.default_rng(0)
    w = {
        "w1": rng.normal(0, 0.5, (5, 1, 3, 3)), "b1": rng.normal(0, 0.1, 5),
        "w2": rng.normal(0, 0.5, (3, 5, 1, 1)), "b2": rng.normal(0, 0.1, 3),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["h"]),
        helper.make_node("Conv", ["h", "w2", "b2"], ["classmap"]),
        helper.make_node("ReduceMean", ["h"], ["pooled"], axes=[2, 3], keepdims=0),
    ]
    shapes = {"input": ["batch", 1, 28, 28], "classmap": ["batch", 3, 14, 14], "pooled": ["batch", 5]}
    io = {n: helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in shapes.items()}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()]
    graph = helper.make_graph(nodes, "tiny", [io["input"]], [io[n] for n in OUTPUTS], inits)
    path = tmp_path_factory.mktemp("tiny") / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def converted(tiny_onnx, mnist, tmp_path_factory) -> dict:
    """``{precision: (artifact, meta)}``, INT8 calibrated on the first 24 digits in batches of 8."""
    calib = lambda: iter([mnist[i : i + 8] for i in range(0, 24, 8)])  # noqa: E731
    out = tmp_path_factory.mktemp("litert")
    return {p: litert_convert.convert(tiny_onnx, p, calib, out / p, threads=1) for p in litert_convert.PRECISIONS}


def _ort(path: Path, x: np.ndarray) -> dict:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip(OUTPUTS, s.run(OUTPUTS, {"input": x})))


def _ort_named(path: Path, x: np.ndarray, name: str) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run([name], {"input": x})[0]


@pytest.mark.parametrize("precision", litert_convert.PRECISIONS)
def test_each_precision_runs_nchw_by_onnx_names_and_agrees_with_onnxruntime(precision, converted, tiny_onnx, mnist):
    artifact, meta = converted[precision]
    x = mnist[100:103]  # not calibration samples, and a batch of 3 (the model's batch is dynamic)
    ref = _ort(tiny_onnx, x)
    model = LiteRTModel(artifact, threads=1)
    assert artifact.name == "model.tflite"
    assert (model.input_name, sorted(model.output_names)) == ("input", sorted(OUTPUTS))
    assert (model.min_batch, model.max_batch, model.data_dependent) == (1, None, [])
    got = model.infer(x)
    assert {n: got[n].shape for n in OUTPUTS} == {"classmap": (3, 3, 14, 14), "pooled": (3, 5)}
    assert all(got[n].dtype == np.float32 for n in OUTPUTS)
    for n in OUTPUTS:
        span = float(ref[n].max() - ref[n].min())
        atol = {"fp32": 1e-4, "fp16": 1e-2 * span, "int8-minmax": 0.1 * span}[precision]
        np.testing.assert_allclose(got[n], ref[n], atol=atol, rtol=0, err_msg=f"{precision} {n}")
    assert meta["converter"] == "onnx2tf"
    assert set(meta["versions"]) == {"onnx2tf", "tensorflow", "ai_edge_litert"}
    assert meta["io"] == {"input": "input", "layout": "NCHW float32", "outputs": OUTPUTS}


def test_what_each_precision_did_is_recorded(converted):
    fp32, fp16, int8 = (converted[p][1] for p in litert_convert.PRECISIONS)
    assert fp32["quantization"]["kind"].startswith("none") and fp32["int8_ops"] == 0
    assert fp16["quantization"]["kind"].startswith("float16 weights") and fp16["int8_ops"] == 0
    assert int8["quantization"]["calibration_samples"] == 24  # every calibration sample, none invented
    assert int8["quantization"]["calibrator"].startswith("TFLite converter: min/max")
    assert int8["int8_ops"] > 0


def test_steps_are_infer_split_in_three(converted, mnist):
    model = LiteRTModel(converted["fp32"][0], threads=1)
    x, names = mnist[:2], [n for n, _ in model.steps()]
    assert names == ["input_copy", "compute", "output_copy"]
    value = x
    for _, step in model.steps():
        value = step(value)
    want = model.infer(x)
    assert {n: v.tolist() for n, v in value.items()} == {n: v.tolist() for n, v in want.items()}


def test_batch_size_changes_and_a_file_that_is_no_tflite_is_refused(converted, mnist, tmp_path):
    model = LiteRTModel(converted["fp32"][0], threads=1)
    assert model.infer(mnist[:1])["pooled"].shape == (1, 5)  # resized back down after a batch of 3
    not_tflite = tmp_path / "model.tflite"
    not_tflite.write_bytes(b"not a flatbuffer")
    with pytest.raises(agent.AgentError, match="ai_edge_litert cannot load"):
        LiteRTModel(not_tflite)


def test_a_model_onnx2tf_cannot_convert_is_refused_by_name(tmp_path, mnist):
    like = numpy_helper.from_array(np.zeros((1,), np.float16), "like")
    nodes = [helper.make_node("CastLike", ["input", "like"], ["h"]), helper.make_node("Cast", ["h"], ["y"], to=1)]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1, 28, 28]) for n in ("input", "y")]
    graph = helper.make_graph(nodes, "castlike", io[:1], io[1:], [like])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    ort.InferenceSession(str(tmp_path / "m.onnx"))  # a valid model: ONNX Runtime runs it
    with pytest.raises(ConversionError, match=r"onnx2tf \S+ cannot convert .*CastLike"):
        litert_convert.convert(tmp_path / "m.onnx", "fp32", lambda: iter([mnist[:2]]), tmp_path / "out")
    assert not (tmp_path / "out" / "model.tflite").exists()


def test_no_calibration_data_is_an_error_not_random_data(tiny_onnx, tmp_path):
    with pytest.raises(ConversionError, match="calibration split gave no batch"):
        litert_convert.convert(tiny_onnx, "int8-minmax", lambda: iter([]), tmp_path / "out")


def test_support_says_which_litert_builds_apply():
    fp = {"cpu": {"model": "Some CPU", "flags": ["avx2", "fma"]}}
    for p in ("bf16", "int8-entropy", "int8-percentile", "int8-mixed"):
        assert "build fp32 or fp16 or int8-minmax for this target" in support(fp, "litert", p).skipped
    assert support(fp, "litert", "fp32").skipped is None and support(fp, "litert", "int8-minmax").skipped is None
    # fp16 is emulated on every CPU: float16 weights, FP32 compute
    assert "upcasts float16 weights" in support(fp, "litert", "fp16", "measure").emulated
    assert "bench.emulated: measure" in support(fp, "litert", "fp16").skipped


def test_the_runtime_converts_a_host_source_and_the_agent_knows_its_model(tiny_onnx, mnist, tmp_path):
    runtime = get_runtime("litert")
    assert (runtime.converts_on_host, runtime.artifact_suffix) == (True, ".tflite")
    assert agent.MODELS["litert"] is LiteRTModel and agent.runtime_version("litert") == runtime.version()

    def src(precision: str) -> HostSource:
        unused = lambda: pytest.fail("LiteRT converts the ONNX export, not the PyTorch model")  # noqa: E731
        return HostSource(precision, tmp_path / "q.onnx", tiny_onnx, unused, (1, 28, 28), lambda: iter([mnist[:4]]))

    built = runtime.convert(src("fp32"), tmp_path / "fp32")
    assert built.artifact == tmp_path / "fp32" / "model.tflite" and built.meta["converter"] == "onnx2tf"
    session = runtime.load(built.artifact, threads=1)
    assert isinstance(session, Session) and session.infer(mnist[:2])["pooled"].shape == (2, 5)
    with pytest.raises(BuildError, match="LiteRT builds fp32, fp16, int8-minmax, not int8-entropy"):
        runtime.convert(src("int8-entropy"), tmp_path / "entropy")


def test_maxpool_padding_does_not_wreck_int8_calibration(tmp_path, mnist):
    """ResNet's stem (ReLU, then a 3x3/2 MaxPool padded by 1): onnx2tf pads explicitly, with the float
    minimum unless in its INT8 mode; TFLite's calibration then gave the pooled tensor a scale of ~1e36
    and the interpreter aborted the process. The conversion uses the INT8 mode, and refuses such a model."""
    w = numpy_helper.from_array(np.random.default_rng(1).normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["pooled"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    io = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])]
    io.append(helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 4, 14, 14]))
    graph = helper.make_graph(nodes, "stem", io[:1], io[1:], [w])
    path = tmp_path / "stem.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    calib = lambda: iter([mnist[:8]])  # noqa: E731
    art, meta = litert_convert.convert(path, "int8-minmax", calib, tmp_path / "int8")
    got = LiteRTModel(art).infer(mnist[8:10])["pooled"]
    ref = _ort_named(path, mnist[8:10], "pooled")
    np.testing.assert_allclose(got, ref, atol=0.1 * float(ref.max() - ref.min()), rtol=0)
    # the same model converted outside onnx2tf's INT8 mode: refused before the interpreter sees it
    keras = litert_convert.to_keras(path, "input", mnist[:2], tmp_path)
    perms = litert_convert.output_layouts(keras, path, "input", mnist[:2])
    data, _ = litert_convert.tflite_bytes(keras, "input", [None, 1, 28, 28], perms, "int8-minmax", calib)
    (tmp_path / "bad.tflite").write_bytes(data)
    with pytest.raises(ConversionError, match="a float extreme joined its range"):
        litert_convert.check_scales(tmp_path / "bad.tflite")
