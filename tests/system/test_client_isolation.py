"""One client's behaviour must not affect the others: many clients at once, a client that
never reads, a slowloris, a garbage flood (DESIGN.md invariants 1, 3 and 4)."""

import os
import socket
import struct
import threading
import time

import pytest

from egdsupport import (PeerClosed, block_requests, read_many, req_block, req_pid, rss_kib)


@pytest.mark.time_limit(90)
def test_two_hundred_concurrent_clients_each_get_exactly_their_bytes(entropyd):
    # 200 connections from one address: above the default max-per-peer (64) for tcp.
    d = entropyd(listen=("tcp:127.0.0.1:0,max-per-peer=0",))
    per_client = 4096
    pid_reply = bytes([len(str(d.pid))]) + str(d.pid).encode()
    clients = []
    try:
        for i in range(200):
            c = d.connect(label="client %d" % i)
            clients.append(c)
            # The first command goes out at once (no primer), then the pid as a sentinel:
            # a byte too many or too few shows up as a wrong sentinel.
            c.send(block_requests(per_client) + req_pid())
        got = read_many({c.sock: per_client + len(pid_reply) for c in clients}, timeout=60)
        for i, c in enumerate(clients):
            tail = got[c.sock][per_client:]
            assert tail == pid_reply, ("client %d: bytes after its %d requested bytes are %r, "
                                       "not the pid reply %r" % (i, per_client, tail,
                                                                 pid_reply))
        # Byte streams of different clients must differ (no byte handed out twice at the
        # grossest level; the file-source tests check it exactly).
        assert len({got[c.sock][:per_client] for c in clients}) == len(clients)
    finally:
        for c in clients:
            c.close()


@pytest.mark.time_limit(90)
def test_client_that_never_reads_does_not_slow_another_client(entropyd):
    d = entropyd()
    mib = 1 << 20
    with d.connect(label="baseline") as c:
        t0 = time.monotonic()
        c.send(block_requests(mib))
        c.recv_exact(mib, timeout=30)
        baseline = time.monotonic() - t0
    rss_before = rss_kib(d.pid)

    hog = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Small buffers: the replies fill up sooner, and the requests cannot all sit in
    # socket buffers: the daemon must read them.
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    hog.settimeout(10)
    hog.connect(d.ep().address)
    hog_requests = block_requests(50 * mib)  # ~400 KB of 02 ff, never read
    sent = {"error": None, "done": None}

    def flood():
        try:
            hog.settimeout(30)
            hog.sendall(hog_requests)
            sent["done"] = time.monotonic()
        except OSError as e:
            sent["error"] = e

    t = threading.Thread(target=flood, daemon=True)
    start = time.monotonic()
    t.start()
    try:
        time.sleep(0.5)  # let the hog's socket fill up
        with d.connect(label="reader") as c:
            t0 = time.monotonic()
            c.send(block_requests(mib))
            c.recv_exact(mib, timeout=30)
            elapsed = time.monotonic() - t0
            c.assert_in_sync(d.pid)
        t.join(30)
        assert not t.is_alive(), ("the daemon stopped reading the requests of a client it "
                                  "owes bytes to (%d bytes of requests not accepted in 30 s)"
                                  % len(hog_requests))
        assert not isinstance(sent["error"], socket.timeout), (
            "the daemon stopped reading the requests of a client it owes bytes to: %d bytes "
            "of 02 requests not accepted in 30 s" % len(hog_requests))
        assert sent["error"] is None, "sending the hog's requests failed: %r" % sent["error"]
        print("1 MiB alone: %.3f s; next to a client owed 50 MiB that never reads: %.3f s; "
              "hog's %d bytes of requests accepted in %.3f s"
              % (baseline, elapsed, len(hog_requests), sent["done"] - start))
        assert elapsed < max(10.0, 5 * baseline), (
            "1 MiB took %.1f s next to a client that never reads (%.2f s alone)"
            % (elapsed, baseline))
        growth = rss_kib(d.pid) - rss_before
        assert growth < 32 * 1024, ("daemon memory grew by %d KiB while owing 50 MiB to a "
                                    "client that never reads" % growth)
    finally:
        hog.close()


