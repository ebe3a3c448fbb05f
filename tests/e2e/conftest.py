"""Fixtures for the end-to-end tests: the guest image, a random source file,
and factories for entropyd, socat and QEMU runs that clean up after themselves
(by PID) and print the processes' output, which pytest shows on failure."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import guest  # noqa: E402
import peers  # noqa: E402

from support import SOURCE_SIZE  # noqa: E402


@pytest.fixture(scope="session")
def guest_image() -> guest.GuestImage:
    try:
        return guest.ensure_image()
    except guest.GuestError as e:
        pytest.fail(f"cannot obtain the x86_64 guest (QEMU, kernel, busybox): {e}",
                    pytrace=False)


@pytest.fixture
def source_file(tmp_path_factory) -> tuple[Path, bytes]:
    """A 6 MiB random file: passes the health tests, and any 8 bytes are unique. One per
    test, and checked unchanged afterwards: a full e2e run once found this file (then shared
    by the session) overwritten from 2.75 MiB on with EGD requests (02 40 ...): the socat
    harness test's bidirectional socat wrote QEMU's requests into it."""
    data = os.urandom(SOURCE_SIZE)
    path = tmp_path_factory.mktemp("source") / "random.bin"
    path.write_bytes(data)
    yield path, data
    assert path.read_bytes() == data, (
        "the source file %s was written to during this test (it must only be read)" % path)


@pytest.fixture
def entropyd():
    """entropyd(*args, wait_ready=True) starts build/entropyd -f ARGS."""
    started: list[peers.Entropyd] = []

    def start(*args: str, wait_ready: bool = True) -> peers.Entropyd:
        try:
            d = peers.Entropyd(args, wait_ready=wait_ready)
        except peers.PeerError as e:
            pytest.fail(str(e), pytrace=False)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
    for d in started:
        print(d.describe())


@pytest.fixture
def socat():
    """socat(port, address, one_way=False) starts socat TCP-LISTEN:port,reuseaddr,fork
    address (with -U when one_way: address is only read)."""
    started: list[peers.Socat] = []

    def start(port: int, address: str, one_way: bool = False) -> peers.Socat:
        try:
            s = peers.Socat(port, address, one_way=one_way)
        except peers.PeerError as e:
            pytest.fail(str(e), pytrace=False)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def guests(guest_image, tmp_path):
    """guests(backend_args, **GuestRun fields) starts a QEMU guest (not waited)."""
    runs: list[guest.GuestRun] = []

    def start(backend: list[str], **kw) -> guest.GuestRun:
        run = guest.GuestRun(guest_image, backend, workdir=tmp_path / f"guest{len(runs)}", **kw)
        runs.append(run)
        try:
            return run.start()
        except guest.GuestError as e:
            pytest.fail(str(e), pytrace=False)

    yield start
    for run in runs:
        run.kill()
    for run in runs:
        print(run.describe())
