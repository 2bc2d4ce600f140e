"""The Hailo Dataflow Compiler (DFC) recipe, planned on the host: three ``hailo`` CLI steps from the target's
``hailo`` settings, the model script they read, and the calibration set they calibrate on.

    hailo parser onnx model.onnx --hw-arch <arch>                                   -> model.har
    hailo optimize model.har --hw-arch <arch> --calib-set-path calib.npy [--model-script model.alls]
                                                                                    -> model_optimized.har
    hailo compiler model_optimized.har --hw-arch <arch>                             -> model.hef

Only flags and default file names seen in recorded sessions and public scripts are used (each cited in
tests/fixtures/hailo/SOURCES.md): the net is named after the ONNX file, the optimizer writes
``<net>_optimized.har`` and the compiler ``<net>.hef`` (the net's name, not the HAR file's), in the cwd.
The parser is given no ``-y``: where it can only parse a cropped model it asks whether to use its
recommended end nodes; the agent closes stdin, so the step fails quoting the recommendation instead of
building a HEF whose outputs are not the model's. The optimizer calibrates on EdgeForge's calibration
split, never on random data (``--use-random-calib-set`` is not a flag this recipe can emit).
Optimization and compression levels are model-script settings (``model_optimization_flavor``), not CLI
flags; the ranges checked in ``tasks/config/load.py`` (0-4, 0-5) are as commonly quoted, not read from the
DFC guide (behind Hailo's login; SOURCES.md, "Wanted but not found").

The agent runs each ``argv`` without a shell; :func:`command_line` is the same command quoted for a POSIX
shell (``shlex``), which is what the build record and error messages show and what a user can paste.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.config.schema import Hailo
from tasks.data.split import Split
from tasks.runtimes.base import BuildError

NET = "model"
ONNX_NAME = f"{NET}.onnx"
CALIB_NAME = "calib.npy"
SCRIPT_NAME = f"{NET}.alls"
PARSED = f"{NET}.har"
OPTIMIZED = f"{NET}_optimized.har"
HEF = f"{NET}.hef"


@dataclass(frozen=True)
class Step:
    """One DFC command: ``argv`` run in the job folder, ``outputs`` the files it must leave there."""

    name: str
    argv: list[str]
    outputs: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"name": self.name, "argv": list(self.argv), "outputs": list(self.outputs)}


def model_script(h: Hailo) -> str:
    """The ``.alls`` model script for the target's settings; "" when every setting is the DFC's default."""
    flavor = [
        f"{k}={v}"
        for k, v in (("optimization_level", h.optimization_level), ("compression_level", h.compression_level))
        if v is not None
    ]
    lines = [f"model_optimization_flavor({', '.join(flavor)})"] if flavor else []
    if h.compiler_max:
        lines.append("performance_param(compiler_optimization_level=max)")
    return "".join(f"{ln}\n" for ln in lines)


def steps(h: Hailo) -> list[Step]:
    """The three steps for the target's ``hailo`` settings (file names: this module's constants)."""
    arch = ["--hw-arch", h.hw_arch]
    script = ["--model-script", SCRIPT_NAME] if model_script(h) else []
    return [
        Step("parser", [h.hailo, "parser", "onnx", ONNX_NAME, *arch], [PARSED]),
        Step("optimize", [h.hailo, "optimize", PARSED, *arch, "--calib-set-path", CALIB_NAME, *script], [OPTIMIZED]),
        Step("compiler", [h.hailo, "compiler", OPTIMIZED, *arch], [HEF]),
    ]


def command_line(step: Step) -> str:
    """``step.argv`` as one POSIX shell command, every value quoted (a path with spaces or ``;`` stays one word)."""
    return shlex.join(step.argv)


def write_calib(calib_dir: Path, out: Path, samples: int) -> dict:
    """Write the first ``samples`` images of the prepared split at ``calib_dir`` (``x.npy``, float32 NCHW,
    model-ready: normalised as the ONNX expects) to ``out`` as the DFC's calibration set: float32
    ``(N, H, W, C)``, the values the parsed network's input receives (the ONNX carries no normalisation,
    so none is added). Returns ``{"calib_entries", "calib_shape", "calib_layout"}``."""
    x = Split(calib_dir).x
    if x.ndim != 4:
        raise BuildError(
            f"{calib_dir / 'x.npy'}: the Hailo DFC calibrates image models; the calibration split is {x.shape} "
            "(expected N, C, H, W)"
        )
    n = min(int(samples), len(x))
    if n < 1:
        raise BuildError(
            f"{calib_dir / 'x.npy'} holds no images to calibrate the Hailo build on; run `dvc repro prepare`"
        )
    nhwc = np.ascontiguousarray(np.transpose(np.asarray(x[:n], dtype=np.float32), (0, 2, 3, 1)))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, nhwc)
    return {"calib_entries": n, "calib_shape": list(nhwc.shape), "calib_layout": "NHWC"}
