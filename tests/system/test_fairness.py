"""Fairness when bytes are scarce: a slow source (a FIFO the test fills) and 64 clients
that all keep asking. Each client's share of the bytes must be equal: Jain's fairness
index (sum x)^2 / (n * sum x^2) >= 0.99, over a window of a steady trickle and over one
burst (the old rotation split a burst as avail / nhungry, each turn smaller than the
last: Jain 0.91)."""

import os
import selectors
import socket
import time

import pytest

from egdsupport import hungry_draw_from_slow_fifo, jain, write_all


NCLIENTS = 64
IN_FLIGHT = 4  # 255-byte requests each client keeps outstanding
WARMUP_S = 1.5
WINDOW_S = 5.0


@pytest.mark.time_limit(60)
def test_64_hungry_clients_get_equal_shares_of_a_slow_source(entropyd, tmp_path):
    d, got = hungry_draw_from_slow_fifo(entropyd, tmp_path, NCLIENTS, IN_FLIGHT, WARMUP_S,
                                        WINDOW_S)
    total = sum(got)
    index = jain(got)
    print("64 clients, %d bytes in %.1f s: min %d max %d, Jain %.4f"
          % (total, WINDOW_S, min(got), max(got), index))
    assert total > 100_000, "the slow source delivered only %d bytes in %.1f s" % (
        total, WINDOW_S)
    assert index >= 0.99, "unequal shares: Jain's index %.4f (min %d, max %d bytes)" % (
        index, min(got), max(got))


def burst_shares(d, fd, burst, owed):
    """64 clients each owe `owed` bytes; once all wait, the source delivers `burst` bytes
    at once (after its start-up bytes); returns what each client received of it."""
    sel = selectors.DefaultSelector()
    socks = []
    try:
        for i in range(NCLIENTS):
            s = socket.create_connection(d.ep().address, timeout=10)
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, i)
            s.send(b"\x02\xff" * (owed // 255))
        time.sleep(0.5)  # every request is queued in entropyd
        write_all(fd, os.urandom(1024 + burst))
        got = [0] * NCLIENTS
        deadline = time.monotonic() + 20
        while sum(got) < burst and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                got[key.data] += len(key.fileobj.recv(65536))
        assert sum(got) == burst, "%d of the %d bytes arrived" % (sum(got), burst)
        return got
    finally:
        for s in socks:
            sel.unregister(s)
            s.close()


@pytest.mark.time_limit(60)
def test_a_burst_of_a_slow_source_is_shared_equally_by_64_hungry_clients(entropyd, tmp_path):
    fifo = tmp_path / "burst.fifo"
    os.mkfifo(fifo)
    wfd = os.open(fifo, os.O_RDWR)
    try:
        d = entropyd(sources=["file:%s,stall=0" % fifo], listen=["tcp:127.0.0.1:0,primer=0"])
        got = burst_shares(d, wfd, 65536, 255 * 64)
    finally:
        os.close(wfd)
    index = jain(got)
    print("one burst of 65536 bytes to 64 clients: min %d max %d, Jain %.4f"
          % (min(got), max(got), index))
    assert index >= 0.99, "unequal shares: Jain's index %.4f (min %d, max %d bytes)" % (
        index, min(got), max(got))
