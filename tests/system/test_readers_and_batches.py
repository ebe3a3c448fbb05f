"""A source read by several threads (`threads=N` on getrandom, rdseed and darn), and the
rotation's batches: when clients drain the pool faster than the source fills it, entropyd
waits for a batch (or 1 ms) instead of writing each trickle as it lands."""

import json
import os
import threading
import time

import pytest

from ctlsupport import entropyctl
from entropyd_proc import run_entropyd


def status(d):
    return json.loads(entropyctl("status", "--json", socket_path=d.control).stdout)


def drain(d, conns, total, timeout):
    """conns raw readers of endpoint 0 read total bytes between them; returns bytes read."""
    got = [0] * conns
    each = total // conns
    socks = [d.connect_raw_socket(timeout=timeout) for _ in range(conns)]

    def read(i):
        s = socks[i]
        while got[i] < each:
            b = s.recv(1 << 20)
            if not b:
                break
            got[i] += len(b)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    for s in socks:
        s.close()
    assert all(g >= each for g in got), "readers got %s of %d each" % (got, each)
    return sum(got)


def write_calls(pid):
    """(write system calls, bytes written) of the whole process so far (/proc/PID/io)."""
    with open("/proc/%d/io" % pid) as f:
        kv = dict(line.split(": ") for line in f.read().splitlines())
    return int(kv["syscw"]), int(kv["wchar"])


@pytest.mark.time_limit(60)
def test_getrandom_with_threads_2_runs_two_readers_that_both_feed(entropyd):
    d = entropyd(sources=["getrandom,threads=2"], listen=["tcp:127.0.0.1:0,proto=raw"])
    for k in (1, 2):
        d.wait_log(r"serving from source getrandom,threads=2 \(%d of 2\)" % k, 10)
    drain(d, 4, 64 << 20, 30)
    srcs = {s["spec"]: s for s in status(d)["sources"]}
    assert sorted(srcs) == ["getrandom,threads=2 (1 of 2)", "getrandom,threads=2 (2 of 2)"], (
        "status should list the two readers: %s" % sorted(srcs))
    passed = {k: v["bytes_passed"] for k, v in srcs.items()}
    # Both feed the pool: neither reader gives less than a tenth of the 64 MiB.
    assert all(v > (64 << 20) // 10 for v in passed.values()), (
        "both readers should feed the pool together: %s" % passed)


@pytest.mark.time_limit(30)
def test_threads_on_a_source_with_one_stream_is_refused_with_one_line(tmp_path):
    for spec, why in (("file:/dev/urandom,threads=2", "threads= is for getrandom, rdseed and "
                       "darn only"),
                      ("getrandom,threads=0", "not in 1..64"),
                      ("getrandom,threads=65", "not in 1..64")):
        p = run_entropyd(["-n", "--source", spec, "--listen", "tcp:127.0.0.1:0"])
        err = p.stderr.decode()
        assert p.returncode != 0 and why in err and len(err.strip().splitlines()) == 1, (
            "%s: expected one line saying %r and a failure; status %d, stderr %r"
            % (spec, why, p.returncode, err))


