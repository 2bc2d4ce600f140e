"""The pre-upload check against each TensorRT version's ONNX parser, on small graphs made with
onnx.helper: the opset it reads, an operator newer than an old TensorRT (the table per release
branch of onnx-tensorrt), a com.microsoft operator, operators inside If/Loop bodies and
model-local functions; and the layers named by the build log's INT8 fallback warnings."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tasks.runtimes.base import BuildError
from tasks.runtimes.tensorrt_recipe import RecipeError
from tasks.runtimes.trt_lint import (
    _ADDED,
    _BASE_82,
    check,
    first_version,
    int8_fallbacks,
    layers_of,
    max_opset,
    supported_ops,
    unsupported_ops,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "trtexec"


def vi(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4])


def save(tmp_path: Path, nodes, functions=(), name="m.onnx", opset=17) -> Path:
    """A model ``x -> nodes -> y`` (the nodes' own wiring is not checked: lint reads op types)."""
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in {f.domain for f in functions})]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [vi("x")], [vi("y")]), opset_imports=imports, functions=list(functions)
    )
    onnx.save(model, str(tmp_path / name))
    return tmp_path / name


def branch(name: str, *nodes) -> onnx.GraphProto:
    return helper.make_graph(list(nodes), name, [], [vi(nodes[-1].output[0])])


