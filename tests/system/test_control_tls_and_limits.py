"""entropyctl get over mutual TLS (--from tcp:HOST:PORT,tls=DIR, QEMU's x509 layout) and
its one-line refusal of a server with the wrong name; the control socket's limit on open
connections; a client served through the control socket named by the socket's path."""

import json
import re
import socket
import time

import pytest

from ctlsupport import entropyctl
from tlssupport import Pki

CONTROL_MAX_CONNS = 16  # src/control.h
LOG_LIMIT_BURST = 10    # src/log.h: lines let through at once


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


def raw_control(d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(d.control)
    return s


def ask(s, req):
    """Send one request line, read one reply line (b"" if the daemon closed)."""
    try:
        s.sendall(json.dumps(req).encode() + b"\n")
    except (BrokenPipeError, ConnectionResetError):
        return b""  # closed before the request went out
    buf = b""
    while not buf.endswith(b"\n"):
        try:
            got = s.recv(65536)
        except ConnectionResetError:
            got = b""
        if not got:
            break
        buf += got
    return buf


@pytest.mark.time_limit(60)
def test_get_over_mutual_tls_returns_exactly_n_bytes(entropyd, pki, tmp_path):
    d = entropyd(listen=("tcp:127.0.0.1:0,tls=%s" % pki.server,))
    host, port = d.ep(0).address
    out = tmp_path / "tls.bin"
    entropyctl("get", "100000", "-o", str(out), "--from",
               "tcp:%s:%d,tls=%s" % (host, port, pki.clients["hv1"]), socket_path=d.control)
    data = out.read_bytes()
    assert len(data) == 100000 and len(set(data)) == 256
    # Mutual: the daemon saw (and logged) the client's certificate.
    d.wait_log(r"\(CN=hv1,O=example\): identified")


@pytest.mark.time_limit(60)
def test_get_over_tls_refuses_a_server_with_another_name_in_one_line(entropyd, pki, tmp_path):
    d = entropyd(listen=("tcp:127.0.0.1:0,tls=%s" % pki.wrongname,))
    host, port = d.ep(0).address
    out = tmp_path / "never.bin"
    p = entropyctl("get", "1000", "-o", str(out), "--from",
                   "tcp:%s:%d,tls=%s" % (host, port, pki.clients["hv1"]),
                   socket_path=d.control, check=False, timeout=40)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, p
    assert len(lines) == 1 and re.match(r"entropyctl: tcp:127\.0\.0\.1:\d+,tls=.*: TLS: .*"
                                        r"(host ?name|hostname|name mismatch)", lines[0],
                                        re.I), p.stderr
    assert not out.exists() or out.stat().st_size == 0


@pytest.mark.time_limit(60)
def test_control_connections_beyond_the_limit_are_closed_with_rate_limited_lines(entropyd):
    d = entropyd()
    held = [raw_control(d) for _ in range(CONTROL_MAX_CONNS)]
    assert b'"sources"' in ask(held[0], {"cmd": "status"})
    mark = d.mark()
    extra = 3 * CONTROL_MAX_CONNS
    for _ in range(extra):
        s = raw_control(d)
        assert ask(s, {"cmd": "status"}) == b"", "a connection over the limit was answered"
        s.close()
    d.wait_log(r"control connections are open already; connection closed", start=mark)
    time.sleep(0.3)
    lines = d.count_log(r"control connections are open already", start=mark)
    assert 1 <= lines <= LOG_LIMIT_BURST + 1, d.log()
    # Those held are still served; once one closes, a new connection is answered.
    assert b'"sources"' in ask(held[-1], {"cmd": "status"})
    held.pop().close()
    time.sleep(0.3)
    fresh = raw_control(d)
    assert b'"sources"' in ask(fresh, {"cmd": "status"})
    for s in held + [fresh]:
        s.close()


@pytest.mark.time_limit(60)
def test_client_served_through_the_control_socket_shows_the_socket_path(entropyd):
    d = entropyd()
    getter = raw_control(d)
    getter.sendall(b'{"cmd":"get","bytes":1073741824}\n')
    header = b""
    while not header.endswith(b"\n"):  # one byte at a time: the bytes follow the line
        header += getter.recv(1)
    assert json.loads(header) == {"bytes": 1 << 30}
    assert len(getter.recv(4096)) > 0
    time.sleep(0.3)
    st = json.loads(entropyctl("status", "--json", socket_path=d.control).stdout)
    mine = [c for c in st["clients"] if c["peer"].startswith("unix:")]
    assert [c["endpoint"] for c in mine] == ["unix:%s" % d.control], st["clients"]
    ctl = [e for e in st["endpoints"] if e["kind"] == "control"]
    assert ctl[0]["spec"] == "unix:%s" % d.control and ctl[0]["clients"] == 1, ctl
    plain = entropyctl("status", socket_path=d.control).stdout
    assert "mode=" not in plain, plain
    getter.close()
