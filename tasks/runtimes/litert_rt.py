"""LiteRT (TFLite) backend: converted on the host (``litert_convert``), run by ``ai_edge_litert``'s
Interpreter with XNNPACK on the device (``tasks/agent/litert_model.py``; in this process too).

Every precision converts from the FP32 ONNX export, not from ``quantize``'s Q/DQ models: TFLite's
converter quantizes by itself (``int8-minmax``: its min/max calibration on the calibration split).
Which precisions apply, and why the others do not, is ``tasks/device/support.py``'s."""

from __future__ import annotations

from pathlib import Path

from tasks.agent import litert_model
from tasks.runtimes import litert_convert
from tasks.runtimes.base import (
    BuildError,
    Built,
    HostSource,
    Runtime,
    Session,
    agent_errors_as_build_errors,
)


class LiteRTSession(litert_model.LiteRTModel, Session):
    def __init__(self, path: Path, threads: int | None, choices: dict | None = None) -> None:
        with agent_errors_as_build_errors():
            super().__init__(path, threads, choices)


class LiteRTRuntime(Runtime):
    name = "litert"
    artifact_suffix = ".tflite"
    converts_on_host = True

    def version(self) -> str:
        with agent_errors_as_build_errors():
            return litert_model.version()

    def convert(self, src: HostSource, out_dir: Path) -> Built:
        """``out_dir/model.tflite`` for ``src.precision``, converted from the FP32 export
        (``src.export_onnx``) and, for int8-minmax, calibrated on ``src.calibration()``."""
        if src.precision not in litert_convert.PRECISIONS:
            raise BuildError(
                f"LiteRT builds {', '.join(litert_convert.PRECISIONS)}, not {src.precision} "
                "(tasks/device/support.py says why); remove it from build.precisions for this target"
            )
        with agent_errors_as_build_errors():  # the conversion's check loads the model with the agent's code
            artifact, meta = litert_convert.convert(
                src.export_onnx, src.precision, src.calibration, out_dir, src.threads
            )
        return Built(artifact, meta)

    def load(self, artifact: Path, threads: int | None = None, choices: dict | None = None) -> Session:
        return LiteRTSession(artifact, threads, choices)
