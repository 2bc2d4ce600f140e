"""Where release bundles live on this machine: ``<release.store>/<model>/<version>/<class>/``."""

from __future__ import annotations

import posixpath
from pathlib import Path

from tasks.config import Config
from tasks.config.release_checks import SEMVER
from tasks.config.schema import Target
from tasks.stage import StageError
from tasks.tracking.registry import model_name


def model_dir(cfg: Config) -> Path:
    return Path(cfg.release.store) / model_name(cfg)


def versions(cfg: Config) -> list[str]:
    """The model's released versions, oldest first (semantic order)."""
    d = model_dir(cfg)
    found = [p.name for p in d.iterdir() if p.is_dir() and SEMVER.fullmatch(p.name)] if d.is_dir() else []
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def latest(cfg: Config) -> str | None:
    v = versions(cfg)
    return v[-1] if v else None


def next_version(cfg: Config) -> str:
    """``release.version`` when set, else the latest release's patch + 1 (0.1.0 for the first)."""
    if cfg.release.version:
        return cfg.release.version
    v = latest(cfg)
    if v is None:
        return "0.1.0"
    major, minor, patch = (int(x) for x in v.split("."))
    return f"{major}.{minor}.{patch + 1}"


def bundle_dir(cfg: Config, cls: str, version: str | None = None) -> Path:
    """The bundle of device class ``cls`` in ``version`` (default: the latest); a clear error when
    there is none."""
    version = version or latest(cfg)
    if version is None:
        raise StageError(f"no release of {model_name(cfg)} in {model_dir(cfg)}: make one with `edgeforge release`")
    d = model_dir(cfg) / version / cls
    if not (d / "manifest.json").is_file():
        have = sorted(p.name for p in d.parent.iterdir() if p.is_dir()) if d.parent.is_dir() else []
        raise StageError(
            f"release {version} of {model_name(cfg)} has no bundle for device class {cls!r} ({d}); it has: "
            f"{', '.join(have) or 'none'}. Map the device to one of them in release.devices, or release again"
        )
    return d


def release_root(target: Target) -> str:
    """The device's release folder: ``<target workdir>/release``, as the device sees it."""
    return posixpath.join(target.workdir.rstrip("/") or ".", "release")
