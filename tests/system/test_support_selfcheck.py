"""Checks of the test helpers themselves, against Python stand-ins (no daemon needed):
a helper that cannot fail would hide a broken daemon."""

import random
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from alignment import (AlignmentError, FileIndex, align_streams, align_streams_multi,
                       bytes_from, coverage_summary)
from egdsupport import EgdClient, PeerClosed, block_requests, random_file_bytes, read_many
from entropyd_proc import match_endpoints, parse_endpoint_spec, parse_listen_line

# -- the alignment checker --------------------------------------------------------------


def simulate_pool(f, nclients, want, rng, start=1024, tiny=0.005, skip=()):
    """A correct raw pool: bytes handed out in file order from `start`, each chunk to one
    client, some chunks tiny, ranges in `skip` never handed out."""
    pos = start
    streams = {i: bytearray() for i in range(nclients)}
    left = {i: want for i in range(nclients)}
    while any(left.values()):
        c = rng.choice([i for i in left if left[i]])
        k = rng.randint(1, 16) if rng.random() < tiny else rng.randint(200, 20000)
        k = min(k, left[c])
        for a, b in skip:
            if pos < b and pos + k > a:
                if pos >= a:
                    pos = b
                else:
                    k = a - pos
        streams[c] += f[pos:pos + k]
        pos += k
        left[c] -= k
    return {"client %d" % i: bytes(s) for i, s in streams.items()}


@pytest.fixture(scope="module")
def big_file():
    rng = random.Random(2024)
    f = rng.randbytes(4 << 20)
    return f, FileIndex(f)


@pytest.mark.parametrize("seed", range(6))
def test_checker_accepts_correct_interleaved_delivery(big_file, seed):
    f, idx = big_file
    rng = random.Random(seed)
    streams = simulate_pool(f, 8, 450_000, rng)
    placed = align_streams(f, streams, min_offset=1024, index=idx)
    lo, hi, total = coverage_summary(placed)
    assert total == 8 * 450_000 and lo == 1024 and hi == 1024 + total


def test_checker_accepts_boundary_coincidences():
    # Client a's next byte after its first piece equals the file byte right after that
    # piece, which went to b: greedy matching runs one byte too far.
    f = bytearray(random_file_bytes(100_000))
    f[3000] = f[6000]
    f = bytes(f)
    streams = {"a": f[1024:3000] + f[6000:9000], "b": f[3000:6000] + f[9000:12000]}
    placed = align_streams(f, streams, min_offset=1024)
    assert sorted(o for _p, o, _m in placed["a"]) == [1024, 6000]


def test_checker_accepts_tiny_pieces():
    # Fixed bytes: in fresh random bytes a 2..5-byte piece recurs near its place about one
    # time in 300, and the checker then rightly calls it ambiguous.
    f = random.Random(68).randbytes(100_000)
    streams = {"a": f[1024:3000] + f[3003:3005] + f[3010:5000],
               "b": f[3000:3003] + f[3005:3010] + f[5000:7000]}
    align_streams(f, streams, min_offset=1024)


def test_checker_accepts_a_skipped_window(big_file):
    f, idx = big_file
    streams = simulate_pool(f, 4, 200_000, random.Random(7), skip=[(50_000, 50_512)])
    align_streams(f, streams, min_offset=1024, forbidden=[(50_000, 50_512)], index=idx)


@pytest.mark.parametrize("case,expect", [
    ("one byte twice", "two clients"),
    ("chunk twice", "two clients"),
    ("same client twice", "increasing file offsets"),
    ("startup bytes", "start-up"),
    ("foreign bytes", "cannot be located"),
    ("out of order", "increasing file offsets"),
    ("forbidden window", "must never be served"),
    ("tiny piece twice", "cannot be located unambiguously"),
    ("run of zeros", "cannot be located"),
])
def test_checker_rejects_wrong_delivery(case, expect):
    rng = random.Random(case)
    f = bytearray(rng.randbytes(200_000))
    if case == "run of zeros":
        f[20_000:24_096] = bytes(4096)
    f = bytes(f)
    a = f[1024:10_000] + f[20_000:30_000]
    b = f[10_000:20_000] + f[30_000:40_000]
    forbidden = []
    if case == "one byte twice":
        b = f[9_999:20_000] + f[30_000:40_000]
    elif case == "chunk twice":
        b = f[10_000:20_000] + f[25_000:26_000] + f[30_000:40_000]
    elif case == "same client twice":
        a = f[1024:10_000] + f[5000:5100] + f[20_000:30_000]
    elif case == "startup bytes":
        a = f[1000:10_000] + f[20_000:30_000]
    elif case == "foreign bytes":
        a = f[1024:10_000] + rng.randbytes(64) + f[20_000:30_000]
    elif case == "out of order":
        a = f[20_000:30_000] + f[1024:10_000]
    elif case == "forbidden window":
        forbidden = [(25_000, 25_512)]
    elif case == "tiny piece twice":
        b = f[10_000:20_000] + f[25_000:25_004] + f[30_000:40_000]
    elif case == "run of zeros":
        pass  # a holds the zeros
    with pytest.raises(AlignmentError) as e:
        align_streams(f, {"a": a, "b": b}, min_offset=1024, forbidden=forbidden)
    assert expect in str(e.value), str(e.value)


