"""Stage ``probe@<target>``: what the device is, as a fingerprint JSON.

The device agent reports OS, arch, CPU, RAM, GPU and compute capability, L4T/JetPack, CUDA,
TensorRT, ONNX Runtime, OpenVINO and power mode (nothing volatile). DVC re-runs this stage every
time (``always_changed``) but builds depend on the fingerprint's *content*: an engine is rebuilt
exactly when the device's toolkit changes. Output: ``artifacts/probe/<target>.json`` (the
fingerprint plus its sha256 under ``fingerprint_sha256``).
"""

from __future__ import annotations

import hashlib
import json

from tasks import stage
from tasks.agent.client import device
from tasks.config import Config
from tasks.io import write_json
from tasks.layout import LAYOUT


def fingerprint_hash(fp: dict) -> str:
    """sha256 of the fingerprint's canonical JSON (sorted keys, without the hash itself)."""
    body = {k: v for k, v in fp.items() if k != "fingerprint_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def run(cfg: Config, target_name: str) -> dict:
    target = cfg.target[target_name]
    with device(target_name, target, lambda m: stage.log(f"probe@{target_name}", m)) as dev:
        fp = dev.call(
            "probe",
            {"trtexec": target.tensorrt.trtexec if target.runtime == "tensorrt" else None},
            timeout=max(60.0, target.connect_timeout_s * 3),
        )
    fp["fingerprint_sha256"] = fingerprint_hash(fp)
    return fp


def record(cfg: Config, target_name: str) -> dict:
    """:func:`run`, written to the stage's output (used by ``main`` and by the fleet)."""
    fp = run(cfg, target_name)
    write_json(LAYOUT.fingerprint(target_name), fp)
    return fp


def summary(fp: dict) -> str:
    gpu = ", ".join(f"{g.get('name')} (sm {g.get('compute_capability')})" for g in fp.get("gpu") or []) or "no GPU"
    tools = [f"{k} {fp[k]}" for k in ("tensorrt", "cuda", "onnxruntime", "openvino") if fp.get(k)]
    cpu = fp.get("cpu") or {}
    return (
        f"{fp.get('arch')} {cpu.get('model')} x{cpu.get('cores')}, {fp.get('ram_gib')} GiB, {gpu}; "
        f"{', '.join(tools) or 'no runtime found'}; fingerprint {fp['fingerprint_sha256'][:12]}"
    )


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("probe", target=True).parse_args(argv)
    out = LAYOUT.fingerprint(args.target)
    with stage.stage_errors(f"probe@{args.target}", outputs=[out]):
        cfg = stage.load(args)
        fp = record(cfg, args.target)
        stage.log(f"probe@{args.target}", summary(fp))


if __name__ == "__main__":
    main()
