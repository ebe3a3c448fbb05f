"""Helpers for entropyd's system tests: an EGD client with a timeout on every socket
operation, fed sources and hungry clients. The alignment checker that proves raw-mode
delivery (DESIGN.md invariant 2) is alignment.py.

Standard library only. Nothing here needs the daemon; test_support_selfcheck.py exercises
the helpers against Python stand-ins so that a broken helper cannot hide a broken daemon.
"""

import os
import selectors
import socket
import struct
import threading
import time

DEFAULT_TIMEOUT = 10.0

# EGD command bytes (facts/egd-and-qemu.md, "The protocol").
CMD_LEVEL = 0x00
CMD_NONBLOCK = 0x01
CMD_BLOCK = 0x02
CMD_WRITE = 0x03
CMD_PID = 0x04

# Health-test geometry from the contract: 1024 start-up samples discarded, then 512-byte
# windows released only when they passed.
STARTUP_BYTES = 1024
WINDOW_BYTES = 512


# ---------------------------------------------------------------------------------------
# Request encoding


def req_level():
    return bytes([CMD_LEVEL])


def req_nonblock(nn):
    return bytes([CMD_NONBLOCK, nn])


def req_block(nn):
    return bytes([CMD_BLOCK, nn])


def req_pid():
    return bytes([CMD_PID])


def req_write(data, bits=None):
    if bits is None:
        bits = 8 * len(data)
    return bytes([CMD_WRITE, bits >> 8, bits & 0xFF, len(data)]) + bytes(data)


def block_requests(total, chunk=255):
    """`02 NN` headers asking for exactly `total` bytes, NN <= chunk."""
    out = bytearray()
    while total > 0:
        n = min(chunk, total)
        out += req_block(n)
        total -= n
    return bytes(out)


# ---------------------------------------------------------------------------------------
# Client


class PeerClosed(Exception):
    """The daemon closed (or reset) the connection."""


