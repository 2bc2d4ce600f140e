"""Which targets share one build: a target's device class, and the key of one shared build.

Two devices get the same artifact from the same build request when they have the same hardware
the runtime compiles for and the same toolkits: ``class_key`` is the runtime plus the fingerprint's
build-relevant facts (:data:`CPU_KEYS` of the CPU, GPU names and compute capabilities, L4T/JetPack,
CUDA, TensorRT, ONNX Runtime, OpenVINO, power mode), hashed; never what merely tells two units
apart (address, hostname, kernel release, RAM, clocks, Python/numpy versions). A target's
``device_class`` names its class explicitly instead: the user then vouches that its hardware and
toolkits are the same as the class's other targets'.

``entry_digest`` is the digest of one precision's build inputs as :mod:`tasks.reuse` computes it for
``build@<target>``, less what is the target's own and does not change the artifact: its fingerprint
file (the class key stands for it), its connection keys (:data:`TARGET_KEYS_NOT_BUILT`) and its name.
The device choices the build request carries (threads, ORT layout, OpenVINO hints) are part of it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

from tasks.config import ConfigError
from tasks.reuse import StageInputs

#: the CPU facts a runtime's kernels depend on (vendor/family/model: the microarchitecture; ``flags``:
#: the ISA extensions the probe lists, :data:`tasks.agent.agent.CPU_FLAGS`); not cores or clocks
CPU_KEYS = ("vendor", "family", "model_id", "model", "flags")
#: fingerprint keys whose value changes what a build produces
TOOLKIT_KEYS = ("l4t", "jetpack", "cuda", "tensorrt", "onnxruntime", "openvino", "power_mode")
#: ``target.<name>`` keys that never change the artifact: how the device is reached and waited for,
#: where its files are, its peaks (the roofline's), its class name; every other key is part of the build
TARGET_KEYS_NOT_BUILT = frozenset(
    {
        "transport",
        "host",
        "port",
        "user",
        "key_file",
        "known_hosts",
        "allow_unknown_host",
        "workdir",
        "python",
        "connect_timeout_s",
        "command_timeout_s",
        "retries",
        "peak_gflops",
        "device_class",
    }
)
#: ``target.<name>.tensorrt`` keys that are paths on the device (the version is the fingerprint's)
TENSORRT_PATHS = frozenset({"trtexec", "timing_cache"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def class_facts(fp: dict[str, Any], runtime: str) -> dict[str, Any]:
    """The build-relevant part of a fingerprint (``artifacts/probe/<target>.json``), with the runtime."""
    cpu = fp.get("cpu") or {}
    gpus = [g for g in fp.get("gpu") or [] if isinstance(g, dict)]
    return {
        "runtime": runtime,
        "arch": fp.get("arch"),
        "cpu": {k: sorted(cpu.get(k) or []) if k == "flags" else cpu.get(k) for k in CPU_KEYS},
        "gpu": sorted((str(g.get("name")), str(g.get("compute_capability"))) for g in gpus),
        **{k: fp.get(k) for k in TOOLKIT_KEYS},
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:24]


def class_key(fp: dict[str, Any], runtime: str, explicit: str | None = None, target: str = "?") -> str:
    """The class of a device probed as ``fp`` running ``runtime``: ``explicit`` (the target's
    ``device_class``) when set, else ``<runtime>-<first GPU and SM, or arch>-<12 hex of the facts' sha256>``."""
    if explicit is not None:
        if not _NAME.fullmatch(explicit):
            raise ConfigError(
                f"target.{target}.device_class {explicit!r}: use 1-64 letters, digits, '.', '_' or '-' "
                "(it names a folder), starting with a letter or digit"
            )
        return explicit
    facts = class_facts(fp, runtime)
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]
    gpu = facts["gpu"][0] if facts["gpu"] else None
    where = f"{_slug(gpu[0])}-sm{gpu[1].replace('.', '')}" if gpu else _slug(str(facts["arch"]))
    return f"{runtime}-{where}-{digest}"


def built_params(target: dict[str, Any]) -> dict[str, Any]:
    """The keys of a ``target.<name>`` section (a plain mapping) that change the artifact."""
    out = {k: v for k, v in target.items() if k not in TARGET_KEYS_NOT_BUILT}
    if isinstance(out.get("tensorrt"), dict):
        out["tensorrt"] = {k: v for k, v in out["tensorrt"].items() if k not in TENSORRT_PATHS}
    return out


def entry_digest(
    ins: StageInputs, target: str, section: dict[str, Any], precision: str, choices: dict[str, Any]
) -> str:
    """The digest of ``precision``'s build for ``target`` (its config ``section``, a plain mapping)
    as any device of its class would make it:
    ``build@<target>``'s declared inputs narrowed to the precision (:func:`tasks.reuse.item_digest`),
    without the target's fingerprint file and its :data:`TARGET_KEYS_NOT_BUILT`, with the device
    ``choices`` (their reasons left out)."""
    from tasks.layout import LAYOUT

    # the same inputs, named without the target: its params section as "target.*", no fingerprint file
    own = copy.copy(ins)
    own.deps = [d for d in ins.deps if d != LAYOUT.fingerprint(target).as_posix()]
    own.params = ["target.*" if p == f"target.{target}" else p for p in ins.params]
    narrow: dict[str, Any] = {
        "build.precisions": precision,
        LAYOUT.quantize_root.as_posix(): LAYOUT.quantize_dir(precision),
        LAYOUT.quantize_metrics_dir.as_posix(): LAYOUT.quantize_metrics(precision),
        "target.*": built_params(section),
    }
    h = hashlib.sha256(own.digest(precision, narrow).encode())
    h.update(json.dumps({k: v for k, v in choices.items() if k != "reasons"}, sort_keys=True).encode())
    return h.hexdigest()
