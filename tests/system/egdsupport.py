"""Helpers for entropyd's system tests: an EGD client with a timeout on every socket
operation, and the alignment checker that proves raw-mode delivery (DESIGN.md invariant 2)
from what clients received out of a known file source.

Standard library only. Nothing here needs the daemon; test_support_selfcheck.py exercises
the helpers against Python stand-ins so that a broken helper cannot hide a broken daemon.
"""

import bisect
import os
import selectors
import socket
import struct
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
    """n random bytes that pass the health tests for sure: os.urandom, with any run of 9+
    equal bytes broken (probability ~2^-64 per position anyway)."""
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


# ---------------------------------------------------------------------------------------
# Alignment checker
#
# Given the file F a file source read and the byte stream each client received, prove:
#   - each stream is a concatenation of pieces of F at strictly increasing offsets;
#   - no offset of F reached two clients (or one client twice);
#   - optionally: every offset is >= a minimum (the start-up bytes were discarded) and
#     none lies in forbidden ranges (a window that failed a health test).
#
# Pieces are found greedily: at stream position p, every candidate offset o >= L (L = end
# of this stream's previous piece) that an index of F's 8-byte substrings at offsets that
# are multiples of 8 suggests is extended as far as the bytes match, and the longest
# match (at least 8 bytes) wins. A stretch of stream shorter than that (a tiny piece) is
# placed by searching F between its neighbours and, if several places fit, by excluding
# offsets that other pieces already cover; if it still fits at no place or several, the
# check fails with a message naming the stream position. Bytes at a piece boundary that
# match under both neighbouring pieces' offsets (a coincidence of 1/256 per boundary) are
# assigned to whichever option does not collide with other coverage.

_AMBIGUOUS = -1
MIN_ANCHOR = 8
MAX_GAP = 4096


class AlignmentError(AssertionError):
    pass


class FileIndex:
    def __init__(self, data):
        self.data = data
        idx = {}
        n8 = len(data) - len(data) % 8
        mv = memoryview(data)[:n8]
        for i, (key,) in enumerate(struct.iter_unpack("<Q", mv)):
            if key in idx:
                idx[key] = _AMBIGUOUS
            else:
                idx[key] = i * 8
        self.idx = idx

    def candidates(self, s, p):
        """File offsets o such that s[p+j:p+j+8] == F[o+j:o+j+8] with o+j aligned."""
        out = set()
        get = self.idx.get
        for j in range(8):
            if p + j + 8 > len(s):
                break
            a = get(int.from_bytes(s[p + j:p + j + 8], "little"))
            if a is not None and a != _AMBIGUOUS and a - j >= 0:
                out.add(a - j)
        return out


