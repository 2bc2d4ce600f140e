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
from tasks.layout import LAYOUT
from tasks.records import RecordError
from tasks.reporting import html
from tasks.reporting.figures import draw
from tasks.reporting.format import markdown, print_table
from tasks.reporting.summary import summarize
from tasks.tracking.runs import load_mlflow, log_pipeline


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
        # every figure (matplotlib, ~4 s) is drawn in a second process while this one imports MLflow
        # (~2.7 s on 2 cores of an EPYC); nothing is logged until they are drawn, so a failed figure
        # leaves nothing in MLflow (docs/architecture.md: a failed stage leaves nothing behind)
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
