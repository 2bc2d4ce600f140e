"""Which items of a per-target stage can be kept: the content digest of one item's inputs.

DVC re-runs a stage when any of its deps or params changed. The device stages (``quantize``,
``build@<target>``, ``measure@<target>``) each cover every precision, so one changed precision
would redo them all; a TensorRT build on a Jetson takes minutes. Their outputs are ``persist:
true`` (DVC leaves them in place while the stage runs), and each item's record carries
``inputs_sha256``: the digest of exactly the inputs DVC tracks for the stage, narrowed to that item
(``artifacts/quantize`` -> ``artifacts/quantize/<precision>``). An item whose digest is unchanged
is kept; every other item is redone. This is what Olive does with its pass cache, keyed the same
way. DVC leaves persisted outputs in place even under ``dvc repro --force``; with
``EDGEFORGE_REDO=1`` in the environment nothing is kept (``EDGEFORGE_REDO=1 dvc repro --force
measure@jetson`` measures every precision again).

The deps and params come from ``dvc.yaml`` itself, so the digest covers the same code, data and
keys as DVC's own check: a changed module under ``tasks/`` redoes every item, as it re-runs the
stage.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

#: the record key an item's digest is kept under (in its metrics JSON)
DIGEST_KEY = "inputs_sha256"
#: set (to anything but ``0``) in the environment, every item is redone
REDO_ENV = "EDGEFORGE_REDO"


@cache
def _file_sha256(path: Path, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def path_digest(path: Path) -> str:
    """A file's content hash, a folder's over its files' names and contents (``__pycache__``
    skipped), or ``missing``."""
    if path.is_file():
        st = path.stat()
        return _file_sha256(path, st.st_mtime_ns, st.st_size)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            st = f.stat()
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            h.update(_file_sha256(f, st.st_mtime_ns, st.st_size).encode())
        return h.hexdigest()
    return "missing"


def _param(params: dict, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class StageInputs:
    """The deps and params ``dvc.yaml`` declares for ``stage`` (``${item.target}`` filled in for a
    per-target stage), read from the project in ``root``."""

    def __init__(self, stage: str, target: str | None = None, root: Path = Path(".")) -> None:
        spec = yaml.load((root / "dvc.yaml").read_text(), Loader=yaml.CSafeLoader)["stages"][stage]

        def fill(s: str) -> str:
            return s.replace("${item.target}", target) if target is not None else s

        self.root = root
        self.deps = [fill(d if isinstance(d, str) else next(iter(d))) for d in spec.get("deps") or []]
        self.params = [fill(p) for p in spec.get("params") or [] if isinstance(p, str)]
        self._values = yaml.load((root / "params.yaml").read_text(), Loader=yaml.CSafeLoader) or {}

    def digest(self, item: str, narrow: dict[str, Any]) -> str:
        """The digest of ``item``'s inputs. ``narrow`` maps a declared dep (as written in
        ``dvc.yaml``) to the path(s) the item reads instead, and a declared param key to the value
        that matters to the item (``build.precisions`` -> the precision itself)."""
        h = hashlib.sha256(item.encode() + b"\0")
        for dep in self.deps:
            seen = narrow.get(dep, dep)
            for p in seen if isinstance(seen, list | tuple) else [seen]:
                h.update(f"{Path(p).as_posix()}={path_digest(self.root / p)}\0".encode())
        for key in self.params:
            value = narrow[key] if key in narrow else _param(self._values, key)
            h.update(f"{key}={json.dumps(value, sort_keys=True, default=str)}\0".encode())
        return h.hexdigest()


def recorded(path: Path) -> str | None:
    """The digest a record (a stage's metrics JSON) was written with, or ``None`` (also when
    ``EDGEFORGE_REDO`` asks for every item to be redone)."""
    if os.environ.get(REDO_ENV, "0") not in ("", "0") or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get(DIGEST_KEY) if isinstance(data, dict) else None


def prune(folder: Path, keep: set[str], suffix: str = "") -> list[Path]:
    """Remove the entries of ``folder`` (a persisted output) no longer configured: names (less
    ``suffix``) not in ``keep``. Returns what was removed."""
    from tasks.io import remove

    gone = []
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            name = p.name.removesuffix(suffix) if suffix else p.name
            if name not in keep and (not suffix or p.name.endswith(suffix)):
                remove(p)
                gone.append(p)
    return gone


def inputs_of(stage: str, target: str | None = None, root: Path = Path(".")) -> StageInputs | None:
    """The stage's declared inputs, or ``None`` (nothing is reused) outside a DVC project: a stage
    module run by hand in a folder without ``dvc.yaml``, or one that does not declare ``stage``."""
    try:
        return StageInputs(stage, target, root)
    except (OSError, KeyError, TypeError):
        return None


def item_digest(ins: StageInputs | None, target: str | None, precision: str) -> str | None:
    """The digest of one precision's inputs (of one target, for a device stage): the stage's deps
    narrowed to that precision's own models, builds and records, and ``build.precisions`` to the
    precision itself (adding a precision to the list keeps the others). ``None`` without ``ins``."""
    from tasks.layout import LAYOUT, key

    if ins is None:
        return None
    narrow: dict[str, Any] = {
        "build.precisions": precision,
        LAYOUT.quantize_root.as_posix(): LAYOUT.quantize_dir(precision),
        LAYOUT.quantize_metrics_dir.as_posix(): LAYOUT.quantize_metrics(precision),
    }
    if target is not None:
        narrow[LAYOUT.builds(target).as_posix()] = LAYOUT.build_dir(target, precision)
    return ins.digest(key(target, precision) if target is not None else precision, narrow)


def unchanged(metrics: Path, want: str | None, *also: Path) -> bool:
    """Whether the record at ``metrics`` was made from inputs of digest ``want`` (never when ``want``
    is ``None``) and the files ``also`` names (the item's other outputs) are still there."""
    return want is not None and recorded(metrics) == want and all(p.is_file() for p in also)


def write_record(rec: Any, metrics: Path, want: str | None) -> None:
    """Write ``rec`` to ``metrics`` with ``want`` as its digest (none when ``want`` is ``None``)."""
    if want is not None:
        rec.extra[DIGEST_KEY] = want
    rec.write(metrics)


def keep_or_make(metrics: Path, want: str | None, log: Callable[[str], None], make: Callable[[], Any]) -> Any:
    """``make()`` the record for ``metrics`` and write it there with ``want`` as its digest, unless
    the record there was made from the same inputs (then it is kept, and ``None`` returned).
    ``want`` ``None``: always made."""
    if unchanged(metrics, want):
        log("inputs unchanged since its last run: kept")
        return None
    rec = make()
    write_record(rec, metrics, want)
    return rec


def each_measured(
    kind: str,
    cfg: Any,
    args: Any,
    metrics: Callable[[str, str], Path],
    metrics_dir: Callable[[str], Path],
    make: Callable[[str, Callable[[str], None]], Any],
) -> None:
    """``<kind>@<target>`` (``benchmark`` or ``evaluate``, the two commands of stage ``measure@<target>``):
    for each precision (``--precision``'s alone), ``make(precision, log)``'s record written to
    ``metrics(target, precision)`` with its digest; the build's skipped record instead when the build
    does not apply to the device; kept when its inputs did not change. The whole stage also removes
    the records of precisions no longer configured, from ``metrics_dir(target)``."""
    from tasks import stage
    from tasks.layout import LAYOUT, key
    from tasks.records import not_run_build, skipped_build

    t = args.target
    ins = inputs_of("measure", t)
    if args.precision is None:
        prune(metrics_dir(t), set(cfg.build.precisions), ".json")

    def one(precision: str) -> None:
        log = lambda m: stage.log(f"{kind}@{key(t, precision)}", m)  # noqa: E731

        def made() -> Any:
            skipped = skipped_build(LAYOUT.build_dir(t, precision)) or not_run_build(LAYOUT.build_dir(t, precision))
            if skipped:  # the build does not apply to the device, or the device cannot run it: nothing to measure
                log(f"n/a: {skipped.skipped}")
                return skipped
            return make(precision, log)

        keep_or_make(metrics(t, precision), item_digest(ins, t, precision), log, made)

    stage.each(stage.precisions(cfg, args), one, lambda p: [metrics(t, p)], lambda p: f"{kind}@{key(t, p)}")
