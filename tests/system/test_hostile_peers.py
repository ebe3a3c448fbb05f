"""Peers that misbehave on purpose: half-sent commands, too many connections from one
address, floods of bad commands, primed peers and resets that would fill the log, and UDP
peers that ask faster than their rate or split commands across datagrams. Each is bounded
without hurting other clients."""

import socket
import struct
import time

import pytest

from egdsupport import EgdClient, PeerClosed, req_block, req_pid
from entropyd_proc import run_entropyd
from test_transports import qemu_udp_chardev, udp_client, udp_port

PARTIAL_TIMEOUT = 10.0  # CLIENT_PARTIAL_TIMEOUT_MS


def connect_from(d, source, label, i=0):
    """An EGD connection to endpoint i whose source address is `source`."""
    e = d.ep(i)
    s = socket.socket(e.family, socket.SOCK_STREAM)
    s.settimeout(5)
    if source is not None:
        s.bind((source, 0))
    s.connect(e.address)
    return EgdClient(s, label)


def is_served(c):
    """True if c answers a 0x04 request; False if the daemon closed it instead."""
    try:
        c.send(req_pid())
        c.read_pid_reply(5)
        return True
    except (PeerClosed, ConnectionResetError, BrokenPipeError):
        return False


# ---------------------------------------------------------------------------------------
# 1. Half-sent commands


@pytest.mark.time_limit(45)
def test_command_left_incomplete_for_10_s_closes_that_connection_only(entropyd):
    d = entropyd()
    mark = d.mark()
    with d.connect(label="bystander") as other, \
            d.connect(label="header only") as half, \
            d.connect(label="write short of its data") as short:
        assert other.pid() == d.pid
        t0 = time.monotonic()
        half.send(b"\x02")
        short.send(b"\x03\x00\x10\x20" + b"\x11" * 5)  # 5 of 32 data bytes
        # Not before ~9 s, and the bystander is served meanwhile.
        for _ in range(8):
            assert len(other.block(255, timeout=5)) == 255
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0) % 1.0))
        half.expect_silence(max(0.0, PARTIAL_TIMEOUT - 1.0 - (time.monotonic() - t0)),
                            " before the partial-command timeout")
        short.expect_silence(0.01, " before the partial-command timeout")
        assert time.monotonic() - t0 >= PARTIAL_TIMEOUT - 1.0
        # ... then closed, within a few seconds of the deadline.
        half.expect_closed(max(0.5, PARTIAL_TIMEOUT + 3.0 - (time.monotonic() - t0)))
        short.expect_closed(max(0.5, PARTIAL_TIMEOUT + 3.0 - (time.monotonic() - t0)))
        assert time.monotonic() - t0 < PARTIAL_TIMEOUT + 3.0
        for n in (1, 9):
            d.wait_log(r"sent %d byte\(s\) of a command and not the rest in 10 s; "
                       r"connection closed" % n, 2, start=mark)
        assert d.count_log(r"not the rest in 10 s", mark) == 2
        assert len(other.block(255)) == 255
        other.assert_in_sync(d.pid)


@pytest.mark.time_limit(40)
def test_idle_peer_with_nothing_buffered_is_kept_and_served_after_12_s(entropyd):
    # QEMU may send nothing for hours: only an incomplete command times out.
    d = entropyd()
    with d.connect(label="idle peer") as idle:
        assert len(idle.recv_exact(128, 5, "primer")) == 128
        idle.expect_silence(PARTIAL_TIMEOUT + 2.0, " while idle")
        assert idle.pid() == d.pid
        assert len(idle.block(255)) == 255


# ---------------------------------------------------------------------------------------
# 2. Connections per peer


def test_connections_beyond_max_per_peer_are_closed_and_freed_slots_reused(entropyd):
    d = entropyd(listen=("tcp:127.0.0.1:0,max-per-peer=4",))
    mark = d.mark()
    held = []
    try:
        for i in range(4):
            c = connect_from(d, "127.0.0.1", "allowed %d" % i)
            held.append(c)
            assert is_served(c), "connection %d of 4 from 127.0.0.1 was refused" % i
        for i in range(2):
            with connect_from(d, "127.0.0.1", "over the cap %d" % i) as c:
                assert c.expect_closed(5) == b""
        d.wait_log(r"refused: 127\.0\.0\.1 already holds 4 \(max-per-peer=4\); closed", 5,
                   start=mark)
        with connect_from(d, "127.0.0.2", "another address") as c:
            assert is_served(c)
        for c in held:  # the four are still served
            assert is_served(c)
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the close is noticed by the daemon shortly after
            c = connect_from(d, "127.0.0.1", "after one closed")
            if is_served(c):
                held.append(c)
                break
            c.close()
            assert time.monotonic() < deadline, "a freed slot was not given to a new peer"
            time.sleep(0.1)
    finally:
        for c in held:
            c.close()


