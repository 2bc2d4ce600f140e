"""The regression gate: a release candidate against the release active on a device of its class.

A checkpoint that is fine against its own FP32 can still be worse than last week's release, so a
candidate is compared with what the device runs now, on the figures both releases were accepted
with: the task metric (``metrics.value``, points) and the single-stream p99 (``metrics.latency_p99_ms``).
Those figures compare only when both were measured on the same evaluation split
(``metrics.eval_split_sha256``) and the same device (``validated_on.fingerprint_sha256``); otherwise
the gate refuses to guess, and says so (``--skip-gate`` deploys anyway, recorded as skipped).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tasks.config.schema import Release


class GateRefused(RuntimeError):
    """The candidate is worse than the active release (or cannot be compared with it)."""

    def __init__(self, message: str, result: GateResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class GateResult:
    status: str  # "passed" | "refused" | "no active release" | "same release" | "skipped" | "incomparable"
    active_version: str | None = None
    metric: str | None = None
    candidate_value: float | None = None
    active_value: float | None = None
    candidate_p99_ms: float | None = None
    active_p99_ms: float | None = None
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _why_incomparable(cand: dict, active: dict) -> str | None:
    cm, am = cand.get("metrics") or {}, active.get("metrics") or {}
    if cm.get("metric") != am.get("metric"):
        return f"the active release is judged by {am.get('metric')!r}, the candidate by {cm.get('metric')!r}"
    if not cm.get("eval_split_sha256") or cm.get("eval_split_sha256") != am.get("eval_split_sha256"):
        return "they were evaluated on different evaluation splits (eval_split_sha256 differs)"
    cf = (cand.get("validated_on") or {}).get("fingerprint_sha256")
    af = (active.get("validated_on") or {}).get("fingerprint_sha256")
    if not cf or cf != af:
        return "they were validated on different devices (device fingerprints differ)"
    return None


def check(cfg: Release, candidate: dict, active: dict | None, skip: bool = False) -> GateResult:
    """Compare ``candidate``'s manifest with the ``active`` release's manifest (None: the device runs
    none). Returns the result when the candidate may go on; raises :class:`GateRefused` otherwise."""
    if active is None:
        return GateResult("no active release", message="the device runs no release yet")
    res = GateResult(
        "passed", active_version=active.get("version"), metric=(candidate.get("metrics") or {}).get("metric")
    )
    if skip:
        res.status, res.message = "skipped", "--skip-gate: not compared with the active release"
        return res
    why = _why_incomparable(candidate, active)
    if why:
        res.status = "incomparable"
        res.message = (
            f"cannot compare {candidate.get('version')} with the active release {active.get('version')}: {why}; "
            "re-run the pipeline on the same split and device, or deploy with --skip-gate (recorded)"
        )
        raise GateRefused(res.message, res)
    cm, am = candidate["metrics"], active["metrics"]
    res.candidate_value, res.active_value = cm.get("value"), am.get("value")
    res.candidate_p99_ms, res.active_p99_ms = cm.get("latency_p99_ms"), am.get("latency_p99_ms")
    problems = []
    if res.candidate_value is not None and res.active_value is not None:
        if res.candidate_value < res.active_value - cfg.max_regression:
            problems.append(
                f"{res.metric} {res.candidate_value:.2f} vs {res.active_value:.2f} active "
                f"({res.active_value - res.candidate_value:.2f} points lower; release.max_regression {cfg.max_regression})"
            )
    if res.candidate_p99_ms is not None and res.active_p99_ms:
        rise = 100 * (res.candidate_p99_ms / res.active_p99_ms - 1)
        if rise > cfg.max_latency_regression:
            problems.append(
                f"p99 {res.candidate_p99_ms:.4g} ms vs {res.active_p99_ms:.4g} ms active ({rise:.1f}% higher; "
                f"release.max_latency_regression {cfg.max_latency_regression}%)"
            )
    figures = f"{res.metric} {res.candidate_value} vs {res.active_value}; p99 {res.candidate_p99_ms} ms vs {res.active_p99_ms} ms"
    if problems:
        res.status = "refused"
        res.message = (
            f"release {candidate.get('version')} is worse than the active release {active.get('version')}: "
            + "; ".join(problems)
        )
        raise GateRefused(res.message, res)
    res.message = f"not worse than the active release {active.get('version')}: {figures}"
    return res
