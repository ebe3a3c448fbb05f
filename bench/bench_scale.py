#!/usr/bin/python3
"""Latency and saturation with 1,000 EGD connections (issue 10, item 6). A benchmark, not a
test: it prints figures.

  /usr/bin/python3 bench/bench_scale.py [--secs S] [--entropyd PATH] [--egdsched PATH]

entropyd runs with --source getrandom, one tcp listener and one unix listener (primer=0,
max-per-peer=0); it raises its own descriptor limit to the hard limit. The load generator is bench/egdsched.c
(built by meson as build/egdsched; one thread, epoll):
  - open loop: 1,000 connections each send one 255-byte request (`02 ff`) 100 times a second
    on a fixed schedule (100,000 requests/s in all); latency from each request's scheduled
    send time to the last byte of its answer: p50, p99, p999 (goal: p99 <= 1 ms); the same
    at 25 and 50 requests a second each first, to show where the latency turns; then
    100 a second each over the unix socket (the chardev libvirt gives a guest on one host),
    where each request costs both sides less of the CPU both share;
  - closed loop: the same 1,000 connections each keep DEPTH requests in flight: requests/s
    at saturation (goal: >= 250,000).
A latency of 1000000 us means 1 s or more (the histogram's last bin).
Next to each: entropyd's CPU seconds per million requests answered and the share of both
cores the whole machine was busy (from /proc/PID/stat and /proc/stat): on 2 cores the load
generator itself needs about as much CPU as entropyd, so at 100,000 requests/s the machine
has no idle time left and requests queue behind the scheduler, not behind entropyd.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLK = os.sysconf("SC_CLK_TCK")
CONNS = 1000
RATES_EACH = (25, 50, 100)
DEPTH = 8


def die(msg):
    sys.stderr.write("bench_scale: %s\n" % msg)
    sys.exit(1)


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    f = s[s.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / CLK


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_entropyd(exe, port, sock):
    p = subprocess.Popen([exe, "-f", "--control", "none", "--source", "getrandom", "--listen",
                          "tcp:127.0.0.1:%d,primer=0,max-per-peer=0" % port, "--listen",
                          "unix:%s,primer=0,max-per-peer=0" % sock],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    die("entropyd did not start listening on port %d" % port)


def machine_ticks():
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def run(load, pid, args, secs):
    c0 = cpu_s(pid)
    m0 = machine_ticks()
    r = subprocess.run([load] + args, capture_output=True, text=True, timeout=secs + 60)
    c1 = cpu_s(pid)
    m1 = machine_ticks()
    if r.returncode != 0:
        die("egdsched %s failed: %s" % (" ".join(args), r.stderr.strip()))
    kv = dict(x.split("=", 1) for x in r.stdout.split())
    answered = int(kv["answered"])
    # CPU over the whole run (connect, warm-up, drain included) per request answered in
    # the measured window: an upper bound.
    kv["cpu_per_m"] = (c1 - c0) / answered * 1e6 if answered else float("nan")
    kv["busy"] = 100.0 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
    return kv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=float, default=5.0)
    ap.add_argument("--entropyd", default=os.environ.get("ENTROPYD",
                                                         str(REPO / "build" / "entropyd")))
    ap.add_argument("--egdsched", default=str(REPO / "build" / "egdsched"))
    a = ap.parse_args()
    for exe in (a.entropyd, a.egdsched):
        if not os.access(exe, os.X_OK):
            die("%s not found (run `meson setup build && ninja -C build`)" % exe)
    port = free_port()
    tmp = tempfile.TemporaryDirectory(prefix="bench_scale.")
    sock = os.path.join(tmp.name, "egd.sock")
    d = start_entropyd(a.entropyd, port, sock)
    try:
        tcp = ["127.0.0.1", str(port)]
        opens = [("tcp", r, run(a.egdsched, d.pid, ["open"] + tcp + [str(CONNS), str(r),
                                                                    str(a.secs)], a.secs))
                 for r in RATES_EACH]
        opens.append(("unix", RATES_EACH[-1],
                      run(a.egdsched, d.pid, ["open", "unix", sock, str(CONNS),
                                              str(RATES_EACH[-1]), str(a.secs)], a.secs)))
        c = run(a.egdsched, d.pid, ["closed"] + tcp + [str(CONNS), str(DEPTH), str(a.secs)],
                a.secs)
    finally:
        d.terminate()
        try:
            d.wait(10)
        except subprocess.TimeoutExpired:
            d.kill()
        tmp.cleanup()
    load = os.getloadavg()[0]
    print("scale: %d connections, entropyd --source getrandom (load average %.1f on %d CPUs)"
          % (CONNS, load, os.cpu_count() or 1))
    for via, r, o in opens:
        print("  open loop, %s, %d req/s scheduled: %s req/s answered, p50 %s us, p99 %s us, "
              "p999 %s us (missing %s, not sent %s)%s; entropyd %.2f CPU s per million "
              "requests; machine %.0f %% busy"
              % (via, CONNS * r, o["reqps"], o["p50_us"], o["p99_us"], o["p999_us"],
                 o["missing"], o["dropped"], "; goal p99 <= 1000 us" if r == 100 else "",
                 o["cpu_per_m"], o["busy"]))
    print("  saturation, tcp (%d in flight per connection): %s req/s; goal >= 250000; "
          "entropyd %.2f CPU s per million requests; machine %.0f %% busy"
          % (DEPTH, c["reqps"], c["cpu_per_m"], c["busy"]))


if __name__ == "__main__":
    main()
