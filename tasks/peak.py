"""``peak@<target>`` (the second command of stage ``probe@<target>``, after the fingerprint): the device's compute peak per precision family (fp32, bf16, fp16, int8),
nominal and measured, for the roofline of every benchmark on that target.

*Nominal*: from the fingerprint (cores x nominal clock x FLOP/cycle of the microarchitecture; Jetson
GPUs from NVIDIA's module data sheets), each with its basis as text (:mod:`tasks.device.peaks`).
*Measured*: the agent's ``peak`` command times chained GEMMs in the target's runtime itself at each
precision it runs (in the spirit of the Empirical Roofline Toolkit), because nominal clocks lie
(turbo above them, AVX offsets below). Re-runs only when the fingerprint's content changes (a few
seconds). Output: ``artifacts/peak/<target>.json`` =
``{"fingerprint_sha256", "target", "runtime", "runtime_version", "threads", "nominal", "measured"}``;
a family the runtime cannot run is ``{"skipped": why}`` under ``measured``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from tasks import stage
from tasks.agent.client import device
from tasks.config import Config
from tasks.device.peaks import nominal
from tasks.io import write_json
from tasks.layout import LAYOUT
from tasks.records import read_fingerprint
from tasks.runtimes import gemm

#: runtimes whose peak the agent measures on its own ONNX GEMMs; those of ``gemm.FAMILIES`` get theirs
#: converted on the host (TensorRT targets keep the data-sheet figures)
MEASURED_RUNTIMES = ("onnxruntime", "openvino")


def _line(fam: str, nom: dict, meas: dict | None) -> str:
    n = f"{nom['gflops']:.1f}" if nom.get("gflops") else "none"
    m = f"{meas['gflops']:.1f}" if meas and meas.get("gflops") else f"none ({(meas or {}).get('skipped', '-')})"
    return f"{fam}: nominal {n} ({nom['basis']}); measured {m}"


def _converted_peaks(target_name: str, target, log: Callable[[str], None]) -> dict:
    """A runtime that converts on the host: its GEMMs converted here (:mod:`tasks.runtimes.gemm`), uploaded,
    and timed by the agent in the runtime itself; a family that did not convert is skipped with the reason."""
    res = {"runtime_version": None, "threads": target.threads}
    with tempfile.TemporaryDirectory(prefix="edgeforge-gemm-") as td:
        # converted before the device is reached: the connection is not held open through the conversion
        log(f"converting {target.runtime}'s peak GEMMs on the host ({gemm.LAYERS} x {gemm.SIDE}^3)")
        made = gemm.convert(target.runtime, Path(td), target.threads, gemm.SIDE, gemm.LAYERS)
        if any(isinstance(a, Path) for a in made.values()):
            with device(target_name, target, log) as dev, dev.scratch("peak") as folder:
                models = {}
                for family, artifact in made.items():
                    if isinstance(artifact, Path):
                        for p in sorted(artifact.parent.iterdir()):  # the artifact and its side files (.names)
                            dev.host.put(p, f"{folder}/{family}-{p.name}")
                        models[family] = f"{folder}/{family}-{artifact.name}"
                request = {"runtime": target.runtime, "threads": target.threads, "out_dir": folder, "models": models}
                request |= {
                    "sizes": [gemm.SIDE],
                    "layers": gemm.LAYERS,
                    "sample_shape": gemm.input_shape(target.runtime, gemm.SIDE),
                }
                res = dev.call("peak", request)
    skipped = {f: {"skipped": why} for f, why in made.items() if isinstance(why, str)}
    return {**res, "measured": {**skipped, **res.get("measured", {})}}


def run(cfg: Config, target_name: str, log: Callable[[str], None] = print) -> dict:
    target = cfg.target[target_name]
    fp = read_fingerprint(LAYOUT.fingerprint(target_name), target_name)
    out = {
        "fingerprint_sha256": fp.get("fingerprint_sha256"),
        "target": target_name,
        "runtime": target.runtime,
        "nominal": nominal(fp, target.runtime),
    }
    if target.runtime in MEASURED_RUNTIMES:
        with device(target_name, target, log) as dev, dev.scratch("peak") as folder:
            res = dev.call("peak", {"runtime": target.runtime, "threads": target.threads, "out_dir": folder})
        out.update(runtime_version=res["runtime_version"], threads=res["threads"], measured=res["measured"])
    elif target.runtime in gemm.FAMILIES:
        res = _converted_peaks(target_name, target, log)
        why = f"{target.runtime} builds no GEMM of this family here (its peak GEMMs: {', '.join(gemm.FAMILIES[target.runtime])})"
        measured = {f: {"skipped": why} for f in out["nominal"]} | res["measured"]
        out.update(runtime_version=res["runtime_version"], threads=res["threads"], measured=measured)
    else:
        why = f"no GEMM kernel for {target.runtime} in the agent: efficiency is against the nominal peak only"
        out.update(runtime_version=None, threads=target.threads, measured={f: {"skipped": why} for f in out["nominal"]})
    for fam, nom in out["nominal"].items():
        log(_line(fam, nom, out["measured"].get(fam)))
    return out


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("peak", target=True).parse_args(argv)
    path = LAYOUT.peak(args.target)
    with stage.stage_errors(f"peak@{args.target}", outputs=[path]):
        cfg = stage.load(args)
        write_json(path, run(cfg, args.target, lambda m: stage.log(f"peak@{args.target}", m)))


if __name__ == "__main__":
    main()
