"""How a summary reads: the table's columns, number formatting, the Markdown and terminal tables.
Used by the report stage, the HTML page and the CLI's ``edgeforge summary``."""

from __future__ import annotations

import sys

COLUMNS = [  # (summary key, header); "value" is the task metric, its header comes from model.task
    ("target", "target"),
    ("precision", "precision"),
    ("runtime", "runtime"),
    ("value", "metric"),
    ("drop", "drop pts"),
    ("worst_class_drop", "worst class drop"),
    ("worst_image_drop", "worst image drop"),
    ("parity_max_abs", "max|Δ| vs ONNX"),
    ("latency_p50_ms", "p50 ms (b1)"),
    ("latency_p99_ms", "p99 ms (b1)"),
    ("end_to_end_ms", "e2e ms (b1)"),
    ("first_inference_ms", "1st call ms"),
    ("throughput", "offline/s"),
    ("efficiency", "% peak (measured)"),
    ("efficiency_nominal", "% peak (nominal)"),
    ("speedup_vs_torch", "× torch (b1)"),
    ("size_mb", "size MB"),
    ("kept_fp32", "FP32 layers"),
    ("verdict", "verdict"),
]


FALLBACKS_SHOWN = 6  # fallback layers named before the rest is folded away ("+N more", <details>)
# shown only when a row has the figure (binary segmentation; a device whose nominal clock is known)
OPTIONAL = {"worst_image_drop", "efficiency_nominal"}
NOT_IN_TERMINAL = {"end_to_end_ms"}  # print_table shows these under the table instead


def columns(summary: dict) -> list[tuple[str, str]]:
    label = summary.get("reference", {}).get("label", "metric")
    parts = summary.get("reference", {}).get("parts", "class")  # keypoints: the worst keypoint's drop
    shown = [
        (k, h) for k, h in COLUMNS if k not in OPTIONAL or any(r.get(k) is not None for r in summary.get("rows", []))
    ]
    return [(k, label if k == "value" else h.replace("class", parts)) for k, h in shown]


def worst_images(summary: dict) -> list[str]:
    """One line per row with per-image figures: the images whose metric dropped most from FP32
    (index in the eval split, reference -> value)."""
    return [
        f"{r['key']}: worst images: "
        + ", ".join(
            f"#{w['image']} {w['reference']:.1f} -> {w['value']:.1f} (-{w['drop']:.1f})" for w in r["worst_images"]
        )
        for r in summary["rows"]
        if r.get("worst_images")
    ]


E2E_PARTS = ("preprocess", "input_copy", "compute", "output_copy", "decode")  # tasks.metrics.end_to_end.PARTS


def end_to_end_cell(r: dict) -> str:
    """The median whole call; where none ran (a device), ``≥`` the sum of the parts measured."""
    if r.get("end_to_end_ms") is None and r.get("end_to_end_parts_ms") is not None:
        return f"≥{fmt(r['end_to_end_parts_ms'])}"
    return fmt(r.get("end_to_end_ms"))


def end_to_end_lines(summary: dict) -> list[str]:
    """One line per row with an end-to-end split: each part's median (ms; n/a: not measured there)
    adding up to their sum, the median whole call, and the compute-only p50 beside it."""
    out = []
    for r in summary["rows"]:
        e = r.get("end_to_end")
        if not e:
            continue
        parts = " + ".join(
            f"{p.replace('_', ' ')} {fmt(e.get(f'{p}_ms')) if e.get(f'{p}_ms') is not None else 'n/a'}"
            for p in E2E_PARTS
        )
        whole = f"whole call {fmt(e['total_ms'])}" if e.get("total_ms") is not None else "no whole call measured"
        out.append(
            f"{r['key']}: end to end (b1) ms: {parts} = {fmt(e.get('sum_of_parts_ms'))}; {whole}; "
            f"compute-only p50 {fmt(r.get('latency_p50_ms'))}"
        )
    return out


def calibration_lines(summary: dict) -> list[str]:
    """The calibration coverage line and its warnings (classes calibration lacks), if INT8 was built."""
    cal = summary.get("calibration")
    return [f"calibration coverage: {cal['line']}", *(f"warning: {w}" for w in cal["warnings"])] if cal else []


def winner_lines(summary: dict) -> list[str]:
    """One line per device: its winning build and why it won (``summary["winners"]``)."""
    return [f"winner on {d}: {w['why']}" for d, w in (summary.get("winners") or {}).items()]


def title(summary: dict) -> str:
    ref = summary["reference"]
    return f"PyTorch FP32 reference {ref['label']}: {ref['value']:.2f}"


