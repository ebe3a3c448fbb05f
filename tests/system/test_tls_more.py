"""TLS, continued (issue 9): a client that offers only TLS 1.1 or 1.0 is refused with one
log line and no byte while a TLS 1.2+ client is served; and a relay with two upstream
entropyds over mutual TLS at equal prio= feeds from both together, every byte traced back
to one upstream's file, and keeps serving from one when the other stops."""

import ssl
import time
import warnings

import pytest

from alignment import FileIndex, align_streams_multi, bytes_from
from egdsupport import STARTUP_BYTES, block_requests, req_block, req_pid
from tlssupport import Pki, recv_exact, refused_attempt, tls_connect


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


def old_protocol_context(pki, version):
    """hv1's client context that offers `version` only (SECLEVEL=0: OpenSSL 3 would not
    offer TLS 1.0/1.1 at its default level)."""
    ctx = pki.client_context("hv1")
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("version,words", [
    (ssl.TLSVersion.TLSv1_1, "TLS 1.1"),
    (ssl.TLSVersion.TLSv1, "TLS 1.0"),
])
def test_client_offering_only_an_old_tls_version_is_refused_and_a_modern_one_is_served(
        entropyd, pki, version, words):
    d = entropyd(listen=("tcp:127.0.0.1:0,tls=%s" % pki.server,))
    good = tls_connect(d.ep().address, pki.client_context("hv1"))
    try:
        good.sendall(req_block(100))
        recv_exact(good, 100)
        port, got, err = refused_attempt(d.ep().address, old_protocol_context(pki, version))
        assert got == b"", "a %s client received %d bytes" % (words, len(got))
        # The client really offered the old version: the server answered with the
        # protocol_version alert, not some other failure.
        assert isinstance(err, ssl.SSLError) and "PROTOCOL_VERSION" in str(err), (
            "the %s client failed otherwise than on the protocol version: %r" % (words, err))
        d.wait_log(r"client tcp:127\.0\.0\.1:%d: TLS refused: client offers at most %s, "
                   r"TLS 1\.2 or newer required" % (port, words.replace(".", r"\.")))
        time.sleep(0.2)
        lines = [x for x in d.log_lines() if ":%d" % port in x and "connected (" not in x]
        assert len(lines) == 1, "expected one line about the refused peer, got %r" % lines
        assert "served 0 bytes" in lines[0]
        print(lines[0])
        # The client that was there goes on, and a new modern client is served.
        good.sendall(block_requests(20000) + req_pid())
        assert len(recv_exact(good, 20000 + 1 + len(str(d.pid)))) == 20001 + len(str(d.pid))
        assert good.version() in ("TLSv1.2", "TLSv1.3")
        with tls_connect(d.ep().address, pki.client_context("hv2")) as late:
            late.sendall(req_block(200))
            assert len(recv_exact(late, 200)) == 200
    finally:
        good.close()


def assert_no_64_byte_window_twice(stream):
    seen = {}
    for p in range(len(stream) - 63):
        h = hash(stream[p:p + 64])
        q = seen.setdefault(h, p)
        assert q == p or stream[q:q + 64] != stream[p:p + 64], (
            "the 64 bytes at stream offsets %d and %d are equal" % (q, p))


@pytest.mark.time_limit(240)
def test_relay_feeds_from_two_equal_priority_tls_upstreams_together_and_keeps_one(
        entropyd, pki, random_file):
    files = {}
    ups = {}
    for label in ("A", "B"):
        path, data = random_file(4 << 20, name="upstream-%s.bin" % label)
        files[label] = FileIndex(data)
        ups[label] = entropyd(sources=["file:%s" % path],
                              listen=("tcp:127.0.0.1:0,tls=%s" % pki.server,))
    srcs = ["egd:tcp:127.0.0.1:%d,tls=%s,prio=0" % (ups[x].ep().address[1],
                                                    pki.clients["hv1"]) for x in ("A", "B")]
    pool = 65536
    relay = entropyd(sources=srcs, extra=["--pool-size", str(pool)])
    for x in ("A", "B"):
        relay.wait_log(r"serving from source egd:tcp:127\.0\.0\.1:%d,"
                       % ups[x].ep().address[1], 20)
    want = 2 << 20
    with relay.connect() as c:
        t0 = time.monotonic()
        got = c.block(want, timeout=120)
        took = time.monotonic() - t0
        # Every byte from one upstream's file, at increasing offsets there, none twice,
        # none of the start-up bytes.
        share = bytes_from(align_streams_multi(files, {"relay": got},
                                               min_offset=STARTUP_BYTES)["relay"])
        print("relay: %d bytes in %.2f s, from A %d, from B %d"
              % (want, took, share["A"], share["B"]))
        assert sum(share.values()) == want
        for x in ("A", "B"):
            assert share[x] >= want // 10, (
                "upstream %s gave %d of %d bytes: the equal-priority sources did not feed "
                "together" % (x, share[x], want))
        assert_no_64_byte_window_twice(got)
        # Upstream A stops; the relay goes on with B alone. What A sent before it stopped
        # (what the relay asked for and had not read yet) is still served: the relay reads
        # it once the pool has room, then sees the end and logs it. After that line, at most
        # the pool's content is A's: that much is drawn first, then 256 KiB all from B.
        ups["A"].stop()
        ups["A"].expect_exit = 0
        t0 = time.monotonic()
        drained = c.block(2 * pool, timeout=60)
        relay.wait_log(r"source egd:tcp:127\.0\.0\.1:%d,.*closed the connection"
                       % ups["A"].ep().address[1], 20)
        drained += c.block(pool + 4096, timeout=60)
        after = c.block(256 << 10, timeout=60)
        took = time.monotonic() - t0
    whole = got + drained + after
    pieces = align_streams_multi(files, {"relay": whole}, min_offset=STARTUP_BYTES)["relay"]
    tail = bytes_from(pieces, len(whole) - len(after))
    print("after A stopped: %d bytes (%d from A) then %d in %.2f s, from A %d, from B %d"
          % (len(drained), bytes_from(pieces, len(got), len(got) + len(drained))["A"],
             len(after), took, tail["A"], tail["B"]))
    assert tail["A"] == 0 and tail["B"] == len(after), (
        "%d of the last %d bytes came from the stopped upstream" % (tail["A"], len(after)))
    assert sum(bytes_from(pieces).values()) == len(whole)