class EgdClient:
    """One connection to entropyd. Every operation is bounded by a deadline."""

    def __init__(self, sock, label="client"):
        self.sock = sock
        self.label = label
        self.sock.settimeout(DEFAULT_TIMEOUT)

    @classmethod
    def connect(cls, address, family=socket.AF_INET, timeout=DEFAULT_TIMEOUT, label=None):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(address)
        except BaseException:
            s.close()
            raise
        if family in (socket.AF_INET, socket.AF_INET6):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(s, label or "client %r" % (address,))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data, timeout=DEFAULT_TIMEOUT):
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise AssertionError("%s: sending %d bytes did not complete within %.1f s "
                                 "(is the daemon still reading requests?)"
                                 % (self.label, len(data), timeout)) from None

    def recv_exact(self, n, timeout=DEFAULT_TIMEOUT, what=None):
        """Exactly n bytes before the deadline, or an AssertionError that says how many
        arrived. PeerClosed if the daemon closes first."""
        deadline = time.monotonic() + timeout
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: got %d of %d bytes%s within %.1f s"
                                     % (self.label, len(buf), n,
                                        " (%s)" % what if what else "", timeout))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except socket.timeout:
                continue
            except ConnectionResetError:
                raise PeerClosed("%s: connection reset after %d of %d bytes"
                                 % (self.label, len(buf), n)) from None
            if not chunk:
                raise PeerClosed("%s: connection closed after %d of %d bytes%s"
                                 % (self.label, len(buf), n,
                                    " (%s)" % what if what else ""))
            buf += chunk
        return bytes(buf)

    def recv_available(self, duration):
        """Everything that arrives within `duration` seconds (b'' if nothing)."""
        deadline = time.monotonic() + duration
        buf = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(buf)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                return bytes(buf)
            except ConnectionResetError:
                raise PeerClosed("%s: connection reset" % self.label) from None
            if not chunk:
                raise PeerClosed("%s: connection closed after %d more bytes"
                                 % (self.label, len(buf)))
            buf += chunk

    def expect_silence(self, duration, why=""):
        try:
            extra = self.recv_available(duration)
        except PeerClosed as e:
            raise AssertionError("%s: expected silence%s, but %s" % (self.label, why, e))
        assert extra == b"", ("%s: expected no bytes%s, got %d: %s"
                              % (self.label, why, len(extra), extra[:32].hex()))

    def expect_closed(self, timeout=DEFAULT_TIMEOUT):
        """The daemon closes this connection within timeout (bytes before EOF are
        returned)."""
        deadline = time.monotonic() + timeout
        got = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: connection still open after %.1f s (received %d "
                                     "bytes meanwhile)" % (self.label, timeout, len(got)))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return bytes(got)
            if not chunk:
                return bytes(got)
            got += chunk

    # -- EGD commands, each waiting for its complete reply --

    def level(self, timeout=DEFAULT_TIMEOUT):
        self.send(req_level())
        return struct.unpack(">I", self.recv_exact(4, timeout, "reply to 00"))[0]

    def pid(self, timeout=DEFAULT_TIMEOUT):
        self.send(req_pid())
        return self.read_pid_reply(timeout)

    def read_pid_reply(self, timeout=DEFAULT_TIMEOUT):
        ll = self.recv_exact(1, timeout, "LL of the reply to 04")[0]
        if not 0 < ll <= 20:
            raise AssertionError("%s: a reply to 04 should start with the length of a pid "
                                 "(1..20), got 0x%02x: surplus or missing bytes before it?"
                                 % (self.label, ll))
        text = self.recv_exact(ll, timeout, "digits of the reply to 04")
        assert ll > 0 and text.isdigit(), ("reply to 04 is not LL + ASCII digits: %r"
                                           % (bytes([ll]) + text))
        return int(text)

    def nonblock(self, nn, timeout=DEFAULT_TIMEOUT):
        self.send(req_nonblock(nn))
        mm = self.recv_exact(1, timeout, "MM of the reply to 01")[0]
        assert mm <= nn, "01 %d answered with MM = %d > NN" % (nn, mm)
        return self.recv_exact(mm, timeout, "data of the reply to 01")

    def block(self, total, timeout=DEFAULT_TIMEOUT, chunk=255):
        self.send(block_requests(total, chunk))
        return self.recv_exact(total, timeout, "reply to 02 requests for %d bytes" % total)

    def assert_in_sync(self, pid, timeout=DEFAULT_TIMEOUT):
        """Send 04 and check that the very next bytes are the pid reply: proves that no
        surplus bytes were sent before it and that the connection is alive."""
        got = self.pid(timeout)
        assert got == pid, ("%s: after the expected replies the next bytes decode as pid %d, "
                            "not the daemon's pid %d: surplus or missing bytes"
                            % (self.label, got, pid))


def read_many(socks_wanted, timeout):
    """Read from several sockets at once until each has its wanted byte count.

    socks_wanted: {sock: wanted}. Returns {sock: bytes}. Raises AssertionError naming how
    far the short ones got if the deadline passes, PeerClosed on EOF, AssertionError if a
    socket receives more than wanted."""
    bufs = {s: bytearray() for s in socks_wanted}
    sel = selectors.DefaultSelector()
    pending = 0
    for s, w in socks_wanted.items():
        s.setblocking(False)
        if w > 0:
            sel.register(s, selectors.EVENT_READ)
            pending += 1
    deadline = time.monotonic() + timeout
    try:
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                short = [(len(bufs[s]), socks_wanted[s]) for s in socks_wanted
                         if len(bufs[s]) < socks_wanted[s]]
                raise AssertionError(
                    "%d of %d clients still short after %.1f s; (received, wanted) of the "
                    "first of them: %s" % (len(short), len(socks_wanted), timeout, short[:10]))
            for key, _ev in sel.select(min(left, 1.0)):
                s = key.fileobj
                try:
                    chunk = s.recv(1 << 20)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    raise PeerClosed("connection reset after %d of %d bytes"
                                     % (len(bufs[s]), socks_wanted[s])) from None
                if not chunk:
                    raise PeerClosed("connection closed after %d of %d bytes"
                                     % (len(bufs[s]), socks_wanted[s]))
                bufs[s] += chunk
                if len(bufs[s]) > socks_wanted[s]:
                    raise AssertionError("a client received %d bytes, more than the %d it "
                                         "asked for" % (len(bufs[s]), socks_wanted[s]))
                if len(bufs[s]) == socks_wanted[s]:
                    sel.unregister(s)
                    pending -= 1
    finally:
        sel.close()
        for s in socks_wanted:
            s.setblocking(True)
    return {s: bytes(b) for s, b in bufs.items()}


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def random_file_bytes(n):
    """n random bytes that pass the health tests for sure: os.urandom with runs of equal
    bytes cut at 7 (a run of 9 has probability ~2^-64 per position anyway)."""
    data = bytearray(os.urandom(n))
    run = 1
    for i in range(1, n):
        if data[i] == data[i - 1]:
            run += 1
            if run >= 8:
                data[i] ^= 0x55
                run = 1
        else:
            run = 1
    return bytes(data)


