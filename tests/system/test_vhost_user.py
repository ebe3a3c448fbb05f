"""vhost-user-rng: entropyd as the back-end of a virtio-rng device, with a Python front-end
(vhostfront.py) standing in for QEMU: guest memory in a memfd, a split ring in it, the
set-up messages with their descriptors, kicks and calls through eventfds. Both layouts
(entropyd listening; entropyd dialing a listening front-end, and a new entropyd resuming
the ring), bytes traced to a file source, indirect descriptors, EVENT_IDX, and hostile
guests and front-ends: one log line, that device stopped, everything else served."""

import os
import socket
import struct
import threading
import time

import pytest

import vhostfront as vf
from alignment import align_streams
from egdsupport import STARTUP_BYTES, block_requests, fifo_source, read_many


def vhost_daemon(entropyd, tmp_path, sources, opts=""):
    path = tmp_path / "vu.sock"
    d = entropyd(sources=sources, listen=["vhost-user:%s%s" % (path, opts)])
    return d, path


@pytest.mark.time_limit(60)
def test_listening_device_fills_guest_buffers_with_the_file_in_order(entropyd, random_file,
                                                                     tmp_path):
    path, data = random_file(STARTUP_BYTES + 64 * 512)
    d, sock = vhost_daemon(entropyd, tmp_path, ["file:%s" % path])
    f = vf.Front.connect(sock)
    try:
        f.setup()
        got = f.read_bytes(32 * 512, chunk=512)
        assert got == data[STARTUP_BYTES:STARTUP_BYTES + len(got)]
    finally:
        f.close()
    d.wait_log(r"vhost-user vhost-user:.*front-end closed the connection \(served 16384")


@pytest.mark.time_limit(60)
def test_indirect_chain_of_three_buffers_is_filled_across_all_of_them(entropyd, random_file,
                                                                       tmp_path):
    path, data = random_file(STARTUP_BYTES + 16 * 512)
    d, sock = vhost_daemon(entropyd, tmp_path, ["file:%s" % path])
    f = vf.Front.connect(sock)
    try:
        f.setup()
        got = f.fill_chain([100, 28, 128], indirect=True)
        assert got == data[STARTUP_BYTES:STARTUP_BYTES + 256]
        got = f.fill_chain([7, 300], indirect=False)
        assert got == data[STARTUP_BYTES + 256:STARTUP_BYTES + 563]
    finally:
        f.close()


@pytest.mark.time_limit(60)
def test_event_idx_updates_avail_event_and_suppresses_calls_before_used_event(
        entropyd, random_file, tmp_path):
    path, _ = random_file(STARTUP_BYTES + 64 * 512)
    d, sock = vhost_daemon(entropyd, tmp_path, ["file:%s" % path])
    f = vf.Front.connect(sock)
    try:
        f.setup(event_idx=True)
        f.set_used_event(0)  # a call when used passes 0 -> 1
        (_, n), = f.wait_used(1) if f.post([64]) else None
        assert n == 64
        assert f.avail_event() == f.avail_idx, "the back-end did not publish avail_event"
        f.wait_call(0.2)  # the wanted call, unless wait_used saw the chain before it came
        # Ask for a call only once five more chains are used: one chain, no call.
        f.set_used_event(f.used_seen + 5)
        f.post([64])
        deadline = time.monotonic() + 5
        while f.used_idx() != f.avail_idx and time.monotonic() < deadline:
            time.sleep(0.01)
        assert f.used_idx() == f.avail_idx, "the chain was not used"
        assert not f.wait_call(0.5), "called although used_event asked for no call yet"
        f.used_seen = f.used_idx()
        f.set_used_event(f.used_seen)  # the next one is wanted again
        f.post([64])
        assert f.wait_call(5), "no call once used passed used_event"
    finally:
        f.close()


