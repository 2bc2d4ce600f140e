"""Where every output lives: the one module that names EdgeForge's paths.

Stages, the report, MLflow tracking, the Prefect flows and the CLI all ask a :class:`Layout`
(built from the project root) instead of spelling paths themselves, and ``dvc.yaml`` declares
exactly what :meth:`Layout.declared` lists (a test checks both agree). Paths are relative to
``root``; the default root ``.`` is the folder DVC runs stages in.

Device stages run per target (``probe@<target>``, ``build@<target>``, ``measure@<target>``), each over
every precision; one build is named ``<target>-<precision>`` (:func:`key`) in logs, the report and
MLflow, and lives in ``artifacts/build/<target>/<precision>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: file name of an ``int8-<calibrator>`` precision's FP16-glue Q/DQ model in its quantize folder
FP16_GLUE_ONNX = "model.fp16glue.onnx"

#: The ONNX Runtime INT8 models of one precision (same ranges), ``model.ort.<layout>.onnx``; the build
#: picks one by the target's fingerprint (:mod:`tasks.device.choices`). ``u8s8``: uint8 asymmetric
#: activations, int8 full-range weights (x86 VNNI/AMX, Arm dot product); ``s8s8r7``: int8 symmetric
#: activations, 7-bit weights (x86 without VNNI: no int16 saturation).
ORT_INT8_LAYOUTS = ("u8s8", "s8s8r7")


def ort_int8_onnx(layout: str) -> str:
    """File name of the ONNX Runtime INT8 model in ``layout`` (one of :data:`ORT_INT8_LAYOUTS`)."""
    if layout not in ORT_INT8_LAYOUTS:
        raise ValueError(f"ONNX Runtime INT8 layout {layout!r} is not one of {', '.join(ORT_INT8_LAYOUTS)}")
    return f"model.ort.{layout}.onnx"


def key(target: str, precision: str) -> str:
    """The name of one build (logs, the report, MLflow runs)."""
    return f"{target}-{precision}"


@dataclass(frozen=True)
class Layout:
    """Every output path of a project rooted at ``root``."""

    root: Path = Path(".")

    # -- top-level folders ------------------------------------------------------------------
    @property
    def artifacts(self) -> Path:
        """Stage outputs (models, splits, reports), cached by DVC."""
        return self.root / "artifacts"

    @property
    def metrics(self) -> Path:
        """One JSON per stage (DVC ``metrics:``, not cached)."""
        return self.root / "metrics"

    @property
    def params(self) -> Path:
        """The composed config (``conf/`` -> ``params.yaml``)."""
        return self.root / "params.yaml"

    # -- prepare ----------------------------------------------------------------------------
    @property
    def prepare_dir(self) -> Path:
        return self.artifacts / "prepare"

    def split(self, name: str) -> Path:
        """A prepared split folder (``calib`` or ``eval``): ``x.npy``, ``y.npy`` and, for images read from
        files, ``meta.npy`` (``tasks/data/split.py``)."""
        return self.prepare_dir / name

    @property
    def classes(self) -> Path:
        """Class names of the prepared splits, beside them."""
        return self.prepare_dir / "classes.json"

    @property
    def trained_checkpoint(self) -> Path:
        """The bundled examples' checkpoint, written by ``prepare`` (``model.checkpoint``'s default)."""
        return self.prepare_dir / "model.pt"

    @property
    def prepare_metrics(self) -> Path:
        return self.metrics / "prepare.json"

    # -- checkpoint -------------------------------------------------------------------------
    @property
    def checkpoint_record(self) -> Path:
        """What ``model.checkpoint`` was when the checkpoint stage last checked it (path, format)."""
        return self.artifacts / "checkpoint.json"

    # -- export / parity --------------------------------------------------------------------
    @property
    def onnx(self) -> Path:
        """The verified, simplified FP32 export."""
        return self.artifacts / "export" / "model.onnx"

    @property
    def export_metrics(self) -> Path:
        return self.metrics / "export.json"

    @property
    def exporter_log(self) -> Path:
        """What the exporters printed and logged, kept out of the terminal. Not a DVC output: outputs
        are removed when a stage fails, which is when this log is wanted."""
        return self.state_dir / "logs" / "exporter.log"

    @property
    def reference(self) -> Path:
        """PyTorch FP32 outputs on the eval split, by output name (``.npz``)."""
        return self.artifacts / "parity" / "reference.npz"

    @property
    def fidelity_targets(self) -> Path:
        """``model.task`` fidelity: FP32's eval-split outputs decoded as ``eval.fidelity_of`` (the ground
        truth every precision is scored against, ``.npz``); empty for a labelled task."""
        return self.artifacts / "parity" / "fidelity_targets.npz"

    @property
    def parity_metrics(self) -> Path:
        return self.metrics / "parity.json"

    # -- quantize ---------------------------------------------------------------------------
    @property
    def quantize_root(self) -> Path:
        """Every precision's models (the ``quantize`` stage's output), one folder per precision."""
        return self.artifacts / "quantize"

    def quantize_dir(self, precision: str) -> Path:
        return self.quantize_root / precision

    @property
    def quantize_metrics_dir(self) -> Path:
        return self.metrics / "quantize"

    def quantize_metrics(self, precision: str) -> Path:
        return self.quantize_metrics_dir / f"{precision}.json"

    def precision_onnx(self, precision: str, runtime: str | None = None, ort_layout: str | None = None) -> Path:
        """The ONNX model builds of ``precision`` start from. INT8 has several layouts of the same
        ranges: ``model.onnx`` (TensorRT's explicit-quantization placement, for TensorRT and
        OpenVINO) and ``model.ort.<ort_layout>.onnx`` (the placement ONNX Runtime fuses into int8
        kernels, one per :data:`ORT_INT8_LAYOUTS`: an ``onnxruntime`` INT8 model needs ``ort_layout``)."""
        d = self.quantize_dir(precision)
        if runtime == "onnxruntime" and precision.startswith("int8-"):
            if ort_layout is None:
                raise ValueError(f"{precision} on onnxruntime: which ONNX Runtime INT8 layout (ort_layout)?")
            return d / ort_int8_onnx(ort_layout)
        return d / "model.onnx"

    def fp16_glue_onnx(self, precision: str) -> Path:
        """``int8-<calibrator>``'s Q/DQ model with FP16 glue (FP16 non-quantized layers and scales,
        FP32 inputs/outputs), which TensorRT 11 builds strongly typed (:mod:`tasks.quant.fp16_glue`)."""
        return self.quantize_dir(precision) / FP16_GLUE_ONNX

    def sensitivity(self, precision: str) -> tuple[Path, Path]:
        """``int8-mixed``'s ranked layer table and its chart, beside its models."""
        d = self.quantize_dir(precision)
        return d / "sensitivity.json", d / "sensitivity.png"

    # -- probe / build / benchmark / evaluate -----------------------------------------------
    def fingerprint(self, target: str) -> Path:
        return self.artifacts / "probe" / f"{target}.json"

    def peak(self, target: str) -> Path:
        """The target's nominal and measured compute peaks (written by ``probe@<target>``, after the
        fingerprint)."""
        return self.artifacts / "peak" / f"{target}.json"

    def build_dir(self, target: str, precision: str) -> Path:
        """One build: the artifact, its build log and ``build.json``. Builds are grouped by target
        (:meth:`builds`), the folder ``build@<target>`` owns."""
        return self.builds(target) / precision

    def builds(self, target: str) -> Path:
        """Every build of ``target``, one folder per precision."""
        return self.artifacts / "build" / target

    def build_metrics(self, target: str, precision: str) -> Path:
        return self.build_metrics_dir(target) / f"{precision}.json"

    def build_metrics_dir(self, target: str) -> Path:
        return self.metrics / "build" / target

    def benchmark_metrics(self, target: str, precision: str) -> Path:
        return self.benchmark_metrics_dir(target) / f"{precision}.json"

    def benchmark_metrics_dir(self, target: str) -> Path:
        return self.metrics / "benchmark" / target

    def evaluate_metrics(self, target: str, precision: str) -> Path:
        return self.evaluate_metrics_dir(target) / f"{precision}.json"

    def evaluate_metrics_dir(self, target: str) -> Path:
        return self.metrics / "evaluate" / target

    # -- report -----------------------------------------------------------------------------
    @property
    def report_dir(self) -> Path:
        return self.artifacts / "report"

    @property
    def summary(self) -> Path:
        return self.report_dir / "summary.json"

    @property
    def summary_md(self) -> Path:
        return self.report_dir / "summary.md"

    @property
    def report_html(self) -> Path:
        return self.report_dir / "report.html"

    @property
    def plots_dir(self) -> Path:
        """The report's series as CSV, declared in ``dvc.yaml``'s ``plots:``."""
        return self.report_dir / "plots"

    @property
    def pareto_csv(self) -> Path:
        return self.plots_dir / "pareto.csv"

    @property
    def latency_plots(self) -> Path:
        """One CSV per target: latency by percentile, a column per precision."""
        return self.plots_dir / "latency"

    def parity_png(self, key: str) -> Path:
        """The three-way |difference| histograms of one build."""
        return self.report_dir / "parity" / f"{key}.png"

    # -- the drivers' own state (not DVC outputs) -------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.root / ".edgeforge"

    @property
    def params_draft(self) -> Path:
        """params.yaml being composed: checked before it replaces ``params``."""
        return self.state_dir / "params.yaml.tmp"

    @property
    def pipeline_lock(self) -> Path:
        """One pipeline run per workspace at a time (the Prefect flow's lock)."""
        return self.state_dir / "pipeline.lock"

    def run_logs(self, run_id: str) -> Path:
        """Each stage's log of one flow run."""
        return self.state_dir / "logs" / run_id

    @property
    def prefect_server_log(self) -> Path:
        return self.state_dir / "prefect-server.log"

    @property
    def class_builds(self) -> Path:
        """Builds shared by the targets of a device class (:mod:`tasks.device.class_store`), by class,
        then ``<precision>-<inputs digest[:16]>``: what ``build@<target>`` copies instead of building."""
        return self.state_dir / "class-builds"

    def class_build(self, device_class: str, entry: str) -> Path:
        """One shared build: its files and ``build.json`` (with every file's sha256)."""
        return self.class_builds / device_class / entry

    def class_lock(self, device_class: str, entry: str) -> Path:
        """Held (``flock``) by the target building or copying that shared build: one builds, the others wait."""
        return self.class_builds / device_class / f"{entry}.lock"

    @property
    def registry_downloads(self) -> Path:
        """Checkpoints the watcher downloaded from the MLflow registry, by model and version."""
        return self.state_dir / "watch" / "registry"

    # -- what dvc.yaml declares -------------------------------------------------------------
    def declared(self) -> dict[str, dict[str, list[Path]]]:
        """Each stage's declared outputs by kind (``outs``, ``metrics``), with DVC's matrix
        placeholder ``${item.target}`` for the per-target stages, plus the
        top-level ``plots``. ``dvc.yaml`` must declare exactly these."""
        t = "${item.target}"
        return {
            "prepare": {"outs": [self.prepare_dir], "metrics": [self.prepare_metrics]},
            "checkpoint": {"outs": [self.checkpoint_record], "metrics": []},
            "export": {"outs": [self.onnx], "metrics": [self.export_metrics]},
            "parity": {"outs": [self.reference, self.fidelity_targets], "metrics": [self.parity_metrics]},
            "quantize": {"outs": [self.quantize_root], "metrics": [self.quantize_metrics_dir]},
            "probe": {"outs": [self.fingerprint(t), self.peak(t)], "metrics": []},
            "build": {"outs": [self.builds(t)], "metrics": [self.build_metrics_dir(t)]},
            "measure": {"outs": [], "metrics": [self.benchmark_metrics_dir(t), self.evaluate_metrics_dir(t)]},
            "report": {"outs": [self.report_dir], "metrics": []},
            "plots": {"outs": [self.pareto_csv, self.latency_plots], "metrics": []},
        }


LAYOUT = Layout()
"""The layout of the project in the current folder (where DVC runs the stages)."""
