"""Stage prepare: model-ready calib/eval splits with their limits, seeded subsets, other sources,
and the entry point's clean failure."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from examples.mnist import mnist_digits
from tasks.config import Config, from_dict
from tasks.data.preprocess import preprocess
from tasks.data.sources import DataError
from tasks.data.stream import subset
from tasks.io import read_json
from tasks.prepare import run
from tests.conftest import ROOT, write_params


def test_run_writes_limited_splits(cfg, workdir):
    out = workdir / "artifacts" / "prepare"
    metrics = run(cfg, out, log=lambda m: None)
    for split, n in (("calib", 32), ("eval", 96)):
        x = np.load(out / split / "x.npy")
        y = np.load(out / split / "y.npy")
        assert x.dtype == np.float32 and x.shape == (n, 1, 28, 28)
        assert y.dtype == np.int64 and y.shape == (n,)
        assert set(np.unique(y)) <= set(range(10))
        assert metrics["splits"][split] == {"samples": n, "classes": 10}
    assert read_json(out / "classes.json") == [str(i) for i in range(10)]
    assert "train" not in metrics and not (out / "model.pt").exists()  # prepare.train is null


def test_limit_is_a_seeded_subset(cfg, prepared):
    full = mnist_digits(cfg.data.seed)["calib"]
    idx = np.sort(np.random.default_rng(cfg.data.seed).choice(len(full.labels), 32, replace=False))
    np.testing.assert_array_equal(subset(cfg, "calib", len(full.labels)), idx)
    np.testing.assert_array_equal(np.load(prepared / "calib" / "x.npy"), preprocess(full.images[idx], cfg.model.input))
    np.testing.assert_array_equal(np.load(prepared / "calib" / "y.npy"), full.labels[idx])
    assert not (prepared / "calib" / "meta.npy").exists()  # loader arrays: labels in input pixels


def test_limit_subset_follows_the_seed(params):
    a = subset(from_dict(Config, params), "calib", 500)
    params["data"]["seed"] = 1
    b = subset(from_dict(Config, params), "calib", 500)
    assert len(a) == len(b) == 32
    assert not np.array_equal(a, b)


def test_saved_split_is_preprocessed_subset(cfg, prepared):
    """Streamed one sample at a time, the split is what preprocessing the whole array gives."""
    raw = mnist_digits(cfg.data.seed)["eval"]
    idx = subset(cfg, "eval", len(raw.labels))
    np.testing.assert_array_equal(np.load(prepared / "eval" / "x.npy"), preprocess(raw.images[idx], cfg.model.input))
    np.testing.assert_array_equal(np.load(prepared / "eval" / "y.npy"), raw.labels[idx])


def test_no_limit_takes_the_whole_split(params):
    params["data"]["calib"]["limit"] = None
    assert len(subset(from_dict(Config, params), "calib", 500)) == 500


def test_npz_and_imagefolder_sources(params, workdir):
    ev = mnist_digits(0)["eval"]
    np.savez(workdir / "calib.npz", x=ev.images[:10], y=ev.labels[:10])
    for i, (img, label) in enumerate(zip(ev.images[10:16], ev.labels[10:16])):
        d = workdir / "eval_imgs" / f"c{label}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).resize((32, 32)).save(d / f"{i}.png")  # resized back to 28x28 on load
    params["data"]["calib"] = {"source": "npz", "path": "calib.npz", "limit": 4}
    params["data"]["eval"] = {"source": "imagefolder", "path": "eval_imgs", "limit": None}
    cfg = from_dict(Config, params)
    metrics = run(cfg, workdir / "out", log=lambda m: None)
    assert metrics["splits"]["calib"]["samples"] == 4
    assert metrics["splits"]["eval"]["samples"] == 6
    assert np.load(workdir / "out" / "eval" / "x.npy").shape == (6, 1, 28, 28)
    assert np.load(workdir / "out" / "calib" / "x.npy").shape == (4, 1, 28, 28)


def test_training_needs_loader_eval(params, workdir):
    ev = mnist_digits(0)["eval"]
    np.savez(workdir / "eval.npz", x=ev.images[:10], y=ev.labels[:10])
    params["data"]["eval"] = {"source": "npz", "path": "eval.npz", "limit": None}
    params["prepare"]["train"] = "mnist_cnn"
    with pytest.raises(DataError, match="prepare.train"):
        run(from_dict(Config, params), workdir / "out", log=lambda m: None)


def _prepare(workdir) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tasks.prepare"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )


def test_entry_point_bad_key_fails_cleanly(params, workdir):
    params["data"]["calib"]["limt"] = 5
    write_params(params)
    # stale outputs of an earlier run must not survive a failed run
    (workdir / "artifacts" / "prepare" / "calib").mkdir(parents=True)
    (workdir / "artifacts" / "prepare" / "calib" / "x.npy").write_bytes(b"stale")
    (workdir / "metrics").mkdir()
    (workdir / "metrics" / "prepare.json").write_text("{}")
    r = _prepare(workdir)
    assert r.returncode == 1
    assert "edgeforge prepare: error:" in r.stderr
    assert "data.calib.limt" in r.stderr and "'data.calib.limit'" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (workdir / "artifacts" / "prepare").exists()
    assert not (workdir / "metrics" / "prepare.json").exists()


def test_entry_point_missing_data_fails_cleanly(params, workdir):
    params["data"]["calib"] = {"source": "npz", "path": "nowhere.npz", "limit": None}
    write_params(params)
    r = _prepare(workdir)
    assert r.returncode == 1
    assert "edgeforge prepare: error:" in r.stderr and "nowhere.npz" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (workdir / "artifacts" / "prepare").exists()
    assert not (workdir / "metrics" / "prepare.json").exists()
    assert not [p for p in (workdir / "artifacts").glob(".*")]  # no scratch folder left behind


def _image_folder(root, images, labels) -> None:
    for i, (img, label) in enumerate(zip(images, labels)):
        d = root / f"c{label}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")


def test_one_folder_for_calibration_and_evaluation_is_refused(params, workdir):
    """Regression: the same folder for both splits was accepted, and every INT8 accuracy figure
    came out optimistic."""
    ev = mnist_digits(0)["eval"]
    _image_folder(workdir / "photos", ev.images[:12], ev.labels[:12])
    params["data"]["calib"] = {"source": "imagefolder", "path": "photos", "limit": None}
    params["data"]["eval"] = {"source": "imagefolder", "path": "photos", "limit": None}
    write_params(params)
    r = _prepare(workdir)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("edgeforge prepare: error: data.calib (photos) and data.eval (photos) share 12 sample(s)")
    assert not (workdir / "artifacts" / "prepare").exists()


def test_the_same_images_under_two_folders_are_found_by_content(params, workdir):
    ev = mnist_digits(0)["eval"]
    _image_folder(workdir / "calib", ev.images[:20], ev.labels[:20])
    _image_folder(workdir / "val", ev.images[15:30], ev.labels[15:30])  # 5 in both, other file names
    params["data"]["calib"] = {"source": "imagefolder", "path": "calib", "limit": None}
    params["data"]["eval"] = {"source": "imagefolder", "path": "val", "limit": None}
    with pytest.raises(DataError, match=r"data.calib \(calib\) and data.eval \(val\) share 5 sample"):
        run(from_dict(Config, params), workdir / "out", log=lambda m: None)
    _image_folder(workdir / "val2", ev.images[20:30], ev.labels[20:30])  # disjoint: fine
    params["data"]["eval"]["path"] = "val2"
    assert run(from_dict(Config, params), workdir / "out", log=lambda m: None)["splits"]["eval"]["samples"] == 10


def test_an_empty_class_fails_evaluation_and_warns_calibration(params, workdir):
    ev = mnist_digits(0)["eval"]
    _image_folder(workdir / "calib", ev.images[:10], ev.labels[:10])
    _image_folder(workdir / "val", ev.images[10:40], ev.labels[10:40])
    (workdir / "val" / "c_empty").mkdir()
    params["data"]["calib"] = {"source": "imagefolder", "path": "calib", "limit": None}
    params["data"]["eval"] = {"source": "imagefolder", "path": "val", "limit": None}
    with pytest.raises(DataError, match=r"data.eval \(val\): class\(es\) 'c_empty' have no samples"):
        run(from_dict(Config, params), workdir / "out", log=lambda m: None)
    (workdir / "val" / "c_empty").rmdir()
    (workdir / "calib" / "c_empty").mkdir()
    lines: list[str] = []
    run(from_dict(Config, params), workdir / "out", log=lines.append)
    assert any(m.startswith("WARNING: data.calib (calib): class(es) 'c_empty' have no samples") for m in lines)


def test_a_limit_that_leaves_classes_out_is_a_warning_not_an_error(params, workdir):
    params["data"]["eval"]["limit"] = 5  # 5 digits cannot cover 10 classes
    lines: list[str] = []
    run(from_dict(Config, params), workdir / "out", log=lines.append)
    warned = [
        m
        for m in lines
        if m.startswith("WARNING: data.eval (loader 'mnist_digits' (eval split)): data.eval.limit=5 leaves class(es)")
    ]
    assert len(warned) == 1 and "raise the limit" in warned[0]
