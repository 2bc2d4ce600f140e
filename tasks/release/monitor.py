"""``edgeforge monitor --target NAME --minutes M``: run the device's active release at a fixed rate
(the agent's ``monitor`` command, :mod:`tasks.agent.monitor`) and report drift and throttling.

Drift: a window's p50 more than ``release.monitor.max_drift`` percent over the p50 the release was
validated with (its manifest's ``metrics.latency_p50_ms``, measured by the pipeline's benchmark).
Throttling: a CPU/GPU clock below ``min_clock_fraction`` of its maximum, or a thermal zone above
``max_temp_c``. Every window's figures, the findings and the release's identity go to an MLflow run
"monitor <target>" in ``report.experiment``; what the device does not expose is listed, never guessed.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Callable

from tasks import stage
from tasks.config import Config, ConfigError
from tasks.config.schema import Monitor
from tasks.release.store import release_root

#: seconds the device gets beyond the sampling itself: connect, upload the agent, load the model
MARGIN_S = 120.0


def run_device(cfg: Config, target: str, seconds: float, log: Callable[[str], None]) -> dict:
    """The agent's ``monitor`` answer for ``target``; no active release there is a StageError."""
    from tasks.agent.client import AgentError, device

    if target not in cfg.target:
        raise ConfigError(f"--target {target!r} is not defined; defined targets: {', '.join(cfg.target)}")
    m, t = cfg.release.monitor, cfg.target[target]
    req = {"root": release_root(t), "seconds": seconds, "rate_hz": m.rate_hz, "window_s": m.window_s}
    with device(target, t, log) as dev:
        try:
            return dev.call("monitor", req, timeout=seconds + MARGIN_S)
        except AgentError as e:
            if e.kind == "no_release":
                raise stage.StageError(
                    f"{target} has no active release: run edgeforge deploy --target {target} ({e})"
                ) from None
            raise


def _finding(kind: str, name: str, hits: list[tuple[int, float]], limit: float, what: Callable) -> dict:
    """One finding over the windows in ``hits`` ((window, value) pairs); ``worst``: the lowest clock
    fraction, else the highest value; ``what(worst)`` says it in words."""
    worst = (min if kind == "clock" else max)(v for _, v in hits)
    windows = sorted({w for w, _ in hits})
    return {"kind": kind, "name": name, "windows": windows, "worst": worst, "limit": limit, "message": what(worst)}


def analyse(result: dict, m: Monitor) -> dict:
    """``result`` (the agent's answer) with ``drift_pct`` per window and ``findings``: one entry per
    kind and clock or zone, ``{kind: drift|clock|temperature, name, windows, worst, limit, message}``."""
    base = result.get("validated_p50_ms")
    drift, clocks, temps = [], {}, {}
    for w in result["windows"]:
        p50 = w.get("p50_ms")
        w["drift_pct"] = (p50 - base) / base * 100 if base and p50 is not None else None
        if w["drift_pct"] is not None and w["drift_pct"] > m.max_drift:
            drift.append((w["window"], w["drift_pct"]))
        for name, c in w["clocks"].items():
            if c.get("max_mhz") and c["cur_mhz"] < m.min_clock_fraction * c["max_mhz"]:
                clocks.setdefault(name, []).append((w["window"], c["cur_mhz"] / c["max_mhz"]))
        for zone, deg in w["temps_c"].items():
            if deg > m.max_temp_c:
                temps.setdefault(zone, []).append((w["window"], deg))
    findings = []
    if drift:
        says = f"over the validated {base:.3g} ms (limit {m.max_drift:g}%)"
        findings.append(_finding("drift", "p50", drift, m.max_drift, lambda v: f"p50 up to {v:+.0f}% {says}"))
    limit = f"(limit {m.min_clock_fraction:.0%})"
    for name, hits in clocks.items():
        says = lambda v, n=name: f"{n} clock down to {v:.0%} of its maximum {limit}"  # noqa: E731
        findings.append(_finding("clock", name, hits, m.min_clock_fraction, says))
    for zone, hits in temps.items():
        says = lambda v, z=zone: f"{z} at up to {v:.1f} degC (limit {m.max_temp_c:g} degC)"  # noqa: E731
        findings.append(_finding("temperature", zone, hits, m.max_temp_c, says))
    notes = [] if base else ["drift (the manifest has no metrics.latency_p50_ms)"]
    return {**result, "findings": findings, "unavailable": result.get("unavailable", []) + notes}


def _key(name: str) -> str:
    """An MLflow metric name (letters, digits, _ - . / and space)."""
    return re.sub(r"[^\w.\- /]", "_", name)


def window_metrics(w: dict) -> dict[str, float]:
    """One window's figures as MLflow metrics (absent ones left out)."""
    out = {k: w.get(k) for k in ("p50_ms", "p99_ms", "max_ms", "count", "missed", "drift_pct")}
    for name, c in w["clocks"].items():
        out[f"clock.{_key(name)}.cur_mhz"] = c["cur_mhz"]
        out[f"clock.{_key(name)}.fraction"] = c["cur_mhz"] / c["max_mhz"] if c.get("max_mhz") else None
    out.update({f"temp_c.{_key(zone)}": deg for zone, deg in w["temps_c"].items()})
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(v)}


