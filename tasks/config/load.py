"""Load ``params.yaml`` into the typed :class:`Config`, once, at the edge (docs/architecture.md, rule 2).

Unknown keys and bad values fail with a :class:`ConfigError` that names the key, says what is
allowed, and suggests the closest key for typos.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from tasks.config.schema import Config

T = typing.TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is not valid; the message says which and what to do."""


def load_config(path: str | os.PathLike = "params.yaml") -> Config:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found: run from the project root, or compose it with `dvc exp run`")
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    cfg = from_dict(Config, raw)
    check(cfg)
    return cfg


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and ill-typed values."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {fl.name: fl for fl in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{where}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key {where}{key}{hint}; allowed keys here: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(hints[k], v, f"{where}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _bad(where: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"config key {where}: {value!r} is not valid; expected {expected}")


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(
                f"config key {where}: {value!r} is not allowed; allowed values: {', '.join(map(str, args))}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, f"{where}.")
    if origin is list:
        if not isinstance(value, list):
            raise _bad(where, value, "a list")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad(where, value, "a mapping")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(where, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, value, "an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(where, value, "a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _bad(where, value, "a string")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")


FAMILIES = ("fp32", "fp16", "bf16", "int8")


def family(precision: str) -> str:
    """fp32, fp16, bf16 or int8: the family whose tolerances and peak apply to ``precision``."""
    return "int8" if precision.startswith("int8") else precision


MAX_MODEL_NAME = 256  # MLflow's registered_models.name column


def model_name_problem(name: str) -> str | None:
    """Why MLflow's registry would refuse ``name`` as a registered model name, or None. Its rules
    (mlflow/utils/validation.py ``_validate_model_name``): not blank, no '/' or ':', and the
    name read as a path must be itself (no '//', '/./', leading '/' or '..')."""
    import posixpath

    if not name.strip():
        return "is empty"
    bad = sorted({c for c in name if c in "/:"})
    if bad:
        return f"contains {' and '.join(repr(c) for c in bad)}, which MLflow's registry refuses in a name"
    norm = posixpath.normpath(name)
    if norm != name or norm in (".",) or norm.startswith(".."):
        return "would be read as another path by MLflow's registry"
    if len(name) > MAX_MODEL_NAME:
        return f"is {len(name)} characters long; MLflow keeps at most {MAX_MODEL_NAME}"
    return None


def _require(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key}: {msg}")


def check(cfg: Config) -> None:
    """Cross-field and range checks the types cannot express."""
    m = cfg.model
    _require(
        len(m.input.shape) == 3 and all(d > 0 for d in m.input.shape),
        "model.input.shape",
        f"{m.input.shape} must be [C, H, W] with positive sizes",
    )
    channels = m.input.shape[0]
    _require(
        (m.input.channel_order == "gray") == (channels == 1),
        "model.input.channel_order",
        f"{m.input.channel_order!r} does not fit {channels} input channel(s)",
    )
    for key in ("mean", "std"):
        vals = getattr(m.input, key)
        # one value per channel: a single value for an RGB model is most often ImageNet's statistics
        # half-copied, and broadcasting it would silently normalise every channel alike
        _require(
            len(vals) == channels,
            f"model.input.{key}",
            f"{vals} has {len(vals)} value(s) but the model has {channels} input channel(s) "
            f"(model.input.shape[0], channel_order {m.input.channel_order}); give one value per channel, "
            f"got {len(vals)}",
        )
    _require(all(s > 0 for s in m.input.std), "model.input.std", "values must be > 0")
    _require(0 <= m.input.pad_value <= 255, "model.input.pad_value", f"{m.input.pad_value} must be in 0..255")
    if m.input.resize is not None:
        _require(len(m.input.resize) == 2 and min(m.input.resize) > 0, "model.input.resize", "must be [H, W]")
    _require(bool(m.outputs), "model.outputs", "name at least one output")
    if decoded_as(cfg) in ("classification", "segmentation"):
        _require(
            m.scores_output in m.outputs,
            "model.scores_output",
            f"{m.scores_output!r} is not one of model.outputs; allowed values: {', '.join(m.outputs)}",
        )
    _require(0 < m.seg_threshold < 1, "model.seg_threshold", f"{m.seg_threshold} must be in (0, 1) (a probability)")
    if m.format == "state_dict":
        _require(
            bool(m.arch), "model.arch", "format=state_dict needs the model class (registered name or 'module:Class')"
        )
    for split in ("calib", "eval"):
        s = getattr(cfg.data, split)
        if s.source != "loader":
            _require(bool(s.path), f"data.{split}.path", f"source={s.source} needs a path")
        if s.source in ("coco", "masks"):
            what = "the instances JSON" if s.source == "coco" else "the folder of PNG class maps"
            _require(bool(s.annotations), f"data.{split}.annotations", f"source={s.source} needs {what}")
        if s.source == "yolo":
            _require(bool(s.split), f"data.{split}.split", "source=yolo needs the subfolder of images/ to read")
        _require(
            not (m.input.letterbox and s.source in ("loader", "npz")),
            "model.input.letterbox",
            f"applies to images read from files; data.{split}.source={s.source} gives arrays whose labels are "
            "already in model-input pixels (set letterbox=false, or read the images from files)",
        )
        if s.limit is not None:
            _require(s.limit > 0, f"data.{split}.limit", "must be > 0 or null")
    _require(cfg.data.batch_size > 0, "data.batch_size", "must be > 0")
    _require(
        cfg.export.opset >= 13, "export.opset", f"{cfg.export.opset} is too old; use 13 or newer (18 is the default)"
    )
    for name, tol in [
        ("parity", cfg.parity),
        *((f"parity.outputs.{k}", v) for k, v in cfg.parity.outputs.items()),
        *((f"parity.artifact.{k}", v) for k, v in cfg.parity.artifact.items()),
        *(
            (f"parity.artifact_outputs.{o}.{k}", v)
            for o, per in cfg.parity.artifact_outputs.items()
            for k, v in per.items()
        ),
    ]:
        _require(tol.atol >= 0 and tol.rtol >= 0, name, "atol and rtol must be >= 0")
        _require(0 <= getattr(tol, "max_outside", 0) <= 1, f"{name}.max_outside", "must be in [0, 1]")
    for key, fams in [
        ("parity.artifact", cfg.parity.artifact),
        *((f"parity.artifact_outputs.{o}", per) for o, per in cfg.parity.artifact_outputs.items()),
    ]:
        for fam in fams:
            _require(fam in FAMILIES, f"{key}.{fam}", f"not a precision family; allowed values: {', '.join(FAMILIES)}")
    for out in cfg.parity.artifact_outputs:
        _require(
            out in m.outputs,
            f"parity.artifact_outputs.{out}",
            f"not a model output; allowed values: {', '.join(m.outputs)}",
        )
    _require(cfg.parity.histogram_bins >= 2, "parity.histogram_bins", "must be >= 2")
    for out in cfg.parity.outputs:
        _require(
            out in m.outputs, f"parity.outputs.{out}", f"not a model output; allowed values: {', '.join(m.outputs)}"
        )
    _require(cfg.parity.batch_size > 1, "parity.batch_size", "must be > 1 (batch 1 is checked separately)")
    q = cfg.quant
    _require(q.samples > 0 and q.batch_size > 0, "quant", "samples and batch_size must be > 0")
    _require(0 < q.percentile <= 100, "quant.percentile", f"{q.percentile} must be in (0, 100]")
    _require(
        bool(re.fullmatch(r"\d+(\.\d+){0,3}", q.trt_version)),
        "quant.trt_version",
        f"{q.trt_version!r} must look like 8.6.1 or 10.3.0",
    )
    _require(q.max_drop >= 0, "quant.max_drop", "must be >= 0 (points of top-1)")
    _require(0 <= q.max_kept_fraction <= 1, "quant.max_kept_fraction", f"{q.max_kept_fraction} must be in [0, 1]")
    _require(
        min(q.sensitivity_samples, q.sqnr_samples, q.sensitivity_max_task_layers) > 0,
        "quant",
        "sensitivity_samples, sqnr_samples and sensitivity_max_task_layers must be > 0",
    )
    _require(bool(cfg.build.targets), "build.targets", "list at least one target")
    for t in cfg.build.targets:
        _require(t in cfg.target, "build.targets", f"{t!r} is not defined; defined targets: {', '.join(cfg.target)}")
    for name, t in cfg.target.items():
        _check_target(f"target.{name}", t)
    _require(bool(cfg.build.precisions), "build.precisions", "list at least one precision")
    _require(len(set(cfg.build.precisions)) == len(cfg.build.precisions), "build.precisions", "has duplicates")
    _require(all(b > 0 for b in cfg.bench.offline_batch_sizes), "bench.offline_batch_sizes", "must be positive")
    _require(
        bool(cfg.bench.batch_sizes),
        "bench",
        "single_stream is false and offline_batch_sizes is empty: nothing to measure",
    )
    _require(cfg.bench.max_p99_ms is None or cfg.bench.max_p99_ms > 0, "bench.max_p99_ms", "must be > 0 or null")
    _require(
        cfg.bench.min_iterations > 0 and cfg.bench.min_duration_s >= 0 and cfg.bench.warmup_s >= 0,
        "bench",
        "min_iterations must be > 0 and durations >= 0",
    )
    _require(
        cfg.bench.end_to_end_iterations > 0 and cfg.bench.end_to_end_max_s > 0,
        "bench",
        "end_to_end_iterations and end_to_end_max_s must be > 0",
    )
    t = cfg.bench.end_to_end_score_threshold
    _require(t is None or 0 <= t <= 1, "bench.end_to_end_score_threshold", f"{t} must be in [0, 1] or null")
    if cfg.report.registered_model is not None:
        why = model_name_problem(cfg.report.registered_model)
        _require(
            why is None,
            "report.registered_model",
            f"{cfg.report.registered_model!r} {why}; use letters, digits, '-', '_' and '.' "
            "(or null for 'edgeforge-<model>')",
        )
    _require(cfg.eval.max_drop >= 0, "eval.max_drop", "must be >= 0 (points of the task metric)")
    _check_eval(cfg)
    from tasks.config.release_checks import check_release  # it imports this module

    check_release(cfg)


def decoded_as(cfg: Config) -> str:
    """The task whose decoding the outputs get: ``model.task``, or for ``fidelity`` (no labels: scored
    against FP32's own outputs) ``eval.fidelity_of`` (``none``: raw outputs)."""
    return cfg.eval.fidelity_of if cfg.model.task == "fidelity" else cfg.model.task


def _check_eval(cfg: Config) -> None:
    e = cfg.eval
    _require(e.max_detections is None or e.max_detections > 0, "eval.max_detections", "must be > 0 or null")
    for name in ("score_threshold", "iou_threshold"):
        value = getattr(e, name)
        _require(value is None or 0 <= value <= 1, f"eval.{name}", f"{value} must be in [0, 1] or null")
    for out in e.outputs or []:
        _require(
            out in cfg.model.outputs,
            "eval.outputs",
            f"{out!r} is not a model output; allowed values: {', '.join(cfg.model.outputs)}",
        )
    t = e.fidelity_score_threshold
    _require(0 <= t < 1, "eval.fidelity_score_threshold", f"{t} must be in [0, 1)")
    kind = decoded_as(cfg)
    if kind == "keypoints":
        _check_keypoints(cfg)
    if kind not in ("detection", "keypoints"):
        return
    from tasks.models.decoders import DECODERS
    from tasks.models.keypoint_decoders import KEYPOINT_DECODERS

    allowed = [n for n in DECODERS.names() if (n in KEYPOINT_DECODERS) == (kind == "keypoints")]
    _require(
        e.decoder in allowed,
        "eval.decoder",
        f"{e.decoder!r} is not a registered {kind} decoder; allowed values: {', '.join(allowed)}",
    )
    selected = e.outputs or cfg.model.outputs
    counts = {"yolov8": (1,), "yolov5": (1,), "boxes": (1, 4), "heatmap": (1,), "yolov8_pose": (1,)}.get(e.decoder)
    _require(
        counts is None or len(selected) in counts,
        "eval.outputs",
        f"eval.decoder {e.decoder} takes {' or '.join(map(str, counts or ()))} output(s); "
        f"{'eval.outputs' if e.outputs else 'model.outputs'} names {len(selected)} ({', '.join(selected)}): "
        "list the decoder's outputs in eval.outputs",
    )


def _check_keypoints(cfg: Config) -> None:
    e = cfg.eval
    _require(
        bool(e.keypoint_sigmas) and all(s > 0 for s in e.keypoint_sigmas),
        "eval.keypoint_sigmas",
        f"{e.keypoint_sigmas} must list one sigma > 0 per keypoint (COCO's 17 person keypoints: the default)",
    )
    if e.keypoint_names is not None:
        _require(
            len(e.keypoint_names) == len(e.keypoint_sigmas) and len(set(e.keypoint_names)) == len(e.keypoint_names),
            "eval.keypoint_names",
            f"{len(e.keypoint_names)} name(s) {e.keypoint_names} for {len(e.keypoint_sigmas)} keypoint(s) in "
            "eval.keypoint_sigmas: give one distinct name per sigma, or null",
        )


def _check_target(key: str, t: Any) -> None:
    if t.transport == "ssh":
        _require(bool(t.host), f"{key}.host", "transport=ssh needs the device's address")
        _require(0 < t.port < 65536, f"{key}.port", f"{t.port} is not a TCP port")
        _require(
            bool(t.workdir.strip()) and t.workdir.strip() not in ("/", "~", "."),
            f"{key}.workdir",
            f"{t.workdir!r}: use a folder of its own (builds are created and removed under it)",
        )
    _require(
        t.connect_timeout_s > 0 and t.command_timeout_s > 0, key, "connect_timeout_s and command_timeout_s must be > 0"
    )
    _require(t.retries >= 0, f"{key}.retries", "must be >= 0")
    _require(t.threads is None or t.threads > 0, f"{key}.threads", "must be > 0 or null")
    for fam, peak in t.peak_gflops.items():
        _require(
            fam in FAMILIES,
            f"{key}.peak_gflops.{fam}",
            f"not a precision family; allowed values: {', '.join(FAMILIES)}",
        )
        _require(peak > 0, f"{key}.peak_gflops.{fam}", "must be > 0")
    trt = t.tensorrt
    _require(trt.workspace_mib is None or trt.workspace_mib > 0, f"{key}.tensorrt.workspace_mib", "must be > 0 or null")
    _require(trt.dla_core is None or trt.dla_core >= 0, f"{key}.tensorrt.dla_core", "must be >= 0 or null")
    for lib in trt.plugins:
        _require(
            lib.startswith("/"),
            f"{key}.tensorrt.plugins",
            f"{lib!r} is not an absolute path on the device (trtexec runs in a scratch folder there)",
        )
    _require(
        trt.builder_optimization_level is None or 0 <= trt.builder_optimization_level <= 5,
        f"{key}.tensorrt.builder_optimization_level",
        "must be 0-5 or null",
    )
    hl = t.hailo  # the DFC's ranges: tasks/runtimes/hailo_recipe.py
    _require(
        hl.optimization_level is None or 0 <= hl.optimization_level <= 4,
        f"{key}.hailo.optimization_level",
        "must be 0-4 or null",
    )
    _require(
        hl.compression_level is None or 0 <= hl.compression_level <= 5,
        f"{key}.hailo.compression_level",
        "must be 0-5 or null",
    )
