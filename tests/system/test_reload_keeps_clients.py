"""A reload (SIGHUP re-exec) keeps connected clients of plain tcp and unix endpoints: the
old image hands each one's socket and state (unparsed input, queued requests, the rest of a
reply, bytes served) to the new image, which serves it on, so QEMU's rng-egd chardev (which
does not reconnect without reconnect=) keeps its RNG. Bytes are traced from a file source
(align_streams): no byte is lost, none served twice, and the EGD framing stays in sync (a
0x04 after the replies reads back the daemon's pid). A client whose endpoint the reload
removes is closed with one line."""

import os
import ssl
import select
import socket
import threading
import time

import pytest

from alignment import align_streams
from egdsupport import STARTUP_BYTES, EgdClient, PeerClosed, block_requests, fifo_source

READY = r"\bready: \d+ source"


def reload(d):
    """SIGHUP, and wait until the new image is ready."""
    before = d.mark()
    os.kill(d.pid, 1)
    d.wait_log(READY, 15, start=before)
    assert d.proc.poll() is None and d.proc.pid == d.pid
    return before


def small_client(family, address, label):
    """A client with a small receive buffer, so the daemon is still writing its replies
    (requests queued, a 0x02 half answered) when the reload comes."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(address)
    return EgdClient(s, label)


def read_some(clients, bufs, until, timeout=30):
    """Read from every client until each has until[label] bytes."""
    deadline = time.monotonic() + timeout
    while any(len(bufs[c.label]) < until[c.label] for c in clients):
        assert time.monotonic() < deadline, "short: %s" % {
            k: len(v) for k, v in bufs.items()}
        want = [c for c in clients if len(bufs[c.label]) < until[c.label]]
        ready, _, _ = select.select([c.sock for c in want], [], [], 1.0)
        for c in want:
            if c.sock in ready:
                n = until[c.label] - len(bufs[c.label])
                chunk = c.sock.recv(min(n, 65536))
                if not chunk:
                    raise PeerClosed("%s: closed after %d of %d bytes"
                                     % (c.label, len(bufs[c.label]), until[c.label]))
                bufs[c.label] += chunk


@pytest.mark.time_limit(90)
def test_tcp_and_unix_clients_drawing_across_a_reload_keep_their_stream(entropyd, tmp_path):
    source, data, wfd, _ = fifo_source(tmp_path, 4 << 20)
    sock = tmp_path / "egd.sock"
    try:
        d = entropyd(sources=[source], listen=("tcp:127.0.0.1:0", "unix:%s" % sock))
        tcp = small_client(socket.AF_INET, d.ep(0).address, "tcp client")
        unix = small_client(socket.AF_UNIX, str(sock), "unix client")
        clients = [tcp, unix]
        want = 600_000
        bufs = {c.label: bytearray() for c in clients}
        for c in clients:
            c.send(block_requests(want // 2))  # pipelined: ~1200 0x02 requests each
        read_some(clients, bufs, {c.label: 50_000 for c in clients})
        # Owed ~250 KB each and blocked on a full socket: the reload comes mid-stream.
        reload(d)
        for c in clients:
            c.send(block_requests(want // 2))
        read_some(clients, bufs, {c.label: want for c in clients})
        for c in clients:
            c.assert_in_sync(d.pid)  # same connection, framing intact: 0x04 reads the pid
        placed = align_streams(data, {k: bytes(v) for k, v in bufs.items()},
                               min_offset=STARTUP_BYTES)
        assert sum(m for pcs in placed.values() for _p, _o, m in pcs) == 2 * want
        assert d.count_log(r"reload: 2 connected client\(s\) resumed") == 1
        handed = d.wait_log(r"handing 2 connected client\(s\) and 0 vhost-user")
        owed = int(handed.split("owed ")[1].split()[0])
        print(handed)
        assert owed > 10_000, "the reload did not come while the clients were owed bytes"
    finally:
        os.close(wfd)
    assert d.count_log(r"re-executing with") == 1


@pytest.mark.time_limit(40)
def test_a_command_half_sent_before_the_reload_is_answered_after_it(entropyd):
    d = entropyd()
    with d.connect() as c:
        c.send(b"\x02")
        time.sleep(0.3)  # the daemon has read (and buffered) the first byte
        reload(d)
        c.send(b"\x20")
        assert len(c.recv_exact(32, 10, "reply to the 0x02 completed after the reload")) == 32
        c.assert_in_sync(d.pid)


class QemuPeer(threading.Thread):
    """What QEMU's rng-egd does: only `02 40` requests (one per guest read), every reply
    byte counted; it never reconnects."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock = sock
        self.got = []  # (monotonic time, bytes)
        self.closed = None
        self.stop = threading.Event()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                self.sock.sendall(b"\x02\x40")
                data = self.sock.recv(4096)
                if not data:
                    self.closed = "EOF"
                    return
                self.got.append((time.monotonic(), len(data)))
            except socket.timeout:
                continue
            except OSError as e:
                self.closed = str(e)
                return
            time.sleep(0.01)

    def bytes_after(self, t):
        return sum(n for at, n in self.got if at > t)


