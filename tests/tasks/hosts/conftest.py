"""Fixtures for the host tests: one real OpenSSH server on loopback for the whole session."""
from __future__ import annotations

import os
from typing import Iterator

import pytest

from tests.tasks.hosts import sshd as helpers
from tests.tasks.hosts.sshd import INSTALL_HINT, SSHServer, start_sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> Iterator[SSHServer]:
    """A running sshd on 127.0.0.1 (random port) that accepts ``sshd.key_path`` for the
    current user; ``sshd.known_hosts`` holds its host key. Skipped when OpenSSH is not
    installed, except under CI (``CI=true``), where that is a failure."""
    if not helpers.SSHD.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{INSTALL_HINT} (CI=true: the SSH tests must not be skipped)")
        pytest.skip(INSTALL_HINT)
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
