#!/usr/bin/python3
"""bench_drbg: mode=drbg throughput on loopback next to socat streaming /dev/urandom.

One connection of pipelined 255-byte EGD requests (256 in flight) to a mode=drbg endpoint
of entropyd (getrandom source), against one connection reading socat's raw stream
(`socat TCP-LISTEN:P,fork OPEN:/dev/urandom`). The load generator is bench/egdload.c (see
bench_egd.py, whose helpers this uses). Prints MB/s of each, server CPU (as a share of
one core and in CPU seconds per GiB delivered, the steadier figure), and the ratio;
the goal is >= 4x socat and > 1000 MB/s. Not a test: nothing fails on a missed goal."""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading

import bench_egd as be


def start_entropyd_drbg(path):
    args = [path, "-f", "--control", "none", "--source", "getrandom", "--listen",
            "tcp:127.0.0.1:0,mode=drbg,max-per-peer=0"]
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, errors="replace")
    lines, ready = [], threading.Event()

    def drain():
        for ln in p.stderr:
            lines.append(ln)
            if re.search(r"\bready\b", ln):
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(10) or p.poll() is not None:
        p.kill()
        be.die("entropyd did not become ready:\n%s" % "".join(lines))
    port = next(int(m.group(1)) for m in (re.search(r"listening on tcp:127\.0\.0\.1:(\d+)", ln)
                                          for ln in lines) if m)
    return p, port


def cpu_per_gib(res):
    """Server CPU seconds per GiB delivered: steadier than MB/s on a shared machine. The
    server's CPU is counted over the warm-up too, so its bytes are scaled to match."""
    secs = float(res["secs"])
    gib = float(res["bytes"]) * (secs + 0.3) / secs / 2**30
    return res["server_cpu"] / 100 * (secs + 0.3) / gib if gib > 0 else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--entropyd", default=os.environ.get(
        "ENTROPYD", str(be.REPO / "build" / "entropyd")))
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        client = be.build_client(tmp)
        ed, port = start_entropyd_drbg(opts.entropyd)
        sc, sc_port = be.start_socat()
        try:
            r = be.run(client, be.Server("entropyd", ed.pid),
                       ["tput", "127.0.0.1", str(port), "1", "256", "255"], opts.secs)
            if "error" in r:
                be.die("entropyd drbg run failed: %s" % r["error"])
            d = be.mbps(r)
            print("entropyd mode=drbg, 1 conn, 256 x 255 B in flight: %8.1f MB/s  "
                  "(server %.0f%% CPU, %.2f CPU s/GiB; %s)"
                  % (d, r["server_cpu"], cpu_per_gib(r), be.verdict(r)))
            if sc is None:
                print("(socat not found: no ratio)")
                return
            s = be.run(client, be.Server("socat", sc.pid, tree=True),
                       ["raw", "127.0.0.1", str(sc_port), "1"], opts.secs)
            if "error" in s:
                be.die("socat run failed: %s" % s["error"])
            sm = be.mbps(s)
            print("socat /dev/urandom raw stream, 1 conn:        %8.1f MB/s  "
                  "(server %.0f%% CPU, %.2f CPU s/GiB)" % (sm, s["server_cpu"], cpu_per_gib(s)))
            print("ratio drbg / socat: %.2fx (goal >= 4x and > 1000 MB/s: %s)"
                  % (d / sm, "met" if d / sm >= 4 and d > 1000 else "missed"))
        finally:
            be.stop(ed)
            be.stop(sc)


if __name__ == "__main__":
    sys.exit(main())
