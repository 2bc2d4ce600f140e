"""The pipeline as DVC declares it: stages, their order and the device each one talks to, read
from ``dvc.yaml`` through DVC's own index (never a second copy of the DAG), and the two DVC
calls the Prefect flow makes per stage: "has it changed?" and "reproduce it".

Reproducing a stage follows DVC's own ``Stage.run`` through DVC's Python API, in this process:
under DVC's repository lock it removes the stale outputs and tries the run cache; the command then
runs with the lock released (so independent stages run side by side, as DVC itself allows); the
outputs are cached and recorded in ``dvc.lock`` under the lock again. Only the command runs in a
subprocess: a ``dvc repro --single-item`` process per stage would add DVC's ~0.8 s start-up to
every stage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from flows import dvc_remote
from tasks.stage import TRANSIENT_EXIT  # a stage's exit code for errors a later attempt may cure


@dataclass(frozen=True)
class Stage:
    """One stage as DVC resolved it (matrix items expanded: ``build@local``)."""

    name: str
    cmd: str | list[str]  # DVC keeps a stage with several commands as a list
    upstream: tuple[str, ...]  # stages whose outputs this one depends on
    target: str | None  # the target (device) it talks to, from its ``target.<name>`` params
    always_changed: bool = False

    @property
    def family(self) -> str:
        """``build`` for ``build@local``."""
        return self.name.split("@", 1)[0]


class StageFailed(RuntimeError):
    """A stage exited non-zero (or timed out); ``transient`` when a retry may cure it."""

    def __init__(self, stage: str, message: str, returncode: int | None, log: Path | None = None) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage, self.returncode, self.log = stage, returncode, log

    @property
    def transient(self) -> bool:
        return self.returncode == TRANSIENT_EXIT


def _target_of(stage) -> str | None:
    from dvc.dependency.param import ParamsDependency

    for dep in stage.deps:
        if isinstance(dep, ParamsDependency):
            for p in dep.params or ():
                if p.startswith("target.") and p.count(".") == 1:
                    return p.split(".", 1)[1]
    return None


def read(root: Path) -> list[Stage]:
    """Every stage of ``root``'s dvc.yaml in a dependency order (upstream first)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        order = list(reversed(list(nx.topological_sort(graph))))
        return [
            Stage(
                name=s.name,
                cmd=s.cmd,
                upstream=tuple(sorted(u.name for u in graph.successors(s))),
                target=_target_of(s),
                always_changed=bool(s.always_changed),
            )
            for s in order
            if s.cmd
        ]


@dataclass
class Reproduced:
    """What :meth:`Workspace.reproduce` did: ``cached`` when the outputs came from the run-cache
    (the command did not run); ``pushed`` objects uploaded to the remote, or ``push_error``."""

    seconds: float
    cached: bool
    pushed: int = 0
    push_error: str | None = None


@contextlib.contextmanager
def _pure(stage):
    """The stage's persisted outputs taken as plain ones while the run-cache is read or written.
    DVC keeps no run-cache for ``persist: true`` outputs, which may depend on their previous
    contents; EdgeForge persists them only to keep unchanged items (``tasks/reuse.py``: an item is
    kept only when its inputs digest matches), so they are a function of the stage's inputs."""
    persisted = [o for o in stage.outs if o.persist]
    for o in persisted:
        o.persist = False
    try:
        yield
    finally:
        for o in persisted:
            o.persist = True


