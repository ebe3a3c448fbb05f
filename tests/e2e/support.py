"""Constants and small helpers shared by the end-to-end tests: each turns a
harness error into a pytest failure that carries the reason (never a skip)."""

from __future__ import annotations

import os

import pytest

import guest

# Bytes the daemon discards at start (health start-up test) and never serves.
STARTUP_DISCARD = 1024
SOURCE_SIZE = 6 << 20
MIB = 1 << 20
# Hard limit for one guest run (boot + read + dump); generous: TCG on a shared machine.
GUEST_TIMEOUT = float(os.environ.get("ENTROPYD_GUEST_TIMEOUT", "300"))


def finish(run: guest.GuestRun, timeout: float = GUEST_TIMEOUT) -> guest.GuestResult:
    """Wait for the guest, turning any harness error into a test failure."""
    try:
        return run.finish(timeout)
    except guest.GuestError as e:
        pytest.fail(str(e), pytrace=False)


def wait_console(run: guest.GuestRun, pattern: str, timeout: float):
    try:
        return run.wait_console(pattern, timeout)
    except guest.GuestError as e:
        pytest.fail(str(e), pytrace=False)


def check_source(data: bytes, source: bytes, **kw) -> guest.PieceReport:
    """check_pieces, failing the test with the checker's reason."""
    try:
        return guest.check_pieces(data, source, **kw)
    except guest.PieceCheckError as e:
        pytest.fail(f"guest bytes are not pieces of the source file: {e}", pytrace=False)
