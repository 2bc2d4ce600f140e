"""``artifacts/report/report.html``: one self-contained page per pipeline run (no network: every
figure is an embedded base64 PNG) with the verdict table, each target's winner, the
accuracy-vs-latency Pareto plot and latency percentiles per target, the int8-mixed sensitivity
chart, and the three-way parity table and histograms. Also writes ``artifacts/report/plots/``,
the same series as CSV for ``dvc plots show`` (see :mod:`tasks.reporting.plots`).

:func:`collect` reads the stage outputs the summary does not carry, :func:`render` turns them
into HTML (no I/O), :func:`write` does both and writes the files all or nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import html
from pathlib import Path

from tasks.io import read_json, write_text
from tasks.layout import Layout
from tasks.records import BenchmarkRecord, EvaluateRecord
from tasks.reporting import plots as report_plots
from tasks.reporting.format import (
    FALLBACKS_SHOWN,
    end_to_end_cell,
    end_to_end_lines,
    fallback_note,
    not_applicable,
    precision_note,
    rejected,
    title,
    worst_images,
)
from tasks.reporting.format import fmt as _fmt
from tasks.reporting.selection import device_of, target_winner, why, winners

MIXED = "int8-mixed"
LEG_NAMES = {
    "torch_onnx": "PyTorch → ONNX",
    "onnx_artifact": "ONNX → artifact (judged)",
    "torch_artifact": "PyTorch → artifact",
}
CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1300px}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f2f2f2}td.txt,th.txt,td.verdict,th.verdict{text-align:left}
tr.accepted td.verdict{color:#11632b;font-weight:600}tr.rejected{background:#fdeaea}
tr.rejected td.verdict{color:#b00020;font-weight:600}tr.winner{background:#fff7d6}tr.skipped{color:#777}
.badge{background:#e6b800;color:#000;border-radius:4px;padding:1px 6px;margin-left:6px;font-size:90%}
figure{display:inline-block;margin:8px 16px 16px 0;vertical-align:top}
figcaption{font-size:85%;color:#555;max-width:700px}
img{max-width:100%}.muted{color:#666}
.warn{border:1px solid #e6b800;background:#fffbe6;border-radius:4px;padding:6px 12px;margin:8px 0}
span.fallback{color:#8a6d00;font-size:90%;margin-left:4px}
"""


@dataclasses.dataclass
class Extras:
    """What the page shows beyond the summary rows, by build key (``<target>-<precision>``)."""

    model: str = ""
    latency: dict[str, dict] = dataclasses.field(default_factory=dict)  # benchmark JSON's "latency"
    parity: dict[str, dict] = dataclasses.field(default_factory=dict)  # evaluate JSON's "parity"
    parity_png: dict[str, bytes] = dataclasses.field(default_factory=dict)  # report/parity/<key>.png
    sensitivity: dict | None = None  # artifacts/quantize/int8-mixed/sensitivity.json
    sensitivity_png: bytes | None = None


def model_name(cfg) -> str:
    """``<arch> (<checkpoint>)``, or the checkpoint alone for formats without an arch."""
    m = cfg.model
    return f"{m.arch} ({m.checkpoint})" if m.format == "state_dict" and m.arch else str(m.checkpoint)


def collect(summary: dict, layout: Layout, model: str = "") -> Extras:
    """Read the benchmark and evaluate records of every row, the parity PNGs (drawn by
    :func:`tasks.reporting.figures.plot_parity`) and, with an int8-mixed row, its sensitivity files."""
    ex = Extras(model=model)
    for r in summary["rows"]:
        k = r["key"]
        if r.get("skipped"):  # not applicable to its device: no benchmark or evaluation to read
            continue
        ex.latency[k] = BenchmarkRecord.read(layout.benchmark_metrics(r["target"], r["precision"])).latency
        par = EvaluateRecord.read(layout.evaluate_metrics(r["target"], r["precision"])).parity
        if par:
            ex.parity[k] = par
        png = layout.parity_png(k)
        if png.is_file():
            ex.parity_png[k] = png.read_bytes()
    if any(r["precision"] == MIXED for r in summary["rows"]):
        table, chart = layout.sensitivity(MIXED)
        if table.is_file():
            ex.sensitivity = read_json(table)
        if chart.is_file():
            ex.sensitivity_png = chart.read_bytes()
    return ex


