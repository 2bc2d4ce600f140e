"""What a device needs to use a bundle's artifact as is, or to build it again: the fingerprint values
the artifact is tied to (``artifact.compatible``), the agent build request that made it minus its file
paths (``artifact.recipe``), and the local files it was built from (``source.onnx``, and
``calibration.cache`` for TensorRT implicit INT8).

The device matches ``compatible`` against its probe (``tasks/agent/release_install.py``): ``runtime``
(the device has it), ``<runtime>_version`` (the probe's ``<runtime>``), ``gpu_compute_capability``
(any of its GPUs), ``l4t``. A TensorRT recipe's trtexec ``argv`` names the bundle's files as
``{source}`` and ``{calibration_cache}``, which the device replaces by its staged paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.config import Config
from tasks.device.choices import run_threads
from tasks.records import BuildRecord, built_from
from tasks.runtimes.openvino_rt import onnx_io_names
from tasks.runtimes.tensorrt_build_plan import target_plan
from tasks.runtimes.tensorrt_recipe import CALIB_NAME, ONNX_NAME

SOURCE = "source.onnx"
CALIBRATION = "calibration.cache"
#: how a TensorRT recipe's argv names the bundle's files (replaced on the device)
PLACEHOLDERS = {ONNX_NAME: "{source}", CALIB_NAME: "{calibration_cache}"}


@dataclass
class Rebuild:
    """``recipe`` and ``compatible`` for the manifest; ``files``: {bundle relpath: local file}."""

    recipe: dict[str, Any]
    compatible: dict[str, Any]
    files: dict[str, Path]


def _tensorrt(cfg: Config, rec: BuildRecord, build_dir: Path, fp: dict[str, Any]) -> Rebuild:
    p = target_plan(cfg, rec.target, rec.precision, fp)
    conv = rec.extra.get("onnx_opset_conversion")
    if conv:  # the build uploaded the model down-converted to an opset the device's parser reads
        p.uploads[ONNX_NAME] = build_dir / conv["file"]
    names = {ONNX_NAME: SOURCE, CALIB_NAME: CALIBRATION}
    argv = list(p.argv)
    for name, token in PLACEHOLDERS.items():
        argv = [a.replace(f"={name}", f"={token}") if a.endswith(f"={name}") else a for a in argv]
    gpu = (fp.get("gpu") or [{}])[0] or {}
    return Rebuild(
        recipe={
            "runtime": "tensorrt",
            "precision": rec.precision,
            "trt_recipe": p.recipe,
            "argv": argv,
            "engine": p.engine,
            "log": p.log,
            "plugins": list(rec.extra.get("trt_plugins") or []),
            "load_args": list(p.load_args),
            "timeout": cfg.target[rec.target].command_timeout_s,
        },
        compatible={
            "runtime": "tensorrt",
            "tensorrt_version": rec.runtime_version,
            "gpu_compute_capability": gpu.get("compute_capability"),
            "l4t": fp.get("l4t"),
        },
        files={names[n]: path for n, path in p.uploads.items() if n in names},
    )


def rebuild(cfg: Config, rec: BuildRecord, build_dir: Path, fp: dict[str, Any]) -> Rebuild:
    """The :class:`Rebuild` of the build ``rec`` in ``build_dir``, made on a device probed as ``fp``."""
    if rec.runtime == "tensorrt":
        return _tensorrt(cfg, rec, build_dir, fp)
    source = built_from(rec.precision, rec.runtime, build_dir)
    choices = {k: v for k, v in (rec.extra.get("device_choices") or {}).items() if k != "reasons"}
    return Rebuild(
        recipe={
            "runtime": rec.runtime,
            "precision": rec.precision,
            "threads": run_threads(choices, cfg.target[rec.target].threads),
            "io_names": onnx_io_names(source) if rec.runtime == "openvino" else None,
            "choices": choices,
            "emulated": bool(rec.extra.get("emulated")),
        },
        compatible={"runtime": rec.runtime, f"{rec.runtime}_version": rec.runtime_version},
        files={SOURCE: source},
    )