def write_all(fd, data):
    """Write all of data to fd (a pipe: blocks while it is full); stops quietly if fd is
    closed meanwhile (the end of a test)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass


def fifo_source(tmp_path, n, start=True):
    """A named pipe that a thread fills with n known bytes (random_file_bytes), for a
    `file:` source. A pipe keeps what one image did not read across a reload (a regular
    file would be read again from its start), and it can be filled only once clients wait
    (start=False: start the returned thread). Returns (spec, data, write end, the feeding
    thread); the caller closes the write end."""
    data = random_file_bytes(n)
    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    wfd = os.open(fifo, os.O_RDWR)  # a writer held open: no end of file
    feeder = threading.Thread(target=write_all, args=(wfd, data), daemon=True)
    if start:
        feeder.start()
    return "file:%s,stall=0" % fifo, data, wfd, feeder


def hungry_draw(address, n, in_flight, warmup, seconds):
    """n TCP clients, each keeping in_flight requests of 255 bytes queued (renewing each as
    it is answered); the bytes each received between warmup and warmup + seconds."""
    sel = selectors.DefaultSelector()
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection(address, timeout=10)
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, i)
            s.send(b"\x02\xff" * in_flight)
        got, pending = [0] * n, [0] * n
        start = time.monotonic()
        t0, t1 = start + warmup, start + warmup + seconds
        while True:
            now = time.monotonic()
            if now >= t1:
                break
            for key, _ in sel.select(timeout=min(0.1, t1 - now)):
                i = key.data
                data = key.fileobj.recv(65536)
                assert data, "client %d: entropyd closed the connection" % i
                if t0 <= time.monotonic() < t1:
                    got[i] += len(data)
                pending[i] += len(data)
                done, pending[i] = divmod(pending[i], 255)
                if done:
                    key.fileobj.send(b"\x02\xff" * done)
        return got
    finally:
        for s in socks:
            sel.unregister(s)
            s.close()


def jain(xs):
    """Jain's fairness index (sum x)^2 / (n * sum x^2): 1 when every x is equal."""
    s = sum(xs)
    return s * s / (len(xs) * sum(x * x for x in xs)) if s else 0.0


def pace(fd, stop, chunk=2048, every=0.01):
    """Write chunk random bytes to fd every `every` s until stop is set (a slow source)."""
    data = os.urandom(chunk * 64)
    off = 0
    nxt = time.monotonic()
    while not stop.is_set():
        os.write(fd, data[off:off + chunk])
        off = (off + chunk) % len(data)
        nxt += every
        time.sleep(max(0.0, nxt - time.monotonic()))


def hungry_draw_from_slow_fifo(entropyd, tmp_path, nclients, in_flight, warmup_s, window_s,
                               extra=()):
    """A daemon fed by a fifo that pace() fills (a slow source), serving a tcp listener with
    primer=0; hungry_draw() against it. Returns (daemon, bytes per client)."""
    fifo = tmp_path / "slow.fifo"
    os.mkfifo(fifo)
    wfd = os.open(fifo, os.O_RDWR)
    stop = threading.Event()
    pacer = threading.Thread(target=pace, args=(wfd, stop), daemon=True)
    try:
        d = entropyd(sources=["file:%s,stall=0" % fifo],
                     listen=["tcp:127.0.0.1:0,primer=0"], extra=list(extra))
        pacer.start()
        return d, hungry_draw(d.ep().address, nclients, in_flight, warmup_s, window_s)
    finally:
        stop.set()
        if pacer.is_alive():
            pacer.join(5)
        os.close(wfd)