@pytest.mark.time_limit(60)
def test_raw_readers_that_outpace_the_source_get_batched_writes(entropyd, tmp_path):
    """16 raw readers drain a source that delivers 64 KiB every 1 ms (64 MB/s, far below what
    the readers take, so the source is the bottleneck whatever the build's speed). Serving
    each put as it landed cut it into 256-byte writes (one system call and one wake-up of
    the peer each); waiting for a batch, or the 1 ms timer, gives at least 1 KiB a write."""
    fifo = tmp_path / "src.fifo"
    os.mkfifo(fifo)
    wfd = os.open(fifo, os.O_RDWR)
    chunk, period, total = 65536, 0.001, 64 << 20
    stop = threading.Event()

    def feed():
        t0 = time.monotonic()
        for i in range(total * 5 // 4 // chunk):
            if stop.is_set():
                return
            os.write(wfd, os.urandom(chunk))
            time.sleep(max(0.0, t0 + (i + 1) * period - time.monotonic()))

    try:
        d = entropyd(sources=["file:%s" % fifo],
                     listen=["tcp:127.0.0.1:0,proto=raw,primer=0,max-per-peer=0"])
        n0, b0 = write_calls(d.pid)
        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            drain(d, 16, total, 40)
        finally:
            stop.set()
            feeder.join(10)
        n1, b1 = write_calls(d.pid)
    finally:
        os.close(wfd)
    per_write = (b1 - b0) / max(1, n1 - n0)
    print("%d write calls, %d bytes, %.0f bytes a call" % (n1 - n0, b1 - b0, per_write))
    assert per_write >= 1024, (
        "raw readers were written %.0f bytes a call on average (%d calls for %d bytes): "
        "the rotation serves trickles instead of waiting for a batch"
        % (per_write, n1 - n0, b1 - b0))


@pytest.mark.time_limit(60)
def test_a_slow_source_is_still_served_within_milliseconds(entropyd, tmp_path):
    """With a source far slower than the reader, the batch wait ends at its 1 ms timer:
    each window the source completes reaches a raw reader promptly, not when a batch of
    a turn per reader has gathered (which would never come here)."""
    fifo = tmp_path / "slow.fifo"
    os.mkfifo(fifo)
    wfd = os.open(fifo, os.O_RDWR)  # held open, as a TRNG's driver would
    try:
        d = entropyd(sources=["file:%s" % fifo], listen=["tcp:127.0.0.1:0,proto=raw,primer=0"])
        os.write(wfd, os.urandom(1024 + 4096))  # the start-up test, then 4 KiB
        d.wait_log(r"start-up test passed", 10)
        s = d.connect_raw_socket(timeout=10)
        try:
            got = 0
            while got < 4096:
                got += len(s.recv(65536))
            worst = 0.0
            for _ in range(20):
                t0 = time.monotonic()
                os.write(wfd, os.urandom(512))  # completes one health-test window
                while got < 4096 + 512 * (_ + 1):
                    got += len(s.recv(65536))
                worst = max(worst, time.monotonic() - t0)
            print("worst delay of a 512-byte write reaching the reader: %.1f ms"
                  % (worst * 1e3))
            assert worst < 0.5, (
                "a 512-byte trickle took %.0f ms to reach the reader" % (worst * 1e3))
        finally:
            s.close()
    finally:
        os.close(wfd)


@pytest.mark.time_limit(60)
def test_small_requests_the_pool_covers_are_answered_without_waiting_for_a_batch(entropyd,
                                                                                  tmp_path):
    """A slow source keeps the pool far below a batch. A 64-byte request (QEMU's rng-egd
    size, one in flight) that the pool covers is answered at once: waiting for the batch
    timer would cost each request 1 ms and cap a guest at 64 KB/s whatever the device
    gives."""
    fifo = tmp_path / "slow.fifo"
    os.mkfifo(fifo)
    wfd = os.open(fifo, os.O_RDWR)  # held open, as a TRNG's driver would
    try:
        d = entropyd(sources=["file:%s" % fifo], listen=["tcp:127.0.0.1:0,primer=0"])
        os.write(wfd, os.urandom(1024))  # the start-up test
        d.wait_log(r"start-up test passed", 10)
        best = float("inf")
        with d.connect() as c:
            for _ in range(5):
                os.write(wfd, os.urandom(512))  # one window: 512 bytes in the pool
                c.block(64, timeout=10)  # it has arrived
                t0 = time.monotonic()
                for _ in range(7):
                    c.block(64, timeout=10)
                best = min(best, time.monotonic() - t0)
        print("7 requests of 64 bytes from a pool of 448: best of 5 rounds %.2f ms"
              % (best * 1e3))
        assert best < 0.004, (
            "7 requests the pool covered took %.1f ms at best (each waited for a batch?)"
            % (best * 1e3))
    finally:
        os.close(wfd)
