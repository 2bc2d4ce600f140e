"""Read TensorRT ``trtexec`` console output: version, command, outcome, errors and the
``=== Performance summary ===`` numbers. Stdlib only; TensorRT is not needed.

Built against real logs from TensorRT 8.2 to 11.0 (``tests/fixtures/trtexec/SOURCES.md``).
The parser never raises: logs arrive truncated, crashed, with ``\\r``, blank lines between
lines, leading shell noise or lines overwritten by progress output, and what it does not
recognise it ignores.

Units: latency statistics in milliseconds, throughput in queries per second, totals and
build time in seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# One log line: "[MM/DD/YYYY-HH:MM:SS] [I] message". Searched, not matched, so that text
# overwritten by console progress in front of the timestamp does not hide the line; a
# second timestamp (another overwrite) may follow the first. The Python logger's
# "[TRT] [W]" ordering is accepted too.
_TS = r"\[\d{2}/\d{2}/\d{4}-\d{2}:\d{2}:\d{2}\]"
_STAMPED = re.compile(rf"(?:{_TS}\s*)+(\[TRT\]\s*)?\[([VIWEF])\](?: |$)(.*)")
_BARE = re.compile(r"^\s*(\[TRT\]\s*)?\[([VIWEF])\](?: |$)(.*)")
_BANNER = re.compile(
    r"&&&& (RUNNING|PASSED|FAILED) TensorRT\.trtexec"
    r"(?: \[TensorRT v(\d+)\])?(?: \[b\d+\])?(?: # (.*))?"
)
_VERSION_LINE = re.compile(r"^TensorRT version: (\d+\.\d+\.\d+)\s*$")
# Printed by the C++ runtime or the shell when trtexec dies without its end line.
_CRASH = re.compile(r"terminate called after throwing|Aborted \(core dumped\)|Segmentation fault")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BUILT = re.compile(r"^Engine built in ([0-9.]+) sec")
# The builder's warning for a tensor an implicit-INT8 calibration gave no range (TensorRT 8.2 -
# 10.x; tests/fixtures/trtexec/*missing_scale*): every layer reading or writing it leaves INT8.
_NO_SCALE = re.compile(
    r"^(?:\[TRT\] )?Missing scale and zero-point for tensor (.+?), expect fall back to non-int8 implementation"
)
_PRECISION = re.compile(r"^Precision: (.*?)\s*$")

_NUM = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_METRIC = re.compile(r"^([A-Za-z0-9 -]+?): (.*?)\s*$")
_STAT_ITEM = re.compile(rf"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\)) = ({_NUM}) ms")
_STATS = {
    "Latency": "latency",
    "Enqueue Time": "enqueue_time",
    "H2D Latency": "h2d_latency",
    "GPU Compute Time": "gpu_compute_time",
    "D2H Latency": "d2h_latency",
    "End-to-End Host Latency": "end_to_end_host_latency",
}
_TOTALS = {
    "Total Host Walltime": "total_host_walltime_s",
    "Total GPU Compute Time": "total_gpu_compute_time_s",
}
_REQUIRED_STATS = {"min", "max", "mean", "median"}

# Follow-up lines trtexec prints after any build failure; errors_text quotes the cause first.
_GENERIC_ERRORS = (
    "Engine could not be created from network",
    "Building engine failed",
    "Failed to create engine from model",
    "Engine set up failed",
    "Parsing model failed",
    "--- Begin node ---",
    "--- End node ---",
)
_MAX_QUOTED = 5
_MAX_QUOTE_CHARS = 240


@dataclass
class TrtexecLog:
    """What one ``trtexec`` run printed.

    ``status`` is "passed" / "failed" from the ``&&&& PASSED`` / ``&&&& FAILED`` end line, or
    "incomplete" when the text does not end with one (truncated log, crash, or a later run
    that printed errors but no end line). ``summary`` holds the performance summary:
    ``throughput_qps`` (queries/s); per-metric dicts (``latency``, ``enqueue_time``,
    ``h2d_latency``, ``gpu_compute_time``, ``d2h_latency``, ``end_to_end_host_latency``)
    of ``min``/``max``/``mean``/``median``/``p90``/``p95``/``p99`` in milliseconds; and
    ``total_host_walltime_s`` / ``total_gpu_compute_time_s`` in seconds. Only lines that are
    complete are read, so a truncated summary has fewer keys, never guessed ones.
    ``int8_fallbacks``: the tensors of the builder's "Missing scale and zero-point for tensor <t>,
    expect fall back to non-int8 implementation for any layer consuming or producing given tensor"
    warnings, in log order, once each: under implicit INT8 (a calibration cache) the layers
    touching them silently run FP16/FP32.
    """

    tensorrt_version: str | None = None
    command: str | None = None
    status: str = "incomplete"
    errors: list[str] = field(default_factory=list)
    warnings_count: int = 0
    precision: str | None = None
    build_seconds: float | None = None
    summary: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    int8_fallbacks: list[str] = field(default_factory=list)


def decode_version(banner: int) -> str:
    """``8601`` -> "8.6.1", ``8502`` -> "8.5.2"; from 10.0 on two digits per part:
    ``100300`` -> "10.3.0", ``101601`` -> "10.16.1", ``110000`` -> "11.0.0"."""
    if banner >= 100000:
        return f"{banner // 10000}.{banner // 100 % 100}.{banner % 100}"
    return f"{banner // 1000}.{banner // 100 % 10}.{banner % 100}"


def level_line(line: str) -> tuple[str, str] | None:
    """(level letter, message) of a logger line, or None. "[TRT]" stays in the message."""
    m = _STAMPED.search(line) or _BARE.match(line)
    if m is None:
        return None
    prefix, level, message = m.groups()
    return level, (f"[TRT] {message}" if prefix else message).strip()


def _parse_stats(body: str) -> dict[str, float] | None:
    """``min = 1 ms, max = 2 ms, ...`` -> {"min": 1.0, ..., "p99": ...}; None unless the
    whole body is well-formed items with at least min, max, mean and median."""
    items = body.split(", ")
    stats: dict[str, float] = {}
    for item in items:
        m = _STAT_ITEM.fullmatch(item)
        if m is None:
            return None
        name, pct, value = m.groups()
        stats[f"p{pct}" if pct else name] = float(value)
    return stats if _REQUIRED_STATS <= stats.keys() else None


def _parse_metric(name: str, body: str, summary: dict[str, Any]) -> None:
    """Add one complete summary line to ``summary``; lines cut mid-way are skipped."""
    if name == "Throughput":
        m = re.fullmatch(rf"({_NUM}) qps", body)
        if m:
            summary["throughput_qps"] = float(m.group(1))
    elif name in _STATS:
        stats = _parse_stats(body)
        if stats is not None:
            summary[_STATS[name]] = stats
    elif name in _TOTALS:
        m = re.fullmatch(rf"({_NUM}) s", body)
        if m:
            summary[_TOTALS[name]] = float(m.group(1))


def parse(text: str) -> TrtexecLog:
    """Parse ``trtexec`` console output (TensorRT 8.x to 11.x). Never raises on any text:
    every number it converts has already matched a (bounded) number pattern."""
    log = TrtexecLog()
    commands: dict[str, str] = {}  # first command seen on a RUNNING line / on an end line
    banner_version: str | None = None
    printed_version: str | None = None
    end_status: str | None = None
    after_end = False  # something that needs an end line came after the last one
    summary: dict[str, Any] | None = None
    in_summary = False
    continue_error = False  # last [E] message ended with ":" and its text is on the next line

    for raw in _ANSI.sub("", text).splitlines():
        line = raw.strip()
        if not line:
            continue
        banner = _BANNER.search(line)
        if banner:
            kind, number, command = banner.groups()
            if number and len(number) <= 9 and banner_version is None:  # int() limits digits
                banner_version = decode_version(int(number))
            if command:
                commands.setdefault("RUNNING" if kind == "RUNNING" else "end", command.strip())
            if kind == "RUNNING":
                after_end = end_status is not None
            else:
                end_status, after_end = kind.lower(), False
            in_summary = continue_error = False
            continue
        parsed = level_line(line)
        if parsed is None:
            if _CRASH.search(line):
                log.errors.append(line)
                after_end = end_status is not None
            elif continue_error:
                log.errors[-1] = f"{log.errors[-1]} {line}"
            continue_error = False
            continue
        level, message = parsed
        continue_error = False
        if level in "EF":
            log.errors.append(message)
            continue_error = message.endswith(":")
            after_end = end_status is not None
        elif level == "W":
            log.warnings_count += 1
            if message.startswith("* ") and message[2:] not in log.warnings:
                log.warnings.append(message[2:])
            elif (m := _NO_SCALE.match(message)) and m.group(1) not in log.int8_fallbacks:
                log.int8_fallbacks.append(m.group(1))
        elif level == "I":
            if message == "=== Performance summary ===":
                summary, in_summary = {}, True
            elif in_summary and summary is not None:
                metric = _METRIC.match(message)
                if metric:
                    _parse_metric(metric.group(1), metric.group(2), summary)
            elif log.precision is None and (m := _PRECISION.match(message)):
                log.precision = m.group(1) or None
            elif log.build_seconds is None and (m := _BUILT.match(message)):
                log.build_seconds = float(m.group(1))
            elif printed_version is None and (m := _VERSION_LINE.match(message)):
                printed_version = m.group(1)

    log.command = commands.get("RUNNING") or commands.get("end")
    log.tensorrt_version = banner_version or printed_version
    log.status = end_status if end_status and not after_end else "incomplete"
    log.summary = summary or None
    return log


def _is_generic(message: str) -> bool:
    return any(g in message for g in _GENERIC_ERRORS)


def errors_text(log: TrtexecLog) -> str:
    """One short message for a failed build or run: the outcome, then up to five error or
    crash lines (the specific causes before trtexec's generic follow-up lines)."""
    if log.status == "passed" and not log.errors:
        return "trtexec passed with no errors"
    if log.status == "incomplete":
        head = "trtexec did not finish (no &&&& PASSED/FAILED line; truncated or crashed)"
    else:
        head = f"trtexec {log.status}"
    if not log.errors:
        return f"{head}: it printed no [E] line; read the full log (add --verbose to see the last step)"
    specific = [e for e in log.errors if not _is_generic(e)]
    chosen = list(dict.fromkeys(specific or log.errors))
    quoted = [e if len(e) <= _MAX_QUOTE_CHARS else e[: _MAX_QUOTE_CHARS - 1] + "…" for e in chosen]
    text = "; ".join(quoted[:_MAX_QUOTED])
    hidden = len(log.errors) - min(len(quoted), _MAX_QUOTED)
    if hidden > 0:
        text += f" (+{hidden} more error line{'s' if hidden > 1 else ''} in the log)"
    return f"{head}: {text}"
