"""Running an artifact in this process: every output of a model over a prepared split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.data.split import Split
from tasks.runtimes import get_runtime


def local_outputs(
    model: Path, runtime: str, split: Split, batch_size: int, threads: int | None = None, limit: int | None = None
) -> dict[str, np.ndarray]:
    """Every output of ``model`` loaded by ``runtime`` (a registered name) in this process, over the
    split (or its first ``limit`` samples), concatenated along the batch axis."""
    sess = get_runtime(runtime).load(model, threads)
    out: dict[str, list] = {}
    for x, _ in split.batches(batch_size, limit=limit):
        for k, v in sess.infer(x).items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}
