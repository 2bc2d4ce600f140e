"""A real PostgreSQL server for the tests: Debian's ``postgresql`` binaries, a fresh cluster in a
temporary data folder, listening on a free loopback port only, trust authentication for local
connections, stopped (and its folder removed) when the ``with`` block ends.

``initdb`` refuses to run as root: as root the cluster is made and run as Debian's ``postgres``
user (``runuser``), in a folder that user owns; as any other user, as that user."""

from __future__ import annotations

import contextlib
import getpass
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL not found (/usr/lib/postgresql/*/bin/pg_ctl): install it (`sudo apt-get install -y postgresql`)"
)


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str
    data: Path

    def uri(self, database: str, driver: str = "postgresql+psycopg") -> str:
        """A SQLAlchemy URI of ``database`` on this server (no password: trust on 127.0.0.1)."""
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as(user: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


@contextlib.contextmanager
def start_postgres(databases: tuple[str, ...] = ("mlflow",)) -> Iterator[Postgres]:
    """Run a PostgreSQL server until the block ends, with ``databases`` created."""
    bins = bin_dir()
    if bins is None:
        raise FileNotFoundError(INSTALL_HINT)
    run_as = "postgres" if os.geteuid() == 0 else None
    user = run_as or getpass.getuser()
    base = Path(tempfile.mkdtemp(prefix="edgeforge-pg-"))
    data, sockets = base / "data", base / "run"
    sockets.mkdir()
    if run_as:
        shutil.chown(base, run_as)
        shutil.chown(sockets, run_as)
    port = _free_port()

    def sh(*argv: str) -> subprocess.CompletedProcess:
        r = subprocess.run(_as(run_as, list(argv)), capture_output=True, text=True, cwd=base)
        if r.returncode != 0:
            log = (base / "server.log").read_text(errors="replace")[-2000:] if (base / "server.log").exists() else ""
            raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}\n{log}")
        return r

    try:
        sh(str(bins / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off"
        sh(str(bins / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-o", opts, "-w", "-t", "60", "start")
        for db in databases:
            sh(str(bins / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, db)
        yield Postgres(port, user, data)
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(
                _as(run_as, [str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=60,
            )
        time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)
