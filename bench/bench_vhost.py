#!/usr/bin/python3
"""vhost-user-rng throughput and serving CPU: entropyd versus QEMU and socat.

Boots the e2e x86_64 guest (TCG) once per path and round, and lets it time,
inside the guest, a read of --bytes from /dev/hwrng through:
  builtin     -object rng-builtin (QEMU's getrandom(); the reference)
  vhost-user  vhost-user-rng-pci served by `entropyd --source getrandom
              --listen vhost-user:PATH` (entropyd writes into the guest's ring)
  egd         rng-egd over TCP to `entropyd --source getrandom`
  socat       rng-egd over TCP to `socat ... OPEN:/dev/urandom`
Rounds interleave the paths so that load drift on the shared machine hits
every path alike. Prints, per path, the median MB/s, the ratio to rng-builtin,
and the serving process's CPU seconds per MiB delivered (utime+stime from
/proc/PID/stat over the guest's read; socat's forked child included). Under
TCG only ratios mean much.

Usage: /usr/bin/python3 bench/bench_vhost.py [--bytes N] [--rounds N] [--entropyd PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import guestbench
from guestbench import guest, peers

MIB = 1 << 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bytes", type=int, default=8 * MIB, help="bytes per read (default 8 MiB)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--entropyd", type=Path, default=peers.entropyd_path(),
                    help="daemon binary (default $ENTROPYD or build/entropyd)")
    ap.add_argument("--timeout", type=float, default=600, help="hard limit per boot, s")
    args = ap.parse_args()

    try:
        image = guest.ensure_image()
    except guest.GuestError as e:
        print(f"bench_vhost: cannot obtain the guest: {e}", file=sys.stderr)
        return 1
    rows = [
        ("rng-builtin", guestbench.builtin),
        ("vhost-user -> entropyd (getrandom)", guestbench.entropyd_vhost_user(args.entropyd)),
        ("rng-egd tcp -> entropyd (getrandom)", guestbench.entropyd_tcp(args.entropyd)),
        ("rng-egd tcp -> socat OPEN:/dev/urandom", guestbench.socat_tcp),
    ]
    print(f"guest: {image.kernel_version}, TCG, reading {args.bytes} bytes from /dev/hwrng; "
          f"{args.rounds} interleaved round(s); guest-side timing (/proc/uptime, 10 ms)")
    rates: dict[str, list[float]] = {name: [] for name, _ in rows}
    cpus: dict[str, list[float]] = {name: [] for name, _ in rows}
    errors: dict[str, str] = {}
    for rnd in range(args.rounds):
        for name, setup in rows:
            if name in errors:
                continue
            t = time.monotonic()
            try:
                m = guestbench.measure(image, setup, args.bytes, [], args.timeout)
            except (guest.GuestError, peers.PeerError) as e:
                errors[name] = str(e).splitlines()[0]
                print(f"  round {rnd + 1}: {name}: FAILED: {e}", file=sys.stderr, flush=True)
                continue
            rates[name].append(args.bytes / m.read_seconds / 1e6)
            cpu = ""
            if m.cpu_seconds is not None:
                cpus[name].append(m.cpu_seconds / (args.bytes / MIB))
                cpu = f", serving CPU {m.cpu_seconds:.2f}s"
            print(f"  round {rnd + 1}: {name}: {rates[name][-1]:.3f} MB/s (read "
                  f"{m.read_seconds:.2f}s{cpu}; boot to power-off "
                  f"{time.monotonic() - t:.1f}s)", flush=True)

    base = statistics.median(rates["rng-builtin"]) if rates["rng-builtin"] else None
    width = max(len(name) for name, _ in rows)
    print()
    print(f"{'path':<{width}}  {'MB/s':>7}  {'x builtin':>9}  {'CPU s/MiB':>9}  rounds (MB/s)")
    print(f"{'-' * width}  {'-' * 7}  {'-' * 9}  {'-' * 9}  {'-' * 13}")
    for name, _ in rows:
        if name in errors:
            print(f"{name:<{width}}  {'FAILED':>7}  {errors[name]}")
            continue
        rate = statistics.median(rates[name])
        ratio = f"{rate / base:.2f}" if base else "-"
        cpu = f"{statistics.median(cpus[name]):.4f}" if cpus[name] else "-"
        each = " ".join(f"{r:.3f}" for r in rates[name])
        print(f"{name:<{width}}  {rate:7.3f}  {ratio:>9}  {cpu:>9}  {each}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
