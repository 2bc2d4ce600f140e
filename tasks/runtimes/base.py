"""The one interface every inference backend implements (torch, onnxruntime, openvino;
tensorrt comes with the devices issue). Parity, benchmark and evaluate loop over runtimes
without knowing which they are."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
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

    @abc.abstractmethod
    def version(self) -> str:
        """The backend's version string (recorded with every artifact)."""

    @abc.abstractmethod
    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        """Build the deployable artifact for ``precision`` from the ONNX model, into ``out_dir``."""

    @abc.abstractmethod
    def load(self, artifact: Path, threads: int | None = None, choices: dict | None = None) -> Session:
        """Load a built artifact for inference, with the build's device choices (its ``device_choices``:
        session options, the single-stream hints) where the runtime has any."""
