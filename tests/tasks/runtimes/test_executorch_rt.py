"""ExecuTorch: the PyTorch model converted on the host to an XNNPACK .pte, checked and run by ExecuTorch's
own runtime (real ExecuTorch, real digits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks import quantize
from tasks.agent import agent
from tasks.data.split import Split
from tasks.device.support import support
from tasks.io import read_json
from tasks.layout import LAYOUT
from tasks.records import built_artifact
from tasks.runtimes import get_runtime
from tasks.runtimes.base import HostSource
from tests.conftest import build_main, write_params


def _digits(n: int) -> np.ndarray:
    x, _ = next(Split(LAYOUT.split("eval")).batches(n))
    return x


def _torch_model(model_file):
    from examples.mnist import MnistCNN

    m = MnistCNN()
    m.load_state_dict(torch.load(model_file, weights_only=True))
    return m.eval()


def test_build_stage_converts_int8_on_the_calibration_split_checks_and_runs_it(workdir, params, exported, capsys):
    """The stage path: int8-minmax converted here (PT2E on the calibration split), loaded and run by the
    agent as the build's check; fp16 n/a with the reason. (fp32 against PyTorch: the test below.)"""
    params["build"]["precisions"] = ["fp16", "int8-minmax"]
    params["target"]["local_executorch"] = {"transport": "local", "runtime": "executorch"}
    write_params(params)
    quantize.main(["--precision", "int8-minmax"])
    build_main(["--target", "local_executorch"])
    rec = read_json(LAYOUT.build_metrics("local_executorch", "int8-minmax"))
    art = built_artifact(LAYOUT.build_dir("local_executorch", "int8-minmax"))
    assert rec["runtime"] == "executorch" and art.suffix == ".pte" and rec["artifact"] == art.name
    assert rec["converted_on_host"] is True and rec["checked_on_device"] is True  # the agent loaded and ran it
    assert rec["delegated_ops"] >= 1  # XNNPACK took the quantized convolutions
    assert "XNNPACK threadpool" in rec["device_choices"]["reasons"]["threads"]
    assert rec["calib_samples"] == len(Split(LAYOUT.split("calib")))  # calibrated on the calibration split
    assert rec["size_bytes"] < 0.5 * exported.stat().st_size  # int8 weights: a quarter of the FP32 model's
    sess = get_runtime("executorch").load(art, threads=1)
    assert sess.output_names == ["logits"]  # the ONNX names, in the program's output order
    out = sess.infer(_digits(8))["logits"]
    assert out.shape == (8, 10) and out.dtype == np.float32 and np.isfinite(out).all()
    # fp16 does not apply: recorded as skipped with the reason, nothing built
    fp16 = read_json(LAYOUT.build_metrics("local_executorch", "fp16"))
    assert "PT2E" in fp16["skipped"] and not list(LAYOUT.build_dir("local_executorch", "fp16").glob("*.pte"))
    assert "n/a: ExecuTorch converts the PyTorch model" in capsys.readouterr().err


def test_batches_above_the_programs_bound_run_in_slices(tmp_path, model_file, workdir):
    model = _torch_model(model_file)
    src = HostSource(
        "fp32",
        tmp_path / "unused.onnx",
        tmp_path / "export.onnx",
        lambda: model,
        (1, 28, 28),
        lambda: iter(()),
        max_batch=4,
    )
    _write_export_names(src.export_onnx, ["scores"])
    built = get_runtime("executorch").convert(src, tmp_path)
    assert built.artifact.name == "model.b4.pte" and built.meta["max_batch"] == 4
    sess = get_runtime("executorch").load(built.artifact)
    x = np.random.default_rng(0).normal(size=(10, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.infer(x)["scores"], want, rtol=1e-4, atol=1e-4)
    # the device check runs it through the agent's build command, as on a device
    res = agent.cmd_build(
        {"runtime": "executorch", "artifact": str(built.artifact), "precision": "fp32", "sample_shape": [1, 28, 28]}
    )
    assert res["meta"]["checked_on_device"] is True and res["meta"]["outputs"] == ["scores"]


def _write_export_names(path, names: list[str]) -> None:
    import onnx
    from onnx import TensorProto, helper

    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names]
    nodes = [helper.make_node("Identity", ["x"], [n]) for n in names]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], outs)
    onnx.save(helper.make_model(graph), str(path))


@pytest.mark.parametrize("precision", ["fp16", "bf16", "int8-entropy", "int8-percentile", "int8-mixed"])
def test_precisions_executorch_does_not_build_are_na_with_the_reason(precision):
    why = support({}, "executorch", precision).skipped
    assert why and "build fp32 or int8-minmax for this target" in why
    assert support({}, "executorch", "int8-minmax").skipped is None


def test_an_onnx_model_is_refused_naming_the_key(workdir, params, exported, capsys):
    params["model"]["format"] = "onnx"
    params["model"]["checkpoint"] = str(exported)
    params["build"]["precisions"] = ["fp32"]
    params["target"]["local_executorch"] = {"transport": "local", "runtime": "executorch"}
    write_params(params)
    quantize.main(["--precision", "fp32"])
    with pytest.raises(SystemExit) as e:
        build_main(["--target", "local_executorch"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "edgeforge build@local_executorch-fp32: error: runtime executorch converts the PyTorch model" in err
    assert "model.format is onnx" in err and "Traceback" not in err
    assert not LAYOUT.build_dir("local_executorch", "fp32").exists()