@pytest.mark.time_limit(120)
def test_two_devices_and_an_egd_client_never_receive_the_same_byte(entropyd, tmp_path):
    # Filled only once every reader waits, so delivery to them interleaves.
    spec, data, wfd, writer = fifo_source(tmp_path, STARTUP_BYTES + 600 * 1024, start=False)
    path = tmp_path / "vu.sock"
    # One event loop: the three take turns in one rotation (test_threads.py covers clients
    # of other threads, which draw from the pool apart from the main loop's consumers).
    d = entropyd(sources=[spec],
                 listen=["vhost-user:%s" % path, "tcp:127.0.0.1:0"], extra=["--threads", "1"])
    fronts = [vf.Front.connect(path) for _ in range(2)]
    want = 150 * 1024
    streams, errors = {}, []

    def reader(i, f):
        try:
            streams["vm%d" % i] = f.read_bytes(want, chunk=256, timeout=90)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append("vm%d: %r" % (i, e))
    try:
        for f in fronts:
            f.setup()
        c = d.connect(1, label="egd client")
        c.send(block_requests(want))
        threads = [threading.Thread(target=reader, args=(i, f)) for i, f in enumerate(fronts)]
        for t in threads:
            t.start()
        writer.start()
        got = read_many({c.sock: want}, timeout=90)
        streams["egd"] = got[c.sock]
        for t in threads:
            t.join(100)
        c.close()
    finally:
        writer.join(30)
        os.close(wfd)
        for f in fronts:
            f.close()
    assert not errors, errors
    placed = align_streams(data, streams, min_offset=STARTUP_BYTES)
    pieces = {k: len(v) for k, v in placed.items()}
    print("pieces per consumer:", pieces)
    assert all(len(streams[k]) == want for k in streams)
    # The three took turns: none was served all at once.
    assert all(n > 1 for n in pieces.values()), pieces


@pytest.mark.time_limit(60)
def test_each_kick_wakes_the_device_without_a_read_of_the_kick_eventfd(entropyd, tmp_path):
    """The kick eventfd is watched edge-triggered: every request is served from the
    wake-up alone, and its counter (which a drain would reset) keeps every kick."""
    d, sock = vhost_daemon(entropyd, tmp_path, ["getrandom"])
    f = vf.Front.connect(sock)
    try:
        f.setup(event_idx=True)
        got = f.read_bytes(200 * 64, chunk=64)  # one chain, one kick, one wait each
        assert len(got) == 200 * 64
        assert os.eventfd_read(f.kick) == 200, "the back-end read the kick eventfd"
    finally:
        f.close()


def reconnect_setup(f, sock):
    """What QEMU replays to a back-end that dialed it again: no handshake."""
    f.sock = sock
    f.sock.settimeout(10)
    f.setup(handshake=False, base=f.avail_idx)


@pytest.mark.time_limit(90)
def test_dialing_device_is_redialed_and_a_new_daemon_resumes_the_ring(entropyd, random_file,
                                                                     tmp_path):
    path, data = random_file(STARTUP_BYTES + 256 * 1024)
    sock_path = tmp_path / "qemu.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock_path))
    srv.listen(4)
    srv.settimeout(15)
    d1 = entropyd(sources=["file:%s" % path], listen=(),
                  connect=["vhost-user:%s" % sock_path])
    conn, _ = srv.accept()
    f = vf.Front(conn)
    try:
        f.setup()
        first = f.read_bytes(4096, chunk=256)
        assert first == data[STARTUP_BYTES:STARTUP_BYTES + 4096]
        # The front-end drops the connection: the same daemon dials again and is given
        # the ring without the handshake; a chain posted meanwhile is served.
        f.sock.close()
        f.post([256])
        conn, _ = srv.accept()
        reconnect_setup(f, conn)
        (_, n), = f.wait_used(1)
        assert n == 256
        more = f.read_bytes(1024, chunk=256)
        assert more == data[STARTUP_BYTES + 4096 + 256:STARTUP_BYTES + 4096 + 256 + 1024]
        # A new daemon (the first one stopped) resumes from SET_VRING_BASE and the used
        # index in guest memory: the next chain lands in the next used slot.
        rc, killed = d1.stop()
        assert rc == 0 and not killed
        f.sock.close()
        f.post([128])
        before = f.used_seen
        d2 = entropyd(sources=["file:%s" % path], listen=(),
                      connect=["vhost-user:%s" % sock_path])
        conn, _ = srv.accept()
        reconnect_setup(f, conn)
        (head, n), = f.wait_used(1)
        assert n == 128 and f.used_seen == (before + 1) & 0xFFFF
        assert f.read_bytes(512, chunk=256) == data[STARTUP_BYTES + 128:STARTUP_BYTES + 640]
        d2.wait_log(r"connected to vhost-user:")
    finally:
        f.close()
        srv.close()


