"""data.generate: a registered example dataset writer runs into its own folder, atomically, and
prepare reads the splits from the files it wrote."""

from __future__ import annotations

import numpy as np
import pytest

from examples.mnist import mnist_digits
from tasks.config import Config, from_dict
from tasks.data.generate import WRITERS, generate
from tasks.prepare import run
from tasks.registry import UnknownName


@WRITERS.register("test_npz_pair")
def _npz_pair(root, seed):
    digits = mnist_digits(seed)
    for split, n in (("calib", 12), ("eval", 20)):
        np.savez(root / f"{split}.npz", x=digits[split].images[:n], y=digits[split].labels[:n])
    return {"seed": seed}


@WRITERS.register("test_broken")
def _broken(root, seed):
    (root / "half.txt").write_text("half")
    raise RuntimeError("disk full")


def test_generate_writes_a_fresh_folder(tmp_path):
    old = tmp_path / "test_npz_pair"
    old.mkdir()
    (old / "stale.txt").write_text("from an older run")
    folder, facts = generate("test_npz_pair", tmp_path, 3)
    assert folder == old and facts == {"seed": 3}
    assert sorted(p.name for p in folder.iterdir()) == ["calib.npz", "eval.npz"]  # the stale file is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_npz_pair"]  # no scratch folder left


def test_a_failing_writer_leaves_no_folder(tmp_path):
    (tmp_path / "test_broken").mkdir()
    with pytest.raises(RuntimeError, match="disk full"):
        generate("test_broken", tmp_path, 0)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_writer_lists_the_registered_ones(tmp_path):
    with pytest.raises(UnknownName, match="mnist_coco"):
        generate("mnist_cocoa", tmp_path, 0)
    assert list(tmp_path.iterdir()) == []


def test_prepare_writes_the_dataset_before_reading_it(params, workdir):
    params["data"].update(generate="test_npz_pair", generate_dir="gen")
    params["data"]["calib"] = {"source": "npz", "path": "gen/test_npz_pair/calib.npz", "limit": None}
    params["data"]["eval"] = {"source": "npz", "path": "gen/test_npz_pair/eval.npz", "limit": None}
    metrics = run(from_dict(Config, params), workdir / "out", log=lambda m: None)
    assert metrics["generated"] == {"writer": "test_npz_pair", "folder": "gen/test_npz_pair", "seed": 0}
    assert metrics["splits"]["calib"]["samples"] == 12 and metrics["splits"]["eval"]["samples"] == 20
    np.testing.assert_array_equal(np.load(workdir / "out/eval/y.npy"), mnist_digits(0)["eval"].labels[:20])
