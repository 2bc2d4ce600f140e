"""The report's figures (PNG bytes for :mod:`tasks.reporting.html`) and the same series as small CSV
files for ``dvc plots show`` (declared in ``dvc.yaml``'s top-level ``plots:``).

Two series, both per target:

- accuracy vs latency: each build's task metric against its batch-1 p50 latency (ms), with the
  Pareto front of the *accepted* builds (a rejected build cannot be shipped, so it never joins
  the front, however fast it is);
- latency distribution: the benchmark stage keeps summary statistics per batch size
  (min/mean/p50/p90/p95/p99/max ms, see :func:`tasks.metrics.latency.summarize`), not the raw
  per-call samples, so the figures draw those percentiles and nothing else.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tasks.io import atomic_dir
from tasks.layout import Layout

# (column of the dvc plots file, key in a benchmark's per-batch stats): the points of the
# latency-by-percentile curve; 0 and 100 are the measured min and max.
PERCENTILES = ((0, "min_ms"), (50, "p50_ms"), (90, "p90_ms"), (95, "p95_ms"), (99, "p99_ms"), (100, "max_ms"))
PARETO_FIELDS = ("target", "precision", "key", "latency_p50_ms", "value", "accepted", "pareto_front", "winner")


def pareto_front(rows: list[dict]) -> list[dict]:
    """The accepted rows with a batch-1 p50 that no other accepted row beats on both latency
    (lower) and task metric (higher), sorted by latency. Rows: summary rows of one target."""
    pts = sorted(
        (r for r in rows if r["accepted"] and r.get("latency_p50_ms") is not None),
        key=lambda r: (r["latency_p50_ms"], -r["value"]),
    )
    front: list[dict] = []
    for r in pts:
        if not front or r["value"] > front[-1]["value"]:
            front.append(r)
    return front


def targets(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["target"] for r in rows))


def batch(latency: dict) -> str | None:
    """The batch size the single-number latency columns use: ``b1``, else the first measured."""
    return "b1" if "b1" in latency else next(iter(latency), None)


def pareto_rows(rows: list[dict], winners: dict[str, dict]) -> list[dict]:
    """One record per summary row, in :data:`PARETO_FIELDS` (latency None when unmeasured); a
    skipped row (the build does not apply to its device) has no point."""
    on_front = {r["key"] for t in targets(rows) for r in pareto_front([x for x in rows if x["target"] == t])}
    win = {w["key"] for w in winners.values()}
    return [
        {
            "target": r["target"],
            "precision": r["precision"],
            "key": r["key"],
            "latency_p50_ms": r.get("latency_p50_ms"),
            "value": r["value"],
            "accepted": bool(r["accepted"]),
            "pareto_front": r["key"] in on_front,
            "winner": r["key"] in win,
        }
        for r in rows
        if not r.get("skipped")
    ]


def latency_rows(precisions: list[str], latency: dict[str, dict]) -> list[dict]:
    """The latency-by-percentile curve of one target: ``[{"percentile": p, <precision>: ms}, ...]``
    at the batch size of :func:`batch`; ``latency``: ``{precision: benchmark["latency"]}``. A
    precision without that batch size gets None."""
    stats = {p: (latency.get(p) or {}).get(batch(latency.get(p) or {}) or "", {}) for p in precisions}
    return [{"percentile": pct, **{p: stats[p].get(k) for p in precisions}} for pct, k in PERCENTILES]


def _csv(path: Path, fields: list[str], records: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in records)


def write_data(rows: list[dict], winners: dict[str, dict], latency: dict[str, dict], layout: Layout) -> Path:
    """The layout's ``pareto.csv`` (every built row) and ``latency/<target>.csv`` (one column per
    precision, empty for a skipped one: ``dvc.yaml``'s plots name every precision) in its plots
    folder, all or nothing; ``latency``: ``{key: benchmark["latency"]}``.
    Returns the plots folder."""
    out = layout.plots_dir
    with atomic_dir(out) as tmp:
        _csv(tmp / layout.pareto_csv.relative_to(out), list(PARETO_FIELDS), pareto_rows(rows, winners))
        per_target = tmp / layout.latency_plots.relative_to(out)
        per_target.mkdir()
        for t in targets(rows):
            mine = [r for r in rows if r["target"] == t]
            precisions = [r["precision"] for r in mine]
            _csv(
                per_target / f"{t}.csv",
                ["percentile", *precisions],
                latency_rows(precisions, {r["precision"]: latency.get(r["key"], {}) for r in mine}),
            )
    return out


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_png(rows: list[dict], label: str, winner: dict | None) -> bytes:
    """Task metric (``label``) vs batch-1 p50 of one target's rows: accepted builds as dots,
    rejected ones as red crosses, the accepted Pareto front joined, the winner ringed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pts = [r for r in rows if r.get("latency_p50_ms") is not None]
    acc = [r for r in pts if r["accepted"]]
    rej = [r for r in pts if not r["accepted"]]
    front = pareto_front(rows)
    if front:
        ax.plot(
            [r["latency_p50_ms"] for r in front],
            [r["value"] for r in front],
            "--",
            color="tab:green",
            linewidth=1.2,
            label="Pareto front (accepted)",
            zorder=1,
        )
    if acc:
        ax.scatter(
            [r["latency_p50_ms"] for r in acc],
            [r["value"] for r in acc],
            color="tab:blue",
            s=40,
            label="accepted",
            zorder=2,
        )
    if rej:
        ax.scatter(
            [r["latency_p50_ms"] for r in rej],
            [r["value"] for r in rej],
            color="tab:red",
            marker="x",
            s=50,
            label="rejected",
            zorder=2,
        )
    if winner and winner.get("latency_p50_ms") is not None:
        ax.scatter(
            [winner["latency_p50_ms"]],
            [winner["value"]],
            s=260,
            facecolors="none",
            edgecolors="gold",
            linewidths=2,
            label="winner",
            zorder=3,
        )
    for r in pts:
        ax.annotate(
            r["precision"], (r["latency_p50_ms"], r["value"]), textcoords="offset points", xytext=(5, 5), fontsize=8
        )
    ax.set_xlabel("batch-1 p50 latency (ms)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if pts:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no batch-1 latency measured", ha="center", transform=ax.transAxes)
    ax.set_title(f"{rows[0]['target']}: accuracy vs latency", fontsize=10)
    return _png(fig)


