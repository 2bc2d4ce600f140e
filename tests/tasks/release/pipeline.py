"""Fixtures of the release tests (imported by them; not a conftest, which other release tests would share):
a real pipeline run (prepare to report, FP32 on the local target, MLflow on sqlite) made once per
test session, and a fresh copy of it as the current folder for each test, with a signing key."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import fast_params, run_stages, write_params

ENV = ("MLFLOW_TRACKING_URI", "EDGEFORGE_EXP_NAME", "DVC_EXP_NAME", "EDGEFORGE_SIGNING_KEY")


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> Path:
    import torch

    from examples.mnist import MnistCNN

    root = tmp_path_factory.mktemp("pipeline")
    old = os.getcwd()
    with pytest.MonkeyPatch.context() as mp:
        for k in ENV:
            mp.delenv(k, raising=False)
        os.chdir(root)
        try:
            p = fast_params()
            p["build"]["precisions"] = ["fp32"]
            write_params(p)
            torch.manual_seed(0)
            torch.save(MnistCNN().state_dict(), root / "model.pt")
            run_stages(["fp32"])
        finally:
            os.chdir(old)
    return root


@pytest.fixture
def project(pipeline_run, tmp_path, monkeypatch) -> Path:
    """A copy of the pipeline run as the current folder, with a key pair at the configured paths."""
    from tasks.release import keys

    dst = tmp_path / "project"
    shutil.copytree(pipeline_run, dst)
    monkeypatch.chdir(dst)
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    keys.generate(".edgeforge/release/signing_ed25519.pem", ".edgeforge/release/signing_ed25519.pub")
    return dst
