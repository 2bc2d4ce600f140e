"""``edgeforge`` commands of the release loop (signed bundles to the fleet):

  edgeforge keygen [--out PATH]                      the Ed25519 signing key pair
  edgeforge release [--version V]                    sign the run's winners into bundles
  edgeforge fleet trust (--target N ... | --fleet)   install the public key on devices
  edgeforge deploy (--target N ... | --fleet)        roll a release out (canary first)
  edgeforge rollback --target N [--to RELEASE]       restore the device's previous release
  edgeforge fleet status [--target N ...]            what each device runs, since when
  edgeforge monitor --target N --minutes M           latency, clocks and temperatures on the device

Each prints ``edgeforge <command>: error: ...`` and exits 1 for bad input, naming what to do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tasks import stage


def add_parsers(sub) -> None:
    # these parse their own options (their modules' main(argv)): `edgeforge release --help` shows them
    sub.add_parser("keygen", help="write the Ed25519 key pair that signs releases", add_help=False)
    sub.add_parser("release", help="sign the last run's accepted winners into release bundles", add_help=False)
    sub.add_parser(
        "monitor", help="run the active release on a device and sample latency, clocks, temperatures", add_help=False
    )
    d = sub.add_parser("deploy", help="deploy a release to devices: the canary first, then the rest")
    _devices(d)
    d.add_argument("--version", help="release version (default: the latest in release.store)")
    d.add_argument("--skip-gate", action="store_true", help="deploy even if worse than the active release (recorded)")
    d.add_argument("--parallel", type=int, help="devices at once after the canary (default release.parallel)")
    b = sub.add_parser("rollback", help="make a device's previous release active again")
    b.add_argument("--target", required=True, help="device target")
    b.add_argument("--to", help="release id to restore (default: the previous one)")
    f = sub.add_parser("fleet", help="the fleet: status, trust")
    fsub = f.add_subparsers(dest="fleet_cmd", required=True)
    _devices(fsub.add_parser("status", help="what each device runs (version, sha256, since when)"), required=False)
    _devices(fsub.add_parser("trust", help="install the release public key on devices"))


def _devices(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--target", nargs="+", dest="targets", help="device target(s)")
    g.add_argument("--fleet", action="store_true", help="every device of release.devices")


COMMANDS = ("keygen", "release", "monitor", "deploy", "rollback", "fleet")
PASSTHROUGH = ("keygen", "release", "monitor")  # their options go to their own main(argv)


def _targets(cfg, args) -> list[str]:
    names = list(cfg.release.devices) if getattr(args, "fleet", False) or not args.targets else args.targets
    if not names:
        raise stage.StageError("release.devices is empty: name devices with --target, or list them in release.devices")
    for t in names:
        if t not in cfg.target:
            raise stage.StageError(f"target {t!r} is not defined; defined targets: {', '.join(cfg.target)}")
        if cfg.target[t].transport != "ssh":
            raise stage.StageError(
                f"target {t!r} is not a device (transport {cfg.target[t].transport}): deploy over ssh"
            )
    return names


def _deploy(cfg, args) -> int:
    from flows.release import LISTENERS, rollout
    from tasks.release.deploy import device_class
    from tasks.release.store import bundle_dir

    targets = _targets(cfg, args)
    bundles = {t: str(bundle_dir(cfg, device_class(cfg, t), args.version)) for t in targets}

    def show(target: str, out: dict) -> None:
        line = f"{target}: {out['status']}"
        if out.get("version"):
            line += f" {out['version']}"
        line += f" in {out['seconds']:.1f} s"
        if out.get("uploaded_bytes"):
            line += f", uploaded {out['uploaded_bytes'] / 1e6:.2f} MB"
        if out.get("rebuilt"):
            line += f", rebuilt on the device ({out.get('reason')})"
        if out.get("error"):
            line += f": {out['error']}"
        sys.stdout.write(line + "\n")  # not print(): the flow's log_prints would turn it into a log record
        sys.stdout.flush()

    LISTENERS.append(show)
    try:
        res = rollout(
            str(Path.cwd()),
            bundles,
            cfg.release.canary,
            args.parallel or cfg.release.parallel,
            args.skip_gate,
        )
    finally:
        LISTENERS.remove(show)
    if res["halted_by"]:
        left = f"; not started: {', '.join(res['not_started'])}" if res["not_started"] else ""
        raise stage.StageError(
            f"rollout halted by {res['halted_by']}: {res['outcomes'][res['halted_by']]['error']}{left}"
        )
    return 0


def _rollback(cfg, args) -> int:
    from tasks.release.deploy import rollback

    [target] = _targets(cfg, argparse.Namespace(targets=[args.target], fleet=False))
    out = rollback(cfg, target, args.to, lambda m: stage.log("rollback", m))
    if out.ok:
        from tasks.tracking.deployments import record_rollback

        record_rollback(cfg, target, out.manifest, out.bundle_sha)
    if not out.ok:
        raise stage.StageError(f"{target}: {out.error}")
    print(f"{target}: rolled back to {out.version} ({out.release}) in {out.seconds:.2f} s; was {out.previous}")
    return 0


def _status(cfg, args) -> int:
    from tasks.release.deploy import device_class, status
    from tasks.release.manifest import signature_ok

    rows = []
    for t in _targets(cfg, args):
        s = status(cfg, t)
        cur = s.get("current")
        if s.get("error"):
            rows.append((t, device_class(cfg, t), "unreachable", "", "", s["error"][:120]))
        elif not cur:
            rows.append((t, device_class(cfg, t), "none", "", "", ""))
        else:
            signed = (
                "signed" if signature_ok(cfg, cur.get("manifest"), cur.get("signature")) else "SIGNATURE NOT VERIFIED"
            )
            rows.append((t, device_class(cfg, t), cur["version"], cur["sha256"][:12], cur.get("since", ""), signed))
    head = ("device", "class", "version", "sha256", "since", "")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def _trust(cfg, args) -> int:
    from tasks.release.deploy import trust
    from tasks.release.keys import public_key_line

    line = public_key_line(cfg)
    for t in _targets(cfg, args):
        print(f"{t}: trusts release key {trust(cfg, t, line)}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run one release command (``args.cmd`` in :data:`COMMANDS`), from the project root."""
    if args.cmd in ("keygen", "release", "monitor"):
        from tasks.release import keys, make, monitor

        entry = {"keygen": keys.main, "release": make.main, "monitor": monitor.main}[args.cmd]
        return entry(args.rest) or 0
    name = args.cmd if args.cmd != "fleet" else f"fleet {args.fleet_cmd}"
    with stage.stage_errors(name):
        cfg = stage.load(argparse.Namespace(params="params.yaml"))
        if args.cmd == "deploy":
            return _deploy(cfg, args)
        if args.cmd == "rollback":
            return _rollback(cfg, args)
        return _status(cfg, args) if args.fleet_cmd == "status" else _trust(cfg, args)
    return 1
