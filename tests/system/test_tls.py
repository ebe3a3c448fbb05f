"""TLS (tls=DIR, verify-peer=, authz=; egd: sources with tls=): who is served, who is
refused with one log line and no byte, and that bytes over TLS still reach one client
each. Certificates are made by the `openssl` command in tmp_path (tlssupport.py)."""

import re
import signal
import socket
import ssl
import threading
import time

import pytest

from alignment import align_streams
from egdsupport import STARTUP_BYTES, block_requests, req_block, req_pid
from tlssupport import Pki, recv_exact, refused_attempt, tls_connect


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


def pid_reply(d):
    return bytes([len(str(d.pid))]) + str(d.pid).encode()


def test_tls_client_with_allowed_certificate_gets_exactly_its_bytes_while_plain_client_is_served(
        entropyd, pki, tmp_path):
    authz = tmp_path / "authz"
    authz.write_text("# hypervisors allowed\n\n%s\nCN=hv2,O=example\n" % pki.subject("hv1"))
    d = entropyd(listen=("tcp:127.0.0.1:0,tls=%s,authz=%s" % (pki.server, authz),
                         "tcp:127.0.0.1:0"))
    s = tls_connect(d.ep(0).address, pki.client_context("hv1"))
    plain = d.connect(1, label="plain client")
    try:
        s.sendall(block_requests(100000) + req_pid())
        plain.send(block_requests(50000) + req_pid())
        got = recv_exact(s, 100000 + len(pid_reply(d)))
        assert got[100000:] == pid_reply(d), "the TLS client got a byte too many or too few"
        assert plain.recv_exact(50000 + len(pid_reply(d)))[50000:] == pid_reply(d)
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        assert len(set(got[:100000])) > 200, "not random-looking bytes"
        d.wait_log(r"client tcp:127\.0\.0\.1:%d \(CN=hv1,O=example\): identified"
                   % s.getsockname()[1])
    finally:
        s.close()
        plain.close()


@pytest.mark.parametrize("who,reason", [
    ("plain", r"plain text on a TLS port"),
    ("stranger", r"unknown CA"),
    ("old", r"expired certificate"),
    ("revoked", r"revoked certificate"),
    ("hv2", r"subject CN=hv2,O=example not allowed by authz="),
])
def test_refused_tls_peer_gets_no_byte_and_one_log_line_and_others_are_untouched(
        entropyd, pki, tmp_path, who, reason):
    authz = tmp_path / "authz"
    authz.write_text("subject=CN=hv1,O=example\nCN=old,O=example\nCN=revoked,O=example\n"
                     "CN=stranger,O=example\n")
    d = entropyd(listen=("tcp:127.0.0.1:0,tls=%s,authz=%s" % (pki.server, authz),))
    good = tls_connect(d.ep().address, pki.client_context("hv1"))
    try:
        good.sendall(req_block(100))
        recv_exact(good, 100)
        ctx = None if who == "plain" else pki.client_context(who)
        port, got, _err = refused_attempt(d.ep().address, ctx)
        assert got == b"", "a refused peer (%s) received %d bytes" % (who, len(got))
        line = r"client tcp:127\.0\.0\.1:%d: TLS refused: .*%s" % (port, reason)
        d.wait_log(line)
        time.sleep(0.2)
        lines = [x for x in d.log_lines() if ":%d" % port in x and "connected (" not in x]
        assert len(lines) == 1, "expected one line about the refused peer, got %r" % lines
        assert "served 0 bytes" in lines[0]
        # The client that was already there goes on as before.
        good.sendall(block_requests(20000) + req_pid())
        assert recv_exact(good, 20000 + len(pid_reply(d)))[20000:] == pid_reply(d)
    finally:
        good.close()


