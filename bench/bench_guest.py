#!/usr/bin/python3
"""Guest-side /dev/hwrng throughput: entropyd versus QEMU's own source.

Boots the e2e x86_64 guest (TCG) once per backend and lets it time, inside the
guest, a read of --bytes from /dev/hwrng:
  builtin   -object rng-builtin (QEMU's getrandom(); the reference)
  entropyd  rng-egd over TCP to `entropyd --source getrandom`
  socat     rng-egd over TCP to `socat ... OPEN:/dev/urandom` (a peer that keeps
            the socket full: the best a plain byte stream does through rng-egd)
With --pacer, the rng-egd rows are measured again with QEMU's main loop woken
periodically (a filter-buffer timer on an unused netdev; see the facts page).
Prints MB/s and the ratio to rng-builtin. Under TCG only ratios mean much.

Usage: /usr/bin/python3 bench/bench_guest.py [--bytes N] [--repeat N] [--pacer]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

import guest  # noqa: E402
import peers  # noqa: E402

Row = tuple[str, Callable[[], tuple[list[str], Callable[[], None]]]]


def builtin() -> tuple[list[str], Callable[[], None]]:
    return guest.builtin_backend(), lambda: None


def via_entropyd(binary: Path) -> Callable[[], tuple[list[str], Callable[[], None]]]:
    def setup():
        d = peers.Entropyd(["--source", "getrandom", "--listen", "tcp:127.0.0.1:0"],
                           binary=binary)
        chardev = f"socket,id=egd0,host=127.0.0.1,port={d.port()},reconnect=1"
        return guest.egd_backend(chardev), d.stop
    return setup


def via_socat() -> tuple[list[str], Callable[[], None]]:
    port = peers.free_port()
    s = peers.Socat(port, "OPEN:/dev/urandom")
    chardev = f"socket,id=egd0,host=127.0.0.1,port={port},reconnect=1"
    return guest.egd_backend(chardev), s.stop


def measure(image: guest.GuestImage, setup, nbytes: int, extra: list[str],
            timeout: float) -> float:
    """One boot: the guest-side read time in seconds."""
    backend, teardown = setup()
    try:
        res = guest.boot_guest(image, backend, nbytes=nbytes, dump=False,
                               extra=extra, timeout=timeout)
        return res.read_seconds
    finally:
        teardown()


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
    args = ap.parse_args()

    try:
        image = guest.ensure_image()
    except guest.GuestError as e:
        print(f"bench_guest: cannot obtain the guest: {e}", file=sys.stderr)
        return 1

    rows: list[tuple[str, Callable, list[str]]] = [
        ("rng-builtin", builtin, []),
        ("rng-egd tcp -> entropyd (getrandom)", via_entropyd(args.entropyd), []),
        ("rng-egd tcp -> socat OPEN:/dev/urandom", via_socat, []),
    ]
    if args.pacer:
        pace = guest.pacer_args(args.pacer_interval)
        tag = f" + pacer {args.pacer_interval}us"
        rows += [
            ("rng-egd tcp -> entropyd (getrandom)" + tag, via_entropyd(args.entropyd), pace),
            ("rng-egd tcp -> socat OPEN:/dev/urandom" + tag, via_socat, pace),
        ]

    print(f"guest: {image.kernel_version}, TCG, reading {args.bytes} bytes from /dev/hwrng; "
          f"{args.repeat} boot(s) per row; guest-side timing (/proc/uptime, 10 ms)")
    results: list[tuple[str, float | None, str]] = []
    failed = False
    for name, setup, extra in rows:
        times = []
        err = ""
        for _ in range(args.repeat):
            t = time.monotonic()
            try:
                times.append(measure(image, setup, args.bytes, extra, args.timeout))
            except (guest.GuestError, peers.PeerError) as e:
                err = str(e).splitlines()[0]
                break
            print(f"  {name}: {args.bytes / times[-1] / 1e6:.3f} MB/s "
                  f"(read {times[-1]:.2f}s, boot+read {time.monotonic() - t:.1f}s)",
                  flush=True)
        if err:
            failed = True
            results.append((name, None, err))
        else:
            results.append((name, args.bytes / statistics.median(times) / 1e6, ""))

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
