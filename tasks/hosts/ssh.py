"""A device reached over SSH (Fabric ``Connection`` on paramiko), behind the ``Host`` interface.

Safety defaults: unknown host keys are rejected unless ``allow_unknown_host``; only transient
connection errors are retried; a command that times out is killed on the device, not just
abandoned; transfers (tasks/hosts/ssh_transfer.py) are verified by sha256 and land under their final name
only when intact.

Timeout cleanup, two layers (either is enough on its own):

1. on the device, GNU ``timeout`` runs the command in its own process group and signals the
   whole group (TERM at ``timeout`` s, KILL 5 s later), so it is enforced even if this
   client dies or the network drops;
2. here, the client gives up ``_CLIENT_GRACE_S`` later (closing a channel does not stop a
   command without a pty); the wrapper (``ssh_scripts.WRAPPER``) wrote the process-group id to a pid file, so a second channel sends TERM, then
   KILL, to that group. This also covers devices without GNU ``timeout`` (``setsid`` or, at
   worst, the bare pid is used there).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection
from fabric.util import get_local_user

from tasks.hosts.base import CommandResult, DeviceUnreachable, Host, HostError
from tasks.hosts.ssh_policy import AcceptUnknown, RejectUnknown, UnknownHostKey, no_auth_methods, transient
from tasks.hosts.ssh_scripts import KILLER, TIMED_OUT, WRAPPER
from tasks.hosts.ssh_transfer import SftpTransfers, _describe

log = logging.getLogger(__name__)

_CLIENT_GRACE_S = 2.0  # client side: seconds the device's own timeout gets before we step in
HEARTBEAT_S = 30.0  # a command running longer is reported to ``notify`` this often


class SSHHost(SftpTransfers, Host):
    """Commands and verified SFTP transfers on ``user@host:port``.

    Args:
        name: short name used in messages (the target's name).
        host, port, user: where to connect; ``user=None`` means the local user name.
        key_filename: private key to authenticate with; ``None`` uses ssh-agent and the default
            keys in ~/.ssh. When given, only that key is tried.
        known_hosts: known_hosts file to check the host key against; ``None`` reads
            ~/.ssh/known_hosts. It is never written to.
        allow_unknown_host: accept (and log) a host key that is not in known_hosts. A key that
            *differs* from a known one is always rejected.
        connect_timeout: seconds allowed for each of TCP connect, SSH banner and authentication.
        command_timeout: default timeout of ``run`` in seconds (``None``: no limit).
        retries: extra connection attempts after transient network errors (backoff 0.5 s, 1 s,
            2 s, ...). Authentication failures and host-key rejections are never retried.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int = 22,
        user: str | None = None,
        key_filename: str | os.PathLike | None = None,
        known_hosts: Path | None = None,
        allow_unknown_host: bool = False,
        connect_timeout: float = 10.0,
        command_timeout: float | None = None,
        retries: int = 2,
    ) -> None:
        self.name = name
        self.host = host
        self.port = int(port)
        self.user = user or get_local_user()
        self.key_filename = str(key_filename) if key_filename is not None else None
        self.known_hosts = Path(known_hosts) if known_hosts is not None else None
        self.allow_unknown_host = allow_unknown_host
        self.connect_timeout = float(connect_timeout)
        self.command_timeout = command_timeout
        self.retries = max(0, int(retries))
        self._conn: Any = None  # fabric.Connection once connected
        self._transfer = ("", -1)  # (what, last quarter reported) of the transfer in progress

    def __repr__(self) -> str:
        return f"SSHHost(name={self.name!r}, host={self.host!r}, port={self.port}, user={self.user!r})"

    @property
    def address(self) -> str:
        """``user@host:port`` as shown in messages."""
        return f"{self.user}@{self.host}:{self.port}"

    # -- connection ------------------------------------------------------------------------

    def _new_connection(self) -> Any:
        kwargs: dict[str, Any] = {k: self.connect_timeout for k in ("timeout", "banner_timeout", "auth_timeout")}
        if self.key_filename is not None:
            kwargs.update(key_filename=self.key_filename, allow_agent=False, look_for_keys=False)
        # An empty SSHConfig stops Fabric reading ~/.ssh/config: the target's own settings
        # are the whole truth, so a build is reproducible from its config alone.
        cfg = Config(ssh_config=paramiko.SSHConfig(), lazy=True)
        conn = Connection(self.host, user=self.user, port=self.port, config=cfg, connect_kwargs=kwargs)
        client = conn.client  # Fabric installs AutoAddPolicy and loads no known_hosts: redo both
        try:
            # load_system_host_keys (not load_host_keys) so that nothing is ever saved back.
            client.load_system_host_keys(str(self.known_hosts) if self.known_hosts else None)
        except OSError as e:
            raise HostError(
                f"{self.name}: cannot read known_hosts file {self.known_hosts}: {e.strerror}; "
                f"create it with `ssh-keyscan -p {self.port} {self.host} >> {self.known_hosts}`"
            ) from e
        client.set_missing_host_key_policy(AcceptUnknown(self.name) if self.allow_unknown_host else RejectUnknown())
        return conn

    def _connection(self) -> Any:
        """The open connection, (re)connecting with retries on transient network errors."""
        if self._conn is not None and self._conn.is_connected:
            return self._conn
        self.close()
        last: BaseException | None = None
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            conn = self._new_connection()
            try:
                conn.open()
                self._conn = conn
                return conn
            except Exception as e:
                _discard(conn)  # Fabric's close() skips a transport that never finished connecting
                if not transient(e):
                    raise self._connect_error(e) from None
                last = e
            except BaseException:
                _discard(conn)
                raise
            if attempt < attempts:
                delay = 0.5 * 2 ** (attempt - 1)
                log.warning(
                    "%s: connecting to %s failed (%s); retry %d/%d in %.1f s",
                    self.name,
                    self.address,
                    _describe(last),
                    attempt,
                    self.retries,
                    delay,
                )
                time.sleep(delay)
        raise DeviceUnreachable(
            f"{self.name}: cannot connect to {self.address} after {attempts} attempt(s) "
            f"(connect timeout {self.connect_timeout:g} s): {_describe(last)}. Check that the device "
            f"is powered and on the network, that sshd runs on port {self.port}, and that no "
            f"firewall blocks it (try `ssh -p {self.port} {self.user}@{self.host} true`)"
        ) from None

    def _connect_error(self, e: Exception) -> HostError:
        """The HostError (with the fix) for a connection failure that retrying cannot cure."""
        kh = self.known_hosts or "~/.ssh/known_hosts"
        where = f"[{self.host}]:{self.port}" if self.port != 22 else self.host
        if isinstance(e, UnknownHostKey):
            return HostError(
                f"{self.name}: host key of {where} ({e.fingerprint}) is not in {kh}; unknown hosts "
                f"are rejected. Check the fingerprint on the device, then add the key with "
                f"`ssh-keyscan -p {self.port} {self.host} >> {kh}`, or set the target's "
                f"allow_unknown_host: true (trusted networks only)"
            )
        if isinstance(e, paramiko.BadHostKeyException):
            return HostError(
                f"{self.name}: host key of {where} does NOT match the one in {kh} (device "
                f"reinstalled, or someone in between). If it was reinstalled, remove the old key with "
                f"`ssh-keygen -f {kh} -R '{where}'` and add the new one with "
                f"`ssh-keyscan -p {self.port} {self.host} >> {kh}`"
            )
        if isinstance(e, paramiko.AuthenticationException) or no_auth_methods(e):
            keys = self.key_filename or "ssh-agent / default keys in ~/.ssh"
            return HostError(
                f"{self.name}: authentication failed for {self.address} using {keys} "
                f"({_describe(e)}). Check that the public key is in the device's "
                f"~{self.user}/.ssh/authorized_keys (ssh-copy-id -p {self.port} {self.user}@{self.host})"
            )
        if isinstance(e, socket.gaierror):
            return HostError(
                f"{self.name}: cannot resolve host name {self.host!r} ({e.strerror}); check the target's host"
            )
        return HostError(f"{self.name}: cannot connect to {self.address}: {_describe(e)}")

    def close(self) -> None:
        """Close the connection (and its SFTP session); the next call reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # -- commands --------------------------------------------------------------------------

    def run(self, argv: list[str], timeout: float | None = None, check: bool = True) -> CommandResult:
        """Run ``argv`` on the device (each element quoted, no shell expansion). ``timeout`` in
        seconds (default ``command_timeout``); on expiry the remote process group is killed
        and HostError raised. Non-zero exit raises HostError when ``check``."""
        if not argv:
            raise ValueError("argv is empty")
        cmd = shlex.join(str(a) for a in argv)
        timeout = self.command_timeout if timeout is None else timeout
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if timeout is None:
            return self._exec(cmd, cmd, None, check)
        pidfile = f"/tmp/.edgeforge-run-{uuid.uuid4().hex}.pid"
        wrapped = shlex.join(
            ["sh", "-c", WRAPPER, "edgeforge-run", pidfile, f"{max(timeout, 0.001):.3f}", *map(str, argv)]
        )
        try:
            res = self._exec(wrapped, cmd, timeout + _CLIENT_GRACE_S, check=False)
        except _ClientTimeout:
            self._kill_remote(pidfile, cmd)
            raise HostError(
                f"{self.name}: `{cmd}` timed out after {timeout:g} s and was stopped on the device "
                f"(limit: the target's command_timeout_s)"
            ) from None
        except KeyboardInterrupt:  # Ctrl-C: closing the channel alone would leave it running there
            self._kill_remote(pidfile, cmd)
            raise
        if res.exit_code in TIMED_OUT and res.seconds >= timeout:
            raise HostError(
                f"{self.name}: `{cmd}` timed out after {timeout:g} s and was stopped on the device "
                f"(limit: the target's command_timeout_s)"
            )
        if check:
            self._check(cmd, res)
        return res

    def _exec(self, remote_cmd: str, shown: str, timeout: float | None, check: bool) -> CommandResult:
        """Run on a fresh channel of the open connection, reading stdout/stderr as they come.
        A raw paramiko channel, not Fabric's ``run``: Invoke's runner threads and polling added
        ~0.1 s to every command, and a build makes about ten."""
        conn = self._connection()
        t0 = time.perf_counter()
        deadline = None if timeout is None else t0 + timeout
        beat = t0 + HEARTBEAT_S
        out, err = bytearray(), bytearray()
        try:
            chan = conn.client.get_transport().open_session(timeout=self.connect_timeout)
            try:
                chan.exec_command(remote_cmd)
                chan.shutdown_write()  # no stdin: a command that reads it sees EOF, not a hang
                while True:
                    busy = False
                    while chan.recv_ready():
                        out += chan.recv(1 << 16)
                        busy = True
                    while chan.recv_stderr_ready():
                        err += chan.recv_stderr(1 << 16)
                        busy = True
                    if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    now = time.perf_counter()
                    if deadline is not None and now > deadline:
                        raise _ClientTimeout()
                    if self.notify is not None and now >= beat:  # a long build: say it is alive
                        beat = now + HEARTBEAT_S
                        self.notify(f"still running on {self.address} after {now - t0:.0f} s: {shown[:100]}")
                    if not busy:
                        select.select([chan], [], [], 0.01)
                code = chan.recv_exit_status()
            finally:
                chan.close()
        except _ClientTimeout:
            raise
        except Exception as e:  # the connection dropped while the command ran
            self.close()
            raise HostError(f"{self.name}: `{shown}` on {self.address} failed: {_describe(e)}") from e
        res = CommandResult(out.decode(errors="replace"), err.decode(errors="replace"), code, time.perf_counter() - t0)
        if check:
            self._check(shown, res)
        return res

    def _check(self, cmd: str, res: CommandResult) -> None:
        if res.exit_code != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
            raise HostError(f"{self.name}: `{cmd}` exited {res.exit_code}: " + " | ".join(tail))

    def _kill_remote(self, pidfile: str, cmd: str) -> None:
        """Best effort: TERM then KILL the process group of a timed-out command."""
        try:
            self._exec(shlex.join(["sh", "-c", KILLER, "edgeforge-kill", pidfile]), "kill", 10.0, check=False)
        except Exception as e:  # noqa: BLE001 - the device's own `timeout` still applies
            log.warning(
                "%s: could not stop timed-out `%s` on %s (%s); the device's own timeout will end it",
                self.name,
                cmd,
                self.address,
                _describe(e),
            )


class _ClientTimeout(Exception):
    """Fabric's timer fired before the command ended."""


def _discard(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.client.close()
