"""The control socket and entropyctl: status (plain and --json) while a client draws, get
through the control socket and through an EGD endpoint, hostile requests closing only
their own connection, --control none, the socket file's mode, and a SIGHUP reload."""

import json
import os
import signal
import socket
import stat
import time

import pytest

from ctlsupport import Drawer, entropyctl


def status(d):
    return json.loads(entropyctl("status", "--json", socket_path=d.control).stdout)


@pytest.mark.time_limit(60)
def test_status_counters_grow_and_the_drawing_client_appears_with_its_bytes(entropyd):
    d = entropyd()
    drawer = Drawer(d.ep(0).address)
    try:
        time.sleep(1.5)
        first = status(d)
        time.sleep(2.5)
        second = status(d)
        plain = entropyctl("status", socket_path=d.control).stdout
    finally:
        drawn = drawer.stop()
    print(plain)
    src1, src2 = first["sources"][0], second["sources"][0]
    assert src1["spec"] == "getrandom" and src2["state"] == "serving"
    assert src2["bytes_read"] > src1["bytes_read"]
    assert src2["bytes_passed"] > src1["bytes_passed"]
    assert src2["rate"] > 0
    mine = [c for c in second["clients"] if c["peer"] == drawer.local]
    assert len(mine) == 1, "client %s not in %r" % (drawer.local, second["clients"])
    before = [c for c in first["clients"] if c["peer"] == drawer.local][0]
    assert 0 < before["bytes_served"] < mine[0]["bytes_served"] <= drawn
    assert mine[0]["rate"] > 0 and mine[0]["throttled_bytes"] == 0
    assert mine[0]["endpoint"] == "tcp:127.0.0.1:0"
    assert second["pool"]["capacity"] == 1048576
    assert second["pool"]["delivered"] >= mine[0]["bytes_served"]
    kinds = sorted(e["kind"] for e in second["endpoints"])
    assert kinds == ["control", "tcp"]
    # The plain form: three aligned tables; the client and the source are listed.
    for head in ("Source", "Endpoint", "Client"):
        assert any(ln.startswith(head + " ") for ln in plain.splitlines()), plain
    assert drawer.local in plain and "getrandom" in plain and "serving" in plain
    lines = plain.splitlines()
    header = [ln for ln in lines if ln.startswith("Client ")][0]
    row = [ln for ln in lines if ln.startswith(drawer.local)][0]
    # Aligned: the Served column's right edge is the same in the header and the row.
    assert row.index("tcp:127.0.0.1:0") == header.index("Endpoint")


@pytest.mark.time_limit(60)
def test_get_returns_exactly_n_bytes_through_the_control_socket_and_an_egd_endpoint(
        entropyd, tmp_path):
    d = entropyd()
    out = tmp_path / "ctl.bin"
    entropyctl("get", "100000", "-o", str(out), socket_path=d.control)
    data = out.read_bytes()
    assert len(data) == 100000
    assert len(set(data)) == 256
    host, port = d.ep(0).address
    p = entropyctl("get", "70001", "--from", "tcp:%s:%d" % (host, port),
                   socket_path=d.control, binary=True)
    assert len(p.stdout) == 70001
    assert p.stdout[:4096] != data[:4096]
    # Both draws are counted as served by the daemon.
    assert status(d)["pool"]["delivered"] >= 170001


def raw_control(d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(d.control)
    return s


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        got = s.recv(65536)
        if not got:
            break
        buf += got
    return buf


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("bad,why", [
    (b"this is not json\n", "request is not a JSON object"),
    (b"[1, 2, 3]\n", "request is not a JSON object"),
    (b"{" + b" " * 8000, "request line too long"),
    (b"{\"cmd\":\"status\"" + b" " * 5000 + b"}\n", "request line too long"),
], ids=["not-json", "json-array", "no-newline", "long-line"])
def test_a_bad_request_closes_only_its_own_connection_with_one_line(entropyd, bad, why):
    d = entropyd()
    good = raw_control(d)
    hostile = raw_control(d)
    mark = d.mark()
    try:
        hostile.sendall(bad)
    except OSError:
        pass  # closed while we were still sending: that is the point
    rest = b""
    try:
        while True:
            got = hostile.recv(65536)
            if not got:
                break
            rest += got
    except ConnectionResetError:
        pass
    assert rest == b"", "the hostile connection got an answer: %r" % rest[:200]
    d.wait_log(why, start=mark)
    time.sleep(0.3)
    assert d.count_log("control .*connection closed", start=mark) == 1
    good.sendall(b'{"cmd":"status"}\n')
    reply = json.loads(read_line(good))
    assert reply["sources"][0]["spec"] == "getrandom"
    good.sendall(b'{"cmd":"nonsense"}\n')
    assert "error" in json.loads(read_line(good))
    good.close()
    hostile.close()


@pytest.mark.time_limit(30)
def test_control_none_opens_no_control_socket(entropyd, tmp_path):
    d = entropyd(extra=["--control", "none"])
    assert d.control is None
    assert d.count_log(r"\(control\)") == 0
    p = entropyctl("status", socket_path=str(tmp_path / "nothing.sock"), check=False)
    assert p.returncode == 1 and "cannot connect" in p.stderr


@pytest.mark.time_limit(30)
def test_control_socket_is_mode_0660_in_a_directory_created_for_it(entropyd, tmp_path):
    path = tmp_path / "made" / "control.sock"
    d = entropyd(extra=["--control", str(path)])
    d.wait_log(r"listening on unix:.*control\.sock \(control\)")
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert status(d)["endpoints"][-1] == {"spec": "unix:%s" % path, "kind": "control",
                                          "direction": "listen", "address": str(path),
                                          "tls": False, "state": "listening",
                                          "clients": 0}


@pytest.mark.time_limit(60)
def test_control_socket_answers_after_a_sighup_reload(entropyd):
    d = entropyd()
    ino = os.stat(d.control).st_ino
    mark = d.mark()
    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(r"ready:", start=mark, timeout=20)
    assert os.stat(d.control).st_ino == ino, "the socket was re-bound, not kept"
    assert status(d)["sources"][0]["spec"] == "getrandom"


@pytest.mark.time_limit(30)
def test_status_gives_each_endpoint_the_address_it_is_bound_to(entropyd, tmp_path):
    # A port given as 0 is the kernel's choice: status names the port a client must use.
    sock = tmp_path / "e.sock"
    d = entropyd(listen=["tcp:127.0.0.1:0", "unix:%s" % sock])
    doc = json.loads(entropyctl("status", "--json", socket_path=d.control).stdout)
    rows = {e["spec"]: e for e in doc["endpoints"]}
    host, port = d.ep().address
    assert rows["tcp:127.0.0.1:0"]["address"] == "%s:%d" % (host, port), rows
    assert rows["unix:%s" % sock]["address"] == str(sock), rows
    plain = entropyctl("status", socket_path=d.control).stdout
    assert "%s:%d" % (host, port) in plain, plain
