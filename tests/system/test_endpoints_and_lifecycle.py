"""Endpoints (tcp, tcp6, unix, raw streams), the primer for reconnecting QEMU guests,
refusing bad arguments, and stopping on signals."""

import os
import re
import signal
import socket
import stat
import subprocess
import time

import pytest

from egdsupport import block_requests, req_block, req_pid
from entropyd_proc import (Daemon, build_args, ipv6_loopback_available, require_binary,
                           run_entropyd)

PRIMER_DELAY = 0.1  # contract: primer sent if the client says nothing for 100 ms
QUIET = 0.4         # comfortably longer than that


# -- raw endpoints --------------------------------------------------------------------


def test_raw_endpoint_streams_bytes_without_requests(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0,proto=raw"])
    with d.connect(label="raw reader") as c:
        got = c.recv_exact(256 << 10, timeout=20)
        assert len(got) == 256 << 10
        # Two raw readers get different bytes.
        with d.connect(label="second raw reader") as c2:
            other = c2.recv_exact(64 << 10, timeout=20)
        assert other not in got


def test_raw_endpoint_serves_the_file_after_its_startup_bytes(entropyd, random_file):
    path, data = random_file(1024 + 16 * 512)
    d = entropyd(sources=["file:%s" % path], listen=["tcp:127.0.0.1:0,proto=raw"])
    with d.connect() as c:
        got = c.recv_exact(16 * 512, timeout=20)
        assert got == data[1024:]
        c.expect_silence(0.5, " once the file is exhausted")


def test_raw_and_egd_endpoints_side_by_side(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0", "tcp:127.0.0.1:0,proto=raw"])
    assert d.ep(0).port != d.ep(1).port
    with d.connect(1, label="raw") as raw, d.connect(0, label="egd") as egd:
        egd.send(req_pid())
        assert egd.read_pid_reply() == d.pid, (
            "the first endpoint does not speak EGD: are `listening on` lines announced in "
            "--listen order?")
        assert len(raw.recv_exact(4096)) == 4096


# -- the primer -----------------------------------------------------------------------


def test_primer_of_128_bytes_is_sent_to_a_silent_client(entropyd):
    d = entropyd()
    with d.connect() as c:
        time.sleep(QUIET)
        got = c.recv_available(0.5)
        assert len(got) == 128, "a client silent for %.1f s got %d unrequested bytes, not 128" % (
            QUIET, len(got))
        # After the primer the connection speaks strict EGD.
        c.send(req_block(10))
        assert len(c.recv_exact(10)) == 10
        c.assert_in_sync(d.pid)


def test_primer_size_is_configurable(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0,primer=64"])
    with d.connect() as c:
        time.sleep(QUIET)
        got = c.recv_available(0.5)
        assert len(got) == 64
        c.assert_in_sync(d.pid)


def test_primer_zero_disables_the_primer(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0,primer=0"])
    with d.connect() as c:
        c.expect_silence(QUIET + 0.5, " with primer=0")
        c.assert_in_sync(d.pid)


def test_no_primer_for_a_client_that_speaks_at_once(entropyd):
    d = entropyd()
    with d.connect() as c:
        c.send(req_pid())
        time.sleep(QUIET)
        assert c.read_pid_reply() == d.pid, "bytes before the reply to 04: a primer was sent"
        c.expect_silence(0.3, " after the reply (a primer?)")
        c.send(req_block(16))
        assert len(c.recv_exact(16)) == 16
        c.assert_in_sync(d.pid)


def test_no_primer_for_a_client_whose_first_request_is_split(entropyd):
    d = entropyd()
    with d.connect() as c:
        c.send(b"\x02")
        time.sleep(QUIET)  # the rest of the header comes late, but the client spoke
        c.send(b"\x08")
        assert len(c.recv_exact(8)) == 8
        c.assert_in_sync(d.pid)


@pytest.mark.time_limit(90)
def test_no_primer_for_peers_whose_request_waits_when_a_starved_daemon_accepts_them():
    """200 peers connect and send 04 while entropyd is stopped (SIGSTOP): each spoke before
    it was even accepted. Then entropyd runs starved (SCHED_IDLE, on one CPU next to a busy
    loop), so 100 ms pass between accepting them and reading them all; epoll reports a few
    dozen readable peers per round. None of them may get primer bytes before its reply."""
    require_binary()
    spec = "tcp:127.0.0.1:0,max-per-peer=0"
    cpu = str(min(os.sched_getaffinity(0)))
    busy = subprocess.Popen(["taskset", "-c", cpu, "sh", "-c", "while :; do :; done"])
    d = Daemon(["taskset", "-c", cpu, "chrt", "--idle", "0"] + build_args(listen=(spec,)))
    socks = []
    ok = False
    try:
        d.wait_ready((spec,), timeout=30)
        os.kill(d.pid, signal.SIGSTOP)
        try:
            for _ in range(200):
                socks.append(socket.create_connection(d.ep().address, timeout=30))
                socks[-1].sendall(req_pid())
        finally:
            os.kill(d.pid, signal.SIGCONT)
        want = bytes([len(str(d.pid))]) + str(d.pid).encode()
        primed = 0
        for s in socks:
            got = b""
            while len(got) < len(want):
                chunk = s.recv(4096)
                assert chunk, "entropyd closed a peer that sent 04"
                got += chunk
            primed += not got.startswith(want)
        print("%d of %d peers got bytes before their pid reply; %d primer log line(s)"
              % (primed, len(socks), d.count_log("primer bytes")))
        assert primed == 0, ("%d of %d peers whose 04 waited when they were accepted got "
                             "primer bytes first" % (primed, len(socks)))
        ok = True
    finally:
        busy.kill()
        busy.wait()
        for s in socks:
            s.close()
        rc, killed = d.stop()
        if not ok:
            print("--- entropyd log ---\n" + d.log())
    assert not killed and rc == 0


def test_primer_on_a_unix_endpoint(entropyd, tmp_path):
    path = str(tmp_path / "egd.sock")
    d = entropyd(listen=["unix:%s" % path])
    with d.connect() as c:
        time.sleep(QUIET)
        assert len(c.recv_available(0.5)) == 128


# -- unix and IPv6 ------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o660])
def test_unix_endpoint_gets_the_requested_mode_and_speaks_egd(entropyd, tmp_path, mode):
    path = str(tmp_path / "egd.sock")
    d = entropyd(listen=["unix:%s,mode=%04o" % (path, mode)])
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode), "%s is not a socket" % path
    assert stat.S_IMODE(st.st_mode) == mode, "socket mode is %04o, not %04o" % (
        stat.S_IMODE(st.st_mode), mode)
    assert d.ep().path == path
    with d.connect() as c:
        assert len(c.block(1000)) == 1000
        c.assert_in_sync(d.pid)


def test_ipv6_loopback_endpoint(entropyd):
    if not ipv6_loopback_available():
        pytest.skip("this machine has no IPv6 loopback (cannot bind ::1)")
    d = entropyd(listen=["tcp:[::1]:0"])
    assert d.ep().family == socket.AF_INET6 and d.ep().host == "::1"
    with d.connect() as c:
        assert len(c.block(1000)) == 1000
        c.assert_in_sync(d.pid)


def test_fixed_port_is_used_as_given(entropyd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = entropyd(listen=["tcp:127.0.0.1:%d" % port])
    assert d.ep().port == port
    with d.connect() as c:
        assert c.pid() == d.pid


# -- bad arguments --------------------------------------------------------------------


def _assert_refused(args, what, offending):
    """entropyd must exit non-zero before serving, with its error on one line (the last)
    naming the offending argument. Other lines, if any, are ordinary log lines (one per
    event, prefixed `entropyd: `), not a usage text."""
    r = run_entropyd(["-f"] + args)
    err = r.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert r.returncode > 0, "%s: exit status %d, not > 0 (stderr: %r)" % (
        what, r.returncode, err)
    assert lines, "%s: nothing on stderr" % what
    assert all(ln.startswith("entropyd: ") for ln in lines), (
        "%s: stderr holds more than log lines (a multi-line error or usage?):\n%s"
        % (what, err))
    assert not any(re.search(r"\bready\b|listening on", ln) for ln in lines), (
        "%s: the daemon set up endpoints before refusing:\n%s" % (what, err))
    assert offending in lines[-1], ("%s: the error line does not name %r:\n%s"
                                    % (what, offending, err))
    return lines[-1]


def test_unknown_source_kind_is_refused():
    _assert_refused(["--source", "bogus:x", "--listen", "tcp:127.0.0.1:0"],
                    "unknown source kind", "bogus")


@pytest.mark.parametrize("endpoint", [
    "tcp:127.0.0.1",            # no port
    "tcp:127.0.0.1:99999",      # port out of range
    "tcp:127.0.0.1:http",       # not a number
    "nonsense",                 # no kind
    "udpx:127.0.0.1:0",         # unknown kind
    "tcp:[::1:0",               # unclosed bracket
    "unix:",                    # empty path
    "tcp:127.0.0.1:0,primer=lots",
    "tcp:127.0.0.1:0,proto=carrier-pigeon",
])
def test_unparsable_endpoint_is_refused(endpoint):
    _assert_refused(["--source", "getrandom", "--listen", endpoint],
                    "endpoint %r" % endpoint, endpoint)


def test_port_in_use_is_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        _assert_refused(["--source", "getrandom", "--listen", "tcp:127.0.0.1:%d" % port],
                        "port in use", str(port))


def test_unreadable_file_source_is_refused(tmp_path):
    path = str(tmp_path / "no-such-device")
    _assert_refused(["--source", "file:%s" % path, "--listen", "tcp:127.0.0.1:0"],
                    "missing file", path)


def test_file_source_that_is_a_directory_is_refused(tmp_path):
    _assert_refused(["--source", "file:%s" % tmp_path, "--listen", "tcp:127.0.0.1:0"],
                    "directory as file source", str(tmp_path))


# Test hook (src_cpu.c): entropyd acts as if the CPU lacked the listed
# instructions, so that the refusal is checked on every CPU, those with RDSEED included.
HIDE_CPU_RNG = "ENTROPYD_TEST_HIDE_CPU_RNG"


def cpu_has_rdseed():
    with open("/proc/cpuinfo") as f:
        return any(line.startswith("flags") and " rdseed" in line for line in f)


def test_rdseed_source_is_refused_on_a_cpu_without_rdseed(monkeypatch):
    monkeypatch.setenv(HIDE_CPU_RNG, "rdseed,darn")
    line = _assert_refused(["--source", "rdseed", "--listen", "tcp:127.0.0.1:0"],
                           "rdseed without RDSEED", "rdseed")
    assert "no RDSEED instruction" in line, line


def test_rdseed_source_serves_exactly_when_the_cpu_has_rdseed(entropyd, monkeypatch):
    # Without the hook, the CPU decides: served if /proc/cpuinfo lists rdseed, else refused.
    monkeypatch.delenv(HIDE_CPU_RNG, raising=False)
    if cpu_has_rdseed():
        d = entropyd(sources=["rdseed"])
        with d.connect(label="client of rdseed") as c:
            assert len(c.block(4096)) == 4096
            c.assert_in_sync(d.pid)
    else:
        line = _assert_refused(["--source", "rdseed", "--listen", "tcp:127.0.0.1:0"],
                               "rdseed without RDSEED", "rdseed")
        assert "no RDSEED instruction" in line, line


def test_second_bad_argument_after_good_ones_is_refused_before_serving():
    # A good endpoint first, then a bad one: nothing may be served in between.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _assert_refused(["--source", "getrandom", "--listen", "tcp:127.0.0.1:%d" % port,
                     "--listen", "tcp:127.0.0.1"], "second endpoint bad", "tcp:127.0.0.1")


# -- signals --------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_daemon_cleanly_with_clients_connected(entropyd, sig):
    d = entropyd(listen=["tcp:127.0.0.1:0", "tcp:127.0.0.1:0,proto=raw"])
    waiting = d.connect(0, label="client with bytes owed")
    waiting.send(block_requests(10 << 20))
    raw = d.connect(1, label="raw client")
    idle = d.connect(0, label="idle client")
    idle.send(req_pid())
    assert idle.read_pid_reply() == d.pid
    try:
        t0 = time.monotonic()
        rc, killed = d.stop(sig, timeout=10)
        assert not killed, "entropyd ignored %s for 10 s" % sig.name
        assert rc == 0, "entropyd exited with status %d after %s" % (rc, sig.name)
        print("stopped in %.3f s" % (time.monotonic() - t0))
        # Every client sees its connection closed (expect_closed fails if it stays
        # open); the idle one, owed nothing, gets no byte before the end.
        for c in (waiting, raw):
            c.expect_closed(5)
        assert idle.expect_closed(5) == b"", "the idle client got bytes it never asked for"
    finally:
        for c in (waiting, raw, idle):
            c.close()


def test_restart_on_the_same_fixed_port_works_at_once(entropyd):
    # A daemon stopped while clients are connected closes first, leaving its side of
    # those connections in TIME_WAIT; a new daemon on the same port must start at once
    # (QEMU guests redial the same address after an upgrade or a restart).
    d = entropyd()
    port = d.ep().port
    clients = [d.connect() for _ in range(3)]
    for c in clients:
        assert c.pid() == d.pid
    rc, killed = d.stop()
    assert rc == 0 and not killed
    for c in clients:
        c.close()
    d2 = entropyd(listen=["tcp:127.0.0.1:%d" % port])
    with d2.connect() as c:
        assert c.pid() == d2.pid
