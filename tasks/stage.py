"""What every ``python -m tasks.<stage>`` entry point shares: the command line, logging, and turning
known errors into one clear message and a non-zero exit (no traceback, no outputs). Output paths
are :mod:`tasks.layout`'s."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tasks.config import Config, ConfigError, load_config
from tasks.io import remove
from tasks.text import plain

TRANSIENT_EXIT = 75


class StageError(RuntimeError):
    """A stage's own check failed (e.g. parity outside tolerance); the message says what to do."""


def log(stage: str, msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {stage}: {msg}", file=sys.stderr, flush=True)


def parser(stage: str, matrix: bool = False, target: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m tasks.{stage}")
    p.add_argument("--params", default="params.yaml", help="composed config (default: params.yaml)")
    if matrix or target:
        p.add_argument("--target", required=True, help="target name (a key of the target section)")
    if matrix:
        p.add_argument(
            "--precision", default=None, help="one precision of build.precisions (default: every one, in order)"
        )
    return p


def precisions(cfg: Config, args: argparse.Namespace) -> list[str]:
    """The precisions a per-target stage runs: ``--precision`` alone, else every one configured."""
    return [args.precision] if getattr(args, "precision", None) else list(cfg.build.precisions)


def known_errors() -> tuple[type[BaseException], ...]:
    from tasks.agent.client import AgentError
    from tasks.data.errors import DataError
    from tasks.hosts.base import HostError
    from tasks.models.errors import CheckpointError, DecoderError
    from tasks.quant.common import QuantError
    from tasks.records import RecordError
    from tasks.registry import UnknownName
    from tasks.runtimes.base import BuildError

    # not KeyError: a bare one is a bug and keeps its traceback; a name missing from a registry
    # (a user's config) raises UnknownName
    return (
        AgentError,
        ConfigError,
        CheckpointError,
        DecoderError,
        DataError,
        BuildError,
        HostError,
        QuantError,
        StageError,
        UnknownName,
        RecordError,
    )


def message(e: BaseException) -> str:
    """A known error's message, without terminal escape codes: messages quote torch, ONNX, runtimes
    and devices, whose text may carry them."""
    return plain(e)


@contextlib.contextmanager
def stage_errors(stage: str, outputs: Iterable[Path] = ()) -> Iterator[None]:
    """Remove ``outputs`` on any failure (nothing half-written is left); exit 1 with ``<stage>: error: <message>`` on a
    known error, and let bugs raise with their traceback."""
    try:
        yield
    except BaseException as e:
        for out in outputs:
            remove(out)
        if isinstance(e, ItemFailed):  # each item's error is printed already
            print(f"edgeforge {stage}: error: {e}", file=sys.stderr, flush=True)
            sys.exit(TRANSIENT_EXIT if e.transient else 1)
        if not isinstance(e, known_errors()):
            raise
        print(f"edgeforge {stage}: error: {message(e)}", file=sys.stderr, flush=True)
        # 75 (EX_TEMPFAIL): a device that may answer later; drivers retry only these (flows/)
        sys.exit(TRANSIENT_EXIT if getattr(e, "transient", False) else 1)


def load(args: argparse.Namespace) -> Config:
    from tasks.workspace import dvc_quiet

    with dvc_quiet():  # not while another `dvc exp run` swaps the workspace's params.yaml (see tasks/workspace.py)
        cfg = load_config(args.params)
    if getattr(args, "target", None) is not None:
        if args.target not in cfg.target:
            raise ConfigError(f"--target {args.target!r} is not defined; defined targets: {', '.join(cfg.target)}")
        if getattr(args, "precision", None) is not None and args.precision not in cfg.build.precisions:
            raise ConfigError(
                f"--precision {args.precision!r} is not in build.precisions ({', '.join(cfg.build.precisions)})"
            )
    return cfg


class ItemFailed(Exception):
    """One or more items of a per-target stage failed (each already reported); ``transient`` when
    every one of them was a device that did not answer."""

    def __init__(self, failed: list[str], transient: bool) -> None:
        super().__init__(f"{len(failed)} failed: {', '.join(failed)}")
        self.failed, self.transient = failed, transient


def each(
    items: Iterable[str],
    work: Callable[[str], None],
    outputs: Callable[[str], list[Path]],
    name: Callable[[str], str],
) -> None:
    """Run ``work(item)`` for every item of a per-target stage (``build@jetson`` over its precisions).
    A known error in one item removes that item's ``outputs``, is reported as ``edgeforge
    <name(item)>: error: <message>`` (``build@jetson-int8-mixed``), and the other items still run: their outputs persist
    and are kept on the next run (:mod:`tasks.reuse`). Afterwards, any failure exits 1 (75 when
    every failure was transient); a bug raises at once with its traceback."""
    failed, transient = [], True
    for item in items:
        try:
            work(item)
        except BaseException as e:
            for out in outputs(item):
                remove(out)
            if not isinstance(e, known_errors()):
                raise
            print(f"edgeforge {name(item)}: error: {message(e)}", file=sys.stderr, flush=True)
            failed.append(name(item))
            transient = transient and bool(getattr(e, "transient", False))
    if failed:
        raise ItemFailed(failed, transient)
