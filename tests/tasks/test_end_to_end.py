"""End-to-end batch-1 latency, split (tasks/metrics/end_to_end.py): a tiny YOLOv8-style detector on
letterboxed images timed with the real ONNX Runtime and OpenVINO; TensorRT's split read from a
real trtexec log. Behaviour only: every part there and positive, never how fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tasks.config import Config, from_dict
from tasks.data.geometry import fit, warp_image
from tasks.data.preprocess import preprocess
from tasks.data.split import Split, save_split
from tasks.metrics import end_to_end
from tests.conftest import ROOT, fast_params

C = 2  # classes
ORIG = (48, 64)  # the images' own size; letterboxed into the model's 32x40 input


def _detector(path: Path) -> Path:
    """images (N, 3, 32, 40) -> Conv 8x8 stride 8 -> Sigmoid -> (N, 4 + C, 20): a YOLOv8-layout head."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4 + C, 3, 8, 8)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([0, 4 + C, -1], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["c"], strides=[8, 8]),
        helper.make_node("Sigmoid", ["c"], ["s"]),
        helper.make_node("Reshape", ["s", "shape"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "det",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 40])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 4 + C, 20])],
        [w, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def detector(tmp_path) -> tuple[Config, Path, Split]:
    """The detector's config (letterbox, eval.decoder yolov8), its ONNX and a 3-image eval split
    prepared as the prepare stage does (with meta.npy and classes.json)."""
    p = fast_params()
    p["model"].update(
        task="detection",
        outputs=["output0"],
        scores_output="output0",
        input={**p["model"]["input"], "name": "images", "shape": [3, 32, 40], "channel_order": "rgb"},
    )
    p["model"]["input"].update(letterbox=True, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    p["eval"]["decoder"] = "yolov8"
    p["bench"]["end_to_end_iterations"] = 5
    cfg = from_dict(Config, p)
    rng = np.random.default_rng(1)
    xs, metas = [], []
    for _ in range(3):
        f = fit(ORIG, (32, 40), True)
        img = rng.integers(0, 256, (*ORIG, 3), dtype=np.uint8)
        xs.append(preprocess(warp_image(img, f)[None], cfg.model.input)[0])
        metas.append(f.meta)
    save_split(tmp_path / "prepare" / "eval", np.stack(xs), np.zeros((3, 1, 5), np.float32), np.stack(metas))
    (tmp_path / "prepare" / "classes.json").write_text(json.dumps(["a", "b"]))
    return cfg, _detector(tmp_path / "det.onnx"), Split(tmp_path / "prepare" / "eval")


def _check_local(e2e: dict, iterations: int) -> None:
    for part in end_to_end.PARTS:
        assert e2e[f"{part}_ms"] > 0, part
        assert e2e["what"][part] and "not measured" not in e2e["what"][part]
    assert e2e["total_ms"] > 0 and e2e["iterations"] == iterations
    assert e2e["sum_of_parts_ms"] == pytest.approx(sum(e2e[f"{p}_ms"] for p in end_to_end.PARTS))


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_local_split_has_every_part_with_the_detector_decoded(detector, runtime):
    from tasks.runtimes import get_runtime

    cfg, onnx_path, split = detector
    sess = get_runtime(runtime).load(onnx_path, 1)  # OpenVINO reads the ONNX itself
    e2e = end_to_end.local(cfg, sess, split, runtime)
    _check_local(e2e, 5)
    assert "yolov8" in e2e["what"]["decode"] and "original image" in e2e["what"]["decode"]
    assert "score threshold 0.25" in e2e["what"]["decode"]  # a deployment's, not validation's 0.001
    assert "letterbox" in e2e["what"]["preprocess"]
    assert "uint8 48x64x3" in e2e["what"]["image"] and "original size" in e2e["what"]["image"]
    json.dumps(e2e)  # recorded as is in metrics/benchmark/<key>.json


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_session_steps_give_what_infer_gives(detector, runtime):
    from tasks.runtimes import get_runtime

    _, onnx_path, split = detector
    sess = get_runtime(runtime).load(onnx_path, 1)
    x = np.ascontiguousarray(split.x[:1])
    v = x
    for _, step in sess.steps():
        v = step(v)
    ref = sess.infer(x)
    assert set(v) == set(ref) and all(np.array_equal(v[k], ref[k]) for k in ref)


def test_source_image_and_preprocessing_follow_the_split(detector):
    cfg, _, split = detector
    image, meta, what = end_to_end.source_image(split, cfg)
    assert image.dtype == np.uint8 and image.shape == (*ORIG, 3)
    pre, _ = end_to_end.preprocessor(cfg, meta)
    assert pre(image).shape == (1, 3, 32, 40) and pre(image).dtype == np.float32
    # no meta.npy: the image is the model's input size, preprocessed without a fit
    nometa = Split(split.root)
    nometa.meta = None
    image, meta, what = end_to_end.source_image(nometa, cfg)
    assert image.shape == (32, 40, 3) and meta is None and "no meta.npy" in what


def test_tensorrt_split_comes_from_trtexec_and_decoding_from_this_host(detector):
    from tasks.runtimes.tensorrt_rt import trtexec_figures

    cfg, onnx_path, split = detector
    log = (ROOT / "tests/fixtures/trtexec/trt8.5_orin_nano_fp16_summary_ok.log").read_text()
    raw = {
        "tensorrt": "8.5.2",
        "defaults": {},
        "settings": {},
        "runs": {"b1": {"argv": ["trtexec"], "exit_code": 0, "log": log}},
    }
    info = {"trtexec": trtexec_figures(raw, "orin")}
    e2e = end_to_end.remote(cfg, split, "tensorrt", info, onnx_path)
    assert e2e["input_copy_ms"] == pytest.approx(0.310486)
    assert e2e["compute_ms"] == pytest.approx(10.1851)
    assert e2e["output_copy_ms"] == pytest.approx(0.298584)
    assert "H2D Latency" in e2e["what"]["input_copy"] and "GPU Compute Time" in e2e["what"]["compute"]
    assert e2e["decode_ms"] > 0 and "this host" in e2e["what"]["decode"]
    assert e2e["preprocess_ms"] is None and e2e["what"]["preprocess"].startswith("not measured:")
    assert e2e["total_ms"] is None and e2e["what"]["total"].startswith("not measured:")
    parts = [e2e[f"{p}_ms"] for p in ("input_copy", "compute", "output_copy", "decode")]
    assert e2e["sum_of_parts_ms"] == pytest.approx(sum(parts))
    # batch 1 skipped by the agent: the copies and compute are not measured, and say why
    info = {"trtexec": {"b1": {"skipped": "batch 1 is outside the engine's optimisation profile"}}}
    e2e = end_to_end.remote(cfg, split, "tensorrt", info, None)
    assert e2e["compute_ms"] is None and "optimisation profile" in e2e["what"]["compute"]
    assert e2e["decode_ms"] is None and e2e["sum_of_parts_ms"] is None


def test_remote_onnxruntime_split_is_the_agents_called_as_on_a_device(detector, tmp_path):
    """The agent uploaded and called as on a device (a local target): it times batch 1's copies and
    compute; decoding is timed here, preprocessing is not measured."""
    from tasks.agent import remote
    from tasks.agent.client import device
    from tasks.config.schema import Target
    from tasks.records import BuildRecord
    from tasks.runtimes import BuildOptions, get_runtime

    cfg, onnx_path, split = detector
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    art = get_runtime("onnxruntime").build(onnx_path, "fp32", build_dir, BuildOptions()).artifact
    BuildRecord("dev", "fp32", "onnxruntime", art.name, "", "local", "", 0, "", 0.0).write(build_dir / "build.json")
    with device("dev", Target(runtime="onnxruntime")) as dev:
        _, info = remote.latencies(dev, build_dir, np.ascontiguousarray(split.x), cfg.bench)
    assert all(len(v) == 5 for v in info["io_split_s"].values())
    e2e = end_to_end.remote(cfg, split, "onnxruntime", info, onnx_path)
    assert e2e["input_copy_ms"] > 0 and e2e["compute_ms"] > 0 and e2e["output_copy_ms"] > 0
    assert "on the device" in e2e["what"]["compute"] and e2e["decode_ms"] > 0 and "this host" in e2e["what"]["decode"]
    assert e2e["preprocess_ms"] is None and e2e["what"]["preprocess"].startswith("not measured:")


def test_time_chain_times_each_step_over_the_same_calls_within_its_budget():
    from tasks.agent.agent import time_chain

    ticks = iter(range(10**6))
    steps = [("double", lambda v: 2 * v), ("inc", lambda v: v + 1)]
    times = time_chain(steps, 1, iterations=100, warmup=1, clock=lambda: next(ticks))
    assert {k: len(v) for k, v in times.items()} == {"double": 100, "inc": 100, "total": 100}
    assert set(times["double"]) == {1} and set(times["total"]) == {2}  # one tick per clock read
    # a budget of 10 ticks: stops once the timed calls took longer (2 ticks each), never below 5 calls
    times = time_chain(steps, 1, iterations=100, warmup=0, max_s=10, clock=lambda: next(ticks))
    assert len(times["total"]) == 6
    assert len(time_chain(steps, 1, iterations=100, warmup=0, max_s=1e-9, clock=lambda: next(ticks))["total"]) == 5


def test_decoding_takes_the_deployment_threshold_or_evals(detector):
    cfg, _, split = detector
    _, what = end_to_end.decoder(cfg, ["a", "b"], None)
    assert "score threshold 0.25 (bench.end_to_end_score_threshold)" in what
    cfg.bench.end_to_end_score_threshold = None
    _, what = end_to_end.decoder(cfg, ["a", "b"], None)
    assert "eval's thresholds" in what


@pytest.mark.parametrize(
    "key, value", [("end_to_end_iterations", 0), ("end_to_end_max_s", 0.0), ("end_to_end_score_threshold", 1.5)]
)
def test_bad_end_to_end_settings_are_config_errors_naming_the_key(key, value):
    from tasks.config import ConfigError
    from tasks.config.load import check

    p = fast_params()
    p["bench"][key] = value
    with pytest.raises(ConfigError, match=f"bench.*{key}"):
        check(from_dict(Config, p))


def test_a_session_without_steps_times_infer_as_compute(detector):
    from tasks.runtimes import get_runtime

    cfg, onnx_path, split = detector

    class Plain:  # a runtime whose session only infers
        def __init__(self, sess):
            self.infer = sess.infer

    e2e = end_to_end.local(cfg, Plain(get_runtime("onnxruntime").load(onnx_path)), split, "onnxruntime")
    assert e2e["compute_ms"] > 0 and e2e["input_copy_ms"] is None and e2e["output_copy_ms"] is None
    assert e2e["what"]["input_copy"].startswith("not measured:") and e2e["total_ms"] > 0