def test_checker_rejects_one_duplicated_byte_at_every_boundary(big_file):
    # An off-by-one in the pool's accounting: each chunk repeats the previous one's last
    # byte.
    f, idx = big_file
    rng = random.Random(3)
    pos = 1024
    streams = {i: bytearray() for i in range(4)}
    for _ in range(200):
        c = rng.randrange(4)
        k = rng.randint(200, 5000)
        streams[c] += f[pos - 1 if pos > 1024 else pos:pos + k]
        pos += k
    with pytest.raises(AlignmentError) as e:
        align_streams(f, {"client %d" % c: bytes(s) for c, s in streams.items()},
                      min_offset=1024, index=idx)
    msg = str(e.value)
    assert ("two clients" in msg or "unambiguously" in msg
            or "increasing file offsets" in msg), msg


# -- the alignment checker, several files (a relay fed by several upstreams) -------------


def interleave(parts, rng):
    """One stream from several streams: chunks of each, in order, mixed at random."""
    left = [bytearray(x) for x in parts]
    out = bytearray()
    while any(left):
        x = rng.choice([b for b in left if b])
        k = rng.randint(1, 12) if rng.random() < 0.01 else rng.randint(100, 8000)
        out += x[:k]
        del x[:k]
    return bytes(out)


@pytest.fixture(scope="module")
def two_files():
    return {n: random.Random(n).randbytes(300_000) for n in ("A", "B")}


@pytest.mark.parametrize("seed", range(3))
def test_multi_checker_traces_interleaved_files_with_per_file_counts(two_files, seed):
    rng = random.Random(seed)
    per = {n: simulate_pool(f, 3, 60_000, rng, tiny=0.01) for n, f in two_files.items()}
    streams = {c: interleave([per["A"][c], per["B"][c]], rng) for c in per["A"]}
    placed = align_streams_multi(two_files, streams, min_offset=1024)
    for c, s in streams.items():
        assert bytes_from(placed[c]) == {"A": 60_000, "B": 60_000}
        assert b"".join(two_files[n][o:o + m] for _p, n, o, m in placed[c]) == s
        assert [p for p, _n, _o, _m in placed[c]] == sorted({p for p, *_x in placed[c]})
    # A 4-byte stretch of B between two of A, and A's next byte equal to B's next byte.
    a, b = two_files["A"], bytearray(two_files["B"])
    b[5000] = a[3000]
    b = bytes(b)
    s = b[2000:5000] + a[1024:3000] + b[5000:5004] + a[3000:6000] + b[5004:9000]
    pcs = align_streams_multi({"A": a, "B": b}, {"x": s}, min_offset=1024)["x"]
    assert pcs == [(0, "B", 2000, 3000), (3000, "A", 1024, 1976), (4976, "B", 5000, 4),
                   (4980, "A", 3000, 3000), (7980, "B", 5004, 3996)]
    assert bytes_from(pcs, 4976, 4980) == {"B": 4}


