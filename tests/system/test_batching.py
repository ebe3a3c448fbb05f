"""Batched delivery for QEMU's backends: the fifo endpoint's pipe is grown (so entropyd
refills it in large batches) and says so; a peer that behaves like QEMU's rng-egd (only
0x02 requests, 16 or more) is kept up to surplus= bytes ahead of its requests and never
more; a strict client is never sent a byte it did not ask for; a peer that sends another
command once bytes went ahead is closed with one line."""

import fcntl
import os
import re

import pytest

from egdsupport import PeerClosed, req_block, req_nonblock

QEMU_REQ = 64  # an x86 guest's virtio-rng asks for 64 bytes at a time


def qemu_requests(n):
    return req_block(QEMU_REQ) * n


@pytest.mark.time_limit(30)
def test_fifo_pipe_is_grown_to_one_mib_or_the_system_maximum_and_logged(entropyd, tmp_path):
    path = tmp_path / "rng.fifo"
    d = entropyd(listen=(), extra=["--listen", "fifo:%s" % path])
    m = re.search(r"pipe of (\d+) bytes",
                  d.wait_log(r"listening on fifo:\S+ \(raw, pipe of \d+ bytes", 5))
    with open("/proc/sys/fs/pipe-max-size") as f:
        want = min(1 << 20, int(f.read()))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        actual = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    finally:
        os.close(fd)
    assert int(m.group(1)) == actual == want, (
        "the fifo's pipe should be %d bytes and logged so; log says %s, the pipe is %d"
        % (want, m.group(1), actual))


@pytest.mark.time_limit(30)
def test_qemu_like_peer_is_kept_a_bounded_surplus_ahead(entropyd):
    bound = 4096
    d = entropyd(listen=["tcp:127.0.0.1:0,surplus=%d" % bound])
    with d.connect(label="qemu-like") as c:
        asked = 16 * QEMU_REQ
        c.send(qemu_requests(16))
        got = len(c.recv_exact(asked + bound, timeout=10))
        c.expect_silence(0.5, " beyond the bound of %d ahead" % bound)
        # Requests the surplus already covers bring nothing new (fewer than bound/2).
        c.send(qemu_requests(10))
        asked += 10 * QEMU_REQ
        c.expect_silence(0.5, " while the surplus covers the requests")
        # Once less than half the bound is ahead, it is topped up to the bound again.
        c.send(qemu_requests(40))
        asked += 40 * QEMU_REQ
        got += len(c.recv_exact(asked + bound - got, timeout=10))
        c.expect_silence(0.5, " beyond the bound of %d ahead" % bound)
        assert got == asked + bound
    d.wait_log(r"client \S+: only 0x02 requests so far; keeping up to 4096 bytes ahead", 5)


@pytest.mark.time_limit(30)
def test_strict_client_that_opens_with_0x01_is_never_sent_bytes_ahead(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0,surplus=4096"])
    with d.connect(label="strict") as c:
        c.send(req_nonblock(16))
        n = c.recv_exact(1, timeout=10)[0]
        c.recv_exact(n, timeout=10)
        c.send(qemu_requests(40))
        c.recv_exact(40 * QEMU_REQ, timeout=10)
        c.expect_silence(0.5, " (a strict client must get only what it asked for)")
        c.assert_in_sync(d.pid)


@pytest.mark.time_limit(30)
def test_peer_sending_another_command_after_bytes_went_ahead_is_closed(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0,surplus=4096"])
    with d.connect(label="mixer") as c:
        c.send(qemu_requests(16))
        c.recv_exact(16 * QEMU_REQ + 4096, timeout=10)
        c.send(b"\x04")
        with pytest.raises(PeerClosed):
            c.recv_exact(1 << 16, timeout=10)
    d.wait_log(r"command 0x04 after 4096 bytes were sent ahead of its requests", 5)
