"""LocalHost: commands (output, exit codes, quoting, timeouts) and verified copies."""

from __future__ import annotations

import hashlib

import pytest

from tasks.config.schema import Target
from tasks.hosts import HostError, host_for
from tasks.hosts.local import LocalHost


@pytest.fixture
def host() -> LocalHost:
    return LocalHost()


def test_host_for_local_target():
    assert isinstance(host_for("local", Target()), LocalHost)


def test_run_returns_stdout_and_exit_code(host):
    r = host.run(["echo", "hello"])
    assert r.stdout == "hello\n"
    assert r.exit_code == 0
    assert r.seconds >= 0


def test_run_quotes_arguments(host, tmp_path):
    marker = tmp_path / "pwned"
    arg = f"a b; touch {marker}"
    r = host.run(["printf", "%s", arg])
    assert r.stdout == arg  # passed as one literal argument
    assert not marker.exists()  # the `;` was not interpreted by the shell
    r = host.run(["echo", "$HOME", "*", "`id`"])
    assert r.stdout == "$HOME * `id`\n"


def test_run_nonzero_exit_raises_with_stderr_tail(host):
    with pytest.raises(HostError) as e:
        host.run(["sh", "-c", "echo line1 >&2; echo line2 >&2; echo boom >&2; exit 3"])
    msg = str(e.value)
    assert "exited 3" in msg
    assert "boom" in msg and "line2" in msg
    assert msg.startswith("local:")


def test_run_unchecked_returns_failure(host):
    r = host.run(["sh", "-c", "echo out; echo err >&2; exit 4"], check=False)
    assert r.exit_code == 4
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"


def test_run_timeout_raises(host):
    with pytest.raises(HostError, match="timed out"):
        host.run(["sleep", "5"], timeout=0.5)


def test_put_and_get_copy_with_checksum(host, tmp_path):
    src = tmp_path / "src.bin"
    data = bytes(range(256)) * 1000
    src.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()

    dst = tmp_path / "remote" / "deep" / "model.bin"
    assert host.put(src, str(dst)) == want
    assert dst.read_bytes() == data

    back = tmp_path / "back" / "model.bin"
    assert host.get(str(dst), back) == want
    assert back.read_bytes() == data
    assert not list(back.parent.glob(".*.part"))  # no temporary left behind


def test_copy_refuses_missing_source(host, tmp_path):
    with pytest.raises(HostError, match="does not exist"):
        host.put(tmp_path / "missing.bin", str(tmp_path / "dst.bin"))
    with pytest.raises(HostError, match="does not exist"):
        host.get(str(tmp_path / "missing.bin"), tmp_path / "dst.bin")
    assert not (tmp_path / "dst.bin").exists()
