"""A real ppc64 pseries guest reads /dev/hwrng through entropyd's vhost-user-rng backend.

The guest (ppc64.py's "virtio" image: the six virtio modules instead of
pseries-rng) boots with QEMU's minimal firmware (x-vof=on) and a
vhost-user-rng-pci device whose virtqueue entropyd serves from the guest's
shared memory: big-endian firmware, little-endian guest, virtio 1.0 rings in
little-endian. pseries takes the memfd RAM as `-machine memory-backend=mem0`
merged with `-M pseries,x-vof=on`. The bytes the guest read must be pieces of
entropyd's file source in file order, after the start-up discard.

Fails (never skips) when entropyd has no vhost-user endpoint. Bounded by a hard
limit (SIGALRM) on top of the waits inside; processes are stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import guest
import peers
import ppc64
from support import STARTUP_DISCARD, check_source, hard_time_limit

READ = 1 << 20
MEMORY_MB = 512
GUEST_LIMIT = float(os.environ.get("ENTROPYD_PPC64_TIMEOUT", "240"))


@pytest.fixture(autouse=True)
def _hard_limit():
    with hard_time_limit(GUEST_LIMIT + 60):
        yield


@pytest.fixture(scope="session")
def ppc64_virtio_image() -> ppc64.Ppc64Image:
    try:
        return ppc64.ensure_image("virtio")
    except guest.GuestError as e:
        pytest.fail(f"cannot obtain the ppc64 guest (qemu-system-ppc, ppc64el kernel, "
                    f"busybox-static:ppc64el): {e}", pytrace=False)


@pytest.fixture
def sockdir():
    d = Path(tempfile.mkdtemp(prefix="ed-vu-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("qemu_listens", [False, True], ids=["entropyd_listening",
                                                             "qemu_listening"])
def test_ppc64_vhost_user_rng_reads_1mib_from_entropyd(source_file, entropyd,
                                                       ppc64_virtio_image, sockdir, tmp_path,
                                                       qemu_listens):
    path, source = source_file
    sock = sockdir / "vu.sock"
    backend = guest.vhost_user_backend(sock, MEMORY_MB, qemu_listens=qemu_listens)
    run = ppc64.Ppc64Run(ppc64_virtio_image, backend, nbytes=READ, memory_mb=MEMORY_MB,
                         device=guest.VHOST_USER_DEVICE, workdir=tmp_path / "ppc64")
    with run:
        if qemu_listens:
            run.start()
            try:
                peers.wait_path(sock, 60, run.proc)
            except peers.PeerError as e:
                pytest.fail(f"QEMU did not create its socket: {e}\n{run.describe()}",
                            pytrace=False)
            d = entropyd("--source", f"file:{path}", "--connect", f"vhost-user:{sock}")
        else:
            d = entropyd("--source", f"file:{path}", "--listen", f"vhost-user:{sock}")
            try:
                peers.wait_path(sock, 10, d.proc)
            except peers.PeerError as e:
                pytest.fail(str(e), pytrace=False)
            run.start()
        try:
            res = run.finish(GUEST_LIMIT)
        except guest.GuestError as e:
            pytest.fail(str(e), pytrace=False)
        finally:
            print(run.describe())
    assert res.data is not None and len(res.data) == READ
    report = check_source(res.data, source, min_offset=STARTUP_DISCARD)
    print(f"ppc64 guest reached its read {res.boot_seconds:.2f}s after boot, read "
          f"{res.nbytes} bytes in {res.read_seconds:.2f}s ({res.kb_per_s:.1f} KB/s); "
          f"powered off after {res.wall_seconds:.1f}s; {report}")
    assert d.running(), "entropyd exited while serving the guest"
