"""Hosts by target transport."""
from __future__ import annotations

from tasks.config.schema import Target
from tasks.hosts.base import CommandResult, Host, HostError


def host_for(target: Target) -> Host:
    if target.transport == "local":
        from tasks.hosts.local import LocalHost

        return LocalHost()
    raise HostError(f"transport {target.transport!r} is not supported; allowed values: local")


__all__ = ["CommandResult", "Host", "HostError", "host_for"]
