"""Hostile peers at the daemon's limits, over every stream transport: connections opened
until entropyd runs out of descriptors, clients that pipeline requests and never read, and
a command trickled in one byte at a time. Each test runs once per kind in STREAM_KINDS;
a transport is one more entry there (a listen spec and a way to open a connection)."""

import selectors
import socket
import time
from contextlib import contextmanager

import pytest

from egdsupport import EgdClient, PeerClosed, req_block, req_level, req_pid, req_write, rss_kib
from entropyd_proc import Daemon, build_args, require_binary

PARTIAL_TIMEOUT = 10.0  # CLIENT_PARTIAL_TIMEOUT_MS


# ---------------------------------------------------------------------------------------
# Stream transports


def _tcp_spec(tmp_path, opts):
    return "tcp:127.0.0.1:0" + opts


def _unix_spec(tmp_path, opts):
    return "unix:%s" % (tmp_path / "egd.sock") + opts


STREAM_KINDS = {"tcp": _tcp_spec, "unix": _unix_spec}


def listen_spec(kind, tmp_path, opts=""):
    """The --listen argument for an endpoint of this kind, with ,options appended."""
    return STREAM_KINDS[kind](tmp_path, opts)


def open_peer(d, i=0, label="peer"):
    """A new connection to d's endpoint; a TCP one comes from 127.0.0.(2 + i % 200), so a
    flood is spread over many source addresses."""
    e = d.ep()
    s = socket.socket(e.family, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        if e.kind == "tcp":
            s.bind(("127.0.0.%d" % (2 + i % 200), 0))
        s.connect(e.address)
    except BaseException:
        s.close()
        raise
    return EgdClient(s, label)


@contextmanager
def limited_entropyd(spec, nofile):
    """entropyd under RLIMIT_NOFILE = nofile, soft and hard (main.c raises the soft limit
    to the hard one), stopped by PID at the end; it must exit with status 0."""
    require_binary()
    d = Daemon(["prlimit", "--nofile=%d:%d" % (nofile, nofile), "--"]
               + build_args(listen=(spec,)))
    ok = False
    try:
        d.wait_ready((spec,))
        with open("/proc/%d/limits" % d.pid) as f:
            assert any(ln.startswith("Max open files") and ln.split()[3:5] == [str(nofile)] * 2
                       for ln in f), "prlimit did not apply to entropyd (pid %d)" % d.pid
        yield d
        ok = True
    finally:
        rc, killed = d.stop()
        if not ok or killed or rc != 0:
            print("--- entropyd log (pid %d) ---\n%s" % (d.pid, d.log()))
    assert not killed and rc == 0, "entropyd exited with status %s%s after SIGTERM" % (
        rc, " (killed)" if killed else "")


def is_served(c, timeout=2.0):
    try:
        c.send(req_pid())
        c.read_pid_reply(timeout)
        return True
    except (PeerClosed, ConnectionResetError, BrokenPipeError, AssertionError):
        return False


# ---------------------------------------------------------------------------------------
# 1. Out of descriptors

NOFILE = 64
ACCEPT_FAILED = r"accept failed"


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("kind", sorted(STREAM_KINDS))
def test_running_out_of_descriptors_logs_once_keeps_serving_and_accepts_again(kind, tmp_path):
    spec = listen_spec(kind, tmp_path, ",max-per-peer=0")
    with limited_entropyd(spec, NOFILE) as d:
        steady = open_peer(d, 0, "established client")
        flood = []
        try:
            assert steady.pid() == d.pid
            mark = d.mark()
            # Open connections until entropyd's accept() fails (EMFILE).
            for i in range(2 * NOFILE):
                flood.append(open_peer(d, i, "flood %d" % i))
                if d.count_log(ACCEPT_FAILED, mark) > 0:
                    break
            d.wait_log(ACCEPT_FAILED, 5, start=mark)
            held = len(flood)
            # More that wait in the backlog: every retry (once a second) fails again.
            for i in range(10):
                flood.append(open_peer(d, held + i, "flood, beyond the limit %d" % i))
            assert not is_served(flood[-1], 1.0), "a connection past the limit was served"
            # The established client is served all along, through several retries.
            t0 = time.monotonic()
            served = 0
            while time.monotonic() - t0 < 4.5:
                served += len(steady.block(255, timeout=5))
                time.sleep(0.1)
            lines = [ln for ln in d.log_lines(mark) if "accept failed" in ln]
            print("%s: %d connections opened (the last %d after the first failure was logged), "
                  "%d accept-failure line(s) "
                  "in 4.5 s of failing retries; established client got %d bytes meanwhile"
                  % (kind, len(flood), len(flood) - held, len(lines), served))
            for ln in lines:
                print("  " + ln)
            assert len(lines) == 1, ("%d log lines for one episode of failing accept(): "
                                     "%s" % (len(lines), lines))
            assert "Too many open files" in lines[0]
            # Close the flood: connections are accepted again within a few seconds.
            for c in flood:
                c.close()
            flood = []
            t0 = time.monotonic()
            while True:
                with open_peer(d, 250, "after the flood") as c:
                    if is_served(c):
                        break
                assert time.monotonic() - t0 < 5, "no connection served 5 s after the flood"
                time.sleep(0.2)
            print("%s: served again %.2f s after the flood was closed"
                  % (kind, time.monotonic() - t0))
            d.wait_log(r"accepting connections again after \d+ pause\(s\)", 5, start=mark)
            assert d.count_log(ACCEPT_FAILED, mark) == 1
            steady.assert_in_sync(d.pid)
        finally:
            steady.close()
            for c in flood:
                c.close()


# ---------------------------------------------------------------------------------------
# 2. Pipelining without reading

FLOOD_SECONDS = 8.0
CHUNK = 64 * 1024
# Fixed costs, not per request: the pool (1 MiB, allocated and locked at start) is already
# in the baseline; a client costs its struct (1 KiB input buffer, 64 queue slots, a
# 260-byte reply buffer), and a run of 02 requests merges into one counter. Six hostile
# clients and a bystander are a few tens of KiB; 4 MiB leaves room for malloc arenas and
# libevent's tables while still failing if requests or replies were kept per request
# (8 s of requests is hundreds of MB).
RSS_GROWTH_BOUND_KIB = 4 * 1024


def _sample_rss(pid, samples):
    samples.append(rss_kib(pid))


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("kind", sorted(STREAM_KINDS))
def test_clients_pipelining_without_reading_are_pushed_back_and_memory_stays_bounded(
        entropyd, kind, tmp_path):
    d = entropyd(listen=(listen_spec(kind, tmp_path),))
    patterns = {
        # 02 requests only: they merge into one owed count, and entropyd keeps reading them
        # (QEMU writes its requests blocking): bounded memory, no push-back required.
        "02 ff": req_block(255),
        # 00 and 04 each take a queue slot: a full queue stops the reading, TCP pushes back.
        "02 ff 00": req_block(255) + req_level(),
        "02 ff 04": req_block(255) + req_pid(),
    }
    with open_peer(d, 0, "bystander") as bystander:
        assert bystander.pid() == d.pid
        for _ in range(4):
            bystander.block(255)
        rss_before = rss_kib(d.pid)
        hogs = []
        sel = selectors.DefaultSelector()
        try:
            for name, pat in patterns.items():
                for j in range(2):
                    c = open_peer(d, 10 + len(hogs), "%s hog %d" % (name, j))
                    c.sock.setblocking(False)
                    hogs.append({"c": c, "kind": name, "buf": pat * (CHUNK // len(pat)),
                                 "sent": 0, "last_sent": time.monotonic()})
                    sel.register(c.sock, selectors.EVENT_WRITE, hogs[-1])
            rss_during = []
            bystander_bytes = 0
            t0 = time.monotonic()
            next_check = t0
            while time.monotonic() - t0 < FLOOD_SECONDS:
                for key, _ev in sel.select(0.05):
                    h = key.data
                    try:
                        n = h["c"].sock.send(h["buf"])
                    except BlockingIOError:
                        continue
                    h["sent"] += n
                    h["last_sent"] = time.monotonic()
                if time.monotonic() >= next_check:
                    next_check += 0.5
                    _sample_rss(d.pid, rss_during)
                    t1 = time.monotonic()
                    bystander_bytes += len(bystander.block(1024, timeout=5))
                    assert time.monotonic() - t1 < 2.0, "the bystander waited %.1f s" % (
                        time.monotonic() - t1)
            end = time.monotonic()
            bystander.assert_in_sync(d.pid)
            for h in hogs:
                if h["kind"] != "02 ff":
                    # Pushed back: the socket filled and stayed full.
                    assert end - h["last_sent"] > 2.0, (
                        "%s: the daemon still took its requests %.1f s before the end "
                        "(%d bytes in all)" % (h["c"].label, end - h["last_sent"], h["sent"]))
                    assert h["sent"] < 64 << 20, "%s: %d bytes of requests taken" % (
                        h["c"].label, h["sent"])
                else:
                    # Read all along: kept reading the 02 requests (DESIGN.md, Clients).
                    assert h["sent"] > 8 << 20, "%s: only %d bytes of requests taken" % (
                        h["c"].label, h["sent"])
            _sample_rss(d.pid, rss_during)
        finally:
            sel.close()
            for h in hogs:
                h["c"].close()
        # Still served after the hogs left; memory back near where it was.
        time.sleep(0.5)
        bystander.block(255)
        bystander.assert_in_sync(d.pid)
        rss_after = rss_kib(d.pid)
    print("%s: RSS before %d KiB, during max %d KiB (samples %s), after %d KiB"
          % (kind, rss_before, max(rss_during), rss_during, rss_after))
    for h in hogs:
        print("  %s: %d bytes of requests taken in %.0f s, last %.1f s before the end"
              % (h["c"].label, h["sent"], FLOOD_SECONDS, end - h["last_sent"]))
    print("  bystander: %d bytes served during the flood" % bystander_bytes)
    growth = max(rss_during + [rss_after]) - rss_before
    assert growth < RSS_GROWTH_BOUND_KIB, (
        "daemon RSS grew by %d KiB (bound %d KiB) with six clients pipelining without "
        "reading" % (growth, RSS_GROWTH_BOUND_KIB))


# ---------------------------------------------------------------------------------------
# 3. A command trickled in


@pytest.mark.time_limit(45)
@pytest.mark.parametrize("kind", sorted(STREAM_KINDS))
def test_command_trickled_a_byte_every_2_s_is_closed_at_10_s_but_slow_whole_commands_are_not(
        entropyd, kind, tmp_path):
    d = entropyd(listen=(listen_spec(kind, tmp_path),))
    mark = d.mark()
    trickle = req_write(bytes(range(32)))  # 36 bytes: 72 s at this pace
    with open_peer(d, 1, "trickler") as trickler, \
            open_peer(d, 2, "whole commands, slowly") as whole, \
            open_peer(d, 3, "one byte every 2 s, each command done in 2 s") as split:
        for c in (trickler, whole, split):
            assert c.pid() == d.pid  # speaks first: no primer bytes in the way
        t0 = time.monotonic()
        closed_at = None
        for tick in range(15):  # t = 0, 1, ..., 14 s
            time.sleep(max(0.0, t0 + tick - time.monotonic()))
            if tick % 2 == 0 and tick <= 8:  # a byte every 2 s, the command never complete
                trickler.send(trickle[tick // 2:tick // 2 + 1])
            if tick % 2 == 0:
                whole.send(req_block(16))
                assert len(whole.recv_exact(16, 2)) == 16
            if tick % 4 == 0:
                split.send(b"\x02")
            elif tick % 4 == 2:
                split.send(b"\x10")
                assert len(split.recv_exact(16, 2)) == 16
            if closed_at is None:
                try:
                    trickler.expect_silence(0.01)
                except AssertionError:
                    closed_at = time.monotonic() - t0
        assert closed_at is not None, "the trickler is still connected after 14 s"
        print("%s: the trickler was closed %.1f s after its first byte" % (kind, closed_at))
        assert PARTIAL_TIMEOUT - 1.0 <= closed_at <= PARTIAL_TIMEOUT + 2.5
        assert trickler.expect_closed(0.5) == b""
        d.wait_log(r"sent \d+ byte\(s\) of a command and not the rest in 10 s; "
                   r"connection closed", 2, start=mark)
        assert d.count_log(r"not the rest in 10 s", mark) == 1
        whole.assert_in_sync(d.pid)
        split.assert_in_sync(d.pid)
