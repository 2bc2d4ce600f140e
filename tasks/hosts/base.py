"""Where commands run. ``LocalHost`` (Invoke) here; ``SSHHost`` (Fabric) with the devices
issue shares this interface. Tasks receive a host; they never open connections themselves."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class HostError(RuntimeError):
    """A command or transfer failed on a host; the message names the host and what to do."""

    transient = False  # True: the device may answer a later attempt (drivers retry only these)


class DeviceUnreachable(HostError):
    """The device did not answer (network down, device rebooting) after the connection retries."""

    transient = True


@dataclass
class CommandResult:
    stdout: str
    stderr: str
    exit_code: int
    seconds: float


class Host(abc.ABC):
    name: str
    # Where progress of long commands and large transfers is reported (a line each); None: nowhere.
    notify: Callable[[str], None] | None = None

    def close(self) -> None:  # noqa: B027 - a default, not an abstract method: most hosts hold nothing
        """Release connections (nothing to do for hosts that hold none)."""

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def run(self, argv: list[str], timeout: float | None = None, check: bool = True) -> CommandResult:
        """Run ``argv`` (each element quoted) with a timeout in seconds; raise HostError on
        non-zero exit when ``check``."""

    @abc.abstractmethod
    def put(self, local: Path, remote: str) -> str:
        """Copy a local file to the host; returns its sha256 after verifying it arrived intact."""

    @abc.abstractmethod
    def get(self, remote: str, local: Path, sha256: str | None = None) -> str:
        """Copy a file from the host; returns its sha256 after verifying it arrived intact
        (against ``sha256`` when given: the hash the host already reported for it)."""
