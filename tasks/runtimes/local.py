"""Running an artifact in this process: every output of a model over a prepared split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.agent.agent import infer_all
from tasks.data.split import Split
from tasks.runtimes import get_runtime
from tasks.runtimes.base import agent_errors_as_build_errors


def local_outputs(
    model: Path,
    runtime: str,
    split: Split,
    batch_size: int,
    threads: int | None = None,
    limit: int | None = None,
    choices: dict | None = None,
) -> dict[str, np.ndarray]:
    """Every output of ``model`` loaded by ``runtime`` (a registered name) in this process, over the
    split (or its first ``limit`` samples): per-sample outputs batch by batch, joined along the batch
    axis; data-dependent ones (NonZero, NonMaxSuppression) from one call over all the samples
    (:func:`tasks.agent.agent.infer_all`). ``choices``: the build's ``device_choices`` (session
    options, hints), to run the artifact as it was built."""
    sess = get_runtime(runtime).load(model, threads, choices)
    with agent_errors_as_build_errors():
        return infer_all(sess, (x for x, _ in split.batches(batch_size, limit=limit)))
