"""Down-converting a model to the opset of the device's TensorRT ONNX parser: a real torch export at
opset 18 (mean/amax over spatial dims, chunk) to 17 and 13 with the same ONNX Runtime outputs and
the reductions' axes as attributes; Split/Pad/Q-DQ forms on hand-built graphs; refusals that name
export.opset; a conversion that changes numbers never written; and through build.main on a FAKE
TensorRT 8.6 target (tests/fakes/trtexec), the opset the device receives."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tasks.runtimes import opset
from tasks.runtimes.opset import OpsetError, convert, fit, verify
from tasks.runtimes.trt_lint import model_opset

RNG = np.random.default_rng(0)


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def _graph_model(nodes, inits, opset_version: int, outputs: dict[str, int], x_shape=(2, 5, 6, 6)) -> onnx.ModelProto:
    """``x`` (float32 ``x_shape``) -> nodes -> ``outputs`` ({name: rank}, float32)."""
    outs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"{n}_{i}" for i in range(r)]) for n, r in outputs.items()
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))], outs, initializer=inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset_version)])


def _ints(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


@pytest.fixture(scope="module")
def exported18(tmp_path_factory):
    """A small CNN exported by torch's dynamo exporter at opset 18 (EdgeForge's default): global
    mean and max pooling written as ReduceMean/ReduceMax with an axes input, and a chunk (Split)."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 3)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            a, b = torch.chunk(h, 2, dim=1)
            pooled = torch.cat([a.mean(dim=(2, 3)), b.amax(dim=(2, 3))], dim=1)
            return self.fc(pooled) + h.mean(dim=(1, 2, 3), keepdim=True).flatten(1)

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("export") / "net.onnx"
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)", category=FutureWarning)  # torch's
    prog = torch.onnx.export(
        Net().eval(),
        (torch.zeros(2, 1, 12, 12),),
        dynamo=True,
        opset_version=18,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    prog.save(str(path))
    return onnx.load(str(path))


@pytest.mark.parametrize("target", [17, 13])
def test_a_real_opset18_export_converts_with_the_same_outputs(exported18, target):
    assert model_opset(exported18) == 18
    reductions = [n for n in exported18.graph.node if n.op_type in ("ReduceMean", "ReduceMax")]
    assert len(reductions) == 3 and all(len(n.input) == 2 for n in reductions)  # axes as an input
    converted, notes = convert(exported18, target)
    assert model_opset(converted) == target
    for node in converted.graph.node:
        if node.op_type in ("ReduceMean", "ReduceMax"):  # opset 13-17: axes is an attribute
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            assert len(node.input) == 1 and attrs["axes"] in ([2, 3], [1, 2, 3]), (node.name, attrs)
            assert "noop_with_empty_axes" not in attrs
        if node.op_type == "Split":
            assert "num_outputs" not in {a.name for a in node.attribute}
    assert len(notes) == 3
    x = RNG.standard_normal((5, 1, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(_run(converted, x)[0], _run(exported18, x)[0], rtol=1e-6, atol=1e-6)
    assert verify(exported18, converted, x) <= 1e-5


def test_split_with_uneven_num_outputs_gets_sizes_and_pad_axes_get_full_pads():
    nodes = [
        helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2, name="split5"),  # 5 -> 3 + 2
        helper.make_node("Pad", ["a", "pads", "", "axes"], ["y"], name="pad_hw"),
    ]
    model = _graph_model(nodes, [_ints("pads", [1, 2, 3, 4]), _ints("axes", [-1, 2])], 18, {"y": 4, "b": 4})
    for target in (17, 13):
        converted, notes = convert(model, target)
        split, pad = converted.graph.node
        sizes = next(t for t in converted.graph.initializer if t.name == split.input[1])
        assert numpy_helper.to_array(sizes).tolist() == [3, 2]
        assert len(pad.input) == 2 and {"pads", "axes"}.isdisjoint(t.name for t in converted.graph.initializer)
        x = RNG.standard_normal((2, 5, 6, 6)).astype(np.float32)
        assert verify(model, converted, x) == 0.0
        assert notes == ["Split split5: num_outputs=2 as sizes [3, 2]", "Pad pad_hw: axes [3, 2] as pads of every axis"]


def test_per_channel_qdq_keeps_its_axis_and_drops_opset19_saturate():
    scale = numpy_helper.from_array(np.array([0.02, 0.03, 0.05, 0.01, 0.04], np.float32), "scale")
    zero = numpy_helper.from_array(np.zeros(5, np.int8), "zero")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], axis=1, saturate=1, name="q"),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"], axis=1, name="dq"),
        helper.make_node("ReduceMean", ["dq", "hw"], ["y"], keepdims=1, name="gap"),
    ]
    model = _graph_model(nodes, [scale, zero, _ints("hw", [2, 3])], 19, {"y": 4})
    for target in (17, 13):
        converted, _ = convert(model, target)
        q, dq, gap = converted.graph.node
        assert [(a.name, a.i) for a in q.attribute] == [("axis", 1)] and [a.name for a in dq.attribute] == ["axis"]
        assert {a.name: helper.get_attribute_value(a) for a in gap.attribute} == {"keepdims": 1, "axes": [2, 3]}
        assert verify(model, converted, RNG.standard_normal((2, 5, 6, 6)).astype(np.float32)) == 0.0