def log_run(cfg: Config, target: str, report: dict) -> dict:
    """An MLflow run "monitor <target>": per-window metrics (step = window index), the release's
    identity as tags, the findings as tags and ``monitor.json``. Returns ``{run_id, experiment}``."""
    import mlflow
    from mlflow.entities import Metric, Param

    from tasks.tracking.uri import resolved_uri, tracking_uri

    client = mlflow.MlflowClient(tracking_uri=resolved_uri(tracking_uri(cfg)))
    name = cfg.report.experiment
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(name)
    kinds = {f["kind"] for f in report["findings"]}
    tags = {
        "edgeforge.command": "monitor",
        "target": target,
        "release": str(report.get("release")),
        "release.version": str(report.get("version")),
        "release.bundle_sha256": str(report.get("bundle_sha256")),
        "runtime": str(report.get("runtime")),
        "findings": "; ".join(f["message"] for f in report["findings"])[:5000] or "none",
        **{f"finding.{k}": str(k in kinds).lower() for k in ("drift", "clock", "temperature")},
        "unavailable": "; ".join(report["unavailable"])[:5000] or "none",
    }
    run = client.create_run(exp_id, run_name=f"monitor {target}", tags=tags)
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, w["window"]) for w in report["windows"] for k, v in window_metrics(w).items()] + [
        Metric("findings", float(len(report["findings"])), now, 0)
    ]
    params = [Param(k, str(report[k])) for k in ("seconds", "rate_hz", "window_s")]
    m = cfg.release.monitor
    params += [Param(k, str(getattr(m, k))) for k in ("max_drift", "min_clock_fraction", "max_temp_c")]
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run.info.run_id, metrics=metrics[i : i + 1000], params=params if i == 0 else [])
    client.log_dict(run.info.run_id, report, "monitor.json")
    client.set_terminated(run.info.run_id)
    return {"run_id": run.info.run_id, "experiment": name}


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def summary(target: str, report: dict) -> str:
    lines = [
        f"monitor {target}: release {report['release']} ({report['runtime']}) at {report['rate_hz']:g} Hz, "
        f"{len(report['windows'])} window(s) of {report['window_s']:g} s; validated p50 {_ms(report.get('validated_p50_ms'))} ms",
        f"{'window':>6} {'t_s':>7} {'runs':>5} {'missed':>6} {'p50_ms':>8} {'p99_ms':>8} {'max_ms':>8} {'drift%':>7}"
        f" {'min clock%':>10} {'max degC':>8}",
    ]
    for w in report["windows"]:
        fractions = [c["cur_mhz"] / c["max_mhz"] * 100 for c in w["clocks"].values() if c.get("max_mhz")]
        drift = "-" if w.get("drift_pct") is None else f"{w['drift_pct']:+.0f}"
        clock = f"{min(fractions):.0f}" if fractions else "-"
        temp = f"{max(w['temps_c'].values()):.1f}" if w["temps_c"] else "-"
        lines.append(
            f"{w['window']:>6} {w['t_s']:>7.1f} {w['count']:>5} {w['missed']:>6} {_ms(w['p50_ms']):>8} "
            f"{_ms(w['p99_ms']):>8} {_ms(w['max_ms']):>8} {drift:>7} {clock:>10} {temp:>8}"
        )
    lines += [f"FINDING {f['kind']}: {f['message']} (windows {f['windows']})" for f in report["findings"]]
    if not report["findings"]:
        lines.append("no drift or throttling found")
    lines += [f"not available on this device: {u}" for u in report["unavailable"]]
    if report.get("mlflow"):
        lines.append(f"MLflow run {report['mlflow']['run_id']} in experiment {report['mlflow']['experiment']!r}")
    return "\n".join(lines)


def monitor(cfg: Config, target: str, minutes: float, log: Callable[[str], None] | None = None) -> dict:
    """Monitor ``target``'s active release for ``minutes``; returns the report (the agent's windows with
    ``drift_pct``, ``findings``, ``unavailable``, ``mlflow``) and prints its summary."""
    log = log or (lambda msg: stage.log("monitor", msg))
    log(f"{target}: running the active release for {minutes:g} min")
    report = analyse(run_device(cfg, target, minutes * 60, log), cfg.release.monitor)
    report["target"] = target
    report["mlflow"] = log_run(cfg, target, report)
    print(summary(target, report), flush=True)
    return report


def _minutes(v: str) -> float:
    try:
        m = float(v)
    except ValueError:
        m = math.nan
    if not (math.isfinite(m) and m > 0):
        raise argparse.ArgumentTypeError(f"must be a number of minutes > 0 (fractions allowed), not {v!r}")
    return m


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="edgeforge monitor", description=__doc__.split("\n\n")[0])
    p.add_argument("--params", default="params.yaml", help="composed config (default: params.yaml)")
    p.add_argument("--target", required=True, help="the device (a key of the target section)")
    p.add_argument("--minutes", type=_minutes, required=True, help="how long to sample (e.g. 0.5)")
    args = p.parse_args(argv)
    with stage.stage_errors("monitor"):
        cfg = stage.load(args)
        monitor(cfg, args.target, args.minutes)


if __name__ == "__main__":
    main(sys.argv[1:])
