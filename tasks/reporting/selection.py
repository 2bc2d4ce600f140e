"""Which build wins on each device: among the accepted builds (task metric within
``eval.max_drop``, parity and latency budget passed), the best by ``report.winner_by``: the
lowest single-stream p50 (default), the lowest p99, the highest offline throughput, or the
smallest artifact; a tie goes to the better task metric, then the lower p50.

Every runtime installed on a device competes: targets on the same device (``local`` and
``local_openvino`` on this machine, two runtimes over SSH on one Jetson) are one contest, so the
winner is the device's fastest build whatever its runtime. A device is the row's ``host``
(``local``, or ``host:port``) with its fingerprint. The report marks the winner, says why it won
(:func:`why`), and MLflow registers it (alias = the device's name). A skipped row (the build
does not apply to its device) never wins."""

from __future__ import annotations

#: report.winner_by -> (row key, what it means, lower is better)
CRITERIA = {
    "p50": ("latency_p50_ms", "single-stream p50 latency", True),
    "p99": ("latency_p99_ms", "single-stream p99 latency", True),
    "throughput": ("throughput", "offline throughput", False),
    "size": ("size_mb", "artifact size", True),
}
UNITS = {"latency_p50_ms": "ms", "latency_p99_ms": "ms", "throughput": "/s", "size_mb": "MB"}


def device_of(row: dict) -> str:
    """The device a summary row ran on: its host (``local`` for this machine)."""
    return str(row.get("host") or row["target"])


def _rank(row: dict, by: str) -> tuple:
    k, _, lower = CRITERIA[by]
    v = row[k]
    p50 = row.get("latency_p50_ms")
    return (v if lower else -v, -(row.get("value") or 0.0), p50 if p50 is not None else float("inf"))


def _candidates(rows: list[dict], by: str) -> list[dict]:
    if by not in CRITERIA:
        raise ValueError(f"report.winner_by must be one of {', '.join(CRITERIA)}, not {by!r}")
    k = CRITERIA[by][0]
    return [r for r in rows if r.get("accepted") and not r.get("skipped") and r.get(k) is not None]


def winners(rows: list[dict], by: str = "p50") -> dict[str, dict]:
    """``{device: row}`` of each device's winning summary row; a device with no accepted build
    (or none with the criterion measured) has no entry."""
    best: dict[str, dict] = {}
    for r in _candidates(rows, by):
        cur = best.get(device_of(r))
        if cur is None or _rank(r, by) < _rank(cur, by):
            best[device_of(r)] = r
    return best


def target_winner(best: dict[str, dict], target: str) -> dict | None:
    """The winner of ``target``'s device when that winner is one of ``target``'s builds."""
    return next((w for w in best.values() if w["target"] == target), None)


def _fmt(v: float, unit: str) -> str:
    return f"{v:.3g} {unit}" if abs(v) < 100 else f"{v:.0f} {unit}"


def why(rows: list[dict], winner: dict, by: str = "p50") -> str:
    """One sentence on why ``winner`` won its device: its figure, the runner-up's, the fastest
    build of every other runtime there, and how many builds were accepted."""
    k, what, lower = CRITERIA[by]
    unit = UNITS[k]
    dev = device_of(winner)
    mine = [r for r in rows if device_of(r) == dev and not r.get("skipped")]
    rivals = sorted((r for r in _candidates(mine, by) if r["key"] != winner["key"]), key=lambda r: _rank(r, by))

    def ratio(r: dict) -> str:
        a, b = (r[k], winner[k]) if lower else (winner[k], r[k])
        return f"{a / b:.2f}x" if b else "n/a"

    parts = [f"{winner['key']} has the best {what} on {dev}: {_fmt(winner[k], unit)}"]
    if rivals:
        parts.append(f"runner-up {rivals[0]['key']} {_fmt(rivals[0][k], unit)} ({ratio(rivals[0])})")
    other = {}
    for r in rivals:
        other.setdefault(r["runtime"], r)
    other.pop(winner["runtime"], None)
    for rt, r in sorted(other.items()):
        if r is not (rivals[0] if rivals else None):
            parts.append(f"best {rt}: {r['key']} {_fmt(r[k], unit)} ({ratio(r)})")
    same_fp32 = next(
        (r for r in mine if r["runtime"] == winner["runtime"] and r["precision"] == "fp32" and r is not winner), None
    )
    if same_fp32 is not None and same_fp32.get(k):
        parts.append(f"{ratio(same_fp32)} better than {same_fp32['key']} (same runtime, fp32)")
    accepted = sum(1 for r in mine if r.get("accepted"))
    parts.append(f"{accepted} of {len(mine)} builds accepted")
    return "; ".join(parts)
