"""The deployment contract of a release bundle (issue 17): a container recipe per device class and,
for TensorRT and ONNX Runtime, a Triton model repository entry.

:func:`container_files` returns the bundle's ``container/Dockerfile``, ``container/README.md`` and
``triton/<model>/config.pbtxt`` as bytes, the manifest's ``container`` section, and where the bundle
helper copies the artifact for Triton. Every version is pinned from the device's fingerprint (the
probe record: ``tasks/agent/agent.py`` ``cmd_probe``):

- Jetson (TensorRT): ``FROM nvcr.io/nvidia/l4t-jetpack:r<L4T>``, the JetPack image of the probed L4T
  release (CUDA, cuDNN and the TensorRT the device builds its engines with); an L4T release with no
  known image is refused, never guessed (:data:`L4T_IMAGES`).
- CPU boards (ONNX Runtime, OpenVINO): ``FROM python:3.<device minor>-slim`` with
  ``pip install <runtime>==<fingerprint version> numpy==<fingerprint version>``.

The image copies the bundle (the build context is the bundle folder) to ``/opt/edgeforge`` in the
layout the agent's ``release-status`` reads: ``releases/<version>-<bundle sha[:12]>/`` and a
``current`` symlink to it; the device's live release root can be mounted over ``/opt/edgeforge``
instead. Its default command checks the pinned runtime against the release's manifest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tasks.release.dockerfile import dockerfile_problems
from tasks.release.triton import PLATFORMS, config_pbtxt
from tasks.stage import StageError

ROOT = "/opt/edgeforge"

# NVIDIA's L4T JetPack images on NGC are tagged r<L4T release>, one per JetPack release
# (https://catalog.ngc.nvidia.com/orgs/nvidia/containers/l4t-jetpack/tags: r35.1.0 ... r35.4.1,
# r36.2.0, r36.3.0, r36.4.0; dusty-nv/jetson-containers picks `l4t-jetpack:r{L4T}` the same way for
# JetPack 5). The l4t-tensorrt images are tagged by TensorRT version instead (r8.5.2-runtime for L4T
# 35.x, r10.3.0-runtime for 36.4) and do not exist for every JetPack, so the L4T-keyed l4t-jetpack is
# the one a probe's `l4t` names. L4T release -> (JetPack, TensorRT the image carries).
L4T_IMAGES = {
    "35.1.0": ("5.0.2", "8.4.1"),
    "35.2.1": ("5.1", "8.5.2"),
    "35.3.1": ("5.1.1", "8.5.2"),
    "35.4.1": ("5.1.2", "8.5.2"),
    "36.2.0": ("6.0 DP", "8.6.2"),
    "36.3.0": ("6.0", "8.6.2"),
    "36.4.0": ("6.1", "10.3.0"),
}
# L4T point releases that run on an earlier image of the same user space: R36.4.3 (JetPack 6.2) and
# R36.4.4 (6.2.1) keep R36.4's CUDA 12.6 and TensorRT 10.3, and NVIDIA published no later l4t-jetpack
# than r36.4.0 for them. Anything else unknown is refused.
L4T_SAME_AS = {"36.4": "36.4.0"}
JETSON_IMAGE = "nvcr.io/nvidia/l4t-jetpack"

# runtime -> the pip package the CPU image installs (the fingerprint's version of it)
CPU_RUNTIMES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}

# Copied bundle -> release layout: the release id is <version>-<sha256 of manifest.json>[:12], as on
# the device; manifest.json's own bytes say both, so the recipe need not know them in advance.
LAYOUT_SCRIPT = (
    "import hashlib, json, os; b = open('incoming/manifest.json', 'rb').read(); "
    "rid = json.loads(b)['version'] + '-' + hashlib.sha256(b).hexdigest()[:12]; os.makedirs('releases'); "
    "os.rename('incoming', 'releases/' + rid); os.symlink('releases/' + rid, 'current')"
)
# The image's default command (Python >= 3.8): the installed runtime is the one the release was
# validated with (the manifest's artifact.runtime_version), else exit 1. argv: the pip name, the module.
SELF_CHECK = """\
import importlib, importlib.metadata, json, os, re, sys
root = os.environ.get("EDGEFORGE_ROOT", "/opt/edgeforge")
m = json.load(open(os.path.join(root, "current", "manifest.json")))
want = str(m["artifact"]["runtime_version"])
try:
    have = importlib.metadata.version(sys.argv[1])
except importlib.metadata.PackageNotFoundError:
    have = str(importlib.import_module(sys.argv[2]).__version__)
