"""Stages shared between working copies through an SSH DVC remote (flows/dvc_remote.py): what one
copy ran, another restores from the run-cache without running it (persisted outputs too), each stage
goes up as it finishes, and a remote that cannot be used fails with its name and what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from flows.dvc_graph import Workspace, read
from flows.dvc_remote import RemoteError
from flows.pipeline import PipelineError, pipeline
from tasks.hosts.loopback import free_port
from tests.flows import remote
from tests.flows.tiny import make, runs


def persisted(root: Path) -> Path:
    """The tiny repository with its builds' outputs ``persist: true``, as EdgeForge's are."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text())
    spec["stages"]["build"]["outs"] = [{"out/build-${item.target}.txt": {"persist": True}}]
    (root / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    subprocess.run(["git", "commit", "-qam", "persisted builds"], cwd=root, check=True)
    return root


@pytest.fixture
def shared(tmp_path, sshd, monkeypatch):
    """Working copy ``a`` with an SSH remote, and ``b``, a clone of it configured alike."""
    monkeypatch.setenv("HOME", str(remote.trust(tmp_path / "home", sshd)))
    a = persisted(make(tmp_path / "a"))
    storage = tmp_path / "storage"
    remote.add(a, sshd, storage)
    subprocess.run(["git", "commit", "-qam", "remote"], cwd=a, check=True)
    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(a), str(b)], check=True)
    remote.add(b, sshd, storage)  # the key file is each copy's own (.dvc/config.local)
    return a, b, storage


def reproduce_all(root: Path) -> dict:
    ws = Workspace(root, remote="storage")
    ws.connect()
    return {s.name: ws.reproduce(s.name, root / "logs" / f"{s.name}.log", 60) for s in read(root)}


def test_a_stage_run_in_one_copy_is_restored_in_another_without_running(shared):
    a, b, storage = shared
    first = reproduce_all(a)
    assert not any(r.cached for r in first.values()) and len(runs(a)) == 5
    assert all(r.pushed >= 1 and r.push_error is None for r in first.values())  # each up as it finished
    assert list(storage.glob("runs/*/*/*")), "no run-cache entry reached the remote"

    second = reproduce_all(b)
    assert all(r.cached for r in second.values()), second
    assert runs(b) == []  # no command ran in the second copy
    for out in sorted((a / "out").iterdir()):
        assert (b / "out" / out.name).read_text() == out.read_text()
    status = subprocess.run([remote.DVC, "status"], cwd=b, capture_output=True, text=True, check=True).stdout
    assert "up to date" in status  # recorded in b's dvc.lock

    # a changed input in b runs there (and only what depends on it)
    (b / "in.txt").write_text("v2\n")
    again = reproduce_all(b)
    assert not any(r.cached for r in again.values()) and len(runs(b)) == 5


def test_the_flow_reports_stages_restored_from_the_run_cache(shared, prefect):
    a, b, _ = shared
    reproduce_all(a)
    summary = pipeline(root=str(b))
    assert summary["remote"] == "storage"
    assert summary["ran"] == [] and len(summary["cached"]) == 5, summary
    assert runs(b) == []
    # --no-remote: one machine; nothing is pulled (b's own cache is used as it is)
    assert pipeline(root=str(b), share=False)["remote"] is None


def test_an_unknown_host_key_is_refused_naming_the_remote(shared, tmp_path, monkeypatch, prefect):
    _, b, _ = shared
    (tmp_path / "home" / ".ssh" / "known_hosts").write_text("")  # the storage host is not trusted
    with pytest.raises(RemoteError, match=r"'storage' \(ssh://"):
        Workspace(b, remote="storage").connect()
    with pytest.raises(PipelineError, match="storage.*--no-remote"):
        pipeline(root=str(b))
    assert runs(b) == []  # nothing ran
    with pytest.raises(PipelineError, match="no DVC remote named 'nas'"):
        pipeline(root=str(b), remote="nas")


def test_an_unreachable_remote_is_named_without_its_password(tmp_path):
    root = make(tmp_path / "tiny")
    port = free_port()  # nothing listens there
    subprocess.run(
        [remote.DVC, "remote", "add", "-d", "nas", f"ssh://edge:s3cret@127.0.0.1:{port}/srv/dvc"],
        cwd=root,
        check=True,
        capture_output=True,
    )
    with pytest.raises(RemoteError) as e:
        Workspace(root, remote="nas").connect()
    assert f"'nas' (ssh://edge:***@127.0.0.1:{port}/srv/dvc)" in str(e.value)
    assert "s3cret" not in str(e.value)
