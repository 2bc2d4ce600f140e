"""Trainers of bundled examples, by registered name (``prepare.train``).

A trainer is ``fn(x, y, out_path, *, epochs, batch_size, lr, seed, progress) -> metrics``:
``x`` float32 (N, C, H, W) preprocessed, ``y`` int64 labels of the task ((N,), (N, K, 5) boxes or
(N, H, W) masks); it writes a state_dict to ``out_path``.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.registry import Registry

TRAINERS: Registry[Callable[..., dict]] = Registry("example trainer")


def get_trainer(name: str) -> Callable[..., dict]:
    import examples  # noqa: F401  registers the bundled trainers

    return TRAINERS.get(name)