# ---- hostile guests and front-ends --------------------------------------------------


def bad_outside(f):
    f.write_desc(vf.DESC, 0, vf.GPA + vf.MEM_SIZE + 0x1000, 64, vf.D_WRITE)
    f.publish(0)


def bad_length_overflow(f):
    f.write_desc(vf.DESC, 0, (1 << 64) - 16, 64, vf.D_WRITE)
    f.publish(0)


def bad_length_past_region(f):
    f.write_desc(vf.DESC, 0, vf.GPA + vf.MEM_SIZE - 16, 0xFFFFFFFF, vf.D_WRITE)
    f.publish(0)


def bad_loop(f):
    f.write_desc(vf.DESC, 0, f.buf_gpa(0), 64, vf.D_WRITE | vf.D_NEXT, 1)
    f.write_desc(vf.DESC, 1, f.buf_gpa(1), 64, vf.D_WRITE | vf.D_NEXT, 0)
    f.publish(0)


def bad_nested_indirect(f):
    f.write_desc(vf.INDIRECT, 0, vf.GPA + vf.INDIRECT + 0x100, 16, vf.D_INDIRECT)
    f.write_desc(vf.DESC, 0, vf.GPA + vf.INDIRECT, 16, vf.D_INDIRECT)
    f.publish(0)


def bad_read_only(f):
    f.write_desc(vf.DESC, 0, f.buf_gpa(0), 64, 0)
    f.publish(0)


def bad_head(f):
    f.publish(f.qsize + 3)


RING_CASES = {
    "address_outside_every_region": (bad_outside, "buffer outside guest memory"),
    "address_wraps_around": (bad_length_overflow, "buffer outside guest memory"),
    "length_past_the_region": (bad_length_past_region, "buffer outside guest memory"),
    "loop_in_a_chain": (bad_loop, "loops or is longer than its table"),
    "indirect_inside_indirect": (bad_nested_indirect, "indirect table inside an indirect"),
    "read_only_buffer": (bad_read_only, "read-only buffer"),
    "head_past_the_queue": (bad_head, "descriptor past the queue"),
}


def check_others_still_served(d, good, data_check=True):
    got = good.read_bytes(1024, chunk=256)
    assert len(got) == 1024
    assert d.proc.poll() is None


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("case", sorted(RING_CASES))
def test_hostile_ring_stops_that_device_with_one_line_and_others_are_served(
        entropyd, tmp_path, case):
    act, reason = RING_CASES[case]
    d, sock = vhost_daemon(entropyd, tmp_path, ["getrandom"])
    good = vf.Front.connect(sock)
    bad = vf.Front.connect(sock)
    try:
        good.setup()
        bad.setup()
        good.read_bytes(256)
        act(bad)
        d.wait_log(r"vhost-user vhost-user:.*#\d+: the guest broke the ring \(.*%s" % reason)
        # Stopped: a good chain posted now is never used.
        used = bad.used_idx()
        bad.next_desc = 4
        bad.post([64])
        check_others_still_served(d, good)
        time.sleep(0.3)
        assert bad.used_idx() == used, "a broken ring was served again"
        assert d.count_log(r"broke the ring") == 1
    finally:
        good.close()
        bad.close()


def msg_huge_queue(f):
    f.state(vf.SET_VRING_NUM, 65536)


def msg_queue_not_power_of_two(f):
    f.state(vf.SET_VRING_NUM, 12)


