"""SSHHost against a real OpenSSH sshd on loopback: quoting, exit codes, timeouts that kill
the remote process, verified transfers, host-key policy, authentication and retries."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import uuid
from pathlib import Path

import paramiko
import pytest

from tasks.hosts import HostError
from tasks.hosts.loopback import free_port, keygen
from tasks.hosts.ssh import SSHHost


@pytest.fixture
def connect(sshd):
    """Factory for SSHHosts on the test sshd (keyword arguments override); all closed after."""
    made: list[SSHHost] = []

    def make(**kw) -> SSHHost:
        args = dict(
            name="dev",
            host=sshd.host,
            port=sshd.port,
            user=sshd.user,
            key_filename=sshd.key_path,
            known_hosts=sshd.known_hosts,
            connect_timeout=5.0,
        )
        args.update(kw)
        made.append(SSHHost(**args))
        return made[-1]

    yield make
    for h in made:
        h.close()


@pytest.fixture
def host(connect) -> SSHHost:
    return connect()


def _alive(host: SSHHost, marker: str) -> str:
    """Command lines of processes on the device containing ``marker`` (pgrep over SSH). The
    pattern's first letter is bracketed so that pgrep's own shell never matches it."""
    r = host.run(["pgrep", "-af", f"[{marker[0]}]{marker[1:]}"], check=False)
    assert r.exit_code in (0, 1), r.stderr
    return r.stdout


# -- commands ---------------------------------------------------------------------------------


def test_run_returns_stdout_and_exit_code(host):
    r = host.run(["echo", "hello"])
    assert (r.stdout, r.stderr, r.exit_code) == ("hello\n", "", 0)
    assert r.seconds > 0


def test_run_quotes_arguments(host, tmp_path):
    marker = tmp_path / "pwned"
    args = ["a b", "it's", 'say "hi"', "$HOME", "`id`", "*", f"x; touch {marker}", f"$(touch {marker})", ""]
    for timeout in (None, 10):  # plain and through the timeout wrapper
        r = host.run(["printf", r"%s\n", *args], timeout=timeout)
        assert r.stdout.split("\n")[:-1] == args  # every argument arrived literally, one each
    assert not marker.exists()  # no `;` or `$(...)` was interpreted by a shell


def test_run_nonzero_exit_raises_with_stderr_tail(host):
    with pytest.raises(HostError) as e:
        host.run(["sh", "-c", "echo line1 >&2; echo line2 >&2; echo boom >&2; exit 3"])
    msg = str(e.value)
    assert msg.startswith("dev:")
    assert "exited 3" in msg and "boom" in msg and "line2" in msg
    assert "sh -c 'echo line1" in msg  # the command, as the user wrote it (not the wrapper)


def test_run_unchecked_returns_failure(host):
    r = host.run(["sh", "-c", "echo out; echo err >&2; exit 4"], check=False, timeout=10)
    assert (r.exit_code, r.stdout, r.stderr) == (4, "out\n", "err\n")


def test_run_timeout_kills_remote_process(connect):
    host, observer = connect(), connect()
    marker = f"EFTIMEOUT{uuid.uuid4().hex}"
    t0 = time.monotonic()
    with pytest.raises(HostError, match=r"timed out after 1 s and was stopped"):
        host.run(["sh", "-c", f"sleep 300; : {marker}"], timeout=1)
    assert time.monotonic() - t0 < 4
    assert _alive(observer, marker) == ""  # the remote shell and its sleep are gone
    assert host.run(["echo", "ok"]).stdout == "ok\n"  # the connection is still usable


def test_run_timeout_kills_process_that_ignores_term(connect):
    """The client-side path: the device's `timeout` sends TERM (ignored here), so the client's
    timer fires and kills the remote process group with KILL over a second channel."""
    host, observer = connect(), connect()
    marker = f"EFSTUBBORN{uuid.uuid4().hex}"
    before = set(Path("/tmp").glob(".edgeforge-run-*.pid"))  # other runs' files are not this test's
    with pytest.raises(HostError, match="timed out"):
        host.run(["sh", "-c", f"trap '' TERM; sleep 300; : {marker}"], timeout=0.5)
    assert _alive(observer, marker) == ""
    assert set(Path("/tmp").glob(".edgeforge-run-*.pid")) <= before  # sshd is local: no pid file left


def test_ctrl_c_stops_the_remote_process(connect, monkeypatch):
    """Ctrl-C while a device command runs (raised here from the progress callback, as SIGINT
    would raise it in the waiting loop) kills the command on the device too."""
    from tasks.hosts import ssh

    monkeypatch.setattr(ssh, "HEARTBEAT_S", 0.3)
    host, observer = connect(), connect()
    marker = f"EFCTRLC{uuid.uuid4().hex}"

    def interrupt(_msg: str) -> None:
        raise KeyboardInterrupt

    host.notify = interrupt
    with pytest.raises(KeyboardInterrupt):
        host.run(["sh", "-c", f"sleep 300; : {marker}"], timeout=600)
    assert _alive(observer, marker) == ""


def test_command_timeout_default_applies(connect):
    host = connect(command_timeout=0.5)
    with pytest.raises(HostError, match="timed out after 0.5 s"):
        host.run(["sleep", "30"])


# -- transfers --------------------------------------------------------------------------------


def _random_file(path: Path, nbytes: int) -> tuple[Path, str]:
    data = os.urandom(nbytes)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.fixture
def blob(tmp_path) -> tuple[Path, str]:
    """A 5 MB file of random bytes and its sha256."""
    return _random_file(tmp_path / "src.bin", 5 * 1024 * 1024)


@pytest.fixture
def small(tmp_path) -> tuple[Path, str]:
    """A 1 MB file of random bytes and its sha256 (for the failure paths)."""
    return _random_file(tmp_path / "small.bin", 1024 * 1024)


def test_put_get_round_trip(host, blob, tmp_path):
    src, want = blob
    remote = tmp_path / "device" / "deep" / "model.bin"  # sshd runs here: the "device" is local
    assert host.put(src, str(remote)) == want
    assert remote.read_bytes() == src.read_bytes()
    back = tmp_path / "back" / "model.bin"
    assert host.get(str(remote), back) == want
    assert back.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in remote.parent.iterdir()) == ["model.bin"]  # no temporaries
    assert sorted(p.name for p in back.parent.iterdir()) == ["model.bin"]


def test_put_overwrites_existing_file(host, small, tmp_path):
    src, want = small
    remote = tmp_path / "device" / "model.bin"
    remote.parent.mkdir()
    remote.write_bytes(b"old")
    assert host.put(src, str(remote)) == want
    assert remote.read_bytes() == src.read_bytes()


def test_put_missing_local_file(host, tmp_path):
    with pytest.raises(HostError, match="does not exist"):
        host.put(tmp_path / "missing.bin", str(tmp_path / "device" / "x.bin"))


def test_get_missing_remote_file_leaves_nothing(host, tmp_path):
    dst = tmp_path / "back" / "model.bin"
    with pytest.raises(HostError, match="does not exist"):
        host.get(str(tmp_path / "missing.bin"), dst)
    assert not dst.exists()
    assert not dst.parent.exists() or not list(dst.parent.iterdir())


def test_put_checksum_mismatch_leaves_nothing(host, small, tmp_path, monkeypatch):
    """Simulated: paramiko's ``SFTPClient.put`` is wrapped to flip one byte of the file it wrote
    on the device (a loopback path), as corruption in transit would; the device's hash is real."""
    src, _ = small
    real_put = paramiko.SFTPClient.put

    def corrupting_put(self, localpath, remotepath, *a, **kw):
        attrs = real_put(self, localpath, remotepath, *a, **kw)
        with open(remotepath, "r+b") as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))
        return attrs

    monkeypatch.setattr(paramiko.SFTPClient, "put", corrupting_put)
    remote = tmp_path / "device" / "model.bin"
    with pytest.raises(HostError, match="checksum mismatch uploading"):
        host.put(src, str(remote))
    assert not remote.exists()
    assert list(remote.parent.iterdir()) == []  # the temporary was removed too