def latency_png(target: str, latency: dict[str, dict]) -> bytes:
    """Per batch size, one panel; per precision, its measured percentiles on a log ms axis:
    box p50–p90, whisker p90–p99, bars at min and max, diamond at the mean (no raw samples are
    stored, so no histogram). ``latency``: ``{precision: benchmark["latency"]}``."""
    plt = _pyplot()
    sizes = sorted({bs for lat in latency.values() for bs in lat}, key=lambda b: int(b.lstrip("b")))
    precisions = list(latency)
    panel_w = max(4.0, 1.2 + 0.6 * len(precisions))
    fig, axes = plt.subplots(1, max(len(sizes), 1), figsize=(panel_w * max(len(sizes), 1), 4.4), squeeze=False)
    for ax, bs in zip(axes[0], sizes):
        for i, p in enumerate(precisions):
            s = latency[p].get(bs)
            if not s:
                continue
            color = f"C{i}"
            ax.bar(
                i, s["p90_ms"] - s["p50_ms"], bottom=s["p50_ms"], width=0.5, color=color, alpha=0.45, edgecolor=color
            )
            ax.vlines(i, s["p90_ms"], s["p99_ms"], color=color, linewidth=1.5)
            ax.hlines(s["p50_ms"], i - 0.25, i + 0.25, color="black", linewidth=2)
            ax.hlines([s["p99_ms"]], i - 0.12, i + 0.12, color=color, linewidth=1.5)
            ax.scatter([i, i], [s["min_ms"], s["max_ms"]], marker="_", s=120, color="dimgray")
            ax.scatter([i], [s["mean_ms"]], marker="D", s=18, color="black")
        ax.set_yscale("log")
        ax.set_xticks(range(len(precisions)), precisions, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("latency per call (ms)")
        ax.set_title(f"batch {bs.lstrip('b')}" + (" (single-stream)" if bs == "b1" else ""), fontsize=9)
        ax.grid(axis="y", alpha=0.3, which="both")
    if not sizes:
        axes[0][0].text(0.5, 0.5, "no application latency measured", ha="center", transform=axes[0][0].transAxes)
    fig.suptitle(f"{target}: latency per precision (box p50–p90, whisker to p99, bars min/max, ◆ mean)", fontsize=9)
    return _png(fig)
