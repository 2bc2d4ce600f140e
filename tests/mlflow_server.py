"""A real ``mlflow server`` for the tests: a sqlite file or a database on a real PostgreSQL server
(tests/postgres.py) as its backend store, proxied artifacts in a folder, on a free loopback port, its
whole process group stopped at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import INSTALL_HINT as PG_HINT
from tests.postgres import bin_dir, start_postgres

START_TIMEOUT_S = 240  # a cold server on a busy 2-core machine: imports, migrations, uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn and the job runner with it), SIGKILL
    what is still there after 30 s; returns once the group is gone."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, or the group never empties
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@contextlib.contextmanager
def backend_store(kind: str, root: Path) -> Iterator[str]:
    """The server's ``--backend-store-uri``: a sqlite file in ``root``, or a database on a PostgreSQL
    server started for the module (skipped without PostgreSQL, except under CI, where it fails)."""
    if kind == "sqlite":
        yield f"sqlite:///{root / 'mlflow.db'}"
        return
    if bin_dir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{PG_HINT} (CI=true: the PostgreSQL tests must not be skipped)")
        pytest.skip(PG_HINT)
    with start_postgres(("mlflow",)) as pg:
        yield pg.uri("mlflow")


@contextlib.contextmanager
def serve(store: str, root: Path) -> Iterator[dict]:
    """``mlflow server`` on ``store`` with proxied artifacts under ``root``, on a free loopback port:
    ``{"uri": "http://127.0.0.1:<port>", "root": root, "backend": store}``; stopped on exit."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"  # closed network: nothing to phone home to
    # no GenAI job runner: it would spawn a handful of huey consumers and leave stores in /dev/shm
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        store,
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(uri):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "server.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server did not become healthy at {uri} (exit {proc.poll()}):\n{tail}")
            time.sleep(0.5)
        yield {"uri": uri, "root": root, "backend": store}
    finally:
        _stop(proc)
        log.close()
