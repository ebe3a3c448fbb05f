"""A real x86_64 guest reads /dev/hwrng through every kind of entropyd endpoint.

Each test boots the Debian cloud-kernel guest under TCG (see guest.py), lets it
read /dev/hwrng (virtio-rng-pci) through entropyd over a unix socket (both
directions), UDP (both directions), a named pipe (QEMU rng-random), across a
SIGHUP re-exec, an entropyd restart and a QEMU restart, and with four guests at
once; then it checks that the guest's bytes are pieces of entropyd's file
source in file order, and where several guests share one daemon lifetime, that
no file offset reached two of them.

Every wait is bounded; every process is started by the fixtures and stopped by
its own PID. Unix sockets and pipes live in a short folder under /tmp (a unix
socket path must fit in 108 bytes; pytest's tmp_path may not).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

import guest
import peers
from support import (GUEST_TIMEOUT, MIB, STARTUP_DISCARD, assert_no_shared_offsets,
                     check_source, finish, wait_console)

KIB = 1 << 10
# Chunked reads print a PROGRESS line per chunk, so a test can act mid-read.
CHUNK = 64 * KIB
# QEMU's virtio-rng re-requests lost bytes only when its rate-limit timer fires
# (period 65,536 ms by default): a guest stuck because of a restart or reload
# would finish only after that. These bounds are well below it.
RESTART_BOUND = 45.0
RELOAD_BOUND = 30.0
# entropyd redials with a back-off of at most 5 s.
REDIAL_BOUND = 30.0
# Four TCG guests share two cores: allow each much more than one guest needs.
MULTI_TIMEOUT = max(GUEST_TIMEOUT, 400.0)
MULTI_SOURCE_SIZE = 8 << 20


@pytest.fixture
def sockdir():
    """A short private folder for unix sockets and named pipes."""
    d = Path(tempfile.mkdtemp(prefix="ed-e2e-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _peer(fn, *args, **kw):
    """Call a peers helper, turning PeerError into a test failure with the reason."""
    try:
        return fn(*args, **kw)
    except peers.PeerError as e:
        pytest.fail(str(e), pytrace=False)


def _wait_qemu(fn, run: guest.GuestRun, *args):
    """Wait on something QEMU creates (socket, port); fail with its output."""
    try:
        return fn(*args, proc=run.proc)
    except peers.PeerError as e:
        pytest.fail(f"{e}\n{run.describe()}", pytrace=False)


def _verify(res: guest.GuestResult, source: bytes, nbytes: int = MIB,
            **kw) -> guest.PieceReport:
    assert res.data is not None and len(res.data) == nbytes, \
        f"guest returned {None if res.data is None else len(res.data)} bytes, wanted {nbytes}"
    report = check_source(res.data, source, min_offset=STARTUP_DISCARD, **kw)
    print(f"guest read {res.nbytes} bytes in {res.read_seconds:.2f}s "
          f"({res.mb_per_s:.2f} MB/s), boot {res.boot_seconds:.1f}s, "
          f"wall {res.wall_seconds:.1f}s; {report}")
    return report


def _progress(console: str) -> int:
    return len(re.findall(r"^E2E: PROGRESS", console, re.M))


def _udp_chardev(port: int, localport: int) -> str:
    """QEMU binds 127.0.0.1:localport and sends its requests to 127.0.0.1:port."""
    return (f"udp,id=egd0,host=127.0.0.1,port={port},"
            f"localaddr=127.0.0.1,localport={localport}")


def _two_free_udp_ports() -> tuple[int, int]:
    a = peers.free_udp_port()
    b = peers.free_udp_port()
    while b == a:
        b = peers.free_udp_port()
    return a, b


# ---------------------------------------------------------------------------
# 1, 2: unix sockets
# ---------------------------------------------------------------------------


def test_unix_entropyd_listening(source_file, entropyd, guests, sockdir):
    path, source = source_file
    sock = sockdir / "egd.sock"
    d = entropyd("--source", f"file:{path}", "--listen", f"unix:{sock}")
    _peer(d.wait_line, rf"listening on unix:{re.escape(str(sock))}\b", 5)
    run = guests(guest.egd_backend(f"socket,id=egd0,path={sock},reconnect=1"), nbytes=MIB)
    res = finish(run)
    _verify(res, source)
    assert d.running(), "entropyd exited while serving the guest"


def test_unix_qemu_listening(source_file, entropyd, guests, sockdir):
    path, source = source_file
    sock = sockdir / "vm-rng.sock"
    run = guests(guest.egd_backend(f"socket,id=egd0,path={sock},server=on,wait=off"),
                 nbytes=MIB)
    _wait_qemu(peers.wait_path, run, sock, 60)
    d = entropyd("--source", f"file:{path}", "--connect", f"unix:{sock}")
    _peer(d.wait_line, rf"connected to unix:{re.escape(str(sock))}", 30)
    res = finish(run)
    _verify(res, source)
    assert d.running(), "entropyd exited while serving the guest"


# ---------------------------------------------------------------------------
# 3, 4: UDP
# ---------------------------------------------------------------------------


def test_udp_entropyd_listening(source_file, entropyd, guests):
    path, source = source_file
    d = entropyd("--source", f"file:{path}", "--listen", "udp:127.0.0.1:0")
    port = _peer(d.udp_port)
    localport = peers.free_udp_port()
    while localport == port:
        localport = peers.free_udp_port()
    run = guests(guest.egd_backend(_udp_chardev(port, localport)), nbytes=MIB)
    res = finish(run)
    _verify(res, source)
    assert d.running(), "entropyd exited while serving the guest"


@pytest.mark.parametrize("order", ["entropyd_first", "qemu_first"])
def test_udp_entropyd_connecting(source_file, entropyd, guests, order):
    path, source = source_file
    port, localport = _two_free_udp_ports()
    backend = guest.egd_backend(_udp_chardev(port, localport))
    args = ("--source", f"file:{path}",
            "--connect", f"udp:127.0.0.1:{localport},local=127.0.0.1:{port}")
    if order == "qemu_first":
        run = guests(backend, nbytes=MIB)
        # QEMU binds its UDP chardev before the guest boots; entropyd must be
        # bound to `port` before the guest's first request (an ICMP error
        # would end QEMU's reading for good), which the ~3 s boot leaves time for.
        _wait_qemu(peers.wait_udp_bound, run, localport, 30)
        d = entropyd(*args)
    else:
        d = entropyd(*args)
        run = guests(backend, nbytes=MIB)
    _peer(d.wait_line, rf"connected to udp:127\.0\.0\.1:{localport},", 30)
    res = finish(run)
    _verify(res, source)
    assert d.running(), "entropyd exited while serving the guest"


# ---------------------------------------------------------------------------
# 5: SIGHUP (re-exec) under a running UDP guest
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["listen", "connect"])
def test_udp_guest_survives_sighup_reexec(source_file, entropyd, guests, direction):
    """If entropyd's UDP port were unbound for an instant while QEMU sends, the
    ICMP error would make QEMU stop reading that chardev for good and the read
    would never finish; lost requests alone would stall it for ~65 s."""
    path, source = source_file
    if direction == "listen":
        d = entropyd("--source", f"file:{path}", "--listen", "udp:127.0.0.1:0")
        port = _peer(d.udp_port)
        localport = peers.free_udp_port()
        while localport == port:
            localport = peers.free_udp_port()
    else:
        port, localport = _two_free_udp_ports()
        d = entropyd("--source", f"file:{path}",
                     "--connect", f"udp:127.0.0.1:{localport},local=127.0.0.1:{port}")
    pid = d.pid
    run = guests(guest.egd_backend(_udp_chardev(port, localport)), nbytes=MIB, chunk=CHUNK)
    wait_console(run, r"^E2E: PROGRESS chunks=2 ", GUEST_TIMEOUT)

    mark = len(d.lines)
    d.proc.send_signal(signal.SIGHUP)
    progress_at_hup = _progress(run.console())
    _peer(d.wait_line, r"\bready\b", 30, start=mark)
    reloaded = time.monotonic()
    assert d.running() and d.pid == pid, "entropyd's PID changed or it exited on SIGHUP"

    wait_console(run, r"^E2E: READ-DONE", RELOAD_BOUND)
    took = time.monotonic() - reloaded
    res = finish(run)
    nchunks = MIB // CHUNK
    assert _progress(res.console) == nchunks and progress_at_hup < nchunks, \
        f"the reload did not happen mid-read ({progress_at_hup} of {nchunks} chunks read)"
    assert d.count_lines(r"re-executing") == 1, "entropyd did not log its re-exec"
    # The new image reads the file from its start: the position may go back once.
    report = _verify(res, source, max_restarts=1)
    print(f"read finished {took:.1f}s after the second `ready`; {progress_at_hup}/"
          f"{nchunks} chunks were read at SIGHUP; {report.restarts} position reset(s)")
    assert d.running() and d.pid == pid, "entropyd exited after the reload"


# ---------------------------------------------------------------------------
# 6: unix socket across an entropyd restart (QEMU reconnect=1)
# ---------------------------------------------------------------------------


def test_unix_guest_read_completes_across_entropyd_restart(source_file, entropyd, guests,
                                                           sockdir):
    path, source = source_file
    sock = sockdir / "egd.sock"
    args = ("--source", f"file:{path}", "--listen", f"unix:{sock}")
    first = entropyd(*args)
    run = guests(guest.egd_backend(f"socket,id=egd0,path={sock},reconnect=1"),
                 nbytes=MIB, chunk=CHUNK)
    wait_console(run, r"^E2E: PROGRESS chunks=2 ", GUEST_TIMEOUT)

    code = first.stop(timeout=10)
    assert code == 0, f"entropyd did not exit cleanly on SIGTERM (exit {code})"
    progress_at_stop = _progress(run.console())
    second = entropyd(*args)
    restarted = time.monotonic()

    wait_console(run, r"^E2E: READ-DONE", RESTART_BOUND)
    took = time.monotonic() - restarted
    res = finish(run)
    nchunks = MIB // CHUNK
    assert _progress(res.console) == nchunks and progress_at_stop < nchunks, \
        f"the restart did not happen mid-read ({progress_at_stop} of {nchunks} chunks read)"
    report = _verify(res, source, max_restarts=1)
    print(f"read finished {took:.1f}s after the restart; {progress_at_stop}/{nchunks} "
          f"chunks were read before it; {report.restarts} position reset(s)")
    assert second.running(), "the restarted entropyd exited while serving the guest"


# ---------------------------------------------------------------------------
# 7: entropyd redials a QEMU that was restarted
# ---------------------------------------------------------------------------


def test_entropyd_redials_across_qemu_restart(source_file, entropyd, guests):
    path, source = source_file
    port = peers.free_port()
    backend = guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={port},server=on,wait=off")
    connected = rf"connected to tcp:127\.0\.0\.1:{port}\b"
    nbytes = 256 * KIB

    run1 = guests(backend, nbytes=nbytes)
    _wait_qemu(peers.wait_listening, run1, port, 60)
    d = entropyd("--source", f"file:{path}", "--connect", f"tcp:127.0.0.1:{port}")
    _peer(d.wait_line, connected, 30)
    res1 = finish(run1)      # the guest powers off: QEMU exits, the connection drops
    assert d.running(), "entropyd exited when QEMU went away"
    assert d.count_lines(connected) == 1, "entropyd connected more than once to guest 1"

    run2 = guests(backend, nbytes=nbytes)
    started = time.monotonic()
    deadline = started + REDIAL_BOUND
    while d.count_lines(connected) < 2:
        if time.monotonic() > deadline:
            pytest.fail(f"entropyd did not redial QEMU within {REDIAL_BOUND}s of its "
                        f"restart\n{d.describe()}\n{run2.describe()}", pytrace=False)
        if not run2.proc or run2.proc.poll() is not None:
            pytest.fail(f"the second QEMU exited early\n{run2.describe()}", pytrace=False)
        time.sleep(0.1)
    redial = time.monotonic() - started
    res2 = finish(run2)

    rep1 = _verify(res1, source, nbytes=nbytes)
    rep2 = _verify(res2, source, nbytes=nbytes)
    assert_no_shared_offsets({"guest 1": (res1.data, rep1), "guest 2": (res2.data, rep2)},
                              source)
    print(f"entropyd redialled {redial:.1f}s after the second QEMU started; "
          f"{d.count_lines(connected)} `connected to` lines")
    assert d.running(), "entropyd exited while serving the second guest"


# ---------------------------------------------------------------------------
# 8: named pipe (QEMU rng-random)
# ---------------------------------------------------------------------------


def test_fifo_rng_random(source_file, entropyd, guests, sockdir):
    path, source = source_file
    fifo = sockdir / "rng.fifo"
    d = entropyd("--source", f"file:{path}", "--listen", f"fifo:{fifo}")
    _peer(d.wait_line, rf"listening on fifo:{re.escape(str(fifo))}\b", 5)
    run = guests(guest.random_backend(fifo), nbytes=MIB)
    res = finish(run)
    _verify(res, source)
    assert d.running(), "entropyd exited while serving the guest"


# ---------------------------------------------------------------------------
# 9: four guests at once over four kinds of endpoint, no byte served twice
# ---------------------------------------------------------------------------


def test_four_guests_mixed_endpoints_share_no_bytes(entropyd, guests, sockdir, tmp_path):
    source = os.urandom(MULTI_SOURCE_SIZE)
    src = tmp_path / "random8m.bin"
    src.write_bytes(source)
    sock = sockdir / "egd.sock"
    fifo = sockdir / "rng.fifo"
    d = entropyd("--source", f"file:{src}", "--listen", "tcp:127.0.0.1:0",
                 "--listen", f"unix:{sock}", "--listen", "udp:127.0.0.1:0",
                 "--listen", f"fifo:{fifo}")
    tcp_port = _peer(d.port)
    udp_port = _peer(d.udp_port)
    localport = peers.free_udp_port()
    while localport == udp_port:
        localport = peers.free_udp_port()

    backends = {
        "tcp": guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={tcp_port},reconnect=1"),
        "unix": guest.egd_backend(f"socket,id=egd0,path={sock},reconnect=1"),
        "udp": guest.egd_backend(_udp_chardev(udp_port, localport)),
        "fifo": guest.random_backend(fifo),
    }
    runs = {name: guests(b, nbytes=MIB, memory_mb=256) for name, b in backends.items()}
    results = {name: finish(run, MULTI_TIMEOUT) for name, run in runs.items()}

    received = {}
    for name, res in results.items():
        print(f"[{name}]", end=" ")
        received[name] = (res.data, _verify(res, source))
    assert_no_shared_offsets(received, source)
    assert d.running(), "entropyd exited while serving four guests"
