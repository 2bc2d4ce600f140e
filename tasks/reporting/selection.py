"""Which build wins on each target: among the accepted builds (task metric within
``eval.max_drop``, parity and latency budget passed), the fastest at batch 1 (lowest
single-stream p50); a tie goes to the better task metric. The report marks it and MLflow
registers it (alias = the target's name). A skipped row (the build does not apply to its device)
never wins."""

from __future__ import annotations


def winners(rows: list[dict]) -> dict[str, dict]:
    """``{target: row}`` of each target's winning summary row; a target with no accepted build
    (or no measured batch-1 latency) has no entry."""
    best: dict[str, dict] = {}
    for r in rows:
        if r.get("skipped") or not r.get("accepted") or r.get("latency_p50_ms") is None:
            continue
        cur = best.get(r["target"])
        if cur is None or (r["latency_p50_ms"], -r["value"]) < (cur["latency_p50_ms"], -cur["value"]):
            best[r["target"]] = r
    return best