@pytest.mark.parametrize(
    ("node", "inits", "why"),
    [
        (helper.make_node("ReduceMean", ["x", "axes_in"], ["y"], name="gap"), [], "computed, not a constant"),
        (helper.make_node("Pad", ["x", "pads"], ["y"], mode="wrap", name="wrap"), [_ints("pads", [0] * 8)], "'wrap'"),
        (helper.make_node("Gelu", ["x"], ["y"], name="gelu"), [], "first appears in opset 20"),
        (
            helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear", antialias=1, name="aa"),
            [numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], np.float32), "s")],
            "attribute antialias=1 has no equivalent in Resize-13 (opset 17)",
        ),
    ],
)
def test_what_has_no_older_form_is_refused_naming_the_node_and_export_opset(tmp_path, node, inits, why):
    inputs = ["axes_in"] if "axes_in" in node.input else []
    model = _graph_model([node], inits, 20, {"y": 4})
    if inputs:  # the axes arrive at run time: nothing to write as an attribute
        model.graph.input.append(helper.make_tensor_value_info("axes_in", TensorProto.INT64, [2]))
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OpsetError) as e:
        fit(src, "8.6.1", "jetson", out, tmp_path / "no-split-needed")
    msg = str(e.value)
    assert msg.startswith(f"jetson: cannot convert {src} from ONNX opset 20 to 17: ")
    assert why in msg and f"node {node.name!r}" in msg and "re-export with export.opset=17" in msg
    assert list(out.iterdir()) == []


def test_a_conversion_that_changes_numbers_is_never_written(tmp_path, monkeypatch):
    from tasks.data.split import save_split

    model = _graph_model(
        [helper.make_node("ReduceMean", ["x", "hw"], ["y"], name="gap")], [_ints("hw", [2, 3])], 18, {"y": 4}
    )
    src, split, out = tmp_path / "m.onnx", tmp_path / "calib", tmp_path / "out"
    onnx.save(model, str(src))
    save_split(split, RNG.standard_normal((3, 5, 6, 6)).astype(np.float32), np.zeros(3))
    out.mkdir()

    def wrong(m, target):  # what 8.x's importer computes: ReduceMean over every axis
        bad, _ = convert(m, target)
        del bad.graph.node[0].attribute[:]
        return bad, []

    monkeypatch.setattr(opset, "convert", wrong)
    with pytest.raises(OpsetError, match=r"output y: shape \(1, 1, 1, 1\) after conversion, \(2, 5, 1, 1\) before"):
        fit(src, "8.4.1", "xavier", out, split)
    assert list(out.iterdir()) == []
    with pytest.raises(OpsetError, match="max .difference. .* after conversion"):  # same shape, other numbers
        other = _graph_model([helper.make_node("ReduceMax", ["x"], ["y"], axes=[2, 3])], [], 13, {"y": 4})
        verify(model, other, np.load(split / "x.npy"))


