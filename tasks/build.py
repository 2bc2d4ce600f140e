"""Stage ``build@<target>``: the deployable artifacts, one per precision, built on the target itself.

The device agent (``tasks/agent/agent.py``) builds it there, from the precision's ONNX model
(the ``quantize`` stage): ONNX Runtime saves the graph its own optimizer produced, OpenVINO
writes IR and compiles it once, TensorRT runs ``trtexec`` with the recipe of the device's
TensorRT version (``tasks/runtimes/tensorrt_recipe.py``; the ONNX is linted against that version
first, before anything is uploaded). Local targets take the same path in a scratch folder.
Device-dependent choices (:mod:`tasks.device.choices`: which ONNX Runtime INT8 model, threads, ORT
graph optimisation level, OpenVINO hints per scenario, inference precision) follow the target's
fingerprint; the request carries them and the record keeps them as ``device_choices`` (with a
reason each), which the benchmark and evaluate stages apply again. Every file comes back
sha256-verified. Outputs per precision: ``artifacts/build/<target>/<precision>/`` (the artifact, any
build log, and ``build.json``) and ``metrics/build/<target>/<precision>.json``; nothing for a
precision whose build failed (the others still build, and the stage then fails). A build whose
inputs did not change is kept (:mod:`tasks.reuse`); ``--precision`` builds one.

A precision that does not apply to the target (:mod:`tasks.device.support`: bf16 on ONNX Runtime, a
precision the device only emulates under ``bench.emulated: skip``) is decided from the fingerprint
before anything is uploaded: ``build.json`` and the metrics are then a skipped record, with no
artifact. An emulated precision built anyway (``bench.emulated: measure``) records ``emulated``.

Targets of one device class share a build (:mod:`tasks.device.class_store`, ``build.share_by_class``):
the first builds it, the others copy it sha256-verified (``shared_from`` in ``build.json``) and are
still benchmarked and evaluated on their own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from tasks import stage
from tasks.agent.client import device
from tasks.agent.remote import fetch as _fetch
from tasks.config import Config
from tasks.data.split import Split
from tasks.device import class_store
from tasks.device.choices import choose, run_threads
from tasks.device.support import support
from tasks.io import atomic_dir, remove, sha256_file
from tasks.layout import LAYOUT, key
from tasks.models.load import load_torch_model
from tasks.records import BuildRecord, SkippedRecord, read_fingerprint
from tasks.reuse import StageInputs, inputs_of, item_digest, prune, unchanged, write_record
from tasks.runtimes import BuildError, Runtime, dla_lint, dla_placement, get_runtime, opset, trt_lint
from tasks.runtimes.base import HostSource
from tasks.runtimes.openvino_rt import onnx_io_names
from tasks.runtimes.tensorrt_build_plan import target_plan
from tasks.runtimes.tensorrt_check import check_build
from tasks.runtimes.tensorrt_recipe import ONNX_NAME


def _build_runtime(
    cfg: Config, dev, precision: str, onnx_path: Path, out: Path, choices: dict, emulated: bool = False
) -> dict:
    """onnxruntime / openvino: upload the ONNX, the agent builds and checks (with the device
    ``choices``), download the result. ``emulated``: the device has no native compute for
    ``precision`` (OpenVINO then gets no f16 hint, and a bf16 build without BF16 ops is no error)."""
    target = dev.target
    with dev.scratch(f"build-{precision}") as d:
        dev.host.put(onnx_path, f"{d}/src.onnx")
        res = dev.call(
            "build",
            {
                "runtime": target.runtime,
                "onnx": f"{d}/src.onnx",
                "out_dir": f"{d}/out",
                "precision": precision,
                "threads": run_threads(choices),
                "io_names": onnx_io_names(onnx_path) if target.runtime == "openvino" else None,
                "choices": {k: v for k, v in choices.items() if k != "reasons"},
                "emulated": emulated,
            },
        )
        _fetch(dev, f"{d}/out", res["files"], out)
    return {
        "artifact": res["artifact"],
        "runtime_version": res["runtime_version"],
        "device_build_seconds": res["build_seconds"],
        **res.get("meta", {}),
    }


def _host_source(cfg: Config, target_name: str, precision: str, onnx_path: Path, choices: dict) -> HostSource:
    """What a host-converting runtime gets: the PyTorch model (loaded on first use), the calibration split
    (``quant.samples`` images in ``quant.batch_size`` batches), the precision's ONNX."""
    model: list = []

    def torch_model():
        if cfg.model.format == "onnx":
            raise BuildError(
                f"runtime {cfg.target[target_name].runtime} converts the PyTorch model, and model.format is onnx: "
                "set model.checkpoint to the PyTorch checkpoint (model.format: state_dict, torchscript or pt2), "
                "or leave this target out of build.targets"
            )
        if not model:
            model.append(load_torch_model(cfg.model))
        return model[0]

    def calibration():
        for x, _ in Split(LAYOUT.split("calib")).batches(cfg.quant.batch_size, limit=cfg.quant.samples):
            yield x

    c, h, w = cfg.model.input.shape
    largest = max(cfg.eval.batch_size, cfg.parity.batch_size, *cfg.bench.batch_sizes)
    return HostSource(
        precision, onnx_path, LAYOUT.onnx, torch_model, (c, h, w), calibration, largest, run_threads(choices), choices
    )


