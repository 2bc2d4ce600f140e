"""Core ML conversion on the host: the PyTorch model -> an ML Program (``.mlpackage``) -> one zip file.

coremltools converts on Linux but cannot run a model there (``MLModel.predict`` needs macOS), so
the conversion happens on the host (:class:`tasks.runtimes.coreml_rt.CoreMLRuntime`, converts_on_host)
and a Mac runs the result (:mod:`tasks.agent.coreml_model`).

- Capture: ``torch.export`` (ATEN dialect, ``run_decompositions({})``): the graph capture the ONNX
  export uses too (``tasks/export.py``, dynamo exporter) and where PyTorch develops (TorchScript is
  deprecated); coremltools converts it since 8.0 but calls it beta (~70% of ops) and ``torch.jit.trace``
  the more stable path, so a model whose exported program does not convert falls back to a trace
  (recorded as ``source`` and ``capture_failures``). A TorchScript checkpoint (``model.format:
  torchscript``) cannot be exported and goes to coremltools as it is.
- Inputs and outputs are named as the exported ONNX names them (every stage finds outputs by those
  names) and stay float32 whatever the compute precision (as ``build.fp16_keep_io_types``); a
  dynamic ONNX batch becomes ``RangeDim(1, max_batch)`` (ML Programs refuse an unbounded range;
  ``HostSource.max_batch``: the largest batch the stages run; the device model slices larger ones).
- ``fp32``: ``compute_precision=FLOAT32``; ``fp16``: ``FLOAT16`` (weights and activations fp16, the
  Neural Engine's own precision); ``int8-minmax``: the fp16 program with every weight of a conv or
  linear op linearly quantized to int8 (``linear_quantize_weights``: per output channel, symmetric,
  scale = max |w| / 127, i.e. the weights' own min/max). Activations stay fp16: coremltools 9's
  ``linear_quantize_activations`` calibrates by running the model with ``predict`` (its
  ``ModelDebugger``), which raises "Model prediction is only supported on macOS" on this host, so
  INT8 here is weight compression only and the record says so (``int8_activations``).
- The artifact is ONE file: the package folder as a deterministic zip (:func:`zip_package`). The package
  coremltools writes is not byte-reproducible itself (``Manifest.json``'s item identifiers are random
  UUIDs, and the spec's metadata records the conversion date), so two conversions differ in sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import platform
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tasks.runtimes.base import BuildError, HostSource

PACKAGE = "model.mlpackage"
ARTIFACT = f"{PACKAGE}.zip"
#: int8 per-channel weights are ``constexpr_affine_dequantize`` ops, which need iOS 16 / macOS 13
DEPLOYMENT_TARGET = "macOS13"
#: the example batch torch.export traces with (batch 1 gets specialised, as in tasks/export.py)
_EXAMPLE_BATCH = 2
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
PRECISIONS = ("fp32", "fp16", "int8-minmax")


def onnx_io(onnx_path: Path) -> tuple[str, list[str], int | None]:
    """``(input name, output names, batch)`` of the exported ONNX: the names the converted model
    keeps, and its batch (an int when fixed, None when the batch axis is symbolic)."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError, OSError, ...
        raise BuildError(f"{onnx_path}: cannot read the exported ONNX for its input/output names: {e}") from e
    init = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1:
        raise BuildError(f"{onnx_path}: EdgeForge handles single-input image models; this one has {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    return inputs[0].name, [o.name for o in model.graph.output], batch


#: what coremltools probes for at import to convert from, and EdgeForge never converts from: TensorFlow
#: (installed here for LiteRT), ExecuTorch's EDGE dialect (we give it ATEN programs), torchao's quantized
#: ops (our models are FP32), scikit-learn, XGBoost. Importing them costs ~6 s of a ~9 s import.
_UNUSED_FRONTENDS = ("tensorflow", "executorch", "torchao", "sklearn", "xgboost")


def import_coremltools() -> Any:
    """``coremltools``, imported quietly and without the frontends EdgeForge does not use
    (:data:`_UNUSED_FRONTENDS`: it sees them as absent). Those this process has already imported are
    left alone, and any of them imports normally afterwards. Its noise (an untested-torch warning,
    progress bars) is not the user's."""
    import sys

    for name in ("coremltools", "torch._export", "torch.export"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="coremltools")
    # torch's own deprecation inside torch.export, as tasks/export.py filters it
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)", category=FutureWarning)
    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    blocked = [m for m in _UNUSED_FRONTENDS if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # type: ignore[assignment]  # `import m` raises ImportError
    try:
        import coremltools
    finally:
        for m in blocked:
            del sys.modules[m]
    return coremltools


def _no_progress_bars() -> contextlib.AbstractContextManager:
    """coremltools draws a tqdm bar per pass on stderr (tqdm's own switch, TQDM_DISABLE, is read when
    tqdm is imported: too early to set here); its errors are raised, never printed, so none is lost."""
    return contextlib.redirect_stderr(io.StringIO())


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[0][:300]


def _capture(module: Any, how: str, shape: tuple[int, int, int], batch: int | None, max_batch: int) -> Any:
    """``module`` captured ``how`` ("torch.export": an ATEN ``ExportedProgram``, the batch dynamic up to
    ``max_batch`` when ``batch`` is None; "torch.jit.trace"; "torchscript": a ScriptModule as it is)."""
    import torch

    if how == "torchscript":
        return module
    example = torch.zeros(batch or _EXAMPLE_BATCH, *shape, dtype=torch.float32)
    if how == "torch.jit.trace":
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", torch.jit.TracerWarning)
            traced = torch.jit.trace(module, example)
        # a trace follows the example's branch of data-dependent code: torch says where, the record keeps it
        traced.edgeforge_tracer_warnings = list(
            dict.fromkeys(
                str(w.message).splitlines()[0][:200] for w in caught if issubclass(w.category, torch.jit.TracerWarning)
            )
        )
        return traced
    dyn = None if batch else ({0: torch.export.Dim("batch", min=1, max=max_batch)},)
    return torch.export.export(module, (example,), dynamic_shapes=dyn).run_decompositions({})


def convert(
    module: Any,
    shape: tuple[int, int, int],
    input_name: str,
    output_names: list[str],
    batch: int | None,
    precision: str,
    max_batch: int = 64,
) -> tuple[Any, dict[str, Any]]:
    """The ``ct.models.MLModel`` of ``module`` (FP32, eval mode) at ``precision``, and facts for the
    build record. ``shape``: one sample's (C, H, W); ``batch``: a fixed batch, or None for
    1..``max_batch`` (at least 2: torch.export specialises a range of one). ``torch.export`` first; when it or coremltools' conversion of its program fails,
    ``torch.jit.trace`` (coremltools' longer-standing path, which its docs still call the more
    stable one), the failure recorded in ``capture_failures``. Raises BuildError naming every
    failure when no capture converts."""
    import torch

    if precision not in PRECISIONS:
        raise BuildError(f"Core ML builds {', '.join(PRECISIONS)}; not {precision!r}")
    ct = import_coremltools()
    max_batch = max(_EXAMPLE_BATCH, max_batch)
    dim = batch or ct.RangeDim(lower_bound=1, upper_bound=max_batch, default=1)
    compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    order = ["torchscript"] if isinstance(module, torch.jit.ScriptModule) else ["torch.export", "torch.jit.trace"]
    failures: dict[str, str] = {}
    for captured in order:
        try:
            graph = _capture(module, captured, shape, batch, max_batch)
            with _no_progress_bars():
                ml = ct.convert(
                    graph,
                    convert_to="mlprogram",
                    inputs=[ct.TensorType(name=input_name, shape=(dim, *shape), dtype=np.float32)],
                    outputs=[ct.TensorType(name=n, dtype=np.float32) for n in output_names],
                    compute_precision=compute,
                    minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                )
            break
        except Exception as e:  # torch.export and coremltools raise many types (UserError, ValueError, ...)
            failures[captured] = _first_line(e)
    else:
        raise BuildError(f"coremltools {ct.__version__} cannot convert the model: {failures}")
    meta: dict[str, Any] = {
        "source": captured,
        "format": "mlprogram",
        "compute_precision": "float32" if precision == "fp32" else "float16",
        "minimum_deployment_target": DEPLOYMENT_TARGET,
        "batch": batch or f"1..{max_batch}",
        **({"capture_failures": failures} if failures else {}),
    }
    if getattr(graph, "edgeforge_tracer_warnings", None):
        meta["tracer_warnings"] = graph.edgeforge_tracer_warnings
    if precision == "int8-minmax":
        with _no_progress_bars():
            ml = quantize_weights(ml)
        meta["weight_quantization"] = "int8, per output channel, symmetric (linear_quantize_weights)"
        meta["int8_activations"] = activation_quantization_unavailable()
    return ml, meta


def quantize_weights(ml: Any) -> Any:
    """``ml`` with every conv/linear weight linearly quantized to int8 (per output channel, symmetric),
    however small the tensor (coremltools leaves tensors under 2048 elements in float by default, which
    would leave a small model in fp16 under the int8 name)."""
    import coremltools.optimize.coreml as cto

    op = cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0
    )
    return cto.linear_quantize_weights(ml, cto.OptimizationConfig(global_config=op))


