"""The ``edgeforge`` command as a user runs it: a new process, Prefect's own temporary server (no
test harness), on the tiny DAG. A successful run reads as one: no traceback, no ERROR line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.flows.tiny import make

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment with a Prefect home of its own (a fresh database, no profile) and
    no Prefect server or telemetry choice inherited from the shell running the tests."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}", "PREFECT_HOME": str(tmp_path / "prefect"), **extra}


def test_successful_run_prints_no_traceback(tmp_path):
    root = make(tmp_path / "tiny")
    # the tiny DAG's report stage writes no summary table: a minimal one lets `run` end with exit 0
    summary = root / "artifacts" / "report" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"reference": {"label": "top-1", "value": 0.0}, "rows": []}))
    r = subprocess.run(
        [str(BIN / "edgeforge"), "-C", str(root), "run"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "5 stage(s) ran, 0 up to date" in out, out[-4000:]
    # the temporary server's telemetry heartbeat printed `database is locked` with two chained
    # tracebacks, or an ERROR when it could not reach its host
    assert "Traceback" not in out and "ERROR" not in out, out[-6000:]


def test_users_own_telemetry_setting_is_kept(tmp_path):
    """The telemetry default is EdgeForge's only where the user set nothing: their environment
    variable or Prefect profile still decides."""
    code = "from flows.prefect_env import server_env; print(server_env())"
    profile = tmp_path / "prefect" / "profiles.toml"
    profile.parent.mkdir(parents=True)

    def run(**extra: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", code],
            env=_env(tmp_path, **extra),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    assert run() == "{'PREFECT_SERVER_ANALYTICS_ENABLED': 'false'}"
    assert run(PREFECT_SERVER_ANALYTICS_ENABLED="true") == "{}"
    profile.write_text('active = "mine"\n[profiles.mine]\nPREFECT_SERVER_ANALYTICS_ENABLED = "true"\n')
    assert run() == "{}"
