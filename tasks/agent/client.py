"""The host side of the device agent: upload the agent once, call its commands, read JSON.

The agent is one file, a zipapp of agent.py and the other device modules (:data:`DEVICE_MODULES`),
living on the device as ``<workdir>/agent-<sha12>.pyz`` (named by its content, so a new EdgeForge
version uploads its own agent next to the old one and never runs a stale copy).
Local targets run the same agent in a scratch folder, so a local build and a device build take
the same path.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tasks.config.schema import Target
from tasks.hosts import Host, HostError, host_for

AGENT_DIR = Path(__file__).parent
#: the device agent's modules (``tasks/agent/<name>.py``: stdlib only at import time, Python 3.8), agent
#: first; the zipapp's ``__main__`` adds every other module's ``COMMANDS`` dict to ``agent.COMMANDS``
DEVICE_MODULES = (
    "agent",
    "ed25519",
    "release_store",
    "release_install",
    "release",
    "monitor",
    "executorch_model",
    "hailo",
    "coreml_model",
    "litert_model",
)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_MAIN = """\"\"\"EdgeForge device agent (zipapp): agent.py's commands and those of its other modules.\"\"\"
import importlib
import sys

import agent

for _name in {modules!r}:
    agent.COMMANDS.update(getattr(importlib.import_module(_name), "COMMANDS", {{}}))
sys.exit(agent.main())
"""
_AGENT_MISSING = 98
# `sh -c _RUN_IF_PRESENT x AGENT ARGV...`: exit 98 if the agent file is missing, else run ARGV.
_RUN_IF_PRESENT = f'[ -f "$1" ] || exit {_AGENT_MISSING}; shift; exec "$@"'


def agent_zipapp(modules: tuple[str, ...] = DEVICE_MODULES) -> bytes:
    """The agent zipapp's bytes, the same for the same sources: names sorted, fixed timestamps and modes."""
    files = {f"{m}.py": (AGENT_DIR / f"{m}.py").read_bytes() for m in modules}
    files["__main__.py"] = _MAIN.format(modules=tuple(m for m in modules if m != "agent")).encode()
    with tempfile.SpooledTemporaryFile() as buf:
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
                info.external_attr = 0o644 << 16
                z.writestr(info, files[name])
        buf.seek(0)
        return buf.read()


@functools.lru_cache(maxsize=1)
def agent_file() -> tuple[Path, str]:
    """``(local path, sha12)`` of the agent zipapp, built once per process into the temp folder."""
    data = agent_zipapp()
    digest = hashlib.sha256(data).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / "edgeforge-agent" / f"agent-{digest}.pyz"
    if not path.is_file() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path, digest


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
        return self.path(f"agent-{agent_file()[1]}.pyz")

    def call(self, command: str, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Run ``agent-<sha12>.pyz command request`` on the device; returns its ``result`` dict. The
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
            self.host.put(agent_file()[0], agent)  # creates the work folder too
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