@pytest.mark.time_limit(60)
def test_tcp_listeners_allow_64_connections_per_address_by_default(entropyd):
    d = entropyd()
    held = []
    try:
        for i in range(64):
            held.append(connect_from(d, "127.0.0.1", "connection %d" % i))
        for c in held:
            assert is_served(c)
        with connect_from(d, "127.0.0.1", "the 65th") as c:
            assert c.expect_closed(5) == b""
    finally:
        for c in held:
            c.close()


def test_unix_listener_counts_connections_per_uid(entropyd, tmp_path):
    d = entropyd(listen=("unix:%s,max-per-peer=2" % (tmp_path / "egd.sock"),))
    with d.connect(label="first") as a, d.connect(label="second") as b:
        assert is_served(a) and is_served(b)
        with d.connect(label="third, same uid") as c:
            assert c.expect_closed(5) == b""
    d.wait_log(r"refused: uid \d+ already holds 2 \(max-per-peer=2\)", 5)


def test_max_per_peer_is_refused_where_it_cannot_apply():
    for spec in ("udp:127.0.0.1:0,max-per-peer=3", "fifo:/tmp/x,max-per-peer=3"):
        r = run_entropyd(["-n", "--listen", spec])
        assert r.returncode == 1 and b"max-per-peer= applies to tcp, unix and vhost-user" in r.stderr


# ---------------------------------------------------------------------------------------
# 3. The log cannot be flooded


