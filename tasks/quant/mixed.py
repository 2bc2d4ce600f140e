"""Automatic mixed precision: keep the most sensitive layers in FP32, fewest first, until the INT8
model's task-metric drop is within budget.

:func:`search` is the policy only; the caller's ``try_plan(kept) -> drop`` builds and scores a
plan (the quantize stage writes both Q/DQ layouts and takes the worse drop). Plans are tried in
order k = 0, 1, 2, ... (keep the k most sensitive layers): the first plan within ``max_drop`` is
chosen, so no plan with fewer kept layers from this ranking meets the budget. When none of up
to ``max_kept`` layers does, the result is rejected with the best drop measured, never shipped
as if it passed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tasks.quant.common import QuantError


def max_kept_for(n_nodes: int, fraction: float) -> int:
    """How many of ``n_nodes`` layers a plan may keep in FP32: ``floor(fraction * n)``, and at
    least one layer always stays INT8 (keeping them all is just FP32)."""
    if not 0.0 <= fraction <= 1.0:
        raise QuantError(f"max_kept_fraction must be in [0, 1]; got {fraction}")
    return max(0, min(n_nodes - 1, int(fraction * n_nodes)))


def search(
    ranked: Sequence[str],
    try_plan: Callable[[list[str]], float],
    max_drop: float,
    max_kept: int,
    progress: Callable[[list[str], float], None] | None = None,
) -> dict:
    """Returns ``accepted``, ``kept`` (node names kept FP32, most sensitive first), ``drop`` (of
    the chosen plan, or of the best plan tried when rejected), ``trials`` (``kept`` count and
    ``drop`` of every plan tried, in order) and ``reason`` (empty when accepted)."""
    if max_kept < 0 or max_kept > len(ranked):
        raise QuantError(f"max_kept must be in [0, {len(ranked)}]; got {max_kept}")
    trials = []
    for k in range(max_kept + 1):
        kept = list(ranked[:k])
        drop = float(try_plan(kept))
        trials.append({"kept": k, "drop": drop})
        if progress:
            progress(kept, drop)
        if drop <= max_drop:
            return {"accepted": True, "kept": kept, "drop": drop, "trials": trials, "reason": ""}
    best = min(range(len(trials)), key=lambda i: (trials[i]["drop"], i))
    return {
        "accepted": False,
        "kept": list(ranked[:best]),
        "drop": trials[best]["drop"],
        "trials": trials,
        "reason": f"no plan keeping up to {max_kept} of {len(ranked)} layers in FP32 is within "
        f"{max_drop:g} points (best: {trials[best]['drop']:.2f} points keeping {best})",
    }
