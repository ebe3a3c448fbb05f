"""A real x86_64 guest reads /dev/hwrng through QEMU's rng-egd from entropyd.

Each test boots the guest (TCG) and checks that the bytes the guest read are
pieces of entropyd's file source, in file order, after the bytes the start-up
health test discards. Every wait is bounded; failures print the guest console
and entropyd's stderr.
"""

from __future__ import annotations

import re
import time

import pytest

import guest
import peers
from support import GUEST_TIMEOUT, MIB, STARTUP_DISCARD, check_source, finish, wait_console

# Without the daemon's unrequested bytes on a new connection, a guest whose
# requests were lost in a restart waits for virtio-rng's rate-limit timer
# (65.5 s by default). The read must finish well before that.
RESTART_BOUND = 45.0


def _verify(res: guest.GuestResult, source: bytes, **kw) -> guest.PieceReport:
    assert res.data is not None and len(res.data) == MIB
    report = check_source(res.data, source, min_offset=STARTUP_DISCARD, **kw)
    print(f"guest read {res.nbytes} bytes in {res.read_seconds:.2f}s "
          f"({res.mb_per_s:.2f} MB/s); {report}")
    return report


def test_guest_reads_1mib_with_entropyd_listening_tcp(source_file, entropyd, guests):
    path, source = source_file
    d = entropyd("--source", f"file:{path}", "--listen", "tcp:127.0.0.1:0")
    port = d.port()
    run = guests(guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={port},reconnect=1"),
                 nbytes=MIB)
    res = finish(run)
    _verify(res, source)
    assert d.running(), "entropyd exited while serving the guest"


@pytest.mark.parametrize("order", ["qemu_first", "entropyd_first"])
def test_guest_reads_1mib_with_entropyd_connecting(source_file, entropyd, guests, order):
    path, source = source_file
    port = peers.free_port()
    backend = guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={port},server=on,wait=off")
    args = ("--source", f"file:{path}", "--connect", f"tcp:127.0.0.1:{port}")
    if order == "qemu_first":
        run = guests(backend, nbytes=MIB)
        try:
            peers.wait_listening(port, 60, run.proc)
        except peers.PeerError as e:
            pytest.fail(f"QEMU's chardev server did not listen: {e}\n{run.describe()}",
                        pytrace=False)
        d = entropyd(*args)
    else:
        # entropyd dials a port nobody listens on yet and must keep redialling.
        d = entropyd(*args, wait_ready=False)
        time.sleep(1.0)
        run = guests(backend, nbytes=MIB)
        try:
            d.wait_ready(30)
        except peers.PeerError as e:
            pytest.fail(str(e), pytrace=False)
    try:
        d.wait_line(rf"connected to tcp:127\.0\.0\.1:{port}\b", 60)
    except peers.PeerError as e:
        pytest.fail(f"entropyd never connected to QEMU: {e}", pytrace=False)
    res = finish(run)
    _verify(res, source)
    assert d.running(), "entropyd exited while serving the guest"


def test_guest_read_completes_across_entropyd_restart(source_file, entropyd, guests):
    path, source = source_file
    port = peers.free_port()
    args = ("--source", f"file:{path}", "--listen", f"tcp:127.0.0.1:{port}")
    first = entropyd(*args)
    # Read in 64 KiB chunks so the console shows progress; restart mid-read.
    run = guests(guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={port},reconnect=1"),
                 nbytes=MIB, chunk=64 << 10)
    wait_console(run, r"^E2E: PROGRESS chunks=2 ", GUEST_TIMEOUT)

    code = first.stop(timeout=10)
    assert code == 0, f"entropyd did not exit cleanly on SIGTERM (exit {code})"
    progress_at_stop = len(re.findall(r"^E2E: PROGRESS", run.console(), re.M))
    second = entropyd(*args)
    restarted = time.monotonic()

    wait_console(run, r"^E2E: READ-DONE", RESTART_BOUND)
    took = time.monotonic() - restarted
    res = finish(run)
    progress = len(re.findall(r"^E2E: PROGRESS", res.console, re.M))
    assert progress == 16 and progress_at_stop < 16, \
        f"the restart did not happen mid-read ({progress_at_stop} of 16 chunks read at stop)"
    # Each lifetime serves the file from its start: bytes may repeat across the
    # restart, so the file position may go back once.
    report = _verify(res, source, max_restarts=1)
    print(f"read finished {took:.1f}s after the restart; {progress_at_stop}/16 chunks "
          f"were read before it; {report.restarts} position reset(s)")
    assert second.running(), "the restarted entropyd exited while serving the guest"
