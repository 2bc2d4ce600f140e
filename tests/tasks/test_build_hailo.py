"""Stage build@<target> for a Hailo target (Runtime.build_on_device), with the FAKE ``hailo``
(tests/fakes/hailo, replaying recorded Dataflow Compiler output) as the build host's compiler. The
pipeline's inputs are written directly (a small Conv model as the FP32 export, another as int8-minmax's
Q/DQ model, which a Hailo build only hashes, and a prepared calibration split) to keep the test fast."""

from __future__ import annotations

import numpy as np

from tasks import build
from tasks.data.split import save_split
from tasks.io import read_json, sha256_file, write_json
from tasks.layout import LAYOUT
from tests.conftest import write_params
from tests.fakes import install_hailo
from tests.tasks.quant.conftest import conv_model_with_constant_weights, save


def test_int8_builds_a_hef_and_fp32_is_not_applicable(params, workdir, capsys):
    exe = install_hailo(workdir / "dfc")
    params["target"]["hailo8"] = {**params["target"]["local"], "runtime": "hailo", "hailo": {"hailo": str(exe)}}
    write_params(params)
    LAYOUT.onnx.parent.mkdir(parents=True)
    save(conv_model_with_constant_weights(0), LAYOUT.onnx)
    LAYOUT.quantize_dir("int8-minmax").mkdir(parents=True)
    save(conv_model_with_constant_weights(1), LAYOUT.precision_onnx("int8-minmax", "hailo"))
    x = np.random.default_rng(0).normal(size=(40, 2, 8, 8)).astype(np.float32)
    save_split(LAYOUT.split("calib"), x, np.zeros(40, np.int64))
    write_json(LAYOUT.fingerprint("hailo8"), {"gpu": [], "fingerprint_sha256": "0" * 64})

    build.main(["--target", "hailo8", "--precision", "int8-minmax"])
    rec = read_json(LAYOUT.build_metrics("hailo8", "int8-minmax"))
    out = LAYOUT.build_dir("hailo8", "int8-minmax")
    assert rec == read_json(out / "build.json") and rec["runtime"] == "hailo" and rec["artifact"] == "model.hef"
    assert rec["sha256"] == sha256_file(out / "model.hef") and rec["host"] == "local"
    assert rec["source_onnx_sha256"] == sha256_file(LAYOUT.onnx)  # the FP32 export, not int8-minmax's model
    assert rec["hailo"]["calib_entries"] == 40 and rec["hailo"]["hw_arch"] == "hailo8"
    assert rec["hailo"]["facts"]["calib_entries"] == 40 and rec["hailo"]["facts"]["contexts"] == 1
    assert "EdgeForge's calibrator for int8-minmax" in rec["hailo_calibration"]
    build.main(["--target", "hailo8", "--precision", "fp32"])
    assert "build@hailo8-fp32: n/a: Hailo-8/8L run INT8" in capsys.readouterr().err
    assert not (LAYOUT.build_dir("hailo8", "fp32") / "model.hef").exists()
    # a .hef is built, not run: EdgeForge has no HailoRT session, so benchmark and evaluate say so (n/a)
    assert "no HailoRT session" in rec["not_run"]
    from tasks import benchmark, evaluate

    benchmark.main(["--target", "hailo8", "--precision", "int8-minmax"])
    evaluate.main(["--target", "hailo8", "--precision", "int8-minmax"])
    for path in (LAYOUT.benchmark_metrics("hailo8", "int8-minmax"), LAYOUT.evaluate_metrics("hailo8", "int8-minmax")):
        assert read_json(path)["skipped"].startswith("built (model.hef), not run: EdgeForge has no HailoRT session")
