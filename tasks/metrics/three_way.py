"""Three-way parity: PyTorch FP32 -> the precision's ONNX (run by ONNX Runtime here) -> the built
artifact on its target, for every output.

Three legs, each with error statistics, the worst elements and a |difference| histogram:

- ``torch_onnx``: what the precision itself costs (zero-ish for FP32; FP16 rounding; INT8
  quantization error);
- ``onnx_artifact``: what the target's runtime and compiler change (fusions, kernels, its own
  FP16/INT8 arithmetic). This is the leg the tolerance judges: the artifact must compute what
  the ONNX that was validated computes;
- ``torch_artifact``: the end-to-end error a user sees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from tasks.config.schema import ArtifactTolerance
from tasks.io import save_figure
from tasks.metrics.numeric import compare, histogram, worst_elements

LEGS = {"torch_onnx": ("torch", "onnx"), "onnx_artifact": ("onnx", "artifact"), "torch_artifact": ("torch", "artifact")}
JUDGED = "onnx_artifact"


def three_way(
    torch_out: Mapping[str, np.ndarray],
    onnx_out: Mapping[str, np.ndarray],
    artifact_out: Mapping[str, np.ndarray],
    tolerance: Callable[[str], ArtifactTolerance],
    bins: int = 12,
) -> dict:
    """``{"legs": {leg: {output: stats}}, "tolerance": {output: {...}}, "failed": [outputs], "worst": text}``.

    Stats per output and leg: :func:`compare` with the output's ``tolerance(name)`` (judged on
    ``onnx_artifact``: an output fails when more than ``max_outside`` of its elements are outside
    atol/rtol; the other legs are reported with the same tolerance for scale), plus
    ``outside_fraction``, ``worst_elements`` (5) and ``histogram``."""
    sides = {"torch": torch_out, "onnx": onnx_out, "artifact": artifact_out}
    legs: dict = {}
    tols = {name: tolerance(name) for name in artifact_out}
    failed: list[str] = []
    for leg, (a, b) in LEGS.items():
        legs[leg] = {}
        for name in artifact_out:
            ref, got, tol = np.asarray(sides[a][name]), np.asarray(sides[b][name]), tols[name]
            s = compare(ref, got, tol.atol, tol.rtol)
            s["outside_fraction"] = s["violations"] / max(ref.size, 1)
            s["worst_elements"] = worst_elements(ref, got)
            s["histogram"] = histogram(ref, got, bins)
            legs[leg][name] = s
            if leg == JUDGED and s["outside_fraction"] > tol.max_outside:
                failed.append(name)
    text = "; ".join(
        f"{name}: {s['violations']} element(s) ({s['outside_fraction']:.2%} > max_outside {tols[name].max_outside:g}) "
        f"differ from the ONNX by more than atol {tols[name].atol:g} + rtol {tols[name].rtol:g}*|onnx|, worst "
        f"{name}{s['worst_index']} onnx={s['worst_ref']:.6g} artifact={s['worst_got']:.6g}"
        for name in failed
        for s in [legs[JUDGED][name]]
    )
    return {
        "legs": legs,
        "tolerance": {n: dataclasses.asdict(t) for n, t in tols.items()},
        "failed": failed,
        "worst": text,
    }


def plot(parity: dict, path, title: str):
    """PNG of the |difference| histograms: one row per output, one column per leg (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    DECADE = FuncFormatter(lambda v, _: f"{v:.0e}")

    outputs = list(next(iter(parity["legs"].values())))
    fig, axes = plt.subplots(len(outputs), len(LEGS), figsize=(4 * len(LEGS), 2.4 * len(outputs) + 0.6), squeeze=False)
    for i, name in enumerate(outputs):
        tol = parity["tolerance"][name]
        for j, leg in enumerate(LEGS):
            h = parity["legs"][leg][name]["histogram"]
            edges, counts = np.asarray(h["edges"]), np.asarray(h["counts"])
            lows = np.maximum(edges[:-1], edges[1] / 10)  # the first bin (exact 0 upwards) drawn on a log axis
            ax = axes[i][j]
            ax.bar(lows, counts, width=edges[1:] - lows, align="edge", color="tab:red" if leg == JUDGED else "tab:blue")
            ax.set_xscale("log")
            # |differences| span many decades: matplotlib's default log ticks (every minor tick of
            # every decade) cost ~1 s of layout per figure; a few labelled decades read as well
            ax.xaxis.set_major_locator(LogLocator(numticks=6))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(DECADE)  # plain text: mathtext's 10^n labels parse slowly
            if leg == JUDGED:
                ax.axvline(tol["atol"], color="black", linestyle="--", linewidth=0.8, label="atol")
                ax.legend(fontsize=7)
            ax.set_title(f"{name}: {LEGS[leg][0]} → {LEGS[leg][1]}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("|difference|", fontsize=7)
    return save_figure(fig, path, title)
