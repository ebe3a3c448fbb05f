"""Each EGD command against the real daemon (facts/egd-and-qemu.md, "The protocol";
DESIGN.md invariants 1, 3 and 6)."""

import struct
import time

from egdsupport import (STARTUP_BYTES, WINDOW_BYTES, block_requests, req_block,
                        req_level, req_nonblock, req_pid, req_write)


def test_pid_command_returns_length_prefixed_ascii_pid(entropyd):
    d = entropyd()
    with d.connect() as c:
        c.send(req_pid())
        ll = c.recv_exact(1)[0]
        digits = c.recv_exact(ll)
        assert digits == str(d.pid).encode(), "04 answered %r, daemon pid is %d" % (
            bytes([ll]) + digits, d.pid)
        c.expect_silence(0.3, " after the reply to 04")


def test_blocking_read_returns_exactly_the_bytes_asked(entropyd):
    d = entropyd()
    with d.connect() as c:
        for nn in (1, 2, 64, 128, 255):
            c.send(req_block(nn))
            got = c.recv_exact(nn)
            assert len(got) == nn
        c.assert_in_sync(d.pid)
        c.send(req_block(0))
        c.assert_in_sync(d.pid)  # 02 00 asks for nothing and gets nothing


def test_level_reports_eight_bits_per_pooled_byte_big_endian(entropyd, random_file):
    # A file of 1024 start-up bytes plus 32 full windows: once read, the pool holds
    # exactly 32 * 512 bytes, and 00 must report 8 bits for each, big-endian.
    windows = 32
    path, data = random_file(STARTUP_BYTES + windows * WINDOW_BYTES)
    d = entropyd(sources=["file:%s" % path])
    expected = 8 * windows * WINDOW_BYTES
    with d.connect() as c:
        deadline = time.monotonic() + 10
        seen = []
        while True:
            v = c.level()
            seen.append(v)
            assert v % 8 == 0, "00 answered %d bits: not 8 per byte (byte order?)" % v
            assert v <= expected, ("00 answered %d (0x%08x) bits, more than the %d the file "
                                   "can provide (little-endian? start-up bytes counted?)"
                                   % (v, v, expected))
            if v == expected:
                break
            assert time.monotonic() < deadline, ("00 never reached %d bits; answers: %s"
                                                 % (expected, seen[-10:]))
            time.sleep(0.05)
        got = c.block(100)
        assert got == data[STARTUP_BYTES:STARTUP_BYTES + 100]
        assert c.level() == expected - 8 * 100, "00 does not track the bytes handed out"


def test_level_reply_is_four_bytes_and_keeps_the_stream_in_sync(entropyd):
    d = entropyd()
    with d.connect() as c:
        c.send(req_level() * 5)
        for _ in range(5):
            (v,) = struct.unpack(">I", c.recv_exact(4))
            assert v % 8 == 0
        c.assert_in_sync(d.pid)


def test_nonblocking_read_returns_count_then_at_most_the_bytes_asked(entropyd):
    d = entropyd()
    with d.connect() as c:
        # Wait until the pool has something, so 01 has bytes to give.
        deadline = time.monotonic() + 10
        while c.level() < 8 * 255:
            assert time.monotonic() < deadline, "pool stays below 255 bytes with getrandom"
            time.sleep(0.05)
        for nn in (0, 1, 16, 255):
            got = c.nonblock(nn)
            assert len(got) <= nn
        c.assert_in_sync(d.pid)


def test_nonblocking_read_never_returns_more_than_asked(entropyd):
    import random
    rng = random.Random(1234)
    d = entropyd()
    sizes = [rng.randrange(0, 256) for _ in range(300)]
    with d.connect() as c:
        c.send(b"".join(req_nonblock(n) for n in sizes) + req_pid())
        for i, nn in enumerate(sizes):
            mm = c.recv_exact(1, what="MM of reply %d" % i)[0]
            assert mm <= nn, "request %d: 01 %d answered with MM = %d" % (i, nn, mm)
            c.recv_exact(mm, what="data of reply %d" % i)
        assert c.read_pid_reply() == d.pid, "surplus bytes after the 01 replies"


def test_write_command_is_refused_and_closes_the_connection_by_default(entropyd):
    d = entropyd()
    with d.connect(label="bystander") as other, d.connect(label="writer") as w:
        other.send(req_pid())
        assert other.read_pid_reply() == d.pid
        mark = d.mark()
        w.send(req_write(b"\xaa\xbb\xcc\xdd"))
        extra = w.expect_closed(5)
        assert extra == b"", "the daemon answered a refused 03 with %r" % extra
        # Some line says what happened (the contract fixes no wording).
        d.wait_log(r"(?i)refus|denied|not (allowed|enabled|permitted)|forbidden|write|"
                   r"0x03|\b03\b|command 3\b", 5, start=mark)
        # The other client is unaffected.
        assert len(other.block(64)) == 64
        other.assert_in_sync(d.pid)


