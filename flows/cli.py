"""``edgeforge``: the Prefect driver from the command line.

  edgeforge run [--checkpoint P] [-S key=value ...] [--exp-name N]   run the pipeline once
  edgeforge watch [--once] [--interval S | --cron C] [--retry-failed] [--pool P]  serve the checkpoint watcher
  edgeforge worker [--pool P] [--name N]                              take the work pool's pipeline runs here
  edgeforge summary                                                   the last run's summary
  edgeforge keygen | release | deploy | rollback | fleet | monitor     the release loop (flows/release_cli.py)

Nothing is opened implicitly (no browser, no UI server); the summary says where to look.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

from flows import release_cli
from flows.worker import CRASH_AFTER_S, HEARTBEAT_S


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeforge", description="EdgeForge pipeline driver (Prefect over DVC)")
    p.add_argument("-C", "--root", default=".", help="the EdgeForge repository (default: .)")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's logs")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the pipeline once (DVC decides which stages are out of date)")
    r.add_argument("--checkpoint", help="the checkpoint to deploy (sets model.checkpoint)")
    r.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, as for `dvc exp run -S` (repeatable)",
    )
    r.add_argument("--exp-name", help="save the result as this DVC experiment (`dvc exp save`)")
    r.add_argument("--retries", type=int, default=2, help="extra attempts of device stages after transient errors")
    r.add_argument(
        "--host-jobs",
        type=int,
        default=1,
        help="host-side stages at once (default 1: benchmarks of local targets never share the CPU)",
    )
    r.add_argument(
        "--remote", help="the DVC remote whose run-cache stages are shared through (default: `dvc remote default`)"
    )
    r.add_argument(
        "--no-remote", action="store_true", help="share nothing: no run-cache pulled or pushed (one machine)"
    )
    w = sub.add_parser("watch", help="serve the checkpoint watcher on its schedule (watch.interval_s / watch.cron)")
    w.add_argument("--once", action="store_true", help="look once, run what is new, and exit")
    w.add_argument("--interval", type=float, help="seconds between looks (overrides watch.interval_s)")
    w.add_argument("--cron", help="cron schedule (overrides watch.cron)")
    w.add_argument("--retry-failed", action="store_true", help="run checkpoints whose run failed again (--once)")
    w.add_argument("--pool", help="submit each new checkpoint to this work pool (overrides watch.work_pool)")
    k = sub.add_parser("worker", help="take pipeline runs from a Prefect work pool, in this working copy")
    k.add_argument("--pool", default="edgeforge", help="the work pool (default: edgeforge)")
    k.add_argument("--name", help="this worker's name in Prefect (default: <host>-<folder>)")
    k.add_argument("--heartbeat", type=int, default=HEARTBEAT_S, help="seconds between a run's heartbeats (>= 30)")
    k.add_argument("--crash-after", type=int, default=CRASH_AFTER_S, help="no heartbeat for this long: Crashed")
    sub.add_parser("summary", help="print the last run's summary table and the watcher's record")
    release_cli.add_parsers(sub)
    return p


class Progress:
    """Rich progress over the flow's stages: a bar of stages settled, the ones running named."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._p = RichProgress(
            TextColumn("[bold]pipeline"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            transient=False,
        )
        self._task = self._p.add_task("", total=total)
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str, event: str, info: dict) -> None:
        with self._lock:
            if event == "started":
                self._running.add(name)
            else:
                self._running.discard(name)
                if event == "failed":
                    self._p.console.print(f"[red]failed[/] {info.get('error', name)}", highlight=False)
                elif event == "done":
                    self._p.console.print(f"[green]ran[/] {name} ({info.get('seconds', 0):.1f} s)", highlight=False)
                elif event == "cached":
                    self._p.console.print(f"[cyan]cached[/] {name} (restored from the run-cache)", highlight=False)
                self._p.advance(self._task)
            self._p.update(self._task, description="running: " + ", ".join(sorted(self._running)))

    def __enter__(self):
        self._p.start()
        return self

    def __exit__(self, *exc) -> None:
        self._p.stop()


