"""Tests of the end-to-end harness itself, independent of entropyd: the piece
checker on made-up data, and one real guest boot against socat streaming the
source file (so a failure here points at the harness, not at the daemon)."""

from __future__ import annotations

import os

import pytest

import guest
import peers
from support import MIB, check_source, finish

# Where the tests below join two pieces (end of one, start of the next). The checker extends
# a piece as far as the bytes match: had the byte after a piece's end been equal to the next
# piece's first byte (1 in 256 per join), the piece would run on and a test fail by chance
# (CI saw it once). Likewise a short piece "xyz" followed by the byte at 1200 must occur
# nowhere: after either "xyz" put at 1100 and 1150, another byte than src[1200] follows.
JOINS = [(1000, 1100), (1105, 1200), (5000, 5064), (9000, 9100), (4000, 1024), (2000, 1024),
         (1103, 1200), (1153, 1200)]


def _source() -> bytes:
    while True:
        src = os.urandom(1 << 16)
        if all(src[a] != src[b] for a, b in JOINS) and src[1000] != ord("x"):
            return src


SRC = _source()


def test_checker_accepts_increasing_pieces_and_counts_them():
    data = SRC[100:5000] + SRC[5064:9000] + SRC[9100:9200]
    report = guest.check_pieces(data, SRC)
    assert report.count == 3
    assert [p.file_offset for p in report.pieces] == [100, 5064, 9100]
    assert report.restarts == 0


def test_checker_rejects_bytes_not_from_the_source():
    data = SRC[0:4000] + os.urandom(64) + SRC[5000:6000]
    with pytest.raises(guest.PieceCheckError, match="not found"):
        guest.check_pieces(data, SRC)


def test_checker_rejects_pieces_out_of_file_order():
    data = SRC[5000:6000] + SRC[1000:2000]
    with pytest.raises(guest.PieceCheckError, match="not found"):
        guest.check_pieces(data, SRC)


def test_checker_allows_going_back_only_as_often_as_allowed():
    data = SRC[3000:4000] + SRC[1024:2000] + SRC[1024:1500]
    with pytest.raises(guest.PieceCheckError):
        guest.check_pieces(data, SRC, min_offset=1024, max_restarts=1)
    report = guest.check_pieces(data, SRC, min_offset=1024, max_restarts=2)
    assert report.restarts == 2 and report.count == 3


def test_checker_rejects_bytes_before_min_offset():
    with pytest.raises(guest.PieceCheckError):
        guest.check_pieces(SRC[0:2048], SRC, min_offset=1024)


def test_checker_places_a_short_piece_that_occurs_once_between_its_neighbours():
    data = SRC[100:1000] + SRC[1100:1105] + SRC[1200:2000]
    report = guest.check_pieces(data, SRC)
    assert [(p.file_offset, p.length) for p in report.pieces] == \
        [(100, 900), (1100, 5), (1200, 800)]


def test_checker_fails_on_a_short_piece_it_cannot_place_unambiguously():
    src = bytearray(SRC)
    src[1100:1103] = b"xyz"
    src[1150:1153] = b"xyz"
    src = bytes(src)
    data = src[100:1000] + b"xyz" + src[1200:2000]
    with pytest.raises(guest.PieceCheckError, match="ambiguous"):
        guest.check_pieces(data, src)


def test_guest_reads_1mib_from_socat_streaming_the_file(source_file, socat, guests):
    """Harness check: a plain byte stream (socat) serves the guest's rng-egd."""
    path, source = source_file
    port = peers.free_port()
    socat(port, f"OPEN:{path},rdonly", one_way=True)
    run = guests(guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={port},reconnect=1"),
                 nbytes=MIB)
    res = finish(run)
    report = check_source(res.data, source)
    print(f"guest read {res.nbytes} bytes in {res.read_seconds:.2f}s "
          f"({res.mb_per_s:.2f} MB/s); {report}")
    assert report.pieces[-1].file_offset + report.pieces[-1].length <= 2 * MIB