def test_fit_converts_only_above_the_parser_limit(tmp_path):
    from tasks.data.split import save_split

    model = _graph_model(
        [helper.make_node("ReduceMax", ["x", "hw"], ["y"], name="gmp")], [_ints("hw", [2, 3])], 18, {"y": 4}
    )
    src, split = tmp_path / "m.onnx", tmp_path / "calib"
    onnx.save(model, str(src))
    save_split(split, RNG.standard_normal((12, 5, 6, 6)).astype(np.float32), np.zeros(12))
    assert fit(src, "10.3.0", "orin", tmp_path, split) == (src, {"onnx_opset": 18})  # 10.x reads 18
    path, meta = fit(src, "8.2.1", "nano", tmp_path, split)
    assert path == tmp_path / "model.opset13.onnx" and model_opset(onnx.load(str(path))) == 13
    conv = meta["onnx_opset_conversion"]
    assert meta["onnx_opset"] == 13 and (conv["from"], conv["to"], conv["file"]) == (18, 13, path.name)
    assert conv["verified_samples"] == opset.SAMPLES and conv["max_abs_diff"] == 0.0
    assert conv["rewritten"] == ["ReduceMax gmp: axes [2, 3] as attribute"]


# -- through build.main on a FAKE TensorRT target ------------------------------------------------


def _engine_onnx(engine: bytes) -> onnx.ModelProto:
    """The ONNX the FAKE trtexec received (its engine: header, sha256, JSON, then the ONNX bytes)."""
    header, _sha, _info, model = engine.split(b"\n", 3)
    assert header == b"EDGEFORGE FAKE TRT ENGINE"
    return onnx.load_from_string(model)


def test_build_hands_a_tensorrt_86_target_opset_17(params, exported, tmp_path):
    from tasks import quantize
    from tasks.config.schema import Target, TensorRT
    from tasks.io import read_json
    from tasks.layout import LAYOUT
    from tests.conftest import build_main, write_params
    from tests.fakes import install_trtexec

    for name, version in (("trt86", "8.6.1"), ("trt103", "10.3.0")):
        trtexec = install_trtexec(tmp_path / name, version)
        target = Target(runtime="tensorrt", tensorrt=TensorRT(trtexec=str(trtexec)))
        params["target"][name] = dataclasses.asdict(target)
    write_params(params)
    assert model_opset(onnx.load(str(exported))) == 18
    for precision in ("fp32", "int8-minmax"):
        quantize.main(["--precision", precision])
        build_main(["--target", "trt86", "--precision", precision])
        folder = LAYOUT.build_dir("trt86", precision)
        record = read_json(folder / "build.json")
        assert record["onnx_opset"] == 17 and record["onnx_opset_conversion"]["from"] == 18
        uploaded = _engine_onnx((folder / "model.engine").read_bytes())
        assert model_opset(uploaded) == 17
        assert uploaded == onnx.load(str(folder / record["onnx_opset_conversion"]["file"]))
    assert "int8_fallback_tensors" not in read_json(LAYOUT.build_dir("trt86", "fp32") / "build.json")
    int8 = read_json(LAYOUT.build_dir("trt86", "int8-minmax") / "build.json")
    assert int8["int8_fallback_tensors"] == [] and int8["int8_fallback_layers"] == []  # the FAKE prints none
    qdq = [n for n in _engine_onnx((LAYOUT.build_dir("trt86", "int8-minmax") / "model.engine").read_bytes()).graph.node]
    assert any(n.op_type == "DequantizeLinear" for n in qdq)
    build_main(["--target", "trt103", "--precision", "fp32"])
    record = read_json(LAYOUT.build_dir("trt103", "fp32") / "build.json")
    assert record["onnx_opset"] == 18 and "onnx_opset_conversion" not in record
    assert model_opset(_engine_onnx((LAYOUT.build_dir("trt103", "fp32") / "model.engine").read_bytes())) == 18