def test_an_operator_newer_than_the_tensorrt(tmp_path):
    m = save(
        tmp_path,
        [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Mod", ["r", "r"], ["y"], name="mod_1")],
    )
    assert unsupported_ops(m, "8.4.1") == [("Mod", "mod_1")]
    assert unsupported_ops(m, "8.5.2") == []
    assert unsupported_ops(m, "10.3.0.30") == []


def test_a_com_microsoft_operator_is_reported_for_every_version(tmp_path):
    m = save(tmp_path, [helper.make_node("FusedConv", ["x"], ["y"], name="fc", domain="com.microsoft")])
    for version in ("8.2.3", "8.6.1", "10.3.0", "11.0.0"):
        assert unsupported_ops(m, version) == [("com.microsoft:FusedConv", "fc")]
    with pytest.raises(
        BuildError,
        match="com.microsoft:FusedConv .not an ONNX-domain operator: TensorRT imports it only as a plugin.: 1 node: fc",
    ):
        check(m, "10.3.0", "orin")


def test_operators_inside_if_and_loop_bodies(tmp_path):
    then = branch("then", helper.make_node("Swish", ["x"], ["t"], name="swish_in_then"))
    other = branch("else", helper.make_node("Relu", ["x"], ["e"], name="relu_in_else"))
    body = branch("body", helper.make_node("If", ["c"], ["o"], name="inner_if", then_branch=then, else_branch=other))
    m = save(tmp_path, [helper.make_node("Loop", ["n", "c"], ["y"], name="loop", body=body)])
    assert unsupported_ops(m, "10.3.0") == [("Swish", "swish_in_then")]
    assert unsupported_ops(m, "11.0.0") == []  # Swish: TensorRT 11.0's parser


def test_unnamed_nodes_are_located(tmp_path):
    then = branch("then", helper.make_node("Trilu", ["x"], ["t"]))
    m = save(tmp_path, [helper.make_node("If", ["c"], ["y"], name="gate", then_branch=then, else_branch=then)])
    assert sorted(unsupported_ops(m, "8.4.1")) == [
        ("Trilu", "<unnamed #0 in gate/else_branch>"),
        ("Trilu", "<unnamed #0 in gate/then_branch>"),
    ]


def test_model_local_functions_are_expanded_from_tensorrt_9(tmp_path):
    fn = helper.make_function(
        "edgeforge.test",
        "ReluTwice",
        ["a"],
        ["b"],
        [helper.make_node("Relu", ["a"], ["h"]), helper.make_node("Relu", ["h"], ["b"])],
        [helper.make_opsetid("", 17)],
    )
    m = save(tmp_path, [helper.make_node("ReluTwice", ["x"], ["y"], name="call", domain="edgeforge.test")], [fn])
    assert unsupported_ops(m, "10.3.0") == []
    assert unsupported_ops(m, "8.6.1") == [("edgeforge.test:ReluTwice", "call")]


def test_check_lists_ops_and_up_to_five_node_names_and_what_to_do(tmp_path):
    nodes = [helper.make_node("Mod", ["x", "x"], [f"m{i}"], name=f"mod_{i}") for i in range(7)]
    nodes.append(helper.make_node("Relu", ["m6"], ["y"], name="relu"))
    m = save(tmp_path, nodes)
    with pytest.raises(BuildError) as e:
        check(m, "8.4.1", "xavier")
    msg = str(e.value)
    assert msg.startswith(f"xavier: {m} uses operators that TensorRT 8.4.1's ONNX parser cannot import")
    assert "Mod (supported from TensorRT 8.5): 7 nodes: mod_0, mod_1, mod_2, mod_3, mod_4 (+2 more)" in msg
    for todo in (
        "re-export the model with a different opset",
        "replace the op",
        "TensorRT plugin",
        "Nothing was uploaded",
    ):
        assert todo in msg
    check(m, "8.5.2", "orin-nano")  # no error


def test_a_quantized_cnn_passes_every_version(tmp_path):
    ops = ["QuantizeLinear", "DequantizeLinear", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Add"]
    m = save(tmp_path, [helper.make_node(op, ["x"], [f"o{i}"], name=op.lower()) for i, op in enumerate(ops)], opset=13)
    for version in ("8.2.3", "8.4.1", "8.6.1", "10.3.0", "11.0.0"):
        check(m, version, "device")


def test_unreadable_model_and_old_tensorrt(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model")
    with pytest.raises(BuildError, match="cannot read .*bad.onnx to check its operators"):
        check(bad, "10.3.0", "orin")
    with pytest.raises(RecipeError, match="TensorRT 8.2 or newer"):
        supported_ops("7.1.3")


def test_table_grows_by_release():
    assert first_version("Conv") == "8.2" and first_version("Mod") == "8.5" and first_version("Swish") == "11.0"
    assert first_version("Unique") is None
    seen = set(_BASE_82)
    for _, added in _ADDED:
        assert not (added & seen), added & seen
        seen |= added
    versions = ["8.2.0", "8.4.0", "8.5.0", "8.6.0", "9.2.0", "10.0.0", "10.5.0", "10.15.0", "11.0.0"]
    tables = [supported_ops(v) for v in versions]
    assert all(a < b for a, b in zip(tables, tables[1:]))
    assert {"Attention", "RMSNormalization", "Gelu"} <= supported_ops("10.15.1") and "Attention" not in supported_ops(
        "10.3.0"
    )


@pytest.mark.parametrize(
    ("op", "first"),
    [
        # onnx-tensorrt importers per release branch (trt_lint's docstring names file and line)
        ("Reciprocal", "8.2"),  # an 8.2-GA importer, though operators.md @ 8.2-GA reads N
        ("HardSwish", "8.4"),
        ("Shrink", "8.4"),
        ("Xor", "8.4"),
        ("RandomNormal", "8.5"),  # operators.md @ 8.4-GA reads Y; no 8.4 importer, Changelog 8.5 GA
        ("RandomNormalLike", "8.5"),
        ("Mod", "8.5"),
        ("LayerNormalization", "8.6"),
        ("CastLike", "9.1"),
        ("Hardmax", "9.2"),
        ("Gelu", "10.0"),
        ("DeformConv", "10.1"),
    ],
)
def test_each_release_row(tmp_path, op, first):
    assert first_version(op) == first
    m = save(tmp_path, [helper.make_node(op, ["x"], ["y"], name="n")])
    before = {"8.4": "8.2.3", "8.5": "8.4.1", "8.6": "8.5.2", "9.1": "9.0.1", "9.2": "9.1.0", "10.0": "9.3.0"}
    if (older := {**before, "10.1": "10.0.1"}.get(first)) is not None:  # 8.2 is the oldest supported
        assert unsupported_ops(m, older) == [(op, "n")]
    assert unsupported_ops(m, f"{first}.0") == []


def test_the_84_parser_imports_hardswish_reciprocal_and_shrink_but_not_randomnormal(tmp_path):
    ops = ["HardSwish", "Reciprocal", "Shrink", "RandomNormal", "RandomNormalLike"]
    m = save(tmp_path, [helper.make_node(op, ["x"], [f"o{i}"], name=op) for i, op in enumerate(ops)])
    assert unsupported_ops(m, "8.4.1") == [("RandomNormal", "RandomNormal"), ("RandomNormalLike", "RandomNormalLike")]
    assert unsupported_ops(m, "8.5.2") == []


@pytest.mark.parametrize(
    ("version", "limit"),
    [("8.2.1", 13), ("8.4.1", 17), ("8.5.2", 17), ("8.6.2", 17), ("9.3.0", 17), ("10.0.1", 20), ("10.3.0.30", 20)]
    + [("10.14.1", 20), ("10.15.1", 24), ("10.16.1", 24), ("11.0.0", 25)],
)
def test_the_opset_each_parser_reads(tmp_path, version, limit):
    assert max_opset(version) == limit
    check(save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], opset=limit), version, "dev")
    too_new = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], name="new.onnx", opset=limit + 1)
    with pytest.raises(BuildError) as e:
        check(too_new, version, "dev")
    msg = str(e.value)
    assert msg.startswith(f"dev: {too_new} is ONNX opset {limit + 1}, but TensorRT {version}'s ONNX parser")
    assert f"Re-export with export.opset={limit}" in msg and "Nothing was uploaded" in msg


