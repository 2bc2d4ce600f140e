"""ONNX -> LiteRT (``.tflite``) on the host, for fp32, fp16 (float16 weights) and INT8 (full integer,
float I/O), calibrated by TFLite's own converter on the calibration split.

Why from ONNX: the PyTorch path (litert-torch, formerly ai-edge-torch) cannot install beside
EdgeForge's Python 3.11 + torch 2.13 (litert-torch needs ai-edge-litert 2.3, which has no 3.11
wheels; ai-edge-torch <= 0.6 needs torch < 2.9). So, as Ultralytics exports TFLite: onnx2tf turns the
FP32 ONNX export into a Keras model (NHWC inside), and TensorFlow's ``TFLiteConverter`` writes the
``.tflite``. What this module adds around them:

- **the ONNX interface, kept**: the Keras model is wrapped in a ``tf.function`` whose input is the ONNX
  input (float32 NCHW; onnx2tf's ``keep_ncw_or_nchw_or_ncdhw_input_names`` transposes inside) and
  whose outputs are the ONNX outputs by name, each transposed back to the ONNX layout where onnx2tf
  left it channel-last. Which outputs onnx2tf transposed is found by running the Keras model and ONNX
  Runtime on one real calibration batch (onnx2tf's own ``onnx_output_layouts`` flags are not reliable:
  a (B, C) output is flagged too), so the runtime-side model needs no layout table;
- **precisions**: ``fp32`` as converted; ``fp16``: ``Optimize.DEFAULT`` + ``supported_types=[float16]``
  (weights stored as float16, dequantized by the runtime: XNNPACK computes in FP32); ``int8-minmax``:
  ``Optimize.DEFAULT`` + a representative dataset (every calibration sample) + ``TFLITE_BUILTINS_INT8``:
  the converter's calibrator records each tensor's min/max over the samples, weights per-channel
  symmetric int8, activations per-tensor asymmetric int8, float32 input/output quantized and
  dequantized inside the graph;
- **no network**: onnx2tf downloads 20 sample images from GitHub to check a 3-channel model's outputs;
  here it gets the calibration batch instead (``_no_download``);
- a check: the ``.tflite`` is loaded by ai_edge_litert (``tasks/agent/litert_model.py``) and run on the
  real batch; its outputs' names and shapes must be the ONNX model's (the difference to ONNX Runtime is
  recorded, not judged: parity judges the numbers).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tasks.agent import litert_model
from tasks.runtimes.base import BuildError

CONVERTER = "onnx2tf"
ARTIFACT = "model.tflite"
#: the precisions TFLite's converter makes; int8-minmax is its own min/max calibration
PRECISIONS = ("fp32", "fp16", "int8-minmax")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # onnx2tf colours its messages


class ConversionError(BuildError):
    """onnx2tf or TFLite's converter refused the model; the message names the tool and its reason."""


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in ANSI.sub("", str(e)).strip().splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0][:300]}" if lines else type(e).__name__


