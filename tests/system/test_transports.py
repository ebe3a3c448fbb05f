"""UDP and named-pipe endpoints, SIGHUP re-execution and socket activation, on the real
binary. Endpoints other than tcp/unix are passed through `extra` and found in the log."""

import os
import re
import socket
import struct
import subprocess
import time

import pytest

from entropyd_proc import ENTROPYD, require_binary

UDP_MAX = 4096


def udp_port(d, host="127.0.0.1"):
    rx = r"listening on udp:%s:(\d+)" % re.escape(host)
    return int(re.search(rx, d.wait_log(rx, 10)).group(1))


def udp_client(port, bind=("127.0.0.1", 0), timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(bind)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def recv_total(s, total, deadline_s=10.0):
    """Receive datagrams until `total` bytes arrived; returns the list of datagram sizes."""
    sizes, got = [], 0
    end = time.monotonic() + deadline_s
    while got < total:
        s.settimeout(max(0.05, end - time.monotonic()))
        d = s.recv(65536)
        sizes.append(len(d))
        got += len(d)
    return sizes


def qemu_udp_chardev():
    """A socket standing in for QEMU's udp chardev (bound at localport), and a free port for
    entropyd's side (QEMU's host:port). Returns (socket, localport, port)."""
    qemu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    qemu.bind(("127.0.0.1", 0))
    qemu.settimeout(5)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return qemu, qemu.getsockname()[1], port


def test_udp_answers_every_command_never_more_than_asked(entropyd):
    d = entropyd(listen=(), extra=["--listen", "udp:127.0.0.1:0"])
    with udp_client(udp_port(d)) as s:
        s.send(b"\x02\x40")
        assert len(s.recv(65536)) == 64
        for _ in range(20):
            s.send(b"\x02\xff")
        sizes = recv_total(s, 20 * 255)
        assert sum(sizes) == 20 * 255, "more bytes than asked: %r" % sizes
        assert max(sizes) <= UDP_MAX
        s.send(b"\x01\x10")
        reply = s.recv(65536)
        assert reply[0] <= 16 and len(reply) == 1 + reply[0]
        s.send(b"\x00")
        assert len(s.recv(65536)) == 4
        s.send(b"\x04")
        reply = s.recv(65536)
        assert reply[1:].decode() == str(d.pid)
        # nothing more arrives: every answer was exactly what was asked
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(65536)


def test_udp_requests_from_peers_outside_allow_list_are_ignored(entropyd):
    d = entropyd(listen=(), extra=["--listen", "udp:127.0.0.1:0,allow=127.0.0.2"])
    port = udp_port(d)
    with udp_client(port, bind=("127.0.0.1", 0), timeout=1.0) as s:
        s.send(b"\x02\xff")
        with pytest.raises(socket.timeout):
            s.recv(65536)
    d.wait_log(r"datagram from 127\.0\.0\.1 ignored", 5)
    with udp_client(port, bind=("127.0.0.2", 0)) as s:
        s.send(b"\x02\x40")
        assert len(s.recv(65536)) == 64


def test_udp_connect_serves_one_fixed_peer_like_qemu(entropyd):
    # QEMU's `-chardev udp,host=127.0.0.1,port=P,localaddr=127.0.0.1,localport=L`: QEMU
    # sits at L, sends to P and accepts replies only from P.
    qemu, local, port = qemu_udp_chardev()
    d = entropyd(listen=(), connect=["udp:127.0.0.1:%d,local=127.0.0.1:%d" % (local, port)])
    d.wait_log(r"connected to udp:", 5)
    qemu.sendto(b"\x02\x40" * 4, ("127.0.0.1", port))
    got = 0
    while got < 256:
        data, addr = qemu.recvfrom(65536)
        assert addr == ("127.0.0.1", port), "reply from %r, not from the chardev's peer" % (addr,)
        got += len(data)
    assert got == 256
    qemu.close()


def test_fifo_endpoint_is_kept_full_for_each_reader(entropyd, tmp_path):
    path = tmp_path / "rng.fifo"
    d = entropyd(listen=(), extra=["--listen", "fifo:%s" % path])
    d.wait_log(r"listening on fifo:", 5)
    assert path.is_fifo()
    for _ in range(3):  # readers come and go (QEMU restarts): the pipe stays usable
        with open(path, "rb") as f:
            data = f.read(1 << 20)
        assert len(data) == 1 << 20
    time.sleep(0.2)
    assert "connection closed" not in d.log()


def test_sighup_reexecutes_keeping_every_listening_socket(entropyd, tmp_path):
    sock = tmp_path / "egd.sock"
    d = entropyd(listen=("tcp:127.0.0.1:0", "unix:%s" % sock),
                 extra=["--listen", "udp:127.0.0.1:0"])
    port = udp_port(d)
    tcp = d.ep(0).address
    before = d.mark()
    with udp_client(port) as u, socket.create_connection(tcp, timeout=5) as held:
        held.sendall(b"\x04")
        assert held.recv(16)[1:].decode() == str(d.pid)
        os.kill(d.pid, 1)  # SIGHUP
        # tcp, unix, udp and the control socket
        d.wait_log(r"re-executing with 4 listening", 10, start=before)
        d.wait_log(r"4 listening socket\(s\) or pipe\(s\) passed in", 10, start=before)
        d.wait_log(r"\bready\b", 10, start=before)
        assert d.proc.poll() is None, "entropyd exited instead of re-executing"
        # the connected client is handed over: the same connection answers, in sync
        held.settimeout(5)
        held.sendall(b"\x04")
        assert held.recv(16)[1:].decode() == str(d.pid), "the held client lost its connection"
        # the same UDP socket answers: QEMU's udp chardev would never notice
        u.send(b"\x02\x40")
        assert len(u.recv(65536)) == 64
    for addr, fam in ((tcp, socket.AF_INET), (str(sock), socket.AF_UNIX)):
        with socket.socket(fam, socket.SOCK_STREAM) as c:
            c.settimeout(5)
            c.connect(addr)
            c.sendall(b"\x02\x20")
            got = b""
            while len(got) < 32:
                got += c.recv(64)
            assert len(got) == 32
    assert sock.exists(), "the unix socket file was removed by the re-exec"


def test_socket_activation_adopts_the_passed_socket():
    require_binary()
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    port = lst.getsockname()[1]
    # As systemd passes it: the socket is fd 3, LISTEN_FDS=1, LISTEN_PID = the daemon's
    # pid (the shell's, which exec keeps).
    script = ('LISTEN_FDS=1 LISTEN_PID=$$ exec "$0" -f --source getrandom '
              '--listen tcp:127.0.0.1:%d --control none 3<&%d' % (port, lst.fileno()))
    proc = subprocess.Popen(["/bin/bash", "-c", script, ENTROPYD], pass_fds=(lst.fileno(),),
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "ready" in line:
                break
        log = "\n".join(lines)
        assert "1 listening socket(s) or pipe(s) passed in" in log, log
        assert "ready" in log, log
        lst.close()  # entropyd serves from its own copy of the passed socket
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"\x02\x40")
            got = b""
            while len(got) < 64:
                got += c.recv(64)
        assert len(got) == 64
    finally:
        proc.terminate()
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(10)
    assert rc == 0, "entropyd exited with %s after SIGTERM" % rc


def test_level_reply_over_udp_is_big_endian_bits(entropyd):
    d = entropyd(listen=(), extra=["--listen", "udp:127.0.0.1:0"])
    with udp_client(udp_port(d)) as s:
        deadline = time.monotonic() + 5
        bits = 0
        while bits == 0 and time.monotonic() < deadline:
            s.send(b"\x00")
            (bits,) = struct.unpack(">I", s.recv(65536))
            time.sleep(0.05)
        assert bits % 8 == 0 and 0 < bits <= 8 * (1 << 20)


def test_udp_connect_socket_survives_sighup(entropyd):
    # The port QEMU sends to must never be unbound: after a re-exec the same socket answers.
    qemu, local, port = qemu_udp_chardev()
    d = entropyd(listen=(), connect=["udp:127.0.0.1:%d,local=127.0.0.1:%d" % (local, port)])
    d.wait_log(r"connected to udp:", 5)
    qemu.sendto(b"\x02\x40", ("127.0.0.1", port))
    assert len(qemu.recv(65536)) == 64
    before = d.mark()
    os.kill(d.pid, 1)  # SIGHUP
    # the udp socket and the control socket
    d.wait_log(r"2 listening socket\(s\) or pipe\(s\) passed in", 10, start=before)
    d.wait_log(r"\bready\b", 10, start=before)
    qemu.sendto(b"\x02\x40", ("127.0.0.1", port))
    data, addr = qemu.recvfrom(65536)
    assert len(data) == 64 and addr == ("127.0.0.1", port)
    qemu.close()
