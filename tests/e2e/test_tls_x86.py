"""A real x86_64 guest reads /dev/hwrng through rng-egd over TLS, in both directions, and
QEMUs that entropyd must refuse get nothing.

QEMU 7.2's own TLS (`-object tls-creds-x509`, `tls-creds=` on the socket chardev, GnuTLS)
is the peer, not a stand-in:

  * entropyd listens with `tls=DIR` (and `authz=`), QEMU connects as a TLS client with
    `endpoint=client,verify-peer=on`: the guest reads 1 MiB, every byte traced back to
    entropyd's file source. Then three QEMUs that must be refused each boot a guest that
    tries to read 64 bytes: one without TLS on the TLS port, one whose client certificate
    comes from another CA, one whose subject `authz=` does not list. Each guest gets no
    byte within REFUSED_WAIT seconds and entropyd logs the reason.
  * QEMU listens (`server=on,wait=off`, `endpoint=server,verify-peer=on`: it demands a
    client certificate), entropyd dials with `--connect tcp:…,tls=DIR`: the guest reads
    1 MiB, traced. Then a QEMU server whose certificate comes from another CA: entropyd
    refuses it, logs why, and that guest gets no byte.

Certificates are made with the `openssl` command by tests/system/tlssupport.py (a CA, a
second CA, a server certificate for IP 127.0.0.1 since QEMU checks `host=`, client
certificates CN=hv1/hv2/stranger,O=example), already in QEMU's directory layout. Every
QEMU is bounded in time and ended by its PID (guest.py); entropyd likewise (peers.py).
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

import pytest

import guest
import peers
from support import GUEST_TIMEOUT, MIB, STARTUP_DISCARD, check_source, finish, wait_console

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))
from tlssupport import Pki  # noqa: E402

# A refused guest must show nothing for this long after it starts reading 64 bytes
# (a served x86 guest gets 64 bytes in milliseconds; QEMU redials every second).
REFUSED_WAIT = 10.0
REFUSED_BYTES = 64
# How long entropyd's refusal line may take to appear once the refused QEMU is up.
LOG_WAIT = 60.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    """tlssupport's Pki plus two directories for QEMUs of "another organisation" (second
    CA). QEMU checks its own certificate against its ca-cert.pem at start-up, so their
    ca-cert.pem holds both CAs: the second (its own) and the first (to trust entropyd).
    The refusal is then entropyd's alone."""
    p = Pki(tmp_path_factory.mktemp("tls"))
    both_cas = p.ca2.cert.read_bytes() + p.ca.cert.read_bytes()
    # A QEMU client presenting CN=stranger,O=example from the second CA.
    stranger = p.base / "qemu-client-stranger"
    stranger.mkdir()
    (stranger / "ca-cert.pem").write_bytes(both_cas)
    for f in ("client-cert.pem", "client-key.pem"):
        shutil.copy(p.clients["stranger"] / f, stranger / f)
    p.qemu_stranger = stranger
    # A QEMU server certificate for 127.0.0.1 from the second CA.
    foreign = p.base / "qemu-server-foreign"
    foreign.mkdir()
    (foreign / "ca-cert.pem").write_bytes(both_cas)
    p.ca2.issue(foreign / "server-cert.pem", foreign / "server-key.pem",
                "/O=example/CN=127.0.0.1", san="IP:127.0.0.1")
    p.server_foreign = foreign
    return p


def _peer(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except peers.PeerError as e:
        pytest.fail(str(e), pytrace=False)


def _tls_client_backend(port: int, creds_dir: Path | None) -> list[str]:
    """QEMU connects to 127.0.0.1:port, as a TLS client with creds_dir (None: plain)."""
    if creds_dir is None:
        return guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={port},reconnect=1")
    return ["-object", f"tls-creds-x509,id=tls0,dir={creds_dir},endpoint=client,"
                       f"verify-peer=on",
            *guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={port},reconnect=1,"
                               f"tls-creds=tls0")]


def _tls_server_backend(port: int, creds_dir: Path) -> list[str]:
    """QEMU listens on 127.0.0.1:port as a TLS server demanding a client certificate."""
    return ["-object", f"tls-creds-x509,id=tls0,dir={creds_dir},endpoint=server,"
                       f"verify-peer=on",
            *guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={port},server=on,"
                               f"wait=off,tls-creds=tls0")]


def _verify(res: guest.GuestResult, source: bytes) -> None:
    assert res.data is not None and len(res.data) == MIB, \
        f"guest returned {None if res.data is None else len(res.data)} bytes, wanted {MIB}"
    report = check_source(res.data, source, min_offset=STARTUP_DISCARD)
    print(f"guest read {res.nbytes} bytes over TLS in {res.read_seconds:.2f}s "
          f"({res.mb_per_s:.2f} MB/s), boot {res.boot_seconds:.1f}s, "
          f"wall {res.wall_seconds:.1f}s; {report}")


def _assert_guest_gets_nothing(run: guest.GuestRun, what: str) -> None:
    """The guest started reading REFUSED_BYTES and did not finish within REFUSED_WAIT s;
    then QEMU is ended (by PID)."""
    t0 = time.monotonic()
    wait_console(run, r"^E2E: READ-START", GUEST_TIMEOUT)
    booted = time.monotonic() - t0
    time.sleep(REFUSED_WAIT)
    console = run.console()
    alive = run.proc is not None and run.proc.poll() is None
    run.kill()
    assert "READ-DONE" not in console, \
        f"{what}: the guest read {REFUSED_BYTES} bytes although it should be refused\n" \
        f"{run.describe()}"
    assert alive, f"{what}: QEMU exited on its own instead of waiting\n{run.describe()}"
    print(f"{what}: guest started reading {booted:.1f}s after QEMU started and got no byte "
          f"in {REFUSED_WAIT:g}s")


