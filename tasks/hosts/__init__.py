"""Hosts by target transport: ``LocalHost`` (this machine) and ``SSHHost`` (a device over SSH)."""

from __future__ import annotations

import os

from tasks.config.schema import Target
from tasks.hosts.base import CommandResult, Host, HostError


def host_for(name: str, target: Target) -> Host:
    """The host of target ``name``. SSH paths in the target (key, known_hosts) may use ``~``
    and are otherwise relative to the project root."""
    if target.transport == "local":
        from tasks.hosts.local import LocalHost

        return LocalHost()
    if target.transport == "ssh":
        from tasks.hosts.ssh import SSHHost

        def path(p: str | None) -> str | None:
            return os.path.expanduser(p) if p else None

        key = path(target.key_file)
        if key is not None and not os.path.isfile(key):
            raise HostError(f"{name}: key file {key} does not exist (target.{name}.key_file)")
        return SSHHost(
            name,
            target.host or "",
            target.port,
            target.user,
            key_filename=key,
            known_hosts=path(target.known_hosts),
            allow_unknown_host=target.allow_unknown_host,
            connect_timeout=target.connect_timeout_s,
            command_timeout=target.command_timeout_s,
            retries=target.retries,
        )
    raise HostError(f"transport {target.transport!r} is not supported; allowed values: local, ssh")


__all__ = ["CommandResult", "Host", "HostError", "host_for"]
