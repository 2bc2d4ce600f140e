"""A DVC remote over SSH for the flow tests: a folder on the loopback sshd (tests/conftest.py
``sshd``), reached through dvc-ssh with the server's key trusted in ``$HOME/.ssh/known_hosts`` (asyncssh
reads it there and refuses an unknown host key)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DVC = str(Path(sys.executable).parent / "dvc")


def trust(home: Path, sshd) -> Path:
    """``home/.ssh/known_hosts`` holding the loopback server's host key; ``home``."""
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "known_hosts").write_text(sshd.known_hosts_line())
    return home


def add(root: Path, sshd, folder: Path, name: str = "storage") -> str:
    """Make ``folder`` on the loopback sshd ``root``'s default DVC remote ``name`` (its URL in
    .dvc/config, the key file in .dvc/config.local as a user would keep it); its URL."""
    url = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{folder}"
    for args in (
        ["remote", "add", "-f", "-d", name, url],
        ["remote", "modify", "--local", name, "keyfile", str(sshd.key_path)],
    ):
        subprocess.run([DVC, *args], cwd=root, check=True, capture_output=True)
    return url


def two_hosts(base: Path, sshd, overrides: list[str]) -> tuple[Path, Path, Path]:
    """Two working copies standing in for two hosts, ``base/host1/repo`` (a fresh copy of the project
    with ``overrides``, tests/e2e.py) and ``base/host2/repo`` (its clone), sharing the DVC remote
    ``base/storage`` on the loopback sshd (committed in the first, each with its own key setting);
    ``(one, two, storage)``."""
    from tests.e2e import fresh_repo, sh

    storage = base / "storage"
    one = fresh_repo(base / "host1" / "repo", overrides)
    add(one, sshd, storage)
    sh(["git", "commit", "-qam", "the team's DVC remote"], one)
    two = base / "host2" / "repo"
    sh(["git", "clone", "-q", str(one), str(two)], base)
    for key, value in (("user.email", "host2@edgeforge.invalid"), ("user.name", "host 2")):
        sh(["git", "config", key, value], two)  # `dvc exp save` commits the experiment
    add(two, sshd, storage)  # its own key file (.dvc/config.local)
    return one, two, storage
