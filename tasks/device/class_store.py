"""One build per device class: the class store ``build@<target>`` copies from instead of building.

Before a precision is built for a target, :func:`plan` names its shared build: the target's device
class (:func:`tasks.device.device_class.class_key`) and ``<precision>-<inputs digest[:16]>``
(:func:`tasks.device.device_class.entry_digest`). :func:`build_or_share` then holds that build's
lock (``flock`` on :meth:`tasks.layout.Layout.class_lock`: released when the process ends, however it
ends), so two targets of one class never both build it: the first builds and publishes the folder
(atomically, with every file's sha256 in its ``build.json``, ``files_sha256``), the others wait, then
copy it and verify each file's sha256. A copy whose hash does not match (the store was changed or
damaged) is refused: the entry is removed and this target builds it again, and publishes it anew.

The store lives in the workspace's ``.edgeforge/`` (not a DVC output); without ``dvc.yaml`` (a stage
run by hand outside a DVC project: nothing to key the inputs by) every target builds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tasks.config import Config
from tasks.device.choices import choose
from tasks.device.device_class import class_key, entry_digest
from tasks.io import atomic_dir, remove, sha256_file
from tasks.layout import LAYOUT, key
from tasks.records import BuildRecord, RecordError, SkippedRecord, read_fingerprint
from tasks.reuse import StageInputs

#: the record key of every build file's sha256 (the build folder's files but build.json)
FILES_KEY = "files_sha256"


@dataclass(frozen=True)
class Share:
    """Where ``target``'s ``precision`` build is shared: ``device_class``'s ``entry``."""

    target: str
    precision: str
    device_class: str
    entry: str
    host: str  # the target's address, as its own build would record it
    fingerprint_sha256: str

    @property
    def folder(self) -> Path:
        return LAYOUT.class_build(self.device_class, self.entry)


def plan(cfg: Config, target: str, precision: str, ins: StageInputs | None) -> Share | None:
    """The shared build ``target``'s ``precision`` would use, or None (every target builds) when
    ``build.share_by_class`` is off or no ``dvc.yaml`` declares the build's inputs (``ins`` None)."""
    if ins is None or not cfg.build.share_by_class:
        return None
    t = cfg.target[target]
    fp = read_fingerprint(LAYOUT.fingerprint(target), target)
    choices = choose(fp, t.runtime, precision, threads=t.threads, ort_reduce_range=cfg.quant.ort_reduce_range)
    digest = entry_digest(ins, target, dataclasses.asdict(t), precision, choices)
    return Share(
        target,
        precision,
        class_key(fp, t.runtime, t.device_class, target),
        f"{precision}-{digest[:16]}",
        t.transport if t.transport == "local" else f"{t.host}:{t.port}",
        fp["fingerprint_sha256"],
    )


@contextlib.contextmanager
def locked(path: Path, holder: str, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the exclusive ``flock`` on ``path`` (created), waiting for the target holding it (named
    in the file by ``holder``) when there is one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another target"
            log(f"waiting for {who} (same device class)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _clear(folder: Path) -> None:
    for p in folder.iterdir():
        remove(p)


def _copy_verified(src: Path, out: Path) -> tuple[BuildRecord | None, str]:
    """Copy the shared build in ``src`` into ``out``, checking each copy against its recorded
    sha256: (its record, "") or (None, why it was refused)."""
    try:
        rec = BuildRecord.read(src / "build.json")
    except (RecordError, OSError) as e:
        return None, f"its build.json is unreadable ({e})"
    files = rec.extra.get(FILES_KEY)
    if not isinstance(files, dict) or files.get(rec.artifact) != rec.sha256:
        return None, f"its build.json lists no sha256 of the artifact {rec.artifact} under {FILES_KEY}"
    for name, want in sorted(files.items()):
        if Path(name).name != name or name in ("build.json", ".", ".."):
            return None, f"its build.json lists {name!r}, not a file of the build folder"
        try:
            shutil.copyfile(src / name, out / name)
        except OSError as e:
            return None, f"{name} cannot be copied ({e.strerror or e})"
        got = sha256_file(out / name)
        if got != want:
            return None, f"{name} has sha256 {got[:16]}…, its build.json records {str(want)[:16]}…"
    return rec, ""


def fetch(share: Share, out: Path, log: Callable[[str], None]) -> BuildRecord | None:
    """The shared build copied into ``out`` (empty) and its record for ``share.target``, or None
    when there is none; a shared build that fails its sha256 check is removed (``out`` left empty)."""
    src = share.folder
    if not (src / "build.json").is_file():
        return None
    t0 = time.perf_counter()
    stored, why = _copy_verified(src, out)
    if stored is None:
        log(f"shared build {src} refused: {why}; removed, building it here")
        remove(src)
        _clear(out)
        return None
    data = stored.to_json()
    data.update(
        target=share.target,
        host=share.host,
        device_fingerprint_sha256=share.fingerprint_sha256,
        build_seconds=time.perf_counter() - t0,
        shared_from=stored.target,
        shared_build_seconds=stored.build_seconds,
        device_class=share.device_class,
    )
    rec = BuildRecord.from_json(data)
    rec.write(out / "build.json")
    return rec


def publish(share: Share, out: Path, rec: BuildRecord) -> None:
    """Record every file's sha256 in ``rec`` (rewritten to ``out/build.json``), then copy the build
    into the class store, all at once (a folder that appears complete or not at all)."""
    files = {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file() and p.name != "build.json"}
    rec.extra.update({FILES_KEY: files, "device_class": share.device_class})
    rec.write(out / "build.json")
    if any(p.is_dir() for p in out.iterdir()):  # not a flat build folder: not shared
        return
    with atomic_dir(share.folder) as tmp:
        for name in files:
            shutil.copyfile(out / name, tmp / name)
        rec.write(tmp / "build.json")


def build_or_share(
    share: Share,
    out: Path,
    make: Callable[[], BuildRecord | SkippedRecord],
    log: Callable[[str], None],
) -> BuildRecord | SkippedRecord:
    """``share``'s build copied into ``out`` when its class has it, else ``make()`` (which builds
    into ``out``), published for the class; under the shared build's lock."""
    holder = f"build@{key(share.target, share.precision)}"
    with locked(LAYOUT.class_lock(share.device_class, share.entry), holder, log):
        rec = fetch(share, out, log)
        if rec is not None:
            return rec
        made = make()
        if isinstance(made, BuildRecord):
            publish(share, out, made)
        return made
