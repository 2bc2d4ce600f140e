"""The configuration schema. One dataclass per config group (``conf/<group>/``), named like the
group (capitalised), its ``params.yaml`` section and its ``dvc.yaml`` params entry (docs/architecture.md, rule 3).

Every field has a default and a one-line doc (``metadata["doc"]``); ``python -m tasks.config``
prints the reference that the README embeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Task = Literal["classification", "detection", "segmentation", "keypoints", "fidelity"]
# what a fidelity model's outputs are decoded as before they are compared with FP32's (eval.fidelity_of)
FidelityOf = Literal["classification", "detection", "segmentation", "keypoints", "none"]
Precision = Literal["fp32", "fp16", "bf16", "int8-minmax", "int8-entropy", "int8-percentile", "int8-mixed"]


def f(default: Any, doc: str) -> Any:
    """A dataclass field with a default (copied if mutable) and a one-line doc."""
    if isinstance(default, (list, dict)) or hasattr(default, "__dataclass_fields__"):
        import copy

        return field(default_factory=lambda: copy.deepcopy(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class InputSpec:
    name: str = f("input", "name of the model's (single) image input in the ONNX graph")
    shape: list[int] = f([1, 28, 28], "one sample's shape, channels first: [C, H, W] (batch excluded)")
    dtype: Literal["float32"] = f("float32", "input dtype fed to the model")
    channel_order: Literal["rgb", "bgr", "gray"] = f("gray", "channel order the model expects")
    resize: list[int] | None = f(None, "[H, W] images are resized to; null = shape's H, W")
    letterbox: bool = f(
        False,
        "images read from files keep their aspect ratio: scaled to fit [H, W] and centre-padded with pad_value "
        "(Ultralytics' LetterBox as YOLO validation uses it); false = stretched to [H, W]",
    )
    pad_value: int = f(114, "letterbox: the value (0..255, every channel) of the padding, before scale/mean/std")
    scale: float = f(1 / 255, "pixel values (0..255) are multiplied by this before mean/std")
    mean: list[float] = f([0.1307], "per-channel mean subtracted after scaling")
    std: list[float] = f([0.3081], "per-channel std divided by after mean subtraction")
    dynamic_batch: bool = f(True, "export with a dynamic batch axis (verified after export)")


@dataclass
class Model:
    format: Literal["state_dict", "torchscript", "pt2", "onnx"] = f(
        "state_dict", "checkpoint format: state_dict + arch, TorchScript, torch.export .pt2, or ONNX"
    )
    checkpoint: str = f("artifacts/prepare/model.pt", "path of the trained checkpoint")
    arch: str | None = f("mnist_cnn", "model class for format=state_dict: a registered name or 'module:Class'")
    arch_kwargs: dict[str, Any] = f({}, "keyword arguments for the model class")
    trust_checkpoint: bool = f(False, "allow full pickle loading (weights_only=False); only for files you trust")
    input: InputSpec = f(InputSpec(), "input specification")
    task: Task = f(
        "classification",
        "what the outputs mean, and so how they are scored: classification (top-1/top-5), "
        "detection (COCO mAP, boxes decoded by eval.decoder), segmentation (mIoU, Dice), "
        "keypoints (COCO OKS AP, keypoints decoded by eval.decoder: heatmap or yolov8_pose), fidelity (no labels: "
        "agreement with the FP32 model's own decoded outputs, decoded as eval.fidelity_of)",
    )
    outputs: list[str] = f(["logits"], "names given to the model's outputs, in order")
    scores_output: str = f(
        "logits",
        "classification/segmentation: the output holding class scores ((N, K) or (N, K, H, W)); one of outputs",
    )
    seg_output: Literal["probabilities", "logits"] = f(
        "probabilities",
        "segmentation with one output channel (N, 1, H, W): probabilities = the map is already a sigmoid "
        "(DBNet/PaddleOCR text detectors; checked to lie in 0..1), logits = scores before the sigmoid "
        "(U-Net exports without a final activation)",
    )
    seg_threshold: float = f(
        0.5, "segmentation with one output channel: a pixel is foreground when its probability is above this"
    )


@dataclass
class SplitSource:
    source: Literal["loader", "imagefolder", "npz", "coco", "yolo", "masks", "images"] = f(
        "loader",
        "where the split comes from: loader, imagefolder (a subfolder per class), npz (x/y arrays), coco "
        "(images + instances JSON), yolo (Ultralytics layout), masks (images + PNG class maps), images (unlabelled)",
    )
    path: str | None = f(
        None,
        "source != loader: the image folder (imagefolder, coco, masks, images), the .npz file, or the "
        "dataset root holding data.yaml, images/ and labels/ (yolo)",
    )
    annotations: str | None = f(
        None, "coco: the instances JSON; masks: the folder of same-named PNG class maps (255 = ignore)"
    )
    split: str | None = f(None, "yolo: the subfolder of images/ and labels/ to read (train, val, test)")
    limit: int | None = f(None, "use at most this many samples (a seeded random subset); null = all")


@dataclass
class Data:
    loader: str = f("mnist_digits", "registered data loader (used by splits with source=loader)")
    seed: int = f(0, "seed for shuffling and subsetting")
    category_ids: list[int] | None = f(
        None,
        "coco: the category id of class 0, 1, ... (COCO's 80 classes have ids 1..90 with gaps); "
        "null = the JSON's categories sorted by id",
    )
    calib: SplitSource = f(SplitSource(limit=500), "calibration split (disjoint from eval)")
    eval: SplitSource = f(SplitSource(), "evaluation split")
    batch_size: int = f(64, "batch size used when streaming splits")
    generate: str | None = f(
        None,
        "registered example dataset writer prepare runs first, writing <generate_dir>/<generate>/ afresh for "
        "data.calib/eval.path to read (mnist_coco: the detection canvases as PNGs + COCO JSON); null = none",
    )
    generate_dir: str = f("data/generated", "folder the data.generate writers write into (gitignored)")


@dataclass
class Prepare:
    train: str | None = f("mnist_cnn", "registered example trainer writing model.checkpoint; null = bring your own")
    epochs: int = f(8, "training epochs (example trainer)")
    batch_size: int = f(64, "training batch size (example trainer)")
    lr: float = f(3e-3, "learning rate (example trainer)")
    seed: int = f(0, "training seed (example trainer)")


@dataclass
class Export:
    exporter: Literal["dynamo", "torchscript"] = f(
        "dynamo", "torch.onnx exporter tried first (torchscript checkpoints always use torchscript, .pt2 always dynamo)"
    )
    fallback: bool = f(True, "fall back to the TorchScript exporter when dynamo fails (reported in metrics)")
    opset: int = f(18, "ONNX opset version")
    simplify: bool = f(True, "simplify with onnxsim")


@dataclass
class Tolerance:
    atol: float = f(1e-4, "max allowed |onnx - torch| per element")
    rtol: float = f(0.0, "extra allowance relative to |torch| per element (numpy.isclose semantics)")


@dataclass
class ArtifactTolerance:
    atol: float = f(1e-3, "max allowed |artifact - onnx| per element")
    rtol: float = f(1e-3, "extra allowance relative to |onnx| per element")
    max_outside: float = f(
        0.0,
        "fraction of an output's elements allowed outside atol/rtol (INT8 runtimes round "
        "differently at layer boundaries: a few elements move by a quantization step)",
    )


@dataclass
class Parity:
    atol: float = f(1e-4, "default absolute tolerance for every output")
    rtol: float = f(0.0, "default relative tolerance for every output")
    outputs: dict[str, Tolerance] = f({}, "per-output tolerance overrides, by output name")
    artifact: dict[str, ArtifactTolerance] = f(
        {
            "fp32": ArtifactTolerance(atol=1e-3, rtol=1e-3),
            "fp16": ArtifactTolerance(atol=5e-2, rtol=5e-2),
            "bf16": ArtifactTolerance(atol=0.25, rtol=0.1),
            "int8": ArtifactTolerance(atol=0.5, rtol=0.1, max_outside=0.01),
        },
        "three-way parity: tolerance of the built artifact on its target against the ONNX it was built from "
        "(run by ONNX Runtime here), by precision family fp32/fp16/bf16/int8; outside it the build is rejected",
    )
    artifact_outputs: dict[str, dict[str, ArtifactTolerance]] = f(
        {}, "three-way parity: per-output overrides of artifact, by output name then precision family"
    )
    histogram_bins: int = f(12, "three-way parity: log-spaced bins of the |difference| histograms")
    batch_size: int = f(32, "batch size of the batched comparison (> 1)")
    batch1_samples: int = f(16, "samples also compared one at a time (batch 1)")


@dataclass
class Quant:
    samples: int = f(500, "calibration images (the whole calib split if smaller; a warning below 100)")
    batch_size: int = f(32, "calibration batch size (streamed: one batch's activations in memory at a time)")
    percentile: float = f(99.99, "percentile of |activation| the percentile calibrator keeps")
    per_channel: bool = f(True, "per-output-channel weight scales")
    trt_version: str = f("8.6.1", "TensorRT version written in the calibration cache header (must match the device)")
    ort_reduce_range: bool | None = f(
        None,
        "ONNX Runtime INT8 model each target builds: null = follow the device's fingerprint (u8s8, full-range "
        "weights, where VNNI/AMX or Arm dot product exist; s8s8 with 7-bit weights elsewhere); true = 7-bit "
        "s8s8 everywhere; false = u8s8 everywhere",
    )
    max_drop: float = f(
        0.5,
        "int8-mixed: keep layers FP32 until the task metric (eval.max_drop's units) drops at most this many points vs FP32 "
        "(on the sensitivity images); no plan within it -> the precision is rejected",
    )
    mixed_calibrator: Literal["minmax", "entropy", "percentile"] = f(
        "percentile", "int8-mixed: calibrator of its ranges"
    )
    sensitivity: Literal["auto", "task", "sqnr"] = f(
        "auto",
        "int8-mixed ranking: task = task-metric drop with one layer INT8 at a time (one evaluation per layer), "
        "sqnr = each layer's output SQNR only (one pass), auto = task up to sensitivity_max_task_layers layers",
    )
    sensitivity_max_task_layers: int = f(32, "auto: above this many quantizable layers, rank by SQNR alone")
    sensitivity_samples: int = f(500, "labelled calibration-split images that score sensitivity and mixed plans")
    sqnr_samples: int = f(64, "images for the per-layer SQNR pass")
    max_kept_fraction: float = f(0.5, "int8-mixed keeps at most this fraction of the quantizable layers FP32")


@dataclass
class Build:
    targets: list[str] = f(["local"], "targets to build for (names defined under target)")
    precisions: list[Precision] = f(
        ["fp32", "fp16", "int8-minmax", "int8-entropy", "int8-percentile", "int8-mixed"],
        "precisions to build: fp32, fp16, bf16 (the FP32 model run in bf16 where the device computes in bf16: "
        "OpenVINO on AVX512_BF16/AMX/Arm bf16), int8-<calibrator>, int8-mixed (sensitive layers kept FP32 automatically)",
    )
    fp16_keep_io_types: bool = f(True, "FP16 builds keep FP32 inputs/outputs")
    share_by_class: bool = f(
        True,
        "targets of one device class (target.<name>.device_class, else the same fingerprinted hardware, toolkits, "
        "power mode and runtime) share one build: the first builds, the others copy it (sha256-verified); "
        "false = every target builds",
    )


@dataclass
class TensorRT:
    trtexec: str = f("/usr/src/tensorrt/bin/trtexec", "trtexec on the device (JetPack's location by default)")
    workspace_mib: int | None = f(None, "builder workspace limit, MiB; null = TensorRT's default")
    dla_core: int | None = f(
        None,
        "build for this DLA core (FP16/INT8 only: fp32 is refused; static batch-1 profile; layers DLA cannot run "
        "fall back to the GPU; TensorRT 8.2-10.7 or 11.4.1+); null = GPU only",
    )
    max_gpu_fallback: float | None = f(
        0.2,
        "dla_core builds: the largest share (0-1) of the model's ONNX nodes that may fall back from DLA to the GPU "
        "(read from the build log; build.json lists each fallen-back layer, its type and TensorRT's reason); a build "
        "above it fails naming them; null = no bound",
    )
    timing_cache: str = f(
        "timing.cache",
        "timing cache on the device, relative to workdir; one file per TensorRT version and GPU "
        "(timing.trt<version>.<gpu>.sm<cc>.cache), reused by every build",
    )
    int8: Literal["qdq", "calib"] = f(
        "qdq",
        "INT8 recipe for TensorRT <= 10: qdq = the explicit Q/DQ model, "
        "calib = FP32 ONNX + calibration cache (implicit; removed in TensorRT 11)",
    )
    builder_optimization_level: int | None = f(
        None, "--builderOptimizationLevel (0-5, TensorRT >= 8.6); null = default"
    )
    plugins: list[str] = f(
        [],
        "plugin libraries (absolute .so paths on the device) the model needs: loaded by the build "
        "(--staticPlugins; --plugins before 8.6) and by every trtexec --loadEngine run; recorded in build.json",
    )
    version_compatible: bool = f(
        False, "--versionCompatible (TensorRT >= 8.6): an engine newer TensorRT runtimes can load; recorded"
    )
    hardware_compatibility: Literal["ampere+", "sameComputeCapability"] | None = f(
        None,
        "--hardwareCompatibilityLevel: ampere+ (TensorRT >= 8.6, built on an Ampere+ GPU) or "
        "sameComputeCapability (>= 10.9), an engine other GPUs can load; null = this GPU only",
    )
    extra_args: list[str] = f([], "extra trtexec arguments appended to every build (no secrets: they are recorded)")


@dataclass
class Hailo:
    hailo: str = f("hailo", "the Dataflow Compiler's `hailo` CLI on the build host (x86-64 Linux; PATH or a path)")
    hw_arch: Literal["hailo8", "hailo8l"] = f(
        "hailo8", "--hw-arch: the chip the .hef runs on (a Hailo-8 HEF does not run on a Hailo-8L, nor back)"
    )
    optimization_level: int | None = f(
        None, "model_optimization_flavor optimization_level (0-4); null = the DFC's default (2, less without a GPU)"
    )
    compression_level: int | None = f(
        None, "model_optimization_flavor compression_level (0-5); null = the DFC's default"
    )
    compiler_max: bool = f(False, "performance_param(compiler_optimization_level=max): slower compile, faster HEF")


@dataclass
class Target:
    transport: Literal["local", "ssh"] = f("local", "how the device is reached: this machine, or SSH")
    runtime: Literal["onnxruntime", "openvino", "tensorrt", "executorch", "hailo", "coreml", "litert"] = f(
        "onnxruntime", "runtime that builds and runs artifacts on the target"
    )
    threads: int | None = f(None, "intra-op threads for the runtime; null = runtime default")
    host: str | None = f(None, "ssh: device address (name or IP)")
    port: int = f(22, "ssh: port")
    user: str | None = f(None, "ssh: login; null = your local user name")
    key_file: str | None = f(None, "ssh: private key file (no passphrase); null = ssh-agent and ~/.ssh's default keys")
    known_hosts: str | None = f(
        None, "ssh: known_hosts file the host key is checked against (never written); null = ~/.ssh/known_hosts"
    )
    allow_unknown_host: bool = f(
        False, "ssh: accept a host key missing from known_hosts (logged); a changed key is always rejected"
    )
    workdir: str = f(".edgeforge", "ssh: work folder on the device (relative = under the login's home)")
    python: str = f("python3", "ssh: Python on the device with the runtime's package (local targets use EdgeForge's)")
    connect_timeout_s: float = f(10.0, "ssh: seconds allowed to connect (TCP, banner, authentication)")
    command_timeout_s: float = f(
        1800.0, "seconds one device command (a build, a benchmark) may run before it is killed"
    )
    retries: int = f(2, "ssh: extra connection attempts after transient network errors (never after auth failures)")
    tensorrt: TensorRT = f(TensorRT(), "runtime=tensorrt: trtexec settings")
    hailo: Hailo = f(Hailo(), "runtime=hailo: Dataflow Compiler settings (the build host is this target)")
    device_class: str | None = f(
        None,
        "builds are shared with the targets of this class (letters, digits, . _ -); you vouch that their "
        "hardware and toolkits are identical; null = the class derived from the fingerprint",
    )
    peak_gflops: dict[str, float] = f(
        {},
        "overrides the nominal peak GFLOP/s (int8: GOP/s) by precision family (fp32, bf16, fp16, int8) that "
        "stage probe@<target> derives from the fingerprint; the measured peak is reported beside it",
    )


@dataclass
class Bench:
    single_stream: bool = f(
        True, "MLPerf-style single-stream scenario: batch 1, one query after the other; reports p50/p90/p99 latency"
    )
    offline_batch_sizes: list[int] = f(
        [32],
        "MLPerf-style offline scenario: batch sizes whose throughput "
        "(samples/s) is measured, every sample available at once",
    )
    warmup_s: float = f(0.1, "warm-up time before measuring, seconds")
    min_duration_s: float = f(
        0.25,
        "measure at least this long, seconds (0.25 s is thousands of calls of a small model, 28 of a 9 ms one: "
        "raise it for a large model's p99; 3, as trtexec, for a device's thermal steady state)",
    )
    min_iterations: int = f(20, "and at least this many iterations")
    max_cv: float = f(
        0.025,
        "latency drift bound: a batch size whose CV of the medians of 10 windows exceeds it is "
        "measured once more, and flagged unstable if it drifts again",
    )
    torch_baseline: bool = f(
        True,
        "local targets: the FP32 benchmark also measures PyTorch eager on the same "
        "inputs; the report gives every precision's speedup against it",
    )
    max_p99_ms: float | None = f(
        None, "latency budget: a build whose single-stream p99 exceeds this many ms is rejected; null = no budget"
    )
    end_to_end: bool = f(
        True,
        "also time batch 1 end to end, split: preprocessing of a uint8 image of the data's original size, "
        "input copy, compute, output copy, host-side decoding (eval.decoder); the total beside the compute-only p50",
    )
    end_to_end_iterations: int = f(50, "end to end: calls timed (each part's median over the same calls)")
    end_to_end_max_s: float = f(0.5, "end to end: fewer calls (at least 5) once the timed ones took this long, seconds")
    end_to_end_score_threshold: float | None = f(
        0.25,
        "end to end, detection/keypoints: the decoder's score threshold, as a deployed application sets it "
        "(0.25: Ultralytics' predict default); null = eval.score_threshold (validation's, e.g. 0.001: far more NMS work)",
    )
    emulated: Literal["skip", "measure"] = f(
        "skip",
        "a bf16/fp16 build on a device without native compute for it (no AVX512_BF16/AMX/Arm bf16; no "
        "AVX512_FP16/AMX_FP16/Arm FP16, or ONNX Runtime's CPU provider off Arm): skip = not built, the report "
        "says n/a and why; measure = built and benchmarked anyway, labelled (emulated): no speed-up expected",
    )

    @property
    def batch_sizes(self) -> list[int]:
        """Every batch size measured: 1 for single-stream, then the offline ones (no repeats)."""
        return list(dict.fromkeys(([1] if self.single_stream else []) + list(self.offline_batch_sizes)))


# COCO's person keypoints (cocodataset.org, "Keypoint Evaluation"; pycocotools' Params.setKpParams)
COCO_KEYPOINT_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip


@dataclass
class Eval:
    max_drop: float = f(
        1.0,
        "reject a precision whose task metric drops more than this many points vs PyTorch FP32 "
        "(top-1 %, COCO mAP@0.5:0.95 x100, mIoU x100, Dice x100 for one-channel segmentation, OKS AP x100; "
        "task fidelity: agreement with FP32, so the drop is 100 - agreement)",
    )
    batch_size: int = f(64, "evaluation batch size")
    decoder: str = f(
        "centernet",
        "detection: registered decoder turning the raw outputs into boxes: centernet, "
        "yolov8 ((N, 4+C, A) Ultralytics head), yolov5 ((N, A, 5+C) with objectness), "
        "boxes (models ending in NMS: (N, K, 6) or TensorRT EfficientNMS's four outputs); keypoints: "
        "heatmap ((N, J, h, w) top-down heatmaps), yolov8_pose ((N, 4+C+3J, A) Ultralytics pose head)",
    )
    outputs: list[str] | None = f(
        None, "detection: the model outputs the decoder gets, in this order; null = model.outputs"
    )
    score_threshold: float | None = f(
        None,
        "detection: drop boxes scoring at or below this (centernet: below) before NMS and COCO "
        "evaluation; null = the decoder's default (centernet 0.01, YOLO decoders 0.001 as Ultralytics val)",
    )
    iou_threshold: float | None = f(
        None,
        "detection, yolov8/yolov5: class-aware NMS drops a box whose IoU with a better one of its "
        "class is above this; null = the decoder's default (yolov8 0.7, yolov5 0.6, as their val)",
    )
    max_detections: int | None = f(
        None,
        "detection: keep at most this many boxes per image; null = the decoder's default "
        "(centernet 100, YOLO decoders 300); COCO scoring reads the best 100",
    )
    multi_label: bool = f(
        True,
        "detection, yolov8/yolov5: every class scoring above score_threshold at an anchor is a "
        "candidate (Ultralytics val); false = only the anchor's best class",
    )
    fidelity_of: FidelityOf = f(
        "classification",
        "model.task=fidelity: how outputs are decoded before they are compared with FP32's: classification "
        "(top-1 agreement), detection (mAP vs FP32's boxes, by eval.decoder), keypoints (OKS AP vs FP32's "
        "keypoints, by eval.decoder), segmentation (mIoU, or IoU for "
        "one channel, vs FP32's masks), none (raw outputs: SQNR score 100*(1 - noise/signal), drop 1 = 20 dB)",
    )
    fidelity_score_threshold: float = f(
        0.25,
        "model.task=fidelity, fidelity_of=detection/keypoints: FP32's boxes (instances) scoring above this "
        "(at most 100 (20) per image) are "
        "the ground truth (0.25: Ultralytics' predict default, the boxes a deployed detector reports)",
    )
    keypoint_sigmas: list[float] = f(
        list(COCO_KEYPOINT_SIGMAS),
        "keypoints: per-keypoint OKS sigma, one per keypoint in the model's order (COCO's 17 by default); "
        "a model or dataset with another keypoint count is refused",
    )
    keypoint_names: list[str] | None = f(
        None,
        "keypoints: names of the keypoints for per-keypoint figures, one per sigma; null = COCO's 17 "
        "names when there are 17 sigmas, else kp0, kp1, ...",
    )


@dataclass
class Report:
    experiment: str = f("edgeforge", "MLflow experiment name")
    tracking_uri: str = f("sqlite:///mlflow.db", "MLflow tracking URI (env MLFLOW_TRACKING_URI overrides)")
    winner_by: Literal["p50", "p99", "throughput", "size"] = f(
        "p50",
        "what makes a device's winner among its accepted builds (every runtime on the device competes): "
        "p50 | p99 (lowest single-stream latency), throughput (highest offline), size (smallest artifact)",
    )
    register: bool = f(
        True,
        "register each device's winning build (report.winner_by) as a version of "
        "the MLflow registered model, with the device's name as alias (local: this machine)",
    )
    registered_model: str | None = f(
        None,
        "MLflow registered model name for the winners; null = "
        "'edgeforge-<model.arch>' (':' -> '.'), or the checkpoint's name "
        "for formats without an arch",
    )


@dataclass
class Watch:
    dir: str = f("checkpoints/incoming", "folder watched for new checkpoints (relative to the repository)")
    glob: str = f("*.pt", "file pattern of checkpoints inside watch.dir (recursive with **)")
    registry_model: str | None = f(
        None,
        "also watch this MLflow registered model's versions (their "
        "checkpoint file matches watch.glob); null = folder only",
    )
    interval_s: float | None = f(300.0, "schedule: look for new checkpoints every this many seconds")
    cron: str | None = f(None, "schedule as a cron string instead of interval_s (e.g. '0 * * * *')")
    state: str = f(".edgeforge/watch/state.json", "record of every checkpoint seen, by sha256 (kept across restarts)")
    overrides: list[str] = f([], "config overrides for every watched run, as for `dvc exp run -S`")
    work_pool: str | None = f(
        None,
        "submit each new checkpoint to this Prefect work pool (`edgeforge worker` hosts run it; watch.dir "
        "on storage the workers share, or the registry); null = run it here",
    )


@dataclass
class Monitor:
    rate_hz: float = f(10.0, "edgeforge monitor: inferences per second the agent runs the active release at")
    window_s: float = f(10.0, "seconds per sample window (latency percentiles, clocks, temperatures)")
    max_temp_c: float = f(85.0, "a thermal zone above this many degrees Celsius is reported as throttling risk")
    min_clock_fraction: float = f(0.75, "a CPU/GPU clock below this fraction of its maximum is reported as throttled")
    max_drift: float = f(
        25.0, "percent by which a window's p50 may exceed the release's validated p50 before it is reported as drift"
    )


@dataclass
class Release:
    version: str | None = f(
        None, "semantic version of the next release (MAJOR.MINOR.PATCH); null = the latest release's patch + 1"
    )
    store: str = f("releases", "folder of the signed bundles: <store>/<model>/<version>/<class>/ (a DVC output)")
    signing_key_file: str = f(
        ".edgeforge/release/signing_ed25519.pem",
        "path of the Ed25519 private key (PKCS#8 PEM) that signs releases; env EDGEFORGE_SIGNING_KEY "
        "(the PEM text) overrides; the key itself never enters params, MLflow or logs",
    )
    public_key_file: str = f(
        ".edgeforge/release/signing_ed25519.pub",
        "the matching public key, installed on devices by `edgeforge fleet trust`",
    )
    golden_samples: int = f(8, "evaluation samples (inputs and the validated outputs) the device's smoke test runs")
    devices: dict[str, str] = f(
        {},
        "the fleet: device target -> its class, the build target whose device's winner it runs "
        "(a build target not listed is its own class)",
    )
    canary: str | None = f(None, "the device that gets a release first; null = the rollout's first device")
    parallel: int = f(2, "devices deployed at once after the canary")
    keep: int = f(3, "releases kept on each device: the active one and keep-1 earlier ones to roll back to")
    max_regression: float = f(
        1.0, "points of the task metric a candidate may lose against the release active on its device class"
    )
    max_latency_regression: float = f(
        10.0, "percent by which a candidate's p99 may exceed that of the release active on its device class"
    )
    activate_command: str | None = f(
        None, "shell command the device runs after switching `current` (e.g. restart its inference service)"
    )
    health_command: str | None = f(
        None, "shell command the device runs after activation; a non-zero exit rolls the device back"
    )
    monitor: Monitor = f(Monitor(), "edgeforge monitor: sampling on the device")


@dataclass
class Config:
    model: Model = f(Model(), "the model to deploy")
    data: Data = f(Data(), "calibration and evaluation data")
    prepare: Prepare = f(Prepare(), "bundled example preparation")
    export: Export = f(Export(), "PyTorch -> ONNX export")
    parity: Parity = f(Parity(), "ONNX vs PyTorch numerical check")
    quant: Quant = f(Quant(), "INT8 calibration")
    build: Build = f(Build(), "build matrix")
    target: dict[str, Target] = f({"local": Target()}, "target definitions, by name")
    bench: Bench = f(Bench(), "latency benchmark")
    eval: Eval = f(Eval(), "accuracy evaluation")
    report: Report = f(Report(), "tracking and summary")
    watch: Watch = f(Watch(), "the checkpoint watcher (flows/watch.py): where and how often to look")
    release: Release = f(
        Release(), "signed release bundles and their deployment to the fleet (edgeforge release/deploy)"
    )
