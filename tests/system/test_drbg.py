"""mode=drbg on the real binary: every endpoint kind serves the output of an AES-256
CTR-DRBG whose only entropy input is health-tested pool bytes. File sources whose content the
test knows show what the pool lost to seeds (384 bits each: 48 bytes at h=8, 384 at h=1),
that the output is not the source's bytes, that an exhausted source stops the DRBG after
reseed= bytes or reseed-ms= (clients wait, then resume when bytes come), that
prediction-resistance=on costs one seed per request, and that raw clients beside drbg ones
still get each file byte once."""

import os
import socket
import time

import pytest

from alignment import align_streams, coverage_summary
from egdsupport import STARTUP_BYTES, EgdClient, read_many
from test_transports import udp_client, udp_port

SEED_H8 = 48  # ceil(384 / 8)
SEED_H1 = 384  # ceil(384 / 1)


def windows16(data):
    return {data[i:i + 16] for i in range(len(data) - 15)}


def assert_not_file_bytes(out, data):
    file_windows = windows16(data)
    hits = [i for i in range(len(out) - 15) if out[i:i + 16] in file_windows]
    assert not hits, "DRBG output holds the source's bytes (16-byte window at %d)" % hits[0]


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("kind", ["tcp", "unix", "udp", "fifo", "tcp-connect", "unix-connect"])
def test_drbg_endpoint_of_every_kind_serves_output_that_is_not_the_source(
        entropyd, random_file, tmp_path, kind):
    path, data = random_file(STARTUP_BYTES + 8192)
    src = ["file:%s,h=8" % path]
    want = 4000
    if kind in ("tcp", "unix"):
        spec = "tcp:127.0.0.1:0" if kind == "tcp" else "unix:%s" % (tmp_path / "e.sock")
        d = entropyd(sources=src, listen=[spec + ",mode=drbg"])
        with d.connect() as c:
            out = c.block(want, timeout=20)
    elif kind == "udp":
        d = entropyd(sources=src, listen=(), extra=["--listen", "udp:127.0.0.1:0,mode=drbg"])
        with udp_client(udp_port(d)) as s:
            out = b""
            while len(out) < want:
                s.send(b"\x02\xff")
                out += s.recv(65536)
    elif kind == "fifo":
        fifo = tmp_path / "rng.fifo"
        d = entropyd(sources=src, listen=(),
                     extra=["--listen", "fifo:%s,mode=drbg" % fifo])
        d.wait_log(r"listening on fifo:", 5)
        with open(fifo, "rb") as f:
            out = f.read(want)
    else:
        if kind == "tcp-connect":
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            srv.bind(("127.0.0.1", 0))
            target = "tcp:127.0.0.1:%d" % srv.getsockname()[1]
        else:
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(str(tmp_path / "qemu.sock"))
            target = "unix:%s" % (tmp_path / "qemu.sock")
        srv.listen(1)
        srv.settimeout(10)
        d = entropyd(sources=src, listen=(), connect=[target + ",mode=drbg"])
        conn, _ = srv.accept()
        with EgdClient(conn) as c:
            out = c.block(want, timeout=20)
        srv.close()
    assert len(out) >= want
    assert_not_file_bytes(out, data)
    assert d.count_log(r"drbg: AES-256 CTR-DRBG, seeded from the pool only: 48 bytes") == 1


@pytest.mark.time_limit(60)
def test_first_drbg_byte_costs_one_384_bit_seed_from_the_pool(entropyd, random_file):
    path, data = random_file(STARTUP_BYTES + 2048)
    d = entropyd(sources=["file:%s,h=8" % path],
                 listen=["tcp:127.0.0.1:0,mode=drbg", "tcp:127.0.0.1:0"])
    with d.connect(0, label="drbg") as c:
        assert len(c.block(1)) == 1
        with d.connect(1, label="raw") as r:
            rest = r.block(2048 - SEED_H8, timeout=20)
            # the seed was the first 48 bytes after start-up; the raw client got the rest
            assert rest == data[STARTUP_BYTES + SEED_H8:]
            assert r.level() == 0
        assert len(c.block(2000)) == 2000  # within the same seed: no more pool bytes