def test_get_checksum_mismatch_leaves_nothing(host, small, tmp_path, monkeypatch):
    """Simulated: paramiko's ``SFTPClient.get`` is wrapped to flip one byte of what it wrote,
    as corruption in transit would; the device's own hash is real."""
    src, _ = small
    remote = tmp_path / "device" / "model.bin"
    host.put(src, str(remote))
    real_get = paramiko.SFTPClient.get

    def corrupting_get(self, remotepath, localpath, *a, **kw):
        real_get(self, remotepath, localpath, *a, **kw)
        with open(localpath, "r+b") as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))

    monkeypatch.setattr(paramiko.SFTPClient, "get", corrupting_get)
    dst = tmp_path / "back" / "model.bin"
    with pytest.raises(HostError, match="checksum mismatch downloading"):
        host.get(str(remote), dst)
    assert list(dst.parent.iterdir()) == []


def _drop_connection_after(host: SSHHost, nbytes: int):
    """A progress callback that cuts the SSH connection once ``nbytes`` have moved."""

    def progress(done: int, total: int) -> None:
        if done >= nbytes and host._conn is not None:
            host._conn.client.close()

    return progress


def test_interrupted_put_leaves_nothing(host, small, tmp_path, monkeypatch):
    src, _ = small
    monkeypatch.setattr(host, "_progress", _drop_connection_after(host, 256 * 1024))
    remote = tmp_path / "device" / "model.bin"
    with pytest.raises(HostError, match="upload .* failed"):
        host.put(src, str(remote))
    assert not remote.exists()
    assert list(remote.parent.iterdir()) == []  # the partial upload was removed on reconnect


# paramiko's prefetch thread dies with an EOFError when the connection goes; that is expected here
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_interrupted_get_leaves_nothing(host, small, tmp_path, monkeypatch):
    src, _ = small
    remote = tmp_path / "device" / "model.bin"
    host.put(src, str(remote))
    monkeypatch.setattr(host, "_progress", _drop_connection_after(host, 256 * 1024))
    dst = tmp_path / "back" / "model.bin"
    with pytest.raises(HostError, match="download .* failed"):
        host.get(str(remote), dst)
    assert list(dst.parent.iterdir()) == []


