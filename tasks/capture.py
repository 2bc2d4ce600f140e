"""Keep a noisy library's output in a log file: the user sees EdgeForge's own lines only.

Everything a block writes goes to the file: Python's print and warnings (``sys.stdout``/``sys.stderr``),
logging, and what C/C++ code or child processes write to file descriptors 1 and 2. The torch
exporters use all of these: torch's loggers print pages of tracebacks and graph dumps on a failed
``torch.export``, the TorchScript tracer warns, and C++ code logs to fd 2.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

# Loggers whose console handlers are pointed at the file too: torch binds its handlers to the
# sys.stderr of import time, which is fd 2 for a stage (the fd redirect covers it) but may be
# another stream when EdgeForge is embedded or under pytest.
LIBRARIES = ("torch", "onnx", "onnxscript", "onnx_ir", "onnxruntime")


def _flush_c_stdio() -> None:
    # C stdio keeps a redirected stdout block-buffered: flush it while it still points at the file
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


def _console_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.root] + [
        lg
        for name, lg in logging.root.manager.loggerDict.items()
        if name.split(".")[0] in LIBRARIES and isinstance(lg, logging.Logger)
    ]
    # exactly StreamHandler: FileHandlers and subclasses (pytest's capture, torch's lazy trace
    # file) have their own destination and are left alone
    return [h for lg in loggers for h in lg.handlers if type(h) is logging.StreamHandler]


def _set_stream(h: logging.StreamHandler, f: TextIO) -> TextIO | None:
    """``h.setStream(f)``, also when ``h``'s stream is already closed (setStream flushes it first): a library
    that re-creates its handlers binds them to the ``sys.stderr`` of that moment, which may be gone."""
    try:
        return h.setStream(f)
    except ValueError:
        old, h.stream = h.stream, f
        return old


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[TextIO]:
    """Append all output of the block to ``path`` (created with its folder). An exception leaving the
    block is written there with its traceback, then raised as usual. Redirects file descriptors, so
    it holds for the whole process: use it where nothing else runs concurrently (a stage)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1, encoding="utf-8", errors="replace") as f:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        _flush_c_stdio()
        saved: dict[int, int] = {}
        for fd in (1, 2):
            with contextlib.suppress(OSError):  # a closed fd (a daemon) has nothing to redirect
                saved[fd] = os.dup(fd)
                os.dup2(f.fileno(), fd)
        handlers = {h: _set_stream(h, f) for h in _console_handlers()}
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield f
        except BaseException as e:
            traceback.print_exception(e, file=f)
            raise
        finally:
            f.flush()
            _flush_c_stdio()
            for h, stream in handlers.items():
                if stream is not None:  # setStream returns None when the stream was already f
                    h.setStream(stream)
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
