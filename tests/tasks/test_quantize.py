"""Stage quantize@<precision>: the ONNX each precision builds from."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from tasks import quantize
from tasks.io import read_json, sha256_file
from tests.conftest import write_params


def _elem(model: onnx.ModelProto, io: str) -> int:
    return getattr(model.graph, io)[0].type.tensor_type.elem_type


def test_fp32_is_the_verified_export_and_fp16_halves_the_weights(workdir, params, exported):
    quantize.main(["--precision", "fp32"])
    quantize.main(["--precision", "fp16"])
    assert sha256_file(quantize.source("fp32")) == sha256_file(exported)
    half = onnx.load(str(quantize.source("fp16")))
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    assert {i.data_type for i in half.graph.initializer if i.data_type in floats} == {onnx.TensorProto.FLOAT16}
    assert _elem(half, "input") == _elem(half, "output") == onnx.TensorProto.FLOAT  # FP32 I/O by default
    meta = read_json(quantize.metrics_path("fp16"))
    assert meta == read_json(quantize.out_dir("fp16") / "quantize.json")
    assert meta["keep_io_types"] is True and meta["sha256"] == sha256_file(quantize.source("fp16"))
    assert meta["source_onnx_sha256"] == sha256_file(exported)


def test_fp16_with_float16_io(workdir, params, exported):
    params["build"]["fp16_keep_io_types"] = False
    write_params(params)
    quantize.main(["--precision", "fp16"])
    half = onnx.load(str(quantize.source("fp16")))
    assert _elem(half, "input") == onnx.TensorProto.FLOAT16


def test_precision_not_in_the_build_list_fails_and_leaves_nothing(workdir, params, exported, capsys):
    with pytest.raises(SystemExit) as e:
        quantize.main(["--precision", "fp8"])
    assert e.value.code == 1
    assert "quantize@fp8: error: --precision 'fp8' is not in build.precisions (fp32, fp16)" in capsys.readouterr().err
    assert not quantize.out_dir("fp8").exists() and not quantize.metrics_path("fp8").exists()
