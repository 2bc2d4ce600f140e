"""A real OpenSSH server on 127.0.0.1: the ``ssh_loopback`` device, and the tests' SSH server.

``start_sshd`` runs ``/usr/sbin/sshd -D -e`` on 127.0.0.1 with a random free port, a fresh
ed25519 host key and a fresh ed25519 user key authorised for the current user, all written
under a scratch folder, until the ``with`` block ends (the tests' fixture). Nothing outside that
folder is touched, except ``/run/sshd`` (sshd's privilege-separation folder), created when
running as root and missing.

``python -m tasks.hosts.loopback start|stop|status`` runs the same server in the background for
the ``ssh_loopback`` target (conf/target/ssh_loopback.yaml): port, key and known_hosts are read
from that target's params, and the "device" gets a ``python3`` launcher for EdgeForge's own
interpreter (a real device has its runtime's Python instead).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
INSTALL_HINT = (
    "OpenSSH server not found at /usr/sbin/sshd: install openssh-server "
    "(`sudo apt-get install -y openssh-server`) to run the SSH host tests"
)


class SSHDError(RuntimeError):
    """sshd could not be started; the message includes its log."""


@dataclass(frozen=True)
class SSHServer:
    """A running loopback sshd and everything a client needs to reach it."""

    host: str
    port: int
    user: str
    key_path: Path  # private key authorised for ``user`` (no passphrase)
    host_public_key: str  # "ssh-ed25519 AAAA..." (type and base64, no comment)
    known_hosts: Path  # a known_hosts file holding ``host_public_key`` for [host]:port
    workdir: Path  # scratch folder with the config, keys and ``sshd.log``
    pid: int

    @property
    def log(self) -> str:
        """sshd's own log so far (useful in assertion messages)."""
        return (self.workdir / "sshd.log").read_text(errors="replace")

    def known_hosts_line(self, public_key: str | None = None) -> str:
        """A known_hosts line for this server's address; ``public_key`` overrides the key."""
        return f"[{self.host}]:{self.port} {public_key or self.host_public_key}\n"


def keygen(path: Path, comment: str) -> str:
    """Write a fresh ed25519 key pair at ``path``/``path.pub``; return the public key
    as "type base64" (the comment stripped)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    kind, b64 = Path(f"{path}.pub").read_text().split()[:2]
    return f"{kind} {b64}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _config(workdir: Path, host: str, port: int, host_key: Path, authorized: Path) -> str:
    return "\n".join(
        [
            f"ListenAddress {host}",
            f"Port {port}",
            f"HostKey {host_key}",
            f"PidFile {workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",  # the scratch folder is not owned/mode-checked like ~/.ssh
            "UsePAM no",
            "Subsystem sftp internal-sftp",
            "MaxSessions 50",
            "MaxStartups 50",
            "LogLevel VERBOSE",
            "",
        ]
    )


def _wait_ready(proc: subprocess.Popen | None, host: str, port: int, deadline_s: float) -> bool:
    """True once the port answers with an SSH banner; False if sshd exits or time runs out."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5) as s:
            s.settimeout(1.0)
            if s.recv(8).startswith(b"SSH-"):
                return True
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _keys(workdir: Path) -> tuple[Path, Path, str]:
    """Host key, authorised user key (generated once per folder) and the host's public key."""
    if os.geteuid() == 0:  # sshd refuses to start as root without its privsep folder
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, user_key = workdir / "host_ed25519", workdir / "user_ed25519"
    if not (host_key.exists() and user_key.exists()):
        keygen(host_key, "edgeforge-loopback-host")
        (workdir / "authorized_keys").write_text(keygen(user_key, "edgeforge-loopback-user") + "\n")
    kind, b64 = Path(f"{host_key}.pub").read_text().split()[:2]
    return host_key, user_key, f"{kind} {b64}"


def _server(workdir: Path, host: str, port: int, pid: int) -> SSHServer:
    _, user_key, host_pub = _keys(workdir)
    server = SSHServer(
        host=host,
        port=port,
        user=getpass.getuser(),
        key_path=user_key,
        host_public_key=host_pub,
        known_hosts=workdir / "known_hosts",
        workdir=workdir,
        pid=pid,
    )
    server.known_hosts.write_text(server.known_hosts_line())
    return server


@contextlib.contextmanager
def start_sshd(workdir: Path, host: str = "127.0.0.1", attempts: int = 3) -> Iterator[SSHServer]:
    """Run sshd until the block ends; yields the server's address, keys and known_hosts.

    Raises SSHDError (with sshd's log) when it cannot start; retries on a fresh port when
    another process grabbed the one picked (``attempts`` tries in all)."""
    if not SSHD.exists():
        raise FileNotFoundError(INSTALL_HINT)
    host_key, _, _ = _keys(workdir)
    log_path = workdir / "sshd.log"
    for _ in range(attempts):
        port = free_port(host)
        cfg = workdir / "sshd_config"
        cfg.write_text(_config(workdir, host, port, host_key, workdir / "authorized_keys"))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if _wait_ready(proc, host, port, deadline_s=10.0):
            break
        _stop(proc)
    else:
        raise SSHDError(f"sshd did not start on {host}; log:\n{log_path.read_text(errors='replace')}")
    try:
        yield _server(workdir, host, port, proc.pid)
    finally:
        _stop(proc)


