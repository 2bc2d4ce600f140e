"""Device command ``monitor``: run the active release at a fixed rate and sample latency, clocks and
temperatures per window (docs: README "Monitoring a device"; contract 2 of issue 17).

Request ``{root, seconds, rate_hz, window_s, sysfs}``: ``root`` is the device's release folder
(``<workdir>/release``, whose ``current`` links to ``releases/<id>``), ``sysfs`` the folder holding
``sys/`` (default "/"; tests point it at a FAKE tree). One golden input (batch 1) runs every
``1 / rate_hz`` s on the schedule ``t0 + k / rate_hz`` for ``seconds``; a slot whose inference does not
finish before the next slot starts, or that is skipped because an earlier one overran, is *missed*.
Stdlib only at import time (Python >= 3.8): the runtime comes from the agent's loaders.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

if __package__:
    from . import agent
else:  # uploaded next to agent.py and run from there
    import agent

#: devfreq names (``device/of_node/name``) of Jetson integrated GPUs: Nano/TX1 "gpu" (57000000.gpu),
#: TX2 gp10b, Xavier gv11b (17000000.gv11b), Orin ga10b (17000000.ga10b; "gpu" on L4T 36's 17000000.gpu),
#: as jetson-stats (jtop/core/gpu.py) finds them under /sys/class/devfreq
JETSON_GPUS = ("gpu", "gp10b", "gv11b", "ga10b")
#: where devfreq devices are listed; L4T 32 also has the GPU at /sys/devices/gpu.0/devfreq/<name>
DEVFREQ_GLOBS = ("sys/class/devfreq/*", "sys/devices/gpu.0/devfreq/*")


def _number(req: dict, key: str) -> float:
    v = req.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
        raise agent.AgentError("bad_input", f"request key {key!r} must be a number > 0, not {v!r}")
    return float(v)


def gpu_clocks(sysfs: str = "/") -> dict:
    """``{"gpu"|"gpu<i>": {"cur_mhz", "max_mhz", "device"}}`` of the Jetson GPUs' devfreq folders
    (``cur_freq``, ``max_freq`` in Hz) under ``sysfs``; none found: {}. ``max_freq`` is the limit the
    power mode sets (nvpmodel), so a low ``cur_mhz`` against it is a clock held down below that mode."""
    found = {}
    for pattern in DEVFREQ_GLOBS:
        for d in sorted(Path(sysfs).glob(pattern)):
            name = agent._read(str(d / "device" / "of_node" / "name")).strip("\x00 \n")
            if (name in JETSON_GPUS or "gpu.0" in d.parts) and d.resolve() not in found:
                found[d.resolve()] = d
    out = {}
    for i, d in enumerate(found.values()):
        cur, top = (agent._read(str(d / f)).strip() for f in ("cur_freq", "max_freq"))
        if cur.isdigit():
            key = "gpu" if len(found) == 1 else f"gpu{i}"
            out[key] = {"cur_mhz": int(cur) / 1e6, "max_mhz": int(top) / 1e6 if top.isdigit() else None}
            out[key]["device"] = d.name
    return out


def percentile(ordered: list, q: float) -> float:
    """The ``q``-th percentile (0..100) of sorted ``ordered``, linearly interpolated (numpy's default)."""
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def active_release(root: Path) -> tuple:
    """``(release dir, installed.json, manifest.json)`` of ``root/current``, resolved once (a switch of
    ``current`` while monitoring does not mix two releases)."""
    current = root / "current"
    if not os.path.lexists(str(current)):
        raise agent.AgentError("no_release", f"{current} does not exist: no release is active on this device")
    rel = Path(os.path.realpath(str(current)))
    try:
        installed = json.loads((rel / "installed.json").read_text())
        manifest = json.loads((rel / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise agent.AgentError("bad_input", f"release {rel.name}: installed.json/manifest.json unreadable: {e}") from e
    return rel, installed, manifest


def load_release(rel: Path, installed: dict, manifest: dict) -> tuple:
    """``(model, one golden input (1, C, H, W))`` through the agent's loader, with the recipe's threads,
    choices and plugins."""
    recipe = installed.get("recipe") or manifest.get("artifact", {}).get("recipe") or {}
    _, model, x, np = agent._load(
        {
            "runtime": installed.get("runtime"),
            "artifact": str(rel / str(installed.get("artifact"))),
            "input": str(rel / manifest.get("golden", {}).get("inputs", "golden/inputs.npy")),
            "threads": recipe.get("threads"),
            "choices": recipe.get("choices"),
            "plugins": recipe.get("plugins"),
        }
    )
    return model, np.ascontiguousarray(x[:1])


def sample(sysfs: str) -> dict:
    """Clocks (CPU cpufreq, Jetson GPU devfreq) and thermal zones now; what the device lacks is absent."""
    return {"clocks": {**agent.cpu_clocks(sysfs), **gpu_clocks(sysfs)}, "temps_c": agent.thermal_zones(sysfs)}


def window_record(w: int, t_s: float, lat_ms: list, missed: int, sysfs: str) -> dict:
    ordered = sorted(lat_ms)
    stats = (
        {"p50_ms": percentile(ordered, 50), "p99_ms": percentile(ordered, 99), "max_ms": ordered[-1]}
        if ordered
        else {"p50_ms": None, "p99_ms": None, "max_ms": None}
    )
    rec = {"window": w, "t_s": round(t_s, 3), "count": len(ordered), "missed": missed, **stats, **sample(sysfs)}
    p50 = "-" if not ordered else f"{stats['p50_ms']:.2f}"
    p99 = "-" if not ordered else f"{stats['p99_ms']:.2f}"
    agent.log(f"monitor: window {w} at {t_s:.1f} s: {len(ordered)} runs, {missed} missed, p50 {p50} ms, p99 {p99} ms")
    return rec


def run_schedule(infer, seconds: float, rate_hz: float, window_s: float, sysfs: str, clock=time.perf_counter) -> list:
    """Call ``infer()`` at slots ``t0 + k / rate_hz`` for ``seconds``; one record per ``window_s``."""
    period, windows = 1.0 / rate_hz, []
    n_windows = max(1, math.ceil(seconds / window_s - 1e-9))
    t0, k = clock(), 0
    for w in range(n_windows):
        end = min((w + 1) * window_s, seconds)
        lat_ms, missed = [], 0
        while k * period < end:
            slot = t0 + k * period
            wait = slot - clock()
            if wait > 0:
                time.sleep(wait)
            start = clock()
            infer()
            done = clock()
            lat_ms.append((done - start) * 1000)
            # late (past its slot's end), and the slots it overran get no inference: each is a missed deadline
            nxt = max(k + 1, math.ceil((done - t0) / period))
            missed += (done > slot + period) + (nxt - k - 1)
            k = nxt
        wait = t0 + end - clock()
        if wait > 0:
            time.sleep(wait)
        windows.append(window_record(w, clock() - t0, lat_ms, missed, sysfs))
    return windows


def cmd_monitor(req: dict) -> dict:
    """Run ``root/current`` at ``rate_hz`` for ``seconds``; ``windows``: per ``window_s`` {window, t_s,
    count, missed, p50_ms, p99_ms, max_ms, clocks: {name: {cur_mhz, max_mhz}}, temps_c: {zone: deg C}}.
    ``unavailable`` names what this device does not expose (never filled in)."""
    root, sysfs = Path(agent._get(req, "root")), str(req.get("sysfs") or "/")
    seconds, rate_hz, window_s = (_number(req, k) for k in ("seconds", "rate_hz", "window_s"))
    rel, installed, manifest = active_release(root)
    agent.log(f"monitor: release {rel.name} ({installed.get('runtime')}) at {rate_hz:g} Hz for {seconds:g} s")
    model, x = load_release(rel, installed, manifest)
    model.infer(x)  # the cold first inference stays out of the windows
    windows = run_schedule(lambda: model.infer(x), seconds, rate_hz, window_s, sysfs)
    first = sample(sysfs)
    unavailable = [
        what
        for what, ok in (
            ("cpu clocks (sys/devices/system/cpu/cpu*/cpufreq)", any(n.startswith("cpu") for n in first["clocks"])),
            ("gpu clocks (Jetson devfreq)", any(n.startswith("gpu") for n in first["clocks"])),
            ("temperatures (sys/class/thermal)", bool(first["temps_c"])),
        )
        if not ok
    ]
    return {
        "release": rel.name,
        "version": installed.get("version"),
        "bundle_sha256": installed.get("bundle_sha256"),
        "runtime": installed.get("runtime"),
        "artifact": installed.get("artifact"),
        "validated_p50_ms": manifest.get("metrics", {}).get("latency_p50_ms"),
        "seconds": seconds,
        "rate_hz": rate_hz,
        "window_s": window_s,
        "sysfs": sysfs,
        "windows": windows,
        "unavailable": unavailable,
    }


COMMANDS = {"monitor": cmd_monitor}
