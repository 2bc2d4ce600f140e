"""Models whose outputs are not per-sample (NonZero: ``[rank, K]``, NonMaxSuppression: ``[K, 3]``, K
depending on the values) on ONNX Runtime and OpenVINO, built and run for real: a batch's rows cannot be
joined with another's, so ``infer`` runs all the samples in one call (``agent.infer_all``), and refuses
a model whose fixed batch cannot take them at once, naming what to change."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tasks.agent import agent
from tasks.data.split import Split, save_split
from tasks.runtimes import get_runtime
from tasks.runtimes.base import BuildError, BuildOptions
from tasks.runtimes.local import local_outputs
from tasks.runtimes.openvino_rt import onnx_io_names

AGENT = Path(agent.__file__)
RUNTIMES = ["onnxruntime", "openvino"]


def nonzero_model(path: Path, batch: int | str = "batch") -> Path:
    """input (batch, 1, 4, 4) -> Relu -> y (per sample), NonZero(y) -> idx (4, K): y's non-zero indices,
    row 0 the sample's index in the whole batch."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 4, 4])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["y"]), helper.make_node("NonZero", ["y"], ["idx"])],
        "nonzero",
        [x],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 1, 4, 4]),
            helper.make_tensor_value_info("idx", TensorProto.INT64, [4, "K"]),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def nms_model(path: Path) -> Path:
    """input (batch, 1, 4, 4) read as 4 boxes of 4 coordinates per sample, scores from their first
    coordinate -> NonMaxSuppression -> selected (K, 3) (sample, class, box), and logits (batch, 16)."""
    c = {
        n: numpy_helper.from_array(np.array(v, np.int64), n)
        for n, v in {
            "boxes_shape": [0, 4, 4],
            "scores_shape": [0, 1, 4],
            "s0": [0],
            "s1": [1],
            "axis": [2],
            "k": [10],
        }.items()
    }
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["input", "boxes_shape"], ["boxes"]),
            helper.make_node("Slice", ["boxes", "s0", "s1", "axis"], ["first"]),
            helper.make_node("Reshape", ["first", "scores_shape"], ["scores"]),
            helper.make_node("NonMaxSuppression", ["boxes", "scores", "k"], ["selected"]),
            helper.make_node("Flatten", ["input"], ["logits"]),
        ],
        "nms",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 4, 4])],
        [
            helper.make_tensor_value_info("selected", TensorProto.INT64, None),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, None),
        ],
        list(c.values()),
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def samples(n: int = 7) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 1, 4, 4)).astype(np.float32)


def reference(model: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """ONNX Runtime's outputs of ``model`` for all of ``x`` in one call."""
    s = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return {o.name: v.astype(np.float32) for o, v in zip(s.get_outputs(), s.run(None, {"input": x}))}


def built(runtime: str, onnx_path: Path, out: Path) -> Path:
    out.mkdir()
    return get_runtime(runtime).build(onnx_path, "fp32", out, BuildOptions()).artifact


@pytest.fixture
def split(tmp_path) -> Split:
    x = samples()
    save_split(tmp_path / "split", x, np.zeros(len(x), np.int64))
    return Split(tmp_path / "split")


def test_shape_inference_tells_per_sample_outputs_from_data_dependent_ones(tmp_path):
    assert agent.not_per_sample("batch", [("y", ["batch", 3]), ("idx", [4, "unk__0"]), ("sel", ["unk__1", 3])]) == [
        "idx",
        "sel",
    ]
    assert agent.not_per_sample(1, [("y", [1, 10]), ("idx", [4, None]), ("s", [])]) == ["idx", "s"]
    assert agent.not_per_sample(None, [("y", [None, 10]), ("s", [])]) == ["s"]  # batch unknown: only scalars
    assert onnx_io_names(nonzero_model(tmp_path / "nz.onnx"))["not_per_sample"] == ["idx"]
    assert onnx_io_names(nms_model(tmp_path / "nms.onnx"))["not_per_sample"] == ["selected"]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("make", [nonzero_model, nms_model])
def test_data_dependent_outputs_come_from_one_call_over_every_sample(runtime, make, tmp_path, split):
    """eval.batch_size 2 over 7 samples: NonZero's / NMS's rows are those of one call over the 7 (per-batch
    calls would give rows with batch-local sample indices, and NonZero's could not even be concatenated)."""
    model = make(tmp_path / "m.onnx")
    art = built(runtime, model, tmp_path / "build")
    sess = get_runtime(runtime).load(art)
    assert sess.data_dependent == ["idx" if make is nonzero_model else "selected"]
    got, want = local_outputs(art, runtime, split, 2), sess.infer(samples())  # the runtime's own NMS rules
    if runtime == "onnxruntime":
        assert all(np.array_equal(want[k], v) for k, v in reference(model, samples()).items())
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6, rtol=0)
    dd = sess.data_dependent[0]
    sample = want[dd][0] if make is nonzero_model else want[dd][:, 0]  # the sample each row belongs to
    assert sample.max() >= 2  # rows of samples beyond the first batch of 2


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_per_sample_outputs_still_run_batch_by_batch(runtime, tmp_path, split):
    """A fixed batch of 2 with only per-sample outputs (NonZero dropped): batches of 2, joined (the last
    batch of 1 is refused by the runtime itself, so 6 samples)."""
    model = onnx.load(str(nonzero_model(tmp_path / "nz.onnx", batch=2)))
    del model.graph.output[1], model.graph.node[1]
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    art = built(runtime, tmp_path / "fixed.onnx", tmp_path / "build")
    assert get_runtime(runtime).load(art).data_dependent == []
    got = local_outputs(art, runtime, split, 2, limit=6)
    np.testing.assert_allclose(got["y"], np.maximum(samples()[:6], 0), atol=1e-6, rtol=0)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_fixed_batch_that_cannot_take_every_sample_is_refused(runtime, tmp_path, split):
    art = built(runtime, nonzero_model(tmp_path / "nz.onnx", batch=2), tmp_path / "build")
    with pytest.raises(BuildError) as e:
        local_outputs(art, runtime, split, 2)
    msg = str(e.value)
    assert "['idx'] have data-dependent shapes" in msg and "the 7 samples must run in one call" in msg
    assert "a batch of exactly 2 (input)" in msg
    assert "model.input.dynamic_batch: true" in msg and "eval.batch_size" in msg and "data.eval.limit" in msg
    # the two samples its batch takes run
    got = local_outputs(art, runtime, split, 2, limit=2)
    np.testing.assert_array_equal(got["idx"], reference(tmp_path / "nz.onnx", samples()[:2])["idx"])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_device_agent_infers_data_dependent_outputs_in_one_call(runtime, tmp_path):
    """``agent.py infer`` as a device runs it (a subprocess, batch_size 3 over 7 samples)."""
    model = nonzero_model(tmp_path / "nz.onnx")
    art = built(runtime, model, tmp_path / "build")
    x = samples()
    np.save(tmp_path / "x.npy", x)
    req = {"runtime": runtime, "artifact": str(art), "input": "x.npy", "output": "y.npz", "batch_size": 3, "threads": 1}
    done = subprocess.run(
        [sys.executable, str(AGENT), "infer", json.dumps(req)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    assert reply["ok"], reply
    with np.load(tmp_path / "y.npz") as got:
        want = reference(model, x)
        np.testing.assert_array_equal(got["idx"], want["idx"])
        np.testing.assert_allclose(got["y"], want["y"], atol=1e-6, rtol=0)