def test_multi_checker_places_another_files_first_byte_equal_to_the_next_byte():
    # The relay's pool had room for one byte when B's first response landed: one byte of
    # B between two stretches of A, equal (1 in 256) to A's next byte. Greedy matching
    # gives it to A, and A's next stretch then seemed to repeat it (CI, stop 14).
    a = random.Random("A").randbytes(300_000)
    b = bytearray(random.Random("B").randbytes(300_000))
    b[5000] = a[3000]
    b = bytes(b)
    s = a[1024:3000] + b[5000:5001] + a[3000:9000] + b[5001:9000]
    pcs = align_streams_multi({"A": a, "B": b}, {"x": s}, min_offset=1024)["x"]
    assert pcs == [(0, "A", 1024, 1976), (1976, "B", 5000, 1), (1977, "A", 3000, 6000),
                   (7977, "B", 5001, 3999)]
    # Two bytes at A's stretch's start that equal B's next two: both go to A, so that B
    # resumes right after its stretch.
    a2 = bytearray(a)
    a2[3000:3002] = b[6000:6002]
    a2 = bytes(a2)
    s = b[2000:6000] + a2[3000:5000] + b[6000:9000]
    pcs = align_streams_multi({"A": a2, "B": b}, {"x": s}, min_offset=1024)["x"]
    assert pcs == [(0, "B", 2000, 4000), (4000, "A", 3000, 2000), (6000, "B", 6000, 3000)]
    # The stream's last byte equal to A's next: B's stretch keeps it (a stretch of A that
    # would end where B's does is no reason to cut B's).
    b2 = bytearray(b)
    b2[6999] = a[3000]
    b2 = bytes(b2)
    s = a[1024:3000] + b2[6000:7000]
    pcs = align_streams_multi({"A": a, "B": b2}, {"x": s}, min_offset=1024)["x"]
    assert pcs == [(0, "A", 1024, 1976), (1976, "B", 6000, 1000)]
    # The same byte of A twice in a row is still a byte served twice, whether B's stretch
    # starts right after it or B has not appeared yet (B's bytes as they are).
    b = random.Random("B").randbytes(300_000)
    for s in (a[1024:3001] + a[3000:9000] + b[5001:9000],
              b[2000:5000] + a[1024:3001] + a[3000:9000] + b[5000:9000]):
        with pytest.raises(AlignmentError):
            align_streams_multi({"A": a, "B": b}, {"x": s}, min_offset=1024)


@pytest.mark.parametrize("case", ["two clients", "one client", "one byte, one client"])
def test_multi_checker_rejects_a_file_byte_used_twice(two_files, case):
    a, b = two_files["A"], two_files["B"]
    streams = {"x": a[1024:5000] + b[1024:3000], "y": a[5000:8000] + b[3000:4000]}
    if case == "two clients":
        streams["y"] = a[4999:8000] + b[3000:4000]
    elif case == "one client":
        streams["x"] += a[4000:4500]
    else:
        streams["x"] = a[1024:5000] + b[1024:3000] + a[4999:5000] + b[3000:3100]
        streams["y"] = a[5000:8000] + b[3100:4000]
    with pytest.raises(AlignmentError) as e:
        align_streams_multi(two_files, streams, min_offset=1024)
    msg = str(e.value)
    assert ("two clients" in msg or "unambiguously" in msg
            or "increasing file offsets" in msg), msg


@pytest.mark.parametrize("size", [3, 64, 5000])
def test_multi_checker_rejects_bytes_from_a_third_buffer(two_files, size):
    a, b = two_files["A"], two_files["B"]
    c = random.Random("C").randbytes(size)
    streams = {"x": a[1024:5000] + c + b[1024:3000] + a[5000:6000]}
    with pytest.raises(AlignmentError) as e:
        align_streams_multi(two_files, streams, min_offset=1024)
    assert "cannot be located" in str(e.value) or "none of the files" in str(e.value)


def test_multi_checker_with_one_file_agrees_with_the_single_file_checker(big_file):
    f, idx = big_file
    streams = simulate_pool(f, 4, 150_000, random.Random(11), tiny=0.02)
    single = align_streams(f, streams, min_offset=1024, index=idx)
    multi = align_streams_multi({"F": idx}, streams, min_offset=1024)
    assert multi == {c: [(p, "F", o, m) for p, o, m in pcs] for c, pcs in single.items()}
    streams["client 0"] = streams["client 0"][:-10] + streams["client 1"][:10]
    with pytest.raises(AlignmentError):
        align_streams(f, streams, min_offset=1024, index=idx)


# -- the EGD client helpers -----------------------------------------------------------


