"""The DVC remote workers share: DVC's run-cache, so that a stage done on one worker is never done
again on another (``docs/architecture.md``, "Several workers, one cache").

DVC's own commands would do it as ``dvc pull --run-cache`` before a run and ``dvc push --run-cache``
after. The flow does the same with two differences that matter for a fleet:

- **Before a run only the entries come down** (the small YAML files under the remote's ``runs/``,
  one per stage run ever pushed): ``dvc pull --run-cache`` would also download every object every
  entry names (every build of every device, for ever). A stage's outputs are pulled when that stage
  is restored from its entry (``StageCache.restore(pull=True)``, what ``dvc repro --pull`` does).
- **Each stage goes up as soon as it finishes** (its entry, then the objects it names), not after the
  run: a worker that dies mid-run has already shared every stage it finished.

Every function here runs with DVC's repository lock held (``flows.dvc_graph.Workspace``).
"""

from __future__ import annotations

from pathlib import Path

NO_REMOTE_HINT = (
    "configure one with `dvc remote add -d storage ssh://<storage-host>/<path>` (README: "
    '"Outgrow one machine"), or run with --no-remote'
)


class RemoteError(RuntimeError):
    """The remote is not configured or cannot be reached; the message says what to do."""


def default_remote(root: Path) -> str | None:
    """The repository's default DVC remote (``dvc remote default``), or None when it has none."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return repo.config["core"].get("remote") or None


def url(repo, name: str) -> str:
    """The remote's URL as configured, a password in it (``ssh://user:password@host``) masked: it
    goes into logs and errors."""
    from tasks.tracking.uri import redact_uri

    remotes = repo.config["remote"]
    if name not in remotes:
        known = ", ".join(sorted(remotes)) or "none"
        raise RemoteError(f"no DVC remote named {name!r} (configured: {known}); {NO_REMOTE_HINT}")
    return redact_uri(remotes[name]["url"])


def check_host_keys() -> None:
    """Make dvc-ssh check the storage host's key, in this process. dvc-ssh connects through
    sshfs, which hands asyncssh ``known_hosts=None``: any host key is accepted, so whoever answers
    at the address receives the cache. EdgeForge rejects unknown host keys: its connections use
    asyncssh's default instead (``~/.ssh/known_hosts``, or ``UserKnownHostsFile`` of
    ``~/.ssh/config``), and a storage host not listed there is refused. Idempotent."""
    import dvc_ssh

    prepare = dvc_ssh.SSHFileSystem._prepare_credentials
    if getattr(prepare, "edgeforge_checks_host_keys", False):
        return

    def checked(self, **config):
        login = prepare(self, **config)
        login.setdefault("known_hosts", ())  # () = asyncssh's default files; None would disable the check
        return login

    checked.edgeforge_checks_host_keys = True
    dvc_ssh.SSHFileSystem._prepare_credentials = checked


def _odb(repo, name: str, command: str):
    """The remote's object database for the run-cache entries (DVC keeps them beside the legacy
    md5 objects, as ``dvc push --run-cache`` does)."""
    from dvc.config import RemoteConfigError
    from dvc.exceptions import DvcException

    check_host_keys()
    try:
        return repo.cloud.get_remote_odb(name, command, hash_name="md5-dos2unix")
    except (RemoteConfigError, DvcException) as e:
        raise RemoteError(f"DVC remote {name!r} ({url(repo, name)}): {e}") from None


def pull_entries(repo, name: str) -> int:
    """Download the run-cache entries the remote has and this repository does not; their count.
    Raises :class:`RemoteError` naming the remote when it cannot be read."""
    odb = _odb(repo, name, "fetch --run-cache")
    try:
        return len(repo.stage_cache.transfer(odb, repo.cache.legacy, force=False))
    except _transport_errors() as e:  # unreachable host, unknown host key, refused login
        raise RemoteError(f"cannot read the run-cache of DVC remote {name!r} ({url(repo, name)}): {e}") from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a transfer raises when the remote cannot be used (asyncssh's errors are not OSErrors:
    an unknown host key is ``HostKeyNotVerifiable``)."""
    import asyncssh
    from dvc.exceptions import DvcException

    return (OSError, asyncssh.Error, DvcException)


def entry_of(stage) -> tuple[str, str] | None:
    """The run-cache entry (key, value) that ``stage`` as it is now (deps and outs saved) is
    recorded under, or None when DVC keeps no entry for it (``always_changed``)."""
    from dvc.stage.cache import _can_hash, _get_cache_hash, _get_stage_hash
    from dvc.stage.serialize import to_single_stage_lockfile

    if not _can_hash(stage):
        return None
    return _get_stage_hash(stage), _get_cache_hash(to_single_stage_lockfile(stage))


def push_entry(repo, name: str, entry: tuple[str, str]) -> int:
    """Upload one run-cache entry: first every object it names (outputs, and the copies of
    ``cache: false`` outputs DVC keeps for the run-cache), then the entry itself, so that a worker
    that sees the entry finds its data. The number of objects uploaded."""
    from dvc import fs as dvc_fs

    key, value = entry
    pushed = 0
    try:
        for objs in repo.stage_cache.get_used_objs([entry]).values():
            result = repo.cloud.push(objs, remote=name)
            if result.failed:
                raise RemoteError(f"{len(result.failed)} object(s) of the stage could not be uploaded")
            pushed += len(result.transferred)
        odb = _odb(repo, name, "push --run-cache")
        src = repo.stage_cache._get_cache_path(key, value)
        rel = Path(src).relative_to(repo.cache.legacy.path).as_posix()
        dvc_fs.generic.copy(repo.cache.legacy.fs, src, odb.fs, odb.fs.join(odb.path, rel))
    except _transport_errors() as e:
        raise RemoteError(f"cannot upload to DVC remote {name!r} ({url(repo, name)}): {e}") from None
    return pushed
