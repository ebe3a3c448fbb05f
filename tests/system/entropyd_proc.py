"""Running entropyd for the system tests: start it, read its log, find its endpoints,
stop it by PID.

The binary is $ENTROPYD, by default build/entropyd under the repository root.
"""

import os
import tempfile
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from egdsupport import EgdClient

REPO = Path(__file__).resolve().parents[2]
ENTROPYD = os.environ.get("ENTROPYD", str(REPO / "build" / "entropyd"))

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

_LISTEN_RE = re.compile(r"listening on (tcp:(\[[^\]\s]*\]|[^\s:\[\],]+):(\d+)|(unix|vhost-user):([^\s,]+))")
_READY_RE = re.compile(r"\bready\b")


# ---------------------------------------------------------------------------------------
# Endpoints


class Endpoint:
    """A listening endpoint: what was asked (spec) and where it really is."""

    def __init__(self, kind, host=None, port=None, path=None, spec=None):
        self.kind, self.host, self.port, self.path, self.spec = kind, host, port, path, spec

    @property
    def family(self):
        if self.kind in ("unix", "vhost-user"):
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def address(self):
        return self.path if self.kind in ("unix", "vhost-user") else (self.host, self.port)

    def __repr__(self):
        if self.kind in ("unix", "vhost-user"):
            return "%s:%s" % (self.kind, self.path)
        return "tcp:%s:%s" % ("[%s]" % self.host if ":" in self.host else self.host, self.port)


def parse_endpoint_spec(spec):
    """Parse a --listen argument (only as far as the tests need): tcp:HOST:PORT,
    tcp:[V6]:PORT or unix:PATH, each optionally followed by ,options."""
    head = spec.split(",", 1)[0]
    for kind in ("unix", "vhost-user"):
        if head.startswith(kind + ":"):
            return Endpoint(kind, path=head[len(kind) + 1:], spec=spec)
    m = re.fullmatch(r"tcp:(\[([^\]]*)\]|[^:\[\]]+):(\d+)", head)
    if not m:
        raise ValueError("test bug: cannot parse endpoint spec %r" % spec)
    host = m.group(2) if m.group(2) is not None else m.group(1)
    return Endpoint("tcp", host=host, port=int(m.group(3)), spec=spec)


def parse_listen_line(line):
    """The endpoint a `listening on ...` log line names, or None."""
    m = _LISTEN_RE.search(line)
    if not m:
        return None
    if m.group(4) is not None:
        return Endpoint(m.group(4), path=m.group(5))
    host = m.group(2)
    if host.startswith("["):
        host = host[1:-1]
    return Endpoint("tcp", host=host, port=int(m.group(3)))


def match_endpoints(specs, announced):
    """Pair each --listen spec with the announced endpoint: same kind and host (or path),
    same port unless the spec asked for port 0; several port-0 specs on one host are
    paired in the order given (the daemon is expected to announce them in that order)."""
    left = list(announced)
    out = []
    for spec in specs:
        want = parse_endpoint_spec(spec)
        for i, got in enumerate(left):
            if got.kind != want.kind:
                continue
            if want.kind in ("unix", "vhost-user") and got.path != want.path:
                continue
            if want.kind == "tcp" and (got.host != want.host
                                       or (want.port != 0 and got.port != want.port)):
                continue
            got.spec = spec
            out.append(got)
            del left[i]
            break
        else:
            raise AssertionError("no `listening on` line for --listen %s (announced: %s)"
                                 % (spec, announced))
    return out


# ---------------------------------------------------------------------------------------
# The daemon


# ENTROPYD_TEST_THREADS=N runs every daemon a test starts through Daemon with --threads N
# (unless the test gives --threads itself), to run the whole suite with N event-loop threads.
TEST_THREADS = os.environ.get("ENTROPYD_TEST_THREADS")


def with_test_threads(args):
    args = list(args)
    if TEST_THREADS and args and args[0] == ENTROPYD and "--threads" not in args \
            and not any(a.startswith("--threads=") for a in args):
        args[1:1] = ["--threads", TEST_THREADS]
    return args


