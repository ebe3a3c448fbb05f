"""Raw-mode delivery from file sources whose content the test knows: start-up bytes are
discarded, only windows that passed the health tests are served, no byte reaches two
clients, an exhausted source makes clients wait, failover to the next source
(DESIGN.md invariants 1, 2 and 5).

The contract: the first 1024 bytes after start (and after each failure) are the start-up
test and are discarded; then bytes are released in 512-byte windows, only windows that
passed; with h=4 the Repetition Count cutoff is 9 equal bytes in a row, the Adaptive
Proportion cutoff 71 occurrences of a window's first value in the window."""

import os
import random
import re

import pytest

from alignment import align_streams, coverage_summary
from egdsupport import (STARTUP_BYTES, WINDOW_BYTES, block_requests, fifo_source,
                        random_file_bytes, read_many, req_nonblock)


def serve_all(d, sizes, timeout=60, before_reading=None):
    """Connect one client per size, each sending its 02 requests at once; call
    `before_reading` (if given) once all are sent; return the streams, labelled."""
    clients = []
    try:
        for i, n in enumerate(sizes):
            c = d.connect(label="client %d" % i)
            clients.append(c)
            c.send(block_requests(n))  # at once: strict EGD, no primer
        if before_reading:
            before_reading()
        got = read_many({c.sock: n for c, n in zip(clients, sizes)}, timeout=timeout)
        return {c.label: got[c.sock] for c in clients}
    finally:
        for c in clients:
            c.close()


def test_single_client_receives_the_file_after_its_startup_bytes_in_order(entropyd,
                                                                           random_file):
    windows = 64
    path, data = random_file(STARTUP_BYTES + windows * WINDOW_BYTES)
    d = entropyd(sources=["file:%s" % path])
    with d.connect() as c:
        got = c.block(windows * WINDOW_BYTES, timeout=20)
        assert got == data[STARTUP_BYTES:], (
            "a lone client did not receive exactly the file from offset %d on (first "
            "difference at stream offset %d)" % (STARTUP_BYTES, next(
                i for i in range(len(got)) if got[i] != data[STARTUP_BYTES + i])))
        c.assert_in_sync(d.pid)


@pytest.mark.time_limit(180)
def test_concurrent_clients_never_receive_the_same_byte(entropyd, tmp_path):
    # The bytes reach entropyd through a FIFO that the test fills only once all eight
    # clients wait with their requests sent: a plain file is read so fast that the first
    # client can be served whole before the next one connects, and then nothing here
    # would be concurrent.
    spec, data, wfd, writer = fifo_source(tmp_path, 8 << 20, start=False)
    try:
        d = entropyd(sources=[spec])
        # 8 clients ask for almost all the file can give: 8 MB of 8 MiB - 1024.
        want = 1_000_000
        streams = serve_all(d, [want] * 8, timeout=120, before_reading=writer.start)
    finally:
        if writer.is_alive():
            writer.join(30)
        os.close(wfd)
    placed = align_streams(data, streams, min_offset=STARTUP_BYTES)
    lo, hi, total = coverage_summary(placed)
    assert total == 8 * want
    pieces = sum(len(p) for p in placed.values())
    print("8 clients: %d bytes in %d pieces from file offsets %d..%d"
          % (total, pieces, lo, hi - 1))
    # Each client got bytes from all over the file, not one contiguous block each: the
    # check above really looked at interleaved delivery.
    assert pieces > 8, "each client got one contiguous block: no concurrency exercised"


