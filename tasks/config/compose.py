"""Compose ``conf/`` into ``params.yaml`` exactly as DVC's Hydra integration does on
``dvc exp run -S ...`` (same function), for the committed default and for its test.

``python -m tasks.config.compose [overrides...]`` rewrites params.yaml; ``--check`` only
reports whether the committed file is the composed default.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def compose(out: Path, overrides: list[str] = (), root: Path = ROOT) -> None:
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(
        out, str((root / "conf").resolve()), None, "config", str(root / ".dvc" / "hydra_plugins"), list(overrides)
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    target = ROOT / "params.yaml"
    if "--check" in argv:
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td) / "params.yaml"
            compose(tmp)
            same = tmp.read_text() == target.read_text()
        print(
            "params.yaml matches conf/"
            if same
            else "params.yaml differs from conf/: run `python -m tasks.config.compose`",
            file=sys.stderr,
        )
        return 0 if same else 1
    compose(target, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
