"""Relays: a few generator hosts feed many hypervisors through relaying entropyds, over
mutual TLS, in network namespaces this test makes and removes itself.

    gen1 (10.77.0.1, br0)  ──┬── relay1 (10.77.0.11; 10.77.1.11) ── x86 guest (rng-egd)
      file source, TLS      └── relay2 (10.77.0.12)              ── x86 guest (rng-egd)
    gen2 (10.77.1.1) ────────── relay1, at a lower priority (failover only)

Each generator runs `entropyd --source file:F --listen tcp:ADDR:8888,tls=DIR,authz=FILE`;
each relay runs `entropyd --source egd:tcp:GEN:8888,tls=DIR,... --listen
tcp:127.0.0.1:7777,rate=...`, and its guest is QEMU started with `ip netns exec RELAY`,
whose rng-egd dials 127.0.0.1:7777 inside that namespace. Every guest byte is traced back
to a generator's file; no file byte reached both guests.

Mid-read, each relay's link to gen1 is taken down inside its namespace: relay1 fails over
to gen2 and its guest finishes while the link is still down; relay2 has no other source and
its guest waits (no progress) until the link comes back, then finishes.

Addresses exist only inside the namespaces (10.77.0.0/24, 10.77.1.0/24), nothing is routed
out; the namespaces (unique names per run) and their links are deleted at the end, even on
failure. Every process is bounded in time and stopped by its own PID (`ip netns exec`
execs the program in place, so the PID started is the program's).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import guest
import peers
from support import (GUEST_TIMEOUT, MIB, STARTUP_DISCARD, assert_no_shared_offsets,
                     check_source, wait_console)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))
from tlssupport import _CA  # noqa: E402  (the system tests' certificate maker)

KIB = 1 << 10
PORT = 8888        # the generators' TLS port (inside their own namespaces: always free)
LOCAL_PORT = 7777  # each relay's port for its guest, on 127.0.0.1 inside its namespace
GEN1, GEN2 = "10.77.0.1", "10.77.1.1"
CHUNK = 64 * KIB   # the guests read in chunks and print a PROGRESS line after each
NCHUNKS = MIB // CHUNK
# Each relay paces its guest to 32 KiB/s (1 MiB in ~32 s) and holds a 64 KiB pool, so that
# a link taken down mid-read is felt within seconds, and guests booted a few seconds apart
# are both still reading when it happens.
RATE = "32768/1000"
RELAY_POOL = 64 * KIB
STALL_MS = 2000     # a relay's upstream that sends nothing this long is failed over
STILL_S = 12.0      # a waiting guest must show no progress for this long
STILL_BOUND = 60.0  # ... starting within this long after its link went down
RECOVER_BOUND = 120.0  # a waiting guest finishes within this long after the link is up
GEN1_SIZE = 8 << 20
GEN2_SIZE = 4 << 20
IP_TIMEOUT = 15


def _ip(*args: str) -> str:
    try:
        p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`ip {' '.join(args)}` did not finish in {IP_TIMEOUT}s")
    if p.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


class Lab:
    """Network namespaces and veth links, all recorded so that close() removes them."""

    def __init__(self):
        self.tag = f"edr{os.getpid()}"
        self.made: list[str] = []              # namespaces, real names
        self.links: list[tuple[str, str]] = []  # (namespace, device) ends to delete

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def exec_prefix(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host)]

    def host(self, host: str) -> None:
        _ip("netns", "add", self.ns(host))
        self.made.append(self.ns(host))
        _ip("-n", self.ns(host), "link", "set", "lo", "up")

    def link(self, a: str, dev_a: str, b: str, dev_b: str) -> None:
        """A veth pair created directly inside the two namespaces, both ends up."""
        _ip("link", "add", dev_a, "netns", self.ns(a), "type", "veth",
            "peer", "name", dev_b, "netns", self.ns(b))
        self.links.append((self.ns(a), dev_a))
        for h, d in ((a, dev_a), (b, dev_b)):
            _ip("-n", self.ns(h), "link", "set", d, "up")

    def addr(self, host: str, dev: str, cidr: str) -> None:
        _ip("-n", self.ns(host), "addr", "add", cidr, "dev", dev)

    def set_link(self, host: str, dev: str, up: bool) -> None:
        _ip("-n", self.ns(host), "link", "set", dev, "up" if up else "down")

    def close(self) -> list[str]:
        """Delete every link and namespace made; return what could not be removed."""
        problems = []
        for ns, dev in reversed(self.links):
            try:
                _ip("-n", ns, "link", "del", dev)
            except RuntimeError as e:
                problems.append(str(e))
        for ns in reversed(self.made):
            try:
                _ip("netns", "del", ns)
            except RuntimeError as e:
                problems.append(str(e))
        left = [n for n in _ip("netns", "list").split() if n.startswith(self.tag + "-")]
        if left:
            problems.append(f"namespaces still listed: {left}")
        return problems


class NsEntropyd(peers.Process):
    """build/entropyd -f ARGS inside a namespace; stderr collected as for peers.Entropyd."""

    def __init__(self, lab: Lab, host: str, args: list[str]):
        # --control none: never the host's /run/entropyd/control.sock (shared by all hosts).
        super().__init__([*lab.exec_prefix(host), str(peers.entropyd_path()), "-f", *args,
                          "--control", "none"], f"entropyd@{host}")


def _subject(cert: Path) -> str:
    return subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253",
                           "-in", str(cert)], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def _make_pki(base: Path) -> dict[str, Path]:
    """One CA; server directories for gen1 and gen2 (IP subjectAltName = their address),
    client directories for relay1 and relay2; authz files: gen1 serves both relays, gen2
    only relay1."""
    ca = _CA(base, "ca")
    dirs = {}
    for name, subj, san, kind in (("gen1", "/O=example/CN=gen1", f"IP:{GEN1}", "server"),
                                  ("gen2", "/O=example/CN=gen2", f"IP:{GEN2}", "server"),
                                  ("relay1", "/O=example/CN=relay1", None, "client"),
                                  ("relay2", "/O=example/CN=relay2", None, "client")):
        d = base / name
        d.mkdir()
        (d / "ca-cert.pem").write_bytes(ca.cert.read_bytes())
        ca.issue(d / f"{kind}-cert.pem", d / f"{kind}-key.pem", subj, san=san)
        dirs[name] = d
    r1 = _subject(dirs["relay1"] / "client-cert.pem")
    r2 = _subject(dirs["relay2"] / "client-cert.pem")
    (dirs["gen1"] / "authz").write_text(f"{r1}\n{r2}\n")
    (dirs["gen2"] / "authz").write_text(f"{r1}\n")
    return dirs


@pytest.fixture
def lab():
    lb = Lab()
    yield lb
    problems = lb.close()
    assert not problems, "network clean-up failed: " + "; ".join(problems)


def _progress(run: guest.GuestRun) -> int:
    return len(re.findall(r"^E2E: PROGRESS", run.console(), re.M))


def _done(run: guest.GuestRun) -> bool:
    return re.search(r"^E2E: READ-DONE", run.console(), re.M) is not None


def _trace(name: str, data: bytes, combined: bytes, split: int) -> tuple[guest.PieceReport, int]:
    """Every byte is a piece of gen1's file (combined[:split]) or gen2's (combined[split:]);
    within each file the pieces come in increasing file order. Returns the report and the
    bytes that came from gen2."""
    assert data is not None and len(data) == MIB, f"{name}: got {len(data or b'')} bytes"
    report = check_source(data, combined, min_offset=STARTUP_DISCARD, max_restarts=8)
    last = {0: -1, 1: -1}
    from_gen2 = 0
    for p in report.pieces:
        f = 1 if p.file_offset >= split else 0
        assert p.file_offset + p.length <= (split if f == 0 else len(combined)), \
            f"{name}: a piece spans the two files at {p.file_offset}"
        assert p.file_offset >= last[f], \
            (f"{name}: gen{f + 1}'s bytes went back in file order at guest offset "
             f"{p.data_offset} (file offset {p.file_offset} after {last[f]})")
        last[f] = p.file_offset + p.length
        from_gen2 += p.length if f else 0
    print(f"{name}: {report}; {MIB - from_gen2} bytes from gen1, {from_gen2} from gen2")
    return report, from_gen2


def _wait(cond, timeout: float, what: str, *describe) -> float:
    """Poll cond() until true (bounded); the seconds it took."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"{what} not within {timeout}s\n" + "\n".join(d() for d in describe),
                        pytrace=False)
        time.sleep(0.1)
    return time.monotonic() - t0