def fmt(v) -> str:
    """A cell: ``—`` for nothing, small floats in 3 significant digits, others with 2 decimals."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 0.01 and v != 0 else f"{v:.2f}"
    return str(v)


def fallback_note(r: dict) -> str:
    """``partial: N layers not INT8`` for an implicit-INT8 TensorRT build whose log named layers (or,
    when none is an ONNX node's, tensors) without an INT8 scale; ``""`` otherwise."""
    n = r.get("int8_fallbacks")
    if not n:
        return ""
    what = "layer" if r.get("int8_fallback_layers") else "tensor"
    return f"partial: {n} {what}{'s' if n > 1 else ''} not INT8"


def fallback_hint(r: dict) -> str:
    """One line under the table: which layers left INT8, and the fix."""
    names = r.get("int8_fallback_layers") or r.get("int8_fallback_tensors") or []
    shown = ", ".join(names[:FALLBACKS_SHOWN]) + (
        f" (+{len(names) - FALLBACKS_SHOWN} more)" if len(names) > FALLBACKS_SHOWN else ""
    )
    return (
        f"{fallback_note(r)}: TensorRT's calibration cache has no INT8 scale for their tensors, so they run "
        f"FP16/FP32 ({shown}); build explicit Q/DQ instead (target.{r['target']}.tensorrt.int8: qdq)"
    )


def precision_note(r: dict) -> str:
    """What the precision cell adds: ``emulated`` (built without native compute), the fallback note."""
    return ", ".join(x for x in ("emulated" if r.get("emulated") else "", fallback_note(r)) if x)


def cell(r: dict, k: str) -> str:
    """A row's cell for summary key ``k``: :func:`fmt`, the precision with its :func:`precision_note`."""
    if k == "end_to_end_ms":
        return end_to_end_cell(r)
    note = precision_note(r) if k == "precision" else ""
    if k.startswith("efficiency") and r.get(k) is None and r.get("efficiency_error"):
        return "error"  # above 100%: the peak or the FLOP count is wrong (roofline_lines says which)
    return f"{fmt(r.get(k))} ({note})" if note else fmt(r.get(k))


def rejected(rows: list[dict]) -> list[dict]:
    """The rows judged and rejected (a skipped row is not applicable, not rejected)."""
    return [r for r in rows if not r["accepted"] and not r.get("skipped")]


def not_applicable(summary: dict) -> list[str]:
    """One line per skipped row: ``<key>: n/a: <why>``."""
    return [f"{r['key']}: n/a: {r['skipped']}" for r in summary["rows"] if r.get("skipped")]


def roofline_lines(summary: dict) -> list[str]:
    """One line per row whose achieved GFLOP/s exceeded a peak (a measurement error, not an efficiency)."""
    return [
        f"{r['key']}: roofline error: {r['efficiency_error']}" for r in summary["rows"] if r.get("efficiency_error")
    ]


def markdown(summary: dict) -> str:
    cols = columns(summary)
    head = "| " + " | ".join(h for _, h in cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(cell(r, k) for k, _ in cols) + " |\n" for r in summary["rows"])
    reasons = "".join(f"- {r['key']}: rejected: {r['reason']}\n" for r in rejected(summary["rows"]))
    na = "".join(f"- {line}\n" for line in not_applicable(summary))
    notes = "".join(f"- {r['key']}: {fallback_hint(r)}\n" for r in summary["rows"] if fallback_note(r))
    images = "".join(f"- {line}\n" for line in worst_images(summary))
    e2e = "".join(f"- {line}\n" for line in end_to_end_lines(summary))
    calib = "".join(f"- {line}\n" for line in calibration_lines(summary) + roofline_lines(summary))
    win = "".join(f"- {line}\n" for line in winner_lines(summary))
    parts = (win, reasons, na, notes, images, e2e, calib)
    return title(summary) + "\n\n" + head + body + "".join("\n" + x for x in parts if x)


def print_table(summary: dict, file=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    file = file or sys.stdout  # looked up at call time: redirected/captured stdout works in-process

    t = Table(title=f"EdgeForge summary ({title(summary)})")
    # a terminal is narrow: the end-to-end figures are the lines under the table
    cols = [c for c in columns(summary) if c[0] not in NOT_IN_TERMINAL]
    for _, h in cols:
        t.add_column(h, justify="left" if h in ("target", "precision", "runtime", "verdict") else "right")
    for r in summary["rows"]:
        cells = [cell(r, k) for k, _ in cols]
        cells[-1] = "[green]accepted[/]" if r["accepted"] else "n/a" if r.get("skipped") else "[red]rejected[/]"
        t.add_row(*cells)
    console = Console(file=file, width=200)
    console.print(t)
    for line in winner_lines(summary):
        console.print(f"[bold]★[/] {escape(line)}", highlight=False, soft_wrap=True)
    for r in summary["rows"]:  # the reasons under the table: in a cell they would squeeze every column
        if r.get("skipped"):
            console.print(f"n/a {escape(r['key'])}: {escape(r['skipped'])}", highlight=False, soft_wrap=True)
        elif not r["accepted"]:
            console.print(f"[red]rejected[/] {r['key']}: {r['reason']}", highlight=False, soft_wrap=True)
        if fallback_note(r):
            console.print(
                f"[yellow]⚠[/] {escape(r['key'])}: {escape(fallback_hint(r))}", highlight=False, soft_wrap=True
            )
    for line in worst_images(summary) + end_to_end_lines(summary):
        console.print(escape(line), highlight=False, soft_wrap=True)
    for line in calibration_lines(summary) + roofline_lines(summary):
        console.print(escape(line), highlight=False, soft_wrap=True)
    if summary.get("mlflow"):
        m = summary["mlflow"]
        ui = f".venv/bin/mlflow ui --backend-store-uri {m['tracking_uri']}"
        if m.get("ui_url"):  # the link opens the runs table, not MLflow's GenAI overview (tasks.tracking.ui)
            ui = (
                f"open {m['ui_url']}"
                if m["tracking_uri"].startswith(("http://", "https://"))
                else f"{ui}, then open {m['ui_url']}"
            )
        print(
            f"\nMLflow: experiment {m['experiment']!r}, parent run {m['parent_run_id']} in {m['tracking_uri']}\n"
            f"Compare precisions in the UI:  {ui}\n"
            f"Metrics in the terminal:       .venv/bin/dvc metrics show",
            file=file,
        )
