"""``edgeforge worker`` in a subprocess, for tests that stand two hosts in for two working copies.

    with server(tmp_path / "prefect.log") as url, api(url):  # `prefect server start` (triggers included)
        with Worker(repo1, url, pool="p") as w1, Worker(repo2, url, pool="p") as w2:
            w1.wait_ready(); w2.wait_ready()                  # the pool and deployment are registered
            run_id = submit("p", {"root": "."})               # flows.pool.submit: any free worker takes it
            assert wait_final(run_id, url) == "COMPLETED"     # or "FAILED", "CRASHED", "CANCELLED"
            w1.kill()                                         # SIGKILL the worker and every process under it

``Worker(root, url, pool=..., name=..., heartbeat=30, crash_after=32)``: options become the command's
``--heartbeat 30 --crash-after 32``. Each worker looks for runs every second (PREFECT_WORKER_QUERY_SECONDS)
and runs this checkout's code (PYTHONPATH). Its output is in ``<working copy>/.edgeforge/worker.log``
(``Worker.output()``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from flows.watch import local_server

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def server(log: Path):
    """A real ``prefect server start`` on a free loopback port (its API URL), stopped on exit. Unlike
    prefect_test_harness it runs the server's services, the triggers that crash zombie runs among them."""
    with local_server(log) as url:
        yield url


@contextmanager
def api(url: str):
    """This process's Prefect client pointed at ``url`` for the block (its logs and events sent on exit)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    old = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield
            finally:
                _drain()
    finally:
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old


def _drain() -> None:
    """Send this process's pending Prefect logs and events to the server while it still runs, and
    stop their workers: else the test harness's teardown (tests/flows/conftest.py), which drains
    every events worker, waits forever on one still pointed at a server that is gone."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    with suppress(RuntimeError):  # never started
        APILogWorker.instance().drain()
    EventsWorker.drain_all()


class Worker:
    """``edgeforge -C <root> worker --pool <pool>`` in its own process group."""

    def __init__(self, root: Path, url: str, pool: str = "edgeforge", name: str | None = None, **options) -> None:
        self.root, self.url, self.pool = Path(root), url, pool
        self.name = name or Path(root).name
        self.log = self.root / ".edgeforge" / "worker.log"
        self.argv = [str(BIN / "edgeforge"), "-C", str(root), "worker", "--pool", pool, "--name", self.name]
        for key, value in options.items():  # heartbeat=30, crash_after=40 -> --heartbeat 30 --crash-after 40
            self.argv += [f"--{key.replace('_', '-')}", str(value)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # a new run is taken within a second (the default looks every 10 s)
        env = {**os.environ, "PREFECT_API_URL": self.url, "PYTHONPATH": str(REPO), "PREFECT_WORKER_QUERY_SECONDS": "1"}
        env.pop("PREFECT_LOGGING_LEVEL", None)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Until the worker says it is taking runs (the deployment is registered by then)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited {self.proc.returncode}: {self.output()[-2000:]}")
            if "taking runs of" in self.output():
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker {self.name} not ready in {timeout_s} s: {self.output()[-2000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def kill(self) -> None:
        """SIGKILL the worker and every process under it (its flow runs are in process groups of their
        own, their DVC stages too): what a host dying looks like."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)  # no new children while the tree is collected
            for pid in _descendants(self.proc.pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait()

    def kill_worker_only(self) -> None:
        """SIGKILL the worker process alone: its flow-run processes carry on (they are their own groups)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it does not exit in ``timeout_s``."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def wait_final(flow_run_id: str, url: str, timeout_s: float = 120) -> str:
    """The flow run's final state type (``COMPLETED``, ``FAILED``, ``CRASHED``, ``CANCELLED``)."""
    return wait_state(flow_run_id, url, lambda s: s.is_final(), timeout_s).type.value


def wait_state(flow_run_id: str, url: str, done, timeout_s: float = 120):
    """The flow run's state once ``done(state)`` holds."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    deadline = time.time() + timeout_s
    with api(url), get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(UUID(flow_run_id)).state
            if state is not None and done(state):
                return state
            if time.time() > deadline:
                raise TimeoutError(f"flow run {flow_run_id}: still {state.type.value if state else None}")
            time.sleep(0.5)
