"""Load the user's trained model for export and as the FP32 reference.

Formats (``model.format``): ``state_dict`` (+ ``model.arch``), ``torchscript``, ``pt2``
(``torch.export``) and ``onnx`` (no torch model: export only checks and simplifies it).
Checkpoints are read with ``weights_only=True`` unless ``model.trust_checkpoint`` is set.
"""

from __future__ import annotations

import importlib
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

from tasks.config.schema import Model
from tasks.models.errors import CheckpointError
from tasks.registry import Registry
from tasks.text import plain

# Model classes by short name, for format=state_dict (``module:Class`` paths work too).
ARCHS: Registry[Callable[..., object]] = Registry("model architecture")


def resolve_arch(name: str) -> Callable[..., object]:
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise CheckpointError(
                f"model.arch {name!r}: cannot import ({plain(e)}); "
                "use 'package.module:ClassName' importable from the project root"
            ) from e
    import examples  # noqa: F401  registers the bundled architectures

    try:
        return ARCHS.get(name)
    except KeyError as e:
        raise CheckpointError(f"model.arch: {e.args[0]} (or give 'module:Class')") from None


def _reason(e: BaseException) -> str:
    """The first line of an error; for torch's weights_only failures, the line with the actual cause
    (its first line only advises dropping weights_only, which does not help a corrupt file)."""
    lines = [ln.strip() for ln in plain(e).splitlines() if ln.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        lines = [
            ln for ln in lines[1:] if not ln.startswith(("Please file an issue", "Check the documentation"))
        ] or lines
    return lines[0] if lines else ""


def _refused_global(e: BaseException) -> str:
    """What weights_only refused ("Unsupported global: GLOBAL pkg.Class was not an allowed global by
    default"): torch's first line speaks of "two options" listed below it, and its advice
    (add_safe_globals) is for code, not a config, so only the cause goes into the message."""
    lines = [ln.strip() for ln in plain(e).splitlines() if ln.strip()]
    cause = next((ln for ln in lines if "GLOBAL" in ln), lines[0] if lines else "")
    return cause.removeprefix("WeightsUnpickler error: ").split(". ")[0].rstrip(".")


def load_torch_model(cfg: Model):
    """Return the model as an eval-mode ``torch.nn.Module`` (float32, CPU)."""
    import torch

    path = Path(cfg.checkpoint)
    if cfg.format == "onnx":
        raise CheckpointError("model.format is onnx: there is no PyTorch model to load")
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found (model.checkpoint); check the path, "
            "or run `dvc repro prepare` for the bundled example"
        )
    try:
        if cfg.format == "torchscript":
            module = torch.jit.load(str(path), map_location="cpu")
        elif cfg.format == "pt2":
            module = torch.export.load(str(path)).module()
        else:
            state = torch.load(path, map_location="cpu", weights_only=not cfg.trust_checkpoint)
            if isinstance(state, torch.nn.Module):  # a whole pickled model (trust_checkpoint only)
                module = state
            else:
                if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                    state = state["state_dict"]
                if not isinstance(state, dict):
                    raise CheckpointError(f"{path}: expected a state_dict, found {type(state).__name__}")
                module = resolve_arch(cfg.arch or "")(**cfg.arch_kwargs)
                try:
                    module.load_state_dict(state)
                except RuntimeError as e:
                    raise CheckpointError(f"{path}: weights do not fit model.arch {cfg.arch!r}: {plain(e)}") from e
    except CheckpointError:
        raise
    except Exception as e:
        # weights_only refuses a pickled object by a global it does not allow; every other failure
        # (bad opcode, truncated stream, bad zip, ...) means a corrupt file or the wrong format
        if isinstance(e, pickle.UnpicklingError) and not cfg.trust_checkpoint and "GLOBAL" in str(e):
            raise CheckpointError(
                f"{path}: refused by weights_only loading ({_refused_global(e)}): the file holds pickled objects "
                "(e.g. a whole nn.Module), not only weights. Save model.state_dict() and set model.arch, or set "
                "model.trust_checkpoint=true only if you trust this file (unpickling it can run arbitrary code)"
            ) from e
        if not isinstance(
            e,
            (
                pickle.UnpicklingError,
                RuntimeError,
                EOFError,
                OSError,
                zipfile.BadZipFile,
                ValueError,
                KeyError,
                IndexError,
                OverflowError,
                MemoryError,
            ),
        ):
            raise
        raise CheckpointError(
            f"{path}: cannot read as a {cfg.format} checkpoint ({type(e).__name__}: "
            f"{_reason(e)}); is the file complete and the format right?"
        ) from e
    if cfg.format != "pt2":  # an exported program keeps the mode it was exported in (its eval() raises)
        module.eval()
    return module