def _run(args) -> int:
    from flows import pipeline as pl
    from flows.dvc_graph import read

    root = Path(args.root).resolve()
    total = len(read(root))
    with Progress(total) as progress:
        pl.LISTENERS.append(progress)
        try:
            summary = pl.pipeline(
                checkpoint=args.checkpoint,
                overrides=args.overrides,
                exp_name=args.exp_name,
                root=str(root),
                retries=args.retries,
                host_jobs=args.host_jobs,
                remote=args.remote,
                share=not args.no_remote,
            )
        finally:
            pl.LISTENERS.remove(progress)
    ran, cached = len(summary["ran"]), len(summary["cached"])
    print(
        f"{ran} stage(s) ran, {len(summary['stages']) - ran - cached} up to date"
        + (f", {cached} restored from the run-cache of DVC remote {summary['remote']!r}" if summary["remote"] else "")
        + f", in {summary['seconds']:.1f} s (stage logs: {summary['logs']})"
    )
    return _summary(root)


def _summary(root: Path) -> int:
    from tasks.layout import Layout
    from tasks.reporting.format import print_table

    layout = Layout(root)
    path = layout.summary
    if not path.is_file():
        print(f"edgeforge: no summary yet ({path} is missing): run `edgeforge run` first", file=sys.stderr)
        return 1
    print_table(json.loads(path.read_text()))
    html = layout.report_html
    if html.is_file():
        print(f"HTML report: {html}")
    state = root / _watch_state(layout)
    if state.is_file():
        seen = json.loads(state.read_text())
        print(f"\nWatcher: {len(seen)} checkpoint(s) seen")
        for sha, e in sorted(seen.items(), key=lambda kv: kv[1].get("updated", "")):
            print(
                f"  {e.get('updated', '?')}  {sha[:12]}  {e['status']:<11} {e.get('path', '')}"
                + (f"  error: {e['error'][:200]}" if e.get("error") else "")
            )
    return 0


def _watch_state(layout) -> str:
    """The watcher's record (``watch.state``, from params.yaml when there is one)."""
    from tasks.config import ConfigError, load_config
    from tasks.config.schema import Watch

    try:
        return load_config(layout.params).watch.state if layout.params.is_file() else Watch().state
    except ConfigError:
        return Watch().state


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.cmd not in release_cli.PASSTHROUGH:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    if not args.verbose and args.cmd != "worker":  # a worker's flow runs log to the server: the team's view
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if args.cmd == "summary":
        return _summary(Path(args.root).resolve())
    if args.cmd in release_cli.COMMANDS:
        os.chdir(args.root)  # the release commands read params.yaml and the store from the project root
        if args.cmd == "deploy":
            from flows.prefect_env import server_env

            os.environ.update(server_env())
        return release_cli.main(args)
    from flows.prefect_env import server_env

    os.environ.update(server_env())  # before a server starts: it inherits them (no telemetry tracebacks)
    from flows.pipeline import PipelineError
    from flows.worker import WorkerError

    try:
        if args.cmd == "run":
            return _run(args)
        if args.cmd == "worker":
            from flows import worker

            worker.run(Path(args.root), args.pool, args.name, args.heartbeat, args.crash_after)
            return 0
        from flows import watch

        if args.once:
            root = str(Path(args.root).resolve())
            done = watch.watch(root=root, retry_failed=args.retry_failed, pool=args.pool)
            for d in done:
                print(
                    f"{d['status']:<9} {d['sha256'][:12]} {d['path']}"
                    + (f": {d['error']}" if d.get("error") else "")
                    + (f" (flow run {d['flow_run_id']})" if d.get("flow_run_id") else "")
                )
            return 1 if any(d["status"] == "failed" for d in done) else 0
        watch.serve(args.root, args.interval, args.cron, args.pool)
        return 0
    except PipelineError as e:
        print(f"edgeforge: error: {e}", file=sys.stderr)
        return 1
    except WorkerError as e:
        print(f"edgeforge worker: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgeforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
