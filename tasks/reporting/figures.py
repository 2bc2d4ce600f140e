"""The report's figures: the three-way parity histograms of every build, then ``report.html``
(which embeds them and draws its own plots) and the ``plots/`` CSVs. The report stage runs
:func:`draw` in a second process while it imports MLflow, so it lives in a module that process
can import by name (a function of ``python -m tasks.report``'s ``__main__`` cannot be pickled
under a profiler or a spawn start)."""

from __future__ import annotations

from tasks.layout import LAYOUT, Layout
from tasks.metrics.three_way import plot
from tasks.records import EvaluateRecord
from tasks.reporting import html


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