ok = re.findall(r"\\d+", have)[: len(re.findall(r"\\d+", want))] == re.findall(r"\\d+", want)
print(json.dumps({"release": os.path.basename(os.path.realpath(os.path.join(root, "current"))),
                  "model": m["model"], "version": m["version"], "runtime": sys.argv[1],
                  "runtime_version": have, "validated_with": want, "ok": ok}))
sys.exit(0 if ok else 1)
"""


class ContainerError(StageError):
    """No pinned container recipe can be written for this device (the message says why and what to do)."""


@dataclass(frozen=True)
class ContainerRecipe:
    """``files``: bundle relpath -> bytes; ``meta``: the manifest's ``container`` section
    ``{dockerfile, base_image, triton}``; ``model_file``: where the bundle helper copies the artifact
    for Triton (``triton/<model>/1/model.plan|model.onnx``), None without a Triton entry or artifact."""

    files: dict[str, bytes]
    meta: dict
    model_file: str | None


def _need(fingerprint: dict, key: str, why: str) -> str:
    value = fingerprint.get(key)
    if not value:
        raise ContainerError(f"the device fingerprint has no {key!r} version: {why}; re-probe the device")
    return str(value)


def _numbers(version: str, n: int) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:n])


def l4t_image(fingerprint: dict) -> tuple[str, str]:
    """The L4T JetPack base image for the probed L4T release and a comment line saying which release."""
    l4t = _need(fingerprint, "l4t", "a TensorRT release needs the Jetson's L4T release for its base image")
    parts = (re.findall(r"\d+", l4t) + ["0", "0"])[:3]
    key = ".".join(parts)
    tag = key if key in L4T_IMAGES else L4T_SAME_AS.get(".".join(parts[:2]))
    if tag is None:
        raise ContainerError(
            f"L4T {l4t} (fingerprint 'l4t') has no known NVIDIA L4T image (known: {', '.join(L4T_IMAGES)}, "
            f"{', '.join(k + '.x' for k in L4T_SAME_AS)}); add it to tasks/release/containers.py L4T_IMAGES "
            f"once its {JETSON_IMAGE} tag is checked in NGC's catalog"
        )
    jetpack, trt = L4T_IMAGES[tag]
    device_trt = _need(fingerprint, "tensorrt", "the image must carry the TensorRT the device builds with")
    if _numbers(device_trt, 2) != _numbers(trt, 2):
        raise ContainerError(
            f"the device runs TensorRT {device_trt} but {JETSON_IMAGE}:r{tag} (L4T {l4t}) carries TensorRT {trt}: "
            "an engine built on the device would not load in the container; re-probe the device"
        )
    note = (
        f"L4T R{tag}, JetPack {jetpack}, TensorRT {trt} (device: L4T {l4t}); tags are r<L4T release>:\n"
        "# https://catalog.ngc.nvidia.com/orgs/nvidia/containers/l4t-jetpack/tags"
    )
    return f"{JETSON_IMAGE}:r{tag}", note


def _dockerfile(base: str, base_note: str, labels: dict, setup: list[str], python: str, check: list[str]) -> str:
    lines = [
        "# EdgeForge release image: the pinned runtime the release was validated with, and the release",
        f"# under {ROOT}. Build from the bundle folder: docker build -f container/Dockerfile .",
        f"# Base: {base_note}",
        f"FROM {base}",
        "LABEL " + " \\\n      ".join(f"{k}={json.dumps(str(v))}" for k, v in labels.items()),
        f"ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 EDGEFORGE_ROOT={ROOT}",
        *setup,
        f"COPY . {ROOT}/incoming/",
        f"WORKDIR {ROOT}",
        "RUN " + json.dumps([python, "-c", LAYOUT_SCRIPT]),
        "CMD " + json.dumps([python, "-c", SELF_CHECK, *check]),
    ]
    return "\n".join(lines) + "\n"


def _readme(model: str, runtime: str, base: str, jetson: bool, triton: str | None) -> str:
    gpu = "--runtime nvidia " if jetson else ""
    text = f"""\
# Container for {model} ({runtime})

`Dockerfile` builds an image with the runtime this release was validated with, every version pinned
(base `{base}`), and the release copied to `{ROOT}` in the device's layout (`releases/<release id>/`
and a `current` symlink, as `edgeforge fleet status` reports it). Build it from the bundle folder
(the one holding `manifest.json`); verify the bundle first (`edgeforge deploy` does on the device):

    docker build -f container/Dockerfile -t edgeforge/{model.lower()}:<version> .
    docker run --rm {gpu}edgeforge/{model.lower()}:<version>

