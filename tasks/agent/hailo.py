"""Device command ``hailo_build``: run Hailo's Dataflow Compiler (DFC) recipe on the build host, step by step.

The DFC (``hailo`` CLI, from the Hailo AI Software Suite or the ``hailo_dataflow_compiler`` wheel) runs on
an x86-64 Linux host; the ``.hef`` it writes runs on a Hailo-8/8L through HailoRT. The host plans the
steps (:mod:`tasks.runtimes.hailo_recipe`); this module runs them, in order, in ``out_dir``.

Request ``{steps, out_dir, timeout, artifact}``: ``steps`` is a list of ``{"name", "argv", "outputs"}``
(``parser``, ``optimize``, ``compiler``; ``argv[0]`` the ``hailo`` executable, ``outputs`` the files the
step must leave in ``out_dir``), ``timeout`` the seconds each step may run, ``artifact`` the ``.hef``.
Each step's stdout and stderr go to ``<name>.log`` in ``out_dir``. A step that exits non-zero, runs past
its timeout or leaves an output missing is an ``AgentError`` naming the step and quoting the tool's last
error lines. Answer: ``{artifact, files, facts, steps, build_seconds, runtime, runtime_version}``:
``files`` {name: sha256} of the ``.hef`` and the logs, ``facts`` what the logs report
(:func:`log_facts`). Stdlib only at import time (Python >= 3.8).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

if __package__:
    from . import agent
else:  # uploaded next to agent.py and run from there
    import agent

#: where the DFC comes from; said whenever ``hailo`` is missing on the build host
INSTALL = (
    "install Hailo's Dataflow Compiler on an x86-64 Linux build host: the Hailo AI Software Suite (docker) "
    "or the hailo_dataflow_compiler-<version>-py3-none-linux_x86_64.whl wheel, both from Hailo's Developer "
    "Zone (https://hailo.ai/developer-zone/software-downloads/, login needed), then point "
    "target.<name>.hailo.hailo at its `hailo` executable"
)
#: DFC log lines -> facts (tests/fixtures/hailo: the recorded lines each pattern was written against)
FACTS = (
    ("dfc_version", r"Hailo DFC Version: (\S+)", str),
    ("hailort_version", r"HailoRT Version: (\S+)", str),
    ("net", r"Translation completed on ONNX model (\S+)", str),
    ("calib_entries", r"Using dataset with (\d+) entries for calibration", int),
    ("default_optimization_level", r"Using default optimization level of (\d+)", int),
    ("reduced_optimization_level", r"Reducing optimization level to (\d+)", int),
    ("allocation_time", r"Successful Mapping \(allocation time: ([^)]+)\)", str),
    ("compilation_time", r"Successful Compilation \(compilation time: ([^)]+)\)", str),
)
_SNR = re.compile(r"(\S+/output_layer\d+)\s+SNR:\s*(-?[\d.]+) dB")
_CONTEXTS = re.compile(r"(?:partition to|Applying selected partition to) (\d+) contexts")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Failure)\b.*")
_FAILED = re.compile(r"(?i)\bfailed\b")


def log_facts(text: str) -> dict:
    """What a DFC step's log says: ``dfc_version``, ``hailort_version``, ``net``, ``calib_entries``,
    ``default_optimization_level`` / ``reduced_optimization_level`` (the level the optimizer used when it
    says so), ``snr_db`` {output layer: dB}, ``contexts`` (1 for the single-context flow, else the last
    partition reported), ``allocation_time`` / ``compilation_time`` (as printed, e.g. "5s", "48m 22s"),
    ``warnings`` (the ``[warning]`` lines). Only what the log prints: the compiler prints no FPS or latency
    (``hailo profiler`` reports those), so none is recorded."""
    facts = {}
    for key, pattern, kind in FACTS:
        m = re.search(pattern, text)
        if m:
            facts[key] = kind(m.group(1))
    snr = {m.group(1): float(m.group(2)) for m in _SNR.finditer(text)}
    if snr:
        facts["snr_db"] = snr
    contexts = _CONTEXTS.findall(text)
    if contexts:
        facts["contexts"] = int(contexts[-1])
    elif "Using Single-context flow" in text:
        facts["contexts"] = 1
    warnings = [ln.split("]", 1)[1].strip() for ln in text.splitlines() if ln.startswith("[warning]")]
    if warnings:
        facts["warnings"] = warnings
    return facts


def error_lines(text: str, limit: int = 6) -> list:
    """The tool's own account of a failure: from its first ``[error]`` line on; else the lines saying what
    failed (``Parsing failed with recommendations ...``) and a traceback's exception line; else the last
    lines it printed (at most ``limit``)."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith("[error]"):
            return lines[i : i + limit]
    said = [ln for ln in lines if _FAILED.search(ln) and not ln.startswith(("[info]", " "))]
    said += [ln for ln in lines if _EXCEPTION.match(ln)][-1:]
    return said[:limit] or lines[-limit:]