def _convert(runtime: Runtime, src: HostSource, out: Path) -> tuple[Path, dict]:
    """A runtime that converts on the host (``Runtime.converts_on_host``): its artifact, converted into
    ``out`` here, and what the conversion recorded."""
    t0 = time.perf_counter()
    built = runtime.convert(src, out)
    return built.artifact, {
        "artifact": built.artifact.name,
        "converted_on_host": True,
        "convert_seconds": time.perf_counter() - t0,
        **built.meta,
    }


def _check_converted(dev, runtime: Runtime, src: HostSource, artifact: Path) -> dict:
    """Upload a host-converted artifact (with its side files, as benchmark and evaluate will); the device's
    runtime loads it and runs one batch (a device that cannot run it fails its build here, not later)."""
    with dev.scratch(f"build-{src.precision}") as d:
        for p in sorted(artifact.parent.iterdir()):  # the artifact and its side files (not the records)
            if p.is_file() and p.suffix not in (".json", ".log"):
                dev.host.put(p, f"{d}/{p.name}")
        res = dev.call(
            "build",
            {
                "runtime": runtime.name,
                "artifact": f"{d}/{artifact.name}",
                "precision": src.precision,
                "threads": src.threads,
                "sample_shape": list(src.input_shape),
                "choices": {k: v for k, v in src.choices.items() if k != "reasons"},
            },
        )
    return {
        **res.get("meta", {}),
        "runtime_version": res["runtime_version"],
        "device_build_seconds": res["build_seconds"],
    }


def int8_capable(compute_capability: str) -> bool | None:
    """Whether a GPU of this compute capability runs INT8 kernels (None: not a capability).

    TensorRT's support matrix ("Hardware and Precision", 8.x releases) lists INT8 from SM 6.1 (Tesla P4,
    GTX 10x0) and on every SM >= 7.0 (7.2: Jetson AGX/NX Xavier, 8.7: Orin); SM 6.0 (P100), 6.2 (Jetson TX2,
    whose GPU has no DP4A: cuDNN's CUDNN_STATUS_ARCH_MISMATCH there) and 5.x (5.3: Jetson Nano, TX1) have
    none. NVIDIA's samples refuse INT8 where ``platformHasFastInt8()`` is false (samples/common/common.h
    8.2.1:977); trtexec does not check, and builds FP32/FP16 kernels under the int8 name."""
    m = re.fullmatch(r"(\d+)\.(\d+)", str(compute_capability).strip())
    return None if m is None else (int(m[1]), int(m[2])) == (6, 1) or int(m[1]) >= 7


def _check_int8_gpu(target: str, precision: str, fingerprint: dict) -> None:
    """Refuse an ``int8-*`` TensorRT build when no GPU the probe found has INT8 (before any upload)."""
    gpus = [g for g in fingerprint.get("gpu") or [] if isinstance(g, dict)]
    if (
        not precision.startswith("int8")
        or not gpus
        or any(int8_capable(g.get("compute_capability")) is not False for g in gpus)
    ):
        return
    found = ", ".join(f"{g.get('name')} (SM {g.get('compute_capability')})" for g in gpus)
    raise BuildError(
        f"{target}: {precision} needs INT8 kernels, which the target's GPU {found} lacks: TensorRT runs INT8 "
        "only on compute capability 6.1 and 7.0 or higher (support matrix; Jetson Nano/TX1 are SM 5.3, TX2 "
        "SM 6.2), and trtexec would build FP32/FP16 kernels under the int8 name. Build fp16 (or fp32) for "
        "this target: leave int8-* out of build.precisions when building for it (e.g. dvc exp run -S "
        "'build.precisions=[fp32,fp16]')"
    )


