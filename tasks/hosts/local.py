"""The machine EdgeForge runs on, behind the same interface as a remote device."""

from __future__ import annotations

import shlex
import shutil
import time
from pathlib import Path

from tasks.hosts.base import CommandResult, Host, HostError
from tasks.io import sha256_file


class LocalHost(Host):
    name = "local"

    def __init__(self) -> None:
        from invoke import Context

        self._ctx = Context()

    def run(self, argv: list[str], timeout: float | None = None, check: bool = True) -> CommandResult:
        from invoke.exceptions import CommandTimedOut

        cmd = shlex.join(argv)
        t0 = time.perf_counter()
        try:
            r = self._ctx.run(cmd, hide=True, warn=True, timeout=timeout, in_stream=False)
        except CommandTimedOut as e:
            raise HostError(f"{self.name}: `{cmd}` timed out after {timeout} s and was stopped") from e
        res = CommandResult(r.stdout, r.stderr, r.exited, time.perf_counter() - t0)
        if check and r.exited != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
            raise HostError(f"{self.name}: `{cmd}` exited {r.exited}: " + " | ".join(tail))
        return res

    def _copy(self, src: Path, dst: Path, want: str | None = None) -> str:
        if not src.is_file():
            raise HostError(f"{self.name}: {src} does not exist")
        want = want or sha256_file(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.part")
        shutil.copyfile(src, tmp)
        got = sha256_file(tmp)
        if got != want:
            tmp.unlink()
            raise HostError(f"{self.name}: checksum mismatch copying {src} -> {dst}")
        tmp.replace(dst)
        return got

    def put(self, local: Path, remote: str) -> str:
        return self._copy(Path(local), Path(remote))

    def get(self, remote: str, local: Path, sha256: str | None = None) -> str:
        return self._copy(Path(remote), Path(local), sha256)