def msg_short_payload(f):
    f.send(vf.SET_FEATURES, struct.pack("<I", 1))


def msg_oversized(f):
    f.send(vf.SET_FEATURES, b"\0" * 8, size=1 << 20)


def msg_fd_on_a_message_without_fds(f):
    f.send(vf.SET_FEATURES, struct.pack("<Q", vf.F_VERSION_1), fds=[f.kick])


def msg_memory_table_without_fds(f):
    f.send(vf.SET_MEM_TABLE, struct.pack("<IIQQQQ", 1, 0, vf.GPA, vf.MEM_SIZE, vf.UADDR, 0))


def msg_region_larger_than_its_file(f):
    body = struct.pack("<IIQQQQ", 1, 0, vf.GPA, vf.MEM_SIZE * 4, vf.UADDR, 0)
    f.send(vf.SET_MEM_TABLE, body, fds=[f.memfd])


def msg_log_base(f):
    f.send(vf.SET_LOG_BASE, struct.pack("<QQ", 0, 4096), fds=[f.memfd])


def msg_bad_version(f):
    f.send(vf.GET_FEATURES, flags=2)


MSG_CASES = {
    "huge_queue_size": (msg_huge_queue, "queue size 65536"),
    "queue_size_not_a_power_of_two": (msg_queue_not_power_of_two, "queue size 12"),
    "short_payload": (msg_short_payload, "payload of the wrong size"),
    "oversized_payload": (msg_oversized, "too large"),
    "descriptor_on_a_message_that_takes_none": (msg_fd_on_a_message_without_fds,
                                                r"with 1 descriptor\(s\) \(expected 0\)"),
    "memory_table_without_descriptors": (msg_memory_table_without_fds,
                                         r"with 0 descriptor\(s\) \(expected 1\)"),
    "region_larger_than_its_file": (msg_region_larger_than_its_file, "larger than its file"),
    "log_base_not_offered": (msg_log_base, "request 6 not offered"),
    "bad_version": (msg_bad_version, "protocol version 2"),
}


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("case", sorted(MSG_CASES))
def test_hostile_message_closes_that_front_end_with_one_line_and_others_are_served(
        entropyd, tmp_path, case):
    act, reason = MSG_CASES[case]
    d, sock = vhost_daemon(entropyd, tmp_path, ["getrandom"])
    good = vf.Front.connect(sock)
    bad = vf.Front.connect(sock)
    try:
        good.setup()
        bad.setup()
        act(bad)
        d.wait_log(r"vhost-user vhost-user:.*%s.*; connection closed" % reason)
        bad.sock.settimeout(5)
        try:
            closed = bad.sock.recv(1) == b""
        except ConnectionResetError:  # unread bytes were left: the kernel resets
            closed = True
        assert closed, "the connection was not closed"
        check_others_still_served(d, good)
        assert d.count_log(r"; connection closed") == 1
    finally:
        good.close()
        bad.close()


@pytest.mark.time_limit(60)
def test_rate_paces_one_device(entropyd, tmp_path):
    d, sock = vhost_daemon(entropyd, tmp_path, ["getrandom"], ",rate=2048/1000")
    f = vf.Front.connect(sock)
    try:
        f.setup()
        t0 = time.monotonic()
        got = f.read_bytes(6 * 1024, chunk=512, timeout=30)
        took = time.monotonic() - t0
        assert len(got) == 6 * 1024
        # A bucket of 2048 bytes refilled each second: 6 KiB needs at least 2 s.
        assert took >= 1.8, "6 KiB at 2048 B/s came in %.2f s" % took
    finally:
        f.close()


def test_egd_only_options_are_refused_on_vhost_user(tmp_path):
    from entropyd_proc import run_entropyd
    r = run_entropyd(["-n", "--listen", "vhost-user:%s,primer=16" % (tmp_path / "v.sock")])
    assert r.returncode != 0
    assert b"primer= applies to" in r.stderr and b"(not to vhost-user listeners)" in r.stderr
