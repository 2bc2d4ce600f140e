"""Stage ``probe@<target>``: what the device is, as a fingerprint JSON.

The device agent reports OS, arch, CPU, RAM, GPU and compute capability, L4T/JetPack, CUDA,
TensorRT, ONNX Runtime, OpenVINO and power mode (nothing volatile). Builds depend on the
fingerprint's *content*: an engine is rebuilt exactly when the device's toolkit changes.
Output: ``artifacts/probe/<target>.json`` (the fingerprint plus its sha256 under
``fingerprint_sha256``).

DVC does not ask the device on every ``dvc repro`` (a no-op ``dvc repro`` stays DVC's own
overhead, no SSH round trip per target): ``python -m tasks.probe --refresh`` asks every target of
``build.targets`` and rewrites a recorded fingerprint only when the device changed, so the next
``dvc repro`` re-runs that probe and what depends on it. ``make run`` and the Prefect pipeline
flow refresh first; after a JetPack upgrade by hand, run it (or ``dvc repro -f
probe@<target>``).
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
    """:func:`run`, written to the stage's output."""
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


def refresh(cfg: Config, targets: list[str], log=print) -> list[str]:
    """Probe ``targets`` and rewrite each recorded fingerprint whose content changed (a target not
    probed yet is left to ``dvc repro``); returns the targets whose fingerprint changed."""
    from tasks.io import read_json

    changed = []
    for t in targets:
        path = LAYOUT.fingerprint(t)
        if not path.is_file():
            continue
        old, fp = read_json(path), run(cfg, t)
        if old.get("fingerprint_sha256") == fp["fingerprint_sha256"]:
            log(f"probe@{t}: unchanged ({fp['fingerprint_sha256'][:12]})")
            continue
        write_json(path, fp)
        changed.append(t)
        log(
            f"probe@{t}: the device changed ({str(old.get('fingerprint_sha256'))[:12]} -> {fp['fingerprint_sha256'][:12]}): {summary(fp)}"
        )
    return changed


def main(argv: list[str] | None = None) -> None:
    p = stage.parser("probe")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--target", help="target name (a key of the target section)")
    g.add_argument(
        "--refresh",
        action="store_true",
        help="ask every target of build.targets and rewrite the fingerprints of those that changed",
    )
    args = p.parse_args(argv)
    if args.refresh:
        with stage.stage_errors("probe --refresh", outputs=[]):
            cfg = stage.load(args)
            refresh(cfg, list(cfg.build.targets), lambda m: stage.log("probe", m))
        return
    out = LAYOUT.fingerprint(args.target)
    with stage.stage_errors(f"probe@{args.target}", outputs=[out]):
        cfg = stage.load(args)
        fp = record(cfg, args.target)
        stage.log(f"probe@{args.target}", summary(fp))


if __name__ == "__main__":
    main()
