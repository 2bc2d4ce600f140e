"""The MLflow tracking URI: from the environment or the config, a relative sqlite path made
absolute, and a password masked wherever the URI is shown or stored."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from tasks.config import Config


def tracking_uri(cfg: Config) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.report.tracking_uri


def resolved_uri(uri: str, base: Path | None = None) -> str:
    """``uri`` with a relative sqlite path made absolute against ``base`` (default: the current
    folder). MLflow keeps one database engine per URI string for the life of the process: a relative
    ``sqlite:///mlflow.db`` would otherwise keep pointing at the first folder it was opened in."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and uri != prefix + ":memory:":
        return prefix + str((Path(base or ".") / uri[len(prefix) :]).resolve())
    return uri


def redact_uri(uri: str) -> str:
    """``uri`` with the password of ``user:password@host`` replaced by ``***``."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