def activation_quantization_unavailable() -> str:
    """Why activations stay fp16 in an int8 build on this host."""
    return (
        "float16: coremltools' linear_quantize_activations calibrates by running the model (MLModel.predict), "
        f"which runs only on macOS; this host is {platform.system()}: INT8 here is weight compression only"
    )


def program_summary(spec: Any) -> dict[str, Any]:
    """What the converted ML Program computes in, read from its spec (``MLModel.get_spec()``; works on
    Linux): ``{"op_dtypes": {dtype: ops whose first output has it}, "int8_weights": constexpr ops whose
    stored data is int8, "spec_version": n}`` (dtypes as Core ML's ``FLOAT16``, ``FLOAT32``, ...)."""
    from coremltools.proto import MIL_pb2

    dtypes: dict[str, int] = {}
    int8 = 0
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                if op.type.startswith("constexpr_"):
                    arg = op.attributes.get("quantized_data") or op.attributes.get("data")
                    if arg is not None and arg.type.tensorType.dataType == MIL_pb2.INT8:
                        int8 += 1
                    continue
                if op.type == "const" or not op.outputs:
                    continue
                name = MIL_pb2.DataType.Name(op.outputs[0].type.tensorType.dataType)
                dtypes[name] = dtypes.get(name, 0) + 1
    return {"op_dtypes": dict(sorted(dtypes.items())), "int8_weights": int8, "spec_version": spec.specificationVersion}


