"""Cross-field checks of the ``release`` section (edgeforge release / deploy): the fleet's devices
and classes are targets, the version is semantic, the numbers are in range."""

from __future__ import annotations

import re

from tasks.config.load import _require
from tasks.config.schema import Config

SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")


def check_release(cfg: Config) -> None:
    r = cfg.release
    v = r.version
    _require(
        v is None or SEMVER.fullmatch(v) is not None, "release.version", f"{v!r} is not MAJOR.MINOR.PATCH (e.g. 1.4.0)"
    )
    for dev, cls in r.devices.items():
        _require(dev in cfg.target, f"release.devices.{dev}", f"no target {dev!r}; defined: {', '.join(cfg.target)}")
        _require(
            cls in cfg.target,
            f"release.devices.{dev}",
            f"class {cls!r} is not a target; defined: {', '.join(cfg.target)}",
        )
    _require(r.canary is None or r.canary in r.devices, "release.canary", f"{r.canary!r} is not in release.devices")
    _require(r.parallel >= 1, "release.parallel", "must be >= 1")
    _require(r.keep >= 2, "release.keep", "must be >= 2 (the active release and one to roll back to)")
    _require(r.golden_samples >= 1, "release.golden_samples", "must be >= 1")
    _require(
        r.max_regression >= 0 and r.max_latency_regression >= 0,
        "release",
        "max_regression and max_latency_regression must be >= 0",
    )
    m = r.monitor
    _require(m.rate_hz > 0 and m.window_s > 0, "release.monitor", "rate_hz and window_s must be > 0")
    _require(0 < m.min_clock_fraction <= 1, "release.monitor.min_clock_fraction", "must be in (0, 1]")
