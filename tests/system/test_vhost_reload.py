"""A reload (SIGHUP re-exec) keeps vhost-user devices: the old image hands each connection
over (its socket, guest memory, features, the ring and its eventfds, a message partly
read), the new one maps the memory again and serves on, so QEMU, which does not reconnect
a vhost-user-rng device, never notices. Both layouts: entropyd listening and entropyd
dialing. Bytes are traced to a FIFO source: every chain posted is used exactly once, the
bytes come from the source in order and none twice (the pool the old image had read is
left behind, nothing else)."""

import os
import socket
import struct

import pytest

import vhostfront as vf
from alignment import align_streams
from egdsupport import STARTUP_BYTES, fifo_source

READY = r"\bready: \d+ source"


def reload(d):
    before = d.mark()
    os.kill(d.pid, 1)
    d.wait_log(READY, 15, start=before)
    assert d.proc.poll() is None and d.proc.pid == d.pid
    return before


def read_across_reloads(d, f, data, half_messages):
    """Read, then three times: post a chain, half-send a message, reload, finish the
    message, read on. Returns the bytes read."""
    got = f.read_bytes(32 * 1024, chunk=512)
    for i in range(3):
        bufs = f.post([512])  # posted (and kicked) before the reload: served after it
        half_messages[i][0](f)
        before = reload(d)
        half_messages[i][1](f)
        (_, n), = f.wait_used(1)
        got += f.read(bufs[0][0], n)
        got += f.read_bytes(32 * 1024, chunk=512)
        assert d.count_log(r"vhost-user device\(s\) resumed", start=before) == 1
        assert d.count_log(r"reload: 1 vhost-user device\(s\) resumed", start=before) == 1
    assert f.used_idx() == f.avail_idx, "a chain posted was never used"
    placed = align_streams(data, {"vm": got}, min_offset=STARTUP_BYTES)
    print("pieces:", placed["vm"])
    return got


def half_header(f):
    """7 of GET_FEATURES' 12 header bytes before the reload, the rest after."""
    hdr = struct.pack("<III", vf.GET_FEATURES, 1, 0)
    return (lambda f: f.sock.sendall(hdr[:7]),
            lambda f: (f.sock.sendall(hdr[7:]),
                       assert_features(struct.unpack("<Q", f.reply(vf.GET_FEATURES))[0])))


def assert_features(v):
    assert v & vf.F_VERSION_1, "GET_FEATURES answered wrongly after the reload: %#x" % v


def half_payload_with_fd(f):
    """SET_VRING_CALL with a new call eventfd: the header, the descriptor and 3 payload
    bytes before the reload, the rest after; the ack comes, and calls use the new eventfd."""
    newcall = os.eventfd(0, os.EFD_NONBLOCK)
    msg = struct.pack("<IIIQ", vf.SET_VRING_CALL, 1 | vf.NEED_REPLY, 8, 0)

    def before(f):
        socket.send_fds(f.sock, [msg[:15]], [newcall])

    def after(f):
        f.sock.sendall(msg[15:])
        assert struct.unpack("<Q", f.reply(vf.SET_VRING_CALL))[0] == 0
        os.close(f.call)
        f.call = newcall
    return before, after


def nothing():
    return (lambda f: None, lambda f: None)


@pytest.mark.time_limit(120)
def test_listening_device_reads_on_through_three_reloads_on_the_same_connection(entropyd,
                                                                                tmp_path):
    source, data, wfd, _ = fifo_source(tmp_path, 4 << 20)
    path = tmp_path / "vu.sock"
    try:
        d = entropyd(sources=[source], listen=["vhost-user:%s" % path])
        f = vf.Front.connect(path)
        try:
            f.setup(event_idx=True)
            read_across_reloads(d, f, data, [half_header(f), half_payload_with_fd(f),
                                             nothing()])
            assert f.get_u64(vf.GET_QUEUE_NUM) == 1  # the same connection answers
        finally:
            f.close()
    finally:
        os.close(wfd)
    assert d.count_log(r"re-executing with") == 3
    assert d.count_log(r"front-end connected") == 1
    d.wait_log(r"front-end closed the connection")


@pytest.mark.time_limit(120)
def test_dialing_device_reads_on_through_three_reloads_without_a_new_connection(entropyd,
                                                                               tmp_path):
    source, data, wfd, _ = fifo_source(tmp_path, 4 << 20)
    sock_path = tmp_path / "qemu.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock_path))
    srv.listen(4)
    srv.settimeout(15)
    try:
        d = entropyd(sources=[source], listen=(), connect=["vhost-user:%s" % sock_path])
        conn, _ = srv.accept()
        f = vf.Front(conn)
        try:
            f.setup()
            read_across_reloads(d, f, data, [nothing(), half_header(f), nothing()])
            srv.settimeout(0.5)
            with pytest.raises(socket.timeout):
                srv.accept()  # no redial: the connection was kept
        finally:
            f.close()
    finally:
        os.close(wfd)
        srv.close()
    assert d.count_log(r"connection kept across the reload") == 3