def _build_tensorrt(cfg: Config, dev, precision: str, fingerprint: dict, out: Path) -> dict:
    """tensorrt: lint, then trtexec on the device with the recipe of its TensorRT version."""
    p, trt = target_plan(cfg, dev.name, precision, fingerprint), dev.target.tensorrt
    version = fingerprint["tensorrt"]
    source_sha256 = sha256_file(p.uploads[ONNX_NAME])  # the recipe's model (p.meta["trt_onnx"] says which)
    # an opset the device's ONNX parser reads: down-converted and verified on real inputs (#14)
    p.uploads[ONNX_NAME], onnx_meta = opset.fit(p.uploads[ONNX_NAME], version, dev.name, out, LAYOUT.split("calib"))
    for local in {*p.uploads.values()}:
        if local.suffix == ".onnx":
            trt_lint.check(local, version, dev.name)  # fail fast, before any upload
    dla = dla_lint.check(p.uploads[ONNX_NAME], dev.name) if p.meta.get("trt_dla") else {}  # #19, before upload
    with dev.scratch(f"build-{precision}") as d:
        for name, local in p.uploads.items():
            dev.host.put(local, f"{d}/{name}")
        res = dev.call(
            "build",
            {
                "runtime": "tensorrt",
                "argv": p.argv,
                "out_dir": d,
                "engine": p.engine,
                "log": p.log,
                "timeout": dev.target.command_timeout_s,
            },
        )
        log_text = ""
        if p.log in res["files"]:
            _fetch(dev, d, {p.log: res["files"][p.log]}, out)
            log_text = (out / p.log).read_text(errors="replace")
        meta = check_build(log_text, res["exit_code"], p, dev.name)
        _fetch(dev, d, {n: s for n, s in res["files"].items() if n in (p.engine, p.layer_info)}, out)
    if not (out / p.engine).is_file():
        raise BuildError(f"{dev.name}: trtexec reported success but wrote no engine ({p.engine})")
    if dla:  # #19: where the layers ran, bounded by tensorrt.max_gpu_fallback
        dla |= dla_placement.record(log_text, p.uploads[ONNX_NAME], trt.max_gpu_fallback, dev.name, trt.dla_core)
    return {
        "artifact": p.engine,
        "runtime_version": meta.get("tensorrt_version") or version,
        "build_log": p.log,
        "device_build_seconds": res["build_seconds"],
        "source_onnx_sha256": source_sha256,
        **meta,
        **onnx_meta,
        **(trt_lint.int8_fallbacks(log_text, p.uploads[ONNX_NAME]) if "--int8" in p.flags else {}),  # #14
        **dla,
    }


def run(
    cfg: Config, target_name: str, precision: str, out: Path, log: Callable[[str], None] | None = None
) -> BuildRecord | SkippedRecord:
    """Build ``precision`` for ``target_name`` on the device into ``out`` (with its ``build.json``),
    or, when it does not apply to the device, write the skipped record there instead.
    ``log`` gets progress lines (long commands, large transfers)."""
    target = cfg.target[target_name]
    fp = read_fingerprint(LAYOUT.fingerprint(target_name), target_name)
    applies = support(fp, target.runtime, precision, cfg.bench.emulated)
    if applies.skipped:  # before connecting: nothing is uploaded, no artifact is made
        skipped = SkippedRecord(applies.skipped, target_name, precision, target.runtime)
        skipped.write(out / "build.json")
        return skipped
    if target.runtime == "tensorrt":
        _check_int8_gpu(target_name, precision, fp)  # before connecting: nothing is uploaded
    choices = choose(fp, target.runtime, precision, threads=target.threads, ort_reduce_range=cfg.quant.ort_reduce_range)
    onnx_path = LAYOUT.precision_onnx(precision, target.runtime, choices.get("ort_int8_layout"))
    if log:
        log("device choices: " + ", ".join(f"{k}={v}" for k, v in choices.items() if k != "reasons"))
    t0 = time.perf_counter()
    runtime = get_runtime(target.runtime)
    not_run = runtime.not_run_reason(fp)  # e.g. Core ML off macOS: built, but neither benchmarked nor evaluated
    if runtime.converts_on_host:
        src = _host_source(cfg, target_name, precision, onnx_path, choices)
        artifact, built = _convert(runtime, src, out)
        if not not_run:  # else the device is never contacted
            with device(target_name, target, log) as dev:
                built |= _check_converted(dev, runtime, src, artifact)
    else:
        with device(target_name, target, log) as dev:
            if runtime.builds_on_device:  # its own toolchain recipe, run by the agent (Hailo's Dataflow Compiler)
                built = runtime.build_on_device(cfg, dev, precision, fp, out)
            elif target.runtime == "tensorrt":
                built = _build_tensorrt(cfg, dev, precision, fp, out)
            else:
                built = _build_runtime(cfg, dev, precision, onnx_path, out, choices, applies.emulated is not None)
    if not_run:
        built["not_run"] = not_run
    art = out / built["artifact"]
    emulated = applies.emulated or built.pop("emulated", None)  # the device's verdict, else the runtime's
    rec = BuildRecord.from_json(
        {
            "target": target_name,
            "precision": precision,
            "runtime": target.runtime,
            "host": target.transport if target.transport == "local" else f"{target.host}:{target.port}",
            "device_fingerprint_sha256": fp["fingerprint_sha256"],
            "sha256": sha256_file(art),
            "size_bytes": sum(p.stat().st_size for p in out.iterdir() if p.is_file()),
            "source_onnx_sha256": sha256_file(onnx_path),
            "build_seconds": time.perf_counter() - t0,
            **built,
            "device_choices": choices,
            **({"emulated": emulated} if emulated else {}),
        }
    )
    rec.write(out / "build.json")
    return rec


