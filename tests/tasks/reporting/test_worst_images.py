"""The summary table's optional worst-image column and the worst-image lines under it (Markdown, terminal, HTML)."""

from __future__ import annotations

import io

from tasks.reporting.format import columns, markdown, print_table
from tasks.reporting.html import verdicts


def _summary(worst_images: list[dict] | None) -> dict:
    row = {"key": "local-fp16", "target": "local", "precision": "fp16", "value": 97.0, "drop": 1.0}
    row.update(accepted=True, verdict="accepted", reason="", runtime="onnxruntime", throughput=100.0)
    row.update(latency_p50_ms=1.0, latency_p99_ms=2.0, parity_max_abs=0.01)
    if worst_images is not None:
        row.update(worst_images=worst_images, worst_image_drop=worst_images[0]["drop"])
    return {"reference": {"metric": "dice", "label": "Dice %", "value": 98.0}, "rows": [row]}


def test_worst_image_column_and_lines_only_for_rows_with_per_image_figures():
    plain = _summary(None)
    assert "worst_image_drop" not in [k for k, _ in columns(plain)]
    assert "worst images" not in markdown(plain)

    s = _summary([{"image": 7, "reference": 100.0, "value": 61.5, "drop": 38.5}])
    assert ("worst_image_drop", "worst image drop") in columns(s)
    assert ("value", "Dice %") in columns(s)
    md = markdown(s)
    assert "| 38.50 |" in md
    assert "- local-fp16: worst images: #7 100.0 -> 61.5 (-38.5)" in md
    out = io.StringIO()
    print_table(s, file=out)
    assert "local-fp16: worst images: #7 100.0 -> 61.5 (-38.5)" in out.getvalue()
    assert "<li>local-fp16: worst images: #7 100.0 -&gt; 61.5 (-38.5)</li>" in verdicts(s)
    assert "worst-images" not in verdicts(plain)