def _match_len(s, p, f, o):
    """Length of the common prefix of s[p:] and f[o:] (galloping, so the cost is
    proportional to the match, not to the rest of the stream)."""
    limit = min(len(s) - p, len(f) - o)
    if limit <= 0:
        return 0
    sv, fv = memoryview(s), memoryview(f)
    lo, step = 0, 64
    while True:
        hi = min(limit, lo + step)
        if bytes(sv[p + lo:p + hi]) == bytes(fv[o + lo:o + hi]):
            lo = hi
            if lo == limit:
                return limit
            step *= 2
        else:
            break
    # s[p:p+lo] matches; the mismatch is within (lo, hi].
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if s[p + lo:p + mid] == f[o + lo:o + mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _back_match_len(s, p, f, o, limit):
    """How many bytes before s[p] match the bytes before f[o] (at most limit)."""
    k = 0
    while k < limit and p - k - 1 >= 0 and o - k - 1 >= 0 and s[p - k - 1] == f[o - k - 1]:
        k += 1
    return k


def _best_anchor(index, s, p, floor):
    """(offset, length) of the longest match >= MIN_ANCHOR starting at s[p] with offset
    >= floor, or None. Also returns the best match below floor (for error messages)."""
    f = index.data
    best = None
    below = None
    for o in index.candidates(s, p):
        m = _match_len(s, p, f, o)
        if m < MIN_ANCHOR and m != len(s) - p:
            continue
        if o >= floor:
            if best is None or m > best[1]:
                best = (o, m)
        elif below is None or m > below[1]:
            below = (o, m)
    return best, below


def _describe(label, p):
    return "%s, stream offset %d" % (label, p)


def _stream_pieces(index, s, label):
    """Greedy segmentation of one stream. Returns (pieces, gaps, zones):
    pieces: [(stream_pos, file_off, length)] anchored (>= 8 bytes or a full tail);
    gaps:   [(stream_pos, bytes, lo, hi, is_tail)] unplaced stretches, to be placed at a
            file offset in [lo, hi] (start positions);
    zones:  [(stream_pos, off_a, off_b)] single bytes that match under two pieces."""
    f = index.data
    pieces, gaps = [], []
    p, floor = 0, 0
    while p < len(s):
        best, below = _best_anchor(index, s, p, floor)
        if best is not None:
            o, m = best
            pieces.append((p, o, m))
            p, floor = p + m, o + m
            continue
        if below is not None:
            o, m = below
            raise AlignmentError(
                "%s: %d bytes found at file offset %d, before the end (%d) of this client's "
                "previous piece: a client's bytes must come from increasing file offsets"
                % (_describe(label, p), m, o, floor))
        # No anchor here: find the next one and leave the stretch in between as a gap.
        q = p + 1
        nxt = None
        while q < len(s) and q - p <= MAX_GAP:
            nb, _ = _best_anchor(index, s, q, floor)
            if nb is not None:
                nxt = nb
                break
            q += 1
        if nxt is None and q < len(s):
            raise AlignmentError(
                "%s: %d bytes (%s...) cannot be located in the file at or after offset %d: "
                "bytes that the file source never produced, or bytes that occur at several "
                "places in the file" % (_describe(label, p), min(MAX_GAP, len(s) - p),
                                        s[p:p + 16].hex(), floor))
        stretch = s[p:q]
        if nxt is None:
            gaps.append((p, stretch, floor, len(f) - len(stretch), True))
            p = q
        else:
            o2, m2 = nxt
            gaps.append((p, stretch, floor, o2 - len(stretch), False))
            pieces.append((q, o2, m2))
            p, floor = q + m2, o2 + m2
    # Ambiguous boundary bytes: the last bytes of a piece that would also match as the
    # first bytes of the next piece.
    zones = []
    for (pa, oa, ma), (pb, ob, mb) in zip(pieces, pieces[1:]):
        if pa + ma != pb:
            continue
        k = _back_match_len(s, pb, f, ob, ma - 1)
        for i in range(1, k + 1):
            zones.append((pb - i, oa + (pb - i - pa), ob - i))
    return pieces, gaps, zones


class Coverage:
    """Sorted, non-overlapping intervals of file offsets, each tagged with its owner."""

    def __init__(self):
        self.starts = []
        self.items = []  # (start, end, owner)

    def conflict(self, start, end):
        i = bisect.bisect_right(self.starts, start) - 1
        for j in (i, i + 1):
            if 0 <= j < len(self.items):
                a, b, owner = self.items[j]
                if a < end and start < b:
                    return self.items[j]
        return None

    def add(self, start, end, owner):
        c = self.conflict(start, end)
        if c is not None:
            return c
        i = bisect.bisect_right(self.starts, start)
        self.starts.insert(i, start)
        self.items.insert(i, (start, end, owner))
        return None


def align_streams(file_data, streams, min_offset=0, forbidden=(), index=None):
    """Check raw-mode delivery. streams: {label: bytes}. forbidden: [(start, end)] file
    ranges no client may receive. Returns {label: [(stream_pos, file_off, length)]} with
    every byte placed. Raises AlignmentError with a message that names the client and
    stream offset of the first problem."""
    if index is None:
        index = FileIndex(file_data)
    f = file_data
    per = {}
    for label, s in streams.items():
        per[label] = _stream_pieces(index, s, label)

    # Definite coverage: anchored pieces minus their ambiguous boundary bytes.
    intervals = []
    for label, (pieces, gaps, zones) in per.items():
        zone_pos = sorted(z[0] for z in zones)
        for p, o, m in pieces:
            start = p
            i = bisect.bisect_left(zone_pos, p)
            while i < len(zone_pos) and zone_pos[i] < p + m:
                z = zone_pos[i]
                if z > start:
                    intervals.append((o + start - p, o + z - p, label, start))
                start = z + 1
                i += 1
            if p + m > start:
                intervals.append((o + start - p, o + m, label, start))
    intervals.sort()
    cov = Coverage()
    prev = None
    for a, b, label, p in intervals:
        if prev is not None and a < prev[1]:
            raise AlignmentError(
                "file offsets %d..%d reached two clients (or one client twice): %s "
                "(stream offset %d) and %s (stream offset %d)"
                % (a, min(b, prev[1]) - 1, prev[2], prev[3], label, p))
        cov.starts.append(a)
        cov.items.append((a, b, label))
        prev = (a, b, label, p)
    gmax = max((b for a, b, _l, _p in intervals), default=0)

    placed = {label: list(pieces) for label, (pieces, _g, _z) in per.items()}
    # Boundary bytes: either neighbour's offset, whichever is free.
    for label, (_pieces, _gaps, zones) in per.items():
        for p, oa, ob in zones:
            for o in (ob, oa):
                if cov.add(o, o + 1, label) is None:
                    placed[label].append((p, o, 1))
                    break
            else:
                raise AlignmentError(
                    "%s: this byte matches file offsets %d and %d, and both reached "
                    "another client" % (_describe(label, p), oa, ob))
    # Gaps (tiny pieces): every place in range that fits and is not covered yet.
    for label, (_pieces, gaps, _zones) in per.items():
        for p, t, lo, hi, is_tail in gaps:
            if is_tail:
                hi = min(hi, gmax)
            fits = []
            o = f.find(t, lo, hi + len(t)) if hi >= lo else -1
            while o != -1 and len(fits) < 64:
                if cov.conflict(o, o + len(t)) is None:
                    fits.append(o)
                o = f.find(t, o + 1, hi + len(t))
            if len(fits) != 1:
                raise AlignmentError(
                    "%s: a piece of %d bytes (%s) cannot be located unambiguously: it fits "
                    "%s free place(s) in file offsets %d..%d%s"
                    % (_describe(label, p), len(t), t[:16].hex(),
                       len(fits) if len(fits) < 64 else "64 or more", lo, hi + len(t),
                       " " + str(fits[:8]) if fits else ""))
            cov.add(fits[0], fits[0] + len(t), label)
            placed[label].append((p, fits[0], len(t)))

    for label, pcs in placed.items():
        pcs.sort()
        pos = 0
        last_end = 0
        for p, o, m in pcs:
            assert p == pos, "internal: %s pieces do not tile the stream at %d" % (label, pos)
            pos += m
            if o < last_end and m > 0:
                raise AlignmentError("%s: bytes from file offset %d come after bytes up to "
                                     "offset %d" % (_describe(label, p), o, last_end))
            last_end = max(last_end, o + m)
            if o < min_offset:
                raise AlignmentError(
                    "%s: received file offsets %d..%d, below %d (bytes the start-up test "
                    "should have discarded)" % (_describe(label, p), o,
                                                min(o + m, min_offset) - 1, min_offset))
            for fa, fb in forbidden:
                if o < fb and fa < o + m:
                    raise AlignmentError(
                        "%s: received file offsets %d..%d, inside the range %d..%d that "
                        "must never be served" % (_describe(label, p), max(o, fa),
                                                  min(o + m, fb) - 1, fa, fb - 1))
        assert pos == len(streams[label])
    return placed


def coverage_summary(placed):
    """(lowest offset, highest offset + 1, bytes placed) over all clients."""
    lo, hi, total = None, 0, 0
    for pcs in placed.values():
        for _p, o, m in pcs:
            lo = o if lo is None else min(lo, o)
            hi = max(hi, o + m)
            total += m
    return lo, hi, total
