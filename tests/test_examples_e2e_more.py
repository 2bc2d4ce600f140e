"""End to end: the keypoint and YOLO-style detection examples, as :mod:`tests.test_examples_e2e` runs
the others (a second file, so that pytest-xdist's per-file scheduling runs the two halves side by side)."""

from __future__ import annotations

import pytest

from tests.test_examples_e2e import check_example

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("example", ["mnist_keypoints", "mnist_yolo"])
def test_example_pipeline_reports_the_task_metric_for_every_precision(example, tmp_path):
    check_example(example, tmp_path)
