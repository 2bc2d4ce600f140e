"""A release's golden data: the first ``release.golden_samples`` of the evaluation split and every
output of the validated artifact on them, which the device's smoke test must reproduce within the
precision's ``parity.artifact`` tolerance. The artifact runs where it was validated: a local target in
this process with its build's device choices, an SSH target through its device agent (``infer``, as
the evaluate stage runs it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tasks.agent import remote
from tasks.agent.agent import save_npz
from tasks.agent.client import device
from tasks.config import Config
from tasks.data.split import Split
from tasks.device.choices import run_threads
from tasks.records import BuildRecord, built_artifact
from tasks.runtimes.local import local_outputs

INPUTS = "golden/inputs.npy"
OUTPUTS = "golden/outputs.npz"


def golden_inputs(eval_dir: Path, n: int) -> np.ndarray:
    """float32 (N, C, H, W): the first ``n`` samples of the evaluation split (all of it if smaller)."""
    return np.ascontiguousarray(Split(eval_dir).x[:n], dtype=np.float32)


def golden_outputs(
    cfg: Config, target_name: str, build_dir: Path, eval_dir: Path, n: int, log: Callable[[str], None] = print
) -> dict[str, np.ndarray]:
    """Every output (float32, by name) of the build in ``build_dir`` on :func:`golden_inputs`, run on
    ``target_name`` as the evaluate stage ran it."""
    target = cfg.target[target_name]
    batch = cfg.eval.batch_size
    if target.transport == "local":
        choices = BuildRecord.read(build_dir / "build.json").extra.get("device_choices") or {}
        out = local_outputs(
            built_artifact(build_dir),
            target.runtime,
            Split(eval_dir),
            batch,
            run_threads(choices, target.threads),
            limit=n,
            choices={k: v for k, v in choices.items() if k != "reasons"},
        )
    else:
        with device(target_name, target, log) as dev:
            out = remote.outputs(dev, build_dir, golden_inputs(eval_dir, n), batch)
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def write(
    cfg: Config, target_name: str, build_dir: Path, eval_dir: Path, out_root: Path, log: Callable[[str], None] = print
) -> int:
    """Write ``golden/inputs.npy`` and ``golden/outputs.npz`` under ``out_root``; returns the samples."""
    n = cfg.release.golden_samples
    x = golden_inputs(eval_dir, n)
    y = golden_outputs(cfg, target_name, build_dir, eval_dir, n, log)
    (out_root / "golden").mkdir(parents=True, exist_ok=True)
    np.save(out_root / INPUTS, x)
    save_npz(out_root / OUTPUTS, y)
    return len(x)
