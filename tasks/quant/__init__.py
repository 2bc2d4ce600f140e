"""INT8 quantization library: activation-range calibrators (``minmax``, ``entropy``,
``percentile``, streamed through ONNX Runtime's calibration tooling), explicit Q/DQ INT8 ONNX
models for TensorRT/ONNX Runtime, and TensorRT calibration caches.

A pure library: no DVC, MLflow or Prefect. Typical use::

    ranges = calibrate("model.onnx", (x for x, _ in Split(calib).batches(64)), "entropy", input_name="input")
    facts = quantize_qdq("model.onnx", ranges, "model.int8.onnx")
    write_cache(ranges, "calib.cache", "entropy", trt_version="8.6.1")
"""

from tasks.quant.calibrators import CALIBRATORS, Calibrator, calibrate, get_calibrator
from tasks.quant.common import QuantError, Ranges, constants_to_initializers
from tasks.quant.qdq import ORT_EXTRA_OPTIONS, QUANTIZABLE_OPS, TRT_EXTRA_OPTIONS, quantizable_nodes, quantize_qdq
from tasks.quant.trt_cache import (
    read_cache,
    read_cache_header,
    read_ranges_json,
    scale_hex,
    scales,
    trt_version_number,
    write_cache,
    write_ranges_json,
)

__all__ = [
    "CALIBRATORS",
    "Calibrator",
    "ORT_EXTRA_OPTIONS",
    "QUANTIZABLE_OPS",
    "QuantError",
    "Ranges",
    "TRT_EXTRA_OPTIONS",
    "calibrate",
    "constants_to_initializers",
    "get_calibrator",
    "quantizable_nodes",
    "quantize_qdq",
    "read_cache",
    "read_cache_header",
    "read_ranges_json",
    "scale_hex",
    "scales",
    "trt_version_number",
    "write_cache",
    "write_ranges_json",
]
