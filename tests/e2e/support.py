"""Constants and small helpers shared by the end-to-end tests: each turns a
harness error into a pytest failure that carries the reason (never a skip)."""

from __future__ import annotations

import bisect
import contextlib
import os
import signal

import pytest

import guest

# Bytes the daemon discards at start (health start-up test) and never serves.
STARTUP_DISCARD = 1024
SOURCE_SIZE = 6 << 20
MIB = 1 << 20
# Hard limit for one guest run (boot + read + dump); generous: TCG on a shared machine.
GUEST_TIMEOUT = float(os.environ.get("ENTROPYD_GUEST_TIMEOUT", "300"))


def finish(run: guest.GuestRun, timeout: float = GUEST_TIMEOUT) -> guest.GuestResult:
    """Wait for the guest, turning any harness error into a test failure."""
    try:
        return run.finish(timeout)
    except guest.GuestError as e:
        pytest.fail(str(e), pytrace=False)


def wait_console(run: guest.GuestRun, pattern: str, timeout: float):
    try:
        return run.wait_console(pattern, timeout)
    except guest.GuestError as e:
        pytest.fail(str(e), pytrace=False)


class HardTimeLimitExceeded(Exception):
    """A test ran past its hard limit."""


@contextlib.contextmanager
def hard_time_limit(seconds: float):
    """Interrupt the body (SIGALRM) once it has run `seconds`: a bound on top of the
    bounded waits inside, so that no test can hang the run."""
    def expired(signum, frame):
        raise HardTimeLimitExceeded(f"test exceeded its hard limit of {seconds:.0f}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_source(data: bytes, source: bytes, **kw) -> guest.PieceReport:
    """check_pieces, failing the test with the checker's reason."""
    try:
        return guest.check_pieces(data, source, **kw)
    except guest.PieceCheckError as e:
        pytest.fail(f"guest bytes are not pieces of the source file: {e}", pytrace=False)


def file_spans(data: bytes, source: bytes, report: guest.PieceReport):
    """A guest's file ranges: (certain spans, ambiguous boundaries).

    check_pieces extends each piece as far as the guest's bytes match the file,
    so where the guest's next piece happens to begin with the same byte(s) that
    follow the current piece in the file (1 chance in 256 per boundary), the
    piece is credited with s bytes too many and the next piece starts s bytes
    late. The split is then somewhere in those s bytes: the first t of them are
    file[end-s:end-s+t] (end of this piece) and the others are
    file[next-s+t:next] (start of the next piece), for some t in 0..s.
    Returns certain spans [(lo, hi)] and ambiguous boundaries [(a_lo, b_lo, s)].
    """
    pieces = report.pieces
    certain, ambiguous = [], []
    for i, p in enumerate(pieces):
        lo, hi = p.file_offset, p.file_offset + p.length
        if i + 1 < len(pieces):
            nxt = pieces[i + 1]
            s = 0
            while (s < p.length - 1 and nxt.file_offset - s - 1 >= 0
                   and data[nxt.data_offset - s - 1] == source[nxt.file_offset - s - 1]):
                s += 1
            if s:
                ambiguous.append((hi - s, nxt.file_offset - s, s))
                hi -= s
        certain.append((lo, hi))
    return certain, ambiguous


def assert_no_shared_offsets(guests_bytes: dict[str, tuple[bytes, guest.PieceReport]],
                              source: bytes) -> None:
    """No file offset reached two different guests (each guest's pieces are
    increasing and disjoint already; this compares guests with each other)."""
    spans, ambiguous = [], []
    for name, (data, rep) in guests_bytes.items():
        certain, amb = file_spans(data, source, rep)
        spans += [(lo, hi, name) for lo, hi in certain if hi > lo]
        ambiguous += [(a, b, s, name) for a, b, s in amb]
    spans.sort()
    clashes = []
    end, owner = -1, None
    for lo, hi, name in spans:
        if lo < end and name != owner:
            clashes.append(f"{owner} and {name} both got file offsets {lo}..{min(hi, end)}")
        if hi > end:
            end, owner = hi, name
    assert not clashes, (f"{len(clashes)} file range(s) served to two guests: "
                         + "; ".join(clashes[:10]))

    los = [lo for lo, _, _ in spans]

    def taken_by_other(lo: int, hi: int, name: str) -> str | None:
        # spans are disjoint, so sorted by lo they are sorted by hi too
        k = bisect.bisect_left(los, hi) - 1
        while k >= 0 and spans[k][1] > lo:
            if spans[k][2] != name:
                return spans[k][2]
            k -= 1
        return None

    unresolved = []
    for a, b, s, name in ambiguous:
        if not any(not taken_by_other(a, a + t, name) and not taken_by_other(b + t, b + s, name)
                   for t in range(s + 1)):
            unresolved.append(f"{name}: the {s} byte(s) at file offset {a} or {b} belong "
                              f"to another guest either way")
    assert not unresolved, (f"{len(unresolved)} boundary byte range(s) served to two "
                            f"guests: " + "; ".join(unresolved[:10]))
    covered = sum(hi - lo for lo, hi, _ in spans) + sum(s for _, _, s, _ in ambiguous)
    print(f"{len(guests_bytes)} guests: {len(spans)} pieces, {covered} bytes, file offsets "
          f"{spans[0][0]}..{max(hi for _, hi, _ in spans)}, pairwise disjoint "
          f"({len(ambiguous)} piece boundaries with an ambiguous split)")
