"""The `qng` source (a ComScire QNG) against qngsim, the device simulator, on the real
daemon: clients get only bytes of the simulator's known data stream, never the first 256
bytes after a start (a stream of their own) nor bytes produced while the device reported
bad statistics (another stream of their own, which passes the health tests: only the
driver can hold it back); after a stall, an unplug, bad statistics or a garbage reply the
source recovers by itself; two simulated devices feed together.

The simulator is $QNGSIM (default build/tests/qngsim/qngsim); it serves one device on a unix
socket, takes faults on a control socket, and prints its data stream for a seed
(`--dump-stream N`) so that what a client received can be located in it. Every process
is stopped by PID with a timeout; only unix sockets and loopback TCP are used."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from alignment import align_streams, coverage_summary
from entropyd_proc import REPO, run_entropyd

QNGSIM = os.environ.get("QNGSIM", str(REPO / "build" / "tests" / "qngsim" / "qngsim"))
SIM_READY_TIMEOUT = 10.0
SIM_STOP_TIMEOUT = 5.0
HEAD = 256
# A short streaming timeout and small blocks keep the tests quick; the protocol is the same.
FAST = "timeout=2000;check=32768"
POOL = ["--pool-size", "65536"]


class Sim:
    """One qngsim process: a simulated QNG on a unix socket (or a pty), a control socket."""

    def __init__(self, workdir, name, seed, pty=False, extra=()):
        self.seed = seed
        self.path = os.path.join(workdir, name + (".pty" if pty else ".sock"))
        self.ctl = os.path.join(workdir, name + ".ctl")
        self.lines = []
        self.cond = threading.Condition()
        args = [QNGSIM, "--pty" if pty else "--listen", self.path, "--control", self.ctl,
                "--seed", str(seed), "--bad-fill", "random", "--serial",
                "QWR4SIM%05d" % seed] + list(extra)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self._wait_line(r"qngsim: ready", SIM_READY_TIMEOUT)

    def _read(self):
        for raw in iter(self.proc.stderr.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()

    def _wait_line(self, pattern, timeout):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(rx.search(ln) for ln in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError("qngsim: no line matching %r within %.0f s (%s); "
                                         "its log:\n%s" % (pattern, timeout,
                                                           self.proc.poll(),
                                                           "\n".join(self.lines)))
                self.cond.wait(min(left, 0.2))

    def control(self, line, timeout=5.0):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.ctl)
            s.sendall(line.encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        reply = reply.decode().strip()
        assert reply.startswith("ok"), "qngsim refused %r: %s" % (line, reply)
        return reply

    def stats(self):
        return {k: int(v) for k, v in (f.split("=") for f in self.control("stats").split()[1:])}

    def checks(self):
        """Status replies: (total count, [(data offset, status word)] of the latest)."""
        fields = self.control("checks").split()[1:]
        out = []
        for f in fields[1:]:
            off, word = f.split(":")
            out.append((int(off), int(word, 16)))
        return int(fields[0]), out

    def stream(self, n, which="data"):
        r = subprocess.run([QNGSIM, "--dump-stream", str(n), "--seed", str(self.seed),
                            "--stream", which], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60, check=True)
        assert len(r.stdout) == n
        return r.stdout

    def log(self):
        with self.cond:
            return "\n".join(self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(SIM_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(SIM_STOP_TIMEOUT)
        self.reader.join(5)
        return self.proc.returncode


@pytest.fixture
def qngsim(request):
    """Factory: qngsim(name, seed, pty=False, extra=()) -> a ready Sim. Request it before
    `entropyd` so that the daemon is stopped first."""
    if not (os.path.isfile(QNGSIM) and os.access(QNGSIM, os.X_OK)):
        pytest.fail("qngsim not found at %s (build it, or set QNGSIM)" % QNGSIM,
                    pytrace=False)
    workdir = tempfile.mkdtemp(prefix="qng", dir="/tmp")  # short: unix socket paths
    sims = []

    def start(name, seed, pty=False, extra=()):
        s = Sim(workdir, name, seed, pty, extra)
        sims.append(s)
        return s

    yield start
    for s in sims:
        s.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for s in sims:
            print("--- qngsim log (%s) ---\n%s" % (s.path, s.log()))
    shutil.rmtree(workdir, ignore_errors=True)


def spec(sim, settings=FAST):
    return "qng:%s=%s;%s" % ("tty" if sim.path.endswith(".pty") else "sock", sim.path,
                             settings)


def read_while(client, keep_going, timeout, chunk=16384):
    """Read chunks while keep_going() is true; everything received."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    while keep_going():
        assert time.monotonic() < deadline, (
            "condition not reached within %.0f s (received %d bytes meanwhile)"
            % (timeout, len(got)))
        got += client.block(chunk, timeout=30)
    return got


def lines_in_order(d, start, patterns):
    """True once log lines matching patterns have appeared after `start`, in this order."""
    i = 0
    for ln in d.log_lines(start):
        if re.search(patterns[i], ln):
            i += 1
            if i == len(patterns):
                return True
    return False


