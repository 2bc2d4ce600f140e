"""SSH transfer throughput on loopback: EdgeForge's ``SSHHost.put``/``get`` (SFTP through
Fabric/Paramiko, plus a sha256 of the file on both ends and an atomic rename) against plain
OpenSSH ``scp`` of the same file, to and from the same sshd (a real OpenSSH server on 127.0.0.1,
started for the run with ``tasks.hosts.loopback.start_sshd``).

The file is ``--mb`` MB of random bytes (incompressible). Rounds interleave the four transfers
(put, scp upload, get, scp download) so drift hits them alike; medians are printed, with MB/s
(10^6 bytes per second) and the ratio EdgeForge / scp. The sha256 verification is part of
EdgeForge's time: it is what the pipeline pays per artifact.

    .venv/bin/python bench/transfer.py            # 100 MB, 3 rounds: about 1 minute here
    .venv/bin/python bench/transfer.py --mb 20 --rounds 5

This is a benchmark, not a test: it prints figures and never judges them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.hosts.loopback import start_sshd  # noqa: E402
from tasks.hosts.ssh import SSHHost  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=100, help="file size in MB (10^6 bytes)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s, start_sshd(Path(tmp_s) / "sshd") as sshd:
        tmp = Path(tmp_s)
        src = tmp / "artifact.bin"
        with open(src, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1_000_000))
        remote = tmp / "remote"
        remote.mkdir()
        ssh_opts = [
            "-P",
            str(sshd.port),
            "-i",
            str(sshd.key_path),
            "-o",
            f"UserKnownHostsFile={sshd.known_hosts}",
            "-o",
            "BatchMode=yes",
            "-q",
        ]
        dest = f"{sshd.user}@{sshd.host}"
        host = SSHHost(
            "bench", sshd.host, sshd.port, sshd.user, key_filename=sshd.key_path, known_hosts=sshd.known_hosts
        )
        host.run(["true"])  # EdgeForge keeps one connection per device; scp pays its handshake every time
        times: dict[str, list[float]] = {k: [] for k in ("put", "scp_up", "get", "scp_down")}
        for r in range(args.rounds):
            times["put"].append(timed(lambda: host.put(src, str(remote / "put.bin"))))
            times["scp_up"].append(
                timed(lambda: subprocess.run(["scp", *ssh_opts, str(src), f"{dest}:{remote / 'scp.bin'}"], check=True))
            )
            times["get"].append(timed(lambda: host.get(str(remote / "put.bin"), tmp / "got.bin")))
            times["scp_down"].append(
                timed(
                    lambda: subprocess.run(
                        ["scp", *ssh_opts, f"{dest}:{remote / 'scp.bin'}", str(tmp / "scp_got.bin")], check=True
                    )
                )
            )
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
        host.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    mbps = {k: args.mb / v for k, v in med.items()}
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {args.mb} MB random file, "
        f"{args.rounds} interleaved rounds, loopback sshd (OpenSSH), medians:"
    )
    print(
        f"  upload    EdgeForge put (SFTP + sha256 both ends + rename) {med['put']:.2f} s = {mbps['put']:.0f} MB/s;"
        f"  scp {med['scp_up']:.2f} s = {mbps['scp_up']:.0f} MB/s;  EdgeForge/scp throughput {mbps['put'] / mbps['scp_up']:.2f}"
    )
    print(
        f"  download  EdgeForge get (SFTP + sha256 both ends + rename) {med['get']:.2f} s = {mbps['get']:.0f} MB/s;"
        f"  scp {med['scp_down']:.2f} s = {mbps['scp_down']:.0f} MB/s;  EdgeForge/scp throughput {mbps['get'] / mbps['scp_down']:.2f}"
    )


if __name__ == "__main__":
    main()