class StandIn:
    """A tiny TCP peer run by a test: `handler(conn)` runs in a thread per connection."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            self.handler(conn)

    def close(self):
        self.sock.close()
        self.thread.join(10)


def test_client_assembles_replies_split_into_pieces():
    def handler(conn):
        assert conn.recv(1) == b"\x04"
        for piece in (b"\x05", b"12", b"3", b"45"):
            conn.sendall(piece)
            time.sleep(0.02)
        time.sleep(1)
    s = StandIn(handler)
    try:
        with EgdClient.connect(("127.0.0.1", s.port)) as c:
            assert c.pid() == 12345
    finally:
        s.close()


def test_client_reports_short_replies_within_its_timeout():
    def handler(conn):
        conn.recv(2)
        conn.sendall(b"x" * 10)
        time.sleep(2)
    s = StandIn(handler)
    try:
        with EgdClient.connect(("127.0.0.1", s.port)) as c:
            t0 = time.monotonic()
            with pytest.raises(AssertionError) as e:
                c.block(20, timeout=0.5)
            assert time.monotonic() - t0 < 1.5
            assert "got 10 of 20" in str(e.value)
    finally:
        s.close()


def test_client_detects_surplus_bytes_with_the_pid_sentinel():
    def handler(conn):
        conn.recv(2)
        conn.sendall(b"y" * 9)  # one byte too many for 02 08
        conn.recv(1)
        conn.sendall(b"\x0399")
        time.sleep(1)
    s = StandIn(handler)
    try:
        with EgdClient.connect(("127.0.0.1", s.port)) as c:
            c.block(8)
            with pytest.raises(AssertionError):
                c.assert_in_sync(99)
    finally:
        s.close()


def test_client_sees_close_and_silence():
    def handler(conn):
        conn.recv(1)
        time.sleep(0.3)
    s = StandIn(handler)
    try:
        with EgdClient.connect(("127.0.0.1", s.port)) as c:
            c.send(b"\x09")
            c.expect_silence(0.1)
            assert c.expect_closed(5) == b""
            with pytest.raises(PeerClosed):
                c.recv_exact(1, timeout=1)
    finally:
        s.close()


def test_read_many_flags_a_client_that_gets_too_much():
    a, b = socket.socketpair()
    try:
        b.sendall(b"z" * 11)
        with pytest.raises(AssertionError) as e:
            read_many({a: 10}, timeout=2)
        assert "more than" in str(e.value)
    finally:
        a.close()
        b.close()


def test_block_requests_cover_exactly_the_total():
    for total in (0, 1, 255, 256, 510, 100_000):
        reqs = block_requests(total)
        assert len(reqs) % 2 == 0 and all(reqs[i] == 2 for i in range(0, len(reqs), 2))
        assert sum(reqs[i + 1] for i in range(0, len(reqs), 2)) == total


# -- endpoint bookkeeping -------------------------------------------------------------


def test_listen_lines_are_parsed_and_matched_to_the_arguments():
    lines = ["entropyd: listening on unix:/run/x.sock",
             "entropyd: listening on tcp:127.0.0.1:4001",
             "entropyd: listening on tcp:[::1]:4003 (egd)",
             "entropyd: listening on tcp:127.0.0.1:4002, raw"]
    announced = [parse_listen_line(ln) for ln in lines]
    eps = match_endpoints(["tcp:127.0.0.1:0", "tcp:127.0.0.1:0,proto=raw",
                           "unix:/run/x.sock,mode=0600", "tcp:[::1]:0"], announced)
    assert [repr(e) for e in eps] == ["tcp:127.0.0.1:4001", "tcp:127.0.0.1:4002",
                                      "unix:/run/x.sock", "tcp:[::1]:4003"]
    assert eps[3].family == socket.AF_INET6 and eps[3].address == ("::1", 4003)
    assert parse_listen_line("entropyd: ready") is None
    assert parse_endpoint_spec("tcp:127.0.0.1:8888,primer=0").port == 8888
    with pytest.raises(AssertionError):
        match_endpoints(["tcp:127.0.0.1:5"], announced)


# -- no test binds the default /run/entropyd/control.sock ----------------------------------

STARTS_ENTROPYD = re.compile(r'\[ENTROPYD\b|entropyd_path\(\)\), "-f"|exec "\$0"|'
                             r'\[str\(binary\), "-f"')


def test_every_place_that_starts_entropyd_passes_its_own_control_option():
    """Tests run as root beside others: entropyd started without --control would bind (or
    fight over) the host's /run/entropyd/control.sock."""
    root = Path(__file__).resolve().parents[1]
    places, missing = 0, []
    for f in sorted(list(root.glob("system/*.py")) + list(root.glob("e2e/*.py"))):
        lines = f.read_text().splitlines()
        for i, ln in enumerate(lines):
            if STARTS_ENTROPYD.search(ln) and not ln.lstrip().startswith(("#", "STARTS")):
                places += 1
                if not any('"--control"' in x or "--control none" in x
                           for x in lines[max(0, i - 10):i + 10]):
                    missing.append("%s:%d: %s" % (f.relative_to(root), i + 1, ln.strip()))
    assert places >= 6, "the pattern no longer finds where tests start entropyd"
    assert missing == [], "entropyd started without --control:\n" + "\n".join(missing)
