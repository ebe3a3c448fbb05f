"""Stalled sources: a healthy source whose read blocks past its stall deadline (it went
quiet without closing) fails over to the next source, logs one line naming the stall,
and takes its place back after a fresh start-up test once it delivers again. Time spent
waiting for pool space is not a stall."""

import os
import re
import threading
import time

STALL_LINE = r"source %s: stalled: no bytes for \d+ ms; failing over"


def test_stalled_first_source_fails_over_and_clients_get_all_they_asked(entropyd):
    spec = "exec:head -c 400000 /dev/urandom; sleep 600,stall=1000"
    d = entropyd(sources=[spec, "getrandom"])
    # The deadline is in each source's description line: the one given, and the default.
    d.wait_log(r"source %s: .*stall deadline 1000 ms" % re.escape(spec), 5)
    d.wait_log(r"source getrandom: .*stall deadline 5000 ms", 5)
    d.wait_log(r"serving from source %s" % re.escape(spec), 10)
    start = time.monotonic()
    with d.connect() as c:
        got = c.block(2_000_000, timeout=30)
    assert len(got) == 2_000_000
    elapsed = time.monotonic() - start
    assert elapsed < 30, "2 MB took %.1f s" % elapsed
    d.wait_log(STALL_LINE % re.escape(spec), 1)
    d.wait_log(r"serving from source getrandom", 1)


def test_stalled_fifo_delivers_again_after_a_fresh_startup_test(entropyd, tmp_path):
    fifo = tmp_path / "trng.fifo"
    os.mkfifo(fifo)
    spec = "file:%s,stall=1000" % fifo
    # A writer held open, as a TRNG's driver would: the reader never sees end of file.
    wfd = os.open(fifo, os.O_RDWR)
    try:
        d = entropyd(sources=[spec, "getrandom"], extra=["--pool-size", "65536"])
        os.write(wfd, os.urandom(1024 + 16 * 512))
        d.wait_log(r"serving from source %s" % re.escape(spec), 10)
        # Silent for longer than the deadline: the FIFO fails over to getrandom.
        d.wait_log(STALL_LINE % re.escape(spec), 5)
        d.wait_log(r"serving from source getrandom", 2)
        mark = d.mark()
        again = os.urandom(256 * 1024)
        writer = threading.Thread(target=os.write, args=(wfd, again))
        writer.start()
        d.wait_log(r"source %s: delivering again after a stall; running the start-up test"
                   % re.escape(spec), 5, start=mark)
        d.wait_log(r"serving from source %s" % re.escape(spec), 5, start=mark)
        with d.connect() as c:
            # The pool (64 KiB) and at most one 64 KiB chunk of getrandom come first.
            got = c.block(200 * 1024, timeout=20)
        writer.join(10)
        # Logged once the chunk that completed it was handed over (the pool was full).
        d.wait_log(r"source %s: start-up test passed" % re.escape(spec), 5, start=mark)
        # The first windows after the fresh start-up test (its 1024 samples are dropped).
        assert again[1024:1024 + 4096] in got, (
            "bytes the FIFO wrote after its stall did not reach the client")
        assert again[:1024] not in got, "start-up samples reached a client"
    finally:
        os.close(wfd)


def test_source_waiting_on_a_full_pool_is_not_stalled(entropyd):
    d = entropyd(sources=["getrandom,stall=300", "file:/dev/urandom"],
                 extra=["--pool-size", "4096"])
    d.wait_log(r"serving from source getrandom", 10)
    # No client draws: getrandom waits for pool space for many times its deadline.
    time.sleep(2.0)
    with d.connect() as c:
        got = c.block(64 * 1024, timeout=10)
    assert len(got) == 64 * 1024
    assert d.count_log(r"stalled") == 0, "a source waiting for pool space was called stalled"
    assert d.count_log(r"serving from source file:") == 0, "failed over to the second source"


def test_default_source_gets_its_kinds_stall_deadline(entropyd):
    d = entropyd(sources=())
    line = d.wait_log(r"no --source given", 5)
    assert "using" in line
    d.wait_log(r"source (file:/dev/hwrng|rdseed|darn|getrandom): .*stall deadline 5000 ms$", 5)


def test_stall_zero_means_never(entropyd, tmp_path):
    fifo = tmp_path / "trng.fifo"
    os.mkfifo(fifo)
    spec = "file:%s,stall=0" % fifo
    wfd = os.open(fifo, os.O_RDWR)
    try:
        d = entropyd(sources=[spec, "getrandom"])
        d.wait_log(r"source %s: .*stall deadline 0 ms \(never\)" % re.escape(spec), 5)
        os.write(wfd, os.urandom(1024 + 4 * 512))
        d.wait_log(r"serving from source %s" % re.escape(spec), 10)
        time.sleep(6.0)  # longer than the default deadline (5000 ms)
        assert d.count_log(r"stalled") == 0, "stall=0 still called the source stalled"
        assert d.count_log(r"serving from source getrandom") == 0
    finally:
        os.close(wfd)
