"""entropyd's UDP ports are its own: no other local process may bind the same address
beside it (it would receive some guests' requests and could answer them with bytes of its
choosing), and entropyd refuses to start on an address another socket already holds."""

import re
import socket
import subprocess
import sys

from entropyd_proc import run_entropyd
from test_transports import qemu_udp_chardev, udp_client, udp_port

NOBODY = 65534

# Run as an unprivileged user: set SO_REUSEADDR, bind the address, report the outcome.
_INTRUDER = r"""
import errno, os, socket, sys
if os.getuid() == 0:
    os.setgroups([])
    os.setgid(%d)
    os.setuid(%d)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    print("bound")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
""" % (NOBODY, NOBODY)


def intruder_bind(port):
    """What an unprivileged process with SO_REUSEADDR gets when it binds 127.0.0.1:port."""
    r = subprocess.run([sys.executable, "-c", _INTRUDER, str(port)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, "intruder script failed: %s" % r.stderr
    return r.stdout.strip()


def test_udp_port_cannot_be_shared_by_another_process(entropyd):
    d = entropyd(listen=(), extra=["--listen", "udp:127.0.0.1:0"])
    port = udp_port(d)
    got = intruder_bind(port)
    assert got == "EADDRINUSE", (
        "another user's process bound entropyd's udp:127.0.0.1:%d beside it (%s)" % (port, got))
    with udp_client(port) as s:  # and entropyd still serves it
        s.send(b"\x02\x40")
        assert len(s.recv(65536)) == 64


def test_udp_connect_local_port_cannot_be_shared_by_another_process(entropyd):
    qemu, local, port = qemu_udp_chardev()
    d = entropyd(listen=(), connect=["udp:127.0.0.1:%d,local=127.0.0.1:%d" % (local, port)])
    d.wait_log(r"connected to udp:", 5)
    got = intruder_bind(port)
    assert got == "EADDRINUSE", (
        "another user's process bound the local address 127.0.0.1:%d of entropyd's udp "
        "--connect endpoint beside it (%s)" % (port, got))
    qemu.sendto(b"\x02\x40", ("127.0.0.1", port))
    data, addr = qemu.recvfrom(65536)
    assert len(data) == 64 and addr == ("127.0.0.1", port)
    qemu.close()


def test_udp_listen_on_an_address_already_held_is_refused():
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    spec = "udp:127.0.0.1:%d" % port
    try:
        r = run_entropyd(["-f", "--source", "getrandom", "--listen", spec])
    finally:
        holder.close()
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 1, "entropyd started (status %d) on a held UDP address:\n%s" % (
        r.returncode, err)
    errors = [ln for ln in err.splitlines() if "Address already in use" in ln]
    assert len(errors) == 1 and spec in errors[0], (
        "want exactly one error line naming %s and 'Address already in use':\n%s" % (spec, err))
    assert not re.search(r"\bready\b|listening on", err), err
