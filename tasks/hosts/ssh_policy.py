"""What SSHHost accepts and retries: the host-key policies (unknown keys rejected unless the
target allows them) and the split between transient network errors (retried) and everything
else (authentication, host keys, name resolution: never retried)."""

from __future__ import annotations

import logging
import socket
from typing import Any

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

log = logging.getLogger("tasks.hosts.ssh")


class UnknownHostKey(paramiko.SSHException):
    """The host key is not in known_hosts (never retried)."""

    def __init__(self, fingerprint: str) -> None:
        super().__init__(f"unknown host key {fingerprint}")
        self.fingerprint = fingerprint


class RejectUnknown(paramiko.MissingHostKeyPolicy):
    """paramiko's RejectPolicy, raising an exception we can tell apart from network errors."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise UnknownHostKey(_fingerprint(key))


class AcceptUnknown(paramiko.AutoAddPolicy):
    """AutoAddPolicy (in memory only: no known_hosts file is written) with a warning."""

    def __init__(self, name: str) -> None:
        self._name = name

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        log.warning(
            "%s: accepting unknown host key %s for %s (allow_unknown_host=True)",
            self._name,
            _fingerprint(key),
            hostname,
        )
        super().missing_host_key(client, hostname, key)


def _fingerprint(key: Any) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` shows it (paramiko >= 3.2; else type + MD5 hex)."""
    return getattr(key, "fingerprint", None) or f"{key.get_name()} {key.get_fingerprint().hex()}"


def no_auth_methods(e: BaseException) -> bool:
    # paramiko raises a bare SSHException when it has no key to offer at all
    return isinstance(e, paramiko.SSHException) and "No authentication methods available" in str(e)


def transient(e: BaseException) -> bool:
    """Network trouble that a new attempt may cure (never auth or host-key problems)."""
    if isinstance(e, (UnknownHostKey, paramiko.BadHostKeyException, paramiko.AuthenticationException)):
        return False
    if no_auth_methods(e) or isinstance(e, socket.gaierror):
        return False
    return isinstance(e, (TimeoutError, ConnectionError, EOFError, NoValidConnectionsError, paramiko.SSHException))
