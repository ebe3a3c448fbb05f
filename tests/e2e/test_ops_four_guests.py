"""An operator watches entropyd serve four real x86 guests at once.

One entropyd with a file source, a tcp and a unix EGD endpoint, an http endpoint on loopback
and its own control socket; four TCG guests (two over tcp, two over unix, QEMU's rng-egd)
each read 1 MiB from /dev/hwrng. While they read, `entropyctl status` and `status --json`
are polled: the four guests are clients whose bytes served grow, the source is serving
with bytes read > 0. The status page is loaded in headless Chromium and /metrics is
checked with promtool, both during the run. The plain status, the JSON, the metrics and a
screenshot are saved to the test's folder (tmp_path) and their paths printed.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import guest
from support import GUEST_TIMEOUT, MIB, STARTUP_DISCARD, check_source, finish

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))
from ctlsupport import entropyctl  # noqa: E402
from pagesupport import watch_page  # noqa: E402

# Four TCG guests share two cores with the browser: allow each much more than one needs.
MULTI_TIMEOUT = max(GUEST_TIMEOUT, 400.0)
TEST_LIMIT = MULTI_TIMEOUT + 200.0
POLL_S = 0.5
CHUNK = 64 << 10


class HardTimeLimitExceeded(Exception):
    """The whole test ran past TEST_LIMIT."""


@pytest.fixture(autouse=True)
def _hard_time_limit():
    """Interrupt the test (its fixtures still clean up) past TEST_LIMIT."""
    def expired(signum, frame):
        raise HardTimeLimitExceeded(f"test exceeded its hard limit of {TEST_LIMIT:.0f}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, TEST_LIMIT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def sockdir():
    """A short private folder for the unix sockets (sun_path is 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="ed-ops-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class StatusPoller:
    """Runs `entropyctl status --json` and `status` every POLL_S seconds in the background;
    keeps every JSON snapshot and the plain output of each poll."""

    def __init__(self, control: Path):
        self.control = str(control)
        self.snaps: list[tuple[dict, str]] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                js = entropyctl("status", "--json", socket_path=self.control)
                plain = entropyctl("status", socket_path=self.control)
                self.snaps.append((json.loads(js.stdout), plain.stdout))
            except Exception as e:  # reported by stop()
                self.error = repr(e)
                return
            self._stop.wait(POLL_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert self.error is None, f"entropyctl status failed during the run: {self.error}"


def _guest_clients(snap: dict, endpoints: set[str]) -> dict[str, int]:
    """Peer -> bytes served, for the clients on the guests' endpoints."""
    return {c["peer"]: c["bytes_served"] for c in snap["clients"]
            if c["endpoint"] in endpoints}


def test_four_guests_seen_through_entropyctl_status_page_and_metrics(
        guests, entropyd, sockdir, source_file, tmp_path):
    path, source = source_file
    control = sockdir / "control.sock"
    socks = [sockdir / "egd0.sock", sockdir / "egd1.sock"]
    d = entropyd("--source", f"file:{path}", "--listen", "tcp:127.0.0.1:0",
                 "--listen", f"unix:{socks[0]}", "--listen", f"unix:{socks[1]}",
                 "--listen", "http:127.0.0.1:0", "--control", str(control))
    tcp_port = d.port()
    http_port = int(d.wait_line(r"listening on http:127\.0\.0\.1:(\d+)", 10).group(1))
    ep_specs = {"tcp:127.0.0.1:0", f"unix:{socks[0]}", f"unix:{socks[1]}"}

    poller = StatusPoller(control)
    tcp = f"socket,id=egd0,host=127.0.0.1,port={tcp_port},reconnect=1"
    backends = {
        "tcp-a": guest.egd_backend(tcp),
        "tcp-b": guest.egd_backend(tcp),
        "unix-a": guest.egd_backend(f"socket,id=egd0,path={socks[0]},reconnect=1"),
        "unix-b": guest.egd_backend(f"socket,id=egd0,path={socks[1]},reconnect=1"),
    }
    t0 = time.monotonic()
    runs = {name: guests(b, nbytes=MIB, chunk=CHUNK) for name, b in backends.items()}

    # During the read: the page in Chromium, and /metrics through promtool.
    try:
        deadline = time.monotonic() + MULTI_TIMEOUT
        while not all(re.search(r"^E2E: PROGRESS chunks=1 ", r.console(), re.M)
                      for r in runs.values()):
            assert time.monotonic() < deadline, "the guests never all started reading"
            assert all(r.proc.poll() is None for r in runs.values()), \
                "a guest exited before all four were reading:\n" + \
                "\n".join(r.describe() for r in runs.values())
            time.sleep(0.2)
        shot = tmp_path / "status-page-four-guests.png"
        series, page_error = watch_page(http_port, shot, seconds=6.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=20) as r:
            metrics = r.read()
        (tmp_path / "metrics.txt").write_bytes(metrics)
        check = subprocess.run(["promtool", "check", "metrics"], input=metrics,
                               capture_output=True, timeout=60)
        results = {name: finish(run, MULTI_TIMEOUT) for name, run in runs.items()}
    finally:
        poller.stop()
    took = time.monotonic() - t0

    for name, res in results.items():
        report = check_source(res.data, source, min_offset=STARTUP_DISCARD)
        print(f"[{name}] read {res.nbytes} bytes in {res.read_seconds:.2f}s "
              f"({res.mb_per_s:.3f} MB/s), booted in {res.boot_seconds:.1f}s; {report}")
    print(f"four guests done in {took:.1f}s; {len(poller.snaps)} status polls")

    # Per guest client: bytes served seen growing across the polls.
    seen: dict[str, list[int]] = {}
    for snap, _ in poller.snaps:
        for peer, served in _guest_clients(snap, ep_specs).items():
            seen.setdefault(peer, []).append(served)
    growing = {p: v for p, v in seen.items() if len(set(v)) >= 2 and v == sorted(v)}
    assert len(growing) >= 4, f"guest clients with growing bytes served: {seen}"
    by_ep = {}
    for snap, _ in poller.snaps:
        for c in snap["clients"]:
            if c["peer"] in growing:
                by_ep[c["peer"]] = c["endpoint"]
    assert sorted(by_ep.values()).count("tcp:127.0.0.1:0") == 2, by_ep
    assert {e for e in by_ep.values() if e.startswith("unix:")} == {f"unix:{s}" for s in socks}

    # The snapshot to keep: all four guests past their first chunk, as many as can be still
    # reading (under 1 MiB served), then the most bytes served.
    def score(snap: dict) -> tuple[int, int, int]:
        vals = [v for v in _guest_clients(snap, ep_specs).values() if v >= CHUNK]
        return len(vals), sum(1 for v in vals if v < MIB), sum(vals)
    best, plain = max(poller.snaps, key=lambda s: score(s[0]))
    assert score(best)[0] == 4, \
        f"never saw all four guests reading: {[score(s) for s, _ in poller.snaps]}"
    src = best["sources"][0]
    assert src["state"] == "serving" and src["bytes_read"] > 0, src
    for peer in growing:
        assert re.search(rf"^{re.escape(peer)}\s", plain, re.M), f"{peer} not in:\n{plain}"
    assert re.search(rf"^file:{re.escape(str(path))}\s+serving\s", plain, re.M), plain
    out = tmp_path / "entropyctl-status.txt"
    out.write_text(plain)
    (tmp_path / "entropyctl-status.json").write_text(json.dumps(best, indent=2))
    print(f"entropyctl status during the run: {out}\n{plain}")

    assert check.returncode == 0, f"promtool: {check.stdout.decode()}{check.stderr.decode()}"
    assert b"entropyd_client_bytes_served_total" in metrics
    assert series is not None and page_error == "", f"page: {page_error!r}"
    clients = [s for s in series["clients"] if s["label"] in growing]
    assert len(clients) >= 4 and all(max(s["data"]) > 0 for s in clients), series["clients"]
    assert max(series["sources"][0]["data"]) > 0, series["sources"]
    assert d.running(), "entropyd exited while serving four guests"
