"""Verified file transfers to and from an SSH device (the SFTP half of :class:`~tasks.hosts.ssh.SSHHost`).

A file lands under its final name only when intact: an upload goes to a hidden ``.part`` file that
the device renames into place only if its own sha256 matches; a download is checked against the
device's hash before it replaces the local file. Large transfers report their progress.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from tasks.hosts.base import HostError
from tasks.hosts.ssh_scripts import SHA256
from tasks.io import sha256_file

PROGRESS_MIN_BYTES = 8 << 20  # transfers this large report their progress


class SftpTransfers:
    """``put``/``get`` for a host that has ``name``, ``host``, ``notify``, ``run``, ``close`` and
    ``_connection()`` (a Fabric connection)."""

    name: str
    host: str
    notify: Callable[[str], None] | None
    _transfer: tuple[str, int] = ("", -1)  # what is being transferred, the last quarter reported

    def _progress(self, done: int, total: int) -> None:
        """SFTP progress callback (bytes so far, total bytes): files of ``PROGRESS_MIN_BYTES``
        or more are reported to ``notify`` at each quarter."""
        what, last = self._transfer
        if self.notify is None or total < PROGRESS_MIN_BYTES:
            return
        quarter = 4 * done // total
        if quarter > last:
            self._transfer = (what, quarter)
            self.notify(f"{what}: {25 * quarter}% of {total / 1e6:.1f} MB")

    def _remote_sha256(self, path: str, move_to: str | None = None, want: str = "") -> str:
        """Hex sha256 of a file on the device, computed there: by OpenSSL where it is installed
        (it uses the CPU's SHA instructions; coreutils' ``sha256sum`` was 3x slower on a 100 MB
        file here), else by ``sha256sum``. Raises HostError if the file is missing. With
        ``move_to``, the file is renamed there only if its hash is ``want``."""
        safe = f"./{path}" if path.startswith("-") else path
        extra = [want, move_to] if move_to else []
        res = self.run(["sh", "-c", SHA256, "edgeforge-sha256", safe, *extra], check=False, timeout=600)
        digest = res.stdout.split()[0].lstrip("\\").lower() if res.stdout.split() else ""
        if res.exit_code == 3:
            raise HostError(f"{self.name}: could not rename {path} to {move_to} on the device: {res.stderr.strip()}")
        if res.exit_code != 0 or len(digest) != 64:
            raise HostError(f"{self.name}: {self.host}:{path} does not exist (or is not a readable file)")
        return digest

    def _remove_remote(self, path: str) -> None:
        with contextlib.suppress(Exception):
            self.run(["rm", "-f", "--", path], timeout=30)

    def _sftp(self, what: str, op: Callable[[Any], object]) -> None:
        """Run ``op(sftp_client)``; any failure drops the connection and becomes a HostError."""
        conn = self._connection()
        try:
            op(conn.sftp())
        except Exception as e:
            self.close()
            raise HostError(f"{self.name}: {what} failed: {_describe(e)}; nothing was written, retry") from e

    def put(self, local: Path, remote: str) -> str:
        """Upload ``local`` to ``remote`` (absolute, or relative to the login folder); parent
        folders are created. Returns the sha256 (hex) after the device confirmed it."""
        local = Path(local)
        if not local.is_file():
            raise HostError(f"{self.name}: {local} does not exist")
        want = sha256_file(local)
        dst = PurePosixPath(remote)
        tmp = str(dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.part"))
        self._sftp(f"create {self.host}:{dst.parent}", lambda sftp: _makedirs(sftp, dst.parent))
        done = False
        try:
            try:
                self._transfer = (f"upload {local.name}", -1)
                self._sftp(
                    f"upload {local} -> {self.host}:{remote}",
                    lambda sftp: sftp.put(str(local), tmp, callback=self._progress, confirm=True),
                )
            except HostError as e:
                self._remove_remote(tmp)  # frees the space a partial upload took before measuring
                full = self._disk_full(str(dst.parent), local.stat().st_size)
                raise (HostError(f"{self.name}: {full}") if full else e) from e
            got = self._remote_sha256(tmp, move_to=remote, want=want)  # renamed into place if it matches
            if got != want:
                raise HostError(
                    f"{self.name}: checksum mismatch uploading {local} -> {self.host}:{remote} "
                    f"(sent {want[:12]}, device has {got[:12]}); nothing was written, retry"
                )
            done = True
            return got
        finally:
            if not done:  # also on Ctrl-C: no partial upload is left behind
                self._remove_remote(tmp)

    def _disk_full(self, folder: str, need: int) -> str | None:
        """A "disk full" explanation when ``folder`` on the device has less than ``need`` bytes free."""
        with contextlib.suppress(Exception):
            r = self.run(["df", "-Pk", "--", folder], timeout=30, check=False)
            free_kb = int(r.stdout.strip().splitlines()[-1].split()[3])
            if free_kb * 1024 < need:
                return (
                    f"the device's disk is full: {folder} has {free_kb} kB free, the upload needs "
                    f"{need // 1024 + 1} kB; free space on the device or point the target's workdir elsewhere"
                )
        return None

    def get(self, remote: str, local: Path, sha256: str | None = None) -> str:
        """Download ``remote`` to ``local`` (parents created). Returns the sha256 (hex) after
        checking it against the device's own hash of the file (``sha256`` when the caller has
        it from the device already, e.g. from the agent: one round trip fewer)."""
        local = Path(local)
        want = sha256 or self._remote_sha256(remote)  # also: does it exist?
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=".part")
        os.close(fd)
        try:
            self._transfer = (f"download {local.name}", -1)
            self._sftp(
                f"download {self.host}:{remote} -> {local}", lambda sftp: sftp.get(remote, tmp, callback=self._progress)
            )
            got = sha256_file(tmp)
            if got != want:
                raise HostError(
                    f"{self.name}: checksum mismatch downloading {self.host}:{remote} -> "
                    f"{local} (device has {want[:12]}, received {got[:12]}); nothing was "
                    f"written, retry"
                )
            os.replace(tmp, local)
            return got
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _makedirs(sftp: Any, folder: PurePosixPath) -> None:
    """``mkdir -p`` over SFTP (no shell on the device, no extra command)."""
    missing = []
    for p in (folder, *folder.parents):
        if str(p) in ("", ".", "/"):
            break
        try:
            sftp.stat(str(p))
            break
        except FileNotFoundError:
            missing.append(p)
    for p in reversed(missing):
        sftp.mkdir(str(p))


def _describe(e: BaseException | None) -> str:
    """One line naming the exception type (paramiko's messages often omit it)."""
    text = str(e).strip() or type(e).__name__
    return text if type(e).__name__ in text else f"{type(e).__name__}: {text}"
