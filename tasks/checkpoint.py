"""Stage ``checkpoint``: the model file ``model.checkpoint`` names, checked before anything uses it.

DVC would otherwise meet a missing checkpoint first, as a dependency of ``export``, and say only
``[Errno 2] No such file or directory``. This stage runs after ``prepare`` (which trains the bundled
examples' checkpoint) whenever the ``model`` section or ``prepare.train`` changes, and records the
file's path and format in ``artifacts/checkpoint.json``; ``export`` and ``parity`` depend on that
record (so this check runs first) and on the file itself, so a new checkpoint written under the same
path re-runs them. ``export`` records the sha256 of the bytes it exported (``metrics/export.json``).

It is not ``always_changed``: that made every no-op ``dvc repro`` run it and rewrite ``dvc.lock``
(0.8 s of ruamel round-trip). The one case DVC still meets first is a checkpoint deleted after a
successful run with nothing else changed: DVC then names the missing file itself.
"""

from __future__ import annotations

from pathlib import Path

from tasks import stage
from tasks.config import Config
from tasks.io import read_json, write_json
from tasks.layout import LAYOUT
from tasks.models.errors import CheckpointError

#: what the record keeps: the path and the format (the size and sha256 are export's to record, from the
#: bytes it read: this stage does not re-run when a new file is written under the same path)
RECORDED = ("path", "format")


def run(cfg: Config) -> dict:
    """What was checked of ``model.checkpoint`` (path, format, size); a :class:`CheckpointError` that
    says which key points where, and what to do, when it is not a readable, non-empty file."""
    m, path = cfg.model, Path(cfg.model.checkpoint)
    where = f"model.checkpoint points to {path}" + ("" if path.is_absolute() else f" ({path.resolve()})")
    if not path.exists():
        if path == LAYOUT.trained_checkpoint and not cfg.prepare.train:
            raise CheckpointError(
                f"{where}, the bundled example's checkpoint, but prepare.train is null so nothing "
                "trains it: set model.checkpoint to your own file (e.g. `dvc exp run -S "
                "model.checkpoint=models/my.pt`), or set prepare.train to train the example"
            )
        raise CheckpointError(
            f"{where}, which does not exist: set model.checkpoint to your {m.format} file "
            f"(`dvc exp run -S model.checkpoint=path/to/file`; relative paths are from the project root)"
        )
    if not path.is_file():
        raise CheckpointError(f"{where}, which is not a file: point model.checkpoint at the checkpoint file itself")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{where}, which is empty (0 bytes): copy the checkpoint again")
    return {"path": str(path), "format": m.format, "size_bytes": size}


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("checkpoint").parse_args(argv)
    out = LAYOUT.checkpoint_record
    with stage.stage_errors("checkpoint", outputs=[out]):
        checked = run(stage.load(args))
        rec = {k: checked[k] for k in RECORDED}
        old = read_json(out) if out.is_file() else None
        if rec != old:  # unchanged: leave the file as it is (nothing downstream re-runs anyway)
            write_json(out, rec)
        stage.log("checkpoint", f"{rec['path']} ({rec['format']}, {checked['size_bytes'] / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