# -- host keys, authentication, connection failures --------------------------------------------


def test_unknown_host_key_is_rejected(connect, sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostError) as e:
        connect(known_hosts=empty).run(["true"])
    msg = str(e.value)
    assert f"[{sshd.host}]:{sshd.port}" in msg and "not in" in msg
    assert f"ssh-keyscan -p {sshd.port} {sshd.host}" in msg and "allow_unknown_host" in msg


def test_unknown_host_key_accepted_when_allowed(connect, tmp_path, caplog):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with caplog.at_level(logging.WARNING, logger="tasks.hosts.ssh"):
        assert connect(known_hosts=empty, allow_unknown_host=True).run(["echo", "hi"]).stdout == "hi\n"
    assert "accepting unknown host key" in caplog.text
    assert empty.read_text() == ""  # never written back


def test_changed_host_key_is_rejected_even_when_unknown_allowed(connect, sshd, tmp_path):
    other = keygen(tmp_path / "other_host", "other")
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line(other))
    with pytest.raises(HostError, match="does NOT match") as e:
        connect(known_hosts=kh, allow_unknown_host=True).run(["true"])
    assert "ssh-keygen" in str(e.value)


def test_missing_known_hosts_file(connect, tmp_path):
    with pytest.raises(HostError, match="cannot read known_hosts"):
        connect(known_hosts=tmp_path / "nope").run(["true"])


def test_wrong_user_key_fails_without_retries(connect, tmp_path, caplog):
    wrong = tmp_path / "wrong_key"
    keygen(wrong, "wrong")
    secret = wrong.read_text().splitlines()[-2]  # last base64 line: private-key bytes
    t0 = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(HostError, match="authentication failed") as e:
        connect(key_filename=wrong, retries=2).run(["true"])
    assert time.monotonic() - t0 < 2.0  # no backoff sleeps: not retried
    assert not [r for r in caplog.records if r.name == "tasks.hosts.ssh"]  # no "retry" warning
    assert str(wrong) in str(e.value) and "authorized_keys" in str(e.value)
    assert secret not in str(e.value) and secret not in caplog.text


def test_repr_shows_no_key(host, sshd):
    assert repr(host) == f"SSHHost(name='dev', host='{sshd.host}', port={sshd.port}, user='{sshd.user}')"


def test_unreachable_port_fails_fast(connect, caplog):
    port = free_port()  # nothing listens here
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(HostError) as e:
        connect(port=port, connect_timeout=2, retries=2).run(["true"])
    took = time.monotonic() - t0
    assert took < 2 * 2 * 3 + 1
    assert caplog.text.count("retry") == 2  # refused is transient: retried twice (0.5 s, 1 s)
    msg = str(e.value)
    assert f"127.0.0.1:{port}" in msg and "3 attempt(s)" in msg and "connect timeout 2 s" in msg

    t0 = time.monotonic()
    with pytest.raises(HostError, match="1 attempt"):
        connect(port=port, connect_timeout=2, retries=0).run(["true"])
    assert time.monotonic() - t0 < 3


def test_silent_port_times_out_within_connect_timeout(connect):
    """A port that accepts TCP but never speaks SSH (a hung device) fails after about
    ``connect_timeout``, not paramiko's 15 s banner default."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)  # never accept()ed: the kernel completes the handshake, nobody answers
        t0 = time.monotonic()
        with pytest.raises(HostError, match="cannot connect"):
            connect(port=srv.getsockname()[1], connect_timeout=1, retries=0).run(["true"])
        assert time.monotonic() - t0 < 3


def test_reconnects_after_close_and_context_manager(connect):
    host = connect()
    with host as h:
        assert h.run(["true"]).exit_code == 0
        assert host._conn is not None and host._conn.is_connected
    assert host._conn is None
    assert host.run(["echo", "again"]).stdout == "again\n"


def test_long_commands_and_large_transfers_report_progress(connect, tmp_path, monkeypatch):
    from tasks.hosts import ssh, ssh_transfer

    monkeypatch.setattr(ssh, "HEARTBEAT_S", 0.5)
    monkeypatch.setattr(ssh_transfer, "PROGRESS_MIN_BYTES", 1 << 20)
    host = connect()
    lines: list[str] = []
    host.notify = lines.append
    host.run(["sleep", "1.3"])
    assert [m for m in lines if m.startswith(f"still running on {host.address} after")][:2] and len(lines) >= 2
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 << 20))
    lines.clear()
    host.put(big, str(tmp_path / "device" / "big.bin"))
    host.get(str(tmp_path / "device" / "big.bin"), tmp_path / "back.bin")
    assert lines[-1] == "download back.bin: 100% of 2.1 MB"
    assert "upload big.bin: 100% of 2.1 MB" in lines and "upload big.bin: 50% of 2.1 MB" in lines