@dataclass
class Workspace:
    """The DVC repository the flow drives; DVC objects are only touched under one lock."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    remote: str | None = None  # the DVC remote the run-cache is shared through (flows.dvc_remote)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _open(self):
        from dvc.repo import Repo

        return Repo(str(self.root), _wait_for_lock=True)

    @contextlib.contextmanager
    def _dvc(self, repo):
        """DVC's API resolves stage paths against the working directory: every DVC call runs
        under this one lock, DVC's repository lock, and with the repository as working directory."""
        with self._lock, contextlib.chdir(self.root), repo.lock:
            yield

    def _stage(self, repo, name: str):
        return repo.stage.collect(f"{self.root / 'dvc.yaml'}:{name}")[0]

    def changed(self, name: str) -> bool:
        """Would ``dvc repro`` run ``name`` now? (Its upstream stages are already reproduced.)"""
        with self._open() as repo, self._dvc(repo):
            stage = self._stage(repo, name)
            return bool(stage.always_changed or stage.changed())

    def connect(self) -> int:
        """With a :attr:`remote`: check it can be read and fetch the run-cache entries it has
        (:func:`flows.dvc_remote.pull_entries`); their count. Raises ``RemoteError``."""
        if not self.remote:
            return 0
        with self._open() as repo, self._dvc(repo):
            return dvc_remote.pull_entries(repo, self.remote)

    def restore(self, name: str) -> bool:
        """Restore ``name`` from the run-cache if it is out of date and an entry matches it (its
        outputs pulled from the remote when they are not here); whether it was."""
        with self._open() as repo, self._dvc(repo):
            stage = self._stage(repo, name)
            if stage.always_changed or not stage.changed():
                return False
            if not self._restore(repo, stage):
                return False
            self._record(stage, run_cache=False)
            return True

    def _restore(self, repo, stage) -> bool:
        """DVC's ``StageCache.restore``, for persisted outputs too (:func:`_pure`). Persisted outputs
        stay in place until an entry is found (they are what the stage keeps item by item when it
        runs), then make way for the entry's."""
        from dvc.stage.cache import RunCacheNotFoundError

        if stage.always_changed:  # DVC keeps no run-cache for it
            return False
        with _pure(stage):
            stage.save_deps()
            if repo.stage_cache._load(stage) is None:
                return False
            stage.remove_outs(ignore_remove=False, force=False)
            try:
                repo.stage_cache.restore(stage, pull=bool(self.remote))
            except RunCacheNotFoundError:  # the entry's data is neither here nor on the remote: run it
                return False
        return True

    def reproduce(self, name: str, log: Path, timeout_s: float | None, restore: bool = True) -> Reproduced:
        """Reproduce ``name`` as ``dvc repro --single-item`` does (``Stage.run``): under DVC's
        repository lock, remove its stale outputs and try DVC's run cache (not with ``restore``
        False); release the lock and run the command (output in ``log``); take the lock again to
        cache the outputs and record them in dvc.lock, and with a :attr:`remote`, upload the stage's
        run-cache entry. Raises :class:`StageFailed` with the stage's own error line on failure or
        timeout (the process group is killed: nothing keeps running behind a task)."""
        t0 = time.perf_counter()
        with self._open() as repo:
            with self._dvc(repo):
                stage = self._stage(repo, name)
                stage.remove_outs(ignore_remove=False, force=False)
                restored = restore and self._restore(repo, stage)
                if not restored:
                    stage.save_deps()
            if not restored:
                cmds = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]
                for cmd in cmds:
                    self._run(name, cmd, log, timeout_s)
            with self._dvc(repo):
                entry = self._record(stage, run_cache=self._run_cached(stage))
                done = Reproduced(time.perf_counter() - t0, restored)
                if entry is not None and not restored:
                    done.pushed, done.push_error = self._push(repo, entry)
        return done

    def _record(self, stage, run_cache: bool):
        """Cache the stage's outputs and record them in dvc.lock (and in the run-cache); the
        run-cache entry to share, with a :attr:`remote`."""
        with _pure(stage):
            stage.save(run_cache=run_cache)
            entry = dvc_remote.entry_of(stage) if self.remote and run_cache else None
        stage.commit()
        stage.dump(update_pipeline=False)
        return entry

    def _run_cached(self, stage) -> bool:
        """Whether the run goes into the run-cache. DVC keeps none for a stage with a ``cache:
        false`` output (what it records may not be a function of its inputs: a device's
        fingerprint, a report). With a remote, EdgeForge keeps one for every stage: the flow
        restores a ``probe@`` only before asking the devices whether they changed
        (``flows.pipeline``), so a fingerprint from the cache is always checked against the device."""
        if self.remote:
            return True
        return not any(not o.use_cache for o in stage.outs if not (o.is_metric or o.is_plot))

    def _push(self, repo, entry) -> tuple[int, str | None]:
        try:
            return dvc_remote.push_entry(repo, self.remote, entry), None
        except dvc_remote.RemoteError as e:
            return 0, str(e)

    def _run(self, name: str, cmd: str, log: Path, timeout_s: float | None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        with open(log, "a") as out:
            out.write(f"$ {cmd}\n")
            out.flush()
            proc = subprocess.Popen(
                cmd,
                shell=True,
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill(proc)
                raise StageFailed(
                    name,
                    f"timed out after {timeout_s:g} s and was stopped (output: {log}); "
                    f"raise the stage timeout if it needs longer",
                    None,
                    log,
                ) from None
            except BaseException:  # Ctrl-C, flow cancelled: leave nothing running
                _kill(proc)
                raise
        if rc != 0:
            raise StageFailed(name, f"failed (exit {rc}): {error_line(log)} (output: {log})", rc, log)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def error_line(log: Path) -> str:
    """The stage's own error (``edgeforge <stage>: error: …``), else DVC's, else the last line."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    for marker in (": error: ", "ERROR: "):
        hits = [ln for ln in lines if marker in ln]
        if hits:
            return hits[-1]
    return lines[-1] if lines else "(no output)"
