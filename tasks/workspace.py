"""One run at a time in a workspace.

A workspace ``dvc exp run`` is not protected by DVC against a second one: DVC releases its
repository lock while stage commands run (``dvc/stage/run.py``) and for the whole reproduction
(``unlocked_repo`` on ``Experiments._reproduce_queue``). A second ``dvc exp run`` then stashes the
workspace, composes *its* params.yaml into it and, in its workspace executor, overwrites the refs
``refs/exps/exec/EXEC_{HEAD,MERGE,BASELINE}`` of the running one; when it fails (at the first
stage whose outputs the first run holds) its cleanup deletes them, and the first run, although
every stage succeeded, crashes when it commits the experiment (``ExpRefInfo(None, name)``:
"'NoneType' object is not subscriptable").

So every run in a workspace holds ``.edgeforge/pipeline.lock`` (flock: the kernel drops it when
the process ends, however it ends): ``edgeforge run`` (flows/pipeline.py) for the flow, and a
workspace ``dvc exp run`` from the moment DVC composes its params.yaml (the Hydra plugin in
``hydra_plugins/``: the first EdgeForge code DVC runs, before it writes params.yaml) until the
``dvc`` process exits. A second run is refused there, with what to do instead.

By then DVC has stashed the running one's workspace changes (params.yaml, dvc.lock) and restores
them when the refusal unwinds; ``dvc exp run --queue``/``--temp`` do the same round trip. DVC
does it under its repository lock, which it releases while stage commands run, so a stage reads
params.yaml under that lock (:func:`dvc_quiet`) and never sees the swapped file.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tasks.layout import Layout

# DVC's own record of the process running an experiment in the workspace (WorkspaceQueue._proc_info_path)
DVC_WORKSPACE_PID = Path(".dvc") / "tmp" / "exps" / "run" / "workspace" / "workspace.json"

QUEUE_HINT = (
    "to run experiments one after another, queue them: `dvc exp run --queue <options>`, then "
    "`dvc queue start` (each runs in its own temporary copy of the repository)"
)

_held: dict[Path, IO[str]] = {}  # root -> the open lock file this process holds for a whole `dvc exp run`


class WorkspaceBusy(RuntimeError):
    """Another run holds the workspace; the message names it: what it is, its PID, and how we know."""


def _holder(fh: IO[str]) -> str:
    try:
        fh.seek(0)
        info = json.loads(fh.read() or "{}")
        return f"`{info['what']}` (PID {info['pid']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dvc_exp_pid(root: Path) -> int | None:
    """PID of a live process (not this one) that DVC records as running an experiment in ``root``'s
    workspace: also covers a ``dvc exp run`` through DVC's Python API, which does not hold the lock."""
    try:
        pid = int(json.loads((root / DVC_WORKSPACE_PID).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid != os.getpid() and _alive(pid) else None


def claim(root: Path, what: str) -> IO[str]:
    """Take the workspace lock for ``what`` (e.g. ``edgeforge run``); the returned file holds it
    until closed. Raises :class:`WorkspaceBusy` naming the run that holds it."""
    path = Layout(root).pipeline_lock
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fh)
        fh.close()
        raise WorkspaceBusy(f"{holder}; lock {path}") from None
    pid = dvc_exp_pid(root)
    if pid is not None:
        fh.close()
        raise WorkspaceBusy(f"a `dvc exp run` (PID {pid}); DVC's record {root / DVC_WORKSPACE_PID}")
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"pid": os.getpid(), "what": what}))
    fh.flush()
    return fh


def _frame_self(name: str, cls: type) -> object | None:
    """``self`` of the innermost active call of method ``name`` on exactly a ``cls``, if any."""
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_name == name and type(f.f_locals.get("self")) is cls:
            return f.f_locals["self"]
        f = f.f_back
    return None


def _in_dvc_cli() -> bool:
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_name == "main" and f.f_globals.get("__name__") == "dvc.cli":
            return True
        f = f.f_back
    return False


def guard_dvc_exp_run() -> None:
    """Called by the Hydra plugin each time Hydra composes a config. Acts only when DVC composes
    params.yaml for an experiment that will run in the workspace (``WorkspaceQueue._stash_exp``;
    not ``--queue``/``--temp``, which run elsewhere): refuses it if another run holds the
    workspace, else holds the lock until the ``dvc`` process exits. DVC's own record
    (:func:`dvc_exp_pid`) appears only after DVC has released its repository lock, too late to
    keep a second run out by itself."""
    from dvc.repo.experiments.queue.workspace import WorkspaceQueue

    queue = _frame_self("_stash_exp", WorkspaceQueue)
    if queue is None:
        return
    root = Path(queue.repo.root_dir)
    if root in _held:
        return
    cli = _in_dvc_cli()
    try:
        fh = claim(root, shlex.join(["dvc", *sys.argv[1:]]) if cli else "dvc exp run (DVC's Python API)")
    except WorkspaceBusy as e:
        msg = (
            f"edgeforge: error: another run is using this workspace ({root}): {e}. This `dvc exp run` was "
            f"not started (it would rewrite params.yaml and DVC's experiment refs under that run); {QUEUE_HINT}, "
            f"or wait for that run to finish and start this one again."
        )
        if not cli:
            from dvc.exceptions import DvcException

            raise DvcException(msg) from None
        # DVC's own handler would prefix "ERROR:"; DVC's stash/HEAD/lock contexts unwind on SystemExit too
        print(msg, file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    if not cli:  # a Python-API run is covered by DVC's own record (dvc_exp_pid) once it starts
        fh.close()
        return
    _held[root] = fh
    # DVC's daemons (analytics, updater) double-fork: the forked copies must not keep holding it
    os.register_at_fork(after_in_child=lambda: _held.pop(root).close() if root in _held else None)


@contextmanager
def dvc_quiet(root: Path = Path("."), timeout_s: float = 60.0) -> Iterator[None]:
    """Hold DVC's repository lock of ``root`` (if it is a DVC workspace) for a moment: while no
    DVC command is stashing, composing or resetting the workspace's files. After ``timeout_s``
    (a long ``dvc push`` holds it) go on without it, as before."""
    tmp = root / ".dvc" / "tmp"
    if not tmp.is_dir():
        yield
        return
    from dvc.config import Config
    from dvc.lock import make_lock

    try:
        hardlink = Config(dvc_dir=str(root / ".dvc"))["core"].get("hardlink_lock", False)
    except Exception:  # noqa: BLE001 - an unreadable DVC config: DVC itself reports it, not a stage
        hardlink = False
    lock = make_lock(str(tmp / "lock"), tmp_dir=str(tmp), hardlink_lock=hardlink)
    held = _take(lock, time.monotonic() + timeout_s)
    if not held:
        print(
            f"edgeforge: warning: DVC's lock {tmp / 'lock'} is still held after {timeout_s:.0f} s; "
            "reading params.yaml anyway",
            file=sys.stderr,
            flush=True,
        )
    try:
        yield
    finally:
        if held:
            lock.unlock()


def _take(lock, deadline: float) -> bool:
    from dvc.lock import LockError

    while True:
        try:
            lock.lock()  # DVC's own retries (about 3 s)
            return True
        except LockError:
            if time.monotonic() > deadline:
                return False