# -- the ssh_loopback device (python -m tasks.hosts.loopback) --------------------------------

DAEMON_DIR = Path(".edgeforge/loopback")  # under the project root: keys, sshd_config, pid, log


def _daemon_pid(workdir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = int((workdir / "sshd.pid").read_text().split()[0])
        os.kill(pid, 0)
        return pid
    return None


def _launcher(python: str) -> Path:
    """The device's ``python3``: a launcher for this interpreter at ``python`` (relative paths
    are under the home folder, where SSH sessions start)."""
    path = Path(python) if os.path.isabs(python) else Path.home() / python
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"#!/bin/sh\n# EdgeForge ssh_loopback: the device's Python is EdgeForge's own\nexec {sys.executable} \"$@\"\n"
    )
    path.chmod(0o755)
    return path


def daemon_start(port: int, python: str, host: str = "127.0.0.1", workdir: Path = DAEMON_DIR) -> SSHServer:
    """Start (or find running) the background sshd of the ssh_loopback target."""
    if not SSHD.exists():
        raise FileNotFoundError(INSTALL_HINT)
    host_key, _, _ = _keys(workdir)
    _launcher(python)
    pid = _daemon_pid(workdir)
    if pid is None:
        cfg = workdir / "sshd_config"
        cfg.write_text(
            _config(workdir.resolve(), host, port, host_key.resolve(), (workdir / "authorized_keys").resolve())
        )
        r = subprocess.run(
            [str(SSHD), "-f", str(cfg.resolve()), "-E", str((workdir / "sshd.log").resolve())],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0 or not _wait_ready(None, host, port, deadline_s=10.0):
            raise SSHDError(
                f"sshd did not start on {host}:{port} (port taken? change target.ssh_loopback.port): "
                f"{r.stderr.strip()} {(workdir / 'sshd.log').read_text(errors='replace')[-2000:]}"
            )
        pid = _daemon_pid(workdir) or 0
    return _server(workdir, host, port, pid)


def authorize(key_file: Path, workdir: Path = DAEMON_DIR) -> None:
    """Give another loopback device its own user key (generated at ``key_file`` when missing),
    authorised by the same sshd: several devices, each with its key and work folder."""
    _keys(workdir)
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        keygen(key_file, f"edgeforge-loopback-{key_file.stem}")
    kind, b64 = Path(f"{key_file}.pub").read_text().split()[:2]
    authorized = workdir / "authorized_keys"
    lines = authorized.read_text().splitlines()
    if f"{kind} {b64}" not in lines:
        authorized.write_text("\n".join([*lines, f"{kind} {b64}"]) + "\n")


def daemon_stop(workdir: Path = DAEMON_DIR) -> bool:
    pid = _daemon_pid(workdir)
    if pid is not None:
        os.kill(pid, 15)
    return pid is not None


def loopback_targets(targets: dict, first: str) -> list[str]:
    """``first`` and every other SSH target served by the same loopback sshd (its host and port)."""
    t0 = targets[first]
    return [first] + [
        n for n, t in targets.items() if n != first and t.transport == "ssh" and (t.host, t.port) == (t0.host, t0.port)
    ]


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m tasks.hosts.loopback",
        description="Run the loopback devices (ssh_loopback, ssh_loopback_b): a real sshd on 127.0.0.1 for this user.",
    )
    ap.add_argument("action", choices=["start", "stop", "status"])
    ap.add_argument("--target", default="ssh_loopback", help="target whose port and python to use (params.yaml)")
    args = ap.parse_args(argv)
    if args.action == "stop":
        print("ssh_loopback: stopped" if daemon_stop() else "ssh_loopback: not running")
        return
    if args.action == "status":
        pid = _daemon_pid(DAEMON_DIR)
        print(f"ssh_loopback: running (pid {pid})" if pid else "ssh_loopback: not running")
        raise SystemExit(0 if pid else 1)
    from tasks.config import load_config

    targets = load_config().target
    t = targets[args.target]
    server = daemon_start(t.port, t.python, t.host or "127.0.0.1")
    names = loopback_targets(targets, args.target)
    for n in names[1:]:  # the same sshd serves them: their own key (authorised now) and work folder
        if targets[n].key_file and Path(targets[n].key_file).resolve() != server.key_path.resolve():
            authorize(Path(targets[n].key_file))
        _launcher(targets[n].python)
    print(
        f"loopback devices {', '.join(names)}: sshd on {server.host}:{server.port} (pid {server.pid}), "
        f"known_hosts {server.known_hosts}; stop with `python -m tasks.hosts.loopback stop`"
    )


if __name__ == "__main__":
    main()
