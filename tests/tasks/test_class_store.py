"""The class store's lock across processes, as the Prefect flow runs ``build@<target>`` of two devices
of one class side by side: the second waits for the first, naming it, and a builder that dies (killed,
no clean-up) releases it."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from tasks.device.class_store import locked
from tests.conftest import ROOT

HOLDER = f"""
import sys, time
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from tasks.device.class_store import locked
with locked(Path(sys.argv[1]), "build@orin1-fp16", print):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_build_of_the_class_waits_for_the_first_and_a_killed_builder_releases_it(tmp_path):
    lock = tmp_path / "class-builds" / "tensorrt-orin-sm87-0123456789ab" / "fp16-0123456789abcdef.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        logs: list[str] = []
        got = threading.Event()

        def second() -> None:
            with locked(lock, "build@orin2-fp16", logs.append):
                got.set()

        th = threading.Thread(target=second)
        th.start()
        deadline = time.monotonic() + 30
        while not logs and time.monotonic() < deadline:
            time.sleep(0.02)
        assert logs == ["waiting for build@orin1-fp16 (same device class)"] and not got.is_set()
        holder.send_signal(signal.SIGKILL)  # dies holding it: the kernel releases a flock with the process
        th.join(timeout=30)
        assert got.is_set()
        assert lock.read_text() == "build@orin2-fp16"  # who holds (held) it now, for the next one waiting
    finally:
        holder.kill()
        holder.wait()
