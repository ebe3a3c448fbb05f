"""A real ppc64 pseries guest reads /dev/hwrng (pseries-rng, H_RANDOM) from entropyd.

QEMU's spapr-rng device answers each 8-byte H_RANDOM hypercall from an rng
backend. Two ways for entropyd to be that backend are tested, each checking
that the bytes the guest read are pieces of entropyd's file source, in file
order, after the bytes the start-up health test discards:

  * rng-random on entropyd's named pipe (fifo endpoint): the robust path.
  * rng-egd over TCP (QEMU dials entropyd, reconnect=1). This path needs a
    periodic wake-up of QEMU's main loop (a filter-buffer timer on an unused
    netdev): without it QEMU never reads the answer to the guest's first
    H_RANDOM and the guest hangs before it prints anything (see
    shared/facts/egd-and-qemu.md). It is the QEMU option users must add.

entropyd must be serving before QEMU starts: the kernel calls H_RANDOM at early
boot. Every test is bounded by PPC64_TEST_LIMIT seconds (SIGALRM), on top of the
bounded waits inside; failures print the guest console and entropyd's stderr.
"""

from __future__ import annotations

import os
import signal

import pytest

import guest
import peers
import ppc64
from support import STARTUP_DISCARD

KIB = 1024
READ_BYTES = 64 * KIB
# Boot + read + dump of 64 KiB takes 3-10 s under TCG; allow for a loaded machine.
GUEST_LIMIT = float(os.environ.get("ENTROPYD_PPC64_TIMEOUT", "240"))
PPC64_TEST_LIMIT = GUEST_LIMIT + 60
# QEMU's main-loop wake-up period for rng-egd, microseconds.
WAKEUP_US = 100


class HardTimeLimitExceeded(Exception):
    """The whole test ran past PPC64_TEST_LIMIT."""


@pytest.fixture(autouse=True)
def _hard_time_limit():
    """Interrupt the test (its fixtures still clean up) past PPC64_TEST_LIMIT."""
    def expired(signum, frame):
        raise HardTimeLimitExceeded(f"test exceeded its hard limit of {PPC64_TEST_LIMIT:.0f}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, PPC64_TEST_LIMIT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def ppc64_image() -> ppc64.Ppc64Image:
    try:
        return ppc64.ensure_image()
    except guest.GuestError as e:
        pytest.fail(f"cannot obtain the ppc64 guest (qemu-system-ppc, ppc64el kernel, "
                    f"busybox-static:ppc64el): {e}", pytrace=False)


@pytest.fixture
def ppc64_guest(ppc64_image, tmp_path):
    """ppc64_guest(backend_args, **Ppc64Run fields) starts QEMU (not waited)."""
    runs: list[ppc64.Ppc64Run] = []

    def start(backend: list[str], **kw) -> ppc64.Ppc64Run:
        run = ppc64.Ppc64Run(ppc64_image, backend, workdir=tmp_path / f"ppc64-{len(runs)}",
                             **kw)
        runs.append(run)
        try:
            return run.start()
        except guest.GuestError as e:
            pytest.fail(str(e), pytrace=False)

    yield start
    # The test is over: stop its clock so that it cannot interrupt the clean-up
    # (this fixture's, then entropyd's, which are torn down after this one).
    signal.setitimer(signal.ITIMER_REAL, 0)
    for run in runs:
        run.kill()
    for run in runs:
        print(run.describe())


def _finish_and_verify(run: ppc64.Ppc64Run, source: bytes) -> ppc64.Ppc64Result:
    try:
        res = run.finish(GUEST_LIMIT)
    except guest.GuestError as e:
        pytest.fail(str(e), pytrace=False)
    assert res.data is not None and len(res.data) == READ_BYTES
    try:
        report = guest.check_pieces(res.data, source, min_offset=STARTUP_DISCARD)
    except guest.PieceCheckError as e:
        pytest.fail(f"guest bytes are not pieces of the source file: {e}", pytrace=False)
    print(f"guest reached its read {res.boot_seconds:.2f}s after boot, read {res.nbytes} "
          f"bytes in {res.read_seconds:.2f}s ({res.kb_per_s:.1f} KB/s); powered off after "
          f"{res.wall_seconds:.1f}s; {report}")
    return res


def test_ppc64_spapr_rng_reads_64kib_from_entropyd_fifo(source_file, entropyd, ppc64_guest,
                                                        tmp_path):
    path, source = source_file
    fifo = tmp_path / "rng.fifo"
    d = entropyd("--source", f"file:{path}", "--listen", f"fifo:{fifo}")
    try:
        d.wait_line(r"listening on fifo:", 10)
    except peers.PeerError as e:
        pytest.fail(str(e), pytrace=False)
    run = ppc64_guest(ppc64.rng_random_backend(fifo), nbytes=READ_BYTES)
    _finish_and_verify(run, source)
    assert d.running(), "entropyd exited while serving the guest"


def test_ppc64_spapr_rng_reads_64kib_over_egd_tcp_with_main_loop_wakeup(
        source_file, entropyd, ppc64_guest):
    path, source = source_file
    d = entropyd("--source", f"file:{path}", "--listen", "tcp:127.0.0.1:0")
    chardev = f"socket,id=egd0,host=127.0.0.1,port={d.port()},reconnect=1"
    run = ppc64_guest(guest.egd_backend(chardev), nbytes=READ_BYTES,
                      extra=guest.pacer_args(WAKEUP_US))
    _finish_and_verify(run, source)
    assert d.running(), "entropyd exited while serving the guest"
