"""Stage build@<target> for a DLA target (``tensorrt.dla_core``) through the FAKE trtexec
(tests/fakes/trtexec) on a local TensorRT target: the pre-flight DLA lint is recorded, the recorded DLA
log the fake replays (NVIDIA/TensorRT#2318: no layer can run on DLA) is read into build.json, and
``tensorrt.max_gpu_fallback`` rejects the build, leaving nothing behind."""

from __future__ import annotations

import onnx
import pytest

from tasks import build
from tasks.io import read_json, write_json
from tasks.layout import LAYOUT
from tests.conftest import write_params
from tests.fakes import install_trtexec
from tests.tasks.runtimes.test_dla_placement import model_bn

ORIN = {"name": "Jetson AGX Orin Developer Kit", "compute_capability": "8.7"}
NO_DLA_LAYER = "trt8.x_dla_samplenmt_no_dla_layer_fragment.log"


def _orin(params, tmp_path, bound) -> None:
    exe = install_trtexec(tmp_path / "bin", "10.3.0", dla_log=NO_DLA_LAYER)
    trt = {"trtexec": str(exe), "dla_core": 0, "max_gpu_fallback": bound}
    params["target"]["orin"] = {**params["target"]["local"], "runtime": "tensorrt", "tensorrt": trt}
    write_params(params)
    write_json(LAYOUT.fingerprint("orin"), {"gpu": [ORIN], "tensorrt": "10.3.0", "fingerprint_sha256": "0" * 64})
    model = onnx.load(str(model_bn(tmp_path)))  # the export and its fp16 form, as the earlier stages leave them
    for path in (LAYOUT.onnx, LAYOUT.precision_onnx("fp16", "tensorrt")):
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))


def test_a_dla_build_above_the_fallback_bound_is_rejected(params, tmp_path, capsys):
    _orin(params, tmp_path, 0.2)
    with pytest.raises(SystemExit) as e:
        build.main(["--target", "orin", "--precision", "fp16"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and not LAYOUT.build_dir("orin", "fp16").exists()
    assert "edgeforge build@orin-fp16: error: orin: 100% of the model's layers" in err
    assert "fell back from DLA core 0 to the GPU, above target.orin.tensorrt.max_gpu_fallback = 0.2" in err
    assert "TensorRT found no layer it can run on DLA; Embedding matrix (type not printed" in err


def test_without_a_bound_the_record_says_where_the_layers_ran(params, tmp_path):
    _orin(params, tmp_path, None)
    build.main(["--target", "orin", "--precision", "fp16"])
    rec = read_json(LAYOUT.build_dir("orin", "fp16") / "build.json")
    assert rec["gpu_fallback_share"] == 1.0 and rec["dla_placement_source"] == "warnings"
    assert len(rec["gpu_fallback_layers"]) == 10 and rec["dla_layers"] == []
    assert "Embedding matrix" in rec["gpu_fallback_not_in_model"]  # the recorded model's names, not this one's
    lint = rec["dla_lint"]  # the tutorial's ModelBN: global pooling and the flatten are predicted on the GPU
    assert [f["node"] for f in lint["predicted_fallbacks"]] == ["GlobalAveragePool_8", "Flatten_14"]
    assert rec["trt_dla"]["core"] == 0
