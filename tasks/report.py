"""Stage ``report``: gather every stage's records into one summary (target x precision), print it,
write ``artifacts/report/summary.{json,md}``, the three-way parity histograms, ``report.html`` and
the ``plots/`` CSVs, and log the pipeline to MLflow (one parent run, one child run per target x
precision; see :mod:`tasks.tracking.runs`).

``python -m tasks.report --show`` prints the last summary without logging anything.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

from tasks import stage
from tasks.io import read_json, write_json, write_text
from tasks.layout import LAYOUT, Layout
from tasks.metrics.three_way import plot
from tasks.records import EvaluateRecord, RecordError
from tasks.reporting import html
from tasks.reporting.format import markdown, print_table
from tasks.reporting.summary import summarize
from tasks.tracking.runs import load_mlflow, log_pipeline


def plot_parity(summary: dict, layout: Layout = LAYOUT) -> None:
    """``artifacts/report/parity/<key>.png``: the three-way |difference| histograms of each build."""
    for r in summary["rows"]:
        if r.get("skipped"):  # not applicable to its device: nothing was evaluated
            continue
        par = EvaluateRecord.read(layout.evaluate_metrics(r["target"], r["precision"])).parity
        if par:
            plot(par, layout.parity_png(r["key"]), f"{r['key']}: three-way parity (|difference| histograms)")


def draw(summary: dict, model: str, layout: Layout = LAYOUT) -> None:
    """The parity histograms, then ``report.html`` (which embeds them) and the ``plots/`` CSVs."""
    plot_parity(summary, layout)
    html.write(summary, layout, model=model)


def main(argv: list[str] | None = None) -> None:
    p = stage.parser("report")
    p.add_argument("--show", action="store_true", help="print the last summary; log nothing")
    args = p.parse_args(argv)
    if args.show:
        with stage.stage_errors("report"):
            if not LAYOUT.summary.is_file():
                raise RecordError(f"{LAYOUT.summary} is missing: run the pipeline first (`dvc repro`)")
            print_table(read_json(LAYOUT.summary))
        return
    with stage.stage_errors("report", outputs=[LAYOUT.report_dir]):
        cfg = stage.load(args)
        summary = summarize(cfg, LAYOUT)
        # every figure (matplotlib) is drawn in a second process while this one imports MLflow (~2.7 s
        # on 2 cores of an EPYC): the two overlap where a second core is free. Both before MLflow logs them.
        with ProcessPoolExecutor(max_workers=1) as pool:
            drawn = pool.submit(draw, summary, html.model_name(cfg))
            load_mlflow(cfg)
            drawn.result()
        summary["mlflow"] = log_pipeline(cfg, summary)
        write_json(LAYOUT.summary, summary)
        write_text(LAYOUT.summary_md, markdown(summary))
        if not os.environ.get("EDGEFORGE_NO_TABLE"):  # `make run` prints it once, after dvc repro
            print_table(summary)


if __name__ == "__main__":
    main()
