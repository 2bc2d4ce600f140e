"""Example datasets written to files before ``prepare`` reads them (``data.generate``).

A bundled example can exercise the file formats users bring (COCO JSON, image folders) without
committing generated data: ``data.generate`` names a registered writer, and ``prepare`` runs it
first, writing ``<data.generate_dir>/<name>/`` afresh (atomically: a failed or interrupted write
leaves no folder), which ``data.calib.path`` and ``data.eval.path`` then point into. The folder is
rewritten on every ``prepare`` run, so it always matches the code and ``data.seed`` that made it.

A writer is ``fn(root: Path, seed: int) -> dict``: it fills ``root`` (an empty folder) and returns
facts for the prepare metrics (files written, samples per split).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tasks.io import atomic_dir
from tasks.registry import Registry

WRITERS: Registry[Callable[[Path, int], dict]] = Registry("example dataset writer")


def generate(name: str, root: str | Path, seed: int) -> tuple[Path, dict]:
    """Run the writer ``name`` into ``root/name`` (replacing it); returns the folder and its facts."""
    import examples  # noqa: F401  registers the bundled writers

    writer = WRITERS.get(name)
    out = Path(root) / name
    with atomic_dir(out) as tmp:
        facts = writer(tmp, seed)
    return out, facts
