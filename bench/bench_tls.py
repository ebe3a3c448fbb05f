#!/usr/bin/python3
"""TLS throughput on loopback as a ratio to plain TCP: one entropyd (--source getrandom)
with a plain and a TLS (tls=DIR, mutual, verify-peer=on) tcp endpoint; one connection at a
time keeps `02 ff` requests (255 bytes each) pipelined, 64 in flight. Runs alternate (plain,
TLS, plain, …) so that drift hits both. A benchmark, not a test: it prints a table.

  /usr/bin/python3 bench/bench_tls.py [--secs S] [--rounds N] [--entropyd PATH]

Certificates are made with the `openssl` command in a temporary directory (the system
tests' tests/system/tlssupport.py). The client is Python (its ssl module is OpenSSL too), so
the ratio is that of the whole path, client included; CPU of both sides is shown.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "system"))
from tlssupport import Pki, tls_connect  # noqa: E402

from benchlib import proc_cpu  # noqa: E402

DEPTH = 64


def run(sock, secs):
    """Bytes per second over sock, keeping DEPTH requests of 255 in flight."""
    req = b"\x02\xff"
    owed = 0
    got = 0
    sock.settimeout(10)
    end = time.monotonic() + secs
    start = time.monotonic()
    while time.monotonic() < end:
        if owed < DEPTH * 255 // 2:
            n = DEPTH - owed // 255
            sock.sendall(req * n)
            owed += 255 * n
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("entropyd closed the connection")
        got += len(chunk)
        owed -= len(chunk)
    elapsed = time.monotonic() - start
    while owed > 0:  # drain, so that the connection ends in step
        chunk = sock.recv(65536)
        if not chunk:
            break
        owed -= len(chunk)
    return got / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--entropyd", default=os.environ.get("ENTROPYD",
                                                         str(REPO / "build" / "entropyd")))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pki = Pki(tmp)
        proc = subprocess.Popen(
            [a.entropyd, "-f", "--control", "none", "--source", "getrandom",
             "--listen", "tcp:127.0.0.1:0", "--listen", "tcp:127.0.0.1:0,tls=%s" % pki.server],
            stderr=subprocess.PIPE, text=True)
        ports = []
        try:
            for line in proc.stderr:
                m = re.search(r"listening on tcp:127\.0\.0\.1:(\d+)", line)
                if m:
                    ports.append(int(m.group(1)))
                if "ready:" in line:
                    break
            assert len(ports) == 2, "entropyd did not announce two endpoints"
            results = {"plain": [], "tls": []}
            for _ in range(a.rounds):
                for kind in ("plain", "tls"):
                    addr = ("127.0.0.1", ports[0] if kind == "plain" else ports[1])
                    if kind == "plain":
                        s = socket.create_connection(addr, timeout=10)
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    else:
                        s = tls_connect(addr, pki.client_context("hv1"))
                    t0, c0 = time.process_time(), proc_cpu(proc.pid)
                    w0 = time.monotonic()
                    rate = run(s, a.secs)
                    wall = time.monotonic() - w0
                    cli = 100 * (time.process_time() - t0) / wall
                    srv = 100 * (proc_cpu(proc.pid) - c0) / wall
                    s.close()
                    results[kind].append(rate)
                    print("%-5s %8.1f MB/s   client CPU %3.0f%%   entropyd CPU %3.0f%%"
                          % (kind, rate / 1e6, cli, srv), flush=True)
            p = sorted(results["plain"])[len(results["plain"]) // 2]
            t = sorted(results["tls"])[len(results["tls"]) // 2]
            print("median: plain %.1f MB/s, TLS %.1f MB/s: TLS/plain = %.2f"
                  % (p / 1e6, t / 1e6, t / p))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