def _executable(argv0: str) -> str:
    exe = os.path.abspath(argv0) if os.sep in argv0 else argv0  # relative to the agent's cwd, not out_dir
    if shutil.which(exe) is None:
        raise agent.AgentError(
            "missing_runtime",
            f"the Hailo Dataflow Compiler is not on this build host: {argv0!r} is not an executable "
            f"(cwd {os.getcwd()}, PATH {os.environ.get('PATH', '')}); {INSTALL}",
        )
    return exe


def run_step(step: dict, exe: str, out_dir: Path, timeout: float) -> dict:
    """Run one step in ``out_dir`` (stdin closed: a question the parser asks fails the step, quoted);
    returns ``{name, exit_code, seconds, log}``, or raises ``AgentError`` naming the step."""
    name, argv, outputs = step["name"], step["argv"], step.get("outputs", [])
    log_path = out_dir / f"{name}.log"
    for o in outputs:
        if (out_dir / o).exists():
            (out_dir / o).unlink()  # an earlier run's file must not pass for this one's
    agent.log(f"hailo {name}: {' '.join(argv)} in {out_dir}")
    t0 = time.perf_counter()
    with open(log_path, "wb") as f:
        proc = subprocess.Popen(
            [exe] + argv[1:], cwd=str(out_dir), stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise agent.AgentError(
                "failed",
                f"hailo {name} ran past its {timeout:g} s timeout (target.<name>.command_timeout_s) and was killed",
            ) from None
    seconds = time.perf_counter() - t0
    text = log_path.read_text(errors="replace")
    missing = [o for o in outputs if not (out_dir / o).is_file()]
    if code != 0 or missing:
        what = f"exited with code {code}" if code != 0 else f"exited 0 but wrote no {', '.join(missing)}"
        quoted = "\n    ".join(error_lines(text)) or "(it printed nothing)"
        # the job folder goes with the call: the command is what reproduces the whole output
        raise agent.AgentError("failed", f"hailo {name} {what}; it said:\n    {quoted}\n  command: {shlex.join(argv)}")
    agent.log(f"hailo {name} done in {seconds:.1f} s")
    return {"name": name, "exit_code": code, "seconds": seconds, "log": log_path.name}


def cmd_hailo_build(req: dict) -> dict:
    """Run the request's DFC steps in order (see the module's docstring)."""
    steps, timeout, artifact = req.get("steps"), req.get("timeout"), req.get("artifact")
    ok = (
        isinstance(steps, list)
        and steps
        and all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("argv"), list) and s["argv"]
            for s in steps
        )
    )
    if not ok:
        raise agent.AgentError(
            "bad_input", f"request key 'steps' must be a list of {{name, argv, outputs}}, not {steps!r}"
        )
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise agent.AgentError("bad_input", f"request key 'timeout' must be seconds > 0, not {timeout!r}")
    if not isinstance(artifact, str) or not artifact:
        raise agent.AgentError("bad_input", f"request key 'artifact' must be a file name, not {artifact!r}")
    out_dir = Path(agent._get(req, "out_dir"))
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = _executable(steps[0]["argv"][0])
    t0 = time.perf_counter()
    done, facts = [], {}
    for step in steps:
        done.append(run_step(step, exe, out_dir, timeout))
        step_facts = log_facts((out_dir / done[-1]["log"]).read_text(errors="replace"))
        if step_facts.get("warnings"):
            facts.setdefault("warnings", {})[step["name"]] = step_facts.pop("warnings")
        facts.update(step_facts)
    keep = [out_dir / artifact] + [out_dir / s["log"] for s in done]
    version = agent._version("hailo_dataflow_compiler") or facts.get("dfc_version")
    return {
        "artifact": artifact,
        "files": agent._hashes(out_dir, keep),
        "facts": facts,
        "steps": done,
        "build_seconds": time.perf_counter() - t0,
        "runtime": "hailo",
        "runtime_version": version,
    }


COMMANDS = {"hailo_build": cmd_hailo_build}
