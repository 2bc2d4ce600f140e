"""Fakes of device tools for tests on machines without the device's hardware. Each is a FAKE that
replays real recorded output or runs the model it was given on the CPU (see its header); tests
install a copy under ``tmp_path``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FAKES = Path(__file__).resolve().parent
TRTEXEC_FIXTURES = FAKES.parent / "fixtures" / "trtexec"
#: a FAKE ``tensorrt`` + ``pycuda`` pair (put this folder on the agent subprocess's PYTHONPATH): its
#: engines are the fake trtexec's files, run with ONNX Runtime on the CPU
TRT_PYTHON = FAKES / "trt_python"


def install_trtexec(
    folder: Path,
    tensorrt: str = "10.3.0",
    fail: str | None = None,
    fail_load: str | None = None,
    fail_flag: str | None = None,
    dla_log: str | None = None,
) -> Path:
    """Copy the fake ``trtexec`` into ``folder`` with its ``fake_trtexec.json`` beside it and
    return the executable's path. ``tensorrt``: the version it claims; ``fail``: a fixture log
    name (tests/fixtures/trtexec) to replay as a failed build instead of building; ``fail_flag``:
    only in builds given that flag (``--int8``: no tactic for one precision's layers, the others
    build); ``fail_load``: one to replay as a failed ``--loadEngine`` (benchmark) run; ``dla_log``: a
    recorded DLA build log whose lines ``--useDLACore`` builds print."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = Path(shutil.copy2(FAKES / "trtexec", folder / "trtexec")).resolve()
    exe.chmod(0o755)
    (folder / "fake_trtexec.json").write_text(
        json.dumps(
            {
                "tensorrt": tensorrt,
                "fail": fail,
                "fail_flag": fail_flag,
                "fail_load": fail_load,
                "dla_log": dla_log,
                "fixtures": str(TRTEXEC_FIXTURES),
            },
            indent=1,
        )
        + "\n"
    )
    return exe


def trt_python_env(env: dict[str, str], tensorrt: str) -> dict[str, str]:
    """``env`` with the FAKE TensorRT Python packages importable, claiming version ``tensorrt``."""
    path = [str(TRT_PYTHON), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": ":".join(path), "EDGEFORGE_FAKE_TRT_VERSION": tensorrt}


HAILO_FIXTURES = FAKES.parent / "fixtures" / "hailo"


def install_hailo(folder: Path, fail: dict[str, str] | None = None) -> Path:
    """Copy the FAKE ``hailo`` (Dataflow Compiler CLI) into ``folder`` with its ``fake_hailo.json`` and
    return the executable's path. ``fail``: ``{step: fixture log}`` (tests/fixtures/hailo), a step
    (``parser``, ``optimize``, ``compiler``) that replays that recorded failure and exits 1."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = Path(shutil.copy2(FAKES / "hailo", folder / "hailo")).resolve()
    exe.chmod(0o755)
    conf = {"fixtures": str(HAILO_FIXTURES), "fail": fail or {}}
    (folder / "fake_hailo.json").write_text(json.dumps(conf, indent=1) + "\n")
    return exe