@pytest.mark.time_limit(120)
def test_window_failing_the_repetition_test_is_never_served(entropyd, random_file):
    # Random bytes, then 4096 zero bytes starting 100 bytes into a release window, then
    # random bytes again. The window holding the start of the run fails (9 equal bytes),
    # the source restarts its start-up test, which keeps failing on the zeros; nothing
    # from that window, the run, or the 1024 start-up bytes after it may be served.
    w0 = STARTUP_BYTES + 64 * WINDOW_BYTES   # start of the window that fails
    z = w0 + 100                             # the zero run starts here
    run = 4096
    head = bytearray(random_file_bytes(z))
    tail = bytearray(random_file_bytes(256 << 10))
    head[-1] = head[-1] or 1                 # the run is exactly `run` zeros long
    tail[0] = tail[0] or 1
    data = bytes(head) + bytes(run) + bytes(tail)
    path, _ = random_file(len(data), data=data)
    d = entropyd(sources=["file:%s" % path])

    # 32 KiB before the failure plus at least 250 KiB after it can be served; ask for
    # 4 x 60000 so that clients need bytes from both sides of the failure.
    streams = serve_all(d, [60000] * 4, timeout=60)
    for label, s in streams.items():
        m = re.search(rb"(.)\1{8}", s, re.S)
        assert m is None, ("%s received %d equal bytes (0x%02x) in a row at stream offset %d"
                           % (label, len(m.group(0)), m.group(0)[0], m.start()))
    # Restarting the start-up test after the run: at least 1024 bytes after the last
    # zero that could have failed (the last failure is at most 8 zeros before the end).
    forbidden_end = z + run - 8 + STARTUP_BYTES
    placed = align_streams(data, streams, min_offset=STARTUP_BYTES,
                           forbidden=[(w0, forbidden_end)])
    offsets = [o for pcs in placed.values() for _p, o, m in pcs]
    assert min(offsets) < w0 and max(offsets) >= forbidden_end, (
        "expected bytes from both before and after the failed window")
    d.wait_log(r"health test failed", 5)


def _window_file(test_window, before=4, after=8):
    """Random file: 1024 start-up bytes, `before` windows, the test window, `after`
    windows."""
    head = random_file_bytes(STARTUP_BYTES + before * WINDOW_BYTES)
    tail = random_file_bytes(after * WINDOW_BYTES)
    return head + test_window + tail, STARTUP_BYTES + before * WINDOW_BYTES


def _window_with_run(length, value=0x5a, at=100):
    rng = random.Random(length)
    w = bytearray(rng.choice([b for b in range(256) if b != value])
                  for _ in range(WINDOW_BYTES))
    w[at:at + length] = bytes([value]) * length
    return bytes(w), at + length - 1  # the window, and where the run ends


def _window_with_count(count, value=0xa5):
    """A window whose first byte is `value`, which occurs `count` times in it, spread out,
    with no two equal bytes adjacent. Returns (window, offset of the last occurrence)."""
    rng = random.Random(count)
    others = [b for b in range(256) if b != value]
    w = bytearray(WINDOW_BYTES)
    positions = [round(i * (WINDOW_BYTES - 2) / (count - 1)) for i in range(count)]
    for i in range(WINDOW_BYTES):
        w[i] = rng.choice(others)
        while i and w[i] == w[i - 1]:
            w[i] = rng.choice(others)
    for p in positions:
        w[p] = value
    for i in range(1, WINDOW_BYTES):
        if w[i] == w[i - 1] and w[i] != value:
            w[i] = (w[i] + 1) % 256 if (w[i] + 1) % 256 != value else (w[i] + 2) % 256
    assert w.count(bytes([value])) == count and w[0] == value
    return bytes(w), positions[-1]


@pytest.mark.parametrize("case,window,passes", [
    ("run of 8 equal bytes", _window_with_run(8)[0], True),
    ("run of 9 equal bytes", _window_with_run(9)[0], False),
    ("first value 70 times", _window_with_count(70)[0], True),
    ("first value 71 times", _window_with_count(71)[0], False),
], ids=["rct8_passes", "rct9_fails", "apt70_passes", "apt71_fails"])
def test_health_test_cutoffs_with_default_min_entropy(entropyd, random_file, case, window,
                                                      passes):
    data, w0 = _window_file(window)
    path, _ = random_file(len(data), data=data)
    d = entropyd(sources=["file:%s" % path])
    before = w0 - STARTUP_BYTES
    with d.connect() as c:
        if passes:
            got = c.block(len(data) - STARTUP_BYTES, timeout=20)
            assert got == data[STARTUP_BYTES:], "a window with a %s was not served" % case
            assert d.count_log(r"health test failed") == 0
            return
        got = c.block(before, timeout=20)
        assert got == data[STARTUP_BYTES:w0], "the windows before the test window differ"
        more = c.block(1024, timeout=20)
    failed_at = w0 + (_window_with_run(9)[1] if "equal" in case
                      else _window_with_count(71)[1])
    earliest = max(w0 + WINDOW_BYTES, failed_at + 1 + STARTUP_BYTES)
    off = data.find(more)
    assert off != -1, "bytes after the failed window are not from the file"
    assert off >= earliest, (
        "after a window with a %s failed at file offset %d, bytes from offset %d were "
        "served; the failed window ends at %d and the new start-up test at %d at the "
        "earliest" % (case, failed_at, off, w0 + WINDOW_BYTES, earliest))
    d.wait_log(r"health test failed", 5)


