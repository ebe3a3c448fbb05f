"""A burst of reloads cannot kill the daemon: SIGHUP re-executes entropyd, and a SIGHUP that
arrives while the new image has no handler yet must wait (pending), not kill it and unbind
every endpoint, the UDP port QEMU sends to among them. A TCP client drawing all along is
handed over by every reload, on the same connection."""

import os
import re
import signal
import socket
import threading
import time

import pytest

from test_transports import qemu_udp_chardev, udp_client, udp_port

READY = r"\bready: \d+ source"
REEXEC = r"re-executing with \d+ listening"
TRIALS = int(os.environ.get("RELOAD_TRIALS", "6"))


class UdpGuest(threading.Thread):
    """A QEMU udp chardev stand-in that keeps sending `02 40` and notes when replies come."""

    def __init__(self, sock, port):
        super().__init__(daemon=True)
        self.sock, self.port = sock, port
        self.sock.settimeout(0.05)
        self.replies = []  # monotonic time of each 64-byte reply
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.sock.sendto(b"\x02\x40", ("127.0.0.1", self.port))
                while True:
                    data = self.sock.recv(65536)
                    if len(data) == 64:
                        self.replies.append(time.monotonic())
            except OSError:  # timeout, or an ICMP error while entropyd is gone
                pass


class TcpDrawer(threading.Thread):
    """A TCP client that keeps drawing bytes (reconnecting if a reload dropped it: each
    reload hands it over, so it should never have to)."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.addr = addr
        self.bytes = 0
        self.connections = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                with socket.create_connection(self.addr, timeout=0.5) as c:
                    self.connections += 1
                    c.settimeout(5)  # back-to-back reloads may pause it; only EOF is a drop
                    while not self.stop.is_set():
                        c.sendall(b"\x02\xff")
                        got = c.recv(4096)
                        if not got:
                            break
                        self.bytes += len(got)
            except OSError:
                time.sleep(0.01)


def egd_draw(family, addr, n=32):
    with socket.socket(family, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect(addr)
        c.sendall(bytes([2, n]))
        got = b""
        while len(got) < n:
            chunk = c.recv(n)
            assert chunk, "connection closed before %d bytes" % n
            got += chunk
        return got


@pytest.mark.time_limit(90)
def test_burst_of_sighups_never_kills_the_daemon_nor_unbinds_an_endpoint(entropyd, tmp_path):
    sock = tmp_path / "egd.sock"
    qemu, local, port = qemu_udp_chardev()
    # A source that takes 50 ms to start (as a hardware generator takes a while to open)
    # widens the stretch of each start-up before the signal handlers are in place.
    d = entropyd(sources=["exec:sleep 0.05; exec cat /dev/urandom"],
                 listen=("tcp:127.0.0.1:0", "unix:%s" % sock),
                 connect=["udp:127.0.0.1:%d,local=127.0.0.1:%d" % (local, port)],
                 extra=["--listen", "udp:127.0.0.1:0"])
    d.wait_log(r"connected to udp:", 5)
    uport = udp_port(d)
    tcp = d.ep(0).address
    guest, drawer = UdpGuest(qemu, port), TcpDrawer(tcp)
    guest.start()
    drawer.start()
    try:
        for _ in range(100):
            os.kill(d.pid, signal.SIGHUP)
            time.sleep(0.01)
        burst_end = time.monotonic()
        assert d.proc.poll() is None, "entropyd died during the burst of SIGHUPs (%s)" % (
            d.state())
        # Pending SIGHUPs merge: wait until the last reload said `ready` and no other follows.
        deadline = time.monotonic() + 60
        while True:
            assert d.proc.poll() is None, "entropyd died after the burst (%s)" % d.state()
            reexecs, readies = d.count_log(REEXEC), d.count_log(READY)
            if readies == reexecs + 1:
                time.sleep(0.5)
                if d.count_log(REEXEC) == reexecs and d.count_log(READY) == readies:
                    break
            assert time.monotonic() < deadline, (
                "reloads did not settle within 60 s (%d re-execs, %d ready lines)"
                % (reexecs, readies))
            time.sleep(0.1)
        print("%d reloads for 100 SIGHUPs; TCP client drew %d bytes on %d connection(s)"
              % (reexecs, drawer.bytes, drawer.connections))
        assert reexecs >= 1
        assert drawer.connections == 1, (
            "the TCP client had to reconnect %d times: reloads dropped it"
            % (drawer.connections - 1))
        # The UDP guest keeps being answered after the burst, by the same socket.
        deadline = time.monotonic() + 5
        while not any(t > burst_end for t in guest.replies) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(t > burst_end for t in guest.replies), (
            "the udp --connect peer got no answer after the burst")
    finally:
        guest.stop.set()
        drawer.stop.set()
        guest.join(5)
        drawer.join(5)
        qemu.close()
    assert d.proc.poll() is None and d.proc.pid == d.pid
    assert len(egd_draw(socket.AF_INET, tcp)) == 32
    assert len(egd_draw(socket.AF_UNIX, str(sock))) == 32
    with udp_client(uport) as u:
        u.send(b"\x02\x40")
        assert len(u.recv(65536)) == 64


@pytest.mark.time_limit(120)
def test_source_threads_end_before_a_reload_moves_descriptors(entropyd):
    """The re-exec moves the kept sockets to descriptors 3, 4, ...: in the first image a
    source's descriptor is among them. A source thread still reading then read a socket
    (`Invalid argument`), called the source exhausted and closed the descriptor, which was a
    kept socket by then, so the new image lost that endpoint (under ASan: 1 run in 3 of the
    sandbox reload test). Fresh daemons, each reloaded once while a client drains the source
    as fast as it reads; every endpoint must answer afterwards, with no source error."""
    for trial in range(TRIALS):
        d = entropyd(sources=["file:/dev/urandom"], listen=["tcp:127.0.0.1:0"] * 5)
        drawer = TcpDrawer(d.ep(0).address)
        drawer.start()
        try:
            deadline = time.monotonic() + 10
            while drawer.bytes < 1 << 20:
                assert time.monotonic() < deadline, "the drawer got only %d bytes" % drawer.bytes
                time.sleep(0.01)
            before = d.mark()
            os.kill(d.pid, signal.SIGHUP)
            d.wait_log(READY, 15, start=before)
        finally:
            drawer.stop.set()
            drawer.join(5)
        bad = [ln for ln in d.log_lines(before)
               if re.search(r"read from|exhausted|cannot bind|Bad file", ln)]
        assert not bad, "reload %d: %s\n%s" % (trial, bad, d.log())
        for i in range(5):
            assert len(egd_draw(socket.AF_INET, d.ep(i).address)) == 32, (i, d.log())
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(d.control)  # the control socket is still listening
        d.stop()