def test_write_command_is_accepted_without_reply_when_enabled(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0,write=on"])
    with d.connect() as c:
        c.send(req_write(bytes(range(200)), bits=100) + req_write(b"") + req_pid())
        assert c.read_pid_reply() == d.pid, "03 on a write=on endpoint got a reply"
        assert len(c.block(32)) == 32
        c.assert_in_sync(d.pid)


def test_write_header_split_across_writes_is_accepted_when_enabled(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0,write=on"])
    with d.connect() as c:
        msg = req_write(b"0123456789")
        c.send(msg[:2])
        time.sleep(0.05)
        c.send(msg[2:5])
        time.sleep(0.05)
        c.send(msg[5:] + req_pid())
        assert c.read_pid_reply() == d.pid


def test_unknown_command_closes_only_that_client(entropyd):
    d = entropyd()
    with d.connect(label="bystander") as other:
        other.send(req_pid())
        assert other.read_pid_reply() == d.pid
        for cmd in (0x05, 0x7f, 0xff):
            mark = d.mark()
            with d.connect(label="sender of 0x%02x" % cmd) as bad:
                bad.send(bytes([cmd]))
                extra = bad.expect_closed(5)
                assert extra == b"", "unknown command 0x%02x got a reply %r" % (cmd, extra)
            d.wait_log(r"unknown command", 5, start=mark)
        assert len(other.block(255)) == 255
        other.assert_in_sync(d.pid)


def test_unknown_command_after_valid_requests_gets_no_more_than_they_asked(entropyd):
    # Valid requests before the bad byte may or may not be answered; the connection must
    # be closed, and nothing beyond what the valid requests asked for may arrive.
    d = entropyd()
    with d.connect() as c:
        c.send(req_block(16) + b"\x09" + req_block(16))
        got = c.expect_closed(5)
        assert len(got) <= 16, "got %d bytes: more than the 16 asked before the bad byte" % (
            len(got))


def test_many_blocking_requests_in_one_write_are_answered_with_exactly_their_sum(entropyd):
    import random
    rng = random.Random(64)
    sizes = [rng.randrange(1, 256) for _ in range(64)]
    d = entropyd()
    with d.connect() as c:
        c.send(b"".join(req_block(n) for n in sizes))
        got = c.recv_exact(sum(sizes))
        assert len(got) == sum(sizes)
        c.assert_in_sync(d.pid)


def test_request_header_split_across_two_writes_is_understood(entropyd):
    d = entropyd()
    with d.connect() as c:
        c.send(b"\x02")
        time.sleep(0.05)  # a separate segment; still well within the 100 ms primer delay
        c.send(b"\x40")
        assert len(c.recv_exact(64)) == 64
        c.send(b"\x01")
        time.sleep(0.05)
        c.send(b"\x20")
        mm = c.recv_exact(1)[0]
        assert mm <= 32
        c.recv_exact(mm)
        c.assert_in_sync(d.pid)


def test_pipelined_requests_are_answered_in_order(entropyd, random_file):
    # With one client and a file source, the bytes served are the file's from offset 1024
    # on, so the reply to 00 must sit exactly between the two 16-byte replies.
    path, data = random_file(STARTUP_BYTES + 64 * WINDOW_BYTES)
    d = entropyd(sources=["file:%s" % path])
    with d.connect() as c:
        c.send(req_block(16) + req_level() + req_block(16))
        got = c.recv_exact(36)
        first, level, second = got[:16], got[16:20], got[20:]
        assert first == data[STARTUP_BYTES:STARTUP_BYTES + 16], (
            "first reply is not the file's bytes after the start-up test")
        (bits,) = struct.unpack(">I", level)
        assert bits % 8 == 0 and bits <= 8 * 64 * WINDOW_BYTES, (
            "bytes 16..19 (%s) are not a reply to 00: replies out of order?" % level.hex())
        assert second == data[STARTUP_BYTES + 16:STARTUP_BYTES + 32]
        c.assert_in_sync(d.pid)


def test_blocking_requests_up_to_a_megabyte_in_one_write_are_all_served(entropyd):
    d = entropyd()
    total = 1 << 20
    with d.connect() as c:
        c.send(block_requests(total))
        assert len(c.recv_exact(total, timeout=30)) == total
        c.assert_in_sync(d.pid)


def test_client_closing_with_bytes_owed_does_not_disturb_the_daemon(entropyd):
    d = entropyd()
    for _ in range(20):
        with d.connect() as c:
            c.send(block_requests(100000))
    with d.connect() as c:
        assert len(c.block(1000)) == 1000
        c.assert_in_sync(d.pid)
