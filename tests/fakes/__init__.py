"""Fakes of device tools for tests on machines without the device's hardware. Each is a FAKE that
replays real recorded output (see its header); tests install a copy under ``tmp_path``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

FAKES = Path(__file__).resolve().parent
TRTEXEC_FIXTURES = FAKES.parent / "fixtures" / "trtexec"


def install_trtexec(folder: Path, tensorrt: str = "10.3.0", fail: str | None = None) -> Path:
    """Copy the fake ``trtexec`` into ``folder`` with its ``fake_trtexec.json`` beside it and
    return the executable's path. ``tensorrt``: the version it claims; ``fail``: a fixture log
    name (tests/fixtures/trtexec) to replay as a failed build instead of building."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = Path(shutil.copy2(FAKES / "trtexec", folder / "trtexec")).resolve()
    exe.chmod(0o755)
    (folder / "fake_trtexec.json").write_text(json.dumps(
        {"tensorrt": tensorrt, "fail": fail, "fixtures": str(TRTEXEC_FIXTURES)}, indent=1) + "\n")
    return exe
