"""How EdgeForge's MLflow runs read in MLflow 3's UI: the experiment marked as model training, run
names a list of them can be read by, and a link that opens the experiment on its runs table."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from tasks.config import Config

# MLflow 3's experiment kind: its UI's type selector reads it, and UIs that choose the experiment
# page from it open a model-training experiment on its runs, a GenAI one on its overview (traces, tokens)
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow 3.17's UI chooses that page from the sidebar's GenAI / Model training switch instead (kept per
# browser, GenAI until the user flips it) and never from the tag: a link with this parameter sets the switch
WORKFLOW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` (`make ui`) serves a local store unless told otherwise
SEP = " · "
KEY_TAG = "edgeforge.key"  # a child run's `<target>-<precision>`: its folder names under artifacts/ and metrics/


def model_label(cfg: Config) -> str:
    """The model as a person names it: the class of ``model.arch`` (``mypkg.nets:MyNet`` -> ``MyNet``)
    for a state_dict, else the checkpoint's file name without its suffix."""
    m = cfg.model
    if m.format == "state_dict" and m.arch:
        return m.arch.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    return Path(m.checkpoint).stem


def parent_run_name(cfg: Config, tags: dict[str, str]) -> str:
    """``<model> · <DVC experiment, or workspace> · <checkpoint sha256[:8]>``: a list of runs says
    which model, which experiment and which weights without opening one."""
    return SEP.join((model_label(cfg), tags["dvc_experiment"] or "workspace", tags["checkpoint_sha256"][:8]))


def child_run_name(row: dict) -> str:
    """``<target> · <precision>``, shown folded under its parent's name."""
    return f"{row['target']}{SEP}{row['precision']}"


def mark_model_training(client, experiment) -> None:
    """Tag ``experiment`` (new, or one an older EdgeForge or the UI's selector left as it was) as
    model training."""
    if experiment.tags.get(KIND_TAG) != KIND:
        client.set_experiment_tag(experiment.experiment_id, KIND_TAG, KIND)


def runs_url(tracking_uri: str, experiment_id: str) -> str:
    """The UI page of the experiment's runs: on the tracking server itself for an http(s) URI (no
    credentials in it), else on ``mlflow ui``'s default address."""
    parts = urllib.parse.urlsplit(tracking_uri)
    base = LOCAL_UI
    if parts.scheme in ("http", "https"):
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path.rstrip("/"), "", ""))
    return f"{base}/#/experiments/{experiment_id}/runs?{WORKFLOW}"
