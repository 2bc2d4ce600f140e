"""What the bench scripts print beside every figure: the CPU they ran on."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name with its family and model numbers (``/proc/cpuinfo``: a VM may name
    only the vendor, "AMD EPYC", and the numbers tell Zen 3 from Zen 4, Ice Lake from Sapphire
    Rapids), else what ``platform`` knows."""
    try:
        info = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            info.setdefault(k.strip(), v.strip())
        if "model name" in info:
            return f"{info['model name']} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