def versions() -> dict[str, str]:
    """The conversion's tool versions: onnx2tf, TensorFlow (its TFLite converter) and ai-edge-litert."""
    import onnx2tf
    import tensorflow as tf

    return {"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__, "ai_edge_litert": litert_model.version()}


def onnx_io(onnx_path: Path) -> tuple[str, list[int | None], list[str]]:
    """``(input name, input dims (None: dynamic), output names)`` of a single-input ONNX model."""
    import onnx

    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception as e:  # protobuf DecodeError, OSError
        raise ConversionError(f"{onnx_path}: onnx cannot read it ({_first_line(e)})") from e
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ConversionError(f"{onnx_path}: EdgeForge converts single-input models; this one has {len(inputs)}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, dims, [o.name for o in graph.output]


@contextlib.contextmanager
def _no_download(sample_nhwc: np.ndarray) -> Iterator[None]:
    """onnx2tf fetches sample images from GitHub to check a model whose input looks like an RGB image
    (``download_test_image_data``); this machine has no such network, and real data is at hand."""
    import onnx2tf.onnx2tf as impl

    saved = impl.download_test_image_data
    impl.download_test_image_data = lambda: sample_nhwc
    try:
        yield
    finally:
        impl.download_test_image_data = saved


def to_keras(onnx_path: Path, input_name: str, sample: np.ndarray, work: Path, int8: bool = False) -> Any:
    """The onnx2tf Keras model of ``onnx_path``, its input kept NCHW. ``int8``: onnx2tf's INT8 mode, whose
    one difference to the Keras graph is MaxPool's explicit padding: 0 instead of the float minimum (its
    issue #444). The minimum would join the pooled tensor's range when TFLite's quantizer calibrates it
    (ResNet-18's stem then got a scale of 1e36 and the interpreter aborted); 0 is exact after a ReLU, and
    the check against ONNX Runtime shows it where it is not. onnx2tf prints its progress and warnings at
    length: they are kept out of the stage's log unless it fails."""
    import onnx2tf

    chatter, src = io.StringIO(), Path(onnx_path).resolve()  # resolved before the chdir below
    try:
        with (
            _no_download(sample.transpose(0, 2, 3, 1) if sample.ndim == 4 else sample),  # an image is NCHW
            contextlib.redirect_stdout(chatter),
            contextlib.chdir(work),  # it writes scratch files into the working folder
        ):
            return onnx2tf.convert(
                input_onnx_file_path=str(src),
                output_folder_path=str(work / "saved_model"),
                keep_ncw_or_nchw_or_ncdhw_input_names=[input_name],
                not_use_onnxsim=True,  # export already simplified it (export.onnxsim); 0.8's CLI differs
                disable_model_save=True,  # the Keras model is all we take; the TFLite files are ours
                output_integer_quantized_tflite=int8,
                verbosity="error",
            )
    except BaseException as e:  # onnx2tf raises whatever its op converters raise, and sys.exit()s on some
        if isinstance(e, KeyboardInterrupt):
            raise
        said = [ln for ln in ANSI.sub("", chatter.getvalue()).splitlines() if "ERROR" in ln or "Error" in ln][-1:]
        raise ConversionError(
            f"onnx2tf {onnx2tf.__version__} cannot convert {onnx_path}: {_first_line(e)}"
            + (f" ({said[0].strip()[:300]})" if said else "")
            + "; LiteRT builds need a model onnx2tf converts (its README lists the ONNX ops it supports)"
        ) from e


def output_layouts(keras_model: Any, onnx_path: Path, input_name: str, x: np.ndarray) -> dict[str, tuple[int, ...]]:
    """``{output name: the permutation that maps the Keras output to the ONNX one}``, found on ``x``
    (a real batch, float32 NCHW): the identity, or channel-last back to channel-first, whichever
    matches ONNX Runtime's output shape with the least difference."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ref = dict(zip(names, sess.run(None, {input_name: x})))
    got = keras_model(x, training=False)
    got = list(got) if isinstance(got, list | tuple) else [got]
    perms: dict[str, tuple[int, ...]] = {}
    for name, g in zip(names, got):
        g, r = np.asarray(g), ref[name]
        cands = [tuple(range(g.ndim))] + ([(0, g.ndim - 1, *range(1, g.ndim - 1))] if g.ndim >= 3 else [])
        fits = [(float(np.abs(g.transpose(p) - r).max()), p) for p in cands if g.transpose(p).shape == r.shape]
        if not fits:
            raise ConversionError(
                f"onnx2tf's output {name!r} has shape {g.shape}, which no transposition makes ONNX's {r.shape}"
            )
        perms[name] = min(fits)[1]
    return perms


def _serving_function(keras_model: Any, input_name: str, dims: list[int | None], perms: dict[str, tuple[int, ...]]):
    import tensorflow as tf

    spec = tf.TensorSpec(dims, tf.float32, name=input_name)
    names = list(perms)

    @tf.function(input_signature=[spec])
    def serve(x):
        outs = keras_model(x, training=False)
        outs = list(outs) if isinstance(outs, list | tuple) else [outs]
        return {
            n: o if perms[n] == tuple(range(len(perms[n]))) else tf.transpose(o, perms[n]) for n, o in zip(names, outs)
        }

    return serve.get_concrete_function()


def _samples(batches: Iterable[np.ndarray], batch: int | None) -> Iterator[np.ndarray]:
    """The calibration samples one at a time (a fixed-batch model: ``batch`` at a time, the rest dropped)."""
    if batch is None:
        for b in batches:
            yield from (b[i : i + 1] for i in range(len(b)))
        return
    pending = np.zeros((0,), np.float32)
    for b in batches:
        pending = b if not len(pending) else np.concatenate([pending, b])
        while len(pending) >= batch:
            yield pending[:batch]
            pending = pending[batch:]


def tflite_bytes(
    keras_model: Any,
    input_name: str,
    dims: list[int | None],
    perms: dict[str, tuple[int, ...]],
    precision: str,
    calibration: Callable[[], Iterable[np.ndarray]],
) -> tuple[bytes, dict[str, Any]]:
    """The ``.tflite`` of ``precision`` and what the converter did (``quantization``)."""
    import tensorflow as tf

    fn = _serving_function(keras_model, input_name, dims, perms)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], keras_model)
    quant: dict[str, Any] = {"kind": "none (float32)"}
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        quant = {"kind": "float16 weights (float32 compute and I/O)"}
    elif precision == "int8-minmax":
        count = [0]

        def representative() -> Iterator[list[np.ndarray]]:
            for s in _samples(calibration(), dims[0]):
                count[0] += len(s)
                yield [np.ascontiguousarray(s, dtype=np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.float32
        quant = {
            "kind": "full integer int8 (float32 I/O quantized/dequantized in the graph)",
            "calibrator": "TFLite converter: min/max of each tensor over the representative dataset",
            "weights": "int8 per-channel symmetric",
            "activations": "int8 per-tensor asymmetric",
        }
    elif precision != "fp32":
        raise ConversionError(f"LiteRT conversion makes {', '.join(PRECISIONS)}; not {precision!r}")
    try:
        data = conv.convert()
    except Exception as e:  # ConverterError, ValueError, RuntimeError...
        raise ConversionError(
            f"TFLite's converter (TensorFlow {tf.__version__}) cannot convert the onnx2tf model to {precision}: "
            f"{_first_line(e)}"
        ) from e
    if precision == "int8-minmax":
        if not count[0]:
            raise ConversionError("int8-minmax: the calibration split gave no samples to calibrate with")
        quant["calibration_samples"] = count[0]
    return data, quant


def check_scales(path: Path, limit: float = 1e6) -> None:
    """Refuse an INT8 model whose calibration gave a tensor an absurd scale (a float extreme such as a
    padding constant of -FLT_MAX joined its range): the interpreter aborts the process on such a model
    when it allocates, so this reads the scales from the flatbuffer first, without allocating."""
    from ai_edge_litert.interpreter import Interpreter

    for t in Interpreter(model_path=str(path)).get_tensor_details():
        scale = (t.get("quantization") or (0.0, 0))[0]
        if not np.isfinite(scale) or scale > limit:
            raise ConversionError(
                f"TFLite's INT8 calibration gave tensor {t['name']!r} a scale of {scale:.3g}: a float extreme "
                "joined its range (e.g. an explicit padding constant); build fp32 or fp16 for this model"
            )


def convert(
    onnx_path: Path,
    precision: str,
    calibration: Callable[[], Iterable[np.ndarray]],
    out_dir: Path,
    threads: int | None = None,
) -> tuple[Path, dict[str, Any]]:
    """``(out_dir/model.tflite, meta)``: the LiteRT model of ``precision`` converted from the FP32 ONNX
    ``onnx_path``. ``calibration``: () -> float32 NCHW batches of the calibration split (the INT8
    calibration data; the first batch also checks the conversion). Raises ConversionError."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines on stderr
    # TensorFlow runs the Keras model once here (the layout check): oneDNN's custom ops buy nothing, and
    # announce themselves on stderr in every build's log
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    input_name, dims, out_names = onnx_io(onnx_path)
    first = next(iter(calibration()), None)
    if first is None or not len(first):
        raise ConversionError("the calibration split gave no batch: LiteRT conversion checks on real samples")
    x = np.ascontiguousarray(first[: dims[0] or 2], dtype=np.float32)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeforge-onnx2tf-") as work:
        keras_model = to_keras(Path(onnx_path), input_name, x, Path(work), int8=precision == "int8-minmax")
        perms = output_layouts(keras_model, Path(onnx_path), input_name, x)
        data, quant = tflite_bytes(keras_model, input_name, dims, perms, precision, calibration)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact, tmp = out_dir / ARTIFACT, out_dir / f".{ARTIFACT}.tmp"
    tmp.write_bytes(data)
    seconds = time.perf_counter() - t0
    try:  # checked before it takes the artifact's name: a model that fails leaves nothing behind
        check_scales(tmp)
        model = litert_model.LiteRTModel(tmp, threads)
        got = model.infer(x)
        import onnxruntime as ort

        ref = dict(zip(out_names, ort.InferenceSession(str(onnx_path)).run(None, {input_name: x})))
        if set(got) != set(out_names) or any(got[n].shape != ref[n].shape for n in out_names):
            raise ConversionError(
                f"the .tflite's outputs {[(n, got[n].shape) for n in got]} are not the ONNX model's "
                f"{[(n, ref[n].shape) for n in out_names]}"
            )
        os.replace(tmp, artifact)
    finally:
        tmp.unlink(missing_ok=True)
    return artifact, {
        "converter": CONVERTER,
        "converter_path": "ONNX -> onnx2tf (Keras) -> tf.lite.TFLiteConverter",
        "versions": versions(),
        "source_onnx": str(onnx_path),
        "quantization": quant,
        "io": {"input": input_name, "layout": "NCHW float32", "outputs": out_names},
        "transposed_outputs": {n: list(p) for n, p in perms.items() if p != tuple(range(len(p)))},
        "conversion_seconds": seconds,
        "check_max_abs_diff_vs_onnxruntime": {n: float(np.abs(got[n] - ref[n]).max()) for n in out_names},
        **model.describe(),
    }
