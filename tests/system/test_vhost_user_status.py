"""vhost-user devices (VMs) in the status model: a row per device in `entropyctl status`,
/api/status and /metrics, with its peer, endpoint, bytes served, rate and state; bytes
written into chains before the guest broke its ring are counted as served; a front-end that
stops inside a message is closed after 10 s, as an EGD client inside a command is."""

import json
import os
import re
import socket
import struct
import subprocess
import time
import urllib.request

import pytest

import vhostfront as vf
from ctlsupport import entropyctl, http_port


def fetch(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.read()


def status(d):
    return json.loads(entropyctl("status", "--json", socket_path=d.control).stdout)


def vm_rows(st):
    return [c for c in st["clients"] if c.get("kind") == "vm"]


def start(entropyd, tmp_path, http=False):
    path = tmp_path / "vu.sock"
    extra = ["--listen", "http:127.0.0.1:0"] if http else []
    return entropyd(sources=["getrandom"], listen=["vhost-user:%s" % path], extra=extra), path


@pytest.mark.time_limit(60)
def test_vm_appears_in_status_api_and_metrics_with_its_served_bytes(entropyd, tmp_path):
    d, path = start(entropyd, tmp_path, http=True)
    port = http_port(d)
    f = vf.Front.connect(path)
    try:
        f.setup(event_idx=True)
        total = 0
        until = time.monotonic() + 2.5  # across two samples of the 1 s meter
        while time.monotonic() < until:
            total += len(f.read_bytes(1024, chunk=256))
            time.sleep(0.05)
        st = status(d)
        plain = entropyctl("status", socket_path=d.control).stdout
        api = json.loads(fetch(port, "/api/status"))
        metrics = fetch(port, "/metrics")
    finally:
        f.close()
    rows = vm_rows(st)
    assert len(rows) == 1, st["clients"]
    vm = rows[0]
    assert re.fullmatch(r"vhost-user:%s#\d+" % re.escape(str(path)), vm["peer"]), vm
    assert vm["endpoint"] == "vhost-user:%s" % path
    assert vm["bytes_served"] == total
    assert vm["state"] == "running"
    assert vm["rate"] > 0 and vm["throttled_bytes"] == 0
    assert 0 < time.time() - vm["connected_since"] < 30
    ep = [e for e in st["endpoints"] if e["kind"] == "vhost-user"][0]
    assert ep["clients"] == 1
    assert st["pool"]["delivered"] >= total
    # The plain table cuts long cells: the row starts with the peer and ends with its state.
    assert [ln for ln in plain.splitlines()
            if ln.startswith("vhost-user:") and ln.rstrip().endswith(" running")], plain
    assert [c["peer"] for c in vm_rows(api)] == [vm["peer"]]
    check = subprocess.run(["promtool", "check", "metrics"], input=metrics,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    line = 'entropyd_client_bytes_served_total{peer="%s",endpoint="vhost-user:%s"} ' % (
        vm["peer"], path)
    found = [ln for ln in metrics.decode().splitlines() if ln.startswith(line)]
    assert found and int(found[0].split()[-1]) == total, metrics.decode()


@pytest.mark.time_limit(60)
def test_vm_state_is_stopped_when_the_ring_stops_and_broken_when_the_guest_breaks_it(
        entropyd, tmp_path):
    d, path = start(entropyd, tmp_path)
    f = vf.Front.connect(path)
    try:
        f.setup()
        f.read_bytes(64)
        assert [r["state"] for r in vm_rows(status(d))] == ["running"]
        f.send(vf.GET_VRING_BASE, struct.pack("<II", 0, 0))
        f.reply(vf.GET_VRING_BASE)
        assert [r["state"] for r in vm_rows(status(d))] == ["stopped"]
        f.close()
        d.wait_log(r"front-end closed the connection")
        f = vf.Front.connect(path)
        f.setup()
        f.write_desc(vf.DESC, 0, f.buf_gpa(0), 64, 0)  # read-only: the guest breaks it
        f.publish(0)
        d.wait_log(r"the guest broke the ring")
        assert [r["state"] for r in vm_rows(status(d))] == ["broken"]
    finally:
        f.close()


@pytest.mark.time_limit(60)
def test_bytes_written_before_the_guest_breaks_its_ring_are_counted_as_served(
        entropyd, tmp_path):
    d, path = start(entropyd, tmp_path)
    f = vf.Front.connect(path)
    try:
        f.setup()
        # Two chains made available with one kick: a good one of 64 bytes, then a
        # read-only buffer that breaks the ring after the first was filled.
        f.write_desc(vf.DESC, 0, f.buf_gpa(0), 64, vf.D_WRITE)
        f.write_desc(vf.DESC, 1, f.buf_gpa(1), 64, 0)
        struct.pack_into("<HH", f.mem, vf.AVAIL + 4, 0, 1)
        struct.pack_into("<H", f.mem, vf.AVAIL + 2, 2)
        os.eventfd_write(f.kick, 1)
        d.wait_log(r"the guest broke the ring \(read-only buffer.*served 64 bytes")
        assert f.used_idx() == 1 and f.used_elem(0) == (0, 64)
        assert f.wait_call(5), "the guest was not told about the chain that was used"
        assert [r["bytes_served"] for r in vm_rows(status(d))] == [64]
    finally:
        f.close()
    d.wait_log(r"front-end closed the connection \(served 64 bytes\)")


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("part,sent", [("header", 6), ("payload", 15)])
def test_front_end_that_stops_inside_a_message_is_closed_after_10_s(entropyd, tmp_path,
                                                                    part, sent):
    d, path = start(entropyd, tmp_path)
    good = vf.Front.connect(path)
    slow = vf.Front.connect(path)
    try:
        good.setup()
        msg = struct.pack("<III", vf.SET_FEATURES, 1, 8) + struct.pack("<Q", vf.F_VERSION_1)
        t0 = time.monotonic()
        slow.sock.sendall(msg[:sent])
        line = d.wait_log(r"vhost-user vhost-user:.*#\d+: sent %d byte\(s\) of a message and "
                          r"not the rest in 10 s; connection closed" % sent, timeout=20)
        waited = time.monotonic() - t0
        assert 9.5 <= waited <= 15, "closed after %.1f s: %s" % (waited, line)
        slow.sock.settimeout(5)
        assert slow.sock.recv(1) == b"", "the connection was not closed"
        assert d.count_log(r"not the rest in 10 s") == 1
        assert len(good.read_bytes(256)) == 256  # the other front-end is still served
    finally:
        good.close()
        slow.close()


@pytest.mark.time_limit(60)
def test_dialed_vm_is_a_row_with_its_descriptor_and_its_endpoint_is_connected(entropyd,
                                                                             tmp_path):
    sock_path = tmp_path / "qemu.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock_path))
    srv.listen(1)
    srv.settimeout(15)
    d = entropyd(sources=["getrandom"], listen=(), connect=["vhost-user:%s" % sock_path])
    conn, _ = srv.accept()
    f = vf.Front(conn)
    try:
        f.setup()
        got = len(f.read_bytes(2048, chunk=256))
        st = status(d)
    finally:
        f.close()
        srv.close()
    rows = vm_rows(st)
    assert len(rows) == 1, st["clients"]
    assert re.fullmatch(r"vhost-user:%s#\d+" % re.escape(str(sock_path)), rows[0]["peer"])
    assert rows[0]["bytes_served"] == got and rows[0]["state"] == "running"
    ep = [e for e in st["endpoints"] if e["kind"] == "vhost-user"][0]
    assert ep["state"] == "connected" and ep["clients"] == 1, ep