def flood_leaves_few_lines(d, pattern, peers, n=500, batch=50):
    """Run `peers(d, count)` for n peers in batches, a bystander served between them; then,
    a second later, one more peer: the log holds few lines matching pattern, and one of
    them carries the count held back."""
    mark = d.mark()
    with d.connect(label="bystander") as other:
        assert other.pid() == d.pid
        t0 = time.monotonic()
        for _ in range(n // batch):
            peers(d, batch)
            assert len(other.block(64)) == 64
        assert time.monotonic() - t0 < 20, "%d peers took %.1f s" % (n, time.monotonic() - t0)
        time.sleep(1.2)  # one more line may pass: it carries the count held back
        peers(d, 1)
        d.wait_log(pattern + r".*\((\d+) similar lines suppressed\)", 5, start=mark)
        lines = d.count_log(pattern, mark)
        assert lines < 60, "%d log lines for %d peers" % (lines, n + 1)
        assert len(other.block(255)) == 255
        other.assert_in_sync(d.pid)
    with d.connect(label="after") as c:
        assert c.pid() == d.pid


def unknown_command(d, count):
    for i in range(count):
        with d.connect(label="bad %d" % i) as bad:
            bad.send(b"\x05")
            bad.expect_closed(5)


@pytest.mark.time_limit(90)
def test_500_unknown_commands_leave_few_log_lines_and_a_suppressed_count(entropyd):
    d = entropyd(verbose=False)
    flood_leaves_few_lines(d, r"unknown command 0x05; connection closed", unknown_command)


def connect_many(d, count, what):
    return [d.connect(label="%s %d" % (what, i), timeout=5) for i in range(count)]


def wait_primer_unread(c, n=128):
    """Wait until the n primer bytes sit in c's receive buffer, unread."""
    deadline = time.monotonic() + 5
    while len(c.sock.recv(n, socket.MSG_PEEK)) < n:
        assert time.monotonic() < deadline, "%s: no %d primer bytes in 5 s" % (c.label, n)
        time.sleep(0.01)


def primed_and_gone(d, count):
    """Peers that connect and wait, as QEMU does: each gets a primer, reads it, leaves."""
    held = connect_many(d, count, "primed")
    try:
        for c in held:
            assert len(c.recv_exact(128, 5, "primer")) == 128
    finally:
        for c in held:
            c.close()


def reset_at_once(d, count):
    """Peers that connect and reset the connection at once (SO_LINGER {1, 0}: an RST)."""
    for _ in range(count):
        s = d.connect_raw_socket(timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def primed_and_reset(d, count):
    """Peers that get a primer and close without reading it: tcp sends an RST, and a unix
    peer's read fails with ECONNRESET."""
    held = connect_many(d, count, "primed, then reset")
    try:
        for c in held:
            wait_primer_unread(c)
    finally:
        for c in held:
            c.close()


def flood_listener(kind, tmp_path):
    """A tcp listener with no per-peer cap (500 peers come from one address), or a unix one."""
    return ("tcp:127.0.0.1:0,max-per-peer=0" if kind == "tcp"
            else "unix:%s" % (tmp_path / "egd.sock"),)


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_500_primed_peers_leave_few_primer_lines_and_a_suppressed_count(entropyd, tmp_path,
                                                                         kind):
    # The primer line is a debug line: only --verbose shows it.
    d = entropyd(listen=flood_listener(kind, tmp_path))
    flood_leaves_few_lines(d, r"silent for 100 ms; sending 128 primer bytes", primed_and_gone)


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("kind,peers", [("tcp", reset_at_once), ("tcp", primed_and_reset),
                                        ("unix", primed_and_reset)],
                         ids=["tcp-at-once", "tcp-after-primer", "unix-after-primer"])
def test_500_peers_resetting_leave_few_reset_lines_and_a_suppressed_count(entropyd, tmp_path,
                                                                           kind, peers):
    d = entropyd(verbose=False, listen=flood_listener(kind, tmp_path))
    flood_leaves_few_lines(d, r"Connection reset by peer; connection closed", peers)


# ---------------------------------------------------------------------------------------
# 4. UDP answers are paced


def drain(s, until):
    got = 0
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return got
        s.settimeout(left)
        try:
            got += len(s.recv(65536))
        except socket.timeout:
            return got


@pytest.mark.time_limit(30)
def test_udp_peer_asking_fast_gets_no_more_than_its_rate_while_others_are_answered(entropyd):
    d = entropyd(listen=(), extra=["--listen", "udp:127.0.0.1:0,rate=100000/1000"])
    port = udp_port(d)
    with udp_client(port) as fast, udp_client(port) as other:
        fast.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        ask = req_block(255) * 400  # 102000 bytes per datagram
        t0 = time.monotonic()
        got = 0
        while time.monotonic() - t0 < 2.0:
            fast.send(ask)
            got += drain(fast, min(t0 + 2.0, time.monotonic() + 0.05))
            if 0.9 < time.monotonic() - t0 < 1.0:
                other.send(b"\x02\x40")
                assert len(other.recv(65536)) == 64
        # a 100000-byte burst, then 100000 bytes a second: 300 kB at most in 2 s
        assert 150000 <= got <= 320000, "%d bytes in 2 s at rate=100000/1000" % got


def test_udp_connect_endpoint_answers_no_other_port(entropyd):
    qemu, local, port = qemu_udp_chardev()
    d = entropyd(listen=(), connect=["udp:127.0.0.1:%d,local=127.0.0.1:%d" % (local, port)])
    d.wait_log(r"connected to udp:", 5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.settimeout(1.0)
        stranger.sendto(b"\x02\x40", ("127.0.0.1", port))
        with pytest.raises(socket.timeout):
            stranger.recvfrom(65536)
    qemu.sendto(b"\x02\x40", ("127.0.0.1", port))
    data, addr = qemu.recvfrom(65536)
    assert len(data) == 64 and addr == ("127.0.0.1", port)
    qemu.close()


# ---------------------------------------------------------------------------------------
# 5. One datagram, one request set


def test_udp_requests_are_never_joined_across_datagrams(entropyd):
    d = entropyd(listen=(), extra=["--listen", "udp:127.0.0.1:0"])
    mark = d.mark()
    with udp_client(udp_port(d), timeout=1.0) as s:
        s.send(b"\x02")
        s.send(b"\x40")
        with pytest.raises(socket.timeout):
            s.recv(65536)
        d.wait_log(r"datagram of 1 bytes from 127\.0\.0\.1 port \d+ ends inside a command; "
                   r"dropped .*1 dropped so far", 5, start=mark)
        s.send(b"\x02\x40")
        assert len(s.recv(65536)) == 64
        s.send(b"\x02\x10\x02")  # a complete command then half of one: dropped whole
        with pytest.raises(socket.timeout):
            s.recv(65536)
        d.wait_log(r"2 dropped so far", 5, start=mark)