def assert_only_checked_data(sim, received, expect_bad_range=False):
    """Every received byte is from the simulator's data stream (raw order, each at most
    once), none from a block whose status check reported bad statistics, none from the
    head or bad streams. Returns the forbidden ranges."""
    received = bytes(received)
    st = sim.stats()
    data = sim.stream(st["data"])
    total, checks = sim.checks()
    forbidden = []
    prev = 0 if total == len(checks) else None
    for off, word in checks:
        if word & 0x4 and prev is not None:
            forbidden.append((prev, off))
        prev = off
    placed = align_streams(data, {"client": received}, forbidden=forbidden)
    head = sim.stream(HEAD, "head")
    for i in range(0, HEAD - 32 + 1, 8):
        assert head[i:i + 32] not in received, (
            "a client received bytes %d..%d of the 256 that follow a start command" %
            (i, i + 31))
    if st["bad"]:
        bad = sim.stream(st["bad"], "bad")
        for i in range(0, len(bad) - 32 + 1, 16):
            assert bad[i:i + 32] not in received, (
                "a client received bytes the device produced with bad statistics "
                "(bad-stream offset %d)" % i)
    if expect_bad_range:
        assert forbidden, "no status check reported bad statistics: the test proved nothing"
        lo, hi, _total = coverage_summary(placed)
        assert lo < forbidden[0][0] and hi > forbidden[-1][1], (
            "the client's bytes do not surround the withheld block(s) %s (received data "
            "offsets %d..%d)" % (forbidden, lo, hi))
    return forbidden


def test_qng_clients_get_only_status_checked_bytes_of_the_device_stream(qngsim, entropyd):
    sim = qngsim("a", 11)
    d = entropyd(sources=[spec(sim)], extra=POOL, verbose=False)
    d.wait_log(r"qng sock .*: streaming \(delimiter [0-9a-f]{12}")
    with d.connect() as c:
        got = c.block(400_000, timeout=60)
        c.assert_in_sync(d.pid)
    st = sim.stats()
    assert st["statuses"] >= 400_000 // 32768, st
    assert st["head"] >= HEAD * st["statuses"], st
    assert_only_checked_data(sim, got)


# (control command, what the daemon's log says when the driver notices it)
FAULTS = [
    ("bad 20000", r"bad statistics"),
    ("badflag", r"bad statistics"),
    ("stall 4000", r"stalled: no data for 2000 ms"),
    ("unplug", r"went away|end of file|reset by peer"),
    ("status-long 1", r"garbage after the status word"),
    ("garbage-delim 1", r"delimiter"),
]


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("command,noticed", FAULTS, ids=[f[0].split()[0] for f in FAULTS])
def test_qng_fault_is_noticed_and_the_source_recovers_by_itself(qngsim, entropyd, command,
                                                                noticed):
    sim = qngsim("a", 21)
    d = entropyd(sources=[spec(sim)], extra=POOL, verbose=False)
    with d.connect() as c:
        got = bytearray(c.block(100_000, timeout=30))
        mark = d.mark()
        sim.control(command)
        # Clients keep asking; the source fails, is closed, re-opened, re-tested.
        got += read_while(c, lambda: not lines_in_order(
            d, mark, [r"source qng:.*" + noticed + r".*closing it",
                      r"source qng:.*re-opened",
                      r"source qng:.*start-up test passed"]), timeout=60)
        got += c.block(100_000, timeout=30)
        c.assert_in_sync(d.pid)
    st = sim.stats()
    assert st["connections"] >= 2, "the driver never re-opened the device: %s" % st
    if command.startswith("bad"):
        assert st["bad_statuses"] >= 1, st
    assert_only_checked_data(sim, got, expect_bad_range=command.startswith("bad"))


def test_qng_over_a_pty_serves_the_stream_and_survives_a_replug(qngsim, entropyd):
    sim = qngsim("p", 31, pty=True)
    d = entropyd(sources=[spec(sim)], extra=POOL, verbose=False)
    with d.connect() as c:
        got = bytearray(c.block(100_000, timeout=30))
        mark = d.mark()
        sim.control("unplug")  # the pty disappears; a new one appears under the same link
        got += read_while(c, lambda: not lines_in_order(
            d, mark, [r"closing it", r"re-opened", r"start-up test passed"]), timeout=60)
        got += c.block(100_000, timeout=30)
    assert_only_checked_data(sim, got)


def test_qng_two_simulated_devices_feed_together(qngsim, entropyd):
    a = qngsim("a", 41)
    b = qngsim("b", 42)
    d = entropyd(sources=[spec(a) + ",prio=0", spec(b) + ",prio=0"], extra=POOL,
                 verbose=False)
    with d.connect() as c:
        got = c.block(600_000, timeout=60)
    da = a.stream(a.stats()["data"])
    db = b.stream(b.stats()["data"])
    n = len(got) // 64
    in_a = in_b = 0
    for i in range(n):
        piece = got[64 * i:64 * i + 64]
        fa, fb = piece in da, piece in db
        assert not (fa and fb)
        in_a += fa
        in_b += fb
    # Chunks found in neither straddle a boundary between the two sources' pieces.
    assert in_a > n // 20 and in_b > n // 20, (
        "not both devices were used: %d of %d 64-byte chunks from A, %d from B"
        % (in_a, n, in_b))
    assert in_a + in_b > n * 3 // 4, (
        "%d of %d chunks are from neither device's data stream" % (n - in_a - in_b, n))


def test_qng_absent_or_unusable_device_is_a_clear_start_up_error(tmp_path):
    cases = [
        ("qng:sock=%s" % (tmp_path / "none.sock"), r"cannot connect to .*none\.sock"),
        ("qng:tty=/dev/null", r"not a tty"),
        ("qng:QWR4NOSUCH01", r"no ComScire QNG with serial QWR4NOSUCH01|USB|libftdi"),
        ("qng:A50285BI", r"not a QNG"),
        ("qng:sock=/x;bogus=1", r"unknown setting 'bogus'"),
    ]
    for source, message in cases:
        r = run_entropyd(["-f", "--source", source, "--listen", "tcp:127.0.0.1:0"])
        err = r.stderr.decode("utf-8", "replace")
        assert r.returncode == 1, "%s: exit status %d\n%s" % (source, r.returncode, err)
        assert re.search(r"source " + re.escape(source) + ": .*(" + message + ")", err), (
            "%s: no clear message matching %r in:\n%s" % (source, message, err))
