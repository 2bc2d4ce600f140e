"""Stage ``checkpoint``: model.checkpoint checked and fingerprinted before anything uses it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tasks import checkpoint
from tasks.config import Config, from_dict
from tasks.io import read_json, sha256_file
from tasks.layout import LAYOUT
from tasks.models.errors import CheckpointError
from tests.conftest import ROOT, write_params
from tests.e2e import fresh_repo, ran, sh


def _run(workdir) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tasks.checkpoint"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )


def test_records_path_and_format_and_leaves_an_unchanged_record_alone(params, model_file, workdir):
    checkpoint.main([])
    assert read_json(LAYOUT.checkpoint_record) == {"path": "model.pt", "format": "state_dict"}
    os.utime(LAYOUT.checkpoint_record, (1, 1))
    model_file.write_bytes(model_file.read_bytes() + b"\0")  # new bytes, same path: export's dep, not this record
    checkpoint.main([])
    assert LAYOUT.checkpoint_record.stat().st_mtime == 1


def test_export_records_the_sha256_of_the_checkpoint_it_read(params, model_file, workdir):
    from tasks import export

    cfg = from_dict(Config, params)
    assert export.checkpoint_fingerprint(cfg) == {
        "path": "model.pt",
        "size_bytes": model_file.stat().st_size,
        "sha256": sha256_file(model_file),
    }
    model_file.unlink()
    assert export.checkpoint_fingerprint(cfg) is None


def test_a_missing_checkpoint_names_the_key_the_path_and_what_to_do(params, workdir):
    params["model"]["checkpoint"] = "models/mine.pt"
    write_params(params)
    LAYOUT.checkpoint_record.parent.mkdir(parents=True)
    LAYOUT.checkpoint_record.write_text("{}")  # an earlier run's record must not survive
    r = _run(workdir)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("edgeforge checkpoint: error: model.checkpoint points to models/mine.pt (")
    assert str(workdir / "models" / "mine.pt") in err and "which does not exist" in err
    assert "-S model.checkpoint=" in err
    assert not LAYOUT.checkpoint_record.exists()


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda p: p.mkdir(parents=True), "not a file"),
        (lambda p: p.write_bytes(b""), "empty"),
    ],
)
def test_a_folder_or_an_empty_file_is_refused(cfg, workdir, make, why):
    make(workdir / "model.pt")
    with pytest.raises(CheckpointError, match=why):
        checkpoint.run(cfg)


def test_the_bundled_path_without_training_says_prepare_train_is_off(params):
    params["model"]["checkpoint"] = str(LAYOUT.trained_checkpoint)
    with pytest.raises(CheckpointError, match="prepare.train is null"):
        checkpoint.run(from_dict(Config, params))


def test_dvc_repro_with_a_missing_checkpoint_ends_with_edgeforges_message(tmp_path):
    """Regression: DVC met the missing checkpoint first (a dep of export) and said only
    `[Errno 2] No such file or directory`."""
    repo = fresh_repo(
        tmp_path / "repo",
        ["prepare=none", "model.checkpoint=models/mine.pt", "data.calib.limit=16", "data.eval.limit=16"],
    )
    r = sh(["dvc", "repro"], repo, check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "edgeforge checkpoint: error: model.checkpoint points to models/mine.pt" in out
    assert "Errno 2" not in out and "Traceback" not in out
    assert "Running stage 'export'" not in out
    # the file arrives: the check passes and export reads it; new bytes under the same path re-run export
    # and parity (the file is their dep), not the check (its record keeps the path and format)
    import torch

    from examples.mnist import MnistCNN

    ckpt = repo / "models" / "mine.pt"
    ckpt.parent.mkdir()
    for seed, want in ((0, {"checkpoint", "export", "parity"}), (1, {"export", "parity"})):
        torch.manual_seed(seed)
        torch.save(MnistCNN().state_dict(), ckpt)
        assert set(ran(sh(["dvc", "repro", "parity"], repo).stdout)) == want
        assert read_json(repo / LAYOUT.export_metrics)["checkpoint"]["sha256"] == sha256_file(ckpt)
    assert ran(sh(["dvc", "repro", "parity"], repo).stdout) == []  # nothing changed: nothing runs
    # deleted after a successful run with nothing else changed: the check does not run, DVC names the file
    ckpt.unlink()
    r = sh(["dvc", "repro", "parity"], repo, check=False)
    assert r.returncode != 0 and "models/mine.pt" in r.stdout + r.stderr