def inputs(target_name: str) -> StageInputs | None:
    """What ``build@<target>`` depends on (``dvc.yaml``), for :func:`record`'s reuse."""
    return inputs_of("build", target_name)


def record(
    cfg: Config,
    target_name: str,
    precision: str,
    log: Callable[[str], None] | None = None,
    ins: StageInputs | None = None,
) -> BuildRecord | SkippedRecord:
    """:func:`run` into the stage's outputs (the build folder, then its metrics); a failure
    leaves neither behind. With ``ins`` (:func:`inputs`), a build whose inputs did not change
    since it was made is kept as it is; one already built for a target of the same device class is
    copied (:mod:`tasks.device.class_store`) unless ``build.share_by_class`` is false."""
    out, metrics = LAYOUT.build_dir(target_name, precision), LAYOUT.build_metrics(target_name, precision)
    want = item_digest(ins, target_name, precision)
    if unchanged(metrics, want, out / "build.json"):
        rec = _read(metrics)
        if log:
            log("unchanged since it was built: kept")
        return rec
    share = class_store.plan(cfg, target_name, precision, ins)  # None: this target builds, whatever its class
    try:
        with atomic_dir(out) as tmp:
            make = lambda: run(cfg, target_name, precision, tmp, log)  # noqa: E731
            rec = make() if share is None else class_store.build_or_share(share, tmp, make, log or (lambda m: None))
        write_record(rec, metrics, want)
    except BaseException:
        remove(metrics)
        raise
    return rec


def _read(path: Path) -> BuildRecord | SkippedRecord:
    return SkippedRecord.read_if_skipped(path) or BuildRecord.read(path)


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("build", matrix=True).parse_args(argv)
    name = f"build@{args.target}"
    with stage.stage_errors(name):
        cfg = stage.load(args)
        ins = inputs(args.target)
        if args.precision is None:  # the whole stage: builds no longer configured go
            for gone in prune(LAYOUT.builds(args.target), set(cfg.build.precisions)) + prune(
                LAYOUT.build_metrics_dir(args.target), set(cfg.build.precisions), ".json"
            ):
                stage.log(name, f"removed {gone} (no longer in build.precisions)")

        def one(precision: str) -> None:
            k = key(args.target, precision)
            rec = record(cfg, args.target, precision, lambda m: stage.log(f"build@{k}", m), ins)
            if isinstance(rec, SkippedRecord):
                stage.log(f"build@{k}", f"n/a: {rec.skipped}")
                return
            emulated = f"; {rec.extra['emulated']}" if rec.extra.get("emulated") else ""
            size = f"{rec.artifact} {rec.size_bytes / 1e6:.2f} MB"
            if rec.extra.get("shared_from"):  # a build of its device class, copied: countable apart from builds
                src = f"build@{key(rec.extra['shared_from'], precision)}"
                stage.log(
                    f"build@{k}",
                    f"shared from {src} (class {rec.extra['device_class']}), sha256 verified: {size} "
                    f"copied in {rec.build_seconds:.2f} s{emulated}",
                )
                return
            if rec.extra.get("not_run"):  # made for a device that cannot run it: benchmark and evaluate are n/a
                where = "on this host" if rec.extra.get("converted_on_host") else f"on {rec.host}"
                stage.log(
                    f"build@{k}", f"built {size} {where} in {rec.build_seconds:.2f} s, not run: {rec.extra['not_run']}"
                )
                return
            stage.log(f"build@{k}", f"built {size} on {rec.host} in {rec.build_seconds:.2f} s{emulated}")

        stage.each(
            stage.precisions(cfg, args),
            one,
            lambda p: [LAYOUT.build_dir(args.target, p), LAYOUT.build_metrics(args.target, p)],
            lambda p: f"build@{key(args.target, p)}",
        )


if __name__ == "__main__":
    main()