def test_slowloris_clients_sending_half_a_request_do_not_hang_others(entropyd):
    d = entropyd()
    slow = []
    try:
        for i in range(20):
            c = d.connect(label="slowloris %d" % i)
            c.send(b"\x02")  # a header's first byte, and nothing more, ever
            slow.append(c)
        time.sleep(0.3)
        with d.connect(label="normal") as c:
            t0 = time.monotonic()
            assert len(c.block(65536, timeout=10)) == 65536
            c.assert_in_sync(d.pid)
            assert time.monotonic() - t0 < 10
        # New connections are still accepted and served.
        with d.connect(label="late") as c:
            assert c.pid() == d.pid
    finally:
        for c in slow:
            c.close()


@pytest.mark.time_limit(60)
def test_garbage_flood_closes_only_the_flooding_client(entropyd):
    d = entropyd()
    with d.connect(label="bystander") as other:
        other.send(req_pid())
        assert other.read_pid_reply() == d.pid
        rss_before = rss_kib(d.pid)
        mark = d.mark()
        flood = socket.create_connection(d.ep().address, timeout=10)
        garbage = os.urandom(1 << 20)
        result = {}

        def send():
            try:
                flood.sendall(garbage)
                result["sent"] = True
            except OSError as e:  # reset or broken pipe once the daemon closes it
                result["error"] = e

        t = threading.Thread(target=send, daemon=True)
        t.start()
        try:
            # The bystander is served while the flood goes on and after.
            for _ in range(20):
                assert len(other.block(255, timeout=10)) == 255
            other.assert_in_sync(d.pid)
            # The flooder is disconnected: EOF or reset, whatever valid requests the random
            # prefix happened to contain.
            deadline = time.monotonic() + 10
            while True:
                flood.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    chunk = flood.recv(65536)
                except socket.timeout:
                    raise AssertionError("the flooding client was not disconnected in 10 s")
                except ConnectionResetError:
                    break
                if not chunk:
                    break
            t.join(10)
            assert not t.is_alive(), "sending the flood hangs: the daemon neither reads nor closes"
        finally:
            flood.close()
        d.wait_log(r"(?i)unknown command|refus|denied|not (allowed|enabled|permitted)",
                   5, start=mark)
        for _ in range(4):
            assert len(other.block(255, timeout=10)) == 255
        other.assert_in_sync(d.pid)
        growth = rss_kib(d.pid) - rss_before
        assert growth < 16 * 1024, "daemon memory grew by %d KiB during a 1 MiB flood" % growth


def test_many_clients_connecting_and_leaving_at_once_leave_the_daemon_serving(entropyd):
    # 50 at once from one address, and the resets of a round may still be on their way when
    # the next round connects: above the default max-per-peer (64), which is not the point.
    d = entropyd(listen=("tcp:127.0.0.1:0,max-per-peer=0",))
    for round_ in range(5):
        socks = []
        for i in range(50):
            s = socket.create_connection(d.ep().address, timeout=10)
            if i % 2:
                s.sendall(req_block(255) * 10)
            socks.append(s)
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # reset with bytes owed
    with d.connect() as c:
        assert len(c.block(1000)) == 1000
        c.assert_in_sync(d.pid)


def test_connection_closed_by_peer_mid_reply_does_not_disturb_others(entropyd):
    d = entropyd()
    with d.connect(label="steady") as steady:
        steady.send(req_pid())
        assert steady.read_pid_reply() == d.pid
        for _ in range(10):
            c = d.connect(label="quitter")
            c.send(block_requests(1 << 20))
            try:
                c.recv_exact(1000)
            except PeerClosed as e:
                raise AssertionError(str(e))
            c.close()
            assert len(steady.block(255)) == 255
        steady.assert_in_sync(d.pid)
