"""A real OpenSSH server on loopback for the SSHHost tests.

``start_sshd`` runs ``/usr/sbin/sshd -D -e`` on 127.0.0.1 with a random free port, a fresh
ed25519 host key and a fresh ed25519 user key authorised for the current user, all written
under a scratch folder. Nothing outside that folder is touched, except ``/run/sshd`` (sshd's
privilege-separation folder), created when running as root and missing.
"""
from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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
        check=True, capture_output=True,
    )
    kind, b64 = Path(f"{path}.pub").read_text().split()[:2]
    return f"{kind} {b64}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _config(workdir: Path, host: str, port: int, host_key: Path, authorized: Path) -> str:
    return "\n".join([
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
    ])


def _wait_ready(proc: subprocess.Popen, host: str, port: int, deadline_s: float) -> bool:
    """True once the port answers with an SSH banner; False if sshd exits or time runs out."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
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


@contextlib.contextmanager
def start_sshd(workdir: Path, host: str = "127.0.0.1", attempts: int = 3) -> Iterator[SSHServer]:
    """Run sshd until the block ends; yields the server's address, keys and known_hosts.

    Raises SSHDError (with sshd's log) when it cannot start; retries on a fresh port when
    another process grabbed the one picked (``attempts`` tries in all)."""
    if not SSHD.exists():
        raise FileNotFoundError(INSTALL_HINT)
    if os.geteuid() == 0:  # sshd refuses to start as root without its privsep folder
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, user_key = workdir / "host_ed25519", workdir / "user_ed25519"
    host_pub = keygen(host_key, "edgeforge-test-host")
    user_pub = keygen(user_key, "edgeforge-test-user")
    authorized = workdir / "authorized_keys"
    authorized.write_text(user_pub + "\n")
    log_path = workdir / "sshd.log"
    for _ in range(attempts):
        port = free_port(host)
        cfg = workdir / "sshd_config"
        cfg.write_text(_config(workdir, host, port, host_key, authorized))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(cfg)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        if _wait_ready(proc, host, port, deadline_s=10.0):
            break
        _stop(proc)
    else:
        raise SSHDError(f"sshd did not start on {host}; log:\n{log_path.read_text(errors='replace')}")
    server = SSHServer(
        host=host, port=port, user=getpass.getuser(), key_path=user_key,
        host_public_key=host_pub, known_hosts=workdir / "known_hosts", workdir=workdir,
        pid=proc.pid,
    )
    server.known_hosts.write_text(server.known_hosts_line())
    try:
        yield server
    finally:
        _stop(proc)
