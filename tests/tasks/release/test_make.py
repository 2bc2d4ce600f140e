"""``edgeforge release`` end to end on a real pipeline run: its printed lines, the MLflow release run
(tags, the bundles as artifacts), DVC, its one-line errors, and no key material anywhere."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tasks.io import read_json
from tasks.layout import LAYOUT
from tasks.release import keys, make, manifest
from tests.tasks.release.pipeline import pipeline_run, project  # noqa: F401

MODEL = "edgeforge-mnist_cnn"


def _secrets(pem_path) -> list[bytes]:
    """Every form of the private key a leak could take: the PEM, its base64 body, the raw 32 bytes
    (as bytes, hex and base64)."""
    pem = open(pem_path, "rb").read()
    raw = keys.load_private(pem_path).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    body = b"".join(pem.splitlines()[1:-1])
    return [pem, body, body[:24], raw, raw.hex().encode(), base64.b64encode(raw)]


def test_release_command_logs_a_run_and_leaks_no_key(project, capsys, monkeypatch):
    from mlflow import MlflowClient

    pem_path = project / ".edgeforge/release/signing_ed25519.pem"
    secrets = _secrets(pem_path)
    # the key from the environment (as CI passes it), the file gone
    monkeypatch.setenv(keys.ENV, pem_path.read_text())
    pem_path.unlink()
    make.main([])
    out, err = capsys.readouterr()
    root = project / "releases" / MODEL / "0.1.0" / "local"
    sha = manifest.bundle_sha((root / "manifest.json").read_bytes())
    (line,) = out.splitlines()
    assert line.startswith(f"releases/{MODEL}/0.1.0/local ") and f"sha256 {sha}" in line and "winner local-fp32" in line
    assert "not in a DVC repository" in err

    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    exp = client.get_experiment_by_name("edgeforge")
    (run,) = client.search_runs([exp.experiment_id], "tags.`edgeforge.kind` = 'release'")
    m = read_json(root / "manifest.json")
    assert run.info.run_name == f"release {MODEL} 0.1.0" and run.info.status == "FINISHED"
    assert run.info.run_id == m["mlflow"]["run_id"]
    tags = run.data.tags
    assert (tags["version"], tags["model"], tags["classes"]) == ("0.1.0", MODEL, "local")
    assert tags["bundle_sha256.local"] == sha and tags["winner.local"] == "local-fp32"
    assert tags["pipeline_run_id"] == read_json(LAYOUT.summary)["mlflow"]["parent_run_id"]
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "release/local")}
    assert {"release/local/manifest.json", "release/local/manifest.sig", "release/local/artifact"} <= logged

    # no key material in the MLflow store (database and artifacts), the bundles, or the output
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))  # the experiment's store (an absolute path)
    stored = [p for d in (project, artifacts) for p in d.rglob("*") if p.is_file() and ".edgeforge" not in p.parts]
    assert artifacts / "release/local/manifest.sig" in stored  # the logged artifacts are searched
    for p in stored:
        blob = p.read_bytes()
        assert not any(s in blob for s in secrets), p
    assert not any(s.decode("latin-1") in out + err for s in secrets)


def test_errors_are_one_line_and_leave_nothing(project, capsys):
    (project / ".edgeforge/release/signing_ed25519.pem").unlink()
    with pytest.raises(SystemExit) as e:
        make.main([])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "edgeforge release: error: no signing key: EDGEFORGE_SIGNING_KEY is not set and "
        ".edgeforge/release/signing_ed25519.pem (release.signing_key_file) does not exist; make a key pair "
        "with `edgeforge keygen` (or set release.signing_key_file)"
    ]
    assert not (project / "releases").exists()
    keys.generate(".edgeforge/release/signing_ed25519.pem", ".edgeforge/release/signing_ed25519.pub", force=True)
    with pytest.raises(SystemExit):
        make.main(["--version", "1.2"])
    assert "edgeforge release: error: version '1.2' is not MAJOR.MINOR.PATCH" in capsys.readouterr().err


def test_the_release_is_a_dvc_output(project, capsys):
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], check=True, cwd=project)
    make.main(["--version", "2.0.0"])
    assert "added releases/edgeforge-mnist_cnn/2.0.0 to DVC" in capsys.readouterr().err
    dvc_file = project / "releases" / MODEL / "2.0.0.dvc"
    assert dvc_file.is_file() and "path: 2.0.0" in dvc_file.read_text()
