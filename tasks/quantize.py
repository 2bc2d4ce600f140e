"""Stage ``quantize``: for each precision, the ONNX model every runtime builds it from.

- ``fp32``: the verified, simplified export as is.
- ``bf16``: the same FP32 model. bf16 is an inference precision the runtime applies, not a model
  transform: OpenVINO's CPU plugin (``INFERENCE_PRECISION_HINT bf16``) rounds weights and
  activations to bf16 itself, per op, and keeps the ops that need the range or precision (softmax
  sums, normalisations, the Q/DQ-free glue) in FP32, accumulating dot products in FP32. A bf16
  ONNX (weights cast offline) would add Cast nodes every runtime must undo, and ONNX Runtime's CPU
  provider has no bf16 kernels to run it with (so bf16 builds only for OpenVINO targets:
  :mod:`tasks.device.support`). Its own stage keeps bf16 a precision like the others: its own key,
  tolerances (``parity.artifact.bf16``) and rows.
- ``fp16``: FP16 weights and compute (ONNX Runtime's converter); inputs and outputs stay FP32
  unless ``build.fp16_keep_io_types`` is false. TensorRT 11 builds strongly typed from exactly this.
- ``int8-<calibrator>``: activation ranges calibrated on the calibration split (streamed in
  ``quant.batch_size`` batches, ``quant.samples`` images), then the explicit Q/DQ INT8 model
  TensorRT and OpenVINO consume, the same ranges in the layouts ONNX Runtime fuses into int8
  kernels (``model.ort.u8s8.onnx``, ``model.ort.s8s8r7.onnx``: each ORT target's build picks one by
  its fingerprint, :mod:`tasks.device.choices`), the TensorRT calibration cache (for TensorRT <= 10 implicit
  INT8) and the per-tensor ranges as JSON (``calibration.cache``, ``ranges.json``), and the Q/DQ
  model with FP16 glue that TensorRT 11 builds strongly typed (``model.fp16glue.onnx``,
  :mod:`tasks.quant.fp16_glue`).
- ``int8-mixed``: the same, with the layers that cost accuracy kept FP32, chosen automatically
  within ``quant.max_drop`` (see :mod:`tasks.quant.mixed_precision`).

Every INT8 record carries ``coverage``: the calibration split's samples per class, brightness
and original image sizes beside the evaluation split's, with a warning (logged and recorded) per
class the evaluation split has and the calibration split lacks (:mod:`tasks.data.coverage`).

One stage makes every precision; a precision whose inputs did not change is kept (:mod:`tasks.reuse`),
so changing one calibrator's settings redoes that one, and a build depends only on its own
precision's model. ``--precision`` makes one. Outputs: ``artifacts/quantize/<precision>/``
(``model.onnx`` + ``quantize.json``) and ``metrics/quantize/<precision>.json``; nothing for a
precision that failed (the others are still made, and the stage then fails).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from tasks import stage
from tasks.config import Config
from tasks.io import atomic_dir, sha256_file
from tasks.layout import LAYOUT
from tasks.quant.common import QuantError
from tasks.quant.recipes import to_fp16, to_int8
from tasks.records import QuantizeRecord
from tasks.reuse import inputs_of, item_digest, prune, unchanged, write_record

PRECISIONS = "fp32, fp16, bf16, int8-minmax, int8-entropy, int8-percentile, int8-mixed"


def run(
    cfg: Config,
    precision: str,
    onnx_path: Path,
    out: Path,
    log: Callable[[str], None] = print,
    calib_dir: Path | None = None,
    eval_dir: Path | None = None,
) -> QuantizeRecord:
    """Write ``precision``'s model (and, for INT8, its cache and ranges) into ``out``, with
    ``quantize.json``; returns the record. INT8 needs ``calib_dir``; with ``eval_dir`` too, the
    record has the two splits' coverage."""
    t0 = time.perf_counter()
    model = out / "model.onnx"
    facts: dict = {}
    if precision in ("fp32", "bf16"):  # bf16: the runtime's inference precision (module docstring)
        shutil.copyfile(onnx_path, model)
    elif precision == "fp16":
        to_fp16(onnx_path, model, cfg.build.fp16_keep_io_types)
        facts["keep_io_types"] = cfg.build.fp16_keep_io_types
    elif precision.startswith("int8-"):
        if calib_dir is None:
            raise QuantError("INT8 needs the calibration split (calib_dir)")
        if precision == "int8-mixed":
            from tasks.quant.mixed_precision import to_mixed  # the sensitivity search: only int8-mixed needs it

            facts = to_mixed(cfg, onnx_path, calib_dir, out, log)
        else:
            facts = to_int8(cfg, precision.removeprefix("int8-"), onnx_path, calib_dir, out, log)
        if eval_dir is not None:
            facts["coverage"] = _coverage(cfg, calib_dir, eval_dir, log)
    else:
        raise QuantError(f"precision {precision!r} is not supported; allowed values: {PRECISIONS}")
    rec = QuantizeRecord.from_json(
        {
            "precision": precision,
            "source_onnx_sha256": sha256_file(onnx_path),
            **facts,
            "sha256": sha256_file(model),
            "size_bytes": model.stat().st_size,
            "seconds": time.perf_counter() - t0,
        }
    )
    rec.write(out / "quantize.json")
    log(f"{precision}: {rec.size_bytes / 1e6:.2f} MB in {rec.seconds:.2f} s")
    return rec


def _coverage(cfg: Config, calib_dir: Path, eval_dir: Path, log: Callable[[str], None]) -> dict:
    from tasks.data.coverage import coverage, summary_line

    cov = coverage(calib_dir, eval_dir, cfg.model.task)
    log(f"calibration coverage: {summary_line(cov)}")
    for w in cov["warnings"]:
        log(f"warning: {w}")
    return cov


def main(argv: list[str] | None = None) -> None:
    p = stage.parser("quantize")
    p.add_argument("--precision", default=None, help="one precision of build.precisions (default: every one, in order)")
    args = p.parse_args(argv)
    with stage.stage_errors("quantize"):
        cfg = stage.load(args)
        if args.precision is not None and args.precision not in cfg.build.precisions:
            raise stage.StageError(
                f"--precision {args.precision!r} is not in build.precisions ({', '.join(cfg.build.precisions)})"
            )
        ins = inputs_of("quantize")
        if args.precision is None:  # the whole stage: precisions no longer configured go
            keep = set(cfg.build.precisions)
            for gone in prune(LAYOUT.quantize_root, keep) + prune(LAYOUT.quantize_metrics_dir, keep, ".json"):
                stage.log("quantize", f"removed {gone} (no longer in build.precisions)")

        def one(precision: str) -> None:
            name = f"quantize@{precision}"
            out, metrics = LAYOUT.quantize_dir(precision), LAYOUT.quantize_metrics(precision)
            want = item_digest(ins, None, precision)
            if unchanged(metrics, want, out / "quantize.json"):
                stage.log(name, "unchanged since it was made: kept")
                return
            with atomic_dir(out) as tmp:
                rec = run(
                    cfg,
                    precision,
                    LAYOUT.onnx,
                    tmp,
                    lambda m: stage.log(name, m),
                    calib_dir=LAYOUT.split("calib"),
                    eval_dir=LAYOUT.split("eval"),
                )
            write_record(rec, metrics, want)

        stage.each(
            stage.precisions(cfg, args),
            one,
            lambda q: [LAYOUT.quantize_dir(q), LAYOUT.quantize_metrics(q)],
            lambda q: f"quantize@{q}",
        )


if __name__ == "__main__":
    main()
