"""The deployment contract: container recipes pinned from real-shaped device fingerprints, and Triton
entries checked against Triton's own ModelConfig protobuf (tritonclient's model_config_pb2)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import onnxruntime
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper

from tasks.release.containers import ContainerError, container_files
from tasks.release.dockerfile import dockerfile_problems
from tasks.release.triton import TritonError, config_pbtxt, onnx_io
from tasks.stage import stage_errors

# fingerprints as cmd_probe records them (fields that matter here)
ORIN = {  # Jetson AGX Orin, JetPack 6.2 (L4T R36.4.3), TensorRT 10.3
    "arch": "aarch64",
    "python": "3.10.12",
    "gpu": [{"name": "Orin", "compute_capability": "8.7"}],
    "l4t": "36.4.3",
    "jetpack": "6.2",
    "cuda": "12.6.68",
    "tensorrt": "10.3.0.30",
    "onnxruntime": None,
    "openvino": None,
    "numpy": "1.26.4",
}
XAVIER = {  # Jetson AGX Xavier, JetPack 5.1.2 (L4T R35.4.1), TensorRT 8.5
    **ORIN,
    "python": "3.8.10",
    "gpu": [{"name": "Xavier", "compute_capability": "7.2"}],
    "l4t": "35.4.1",
    "jetpack": "5.1.2",
    "cuda": "11.4.315",
    "tensorrt": "8.5.2.2",
    "numpy": "1.17.4",
}
X86 = {
    "arch": "x86_64",
    "python": "3.11.9",
    "gpu": [],
    "l4t": None,
    "jetpack": None,
    "tensorrt": None,
    "onnxruntime": "1.32.0",
    "openvino": "2026.4.1",
    "numpy": "2.4.6",
}


def _model_config_pb2():
    """Triton's ModelConfig message, from tritonclient's generated module loaded by its file:
    ``tritonclient.grpc``'s package init imports grpcio, which its [grpc] extra pins with protobuf < 7
    (this project runs protobuf 7), and the message module itself needs only protobuf."""
    root = Path(importlib.util.find_spec("tritonclient").origin).parent
    spec = importlib.util.spec_from_file_location(
        "edgeforge_triton_model_config_pb2", root / "grpc/model_config_pb2.py"
    )
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[spec.name] = module
    return module


def parse_config(text: str):
    pb2 = _model_config_pb2()
    return text_format.Parse(text, pb2.ModelConfig()), pb2


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    """x (N, 1, 4, 4) float -> probs (N, 16) float (Softmax), label (N,) int64 (ArgMax), with a
    weight listed among the graph inputs (older exporters do) that is not a model input."""
    flat = helper.make_node("Flatten", ["x"], ["flat"], axis=1)
    scaled = helper.make_node("Mul", ["flat", "w"], ["scaled"])
    probs = helper.make_node("Softmax", ["scaled"], ["probs"], axis=1)
    label = helper.make_node("ArgMax", ["scaled"], ["label"], axis=1, keepdims=0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [16], [0.5] * 16)
    graph = helper.make_graph(
        [flat, scaled, probs, label],
        "tiny",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 4, 4]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [16]),
        ],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 16]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # a real, loadable model
    return path


def test_onnx_io_reads_names_dtypes_and_shapes(tiny_onnx):
    assert onnx_io(tiny_onnx) == {
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 1, 4, 4]}],
        "outputs": [
            {"name": "probs", "dtype": "float32", "shape": ["batch", 16]},
            {"name": "label", "dtype": "int64", "shape": ["batch"]},
        ],
    }


def _check_triton(recipe, model, platform, kind, max_batch):
    config, pb2 = parse_config(recipe.files[f"triton/{model}/config.pbtxt"].decode())
    assert config.name == model and config.platform == platform and config.max_batch_size == max_batch
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("x", pb2.TYPE_FP32, [1, 4, 4])]
    # a batch-only output is dims [1] reshaped to [] (Triton's convention for per-sample scalars)
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("probs", pb2.TYPE_FP32, [16]),
        ("label", pb2.TYPE_INT64, [1]),
    ]
    assert config.output[1].HasField("reshape") and list(config.output[1].reshape.shape) == []
    assert [g.kind for g in config.instance_group] == [kind]


def _dockerfile(recipe) -> str:
    text = recipe.files["container/Dockerfile"].decode()
    assert dockerfile_problems(text) == []
    assert "latest" not in text
    return text


@pytest.mark.parametrize(
    "fingerprint, image, trt",
    [(ORIN, "nvcr.io/nvidia/l4t-jetpack:r36.4.0", "10.3"), (XAVIER, "nvcr.io/nvidia/l4t-jetpack:r35.4.1", "8.5")],
    ids=["orin-jp6", "xavier-jp5"],
)
def test_jetson_tensorrt_gets_the_l4t_image_of_its_release_and_a_triton_plan(tiny_onnx, fingerprint, image, trt):
    recipe = container_files(
        "tiny", "tensorrt", "int8-entropy", fingerprint, "model.plan", onnx_io(tiny_onnx), max_batch=8
    )
    text = _dockerfile(recipe)
    assert [line for line in text.splitlines() if line.startswith("FROM ")] == [f"FROM {image}"]
    assert f"TensorRT {trt}" in text and "l4t-jetpack/tags" in text
    assert f"pip install numpy=={fingerprint['numpy']}\n" in text
    assert recipe.meta == {"dockerfile": "container/Dockerfile", "base_image": image, "triton": "triton/tiny"}
    assert recipe.model_file == "triton/tiny/1/model.plan"
    assert set(recipe.files) == {"container/Dockerfile", "container/README.md", "triton/tiny/config.pbtxt"}
    _check_triton(recipe, "tiny", "tensorrt_plan", _model_config_pb2().ModelInstanceGroup.KIND_GPU, 8)
    assert "--runtime nvidia" in recipe.files["container/README.md"].decode()


def test_cpu_onnxruntime_pins_python_runtime_and_numpy_and_gets_a_triton_onnx_entry(tiny_onnx):
    recipe = container_files("tiny", "onnxruntime", "int8-entropy", X86, "model.onnx", onnx_io(tiny_onnx), max_batch=4)
    text = _dockerfile(recipe)
    assert "FROM python:3.11-slim\n" in text
    assert "RUN python -m pip install onnxruntime==1.32.0 numpy==2.4.6\n" in text
    assert recipe.meta["base_image"] == "python:3.11-slim" and recipe.model_file == "triton/tiny/1/model.onnx"
    _check_triton(recipe, "tiny", "onnxruntime_onnx", _model_config_pb2().ModelInstanceGroup.KIND_CPU, 4)


def test_openvino_gets_a_pinned_image_and_no_triton_entry(tiny_onnx):
    recipe = container_files("tiny", "openvino", "fp32", X86, "model.xml", onnx_io(tiny_onnx))
    assert "RUN python -m pip install openvino==2026.4.1 numpy==2.4.6\n" in _dockerfile(recipe)
    assert set(recipe.files) == {"container/Dockerfile", "container/README.md"}
    assert recipe.meta["triton"] is None and recipe.model_file is None


def test_an_artifact_that_is_not_portable_gets_the_config_but_no_model_file(tiny_onnx):
    recipe = container_files("tiny", "tensorrt", "fp16", ORIN, None, onnx_io(tiny_onnx))
    assert "triton/tiny/config.pbtxt" in recipe.files and recipe.model_file is None


@pytest.mark.parametrize("l4t", ["34.1.1", "35.5.0", "36.5.0", "32.7.1"])
def test_an_l4t_release_without_a_known_image_is_refused_in_one_line(tiny_onnx, capsys, l4t):
    with pytest.raises(SystemExit) as exc, stage_errors("release"):
        container_files("tiny", "tensorrt", "fp16", {**ORIN, "l4t": l4t}, "model.plan", onnx_io(tiny_onnx))
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"edgeforge release: error: L4T {l4t} (fingerprint 'l4t') has no known NVIDIA L4T image")
    assert err.count("\n") == 1 and "L4T_IMAGES" in err


def test_a_device_tensorrt_the_image_does_not_carry_is_refused(tiny_onnx):
    with pytest.raises(ContainerError, match=r"TensorRT 8\.6\.2 but nvcr.io/nvidia/l4t-jetpack:r36\.4\.0"):
        container_files("tiny", "tensorrt", "fp16", {**ORIN, "tensorrt": "8.6.2"}, "model.plan", onnx_io(tiny_onnx))


@pytest.mark.parametrize(
    "runtime, fingerprint, key",
    [
        ("tensorrt", X86, "l4t"),
        ("onnxruntime", {**X86, "onnxruntime": None}, "onnxruntime"),
        ("openvino", ORIN, "openvino"),
    ],
)
def test_a_fingerprint_without_the_version_to_pin_is_refused(tiny_onnx, runtime, fingerprint, key):
    with pytest.raises(ContainerError, match=f"fingerprint has no '{key}' version"):
        container_files("tiny", runtime, "fp32", fingerprint, "model", onnx_io(tiny_onnx))


def test_bad_model_names_and_runtimes_are_refused(tiny_onnx):
    with pytest.raises(ContainerError, match="Triton model name"):
        container_files("../tiny", "onnxruntime", "fp32", X86, "model.onnx", onnx_io(tiny_onnx))
    with pytest.raises(ContainerError, match="runtime 'torch' has no container recipe"):
        container_files("tiny", "torch", "fp32", X86, None, onnx_io(tiny_onnx))


def test_fixed_batch_and_data_dependent_outputs_are_served_unbatched():
    fixed = {
        "inputs": [{"name": "x", "dtype": "float16", "shape": [1, 3, None]}],
        "outputs": [{"name": "y", "dtype": "float16", "shape": [1, 3]}],
    }
    config, pb2 = parse_config(config_pbtxt("m", "onnxruntime", fixed, 8))
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 3, -1]
    assert config.input[0].data_type == pb2.TYPE_FP16
    nonzero = {
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["N", 4]}],
        "outputs": [{"name": "idx", "dtype": "int64", "shape": [2, "nz"]}],
    }
    config, _ = parse_config(config_pbtxt("m", "tensorrt", nonzero, 8))
    assert config.max_batch_size == 0 and list(config.output[0].dims) == [2, -1]
    with pytest.raises(TritonError, match="dtype 'complex64'"):
        config_pbtxt("m", "onnxruntime", {**fixed, "outputs": [{"name": "z", "dtype": "complex64", "shape": [1]}]}, 1)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("RUN echo hi\nFROM python:3.11-slim\n", "first instruction is RUN"),
        ("FROM python\n", "not pinned to a version tag"),
        ("FROM localhost:5000/python\n", "not pinned to a version tag"),
        ("FROM python:latest\n", "not pinned to a version tag"),
        ("FROM python:3.11-slim\nCOPYY . /x\n", "unknown instruction 'COPYY'"),
        ("FROM python:3.11-slim\nRUN pip install numpy\n", "'numpy' is not pinned"),
        (
            "FROM python:3.11-slim\nRUN apt-get update && \\\n  pip3 install --no-cache-dir onnx>=1.17\n",
            "'onnx>=1.17' is not pinned",
        ),
        (
            "FROM python:3.11-slim\nRUN python -m pip install -r requirements.txt\n",
            "'-r requirements.txt' is not pinned",
        ),
        ('FROM python:3.11-slim\nRUN ["pip", "install", "openvino"]\n', "'openvino' is not pinned"),
        ('FROM python:3.11-slim\nCMD ["python", 3]\n', "CMD's exec form is not a JSON list"),
        ("FROM python:3.11-slim\nRUN echo \\\n", "ends in a line continuation"),
        ("FROM python:3.11-slim\nRUN echo a && \\\n# a comment inside\n  pip install onnx\n", "'onnx' is not pinned"),
    ],
)
def test_the_dockerfile_check_finds_what_breaks_the_contract(text, problem):
    assert any(problem in p for p in dockerfile_problems(text)), dockerfile_problems(text)


def test_pinned_digests_and_extras_pass_the_dockerfile_check():
    text = (
        "# c\nFROM python:3.11-slim@sha256:"
        + "0" * 64
        + "\nRUN pip install --no-cache-dir 'onnxruntime[x]==1.2.3' numpy==2.4.6 ; echo ok\n"
    )
    assert dockerfile_problems(text) == []


def _exec(text: str, word: str) -> list[str]:
    return next(json.loads(line[len(word) + 1 :]) for line in text.splitlines() if line.startswith(f"{word} ["))


def test_the_image_layout_and_self_check_run_as_written(tmp_path):
    """The Dockerfile's own layout step and default command, run here with this Python and its real
    ONNX Runtime: the release lands in releases/<version>-<sha12> behind `current`, and the check
    passes for the validated runtime version and fails for another."""
    recipe = container_files(
        "tiny",
        "onnxruntime",
        "fp32",
        {**X86, "onnxruntime": onnxruntime.__version__},
        "model.onnx",
        {
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["b", 2]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": ["b"]}],
        },
    )
    text = recipe.files["container/Dockerfile"].decode()
    manifest = json.dumps(
        {
            "version": "1.2.0",
            "model": "tiny",
            "artifact": {"runtime_version": importlib.metadata.version("onnxruntime")},
        }
    )
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming/manifest.json").write_text(manifest)
    run, cmd = _exec(text, "RUN"), _exec(text, "CMD")
    subprocess.run([sys.executable, *run[1:]], cwd=tmp_path, check=True)
    rid = "1.2.0-" + hashlib.sha256(manifest.encode()).hexdigest()[:12]
    assert os.readlink(tmp_path / "current") == f"releases/{rid}" and (tmp_path / "current/manifest.json").is_file()
    env = {**os.environ, "EDGEFORGE_ROOT": str(tmp_path)}
    res = subprocess.run([sys.executable, *cmd[1:]], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) | {"runtime_version": None} == {
        "release": rid,
        "model": "tiny",
        "version": "1.2.0",
        "runtime": "onnxruntime",
        "runtime_version": None,
        "validated_with": onnxruntime.__version__,
        "ok": True,
    }
    (tmp_path / "current/manifest.json").write_text(
        json.dumps({**json.loads(manifest), "artifact": {"runtime_version": "0.1"}})
    )
    res = subprocess.run([sys.executable, *cmd[1:]], env=env, capture_output=True, text=True)
    assert res.returncode == 1 and json.loads(res.stdout)["ok"] is False