def _e(v) -> str:
    return html.escape(str(v))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _figure(png: bytes, alt: str, caption: str) -> str:
    return f"<figure>{_img(png, alt)}<figcaption>{_e(caption)}</figcaption></figure>"


def _table(head: list[str], rows: list[tuple[str, list[str]]], text_cols: int = 0, last: str = "") -> str:
    """``rows``: (attributes of the <tr>, escaped cell HTML); the first ``text_cols`` columns align
    left; ``last``: the CSS class of the last column's cells."""

    def cls(i: int, n: int) -> str:
        c = " ".join(x for x, on in (("txt", i < text_cols), (last, last and i == n - 1)) if on)
        return f' class="{c}"' if c else ""

    th = "".join(f"<th{cls(i, len(head))}>{_e(h)}</th>" for i, h in enumerate(head))
    body = "".join(
        f"<tr {attrs}>" + "".join(f"<td{cls(i, len(cells))}>{c}</td>" for i, c in enumerate(cells)) + "</tr>\n"
        for attrs, cells in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>\n{body}</tbody></table>"


def verdicts(summary: dict) -> str:
    """The verdict table (one <tr data-key> per row) and the reasons of the rejected rows."""
    label = summary["reference"]["label"]
    by = summary.get("winner_by", "p50")
    by_device = winners(summary["rows"], by)
    win = {w["key"] for w in by_device.values()}
    head = [
        "target",
        "precision",
        "runtime",
        label,
        "drop pts",
        "max|Δ| vs ONNX",
        "p50 ms (b1)",
        "p99 ms (b1)",
        "end to end ms (b1)",
        "throughput /s",
        "verdict",
    ]
    rows = []
    for r in summary["rows"]:
        verdict = "✔ accepted" if r["accepted"] else "– n/a" if r.get("skipped") else "✘ rejected"
        badge = '<span class="badge">★ winner</span>' if r["key"] in win else ""
        tp = _fmt(r["throughput"]) + (f" ({_e(r['throughput_batch'])})" if r.get("throughput_batch") else "")
        state = "skipped" if r.get("skipped") else r["verdict"]
        cls = " ".join(["row", state, *(["winner"] if r["key"] in win else [])])
        note = precision_note(r)
        prec = _e(r["precision"]) + (f'<span class="fallback">⚠ {_e(note)}</span>' if note else "")
        cells = [_e(r["target"]), prec, _e(r["runtime"])] + [
            _e(_fmt(r.get(k))) for k in ("value", "drop", "parity_max_abs", "latency_p50_ms", "latency_p99_ms")
        ]
        cells.append(_e(end_to_end_cell(r)))
        rows.append((f'class="{cls}" data-key="{_e(r["key"])}"', [*cells, tp, f"<span>{verdict}</span>{badge}"]))
    out = _table(head, rows, text_cols=3, last="verdict")
    refused = rejected(summary["rows"])
    if refused:
        out += (
            "<h3>Why rejected</h3><ul class=reasons>"
            + "".join(f'<li data-key="{_e(r["key"])}"><b>{_e(r["key"])}</b>: {_e(r["reason"])}</li>' for r in refused)
            + "</ul>"
        )
    if not_applicable(summary):
        out += (
            "<h3>Not applicable on the device</h3><ul class=not-applicable>"
            + "".join(f"<li>{_e(line)}</li>" for line in not_applicable(summary))
            + "</ul>"
        )
    out += "".join(fallbacks(r) for r in summary["rows"])
    e2e = end_to_end_lines(summary)
    if e2e:  # compute-only vs what an application spends per image
        out += (
            "<h3>End to end, batch 1 (image to decoded result; compute-only p50 beside it)</h3><ul class=end-to-end>"
            + "".join(f"<li>{_e(line)}</li>" for line in e2e)
            + "</ul>"
        )
    images = worst_images(summary)
    if images:  # binary segmentation: an average drop can hide a few images that collapsed
        out += (
            "<h3>Images that dropped most (index in the eval split: FP32 -&gt; this build)</h3><ul class=worst-images>"
            + "".join(f"<li>{_e(line)}</li>" for line in images)
            + "</ul>"
        )
    out += (
        "<p>"
        + "<br>".join(
            f"Winner on <b>{_e(d)}</b>: "
            + (
                f"<b>{_e(by_device[d]['key'])}</b> ({_e(why(summary['rows'], by_device[d], by))})"
                if d in by_device
                else "none (no accepted build)"
            )
            for d in dict.fromkeys(device_of(r) for r in summary["rows"])
        )
        + "</p>"
    )
    return out


def fallbacks(r: dict) -> str:
    """A ⚠ box for a build whose layers silently left INT8 (an implicit-INT8 TensorRT build: the
    calibration cache had no scale for their tensors): the first few named, the rest folded away."""
    note = fallback_note(r)
    if not note:
        return ""
    names = r.get("int8_fallback_layers") or r.get("int8_fallback_tensors") or []
    items = [f"<li>{_e(n)}</li>" for n in names]
    rest = items[FALLBACKS_SHOWN:]
    more = f"<details><summary>{len(rest)} more</summary><ul>{''.join(rest)}</ul></details>" if rest else ""
    return (
        f'<div class="warn fallbacks" data-key="{_e(r["key"])}"><b>⚠ {_e(r["key"])}: {_e(note)}</b>'
        "<p>TensorRT's build log says the calibration cache has no INT8 scale for their tensors (&ldquo;Missing "
        "scale and zero-point&rdquo;), so these layers run FP16/FP32 while the build is labelled "
        f"{_e(r['precision'])}. Build explicit Q/DQ instead: <code>target.{_e(r['target'])}.tensorrt.int8: "
        f"qdq</code>.</p><ul>{''.join(items[:FALLBACKS_SHOWN])}</ul>{more}</div>"
    )


def per_target(summary: dict, ex: Extras) -> str:
    label = summary["reference"]["label"]
    win = winners(summary["rows"], summary.get("winner_by", "p50"))
    out = []
    for t in report_plots.targets(summary["rows"]):
        rows = [r for r in summary["rows"] if r["target"] == t and not r.get("skipped")]
        if not rows:  # every precision skipped on this target: nothing measured to draw
            continue
        lat = {r["precision"]: ex.latency.get(r["key"], {}) for r in rows}
        out.append(
            f'<section class="target" id="target-{_e(t)}"><h2>Target {_e(t)}</h2>'
            + _figure(
                report_plots.pareto_png(rows, label, target_winner(win, t)),
                f"accuracy vs latency: {t}",
                f"{label} against batch-1 p50 latency; labels are precisions; dashed: the Pareto front of the "
                "accepted builds; red crosses: rejected builds; gold ring: the winner.",
            )
            + _figure(
                report_plots.latency_png(t, lat),
                f"latency distribution: {t}",
                "The benchmark keeps percentiles, not raw samples, so this draws the measured statistics per precision "
                "and batch size: box p50–p90, whisker to p99, grey bars at min and max, diamond at the mean "
                "(log scale).",
            )
            + "</section>"
        )
    return "\n".join(out)


def sensitivity(summary: dict, ex: Extras) -> str:
    if ex.sensitivity is None and ex.sensitivity_png is None:
        return ""
    kept = next((set(r.get("kept_fp32_layers") or []) for r in summary["rows"] if r["precision"] == MIXED), set())
    out = f"<section id=sensitivity><h2>{MIXED}: layer sensitivity</h2>"
    if ex.sensitivity_png:
        out += _figure(ex.sensitivity_png, "int8-mixed sensitivity", "Per-layer sensitivity (kept FP32 layers in red).")
    if ex.sensitivity:
        s = ex.sensitivity
        out += (
            f"<p class=muted>method {_e(s.get('method'))}, {_e(s.get('samples'))} calibration images, "
            f"baseline {_e(_fmt(s.get('baseline')))}</p>"
        )
        rows = [
            (
                "",
                [
                    _e(x["rank"]),
                    _e(x["node"]),
                    _e(x["op_type"]),
                    _e(_fmt(x.get("drop"))),
                    _e(_fmt(x.get("sqnr_db"))),
                    "FP32" if x["node"] in kept else "INT8",
                ],
            )
            for x in s.get("layers", [])
        ]
        out += _table(["rank", "layer", "op", "drop pts (layer alone INT8)", "SQNR dB", "built as"], rows, 3)
    return out + "</section>"


def parity(summary: dict, ex: Extras) -> str:
    rows, figs = [], []
    for r in summary["rows"]:
        par = ex.parity.get(r["key"])
        if not par:
            continue
        for name in next(iter(par["legs"].values())):
            tol = par["tolerance"].get(name, {})
            ok = name not in par.get("failed", [])
            rows.append(
                (
                    f'class="{"accepted" if ok else "rejected"}" data-key="{_e(r["key"])}"',
                    [
                        _e(r["key"]),
                        _e(name),
                        *(_e(_fmt(par["legs"][leg][name]["max_abs"])) for leg in LEG_NAMES),
                        _e(f"atol {tol.get('atol', '—')}, rtol {tol.get('rtol', '—')}"),
                        "within" if ok else "outside",
                    ],
                )
            )
        if r["key"] in ex.parity_png:
            figs.append(_figure(ex.parity_png[r["key"]], f"three-way parity: {r['key']}", r["key"]))
    if not rows:
        return ""
    head = ["build", "output", *(f"max|Δ| {v}" for v in LEG_NAMES.values()), "tolerance", "artifact"]
    return (
        "<section id=parity><h2>Three-way parity</h2>"
        + _table(head, rows, 2, last="verdict")
        + "<p class=muted>|difference| histograms per leg (log x):</p>"
        + "".join(figs)
        + "</section>"
    )


def render(summary: dict, extras: Extras | None = None) -> str:
    """The whole page as one string (no I/O, no external resource)."""
    ex = extras or Extras()
    e = summary.get("export", {})
    head = f"EdgeForge report: {ex.model}" if ex.model else "EdgeForge report"
    export = (
        (
            f"<p class=muted>export: {_e(e.get('exporter'))} exporter, opset {_e(e.get('opset'))}, "
            f"{_e(e.get('nodes_after'))} nodes</p>"
        )
        if e
        else ""
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(head)}</title>'
        f"<style>{CSS}</style></head><body>\n<h1>{_e(head)}</h1>\n<p>{_e(title(summary))}</p>{export}\n"
        f"<section id=verdicts><h2>Verdicts</h2>{verdicts(summary)}</section>\n{per_target(summary, ex)}\n"
        f"{sensitivity(summary, ex)}\n{parity(summary, ex)}\n</body></html>\n"
    )


def write(summary: dict, layout: Layout, model: str = "") -> Path:
    """The layout's ``report.html`` and plots folder from its stage records; returns the HTML's
    path. On failure neither is left half-written."""
    ex = collect(summary, layout, model)
    page = render(summary, ex)
    report_plots.write_data(
        summary["rows"], winners(summary["rows"], summary.get("winner_by", "p50")), ex.latency, layout
    )
    return write_text(layout.report_html, page)
