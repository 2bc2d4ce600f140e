"""End to end: the detection (CenterNet; YOLO-style with its data written as COCO and read back),
segmentation, binary segmentation and keypoint examples (`-S example=...`) through the real
`dvc repro` in a fresh copy of the repository, with a shortened training. Every precision reports
the task metric (COCO mAP and OKS AP from faster-coco-eval; mIoU/Dice), the three-way parity and the
MLPerf-style latency figures; the MLflow child runs carry the task's metric names."""

from __future__ import annotations

import json

import pytest

from tasks.layout import LAYOUT
from tests.e2e import FAST, ONE_TARGET, fresh_repo, sh

pytestmark = pytest.mark.e2e
PRECISIONS = ["fp32", "fp16", "int8-minmax"]
# the examples added later run one float and one INT8 build (fp16 is the same path for every task, and
# these runs are CI's longest): the summary and verdict logic are the same for each row
LEAN = ["fp32", "int8-minmax"]
EXAMPLES = {  # example -> (primary metric, extra detail keys, the shortened training's floor for the FP32 metric, epochs)
    "mnist_detect": ("map50_95", {"map50", "map75"}, 20.0, 3),
    "mnist_segment": ("miou", {"mean_dice", "pixel_accuracy"}, 30.0, 3),
    "mnist_binseg": ("dice", {"iou", "global_dice", "pixel_accuracy"}, 50.0, 1),  # one sigmoid channel
    "mnist_keypoints": ("oks_ap", {"oks_ap50", "oks_ap75"}, 30.0, 3),
    "mnist_yolo": ("map50_95", {"map50", "map75"}, 20.0, 3),  # data written as COCO and read back
}


@pytest.mark.parametrize("example", ["mnist_detect", "mnist_segment", "mnist_binseg"])
def test_example_pipeline_reports_the_task_metric_for_every_precision(example, tmp_path):
    check_example(example, tmp_path)


def check_example(example: str, tmp_path) -> None:
    """``dvc repro`` of ``example`` in a fresh copy; the summary, records and MLflow runs hold its metric.
    The examples are split over two files so that pytest-xdist's per-file workers run them side by side."""
    metric, details, floor, epochs = EXAMPLES[example]
    precisions = PRECISIONS if example in ("mnist_detect", "mnist_segment") else LEAN
    repo = fresh_repo(
        tmp_path / "repo",
        [
            f"example={example}",
            f"build.precisions=[{','.join(precisions)}]",
            f"prepare.epochs={epochs}",
            *FAST,
            *ONE_TARGET,
        ],
    )
    r = sh(["dvc", "repro"], repo)
    assert "EdgeForge summary" in r.stdout
    summary = json.loads((repo / "artifacts/report/summary.json").read_text())
    assert summary["reference"]["metric"] == metric and summary["reference"]["value"] >= floor
    assert [row["precision"] for row in summary["rows"]] == precisions
    for row in summary["rows"]:
        ev = json.loads((repo / LAYOUT.evaluate_metrics(row["target"], row["precision"])).read_text())
        assert ev["metric"] == metric == row["metric"] and 0 <= row["value"] <= 100
        assert details <= set(ev["details"]) and ev["per_class"]
        assert set(ev["parity"]["legs"]["onnx_artifact"]) == set(
            json.loads((repo / "metrics/parity.json").read_text())["outputs"]
        )
        bench = json.loads((repo / LAYOUT.benchmark_metrics(row["target"], row["precision"])).read_text())
        assert bench["single_stream"]["p99_ms"] > 0 and bench["offline"]["b8"]["throughput"] > 0
        assert row["verdict"] in ("accepted", "rejected") and (row["accepted"] or row["reason"])
    fp32 = summary["rows"][0]
    assert fp32["drop"] == pytest.approx(0.0, abs=0.05) and fp32["accepted"]
    if example == "mnist_yolo":  # prepare wrote the COCO files (not committed) and read the splits from them
        prepared = json.loads((repo / "metrics/prepare.json").read_text())
        assert prepared["generated"]["writer"] == "mnist_coco"
        assert (repo / "data/generated/mnist_coco/annotations/instances_eval.json").is_file()
        assert (repo / "artifacts/prepare/eval/meta.npy").is_file()  # read from image files
        assert "data/generated" not in sh(["git", "status", "--porcelain"], repo).stdout  # gitignored

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("edgeforge").experiment_id])
    children = [c for c in runs if "mlflow.parentRunId" in c.data.tags]
    assert sorted(c.data.params["precision"] for c in children) == sorted(precisions)
    names = {f"accuracy_{k}" for k in (metric, "drop", *details)}
    assert all(names <= set(c.data.metrics) for c in children)


def test_every_example_is_run_by_one_of_the_two_files():
    from tests import test_examples_e2e_more

    here = test_example_pipeline_reports_the_task_metric_for_every_precision.pytestmark[0].args[1]
    there = test_examples_e2e_more.test_example_pipeline_reports_the_task_metric_for_every_precision.pytestmark[0].args[
        1
    ]
    assert sorted(here + there) == sorted(EXAMPLES)
