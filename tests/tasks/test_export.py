"""Stage export: dynamo export with a dynamic batch, the TorchScript fallback, fixed-batch
detection, ONNX given as input, name checks, and the entry point's clean failures."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from examples.mnist import MnistCNN
from tasks.config import Config, from_dict
from tasks.export import EXPORTER_LOG, run
from tasks.export import main as export_main
from tasks.models.load import CheckpointError
from tasks.stage import StageError
from tests.conftest import ROOT, fast_params, write_params

# Expected noise: tracing DataDependent takes one branch (the point of the fallback test), and the
# TorchScript exporter (the fallback, and the writer of the test's own ONNX files) is deprecated.
pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]


class DataDependent(nn.Module):
    """Python control flow on a tensor *value*: torch.export cannot capture it, tracing takes one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.flatten(1))
        if x.sum() > 0:
            return y + 1
        return y - 1


class FixedBatch(nn.Module):
    """Hard-codes the batch size in forward()."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.view(2, -1))


def _x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 1, 28, 28), dtype=np.float32)


def _ort(path, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))


def _torch(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _cfg(tmp_path, net: nn.Module | None = None, **model) -> Config:
    p = fast_params()
    if net is not None:
        torch.save(net.state_dict(), tmp_path / "model.pt")
    p["model"]["checkpoint"] = str(tmp_path / "model.pt")
    p["model"].update(model)
    return from_dict(Config, p)


def _onnx_file(path, module: nn.Module, dynamic: bool = True, output: str = "logits", fold: bool = True):
    """An ONNX file written by the TorchScript exporter (the user's own ONNX, for model.format=onnx)."""
    axes = {"input": {0: "batch"}, output: {0: "batch"}} if dynamic else None
    torch.onnx.export(
        module.eval(),
        (torch.zeros(2, 1, 28, 28),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=[output],
        dynamic_axes=axes,
        do_constant_folding=fold,
    )
    return path


def _batch_dims(model: onnx.ModelProto) -> list:
    return [v.type.tensor_type.shape.dim[0] for v in [*model.graph.input, *model.graph.output]]


# --- dynamo export of the bundled architecture ---------------------------------------------------


@pytest.fixture(scope="module")
def dynamo(tmp_path_factory):
    d = tmp_path_factory.mktemp("dynamo")
    torch.manual_seed(0)
    net = MnistCNN().eval()
    cfg = _cfg(d, net)
    logs: list[str] = []
    metrics = run(cfg, d / "out" / "model.onnx", log=logs.append)
    return cfg, net, d / "out" / "model.onnx", metrics, logs


def test_dynamo_dynamic_batch_declared(dynamo):
    _, _, out, metrics, _ = dynamo
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    for dim in _batch_dims(model):
        assert dim.dim_param and not dim.HasField("dim_value")
    assert isinstance(metrics["input_shape"][0], str) and metrics["input_shape"][1:] == [1, 28, 28]


def test_dynamo_metrics(dynamo):
    cfg, _, out, metrics, logs = dynamo
    assert metrics["exporter"] == "dynamo"
    assert metrics["fallback_used"] is False
    assert "failures" not in metrics
    assert metrics["opset"] == cfg.export.opset == 18
    assert metrics["nodes_before"] >= metrics["nodes_after"] > 0
    hist = metrics["op_histogram"]
    assert sum(hist.values()) == metrics["nodes_after"]
    assert hist["Conv"] == 2 and hist.get("Gemm", 0) + hist.get("MatMul", 0) >= 2
    assert "BatchNormalization" not in hist  # folded by the simplifier
    assert metrics["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert any("dynamo export" in m for m in logs)


@pytest.mark.parametrize("batch", [1, 5])
def test_dynamo_export_runs_in_onnxruntime(dynamo, batch):
    _, net, out, _, _ = dynamo
    x = _x(batch)
    got = _ort(out, x)
    assert list(got) == ["logits"] and got["logits"].shape == (batch, 10)
    np.testing.assert_allclose(got["logits"], _torch(net, x), atol=1e-4, rtol=0)


def test_torchscript_exporter_chosen(tmp_path):
    torch.manual_seed(0)
    net = MnistCNN().eval()
    cfg = _cfg(tmp_path, net)
    cfg.export.exporter = "torchscript"
    metrics = run(cfg, tmp_path / "model.onnx", log=lambda m: None)
    assert metrics["exporter"] == "torchscript" and metrics["fallback_used"] is False
    assert all(d.dim_param for d in _batch_dims(onnx.load(str(tmp_path / "model.onnx"))))
    x = _x(3)
    np.testing.assert_allclose(_ort(tmp_path / "model.onnx", x)["logits"], _torch(net, x), atol=1e-4, rtol=0)


# --- fallback ------------------------------------------------------------------------------------


def test_data_dependent_model_fails_torch_export_but_traces():
    module = DataDependent().eval()
    x = torch.zeros(2, 1, 28, 28)
    with pytest.raises(Exception, match="(?i)data-dependent"):
        torch.export.export(module, (x,))
    traced = torch.jit.trace(module, (x,))
    torch.testing.assert_close(traced(x), module(x))


def test_fallback_to_torchscript(tmp_path):
    torch.manual_seed(0)
    net = DataDependent().eval()
    cfg = _cfg(tmp_path, net, arch=f"{__name__}:DataDependent")
    logs: list[str] = []
    metrics = run(cfg, tmp_path / "model.onnx", log=logs.append)
    assert metrics["fallback_used"] is True
    assert metrics["exporter"] == "torchscript"
    reason = metrics["failures"]["dynamo"]
    assert "data-dependent" in reason.lower()
    assert any("falling back to torchscript" in m and "data-dependent" in m.lower() for m in logs)
    # the traced branch (sum <= 0 at export) works at any batch size
    x = -np.abs(_x(5))
    np.testing.assert_allclose(_ort(tmp_path / "model.onnx", x)["logits"], _torch(net, x), atol=1e-4, rtol=0)


def test_no_fallback_fails_with_the_reason(tmp_path):
    cfg = _cfg(tmp_path, DataDependent(), arch=f"{__name__}:DataDependent")
    cfg.export.fallback = False
    with pytest.raises(StageError, match="every exporter tried") as e:
        run(cfg, tmp_path / "out" / "model.onnx", log=lambda m: None)
    assert "dynamo" in str(e.value) and "data-dependent" in str(e.value).lower()
    assert not (tmp_path / "out").exists()


# --- fixed batch ---------------------------------------------------------------------------------


def test_hard_coded_batch_in_forward(tmp_path):
    cfg = _cfg(tmp_path, FixedBatch(), arch=f"{__name__}:FixedBatch")
    with pytest.raises(StageError, match="batch") as e:
        run(cfg, tmp_path / "out" / "model.onnx", log=lambda m: None)
    assert "dynamic_batch" in str(e.value) or "hard-coded batch" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_onnx_input_with_fixed_batch(tmp_path):
    _onnx_file(tmp_path / "fixed.onnx", MnistCNN(), dynamic=False)
    cfg = _cfg(tmp_path, format="onnx", checkpoint=str(tmp_path / "fixed.onnx"))
    with pytest.raises(StageError, match="batch axis is fixed") as e:
        run(cfg, tmp_path / "out" / "model.onnx", log=lambda m: None)
    assert "batch=2" in str(e.value) and "dynamic_batch" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_onnx_input_declared_dynamic_but_batch_baked_in(tmp_path):
    _onnx_file(tmp_path / "baked.onnx", FixedBatch(), dynamic=True)
    cfg = _cfg(tmp_path, format="onnx", checkpoint=str(tmp_path / "baked.onnx"))
    with pytest.raises(StageError, match="fails at batch 1"):
        run(cfg, tmp_path / "out" / "model.onnx", log=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_onnx_input_with_fixed_batch_allowed_when_not_dynamic(tmp_path):
    _onnx_file(tmp_path / "fixed.onnx", MnistCNN(), dynamic=False)
    cfg = _cfg(tmp_path, format="onnx", checkpoint=str(tmp_path / "fixed.onnx"))
    cfg.model.input.dynamic_batch = False
    metrics = run(cfg, tmp_path / "model.onnx", log=lambda m: None)
    assert metrics["input_shape"] == [2, 1, 28, 28]


# --- ONNX given as the model ---------------------------------------------------------------------


def test_onnx_input_checked_and_simplified(tmp_path):
    torch.manual_seed(0)
    net = MnistCNN().eval()
    src = _onnx_file(tmp_path / "given.onnx", net, fold=False)  # BatchNormalization left in the graph
    cfg = _cfg(tmp_path, format="onnx", checkpoint=str(src), arch=None)
    out = tmp_path / "out" / "model.onnx"
    metrics = run(cfg, out, log=lambda m: None)
    assert metrics["exporter"] == "none (model.format=onnx)"
    assert metrics["fallback_used"] is False
    assert metrics["opset"] == 17  # the given file's opset
    assert metrics["nodes_after"] < metrics["nodes_before"]
    assert "BatchNormalization" in {n.op_type for n in onnx.load(str(src)).graph.node}
    assert "BatchNormalization" not in metrics["op_histogram"]
    assert metrics["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    x = _x(5)
    np.testing.assert_allclose(_ort(out, x)["logits"], _torch(net, x), atol=1e-4, rtol=0)


def test_onnx_input_output_name_mismatch(tmp_path):
    _onnx_file(tmp_path / "given.onnx", MnistCNN(), output="scores")
    cfg = _cfg(tmp_path, format="onnx", checkpoint=str(tmp_path / "given.onnx"))
    with pytest.raises(StageError) as e:
        run(cfg, tmp_path / "out" / "model.onnx", log=lambda m: None)
    assert "['scores']" in str(e.value) and "['logits']" in str(e.value)
    assert "model.outputs" in str(e.value)


def test_onnx_input_name_mismatch(tmp_path):
    _onnx_file(tmp_path / "given.onnx", MnistCNN())
    cfg = _cfg(tmp_path, format="onnx", checkpoint=str(tmp_path / "given.onnx"))
    cfg.model.input.name = "image"
    with pytest.raises(StageError, match="model.input.name") as e:
        run(cfg, tmp_path / "out" / "model.onnx", log=lambda m: None)
    assert "['input']" in str(e.value) and "'image'" in str(e.value)


def test_onnx_input_missing(tmp_path):
    cfg = _cfg(tmp_path, format="onnx", checkpoint=str(tmp_path / "absent.onnx"))
    with pytest.raises(CheckpointError, match="not found"):
        run(cfg, tmp_path / "model.onnx", log=lambda m: None)


def test_onnx_input_corrupt(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(np.random.default_rng(0).bytes(1000))
    cfg = _cfg(tmp_path, format="onnx", checkpoint=str(tmp_path / "bad.onnx"))
    with pytest.raises(CheckpointError, match="not a readable ONNX file") as e:
        run(cfg, tmp_path / "model.onnx", log=lambda m: None)
    assert "bad.onnx" in str(e.value)
    assert not (tmp_path / "model.onnx").exists()


# --- entry point ---------------------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint", ["missing", "random", "truncated"])
def test_entry_point_bad_checkpoint(params, workdir, checkpoint):
    if checkpoint == "random":
        (workdir / "model.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    elif checkpoint == "truncated":
        torch.save(MnistCNN().state_dict(), workdir / "full.pt")
        data = (workdir / "full.pt").read_bytes()
        (workdir / "model.pt").write_bytes(data[: len(data) // 2])
    # stale outputs of an earlier run must not survive a failed run
    (workdir / "artifacts" / "export").mkdir(parents=True)
    (workdir / "artifacts" / "export" / "model.onnx").write_bytes(b"stale")
    (workdir / "metrics").mkdir()
    (workdir / "metrics" / "export.json").write_text("{}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "tasks.export"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 1
    assert "edgeforge export: error:" in r.stderr
    assert "model.pt" in r.stderr
    assert ("not found" if checkpoint == "missing" else "cannot read as a state_dict checkpoint") in r.stderr
    assert "Traceback" not in r.stderr
    assert not (workdir / "artifacts" / "export" / "model.onnx").exists()
    assert not (workdir / "metrics" / "export.json").exists()


class Wide48(nn.Module):
    """Takes 3x48x48 images only: its Linear fixes the flattened size."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 48 * 48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _run_stage(workdir) -> subprocess.CompletedProcess:
    """``python -m tasks.export`` as DVC runs it: its real stdout/stderr, so that what torch writes
    through handlers bound at import, C++ or file descriptors is seen too (capfd in-process is not:
    under pytest torch's log handler writes to pytest's own capture stream)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tasks.export"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )


def _own_lines_only(r: subprocess.CompletedProcess) -> list[str]:
    """The stage's stderr lines, after checking that they are all EdgeForge's own and stdout is empty."""
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    for line in lines:
        assert re.match(r"(\[\d\d:\d\d:\d\d\] export: |edgeforge export: error: )", line), line
    assert "Traceback" not in r.stderr
    return lines


def test_entry_point_shape_mismatch_one_message(params, workdir):
    params["model"]["arch"] = f"{__name__}:Wide48"
    params["model"]["input"].update(shape=[3, 64, 64], channel_order="rgb", mean=[0.5] * 3, std=[0.25] * 3)
    write_params(params)
    torch.save(Wide48().state_dict(), workdir / "model.pt")
    (workdir / "artifacts" / "export").mkdir(parents=True)
    (workdir / "artifacts" / "export" / "model.onnx").write_bytes(b"stale")
    r = _run_stage(workdir)
    assert r.returncode == 1
    errors = [ln for ln in _own_lines_only(r) if ln.startswith("edgeforge export: error:")]
    assert len(errors) == 1
    assert "every exporter tried" in errors[0] and "12288" in errors[0]  # the cause, in one line
    assert f"full exporter log: {EXPORTER_LOG}" in errors[0]
    detail = (workdir / EXPORTER_LOG).read_text()
    assert "Traceback" in detail and "failed while attempting to run meta" in detail  # dynamo's logged trace
    assert "mat1 and mat2 shapes cannot be multiplied" in detail  # the TorchScript exporter's failure
    assert not (workdir / "artifacts" / "export" / "model.onnx").exists()
    assert not (workdir / "metrics" / "export.json").exists()


def test_entry_point_fallback_success_is_quiet(params, workdir):
    params["model"]["arch"] = f"{__name__}:DataDependent"
    write_params(params)
    torch.save(DataDependent().state_dict(), workdir / "model.pt")
    r = _run_stage(workdir)
    assert r.returncode == 0, r.stderr
    lines = _own_lines_only(r)
    assert any("falling back to torchscript" in ln for ln in lines)
    assert (workdir / "artifacts" / "export" / "model.onnx").is_file()
    detail = (workdir / EXPORTER_LOG).read_text()
    assert "GraphModule" in detail  # dynamo's graph dump of the failed attempt
    assert "TracerWarning" in detail  # the TorchScript tracer's warning on the data-dependent branch


def test_entry_point_pickled_module_message_is_plain(params, workdir, capfd):
    torch.save(MnistCNN(), workdir / "model.pt")  # a whole pickled module: refused by weights_only loading
    with pytest.raises(SystemExit) as e:
        export_main([])
    assert e.value.code == 1
    err = capfd.readouterr().err
    assert "\x1b" not in err
    assert "edgeforge export: error: model.pt: refused by weights_only loading" in err
    assert "model.trust_checkpoint=true" in err and "state_dict" in err


def test_onnx_with_data_dependent_outputs_keeps_its_dynamic_batch(tmp_path):
    """NonZero's output (4, K) has no batch axis to declare: it passes the dynamic-batch checks, is named in
    the export metrics and the log (evaluate runs such a model's samples in one call)."""
    from tests.tasks.runtimes.test_data_dependent import nonzero_model

    path = nonzero_model(tmp_path / "nz.onnx")
    cfg = _cfg(tmp_path, format="onnx", checkpoint=str(path), outputs=["y", "idx"])
    cfg.model.input.shape = [1, 4, 4]
    logs: list[str] = []
    metrics = run(cfg, tmp_path / "model.onnx", log=logs.append)
    assert metrics["not_per_sample"] == ["idx"]
    assert any("['idx'] have no batch axis" in m and "one call" in m for m in logs)
    # the per-sample output keeps its dynamic batch
    got = _ort(tmp_path / "model.onnx", np.ones((3, 1, 4, 4), np.float32))
    assert got["y"].shape == (3, 1, 4, 4) and got["idx"].shape == (4, 48)