def check_qemu_peer_survives(d, peer):
    deadline = time.monotonic() + 5
    while not peer.got and time.monotonic() < deadline:
        time.sleep(0.05)
    assert peer.got, "the QEMU-style peer got nothing before the reloads"
    for _ in range(3):
        reload(d)
    last = time.monotonic()
    deadline = last + 5
    while peer.bytes_after(last) < 640 and peer.closed is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert peer.closed is None, "the QEMU-style peer's connection ended: %s" % peer.closed
    assert peer.bytes_after(last) >= 640, "the QEMU-style peer is no longer served"


@pytest.mark.time_limit(60)
def test_a_qemu_style_peer_of_a_listener_keeps_being_served_across_reloads(entropyd):
    d = entropyd()
    s = socket.create_connection(d.ep(0).address, timeout=5)
    peer = QemuPeer(s)
    peer.start()
    try:
        check_qemu_peer_survives(d, peer)
    finally:
        peer.stop.set()
        peer.join(5)
        s.close()


@pytest.mark.time_limit(60)
def test_a_connection_entropyd_dialed_is_kept_across_reloads(entropyd):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:  # QEMU, server=on
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        d = entropyd(connect=["tcp:127.0.0.1:%d" % port])
        server.settimeout(10)
        conn, _ = server.accept()
        peer = QemuPeer(conn)
        peer.start()
        try:
            check_qemu_peer_survives(d, peer)
            server.settimeout(0.5)
            with pytest.raises(socket.timeout):
                server.accept()  # no second connection: the first one was kept
        finally:
            peer.stop.set()
            peer.join(5)
            conn.close()
        assert d.count_log(r"connection kept across the reload") == 3


@pytest.mark.time_limit(40)
def test_a_client_whose_endpoint_the_reload_removes_is_closed_with_one_line(entropyd,
                                                                           tmp_path):
    keep, gone = tmp_path / "keep.sock", tmp_path / "gone.sock"
    conf = tmp_path / "entropyd.conf"
    conf.write_text("source getrandom\nlisten unix:%s\nlisten unix:%s\n" % (keep, gone))
    d = entropyd(sources=(), listen=(), extra=["--config", str(conf)])
    d.wait_ready(["unix:%s" % keep, "unix:%s" % gone])
    with EgdClient.connect(str(keep), socket.AF_UNIX) as stays, \
            EgdClient.connect(str(gone), socket.AF_UNIX) as goes:
        assert len(goes.block(16)) == 16 and len(stays.block(16)) == 16
        conf.write_text("source getrandom\nlisten unix:%s\n" % keep)
        before = reload(d)
        goes.expect_closed(5)
        lines = [ln for ln in d.log_lines(before) if "unix:%s" % gone in ln
                 and "gone after the reload" in ln]
        assert len(lines) == 1, d.log()
        assert len(stays.block(16)) == 16
        stays.assert_in_sync(d.pid)


@pytest.mark.time_limit(60)
def test_a_tls_client_is_closed_by_the_reload_with_one_line_while_a_plain_one_stays(
        entropyd, tmp_path):
    from tlssupport import Pki, tls_connect
    pki = Pki(tmp_path)
    d = entropyd(listen=("tcp:127.0.0.1:0,tls=%s" % pki.server, "tcp:127.0.0.1:0"))
    s = tls_connect(d.ep(0).address, pki.client_context("hv1"))
    plain = d.connect(1, label="plain client")
    try:
        s.sendall(block_requests(64))
        got = b""
        while len(got) < 64:
            got += s.recv(64)
        assert len(plain.block(64)) == 64
        before = reload(d)
        s.settimeout(5)
        try:
            assert s.recv(1) == b"", "the TLS client got a byte after the reload"
        except (ssl.SSLError, OSError):
            pass  # closed without close_notify: the connection ended all the same
        lines = [ln for ln in d.log_lines(before) if "TLS connection closed by the reload" in ln]
        assert len(lines) == 1, d.log()
        assert len(plain.block(64)) == 64
        plain.assert_in_sync(d.pid)
    finally:
        s.close()
        plain.close()