def zip_package(package: Path, out: Path) -> str:
    """Write the ``.mlpackage`` folder ``package`` to ``out`` as one zip whose bytes depend only on the
    files' names and contents (names sorted, stored, fixed timestamps and modes; members under
    ``<package name>/``), atomically; returns its sha256."""
    files = sorted(p for p in package.rglob("*") if p.is_file())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for p in files:
            info = zipfile.ZipInfo(f"{package.name}/{p.relative_to(package).as_posix()}", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            z.writestr(info, p.read_bytes())
    data = buf.getvalue()
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return hashlib.sha256(data).hexdigest()


def convert_to_zip(src: HostSource, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Convert ``src.torch_model()`` at ``src.precision`` into ``out_dir/model.mlpackage.zip``, named as
    the ONNX export names its input and outputs; returns the zip and the build facts (names, what the
    program computes in, the package's files; the build record adds the zip's sha256)."""
    input_name, outputs, batch = onnx_io(Path(src.export_onnx))
    model, shape = src.torch_model(), tuple(src.input_shape)
    ml, meta = convert(model, shape, input_name, outputs, batch, src.precision, src.max_batch)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".mlpackage-") as tmp:
        package = Path(tmp) / PACKAGE
        ml.save(str(package))
        files = sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file())
        zip_package(package, out_dir / ARTIFACT)
    meta.update(
        {
            "input_name": input_name,
            "output_names": outputs,
            **program_summary(ml.get_spec()),
            "package_files": files,
            "converter": f"coremltools {import_coremltools().__version__}",
        }
    )
    return out_dir / ARTIFACT, meta