# ---------------------------------------------------------------------------
# entropyd listens with tls=, QEMU connects (endpoint=client)
# ---------------------------------------------------------------------------


def test_qemu_tls_client_guest_reads_1mib_from_entropyd_tls_listener(
        source_file, entropyd, guests, pki, tmp_path):
    path, source = source_file
    authz = tmp_path / "authz"
    authz.write_text("CN=hv1,O=example\n")
    d = entropyd("-v", "--source", f"file:{path}",
                 "--listen", f"tcp:127.0.0.1:0,tls={pki.server},authz={authz}")
    port = _peer(d.port)
    run = guests(_tls_client_backend(port, pki.clients["hv1"]), nbytes=MIB)
    res = finish(run)
    _verify(res, source)
    # The bytes went through a TLS session whose peer presented hv1's certificate.
    assert d.count_lines(r"client tcp:127\.0\.0\.1:\d+ \(CN=hv1,O=example\): identified") >= 1, \
        f"entropyd did not log the guest's QEMU as CN=hv1,O=example\n{d.describe()}"
    assert d.count_lines(r"TLS refused") == 0, f"entropyd refused something\n{d.describe()}"
    assert d.running(), "entropyd exited while serving the guest"


def test_entropyd_tls_listener_refuses_plain_foreign_ca_and_unlisted_qemus(
        source_file, entropyd, guests, pki, tmp_path):
    """Three QEMUs, one after the other, each with a guest trying to read 64 bytes."""
    path, _ = source_file
    authz = tmp_path / "authz"
    authz.write_text("CN=hv1,O=example\nCN=stranger,O=example\n")
    d = entropyd("--source", f"file:{path}",
                 "--listen", f"tcp:127.0.0.1:0,tls={pki.server},authz={authz}")
    port = _peer(d.port)
    cases = [
        # (what, QEMU's client dir or None for no TLS, entropyd's reason)
        ("QEMU without TLS on the TLS port", None,
         r"TLS refused: plain text on a TLS port"),
        ("QEMU whose client certificate is from another CA", pki.qemu_stranger,
         r"TLS refused: unknown CA"),
        ("QEMU whose subject authz= does not list", pki.clients["hv2"],
         r"TLS refused: .*subject CN=hv2,O=example not allowed by authz="),
    ]
    for what, creds, reason in cases:
        mark = len(d.lines)
        run = guests(_tls_client_backend(port, creds), nbytes=REFUSED_BYTES, dump=False)
        _assert_guest_gets_nothing(run, what)
        line = _peer(d.wait_line,
                     rf"client tcp:127\.0\.0\.1:\d+: {reason}.*served 0 bytes", LOG_WAIT,
                     start=mark)
        print(f"{what}: entropyd logged: {line.string}")
        served = [x for x in d.lines[mark:] if re.search(r"served [1-9]", x)]
        assert not served, f"{what}: entropyd served bytes: {served}"
    assert d.running(), "entropyd exited while refusing QEMUs"


# ---------------------------------------------------------------------------
# QEMU listens with tls-creds (endpoint=server), entropyd connects with tls=
# ---------------------------------------------------------------------------


def test_entropyd_tls_dialer_feeds_qemu_tls_server_guest_1mib(
        source_file, entropyd, guests, pki):
    path, source = source_file
    port = peers.free_port()
    run = guests(_tls_server_backend(port, pki.server), nbytes=MIB)
    try:
        peers.wait_listening(port, 60, proc=run.proc)
    except peers.PeerError as e:
        pytest.fail(f"{e}\n{run.describe()}", pytrace=False)
    d = entropyd("--source", f"file:{path}",
                 "--connect", f"tcp:127.0.0.1:{port},tls={pki.clients['hv1']}")
    _peer(d.wait_line, rf"connected to tcp:127\.0\.0\.1:{port}\b", 30)
    res = finish(run)
    _verify(res, source)
    assert d.count_lines(r"TLS refused|TLS handshake failed") == 0, \
        f"entropyd refused QEMU's certificate\n{d.describe()}"
    assert d.running(), "entropyd exited while serving the guest"


def test_entropyd_tls_dialer_refuses_qemu_server_with_certificate_from_another_ca(
        source_file, entropyd, guests, pki):
    path, _ = source_file
    port = peers.free_port()
    run = guests(_tls_server_backend(port, pki.server_foreign), nbytes=REFUSED_BYTES,
                 dump=False)
    try:
        peers.wait_listening(port, 60, proc=run.proc)
    except peers.PeerError as e:
        pytest.fail(f"{e}\n{run.describe()}", pytrace=False)
    d = entropyd("--source", f"file:{path}",
                 "--connect", f"tcp:127.0.0.1:{port},tls={pki.clients['hv1']}")
    _assert_guest_gets_nothing(run, "QEMU server with a certificate from another CA")
    line = _peer(d.wait_line, r"TLS refused: unknown CA", LOG_WAIT)
    print(f"entropyd logged: {line.string}")
    served = [x for x in d.lines if re.search(r"served [1-9]", x)]
    assert not served, f"entropyd served bytes to the refused server: {served}"
    print(f"entropyd dialled the refused server {d.count_lines(r'connected to tcp:')} times "
          f"and logged {len(d.lines)} lines in all")
    assert d.running(), "entropyd exited while refusing QEMU"