def tls_server(ctx, serve):
    """A TLS server on 127.0.0.1 (QEMU server=on with tls-creds, verify-peer=on) that runs
    serve(tls_socket) for its first connection in a thread; returns (port, thread, box):
    box["error"] holds a handshake failure."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(15)
    box = {}

    def run():
        try:
            conn, _ = ls.accept()
            try:
                s = ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as e:
                box["error"] = e
                conn.close()
                return
            with s:
                box["peer"] = s.getpeercert()
                serve(s)
        except Exception as e:  # reported by the test
            box.setdefault("error", e)
        finally:
            ls.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return ls.getsockname()[1], t, box


def test_connect_with_tls_reaches_a_tls_server_that_requires_a_client_certificate(
        entropyd, pki):
    def serve(s):
        s.sendall(block_requests(65536) + req_pid())
        box["got"] = recv_exact(s, 65536)
        box["pid"] = recv_exact(s, 2)

    port, t, box = tls_server(pki.server_context(), serve)
    d = entropyd(connect=("tcp:127.0.0.1:%d,tls=%s" % (port, pki.clients["hv1"]),))
    t.join(20)
    assert "error" not in box, "the TLS server failed: %r" % box.get("error")
    assert len(box["got"]) == 65536
    assert box["pid"][0] == len(str(d.pid))
    subject = dict(x[0] for x in box["peer"]["subject"])
    assert subject["commonName"] == "hv1", "entropyd did not present client-cert.pem"


def test_connect_with_tls_refuses_a_server_whose_certificate_names_another_host(
        entropyd, pki):
    served = []

    def serve(s):
        s.sendall(block_requests(64))
        s.settimeout(3)
        try:
            served.append(s.recv(64))
        except (ssl.SSLError, OSError):
            pass

    port, t, box = tls_server(pki.server_context(pki.wrongname), serve)
    d = entropyd(connect=("tcp:127.0.0.1:%d,tls=%s" % (port, pki.clients["hv1"]),))
    d.wait_log(r"TLS refused: wrong host name .*IP address mismatch")
    t.join(15)
    assert not any(served), "a server with the wrong name received %r" % served


def test_egd_source_over_tls_delivers_the_upstream_file_bytes(entropyd, pki, random_file):
    path, data = random_file(1 << 20)
    up = entropyd(sources=["file:%s" % path],
                  listen=("tcp:127.0.0.1:0,tls=%s" % pki.server,))
    host, port = up.ep().address
    down = entropyd(sources=["egd:tcp:%s:%d,tls=%s" % (host, port, pki.clients["hv1"])])
    with down.connect() as c:
        got = c.block(200000, timeout=30)
    # Every byte is the upstream's file, after its start-up bytes, each at most once.
    placed = align_streams(data, {"downstream": got}, min_offset=STARTUP_BYTES)
    assert sum(m for _p, _o, m in placed["downstream"]) == 200000
    up.wait_log(r"\(CN=hv1,O=example\): identified")


def test_egd_source_over_tls_refuses_an_upstream_with_the_wrong_host_name(entropyd, pki):
    up = entropyd(listen=("tcp:127.0.0.1:0,tls=%s" % pki.wrongname,))
    host, port = up.ep().address
    down = entropyd(sources=["egd:tcp:%s:%d,tls=%s" % (host, port, pki.clients["hv1"])],
                    listen=("tcp:127.0.0.1:0",))
    down.wait_log(r"egd.*TLS refused: wrong host name")


@pytest.mark.time_limit(240)
def test_two_tls_clients_with_pipelined_requests_never_receive_the_same_byte(
        entropyd, pki, random_file):
    path, data = random_file(9 << 20)
    d = entropyd(sources=["file:%s" % path],
                 listen=("tcp:127.0.0.1:0,tls=%s" % pki.server,))
    want = 4 << 20
    got = {}
    errors = []

    def client(name):
        try:
            s = tls_connect(d.ep().address, pki.client_context(name), timeout=30,
                            rcvbuf=32768 if name == "hv1" else None)
            with s:
                # One sendall, padded with `02 00` (asks for nothing) to whole 16 KiB
                # records: the last record, which holds the two pid requests, is read
                # 1 KiB at a time while the socket is empty: the rest waits decrypted
                # inside OpenSSL and must be read without the descriptor's help.
                reqs = block_requests(want)
                pad = (-(len(reqs) + 2)) % 16384
                s.sendall(reqs + req_block(0) * (pad // 2) + req_pid() * 2)
                if name == "hv1":
                    # A slow reader at first: its socket fills, and SSL_write must hold a
                    # record it could not finish while the other client is served.
                    time.sleep(1.0)
                got[name] = recv_exact(s, want + 2 * len(pid_reply(d)), timeout=60)
        except Exception as e:
            errors.append("%s: %r" % (name, e))

    threads = [threading.Thread(target=client, args=(n,)) for n in ("hv1", "hv2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(170)
    assert not errors, errors
    for name in ("hv1", "hv2"):
        assert got[name][want:] == pid_reply(d) * 2, "%s: out of step" % name
    streams = {n: got[n][:want] for n in ("hv1", "hv2")}
    placed = align_streams(data, streams, min_offset=STARTUP_BYTES)
    pieces = sum(len(p) for p in placed.values())
    # How the two streams interleave depends on timing (the slow reader may get its share
    # after the other finished): what must hold is that every byte went to one client once.
    print("2 TLS clients: %d bytes in %d pieces" % (2 * want, pieces))


def test_tls_options_are_checked_at_start(pki, tmp_path):
    from entropyd_proc import run_entropyd
    cases = [
        ("tcp:127.0.0.1:0,tls=%s" % (tmp_path / "none"), r"cannot load .*ca-cert\.pem"),
        ("tcp:127.0.0.1:0,authz=%s" % (tmp_path / "a"), r"authz= needs tls=DIR"),
        ("tcp:127.0.0.1:0,tls=%s,authz=%s" % (pki.server, tmp_path / "missing"),
         r"authz=.*No such file"),
        ("unix:%s,tls=%s" % (tmp_path / "s", pki.server), r"tls= applies to tcp"),
    ]
    for spec, msg in cases:
        r = run_entropyd(["-n", "--source", "getrandom", "--listen", spec])
        out = r.stderr.decode("utf-8", "replace")
        assert r.returncode != 0 and re.search(msg, out), (spec, r.returncode, out)


def test_authz_file_is_read_again_at_sighup(entropyd, pki, tmp_path):
    authz = tmp_path / "authz"
    authz.write_text("%s\n" % pki.subject("hv1"))
    d = entropyd(listen=("tcp:127.0.0.1:0,tls=%s,authz=%s" % (pki.server, authz),))
    _, got, _err = refused_attempt(d.ep().address, pki.client_context("hv2"))
    assert got == b""
    d.wait_log(r"subject CN=hv2,O=example not allowed by authz=")
    # The operator allows hv2 and reloads: the re-executed daemon reads the file again.
    authz.write_text("%s\n%s\n" % (pki.subject("hv1"), pki.subject("hv2")))
    mark = d.mark()
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(r"\bready\b", 20, start=mark)
    s = tls_connect(d.ep().address, pki.client_context("hv2"))
    try:
        s.sendall(req_block(100) + req_pid())
        assert recv_exact(s, 100 + len(pid_reply(d)))[100:] == pid_reply(d)
    finally:
        s.close()
