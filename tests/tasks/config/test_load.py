"""Loading and validating params.yaml: unknown keys, bad values, cross-field checks, and the
committed params.yaml being exactly the Hydra composition of conf/."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tasks.config import Config, ConfigError, from_dict, load_config
from tasks.config.compose import compose
from tasks.config.load import check
from tests.conftest import ROOT, fast_params, write_params


def _load(tmp_path, p: dict) -> Config:
    return load_config(write_params(p, tmp_path / "params.yaml"))


def _error(tmp_path, p: dict) -> str:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, p)
    return str(e.value)


def test_fast_params_load(tmp_path):
    cfg = _load(tmp_path, fast_params())
    assert isinstance(cfg, Config)
    assert cfg.data.calib.limit == 32
    assert cfg.model.input.shape == [1, 28, 28]
    assert cfg.target["local"].runtime == "onnxruntime"


def test_defaults_pass_check():
    check(Config())


def test_empty_file_gives_defaults(tmp_path):
    (tmp_path / "params.yaml").write_text("")
    assert load_config(tmp_path / "params.yaml") == Config()


@pytest.mark.parametrize(
    "path, typo, suggestion",
    [
        (["export"], "opsett", "export.opset"),
        (["model", "input"], "chanel_order", "model.input.channel_order"),
        ([], "modle", "model"),
        (["target", "local"], "thread", "target.local.threads"),
    ],
)
def test_unknown_key_names_full_path_and_suggests_close_key(tmp_path, path, typo, suggestion):
    p = fast_params()
    node = p
    for k in path:
        node = node[k]
    node[typo] = 1
    msg = _error(tmp_path, p)
    assert ".".join([*path, typo]) in msg
    assert f"did you mean '{suggestion}'" in msg


def test_unknown_key_without_close_match_lists_allowed_keys(tmp_path):
    p = fast_params()
    p["export"]["zzzzzz"] = 1
    msg = _error(tmp_path, p)
    assert "export.zzzzzz" in msg
    assert "did you mean" not in msg
    for allowed in ("exporter", "fallback", "opset", "simplify"):
        assert allowed in msg


@pytest.mark.parametrize(
    "section, key, value, key_in_msg, allowed",
    [
        ("build", "precisions", ["fp8"], "build.precisions", ["fp32", "fp16"]),
        ("model", "format", "keras", "model.format", ["state_dict", "torchscript", "pt2", "onnx"]),
        ("export", "exporter", "tracing", "export.exporter", ["dynamo", "torchscript"]),
        ("quant", "mixed_calibrator", "kl", "quant.mixed_calibrator", ["minmax", "entropy", "percentile"]),
        ("quant", "sensitivity", "hessian", "quant.sensitivity", ["auto", "task", "sqnr"]),
        ("model", "seg_output", "sigmoid", "model.seg_output", ["probabilities", "logits"]),
    ],
)
def test_bad_literal_names_key_and_allowed_values(tmp_path, section, key, value, key_in_msg, allowed):
    p = fast_params()
    p[section][key] = value
    msg = _error(tmp_path, p)
    assert key_in_msg in msg
    assert "not allowed" in msg
    for a in allowed:
        assert a in msg


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("data", "batch_size", "64", "an integer"),  # string for an int
        ("data", "batch_size", True, "an integer"),  # bool is not an int here
        ("data", "batch_size", 6.5, "an integer"),
        ("export", "simplify", "yes", "true or false"),
        ("export", "simplify", 1, "true or false"),
        ("bench", "warmup_s", True, "a number"),
        ("bench", "offline_batch_sizes", 8, "a list"),
        ("report", "experiment", 3, "a string"),
    ],
)
def test_wrong_types_name_key_and_expected_type(tmp_path, section, key, value, expected):
    p = fast_params()
    p[section][key] = value
    msg = _error(tmp_path, p)
    assert f"{section}.{key}" in msg
    assert expected in msg


def test_wrong_type_inside_list_names_the_index(tmp_path):
    p = fast_params()
    p["bench"]["offline_batch_sizes"] = [1, "four"]
    msg = _error(tmp_path, p)
    assert "bench.offline_batch_sizes[1]" in msg
    assert "an integer" in msg


def test_section_must_be_a_mapping(tmp_path):
    p = fast_params()
    p["export"] = [1, 2]
    msg = _error(tmp_path, p)
    assert "export" in msg and "mapping" in msg


def test_int_accepted_for_float():
    p = fast_params()
    p["parity"]["atol"] = 1
    cfg = from_dict(Config, p)
    assert cfg.parity.atol == 1.0 and isinstance(cfg.parity.atol, float)


def _set(p: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for k in parents:
        p = p[k]
    p[last] = value


@pytest.mark.parametrize(
    "changes, key, fragments",
    [
        ({"model.scores_output": "probs"}, "model.scores_output", ["'probs'", "logits"]),
        ({"build.targets": ["local", "jetson"]}, "build.targets", ["'jetson'", "local"]),
        ({"model.input.shape": [3, 28, 28]}, "model.input.channel_order", ["'gray'", "3"]),
        ({"model.input.channel_order": "rgb"}, "model.input.channel_order", ["'rgb'", "1"]),
        ({"parity.batch_size": 1}, "parity.batch_size", ["> 1"]),
        ({"parity.outputs": {"probs": {"atol": 0.1, "rtol": 0.0}}}, "parity.outputs.probs", ["logits"]),
        ({"model.input.shape": [28, 28]}, "model.input.shape", ["[C, H, W]"]),
        ({"model.input.mean": [0.1, 0.2]}, "model.input.mean", ["got 2"]),
        # one value for a 3-channel model is rejected, not broadcast: the key, the count and the values
        (
            {"model.input.shape": [3, 28, 28], "model.input.channel_order": "rgb", "model.input.std": [0.2, 0.2, 0.2]},
            "model.input.mean",
            ["[0.1307]", "1 value(s)", "3 input channel(s)", "one value per channel"],
        ),
        (
            {"model.input.shape": [3, 28, 28], "model.input.channel_order": "rgb", "model.input.mean": [0.5, 0.5, 0.5]},
            "model.input.std",
            ["[0.3081]", "3 input channel(s)"],
        ),
        ({"model.input.std": [0.0]}, "model.input.std", ["> 0"]),
        ({"model.arch": None}, "model.arch", ["state_dict"]),
        ({"model.seg_threshold": 1.0}, "model.seg_threshold", ["(0, 1)"]),
        ({"model.seg_threshold": 0.0}, "model.seg_threshold", ["(0, 1)"]),
        ({"data.eval.source": "npz"}, "data.eval.path", ["npz"]),
        ({"data.calib.limit": 0}, "data.calib.limit", ["> 0"]),
        ({"export.opset": 11}, "export.opset", ["13"]),
        ({"build.precisions": ["fp16", "fp16"]}, "build.precisions", ["duplicates"]),
        ({"build.targets": []}, "build.targets", ["at least one"]),
        ({"eval.max_drop": -1.0}, "eval.max_drop", [">= 0"]),
        ({"quant.max_drop": -0.5}, "quant.max_drop", [">= 0"]),
        ({"quant.max_kept_fraction": 1.5}, "quant.max_kept_fraction", ["[0, 1]"]),
        ({"quant.sqnr_samples": 0}, "quant", ["sqnr_samples"]),
        # MLflow's registry refuses these names: caught when the config loads, not at the end of a run
        ({"report.registered_model": "mypkg:MyNet"}, "report.registered_model", ["'mypkg:MyNet'", "':'"]),
        ({"report.registered_model": "team/model"}, "report.registered_model", ["'/'"]),
        ({"report.registered_model": "  "}, "report.registered_model", ["empty"]),
        ({"report.registered_model": ".."}, "report.registered_model", ["another path"]),
        # trtexec runs in a scratch folder on the device: a relative plugin path would not be found
        ({"target.local.tensorrt": {"plugins": ["libp.so"]}}, "target.local.tensorrt.plugins", ["'libp.so'"]),
        ({"eval.iou_threshold": 1.5}, "eval.iou_threshold", ["[0, 1] or null"]),
        ({"eval.score_threshold": -0.1}, "eval.score_threshold", ["[0, 1] or null"]),
        ({"eval.max_detections": 0}, "eval.max_detections", ["> 0 or null"]),
        ({"eval.outputs": ["output0"]}, "eval.outputs", ["'output0'", "logits"]),
        # a one-output decoder given two outputs is refused when the config loads, before any stage
        (
            {"model.task": "detection", "model.outputs": ["output0", "proto"], "eval.decoder": "yolov8"},
            "eval.outputs",
            ["yolov8 takes 1 output(s)", "model.outputs names 2 (output0, proto)"],
        ),
        (
            {"model.task": "detection", "model.outputs": ["a", "b", "c"], "eval.decoder": "boxes"},
            "eval.outputs",
            ["boxes takes 1 or 4 output(s)"],
        ),
        ({"model.task": "detection", "eval.decoder": "yolo"}, "eval.decoder", ["'yolo'", "yolov8", "boxes"]),
        # fidelity: the decoding eval.fidelity_of names gets the checks of that task
        ({"eval.fidelity_score_threshold": 1.0}, "eval.fidelity_score_threshold", ["[0, 1)"]),
        (
            {"model.task": "fidelity", "eval.fidelity_of": "detection", "eval.decoder": "yolo"},
            "eval.decoder",
            ["'yolo'", "yolov8"],
        ),
        ({"model.task": "fidelity", "model.scores_output": "probs"}, "model.scores_output", ["'probs'"]),
        # keypoints: a box decoder cannot give keypoints, nor a keypoint decoder boxes
        ({"model.task": "keypoints"}, "eval.decoder", ["'centernet'", "keypoints decoder", "heatmap, yolov8_pose"]),
        ({"model.task": "detection", "eval.decoder": "heatmap"}, "eval.decoder", ["'heatmap'", "yolov8"]),
        (
            {"model.task": "keypoints", "eval.decoder": "heatmap", "eval.keypoint_names": ["top", "bottom"]},
            "eval.keypoint_names",
            ["2 name(s)", "17 keypoint(s)"],
        ),
        (
            {"model.task": "keypoints", "eval.decoder": "heatmap", "eval.keypoint_sigmas": []},
            "eval.keypoint_sigmas",
            [],
        ),
        (
            {"model.task": "keypoints", "eval.decoder": "heatmap", "eval.keypoint_sigmas": [0.05, 0.0]},
            "eval.keypoint_sigmas",
            ["> 0"],
        ),
    ],
)
def test_cross_field_checks(tmp_path, changes, key, fragments):
    p = fast_params()
    for dotted, value in changes.items():
        _set(p, dotted, value)
    from_dict(Config, p)  # the types are fine: only check() rejects it
    msg = _error(tmp_path, p)
    assert f"config key {key}:" in msg
    for frag in fragments:
        assert frag in msg


def test_fidelity_of_none_needs_no_scores_output(tmp_path):
    p = fast_params()
    _set(p, "model.task", "fidelity")
    _set(p, "eval.fidelity_of", "none")
    _set(p, "model.scores_output", "not-an-output")
    assert _load(tmp_path, p).eval.fidelity_of == "none"


def test_gray_with_three_channels_ok_when_rgb(tmp_path):
    p = fast_params()
    _set(p, "model.input.shape", [3, 28, 28])
    _set(p, "model.input.channel_order", "bgr")
    _set(p, "model.input.mean", [0.4, 0.45, 0.5])
    _set(p, "model.input.std", [0.2, 0.2, 0.2])
    cfg = _load(tmp_path, p)
    assert cfg.model.input.channel_order == "bgr"


def test_decoder_settings_default_to_null_and_load_when_set(tmp_path):
    p = fast_params()
    assert {
        k: p["eval"][k] for k in ("outputs", "score_threshold", "iou_threshold", "max_detections")
    } == dict.fromkeys(("outputs", "score_threshold", "iou_threshold", "max_detections"))
    changes = {
        "model.task": "detection",
        "model.outputs": ["output0", "proto"],
        "eval.decoder": "yolov8",
        "eval.outputs": ["output0"],
        "eval.iou_threshold": 0.65,
        "eval.multi_label": False,
    }
    for dotted, value in changes.items():
        _set(p, dotted, value)
    e = _load(tmp_path, p).eval
    assert (e.outputs, e.iou_threshold, e.multi_label, e.score_threshold) == (["output0"], 0.65, False, None)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_committed_params_is_the_composition_of_conf(tmp_path):
    out = tmp_path / "params.yaml"
    compose(out)
    assert out.read_text() == (ROOT / "params.yaml").read_text()
    load_config(out)  # and it is valid


def test_compose_check_exits_zero():
    r = subprocess.run(
        [sys.executable, "-m", "tasks.config.compose", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "matches" in r.stderr


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_override_changes_exactly_that_value(tmp_path):
    compose(tmp_path / "default.yaml")
    compose(tmp_path / "override.yaml", ["export.opset=17"])
    default = _flatten(yaml.safe_load((tmp_path / "default.yaml").read_text()))
    override = _flatten(yaml.safe_load((tmp_path / "override.yaml").read_text()))
    assert default.keys() == override.keys()
    changed = {k: (default[k], override[k]) for k in default if default[k] != override[k]}
    assert changed == {"export.opset": (18, 17)}
    assert load_config(tmp_path / "override.yaml").export.opset == 17


def test_readme_config_reference_is_generated_from_the_schema():
    from tasks.config.__main__ import END, START, reference
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    assert START in readme and END in readme
    assert readme.split(START, 1)[1].split(END, 1)[0] == reference(), (
        "README's config reference is stale: run `python -m tasks.config --readme`"
    )


@pytest.mark.parametrize(
    ("split", "key", "message"),
    [
        ({"source": "coco", "path": "imgs"}, "data.eval.annotations", "source=coco needs the instances JSON"),
        (
            {"source": "masks", "path": "imgs"},
            "data.eval.annotations",
            "source=masks needs the folder of PNG class maps",
        ),
        ({"source": "yolo", "path": "ds"}, "data.eval.split", "source=yolo needs the subfolder of images/"),
    ],
)
def test_file_sources_need_their_keys(tmp_path, split, key, message):
    p = fast_params()
    p["data"]["eval"] = {**split, "limit": None}
    with pytest.raises(ConfigError, match=f"config key {key}: {message}"):
        _load(tmp_path, p)


def test_letterbox_is_refused_for_arrays_whose_labels_are_in_input_pixels(tmp_path):
    p = fast_params()
    p["model"]["input"]["letterbox"] = True
    with pytest.raises(ConfigError, match="model.input.letterbox: applies to images read from files"):
        _load(tmp_path, p)
    p["data"]["calib"] = {"source": "images", "path": "a", "limit": None}
    p["data"]["eval"] = {"source": "coco", "path": "b", "annotations": "b.json", "limit": None}
    assert _load(tmp_path, p).model.input.letterbox
    p["model"]["input"]["pad_value"] = 300
    with pytest.raises(ConfigError, match="model.input.pad_value: 300 must be in 0..255"):
        _load(tmp_path, p)


@pytest.mark.parametrize(
    "release, key, words",
    [
        ({"version": "1.2"}, "release.version", "MAJOR.MINOR.PATCH"),
        ({"devices": {"jetson": "local"}}, "release.devices.jetson", "no target 'jetson'"),
        ({"devices": {"local": "orin"}}, "release.devices.local", "class 'orin' is not a target"),
        ({"devices": {"local": "local"}, "canary": "other"}, "release.canary", "not in release.devices"),
        ({"keep": 1}, "release.keep", "one to roll back to"),
        ({"parallel": 0}, "release.parallel", ">= 1"),
    ],
)
def test_bad_release_settings_name_the_key(tmp_path, release, key, words):
    p = fast_params()
    p["release"].update(release)
    with pytest.raises(ConfigError, match=rf"config key {key}: .*{words}"):
        _load(tmp_path, p)