The default command prints the release and the runtime's version as JSON and exits 1 when the runtime
is not the version in `manifest.json` (`artifact.runtime_version`). Run your application in it with
`docker run ... edgeforge/{model.lower()}:<version> <command>`; the file to load is `artifact.files[0]`
of `{ROOT}/current/manifest.json` (or `source.onnx` when the bundle carries no portable artifact).
To run whatever release the agent has activated on the device instead of the copy, mount the device's
release root over it: `-v <target workdir>/release:{ROOT}:ro` (the agent's `installed.json` in
`current/` then names the artifact it installed, rebuilt or not).
"""
    if jetson:
        text += """
On a Jetson the image must match the device's L4T release (it is chosen from the probed fingerprint);
run it with the NVIDIA container runtime (`--runtime nvidia`) so that the GPU is visible.
"""
    if triton:
        text += f"""
## Triton

`{triton}/` is a Triton model repository entry (`config.pbtxt`: the model's input and output names,
dtypes, dims and max batch size; `1/` the model file). Serve it with a Triton release whose backend
matches the validated runtime version: `tritonserver --model-repository=<bundle>/triton`.
"""
    elif runtime == "openvino":
        text += "\nNo Triton entry: Triton's OpenVINO backend brings its own OpenVINO, not the validated one.\n"
    return text


def container_files(
    model: str,
    runtime: str,
    precision: str,
    fingerprint: dict,
    artifact_name: str | None,
    io: dict,
    *,
    max_batch: int = 1,
) -> ContainerRecipe:
    """The container recipe and Triton entry of one bundle.

    ``model``: the registered model name (the Triton model's name too); ``runtime``: tensorrt,
    onnxruntime or openvino; ``precision``: the released precision (a label); ``fingerprint``: the
    probe record of the device the release was validated on; ``artifact_name``: the built artifact's
    file name in the bundle (None when not portable: no Triton model file then); ``io``: the model's
    tensors (:func:`tasks.release.triton.onnx_io`); ``max_batch``: Triton's ``max_batch_size`` for a
    dynamic-batch model (TensorRT: at most the engine profile's max batch).
    Raises :class:`ContainerError` when no pinned recipe exists for the device."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", model):
        raise ContainerError(f"model name {model!r} is not usable as a Triton model name ([A-Za-z0-9_.-])")
    labels = {"org.edgeforge.model": model, "org.edgeforge.runtime": runtime, "org.edgeforge.precision": precision}
    if runtime == "tensorrt":
        base, note = l4t_image(fingerprint)
        numpy = _need(fingerprint, "numpy", "the image pins the device's numpy")
        setup = [
            # pip from the image's Ubuntu release (the base tag fixes the suite); the TensorRT Python
            # bindings come with the image (JetPack's python3-libnvinfer)
            "RUN apt-get update && apt-get install -y --no-install-recommends python3-pip "
            "&& rm -rf /var/lib/apt/lists/*",
            f"RUN python3 -m pip install numpy=={numpy}",
        ]
        dockerfile = _dockerfile(base, note, labels, setup, "python3", ["tensorrt", "tensorrt"])
    elif runtime in CPU_RUNTIMES:
        python = _need(fingerprint, "python", "the image's Python is the device's")
        minor = _numbers(python, 2)
        version = _need(fingerprint, runtime, f"the image pins the {runtime} the release was validated with")
        numpy = _need(fingerprint, "numpy", "the image pins the device's numpy")
        base = f"python:{minor[0]}.{minor[1]}-slim"
        note = f"the official Python image of the device's Python {python} (Debian slim)"
        setup = [f"RUN python -m pip install {CPU_RUNTIMES[runtime]}=={version} numpy=={numpy}"]
        dockerfile = _dockerfile(base, note, labels, setup, "python", [CPU_RUNTIMES[runtime], runtime])
    else:
        raise ContainerError(f"runtime {runtime!r} has no container recipe (tensorrt, {', '.join(CPU_RUNTIMES)})")
    problems = dockerfile_problems(dockerfile)
    if problems:  # a bug in the recipe above, not bad input
        raise AssertionError(f"generated Dockerfile: {'; '.join(problems)}")
    files = {"container/Dockerfile": dockerfile.encode()}
    triton = f"triton/{model}" if runtime in PLATFORMS else None
    model_file = None
    if triton:
        comment = f"{model} {precision}, {runtime} {fingerprint.get(runtime) or ''}: generated by EdgeForge".strip()
        files[f"{triton}/config.pbtxt"] = config_pbtxt(model, runtime, io, max_batch, comment).encode()
        model_file = f"{triton}/1/{PLATFORMS[runtime][1]}" if artifact_name else None
    files["container/README.md"] = _readme(model, runtime, base, runtime == "tensorrt", triton).encode()
    return ContainerRecipe(
        files, {"dockerfile": "container/Dockerfile", "base_image": base, "triton": triton}, model_file
    )
