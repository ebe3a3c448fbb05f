"""Real x86_64 guests read /dev/hwrng through entropyd's vhost-user-rng backend.

QEMU's vhost-user-rng-pci device hands its virtqueue to entropyd, which writes
health-tested bytes straight into the guest's buffers (no QEMU rng backend in
between). Both layouts QEMU offers are tested (see guest.vhost_user_backend):

  * entropyd listens (`--listen vhost-user:PATH`), QEMU connects;
  * QEMU listens (`server=on,wait=on`), entropyd dials (`--connect
    vhost-user:PATH`) and redials: the layout in which a guest's read survives a
    restart of entropyd.

A reload (SIGHUP: entropyd re-executes itself, same PID) hands the device over to
the new image: a guest of the first layout, whose QEMU never reconnects, reads on
across three reloads. The same is checked for an rng-egd guest whose tcp chardev
has no reconnect= (test_reload_keeps_clients.py and test_vhost_reload.py check the
state handed over with Python peers; these prove it with QEMU).

Each test boots the Debian cloud-kernel guest under TCG (guest.py) and checks
that the bytes it read are pieces of entropyd's file source in file order,
after the bytes the start-up health test discards. The gaps between pieces are
bytes entropyd served that the guest's user-space read did not get: the guest
kernel's hwrng core takes some itself (at registration, then its fill thread
feeding the kernel's pool). They are printed, and bounded where one daemon
lifetime serves one guest. Where several guests share one daemon, no file
offset may reach two of them (raw-mode semantics).

The tests fail, never skip, when entropyd has no vhost-user endpoint. Every
test has a hard limit (SIGALRM) on top of the bounded waits inside; processes
are stopped by their own PIDs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

import guest
import peers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))
from egdsupport import fifo_source as fed_fifo  # noqa: E402  (a pipe a thread fills)
from support import (GUEST_TIMEOUT, MIB, STARTUP_DISCARD, assert_no_shared_offsets,
                     check_source, finish, hard_time_limit, wait_console)

KIB = 1 << 10
READ = 4 * MIB
MEMORY_MB = 256
# The guest kernel's own reads from the device while one guest reads 4 MiB: a few
# 64-byte buffers (measured: 128-256 bytes). A backend that dropped bytes, or
# served one request from two places, would leave far larger gaps.
KERNEL_TAKES_AT_MOST = 64 * KIB
# After a restart, QEMU replays the ring set-up to the redialled entropyd; the
# read must resume at once, not after virtio-rng's 65 s rate-limit timer.
RESTART_BOUND = 45.0
REDIAL_BOUND = 30.0
MULTI_TIMEOUT = max(GUEST_TIMEOUT, 500.0)
TEST_LIMIT = MULTI_TIMEOUT + 120


@pytest.fixture(autouse=True)
def _hard_limit():
    with hard_time_limit(TEST_LIMIT):
        yield


@pytest.fixture
def sockdir():
    """A short private folder for the sockets (a unix path must fit in 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="ed-vu-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _peer(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except peers.PeerError as e:
        pytest.fail(str(e), pytrace=False)


def _listening_entropyd(entropyd, src: Path, *socks: Path) -> peers.Entropyd:
    """entropyd with one `--listen vhost-user:` per socket, each socket in place."""
    args = ["--source", f"file:{src}"]
    for s in socks:
        args += ["--listen", f"vhost-user:{s}"]
    d = entropyd(*args)
    for s in socks:
        _peer(peers.wait_path, s, 10, d.proc)
    return d


def _qemu_listening_guest(guests, sock: Path, nbytes: int, **kw) -> guest.GuestRun:
    """A guest whose QEMU listens on sock and waits there for entropyd to dial."""
    run = guests(guest.vhost_user_backend(sock, MEMORY_MB, qemu_listens=True),
                 device=guest.VHOST_USER_DEVICE, memory_mb=MEMORY_MB, nbytes=nbytes, **kw)
    try:
        peers.wait_path(sock, 60, run.proc)
    except peers.PeerError as e:
        pytest.fail(f"QEMU did not create its vhost-user socket: {e}\n{run.describe()}",
                    pytrace=False)
    return run


def _qemu_connecting_guest(guests, sock: Path, nbytes: int, **kw) -> guest.GuestRun:
    return guests(guest.vhost_user_backend(sock, MEMORY_MB), device=guest.VHOST_USER_DEVICE,
                  memory_mb=MEMORY_MB, nbytes=nbytes, **kw)


def _gap_bytes(report: guest.PieceReport) -> int:
    """Bytes of the file skipped between consecutive pieces (within one lifetime)."""
    ps = report.pieces
    return sum(b.file_offset - (a.file_offset + a.length)
               for a, b in zip(ps, ps[1:]) if b.file_offset >= a.file_offset + a.length)


def _verify(res: guest.GuestResult, source: bytes, nbytes: int, name: str = "guest",
            **kw) -> guest.PieceReport:
    assert res.data is not None and len(res.data) == nbytes, \
        f"{name} returned {None if res.data is None else len(res.data)} bytes, wanted {nbytes}"
    report = check_source(res.data, source, min_offset=STARTUP_DISCARD, **kw)
    print(f"[{name}] read {res.nbytes} bytes in {res.read_seconds:.2f}s "
          f"({res.mb_per_s:.2f} MB/s), boot {res.boot_seconds:.1f}s, wall "
          f"{res.wall_seconds:.1f}s; {report}; {_gap_bytes(report)} bytes skipped between "
          f"pieces; first piece at file offset {report.pieces[0].file_offset}")
    return report


def _progress(console: str) -> int:
    return len(re.findall(r"^E2E: PROGRESS", console, re.M))


# ---------------------------------------------------------------------------
# One guest through each layout, 4 MiB
# ---------------------------------------------------------------------------


def test_vhost_user_guest_reads_4mib_with_entropyd_listening(source_file, entropyd, guests,
                                                            sockdir):
    path, source = source_file
    sock = sockdir / "vu.sock"
    d = _listening_entropyd(entropyd, path, sock)
    run = _qemu_connecting_guest(guests, sock, READ)
    res = finish(run)
    report = _verify(res, source, READ)
    assert report.pieces[0].file_offset - STARTUP_DISCARD + _gap_bytes(report) \
        <= KERNEL_TAKES_AT_MOST, "entropyd served far more bytes than the guest received"
    assert d.running(), "entropyd exited while serving the guest"


@pytest.mark.parametrize("order", ["qemu_first", "entropyd_first"])
def test_vhost_user_guest_reads_4mib_with_qemu_listening(source_file, entropyd, guests,
                                                         sockdir, order):
    path, source = source_file
    sock = sockdir / "vu.sock"
    args = ("--source", f"file:{path}", "--connect", f"vhost-user:{sock}")
    if order == "qemu_first":
        run = _qemu_listening_guest(guests, sock, READ)
        d = entropyd(*args)
    else:
        # entropyd dials a socket that does not exist yet and must keep redialling.
        d = entropyd(*args)
        time.sleep(1.0)
        run = _qemu_listening_guest(guests, sock, READ)
    wait_console(run, r"^E2E: RNG virtio_rng", REDIAL_BOUND + 60)
    res = finish(run)
    report = _verify(res, source, READ)
    assert report.pieces[0].file_offset - STARTUP_DISCARD + _gap_bytes(report) \
        <= KERNEL_TAKES_AT_MOST, "entropyd served far more bytes than the guest received"
    assert d.running(), "entropyd exited while serving the guest"


# ---------------------------------------------------------------------------
# Restart of entropyd mid-read, QEMU listening
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_vhost_user_guest_read_completes_across_entropyd_restart(source_file, entropyd,
                                                                  guests, sockdir, how):
    path, source = source_file
    sock = sockdir / "vu.sock"
    args = ("--source", f"file:{path}", "--connect", f"vhost-user:{sock}")
    run = _qemu_listening_guest(guests, sock, MIB, chunk=64 * KIB)
    first = entropyd(*args)
    wait_console(run, r"^E2E: PROGRESS chunks=2 ", GUEST_TIMEOUT)

    if how == "SIGKILL":
        first.proc.kill()
        first.stop(timeout=10)
    else:
        code = first.stop(timeout=10)
        assert code == 0, f"entropyd did not exit cleanly on SIGTERM (exit {code})"
    at_stop = _progress(run.console())
    assert run.proc.poll() is None, f"QEMU exited when entropyd went away\n{run.describe()}"
    second = entropyd(*args)
    restarted = time.monotonic()

    wait_console(run, r"^E2E: READ-DONE", RESTART_BOUND)
    took = time.monotonic() - restarted
    res = finish(run)
    assert _progress(res.console) == 16 and at_stop < 16, \
        f"the restart did not happen mid-read ({at_stop} of 16 chunks read at stop)"
    # Each lifetime serves the file from its start: the position goes back once.
    report = _verify(res, source, MIB, max_restarts=1)
    assert report.restarts == 1, "the guest got no bytes from the restarted entropyd"
    print(f"read finished {took:.1f}s after the restart ({how}); {at_stop}/16 chunks "
          f"were read before it")
    assert second.running(), "the restarted entropyd exited while serving the guest"


# ---------------------------------------------------------------------------
# Many guests on one daemon
# ---------------------------------------------------------------------------


def _big_source(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    src = tmp_path / "random-big.bin"
    src.write_bytes(data)
    return src, data


def test_vhost_user_four_guests_at_once_share_no_bytes(entropyd, guests, sockdir, tmp_path):
    """Two guests connect to one listening socket, two more listen for entropyd to
    dial them: four vhost-user devices on one daemon, 4 MiB each."""
    src, source = _big_source(tmp_path, 4 * READ + 4 * MIB)
    listen_sock = sockdir / "vu-listen.sock"
    dial = [sockdir / "vu-dial0.sock", sockdir / "vu-dial1.sock"]
    runs = {f"qemu-connects-{i}": None for i in range(2)}
    runs.update({f"qemu-listens-{i}": _qemu_listening_guest(guests, s, READ)
                 for i, s in enumerate(dial)})
    args = ["--source", f"file:{src}", "--listen", f"vhost-user:{listen_sock}"]
    for s in dial:
        args += ["--connect", f"vhost-user:{s}"]
    d = entropyd(*args)
    _peer(peers.wait_path, listen_sock, 10, d.proc)
    for i in range(2):
        runs[f"qemu-connects-{i}"] = _qemu_connecting_guest(guests, listen_sock, READ)
    results = {name: finish(run, MULTI_TIMEOUT) for name, run in runs.items()}
    received = {name: (res.data, _verify(res, source, READ, name))
                for name, res in results.items()}
    assert_no_shared_offsets(received, source)
    assert d.running(), "entropyd exited while serving four guests"


def test_vhost_user_guest_killed_mid_read_does_not_disturb_the_others(entropyd, guests,
                                                                      sockdir, tmp_path):
    """Three guests on one listening socket; one QEMU is killed (SIGKILL) mid-read. The
    other two finish, their bytes traced and disjoint, and entropyd then serves a
    new guest on the same socket."""
    src, source = _big_source(tmp_path, 8 * MIB)
    sock = sockdir / "vu.sock"
    d = _listening_entropyd(entropyd, src, sock)
    runs = {name: _qemu_connecting_guest(guests, sock, MIB, chunk=64 * KIB)
            for name in ("victim", "survivor-0", "survivor-1")}
    wait_console(runs["victim"], r"^E2E: PROGRESS chunks=2 ", MULTI_TIMEOUT)
    runs["victim"].proc.kill()
    runs["victim"].proc.wait(timeout=10)
    killed = time.monotonic()
    for name in ("survivor-0", "survivor-1"):
        assert _progress(runs[name].console()) < 16, \
            f"{name} had finished before the kill: the test proves nothing"

    results = {name: finish(runs[name], MULTI_TIMEOUT) for name in ("survivor-0", "survivor-1")}
    print(f"survivors finished {time.monotonic() - killed:.1f}s after the kill")
    received = {name: (res.data, _verify(res, source, MIB, name))
                for name, res in results.items()}
    assert_no_shared_offsets(received, source)
    assert d.running(), "entropyd exited when a guest's QEMU was killed"

    late = finish(_qemu_connecting_guest(guests, sock, 64 * KIB))
    received["late"] = (late.data, _verify(late, source, 64 * KIB, "late"))
    assert_no_shared_offsets(received, source)
    assert d.running(), "entropyd exited while serving the late guest"
    assert not d.count_lines(r"\b(abort|assert|Segmentation)"), d.describe()


# ---------------------------------------------------------------------------
# Reloads (SIGHUP) mid-read: the same process serves on, QEMU never reconnects
# ---------------------------------------------------------------------------

RELOAD_READY = r"\bready: \d+ source"
RELOADS = 3
RELOAD_CHUNKS = 16  # the read in 16 chunks; a reload after chunks 2, 5 and 8


@pytest.fixture
def fifo_source(tmp_path):
    fds = []

    def make(size: int):
        # A pipe, not a file: each new image would read a file again from its start; the
        # pipe keeps what the old image did not read, so no byte reaches a guest twice.
        spec, data, wfd, _ = fed_fifo(tmp_path, size)
        fds.append(wfd)
        return spec, data

    yield make
    for fd in fds:
        os.close(fd)


def _reload_during_read(d: peers.Entropyd, run: guest.GuestRun, resumed: str) -> None:
    """SIGHUP entropyd after chunks 2, 5 and 8 of the guest's read, each time waiting for
    the new image to be ready and to log `resumed`; the read must still be under way
    after the last one, and entropyd's PID the same."""
    pid = d.pid
    for k, after in enumerate((2, 5, 8)[:RELOADS]):
        wait_console(run, rf"^E2E: PROGRESS chunks={after} ", GUEST_TIMEOUT)
        start = len(d.lines)
        os.kill(pid, signal.SIGHUP)
        _peer(d.wait_line, RELOAD_READY, 30, start)
        _peer(d.wait_line, resumed, 10, start)
        assert d.running() and d.pid == pid, f"entropyd exited on reload {k + 1}"
        print(f"reload {k + 1} after chunk {after}: {d.lines[start:]}")
    done = _progress(run.console())
    assert done < RELOAD_CHUNKS, \
        f"the guest had read {done} of {RELOAD_CHUNKS} chunks at the last reload: too late"


def _log_at_read_done(d: peers.Entropyd, run: guest.GuestRun) -> str:
    """entropyd's log when the guest's read is done, before its QEMU powers off (and
    closes the connection)."""
    wait_console(run, r"^E2E: READ-DONE", GUEST_TIMEOUT)
    return d.stderr_text()


def test_vhost_user_guest_read_completes_across_three_reloads(entropyd, guests, sockdir,
                                                               fifo_source):
    spec, source = fifo_source(READ + 16 * MIB)
    sock = sockdir / "vu.sock"
    d = entropyd("--source", spec, "--listen", f"vhost-user:{sock}")
    _peer(peers.wait_path, sock, 10, d.proc)
    run = _qemu_connecting_guest(guests, sock, READ, chunk=READ // RELOAD_CHUNKS)
    _reload_during_read(d, run, r"reload: 1 vhost-user device\(s\) resumed")
    log = _log_at_read_done(d, run)
    res = finish(run)
    # max_restarts=0: the file position never goes back, no byte reached the guest twice.
    _verify(res, source, READ)
    assert d.running(), "entropyd exited after the reloads"
    assert len(re.findall(r"vhost-user \S+: front-end connected", log)) == 1, \
        f"QEMU connected more than once (or never)\n{d.describe()}"
    assert len(re.findall(r"connection kept across the reload", log)) == RELOADS, d.describe()
    assert not re.search(r"not resumed|connection closed|closed the connection", log), \
        d.describe()
    assert "Failed to set msg fds" not in run.qemu_output(), run.describe()


def test_egd_guest_over_tcp_without_reconnect_reads_across_three_reloads(entropyd, guests,
                                                                         fifo_source):
    spec, source = fifo_source(MIB + 16 * MIB)
    d = entropyd("-v", "--source", spec, "--listen", "tcp:127.0.0.1:0")
    port = _peer(d.port)
    # No reconnect=: a chardev that lost its connection would never get another, and
    # rng-egd would not ask again for the requests it had pending: the read would hang.
    run = guests(guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={port}"),
                 nbytes=MIB, chunk=MIB // RELOAD_CHUNKS)
    _reload_during_read(d, run, r"reload: 1 connected client\(s\) resumed")
    log = _log_at_read_done(d, run)
    res = finish(run)
    # max_restarts=0: the file position never goes back, no byte reached the guest twice.
    report = check_source(res.data, source, min_offset=STARTUP_DISCARD)
    print(f"[egd] read {res.nbytes} bytes in {res.read_seconds:.2f}s; {report}")
    assert d.running(), "entropyd exited after the reloads"
    # Each new image logs the client it resumed as connected again, under the same peer
    # address: a QEMU that had reconnected would come from another port.
    peers_seen = re.findall(r"client (\S+): connected", log)
    assert len(peers_seen) == 1 + RELOADS and len(set(peers_seen)) == 1, \
        f"QEMU connected more than once: {peers_seen}\n{d.describe()}"
    assert len(re.findall(r"reload: 1 connected client\(s\) resumed", log)) == RELOADS
    assert not re.search(r"not resumed|connection closed", log), d.describe()
