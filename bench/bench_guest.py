#!/usr/bin/python3
"""Guest-side /dev/hwrng throughput: entropyd versus QEMU's own source.

Boots the e2e x86_64 guest (TCG) once per backend and lets it time, inside the
guest, a read of --bytes from /dev/hwrng:
  builtin   -object rng-builtin (QEMU's getrandom(); the reference)
  entropyd  rng-egd over TCP to `entropyd --source getrandom`
  unix      rng-egd over a unix socket to entropyd
  udp       rng-egd over UDP to entropyd
  fifo      rng-random reading entropyd's named pipe (fifo endpoint)
  socat     rng-egd over TCP to `socat ... OPEN:/dev/urandom` (a peer that keeps
            the socket full: the best a plain byte stream does through rng-egd)
With --pacer, the rng-egd rows are measured again with QEMU's main loop woken
periodically (a filter-buffer timer on an unused netdev; see the facts page).
Prints MB/s and the ratio to rng-builtin. Under TCG only ratios mean much.

Usage: /usr/bin/python3 bench/bench_guest.py [--bytes N] [--repeat N] [--pacer]
                                             [--rows builtin,entropyd,unix,udp,fifo,socat]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import guestbench
from guestbench import Served, guest, peers


def via_entropyd_unix(binary: Path) -> Callable[[], Served]:
    def setup():
        path = Path(tempfile.mkdtemp(prefix="entropyd-bench-")) / "egd.sock"
        d = peers.Entropyd(["--source", "getrandom", "--listen", f"unix:{path}"], binary=binary)
        chardev = f"socket,id=egd0,path={path},reconnect=1"
        return Served(guest.egd_backend(chardev), d.stop, d.pid)
    return setup


def via_entropyd_udp(binary: Path) -> Callable[[], Served]:
    def setup():
        d = peers.Entropyd(["--source", "getrandom", "--listen", "udp:127.0.0.1:0"],
                           binary=binary)
        port = int(d.wait_line(r"listening on udp:127\.0\.0\.1:(\d+)", 10).group(1))
        local = peers.free_port()
        chardev = f"udp,id=egd0,host=127.0.0.1,port={port},localaddr=127.0.0.1,localport={local}"
        return Served(guest.egd_backend(chardev), d.stop, d.pid)
    return setup


def via_entropyd_fifo(binary: Path) -> Callable[[], Served]:
    def setup():
        path = Path(tempfile.mkdtemp(prefix="entropyd-bench-")) / "rng.fifo"
        d = peers.Entropyd(["--source", "getrandom", "--listen", f"fifo:{path}"], binary=binary)
        return Served(["-object", f"rng-random,id=rng0,filename={path}"], d.stop, d.pid)
    return setup


ROWS = ["builtin", "entropyd", "unix", "udp", "fifo", "socat"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bytes", type=int, default=4 << 20, help="bytes per read (default 4 MiB)")
    ap.add_argument("--repeat", type=int, default=1, help="boots per row; the median is shown")
    ap.add_argument("--pacer", action="store_true",
                    help="add rng-egd rows with a periodic QEMU main-loop wake-up")
    ap.add_argument("--pacer-interval", type=int, default=100, metavar="US",
                    help="wake-up period in microseconds (default 100)")
    ap.add_argument("--entropyd", type=Path, default=peers.entropyd_path(),
                    help="daemon binary (default $ENTROPYD or build/entropyd)")
    ap.add_argument("--timeout", type=float, default=600, help="hard limit per boot, s")
    ap.add_argument("--rows", default=",".join(ROWS),
                    help="comma-separated subset of " + ",".join(ROWS) + " (builtin is "
                         "always measured: it is the reference)")
    args = ap.parse_args()

    try:
        image = guest.ensure_image()
    except guest.GuestError as e:
        print(f"bench_guest: cannot obtain the guest: {e}", file=sys.stderr)
        return 1

    wanted = set(args.rows.split(","))
    unknown = wanted - set(ROWS)
    if unknown:
        ap.error(f"unknown rows: {', '.join(sorted(unknown))}")
    egd_rows = []
    if "entropyd" in wanted:
        egd_rows.append(("rng-egd tcp -> entropyd (getrandom)", guestbench.entropyd_tcp(args.entropyd)))
    if "unix" in wanted:
        egd_rows.append(("rng-egd unix -> entropyd (getrandom)", via_entropyd_unix(args.entropyd)))
    if "udp" in wanted:
        egd_rows.append(("rng-egd udp -> entropyd (getrandom)", via_entropyd_udp(args.entropyd)))
    if "socat" in wanted:
        egd_rows.append(("rng-egd tcp -> socat OPEN:/dev/urandom", guestbench.socat_tcp))
    rows: list[tuple[str, Callable, list[str]]] = [("rng-builtin", guestbench.builtin, [])]
    rows += [(name, setup, []) for name, setup in egd_rows]
    if "fifo" in wanted:
        rows.append(("rng-random fifo -> entropyd (getrandom)", via_entropyd_fifo(args.entropyd), []))
    if args.pacer:
        pace = guest.pacer_args(args.pacer_interval)
        tag = f" + pacer {args.pacer_interval}us"
        rows += [(name + tag, setup, pace) for name, setup in egd_rows]

    print(f"guest: {image.kernel_version}, TCG, reading {args.bytes} bytes from /dev/hwrng; "
          f"{args.repeat} boot(s) per row; guest-side timing (/proc/uptime, 10 ms)")
    # Rounds interleave the rows so that load drift on a shared machine hits
    # every row alike; each row reports the median of its rounds.
    times: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    errors: dict[str, str] = {}
    for rnd in range(args.repeat):
        for name, setup, extra in rows:
            if name in errors:
                continue
            t = time.monotonic()
            try:
                s = guestbench.measure(image, setup, args.bytes, extra, args.timeout).read_seconds
            except (guest.GuestError, peers.PeerError) as e:
                errors[name] = str(e).splitlines()[0]
                print(f"  round {rnd + 1}: {name}: FAILED: {e}", file=sys.stderr, flush=True)
                continue
            times[name].append(s)
            print(f"  round {rnd + 1}: {name}: {args.bytes / s / 1e6:.3f} MB/s "
                  f"(read {s:.2f}s; boot to power-off {time.monotonic() - t:.1f}s)",
                  flush=True)
    results: list[tuple[str, float | None, str]] = []
    for name, _, _ in rows:
        if name in errors:
            results.append((name, None, errors[name]))
        else:
            results.append((name, args.bytes / statistics.median(times[name]) / 1e6, ""))
    failed = bool(errors)

    base = results[0][1]
    width = max(len(r[0]) for r in results)
    print()
    print(f"{'backend':<{width}}  {'MB/s':>7}  {'x builtin':>9}")
    print(f"{'-' * width}  {'-' * 7}  {'-' * 9}")
    for name, rate, err in results:
        if rate is None:
            print(f"{name:<{width}}  {'FAILED':>7}  {err}")
            continue
        ratio = f"{rate / base:.2f}" if base else "-"
        print(f"{name:<{width}}  {rate:7.3f}  {ratio:>9}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
