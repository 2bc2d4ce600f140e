"""Run a built artifact on its device through the agent: outputs for ``evaluate``, per-call
latencies for ``benchmark``. Arrays travel as ``.npy``/``.npz`` files, sha256-verified."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tasks.device.choices import offline_batch_sizes, run_threads
from tasks.records import BuildRecord, artifact_files


@contextlib.contextmanager
def deployed(dev, build_dir: Path) -> Iterator[tuple[str, str]]:
    """Upload a build's artifact files (not its metadata or logs) to a fresh folder on the
    device; yields ``(folder, artifact path)`` and removes the folder afterwards."""
    files = artifact_files(build_dir)
    with dev.scratch("run") as d:
        for p in files:
            dev.host.put(p, f"{d}/{p.name}")
        yield d, f"{d}/{files[0].name}"


def _trt_load(build_dir: Path) -> dict:
    """What a ``trtexec --loadEngine`` of this TensorRT build needs, from its record
    (``tensorrt_recipe.TrtPlan.load_args``: plugin libraries, DLA core, --versionCompatible) and the
    batch range of its profile (trtexec's runs skip the batches outside it)."""
    from tasks.records import BuildRecord

    extra = BuildRecord.read(Path(build_dir) / "build.json").extra
    profile = extra.get("trt_profile") or {}
    return {
        "trtexec_args": list(extra.get("trt_load_args") or []),
        "profile_batches": [profile["min"], profile["max"]] if profile else None,
    }


def fetch(dev, remote_dir: str, files: dict[str, str], out: Path) -> None:
    """Download ``files`` ({name: sha256 the agent computed on the device}) into ``out``; each is checked
    against that hash, so a file that changed or broke on the way is refused."""
    for name, want in sorted(files.items()):
        dev.host.get(f"{remote_dir}/{name}", out / name, sha256=want)


def upload_input(dev, x: np.ndarray) -> str:
    """``x`` as a float32 ``.npy`` on the device, content-addressed (``<workdir>/data/<sha256>.npy``):
    uploaded once, then reused by every stage and precision that sends the same samples."""
    from tasks.io import sha256_file

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "x.npy"
        np.save(local, np.ascontiguousarray(x, dtype=np.float32))
        remote = dev.path("data", f"{sha256_file(local)}.npy")
        if dev.host.run(["test", "-f", remote], check=False, timeout=60).exit_code != 0:
            dev.host.put(local, remote)
    return remote


def _request(dev, build_dir: Path, artifact: str, remote_input: str) -> dict:
    """The agent request that runs this build as it was made: its ``device_choices`` (session options,
    OpenVINO hints) and their thread count, else the target's threads (a build recorded before them)."""
    rec = BuildRecord.read_if(build_dir / "build.json")
    choices = rec.extra.get("device_choices") if rec else None
    threads = run_threads(choices, dev.target.threads)
    req = {"runtime": dev.target.runtime, "artifact": artifact, "input": remote_input, "threads": threads}
    if choices:
        req["choices"] = {k: v for k, v in choices.items() if k != "reasons"}
    if dev.target.runtime == "tensorrt":
        # the plugin libraries the build loaded (device paths): the engine deserialises only with them
        req["plugins"] = list(BuildRecord.read(build_dir / "build.json").extra.get("trt_plugins") or [])
    return req


def outputs(dev, build_dir: Path, x: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Every output of the artifact on ``x`` (float32 (N, C, H, W)), run on the device."""
    remote_x = upload_input(dev, x)
    with deployed(dev, build_dir) as (d, art), tempfile.TemporaryDirectory() as tmp:
        dev.call("infer", {**_request(dev, build_dir, art, remote_x), "output": f"{d}/y.npz", "batch_size": batch_size})
        dev.host.get(f"{d}/y.npz", Path(tmp) / "y.npz")
        with np.load(Path(tmp) / "y.npz") as z:
            return {k: z[k] for k in z.files}


def latencies(
    dev,
    build_dir: Path,
    x: np.ndarray,
    bench,
    input_name: str | None = None,
    trtexec: bool = True,
    end_to_end: bool = True,
) -> tuple[dict[int, np.ndarray], dict]:
    """Per-call latencies in seconds for each of ``bench.batch_sizes``, measured on the device
    (batches are ``x``'s samples repeated); and the rest of the agent's answer (runtime version,
    cold-start times, hygiene before/after).

    TensorRT targets: EdgeForge's own figure is the engine run as an application runs it (agent
    ``TrtModel``); ``info["slices"]`` names the batch sizes above the engine's optimisation profile,
    timed as that many calls. ``info["trtexec"]`` holds trtexec's own figure beside it
    (``tensorrt_rt.trtexec_figures``) unless ``trtexec`` is false (a re-measurement). Without
    TensorRT's Python packages on the device, ``lat`` is {}, ``info["cold"]`` None and
    ``info["latency_unavailable"]`` says what to install: trtexec's summaries are all there is, and no
    per-call distribution is made up from them. ``input_name``: the engine's input (trtexec's
    ``--shapes``), needed only in that case. trtexec's runs get the build's load arguments
    (:func:`_trt_load`). With ``bench.end_to_end`` (and ``end_to_end``), ONNX Runtime and OpenVINO
    targets also time batch 1's input copy, compute and output copy apart (``info["io_split_s"]``:
    per-call seconds of each, and ``total``; agent ``time_chain``)."""
    from tasks.runtimes.base import BuildError
    from tasks.runtimes.tensorrt_rt import trtexec_figures

    remote_x = upload_input(dev, x)
    trt = (
        {"trtexec": dev.target.tensorrt.trtexec if trtexec else None, "input_name": input_name, **_trt_load(build_dir)}
        if dev.target.runtime == "tensorrt"
        else {}
    )
    with deployed(dev, build_dir) as (d, art):
        res = dev.call(
            "benchmark",
            {
                **_request(dev, build_dir, art, remote_x),
                "batch_sizes": list(bench.batch_sizes),
                "warmup_s": bench.warmup_s,
                "min_duration_s": bench.min_duration_s,
                "min_iterations": bench.min_iterations,
                **(
                    {"end_to_end_iterations": bench.end_to_end_iterations, "end_to_end_max_s": bench.end_to_end_max_s}
                    if end_to_end and getattr(bench, "end_to_end", False)
                    else {}
                ),
                "offline_batch_sizes": offline_batch_sizes(bench),
                **trt,
            },
        )
    lat = {int(k[1:]): np.asarray(v, dtype=np.float64) for k, v in res.pop("latency_s").items()}
    if res.get("trtexec"):
        res["trtexec"] = trtexec_figures(res["trtexec"], dev.name)
    else:
        res.pop("trtexec", None)  # not asked for (or not TensorRT)
    skipped = [f"{b}: {f['skipped']}" for b, f in res.get("trtexec", {}).items() if "skipped" in f]
    if not lat and len(skipped) == len(res.get("trtexec", {})):
        raise BuildError(
            f"{dev.name}: nothing could be measured: {res.get('latency_unavailable')}; trtexec: "
            f"{'; '.join(skipped) or 'not run'}"
        )
    return lat, res
