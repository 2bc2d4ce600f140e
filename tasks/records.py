"""Typed records of what stages write and other stages read back: one dataclass per record, used by
its writer and by every reader (the report, MLflow tracking, the evaluate stage), instead of dicts
read back by key in several places.

The JSON form is flat and unchanged from the stage's metrics file: declared fields are written by
name (optional ones left out while ``None``); keys a record does not declare (runtime-specific
build facts, the int8-mixed search's detail) travel in ``extra`` and are written back beside them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from tasks.io import read_json, write_json


class RecordError(FileNotFoundError):
    """A stage's record is missing (the stage that writes it has not run) or incomplete (an older
    EdgeForge wrote it); the message says which stage to run."""


def opt(default: Any = None) -> Any:
    """An optional field: left out of the JSON while ``None``."""
    return field(default=default, metadata={"omit_none": True})


def _extra() -> Any:
    return field(default_factory=dict)


class Record:
    """to_json/from_json/read/write for the dataclasses below."""

    stage: ClassVar[str] = ""  # the stage that writes it (for the message when it is missing)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.name == "extra" or (v is None and f.metadata.get("omit_none")):
                continue
            out[f.name] = v
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}  # type: ignore[arg-type]
        missing = [
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.name in names
            and f.name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"{cls.__name__}: missing field(s) {', '.join(missing)}")
        return cls(
            **{k: v for k, v in data.items() if k in names}, extra={k: v for k, v in data.items() if k not in names}
        )

    @classmethod
    def read(cls, path: str | Path) -> Self:
        path = Path(path)
        if not path.is_file():
            raise RecordError(f"{path} is missing: run the stage that writes it (`dvc repro {cls.stage}`)")
        try:
            return cls.from_json(read_json(path))
        except ValueError as e:  # a field missing, or not JSON: another version wrote it, or it was cut short
            raise RecordError(
                f"{path}: {e}; run the stage that writes it again (`dvc repro --force {cls.stage}`)"
            ) from e

    @classmethod
    def read_if(cls, path: str | Path) -> Self | None:
        """The record, or ``None`` when its file does not exist."""
        return cls.read(path) if Path(path).is_file() else None

    def write(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())


def read_fingerprint(path: str | Path, target: str) -> dict[str, Any]:
    """The device fingerprint ``probe@<target>`` recorded at ``path`` (a plain mapping: its keys
    are whatever the device agent found)."""
    if not Path(path).is_file():
        raise RecordError(f"no fingerprint for target {target!r} ({path}); run `dvc repro probe@{target}`")
    return read_json(path)


@dataclass
class QuantizeRecord(Record):
    """``quantize@<precision>``: the ONNX model a precision builds from (``quantize.json``)."""

    stage: ClassVar[str] = "quantize"
    precision: str
    source_onnx_sha256: str
    sha256: str = ""
    size_bytes: int = 0
    seconds: float = 0.0
    keep_io_types: bool | None = opt()  # fp16
    calibrator: str | None = opt()  # int8
    quantized_nodes: list[str] | None = opt()
    residual_adds: int | None = opt()  # int8: residual Adds with a Q/DQ on their residual input
    accepted: bool | None = opt()  # int8-mixed: the plan met quant.max_drop
    reason: str | None = opt()
    kept_fp32: list[dict] | None = opt()  # int8-mixed: {node, op_type, rank, drop, sqnr_db, why}
    coverage: dict | None = opt()  # int8: {calib, eval, warnings} (tasks.data.coverage.coverage)
    extra: dict[str, Any] = _extra()


@dataclass
class BuildRecord(Record):
    """``build@<key>``: the artifact built on the device (``build.json``)."""

    stage: ClassVar[str] = "build"
    target: str
    precision: str
    runtime: str
    artifact: str  # file name inside the build folder
    runtime_version: str
    host: str
    sha256: str
    size_bytes: int
    source_onnx_sha256: str
    build_seconds: float
    device_fingerprint_sha256: str | None = None
    extra: dict[str, Any] = _extra()  # the runtime's own facts (OpenVINO precision hint, TensorRT log, ...)


@dataclass
class SkippedRecord(Record):
    """A build, benchmark or evaluation that does not apply to the target (bf16 on ONNX Runtime,
    an emulated precision under ``bench.emulated: skip``; :mod:`tasks.device.support`): written in
    place of the stage's record, with no artifact. Readers treat it as "not applicable": never a
    failure, never a winner; the report shows the row as "n/a: <skipped>"."""

    stage: ClassVar[str] = "build"
    skipped: str  # why it does not apply, and what to do
    target: str
    precision: str
    runtime: str
    extra: dict[str, Any] = _extra()

    @classmethod
    def read_if_skipped(cls, path: str | Path) -> SkippedRecord | None:
        """The skipped record at ``path``, or None when the file is missing or records a real result."""
        path = Path(path)
        if not path.is_file():
            return None
        data = read_json(path)
        return cls.from_json(data) if isinstance(data, dict) and "skipped" in data else None


def skipped_build(build_dir: str | Path) -> SkippedRecord | None:
    """The skipped record of the build in ``build_dir`` (``build.json``), or None for a real build."""
    return SkippedRecord.read_if_skipped(Path(build_dir) / "build.json")


def not_run_build(build_dir: str | Path) -> SkippedRecord | None:
    """For a build made but not run on its device (``not_run`` in its record: Core ML off macOS, a runtime
    EdgeForge cannot run there yet), the skipped record its benchmark and evaluation write instead: the
    artifact exists, its figures do not. None for a build that ran (or a skipped one)."""
    path = Path(build_dir) / "build.json"
    data = read_json(path) if path.is_file() else None
    if not isinstance(data, dict) or "skipped" in data or not data.get("not_run"):
        return None
    why = f"built ({data.get('artifact')}), not run: {data['not_run']}"
    return SkippedRecord(why, data["target"], data["precision"], data["runtime"])


def built_artifact(build_dir: str | Path) -> Path:
    """The artifact file inside a build folder (named in its ``build.json``)."""
    build_dir = Path(build_dir)
    if not (build_dir / "build.json").is_file():
        raise RecordError(f"{build_dir} holds no build (build.json missing); run `dvc repro build`")
    return build_dir / BuildRecord.read(build_dir / "build.json").artifact


def artifact_files(build_dir: str | Path) -> list[Path]:
    """The files a build's artifact is made of (the artifact first, then e.g. OpenVINO's ``.bin``):
    every file of the build folder but its record, logs, JSON side files and the ONNX a TensorRT build
    down-converted to upload (``onnx_opset_conversion``: a source, not part of the engine)."""
    build_dir = Path(build_dir)
    art = built_artifact(build_dir)  # the record is there
    source = (BuildRecord.read(build_dir / "build.json").extra.get("onnx_opset_conversion") or {}).get("file")
    rest = [
        p
        for p in sorted(build_dir.iterdir())
        if p.is_file() and p != art and p.name not in ("build.json", source) and p.suffix not in (".log", ".json")
    ]
    return [art, *rest]


def built_from(precision: str, runtime: str, build_dir: str | Path) -> Path:
    """The ONNX the build in ``build_dir`` was made from: the precision's model for ``runtime``, or
    the FP16-glue Q/DQ model a strongly typed TensorRT build uploaded (its record's ``trt_onnx``), or the
    ONNX Runtime INT8 layout its ``device_choices`` picked."""
    from tasks.layout import LAYOUT

    rec = BuildRecord.read(Path(build_dir) / "build.json")
    if rec.extra.get("trt_onnx") == "fp16_glue_onnx":
        return LAYOUT.fp16_glue_onnx(precision)
    return LAYOUT.precision_onnx(precision, runtime, (rec.extra.get("device_choices") or {}).get("ort_int8_layout"))


@dataclass
class BenchmarkRecord(Record):
    """``benchmark@<key>``: latency per batch size (``{"b1": stats, ...}``), scenarios, roofline."""

    stage: ClassVar[str] = "benchmark"
    runtime: str
    runtime_version: Any
    host: str
    threads: int | None = None
    cpu_count: int | None = None
    latency: dict[str, dict] = field(default_factory=dict)
    unstable: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    hygiene: dict[str, Any] = field(default_factory=dict)
    accepted: bool = True
    reason: str = ""
    cold: dict[str, float] | None = opt()  # load_ms, first_inference_ms
    single_stream: dict[str, Any] | None = opt()
    offline: dict[str, dict] | None = opt()
    max_p99_ms: float | None = None  # the latency budget (bench.max_p99_ms) it was judged by
    roofline: dict[str, Any] | None = opt()
    torch: dict[str, dict] | None = opt()  # PyTorch eager, side by side (local FP32)
    speedup_vs_torch: dict[str, float] | None = opt()
    trtexec: dict[str, Any] | None = opt()  # TensorRT: trtexec's own summary per batch size
    latency_unavailable: str | None = opt()
    # batch 1 from image to decoded result, split (tasks.metrics.end_to_end): *_ms, total_ms, what
    end_to_end: dict[str, Any] | None = opt()
    extra: dict[str, Any] = _extra()


@dataclass
class EvaluateRecord(Record):
    """``evaluate@<key>``: the task metric on the device, its drop, three-way parity, the verdict."""

    stage: ClassVar[str] = "evaluate"
    samples: int
    task: str
    metric: str
    value: float
    reference_value: float
    drop: float
    max_drop: float
    accepted: bool
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    per_class: dict[str, Any] = field(default_factory=dict)
    worst_class_drop: float = 0.0
    worst_classes: list[dict] = field(default_factory=list)
    top1_agreement: float | None = opt()  # classification
    worst_image_drop: float | None = opt()  # binary segmentation: largest per-image Dice drop, points
    worst_images: list[dict] | None = (
        opt()
    )  # binary segmentation: {image (index in the eval split), reference, value, drop}
    parity: dict[str, Any] | None = opt()  # three-way parity (legs, failed, worst)
    extra: dict[str, Any] = _extra()
