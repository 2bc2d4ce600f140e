"""The host side of the device agent: upload ``agent.py`` once, call its commands, read JSON.

The agent lives on the device as ``<workdir>/agent-<sha12>.py`` (named by its content, so a new
EdgeForge version uploads its own agent next to the old one and never runs a stale copy).
Local targets run the same agent in a scratch folder, so a local build and a device build take
the same path.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tasks.config.schema import Target
from tasks.hosts import Host, HostError, host_for

AGENT = Path(__file__).with_name("agent.py")
_AGENT_MISSING = 98
# `sh -c _RUN_IF_PRESENT x AGENT ARGV...`: exit 98 if the agent file is missing, else run ARGV.
_RUN_IF_PRESENT = f'[ -f "$1" ] || exit {_AGENT_MISSING}; shift; exec "$@"'


@functools.lru_cache(maxsize=1)
def _agent_digest() -> str:
    """The agent file's version tag (read and hashed once per process, not once per call)."""
    return hashlib.sha256(AGENT.read_bytes()).hexdigest()[:12]


class AgentError(RuntimeError):
    """The agent answered with an error, or did not answer in JSON; the message names the device."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind


class Device:
    """One target's host, work folder and interpreter; ``call`` runs an agent command there."""

    def __init__(self, name: str, target: Target, host: Host, workdir: str, python: str) -> None:
        self.name, self.target, self.host = name, target, host
        self.workdir, self.python = workdir.rstrip("/"), python

    def path(self, *parts: str) -> str:
        """A path under the device's work folder (POSIX, as the device sees it)."""
        return "/".join([self.workdir, *parts])

    def _agent_path(self) -> str:
        return self.path(f"agent-{_agent_digest()}.py")

    def call(self, command: str, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Run ``agent.py command request`` on the device; returns its ``result`` dict. The
        agent is uploaded the first time a device lacks this version of it (one round trip
        either way: the same command checks for it and runs it)."""
        agent = self._agent_path()
        argv = [
            "sh",
            "-c",
            _RUN_IF_PRESENT,
            "edgeforge-agent",
            agent,
            self.python,
            agent,
            command,
            json.dumps(request, sort_keys=True),
        ]
        limit = timeout or self.target.command_timeout_s
        res = self.host.run(argv, timeout=limit, check=False)
        if res.exit_code == _AGENT_MISSING:
            self.host.put(AGENT, agent)  # creates the work folder too
            res = self.host.run(argv, timeout=limit, check=False)
        lines = res.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict) or "ok" not in answer:
            tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-5:])
            hint = ""
            if res.exit_code in (126, 127):
                hint = f" (is {self.python!r} a Python on the device? set target.{self.name}.python)"
            raise AgentError(f"{self.name}: agent {command} exited {res.exit_code} without an answer{hint}: {tail}")
        if not answer["ok"]:
            raise AgentError(
                f"{self.name}: agent {command} failed: {answer.get('error')}", answer.get("kind", "failed")
            )
        return answer["result"]

    @contextlib.contextmanager
    def scratch(self, label: str) -> Iterator[str]:
        """A fresh folder on the device for one job (created by the first upload into it),
        removed afterwards, even on failure."""
        d = self.path("jobs", f"{label}-{uuid.uuid4().hex[:8]}")
        try:
            yield d
        finally:
            with contextlib.suppress(HostError):
                self.host.run(["rm", "-rf", "--", d], timeout=self.target.connect_timeout_s * 3, check=False)


@contextlib.contextmanager
def device(name: str, target: Target, log: Callable[[str], None] | None = None) -> Iterator[Device]:
    """Connect to target ``name``; closes the connection (and a local scratch folder) at the end.
    ``log`` receives progress of long device commands and large transfers."""
    host = host_for(name, target)
    host.notify = log
    local_dir = None
    try:
        if target.transport == "local":
            local_dir = tempfile.mkdtemp(prefix=f"edgeforge-{name}-")
            dev = Device(name, target, host, local_dir, sys.executable)
        else:
            dev = Device(name, target, host, target.workdir, target.python)
        yield dev
    finally:
        host.close()
        if local_dir:
            shutil.rmtree(local_dir, ignore_errors=True)
