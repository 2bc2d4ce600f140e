"""Core ML on a Mac, in the device agent: the host's ``model.mlpackage.zip`` unpacked and run with
coremltools' ``MLModel.predict`` (:mod:`tasks.runtimes.coreml_convert` made it on the host).

Stdlib only at import time (Python >= 3.8): numpy and coremltools come through ``agent._import``.
Registers ``agent.MODELS["coreml"]`` and ``agent.VERSIONS["coreml"]`` at import. Core ML runs only
on macOS: elsewhere loading raises ``AgentError("missing_runtime", ...)`` before anything else.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import zipfile
from pathlib import Path

if __package__:
    from . import agent
else:  # uploaded next to agent.py and run from there
    import agent

NAME = "coreml"
PACKAGE_SUFFIX = ".mlpackage"
#: compute units a build's choices may name (coremltools' ct.ComputeUnit members); ALL lets Core ML
#: place each op on the Neural Engine, the GPU or the CPU
COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")


def require_macos(system: str | None = None) -> None:
    """Raise ``AgentError("missing_runtime")`` unless this is macOS (``system``: platform.system())."""
    system = system or platform.system()
    if system != "Darwin":
        raise agent.AgentError(
            "missing_runtime",
            f"Core ML runs only on macOS; this device is {system}: the .mlpackage cannot run here. "
            "Point the target at a Mac over SSH (transport: ssh, runtime: coreml)",
        )


def unpack(artifact, into=None) -> Path:
    """The ``.mlpackage`` folder inside the zip ``artifact``, extracted once into
    ``<into or the zip's folder>/.<zip name>-<sha12>/`` (atomically: a folder that exists is complete).
    Refuses members outside one top-level ``*.mlpackage/`` folder (absolute paths, ``..``)."""
    artifact = Path(artifact)
    try:
        with zipfile.ZipFile(str(artifact)) as z:
            names = z.namelist()
            tops = {n.split("/", 1)[0] for n in names}
            bad = [n for n in names if n.startswith("/") or "\\" in n or ".." in n.split("/")]
            if bad or len(tops) != 1 or not next(iter(tops)).endswith(PACKAGE_SUFFIX):
                raise agent.AgentError(
                    "bad_input",
                    f"{artifact}: not a zipped {PACKAGE_SUFFIX} (one top-level *{PACKAGE_SUFFIX}/ folder, "
                    f"no absolute or '..' paths); it holds {sorted(tops)[:5]}",
                )
            top = next(iter(tops))
            dest = Path(into or artifact.parent) / f".{artifact.name}-{agent.sha256(artifact)[:12]}"
            if not (dest / top).is_dir():
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".{artifact.name}-", dir=str(dest.parent)))
                try:
                    z.extractall(str(tmp))
                    os.replace(str(tmp), str(dest))
                except OSError:
                    shutil.rmtree(str(tmp), ignore_errors=True)
                    if not (dest / top).is_dir():  # another process did not win the race: a real error
                        raise
    except zipfile.BadZipFile as e:
        raise agent.AgentError("bad_input", f"{artifact}: not a zip file ({e})") from e
    return dest / top


def io_names(spec) -> tuple:
    """``(input name, output names, min batch, max batch)`` of a Core ML spec (``MLModel.get_spec()``):
    the batch range from the input's first dimension (a ``shapeRange``: a dynamic batch; else its fixed
    size). A spec with more than one input is refused (EdgeForge runs single-input image models)."""
    inputs = [i.name for i in spec.description.input]
    agent._single_input("the Core ML model", inputs)
    arr = spec.description.input[0].type.multiArrayType
    ranges = list(arr.shapeRange.sizeRanges)
    if ranges:
        lo, hi = int(ranges[0].lowerBound) or 1, int(ranges[0].upperBound)
        hi = hi if hi > 0 else None  # -1: unbounded
    else:
        lo = hi = int(arr.shape[0]) if len(arr.shape) else 1
    return inputs[0], [o.name for o in spec.description.output], lo, hi


class CoreMLModel:
    """An ``.mlpackage`` (zipped) loaded by Core ML: float32 (B, C, H, W) in, float32 outputs by name.
    ``threads``: unused (Core ML schedules its own); ``choices``: ``compute_units`` (COMPUTE_UNITS,
    default ALL)."""

    def __init__(self, path, threads=None, choices=None) -> None:
        require_macos()
        self.data_dependent = []  # the spec declares no output shapes: none is known to be data-dependent
        ct, self._np = agent._import("coremltools"), agent._import("numpy")
        units = (choices or {}).get("compute_units") or "ALL"
        if units not in COMPUTE_UNITS:
            raise agent.AgentError("bad_input", f"compute_units {units!r}: one of {', '.join(COMPUTE_UNITS)}")
        package = unpack(path)
        try:
            self._m = ct.models.MLModel(str(package), compute_units=getattr(ct.ComputeUnit, units))
        except Exception as e:  # coremltools raises RuntimeError and others from Core ML's compiler
            raise agent.AgentError("failed", f"Core ML cannot load {package}: {agent._first_line(e)}") from e
        self.input_name, self.output_names, self.min_batch, self.max_batch = io_names(self._m.get_spec())
        self.compute_units = units

    def describe(self) -> dict:
        """What the build's device check records: where Core ML may run it, and the macOS release."""
        return {"compute_units": self.compute_units, "macos": platform.mac_ver()[0]}

    def infer(self, x) -> dict:
        """Outputs of the batch ``x``; a batch above the program's bound (``max_batch``) runs in slices."""
        np, mb = self._np, self.max_batch or len(x)
        parts = [self._predict(x[i : i + mb]) for i in range(0, len(x), mb)]
        if len(parts) == 1:
            return parts[0]
        return {n: np.concatenate([p[n] for p in parts]) for n in self.output_names}

    def _predict(self, x) -> dict:
        np = self._np
        out = self._m.predict({self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return {n: np.asarray(out[n], dtype=np.float32) for n in self.output_names}


def version() -> str:
    """coremltools' version (Core ML itself is the macOS release's)."""
    return agent._import("coremltools").__version__


agent.MODELS[NAME] = CoreMLModel
agent.VERSIONS[NAME] = version