def test_relays_feed_guests_from_generators_and_survive_a_lost_upstream(
        lab, guest_image, tmp_path):
    # --- the network: gen1's bridge joins both relays; gen2 reaches relay1 only ----------
    try:
        for h in ("gen1", "gen2", "relay1", "relay2"):
            lab.host(h)
        _ip("-n", lab.ns("gen1"), "link", "add", "br0", "type", "bridge")
        lab.links.append((lab.ns("gen1"), "br0"))
        _ip("-n", lab.ns("gen1"), "link", "set", "br0", "up")
        lab.addr("gen1", "br0", f"{GEN1}/24")
        lab.link("relay1", "up0", "gen1", "to-relay1")
        lab.link("relay2", "up0", "gen1", "to-relay2")
        for d in ("to-relay1", "to-relay2"):
            _ip("-n", lab.ns("gen1"), "link", "set", d, "master", "br0")
        lab.addr("relay1", "up0", "10.77.0.11/24")
        lab.addr("relay2", "up0", "10.77.0.12/24")
        lab.link("relay1", "up1", "gen2", "to-relay1")
        lab.addr("relay1", "up1", "10.77.1.11/24")
        lab.addr("gen2", "to-relay1", f"{GEN2}/24")
    except RuntimeError as e:
        pytest.fail(f"cannot build the network namespaces: {e}", pytrace=False)

    pki = _make_pki(tmp_path / "pki")
    gen1_data, gen2_data = os.urandom(GEN1_SIZE), os.urandom(GEN2_SIZE)
    (tmp_path / "gen1.bin").write_bytes(gen1_data)
    (tmp_path / "gen2.bin").write_bytes(gen2_data)
    combined = gen1_data + gen2_data

    procs: list[peers.Process] = []
    runs: dict[str, guest.GuestRun] = {}
    try:
        def daemon(host: str, *args: str) -> NsEntropyd:
            try:
                d = NsEntropyd(lab, host, list(args))
                procs.append(d)
                d.wait_line(r"\bready\b", 30)
            except peers.PeerError as e:
                pytest.fail(str(e), pytrace=False)
            return d

        def describe_all() -> str:
            return "\n".join([p.describe() for p in procs] +
                             [f"=== guest on {h}\n{r.describe()}" for h, r in runs.items()])

        for g, addr in (("gen1", GEN1), ("gen2", GEN2)):
            daemon(g, "--source", f"file:{tmp_path / (g + '.bin')}",
                   "--listen", f"tcp:{addr}:{PORT},tls={pki[g]},authz={pki[g] / 'authz'}")
        up1 = f"egd:tcp:{GEN1}:{PORT}"
        up2 = f"egd:tcp:{GEN2}:{PORT}"
        relays = {
            "relay1": daemon("relay1", "--pool-size", str(RELAY_POOL),
                             "--source", f"{up1},tls={pki['relay1']},prio=0,stall={STALL_MS}",
                             "--source", f"{up2},tls={pki['relay1']},prio=1,stall={STALL_MS}",
                             "--listen", f"tcp:127.0.0.1:{LOCAL_PORT},rate={RATE}"),
            "relay2": daemon("relay2", "--pool-size", str(RELAY_POOL),
                             "--source", f"{up1},tls={pki['relay2']},stall={STALL_MS}",
                             "--listen", f"tcp:127.0.0.1:{LOCAL_PORT},rate={RATE}"),
        }
        for h, d in relays.items():
            try:
                d.wait_line(rf"serving from source {re.escape(up1)}", 30)
            except peers.PeerError as e:
                pytest.fail(f"{h} does not draw from gen1: {e}", pytrace=False)

        backend = guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={LOCAL_PORT},"
                                    f"reconnect=1")
        t_boot = time.monotonic()
        for h in ("relay1", "relay2"):
            run = guest.GuestRun(guest_image, backend, nbytes=MIB, chunk=CHUNK,
                                 workdir=tmp_path / f"guest-{h}", prefix=lab.exec_prefix(h))
            runs[h] = run
            try:
                run.start()
            except guest.GuestError as e:
                pytest.fail(str(e), pytrace=False)

        # --- mid-read, each relay loses its link to gen1 -----------------------------------
        down_at = {}
        for h in ("relay1", "relay2"):
            wait_console(runs[h], r"^E2E: PROGRESS chunks=2 ", GUEST_TIMEOUT)
            lab.set_link(h, "up0", False)
            down_at[h] = time.monotonic()
            at = _progress(runs[h])
            assert at < NCHUNKS - 4 and not _done(runs[h]), \
                f"{h}'s guest was nearly done ({at}/{NCHUNKS}) when its link went down"
            print(f"{h}: link to gen1 down at chunk {at}/{NCHUNKS}, "
                  f"{down_at[h] - t_boot:.1f}s after the guests started")

        # relay1 fails over to gen2: its guest finishes while the link is still down.
        r1 = relays["relay1"]
        try:
            r1.wait_line(rf"source {re.escape(up1)}.*: stalled", 30)
            r1.wait_line(rf"serving from source {re.escape(up2)}", 30)
        except peers.PeerError as e:
            pytest.fail(f"relay1 did not fail over to gen2: {e}\n{describe_all()}",
                        pytrace=False)
        failover_s = time.monotonic() - down_at["relay1"]
        _wait(lambda: _done(runs["relay1"]), 90,
              "relay1's guest finishing from gen2 with gen1 unreachable", describe_all)
        r1_done_s = time.monotonic() - down_at["relay1"]

        # relay2 has no other source: its guest's read stops while the link is down.
        r2 = runs["relay2"]
        t0 = time.monotonic()
        still_since, seen = time.monotonic(), _progress(r2)
        while time.monotonic() - still_since < STILL_S:
            if _done(r2):
                pytest.fail(f"relay2's guest finished although its only upstream was "
                            f"unreachable\n{describe_all()}", pytrace=False)
            if time.monotonic() - t0 > STILL_BOUND:
                pytest.fail(f"relay2's guest kept making progress for {STILL_BOUND}s with "
                            f"its only upstream unreachable\n{describe_all()}", pytrace=False)
            now = _progress(r2)
            if now != seen:
                still_since, seen = time.monotonic(), now
            time.sleep(0.2)
        waited_at = seen
        assert not _done(r2) and waited_at < NCHUNKS
        try:
            relays["relay2"].wait_line(r"no healthy source left: clients wait", 5)
        except peers.PeerError as e:
            pytest.fail(f"relay2 did not log that its clients wait: {e}", pytrace=False)
        print(f"relay2's guest waited at chunk {waited_at}/{NCHUNKS}, no progress for "
              f"{STILL_S:.0f}s ({time.monotonic() - down_at['relay2']:.1f}s after its "
              f"link went down)")

        # --- the links come back: every read completes -------------------------------------
        for h in ("relay1", "relay2"):
            lab.set_link(h, "up0", True)
        resumed_s = _wait(lambda: _progress(r2) > waited_at or _done(r2), RECOVER_BOUND,
                          "relay2's guest reading again after its link came back",
                          describe_all)
        r2_done_s = resumed_s + _wait(lambda: _done(r2), RECOVER_BOUND,
                                      "relay2's guest finishing after its link came back",
                                      describe_all)
        results = {}
        for h, run in runs.items():
            try:
                results[h] = run.finish(GUEST_TIMEOUT + 300)
            except guest.GuestError as e:
                pytest.fail(f"guest on {h}: {e}", pytrace=False)
        back = relays["relay1"].count_lines(rf"serving from source {re.escape(up1)}")

        # --- every byte traced to a generator's file; none reached both guests -------------
        received = {}
        from_gen2 = {}
        for h, res in results.items():
            rep, from_gen2[h] = _trace(f"guest on {h}", res.data, combined, GEN1_SIZE)
            received[h] = (res.data, rep)
            print(f"guest on {h}: boot {res.boot_seconds:.1f}s, read {res.read_seconds:.1f}s, "
                  f"wall {res.wall_seconds:.1f}s")
        assert from_gen2["relay1"] > 0, "relay1's guest got no byte from gen2 after failover"
        assert from_gen2["relay2"] == 0, "relay2's guest got bytes of gen2's file"
        assert_no_shared_offsets(received, combined)
        print(f"relay1 failed over {failover_s:.1f}s after its link went down; its guest "
              f"finished {r1_done_s:.1f}s after it, link still down; relay2's guest read again "
              f"{resumed_s:.1f}s and finished {r2_done_s:.1f}s after the links came back; "
              f"relay1 logged serving from gen1 {back} time(s) by then")
        for p in procs:
            assert p.running(), f"{p.name} exited\n{p.describe()}"
    finally:
        for run in runs.values():
            run.kill()
        for p in procs:
            p.stop()
        for p in procs:
            print(p.describe())
        for h, run in runs.items():
            print(f"=== guest on {h}\n{run.describe()}")