class Daemon:
    def __init__(self, args, name="entropyd"):
        self.args = with_test_threads(args)
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.endpoints = []
        self.expect_exit = None  # set by tests that stop the daemon themselves
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stderr, ""),
                                          daemon=True),
                         threading.Thread(target=self._read,
                                          args=(self.proc.stdout, "[stdout] "),
                                          daemon=True)]
        for t in self._readers:
            t.start()

    def _read(self, stream, prefix):
        for raw in iter(stream.readline, b""):
            with self.cond:
                self.lines.append(prefix + raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    # -- the log --

    def log(self):
        with self.cond:
            return "\n".join(self.lines)

    def log_lines(self, start=0):
        with self.cond:
            return list(self.lines[start:])

    def mark(self):
        """Index of the next log line (for waiting only on what comes after)."""
        with self.cond:
            return len(self.lines)

    def count_log(self, pattern, start=0):
        rx = re.compile(pattern)
        return sum(1 for ln in self.log_lines(start) if rx.search(ln))

    def wait_log(self, pattern, timeout=10.0, start=0):
        """The first log line at index >= start matching pattern; AssertionError with the
        log if none arrives in time or the daemon exits first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ln in self.lines[start:]:
                    if rx.search(ln):
                        return ln
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self.proc.poll() is not None and not any(t.is_alive()
                                                            for t in self._readers):
                    break
                self.cond.wait(min(left, 0.2))
        raise AssertionError("no log line matching %r within %.1f s (%s)\n--- log ---\n%s"
                             % (pattern, timeout, self.state(), self.log()))

    def state(self):
        rc = self.proc.poll()
        return "running" if rc is None else "exited with status %d" % rc

    # -- start-up and shutdown --

    def wait_ready(self, specs, timeout=READY_TIMEOUT):
        self.wait_log(_READY_RE.pattern, timeout)
        announced = [e for e in (parse_listen_line(ln) for ln in self.log_lines()) if e]
        self.endpoints = match_endpoints(specs, announced)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signal the daemon (by PID) and wait; SIGKILL after timeout. Returns
        (exit status, killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
                self._join()
                return self.proc.returncode, True
        self._join()
        return self.proc.returncode, False

    def _join(self):
        for t in self._readers:
            t.join(5)

    # -- clients --

    @property
    def control(self):
        """The control socket's path (--control), or None."""
        args = self.args
        for i, a in enumerate(args[:-1]):
            if a == "--control":
                return None if args[i + 1] == "none" else args[i + 1]
        return None

    def ep(self, i=0):
        return self.endpoints[i]

    def connect(self, i=0, label=None, timeout=10.0):
        e = self.endpoints[i]
        return EgdClient.connect(e.address, e.family, timeout=timeout,
                                 label=label or "client of %r" % (e,))

    def connect_raw_socket(self, i=0, timeout=10.0):
        e = self.endpoints[i]
        s = socket.socket(e.family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(e.address)
        return s


def build_args(sources=("getrandom",), listen=("tcp:127.0.0.1:0",), connect=(), extra=(),
               verbose=True):
    args = [ENTROPYD, "-f"]
    if verbose:
        args.append("--verbose")
    for s in sources:
        args += ["--source", s]
    for e in listen:
        args += ["--listen", e]
    for e in connect:
        args += ["--connect", e]
    if "--control" not in extra:
        # Never the default /run/entropyd/control.sock: each daemon gets its own.
        args += ["--control", os.path.join(tempfile.mkdtemp(prefix="entropyd-ctl-"),
                                           "control.sock")]
    return args + list(extra)


def require_binary():
    if not (os.path.isfile(ENTROPYD) and os.access(ENTROPYD, os.X_OK)):
        pytest.fail("entropyd binary not found at %s (build it, or set ENTROPYD)" % ENTROPYD,
                    pytrace=False)


def run_entropyd(args, timeout=10.0):
    """Run entropyd to completion (for arguments that must be refused). Returns
    CompletedProcess; fails the test if it does not exit within timeout."""
    require_binary()
    if "--control" not in args:
        args = list(args) + ["--control", "none"]  # never the default /run/entropyd
    try:
        return subprocess.run([ENTROPYD] + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail("entropyd %s did not exit within %.0f s; stderr so far:\n%s"
                    % (" ".join(args), timeout,
                       (e.stderr or b"").decode("utf-8", "replace")), pytrace=False)


def ipv6_loopback_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False