@pytest.mark.time_limit(60)
def test_exhausted_source_stops_drbg_after_reseed_bytes_until_bytes_come(
        entropyd, random_file, tmp_path):
    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    wfd = os.open(fifo, os.O_RDWR)
    try:
        data = os.urandom(STARTUP_BYTES + 512 + 512)
        os.write(wfd, data[:STARTUP_BYTES + 512])  # one seed at h=1 (384), 128 left
        d = entropyd(sources=["file:%s,h=1,stall=0" % fifo],
                     listen=["tcp:127.0.0.1:0,mode=drbg,reseed=1000,reseed-ms=60000"])
        d.wait_log(r"start-up test passed", 10)
        with d.connect() as c:
            c.send(b"\x02\xfa" * 8)  # 2000 bytes asked
            first = c.recv_exact(1000, timeout=10)
            c.expect_silence(1.0, "the DRBG gave more than reseed= from one seed")
            os.write(wfd, data[STARTUP_BYTES + 512:])  # 640 in the pool: a second seed
            second = c.recv_exact(1000, timeout=10)
            c.expect_silence(0.5, "more than asked")
        assert first != second
    finally:
        os.close(wfd)


@pytest.mark.time_limit(60)
def test_seed_older_than_reseed_ms_is_not_used_even_without_output(entropyd, random_file):
    path, _data = random_file(STARTUP_BYTES + 512)  # one seed at h=1, then exhausted
    d = entropyd(sources=["file:%s,h=1" % path],
                 listen=["tcp:127.0.0.1:0,mode=drbg,reseed-ms=300"])
    d.wait_log(r"start-up test passed", 10)
    with d.connect() as c:
        assert len(c.block(255)) == 255
        time.sleep(0.5)
        c.send(b"\x02\x10")
        c.expect_silence(1.0, "the DRBG served from a seed older than reseed-ms=")
        with d.connect() as other:
            assert other.level() == 0  # and it says it can give nothing


@pytest.mark.time_limit(60)
def test_prediction_resistance_takes_a_seed_from_the_pool_per_request(entropyd, random_file):
    path, data = random_file(STARTUP_BYTES + 1024)
    d = entropyd(sources=["file:%s,h=8" % path],
                 listen=["tcp:127.0.0.1:0,mode=drbg,prediction-resistance=on",
                         "tcp:127.0.0.1:0"])
    with d.connect(0, label="drbg") as c:
        c.send(b"\x02\x0a" * 5)
        assert len(c.recv_exact(50)) == 50
        for _ in range(2):
            assert c.nonblock(5) is not None
    seeds = 7
    with d.connect(1, label="raw") as r:
        rest = r.block(1024 - seeds * SEED_H8, timeout=20)
        assert rest == data[STARTUP_BYTES + seeds * SEED_H8:]
        assert r.level() == 0


@pytest.mark.time_limit(90)
def test_raw_clients_beside_drbg_clients_get_only_file_bytes_each_once(entropyd, random_file):
    total = 256 * 1024
    path, data = random_file(STARTUP_BYTES + total)
    d = entropyd(sources=["file:%s,h=8" % path],
                 listen=["tcp:127.0.0.1:0,mode=drbg,reseed=4096,reseed-ms=60000",
                         "tcp:127.0.0.1:0"])
    drbg_want = 64 * 1024  # 16 seeds of 48 bytes
    raw_want = total - 16 * SEED_H8
    c = d.connect(0, label="drbg")
    r1 = d.connect(1, label="raw 1")
    r2 = d.connect(1, label="raw 2")
    try:
        c.send(b"\x02\xff" * (drbg_want // 255) + bytes([2, drbg_want % 255]))
        half = raw_want // 2
        r1.send(b"\x02\xff" * (half // 255) + bytes([2, half % 255]))
        r2.send(b"\x02\xff" * ((raw_want - half) // 255) + bytes([2, (raw_want - half) % 255]))
        got = read_many({c.sock: drbg_want, r1.sock: half, r2.sock: raw_want - half},
                        timeout=60)
        placed = align_streams(data, {"raw 1": got[r1.sock], "raw 2": got[r2.sock]},
                               min_offset=STARTUP_BYTES)
        _lo, _hi, placed_total = coverage_summary(placed)
        assert placed_total == raw_want
        assert_not_file_bytes(got[c.sock][:8192], data)
        assert r1.level() == 0
    finally:
        for s in (c, r1, r2):
            s.close()
