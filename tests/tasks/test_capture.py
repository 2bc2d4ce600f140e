"""output_to: every way a library writes output ends in the log file, and the console is restored."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest

from tasks.capture import output_to


def test_everything_goes_to_the_file(tmp_path, capfd):
    log = tmp_path / "logs" / "x.log"
    elsewhere = io.StringIO()  # like torch's handler, bound to the sys.stderr of import time
    handler = logging.StreamHandler(elsewhere)
    lib = logging.getLogger("torch.edgeforge_test")
    lib.addHandler(handler)
    try:
        with output_to(log):
            print("a print")
            print("to stderr", file=sys.stderr)
            os.write(2, b"fd 2 directly\n")  # C/C++ code
            subprocess.run([sys.executable, "-c", "print('child process')"], check=True)
            lib.error("a torch log line")
        print("console again")
    finally:
        lib.removeHandler(handler)
    out, err = capfd.readouterr()
    assert out == "console again\n" and err == ""
    assert elsewhere.getvalue() == ""
    text = log.read_text()
    # (warnings print through sys.stderr too, but pytest records them instead: the export stage's
    # test run as a subprocess checks them)
    for s in ("a print", "to stderr", "fd 2 directly", "child process", "a torch log line"):
        assert s in text
    assert handler.stream is elsewhere  # restored


def test_exception_traceback_logged_and_raised(tmp_path, capfd):
    log = tmp_path / "x.log"
    log.write_text("earlier attempt\n")
    with pytest.raises(ValueError, match="boom"):
        with output_to(log):
            raise ValueError("boom")
    text = log.read_text()
    assert text.startswith("earlier attempt\n")  # appended
    assert "Traceback" in text and "ValueError: boom" in text
    assert capfd.readouterr() == ("", "")
