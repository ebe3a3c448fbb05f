#!/usr/bin/python3
"""EGD throughput and latency on loopback: entropyd (--source getrandom) over EGD and over
a proto=raw endpoint, side by side with `socat TCP-LISTEN:P,reuseaddr,fork
OPEN:/dev/urandom` read raw. A benchmark, not a test: it prints a table.

  /usr/bin/python3 bench/bench_egd.py [--secs S] [--entropyd PATH] [--threads 1,2]

What is measured (the load generator is bench/egdload.c, compiled here with gcc -O2; one
thread, epoll, so the client stays cheap next to the server):
  - EGD throughput: each connection keeps 16 `02 ff` requests (255 bytes each) in flight.
  - EGD latency: one `02 ff` in flight per connection; time from sending the request to
    receiving its 255th byte.
  - raw throughput: connections read everything the server streams.
  - raw "latency": time from connect() to the 255th byte of a fresh connection (closed
    with a reset after each sample). For socat this includes its fork() and opening
    /dev/urandom; for entropyd the accept and the first write. A raw stream has no
    request, so this is the only latency it has.
--threads LIST starts one daemon per value (--threads N: N event-loop threads serve the
clients), so 1 and N threads show side by side; "s/GiB" is the server's CPU seconds per GiB
it delivered (all its threads), what a thread count costs for the same bytes.
Each run lasts --secs seconds after a 0.3 s warm-up. Next to each result: CPU used by the
client and by the server (all threads; socat: parent and children) as % of one core, and
which side was saturated.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import free_port, live_children_cpu, proc_cpu, thread_cpu

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
NCPU = os.cpu_count() or 1


def die(msg):
    sys.stderr.write("bench_egd: %s\n" % msg)
    sys.exit(1)


def build_client(tmp):
    src = HERE / "egdload.c"
    exe = Path(tmp) / "egdload"
    r = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(src)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        die("cannot compile %s:\n%s" % (src, r.stderr))
    return str(exe)


def machine_busy():
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]) - idle, sum(v[:8])


class Server:
    def __init__(self, name, pid, tree=False):
        self.name, self.pid, self.tree = name, pid, tree

    def snapshot(self):
        if self.tree:
            return proc_cpu(self.pid, children=True) + live_children_cpu(self.pid), {}
        return proc_cpu(self.pid), thread_cpu(self.pid)


# -- servers ----------------------------------------------------------------------------


def start_entropyd(path, readers=1, threads=1):
    src = "getrandom" if readers == 1 else "getrandom,threads=%d" % readers
    args = [path, "-f", "--control", "none", "--threads", str(threads), "--source", src,
            "--listen", "tcp:127.0.0.1:0,max-per-peer=0",
            "--listen", "tcp:127.0.0.1:0,proto=raw,max-per-peer=0"]
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, errors="replace")
    lines = []
    ready = threading.Event()

    def drain():  # keep reading: a full pipe would stall the daemon's logging
        for ln in p.stderr:
            lines.append(ln)
            if re.search(r"\bready\b", ln):
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(10) or p.poll() is not None:
        p.kill()
        die("entropyd did not become ready:\n%s" % "".join(lines))
    ports = []
    for ln in list(lines):
        m = re.search(r"listening on tcp:127\.0\.0\.1:(\d+)(.*)", ln)
        if m:
            ports.append((int(m.group(1)), "raw" in m.group(2)))
    if len(ports) != 2:
        p.kill()
        die("entropyd did not announce two endpoints:\n%s" % "".join(lines))
    # Announced in --listen order; a "(raw)" tag, if the daemon prints one, decides.
    egd_port, raw_port = ports[0][0], ports[1][0]
    if ports[0][1] and not ports[1][1]:
        egd_port, raw_port = raw_port, egd_port
    return p, egd_port, raw_port


def start_socat():
    if not shutil.which("socat"):
        return None, None
    for _ in range(5):
        port = free_port()
        p = subprocess.Popen(["socat", "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork" % port,
                              "OPEN:/dev/urandom"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and p.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.recv(1)
                return p, port
            except OSError:
                time.sleep(0.05)
        p.kill()
        p.wait()
    return None, None


def stop(p):
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


# -- runs -------------------------------------------------------------------------------


def run(client, server, args, secs):
    cpu0, threads0 = server.snapshot()
    m0 = machine_busy()
    r = subprocess.run([client] + args + [str(secs)], capture_output=True, text=True,
                       timeout=secs + 60)
    if server.tree:
        time.sleep(0.3)  # let socat reap the children the client just reset
    cpu1, threads1 = server.snapshot()
    m1 = machine_busy()
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout).strip()}
    res = dict(kv.split("=", 1) for kv in r.stdout.split())
    wall = float(res["secs"]) + 0.3  # the server also worked during the warm-up
    res["client_cpu"] = 100 * float(res["cpu"]) / float(res["secs"])
    res["server_cpu"] = 100 * (cpu1 - cpu0) / wall
    got = float(res.get("bytes", 0))
    res["cpu_per_gib"] = (cpu1 - cpu0) / (got / (1 << 30)) if got > 0 else float("nan")
    busiest = None
    for tid, (name, t1) in threads1.items():
        t0 = threads0.get(tid, (name, 0.0))[1]
        share = 100 * (t1 - t0) / wall
        if busiest is None or share > busiest[1]:
            busiest = (name, share)
    res["busiest"] = busiest
    # All CPUs, as % of one core (so NCPU * 100 is everything), and what neither the
    # client nor the server used: other processes on the machine.
    res["machine_cpu"] = 100 * NCPU * (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
    res["other_cpu"] = max(0.0, res["machine_cpu"] - res["client_cpu"] - res["server_cpu"])
    return res


def verdict(res):
    c, s = res["client_cpu"], res["server_cpu"]
    b = res["busiest"][1] if res.get("busiest") else None
    if c >= 85:
        return "client-bound"
    if b is not None and b >= 85:
        return "server-bound (its busiest thread, %s, %.0f%%)" % (res["busiest"][0], b)
    if res["machine_cpu"] >= 85 * NCPU:
        if res["other_cpu"] >= 25:
            return "machine-bound: all %d CPUs busy, %.0f%% by other processes" % (
                NCPU, res["other_cpu"])
        return "machine-bound: all %d CPUs busy (client + server)" % NCPU
    if b is None and s >= 85:
        return "server-bound"
    return "neither saturated (waiting on each other or on the scheduler)"


def mbps(res):
    return float(res["bytes"]) / float(res["secs"]) / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--secs", type=float, default=3.0, help="seconds per run (default 3)")
    ap.add_argument("--entropyd", default=os.environ.get("ENTROPYD",
                                                          str(REPO / "build" / "entropyd")))
    ap.add_argument("--conns", default="1,64", help="connection counts (default 1,64)")
    ap.add_argument("--readers", default="1,%d" % max(2, NCPU),
                    help="getrandom source threads= values, one daemon each (default 1,NCPU)")
    ap.add_argument("--threads", default="1,%d" % max(2, NCPU),
                    help="--threads values (event-loop threads), one daemon each per readers "
                    "value (default 1,NCPU)")
    opts = ap.parse_args()
    if not os.access(opts.entropyd, os.X_OK):
        die("no entropyd at %s (build it first, or pass --entropyd)" % opts.entropyd)
    conns = [int(x) for x in opts.conns.split(",")]
    readers = [int(x) for x in opts.readers.split(",")]
    loops = [int(x) for x in opts.threads.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        client = build_client(tmp)
        daemons = []
        targets = []
        sc = None
        try:
            for r, th in [(r, th) for r in readers for th in loops]:
                ed, egd_port, raw_port = start_entropyd(opts.entropyd, r, th)
                daemons.append(ed)
                names = ("EGD %dr %dt" % (r, th), "raw %dr %dt" % (r, th))
                targets += [(names[0], Server("entropyd", ed.pid), egd_port, "egd"),
                            (names[1], Server("entropyd", ed.pid), raw_port, "raw")]
            sc, sc_port = start_socat()
            if sc is not None:
                targets.append(("socat urandom", Server("socat", sc.pid, tree=True),
                                sc_port, "raw"))
            else:
                print("(socat not found: its rows are left out)")
            model = ""
            try:
                with open("/proc/cpuinfo") as f:
                    model = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
            except (OSError, AttributeError):
                pass
            print("EGD over loopback TCP; entropyd --source getrandom (Nr: N readers, "
                  "getrandom,threads=N; Nt: --threads N); %d CPU(s) %s; %.1f s per run"
                  % (NCPU, model, opts.secs))
            print("throughput: EGD = 16 pipelined `02 ff` per connection; raw = read all")
            print("latency: EGD = request sent -> 255th byte (1 in flight per connection); "
                  "raw = connect() -> 255th byte of a new connection")
            print()
            hdr = "%-14s %5s  %8s %6s  %9s %9s  %6s %6s %6s  %s" % (
                "server", "conns", "MB/s", "s/GiB", "p50 us", "p99 us", "client", "server",
                "other",
                "what was saturated (CPU as % of one core)")
            print(hdr)
            print("-" * len(hdr))
            for name, server, port, kind in targets:
                for n in conns:
                    if kind == "egd":
                        t = run(client, server, ["tput", "127.0.0.1", str(port), str(n), "16",
                                                 "255"], opts.secs)
                        lt = run(client, server, ["lat", "127.0.0.1", str(port), str(n), "255"],
                                 opts.secs)
                    else:
                        t = run(client, server, ["raw", "127.0.0.1", str(port), str(n)],
                                opts.secs)
                        lt = run(client, server, ["rawlat", "127.0.0.1", str(port), str(n),
                                                  "255"], opts.secs)
                    for what, res in (("tput", t), ("lat", lt)):
                        if "error" in res:
                            print("%-14s %5d  %s failed: %s" % (name, n, what, res["error"]))
                    if "error" in t or "error" in lt:
                        continue
                    print("%-14s %5d  %8.1f %6.2f  %9.1f %9.1f  %5.0f%% %5.0f%% %5.0f%%  tput: %s"
                          % (name, n, mbps(t), t["cpu_per_gib"], float(lt["p50_us"]),
                             float(lt["p99_us"]),
                             t["client_cpu"], t["server_cpu"], t["other_cpu"], verdict(t)))
                    print("%-14s %5s  %8s %6s  %9s %9s  %5.0f%% %5.0f%% %5.0f%%  lat (%s samples): "
                          "%s" % ("", "", "", "", "", "", lt["client_cpu"], lt["server_cpu"],
                                  lt["other_cpu"], lt["samples"], verdict(lt)))
                    sys.stdout.flush()
        finally:
            if sc is not None:
                stop(sc)
            for ed in daemons:
                stop(ed)
    for ed in daemons:
        if ed.returncode not in (0, None):
            print("note: entropyd exited with status %d" % ed.returncode)


if __name__ == "__main__":
    main()