def test_min_entropy_option_lowers_the_repetition_cutoff(entropyd, random_file):
    # h=8 bits per byte: SP 800-90B's cutoff 1 + ceil(30 / 8) = 5 equal bytes fail; the
    # same window passes with the default h=4 (cutoff 9).
    window, run_end = _window_with_run(5)
    data, w0 = _window_file(window)
    path, _ = random_file(len(data), data=data)
    d = entropyd(sources=["file:%s,h=8" % path])
    with d.connect() as c:
        got = c.block(w0 - STARTUP_BYTES, timeout=20)
        assert got == data[STARTUP_BYTES:w0]
        more = c.block(512, timeout=20)
        off = data.find(more)
        assert off >= w0 + WINDOW_BYTES, ("a window with 5 equal bytes in a row was served "
                                          "from a source with h=8 (offset %d)" % off)
    d.wait_log(r"health test failed", 5)


def test_exhausted_source_makes_clients_wait_and_nonblocking_reads_get_nothing(
        entropyd, random_file):
    windows = 8
    path, data = random_file(STARTUP_BYTES + windows * WINDOW_BYTES)
    d = entropyd(sources=["file:%s" % path])
    with d.connect(label="waiter") as waiter:
        waiter.send(block_requests(windows * WINDOW_BYTES + 100))
        got = waiter.recv_exact(windows * WINDOW_BYTES, timeout=20)
        assert got == data[STARTUP_BYTES:]
        d.wait_log(r"exhausted", 10)
        with d.connect(label="poller") as poller:
            assert poller.nonblock(64) == b"", "01 returned bytes from an exhausted source"
            assert poller.level() == 0, "00 reports bits with an empty pool"
            poller.send(req_nonblock(255))
            assert poller.recv_exact(1)[0] == 0
            poller.assert_in_sync(d.pid)
        # The waiter gets nothing more (no bytes from nowhere) and stays connected.
        waiter.expect_silence(1.5, " from an exhausted source")


def test_failover_serves_from_the_next_source_after_the_file_is_exhausted(entropyd,
                                                                          random_file):
    windows = 4
    path, data = random_file(STARTUP_BYTES + windows * WINDOW_BYTES)
    d = entropyd(sources=["file:%s" % path, "getrandom"])
    got = bytearray()
    with d.connect() as c:
        # The next source may fill the pool first and keep the file waiting for room:
        # read until the file source reports that it is exhausted (bounded: 8 MiB).
        for _ in range(128):
            got += c.block(64 << 10, timeout=30)
            if d.count_log(r"exhausted"):
                break
        else:
            raise AssertionError("the file source was not exhausted after %d bytes were "
                                 "served" % len(got))
        # After the switch clients keep being served.
        got += c.block(256 << 10, timeout=30)
        c.assert_in_sync(d.pid)
    # Whatever came from the file came from after its start-up bytes.
    got = bytes(got)
    for p in range(0, len(got) - 16, 16):
        off = data.find(got[p:p + 16])
        assert off == -1 or off >= STARTUP_BYTES, (
            "start-up bytes of the file source (offset %d) were served" % off)


def test_failover_keeps_serving_clients_that_wait_across_the_switch(entropyd, random_file):
    # The clients already wait (requests pending) when the file runs out.
    path, data = random_file(STARTUP_BYTES + 2 * WINDOW_BYTES)
    d = entropyd(sources=["file:%s" % path, "getrandom"])
    streams = serve_all(d, [20000] * 4, timeout=30)
    assert sum(len(s) for s in streams.values()) == 80000