def test_the_default_opset_18_is_too_new_below_tensorrt_10(tmp_path):
    m = save(tmp_path, [helper.make_node("ReduceMean", ["x"], ["y"])], opset=18)
    for version in ("8.2.3", "8.4.1", "8.6.1", "9.3.0"):
        with pytest.raises(BuildError, match="export.opset=1[37]"):
            check(m, version, "jetson")
    check(m, "10.3.0", "orin")


def test_int8_fallback_tensors_name_the_layers_that_read_or_write_them(tmp_path):
    """The tensors of tests/fixtures/trtexec/trt10.1_a100_int8_calib_missing_scale_fragment.log are
    the ONNX graph inputs; their consumers are the layers that leave INT8."""
    x2 = helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["e"], name="/embeddings/word_embeddings/Gather"),
        helper.make_node("Mul", ["e", "attention_mask"], ["m"], name="/embeddings/Mul"),
        helper.make_node("Relu", ["m"], ["y"]),  # unnamed: TensorRT calls it node_of_y
    ]
    graph = helper.make_graph(nodes, "g", [vi("input_ids"), x2], [vi("y")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    log = (FIXTURES / "trt10.1_a100_int8_calib_missing_scale_fragment.log").read_text()
    assert int8_fallbacks(log, tmp_path / "m.onnx") == {
        "int8_fallback_tensors": ["input_ids", "attention_mask"],
        "int8_fallback_layers": ["/embeddings/word_embeddings/Gather", "/embeddings/Mul"],
    }
    assert layers_of(tmp_path / "m.onnx", ["m", "(Unnamed Layer* 117) [ElementWise]_output"]) == [
        "/embeddings/Mul",
        "node_of_y",
    ]
    assert int8_fallbacks("&&&& PASSED TensorRT.trtexec", tmp_path / "m.onnx") == {
        "int8_fallback_tensors": [],
        "int8_fallback_layers": [],
    }
