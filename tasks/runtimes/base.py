"""The one interface every inference backend implements (torch, onnxruntime, openvino, tensorrt,
executorch, litert, coreml, hailo). Parity, benchmark and evaluate loop over runtimes without knowing
which they are.

Most runtimes build on the device from the precision's ONNX model. Some convert on the *host*
(``converts_on_host``): their converter needs the PyTorch model (ExecuTorch's ``torch.export``, Core ML's
``coremltools``) or a toolchain that does not run on the device (LiteRT's TensorFlow converter). The build
stage then calls :meth:`Runtime.convert` with a :class:`HostSource`, uploads the one artifact file it
writes, and the device agent loads it and runs one batch as the build's check."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class BuildError(RuntimeError):
    """A runtime could not build or load an artifact; the message quotes the runtime's error."""


@contextlib.contextmanager
def agent_errors_as_build_errors() -> Iterator[None]:
    """Runtimes that run the device agent's code in-process report its errors as BuildError."""
    from tasks.agent.agent import AgentError

    try:
        yield
    except AgentError as e:
        raise BuildError(str(e)) from e


@dataclass
class BuildOptions:
    fp16_keep_io_types: bool = True
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Built:
    """What ``Runtime.build`` produced: the artifact file and facts about how it was made."""

    artifact: Path
    meta: dict[str, Any]


@dataclass
class HostSource:
    """What a runtime that converts on the host gets for one precision (:meth:`Runtime.convert`)."""

    precision: str
    #: this precision's ONNX model (``artifacts/quantize/<precision>/model.onnx``; fp32: the export's copy)
    onnx: Path
    #: the FP32 export (``artifacts/export/model.onnx``)
    export_onnx: Path
    #: ``() -> torch.nn.Module``: the checkpoint's model, eval mode, FP32, CPU (loaded on first call, then cached)
    torch_model: Callable[[], Any]
    #: ``(C, H, W)`` of one input sample
    input_shape: tuple[int, int, int]
    #: ``() -> iterator of float32 (B, C, H, W) batches``: the calibration split (``quant.samples`` images in
    #: ``quant.batch_size`` batches), for a converter that calibrates INT8 itself
    calibration: Callable[[], Iterator[np.ndarray]]
    #: the largest batch the stages will run (benchmark, evaluate, parity): a converter that fixes a batch
    #: bound (ExecuTorch's memory plan) uses it; larger batches are run in slices
    max_batch: int = 1
    threads: int | None = None
    #: the build's device choices (:func:`tasks.device.choices.choose`)
    choices: dict[str, Any] = field(default_factory=dict)


class Session(abc.ABC):
    """A loaded artifact ready to run. Inputs float32 (B, C, H, W); outputs by name."""

    input_name: str
    output_names: list[str]

    @abc.abstractmethod
    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch; returns every output as a float32 array keyed by output name."""


class Runtime(abc.ABC):
    name: str = ""
    artifact_suffix: str = ""
    #: True: ``build@<target>`` calls :meth:`convert` on the host and uploads its artifact; the device
    #: only loads it (``build`` is then not called)
    converts_on_host: bool = False

    #: True: the runtime builds on the device with its own toolchain recipe: ``build@<target>`` calls
    #: :meth:`build_on_device` (Hailo's Dataflow Compiler), not the agent's generic ONNX build
    builds_on_device: bool = False

    def build_on_device(self, cfg: Any, dev: Any, precision: str, fingerprint: dict[str, Any], out: Path) -> dict:
        """Recipe runtimes: build ``precision`` on ``dev`` (``tasks.agent.client.device``) into ``out``; returns
        the build record's fields (``artifact``, ``runtime_version``, ...)."""
        raise NotImplementedError(f"runtime {self.name!r} has no device recipe (builds_on_device is False)")

    def convert(self, src: HostSource, out_dir: Path) -> Built:
        """Host-converting runtimes: write ``src.precision``'s artifact (one file) into ``out_dir``."""
        raise NotImplementedError(f"runtime {self.name!r} builds on the device (converts_on_host is False)")

    def not_run_reason(self, fingerprint: dict[str, Any]) -> str | None:
        """Why the device of ``fingerprint`` cannot run this runtime's artifacts (the build is then
        converted but not run, and benchmark and evaluate refuse it); None: it can."""
        return None

    @abc.abstractmethod
    def version(self) -> str:
        """The backend's version string (recorded with every artifact)."""

    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        """Build the deployable artifact for ``precision`` from the ONNX model, into ``out_dir``
        (every runtime that builds on the device implements it)."""
        raise NotImplementedError(f"runtime {self.name!r} converts on the host: call convert()")

    @abc.abstractmethod
    def load(self, artifact: Path, threads: int | None = None, choices: dict | None = None) -> Session:
        """Load a built artifact for inference, with the build's device choices (its ``device_choices``:
        session options, the single-stream hints) where the runtime has any."""
