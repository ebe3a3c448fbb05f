#!/usr/bin/python3
"""ppc64 guest /dev/hwrng (pseries-rng, H_RANDOM via spapr-rng) throughput per backend.

Boots the e2e ppc64 pseries guest (TCG) once per row and round, and lets it
time, inside the guest, a read of --bytes from /dev/hwrng. Rows:
  builtin       -object rng-builtin (QEMU's getrandom(); the reference)
  fifo          rng-random on entropyd's named pipe (fifo endpoint)
  egd-fb100     rng-egd over TCP to entropyd + QEMU filter-buffer wake-up, 100 us
  egd-fb1000    the same at 1 ms
  egd-nowake    rng-egd over TCP to entropyd, nothing else: QEMU does not read the
                answer to H_RANDOM (see the facts page); "stalled" past --stall-limit
With --research, rows for daemon-side wake-ups of QEMU's main loop, sent by a
small Python pacer process (`bench_ppc64.py pacer ...`, a prototype of what
entropyd could do; entropyd itself does not do this):
  hmp-P         a human monitor chardev (-mon mode=readline) the pacer writes "\\n"
                to every P us (P = 100, 1000, 10000)
  udp-P         an unused `-netdev socket,udp=` (no NIC: packets are dropped) the
                pacer sends a 1-byte datagram to every P us
  qmp-1000      a QMP monitor the pacer writes " " to every 1 ms
  hmp-reply, udp-reply
                the pacer is an EGD proxy between QEMU and entropyd and wakes QEMU
                once after forwarding each answer (no timer at all)
  udp-serve     no entropyd: the pacer is itself a minimal EGD server (os.urandom)
                waking QEMU after each answer, the ceiling for that wake built into
                a daemon (no proxy hop)
Each row also reports the CPU QEMU (and the pacer) used during the read and
during --idle seconds of guest idleness afterwards (the price of a periodic
wake-up is paid even when nobody reads). Under TCG only ratios mean much.

Usage: /usr/bin/python3 bench/bench_ppc64.py [--bytes N] [--repeat N] [--idle S]
                                             [--research] [--rows a,b,...]
"""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

import guest  # noqa: E402
import peers  # noqa: E402
import ppc64  # noqa: E402

# ---------------------------------------------------------------------------
# The pacer: a prototype of a daemon-side wake-up of QEMU's main loop
# ---------------------------------------------------------------------------

WAKE_BYTES = {"hmp": b"\n", "qmp": b" "}


def pacer_main(argv: list[str]) -> int:
    """`pacer CHANNEL TRIGGER [EGD_PORT]`: prints one line `ports K=V ...` on stderr,
    then wakes QEMU through CHANNEL (hmp|qmp: QEMU's monitor chardev dials our
    `mon` port; udp: we send datagrams to QEMU's netdev socket at port `udp`)
    either every US microseconds (TRIGGER periodic:US) or after each answer it
    forwards as an EGD proxy (TRIGGER reply: QEMU's rng-egd chardev dials our
    `egd` port, we dial entropyd's EGD_PORT), or after each answer it gives as a
    minimal EGD server of its own (TRIGGER serve). Runs until a peer closes or SIGTERM."""
    channel, trigger = argv[0], argv[1]
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    ports: dict[str, int] = {}
    mon_listen = udp = egd_listen = None
    if channel in WAKE_BYTES:
        mon_listen = socket.create_server(("127.0.0.1", 0))
        ports["mon"] = mon_listen.getsockname()[1]
    else:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        ports["udp"] = peers.free_port()  # QEMU binds it (localaddr=)
    if trigger in ("reply", "serve"):
        egd_listen = socket.create_server(("127.0.0.1", 0))
        ports["egd"] = egd_listen.getsockname()[1]
    print("ports " + " ".join(f"{k}={v}" for k, v in ports.items()), file=sys.stderr,
          flush=True)

    mon = None
    if mon_listen is not None:
        mon, _ = mon_listen.accept()
        mon.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wake_byte = WAKE_BYTES.get(channel, b"\0")

    def wake() -> None:
        if mon is not None:
            mon.send(wake_byte)
        else:
            udp.sendto(wake_byte, ("127.0.0.1", ports["udp"]))

    try:
        if trigger.startswith("periodic:"):
            interval = float(trigger.split(":", 1)[1]) / 1e6
            nxt = time.monotonic()
            readers = [mon] if mon is not None else []
            while True:
                now = time.monotonic()
                if now >= nxt:
                    wake()
                    nxt = max(nxt + interval, now)
                r, _, _ = select.select(readers, [], [], max(0.0, nxt - time.monotonic()))
                if r and not mon.recv(65536):  # monitor output is drained and dropped
                    return 0
        q, _ = egd_listen.accept()
        if trigger == "serve":
            return _serve_egd(q, mon, wake)
        e = socket.create_connection(("127.0.0.1", int(argv[2])))
        for s in (q, e):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        readers = [q, e] + ([mon] if mon is not None else [])
        while True:
            r, _, _ = select.select(readers, [], [])
            if q in r:
                b = q.recv(65536)
                if not b:
                    return 0
                e.sendall(b)
            if e in r:
                b = e.recv(65536)
                if not b:
                    return 0
                q.sendall(b)
                wake()
            if mon is not None and mon in r and not mon.recv(65536):
                return 0
    except (BrokenPipeError, ConnectionResetError):
        return 0


def _serve_egd(q: socket.socket, mon: socket.socket | None, wake: Callable[[], None]) -> int:
    """A minimal EGD server (blocking reads `02 NN` only, os.urandom) that wakes QEMU
    after each answer: the ceiling for the same wake built into a daemon (no proxy hop)."""
    q.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    readers = [q] + ([mon] if mon is not None else [])
    pending = b""
    while True:
        r, _, _ = select.select(readers, [], [])
        if mon is not None and mon in r and not mon.recv(65536):
            return 0
        if q not in r:
            continue
        b = q.recv(65536)
        if not b:
            return 0
        pending += b
        want = 0
        while len(pending) >= 2 and pending[0] == 2:
            want += pending[1]
            pending = pending[2:]
        if pending and pending[0] != 2:
            return 1  # not what QEMU sends; this prototype serves nothing else
        if want:
            q.sendall(os.urandom(want))
            wake()


class Pacer(peers.Process):
    """This script's `pacer` mode as a child process; ports() from its first line."""

    def __init__(self, channel: str, trigger: str, egd_port: int | None = None):
        argv = [sys.executable, str(Path(__file__).resolve()), "pacer", channel, trigger]
        if egd_port is not None:
            argv.append(str(egd_port))
        super().__init__(argv, "pacer")

    def ports(self) -> dict[str, int]:
        m = self.wait_line(r"^ports (.*)$", 10)
        return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


# ---------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------


@dataclass
class Context:
    image: ppc64.Ppc64Image
    nbytes: int         # bytes the guest reads
    idle: int           # seconds the guest idles after reading
    entropyd: Path      # daemon binary
    tmp: Path           # scratch folder (named pipes)


@dataclass
class Setup:
    backend: list[str]
    extra: list[str] = field(default_factory=list)
    stop: list[Callable[[], object]] = field(default_factory=list)
    pacer: Pacer | None = None

    def teardown(self) -> None:
        for f in self.stop:
            f()


def egd_chardev(port: int) -> list[str]:
    return guest.egd_backend(f"socket,id=egd0,host=127.0.0.1,port={port},reconnect=1")


def row_builtin(ctx: Context) -> Setup:
    return Setup(guest.builtin_backend())


def row_fifo(ctx: Context) -> Setup:
    fifo = ctx.tmp / f"rng-{time.monotonic_ns()}.fifo"
    d = peers.Entropyd(["--source", "getrandom", "--listen", f"fifo:{fifo}"],
                       binary=ctx.entropyd)
    return Setup(ppc64.rng_random_backend(fifo), stop=[d.stop])


def row_egd(wakeup_us: int | None):
    def setup(ctx: Context) -> Setup:
        d = peers.Entropyd(["--source", "getrandom", "--listen", "tcp:127.0.0.1:0"],
                           binary=ctx.entropyd)
        extra = guest.pacer_args(wakeup_us) if wakeup_us else []
        return Setup(egd_chardev(d.port()), extra, stop=[d.stop])
    return setup


def row_pacer(channel: str, trigger: str):
    def setup(ctx: Context) -> Setup:
        d = None
        if trigger != "serve":
            d = peers.Entropyd(["--source", "getrandom", "--listen", "tcp:127.0.0.1:0"],
                               binary=ctx.entropyd)
        try:
            p = Pacer(channel, trigger, d.port() if trigger == "reply" else None)
        except peers.PeerError:
            if d:
                d.stop()
            raise
        try:
            ports = p.ports()
        except peers.PeerError:
            p.stop()
            if d:
                d.stop()
            raise
        if channel == "hmp":
            extra = ppc64.hmp_monitor_args(ports["mon"])
        elif channel == "qmp":
            extra = ppc64.qmp_monitor_args(ports["mon"])
        else:
            extra = ["-netdev", f"socket,id=wake0,udp=127.0.0.1:9,"
                                f"localaddr=127.0.0.1:{ports['udp']}"]
        backend = egd_chardev(ports["egd"] if "egd" in ports else d.port())
        return Setup(backend, extra, stop=[p.stop] + ([d.stop] if d else []), pacer=p)
    return setup


MAIN_ROWS = [
    ("builtin", "rng-builtin", row_builtin),
    ("fifo", "entropyd fifo + rng-random", row_fifo),
    ("egd-fb100", "entropyd rng-egd + filter-buffer 100us", row_egd(100)),
    ("egd-fb1000", "entropyd rng-egd + filter-buffer 1ms", row_egd(1000)),
    ("egd-nowake", "entropyd rng-egd, no wake-up", row_egd(None)),
]
RESEARCH_ROWS = [
    (f"{ch}-{us}", f"rng-egd + pacer {ch.upper()} every {us}us", row_pacer(ch, f"periodic:{us}"))
    for ch in ("hmp", "udp") for us in (100, 1000, 10000)
] + [
    ("qmp-1000", "rng-egd + pacer QMP ' ' every 1000us", row_pacer("qmp", "periodic:1000")),
    ("hmp-reply", "rng-egd via proxy, HMP wake per answer", row_pacer("hmp", "reply")),
    ("udp-reply", "rng-egd via proxy, UDP wake per answer", row_pacer("udp", "reply")),
    ("udp-serve", "rng-egd to Python EGD server, UDP wake per answer", row_pacer("udp", "serve")),
]


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------


@dataclass
class Sample:
    read_s: float | None = None       # guest-side read time; None = stalled/failed
    boot_s: float = 0.0               # guest uptime at READ-START
    qemu_cpu_read: float = 0.0        # QEMU CPU seconds between READ-START and READ-DONE
    pacer_cpu_read: float = 0.0
    idle_s: float = 0.0               # host seconds between IDLE-START and IDLE-DONE
    qemu_cpu_idle: float = 0.0
    pacer_cpu_idle: float = 0.0
    error: str = ""
    has_pacer: bool = False


MARKERS = ("READ-START", "READ-DONE", "IDLE-START", "IDLE-DONE")


def measure(ctx: Context, setup_fn: Callable[[Context], Setup], timeout: float) -> Sample:
    """One boot: guest-side read time, and CPU of QEMU and the pacer at each marker."""
    s = Sample()
    try:
        setup = setup_fn(ctx)
    except (peers.PeerError, OSError) as e:
        s.error = f"set-up failed: {str(e).splitlines()[0]}"
        return s
    s.has_pacer = setup.pacer is not None
    run = ppc64.Ppc64Run(ctx.image, setup.backend, nbytes=ctx.nbytes, dump=False,
                         idle=ctx.idle, extra=setup.extra)
    seen: dict[str, tuple[float, float, float]] = {}
    try:
        run.start()
        deadline = run.t_start + timeout
        while run.proc.poll() is None and time.monotonic() < deadline:
            qc = run.cpu()
            pc = ppc64.cpu_seconds(setup.pacer.pid) if setup.pacer else 0.0
            console = run.console()
            for m in MARKERS:
                if m not in seen and re.search(rf"^{ppc64.MARK}{m}\b", console, re.M):
                    seen[m] = (time.monotonic(), qc, pc)
            time.sleep(0.02)
        if run.proc.poll() is None:
            s.error = (f"stalled: no READ-DONE within {timeout:.0f}s "
                       f"({'reached' if 'READ-START' in seen else 'never reached'} its read; "
                       f"QEMU used {run.cpu():.1f}s CPU)")
            return s
        res = run.finish(timeout + 1)
        s.read_s, s.boot_s = res.read_seconds, res.boot_seconds
        if "READ-START" in seen and "READ-DONE" in seen:
            s.qemu_cpu_read = seen["READ-DONE"][1] - seen["READ-START"][1]
            s.pacer_cpu_read = seen["READ-DONE"][2] - seen["READ-START"][2]
        if "IDLE-START" in seen and "IDLE-DONE" in seen:
            s.idle_s = seen["IDLE-DONE"][0] - seen["IDLE-START"][0]
            s.qemu_cpu_idle = seen["IDLE-DONE"][1] - seen["IDLE-START"][1]
            s.pacer_cpu_idle = seen["IDLE-DONE"][2] - seen["IDLE-START"][2]
        return s
    except guest.GuestError as e:
        s.error = str(e).splitlines()[0]
        return s
    finally:
        run.cleanup()
        setup.teardown()


def pct(cpu: float, seconds: float) -> str:
    return f"{100 * cpu / seconds:5.0f}%" if seconds > 0 else "    -"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "pacer":
        return pacer_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bytes", type=int, default=128 << 10,
                    help="bytes the guest reads per boot (default 128 KiB)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="boots per row, rounds interleaved; the median is shown (default 3)")
    ap.add_argument("--idle", type=int, default=3,
                    help="seconds the guest idles after its read, for idle CPU (default 3)")
    ap.add_argument("--research", action="store_true",
                    help="add the pacer rows (daemon-side wake-up prototypes)")
    ap.add_argument("--rows", default="",
                    help="comma-separated row names to run (builtin is always run)")
    ap.add_argument("--timeout", type=float, default=300, help="hard limit per boot, s")
    ap.add_argument("--stall-limit", type=float, default=60,
                    help="limit per boot for rows that may stall (egd-nowake, qmp-*), s")
    ap.add_argument("--entropyd", type=Path, default=peers.entropyd_path(),
                    help="daemon binary (default $ENTROPYD or build/entropyd)")
    args = ap.parse_args()

    rows = MAIN_ROWS + (RESEARCH_ROWS if args.research or args.rows else [])
    if args.rows:
        wanted = set(args.rows.split(",")) | {"builtin"}
        unknown = wanted - {r[0] for r in rows}
        if unknown:
            ap.error(f"unknown rows: {', '.join(sorted(unknown))}")
        rows = [r for r in rows if r[0] in wanted]
    try:
        image = ppc64.ensure_image()
    except guest.GuestError as e:
        print(f"bench_ppc64: cannot obtain the ppc64 guest: {e}", file=sys.stderr)
        return 1

    ctx = Context(image, args.bytes, args.idle, args.entropyd,
                  Path(tempfile.mkdtemp(prefix="bench-ppc64-")))

    print(f"guest: ppc64 pseries {image.kernel_version}, TCG, x-vof firmware; reads "
          f"{args.bytes} bytes from /dev/hwrng (pseries_rng, 8 bytes per H_RANDOM); "
          f"{args.repeat} boot(s) per row, rounds interleaved; guest-side timing "
          f"(/proc/uptime, 10 ms); entropyd source: getrandom; load "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    samples: dict[str, list[Sample]] = {name: [] for name, _, _ in rows}
    for rnd in range(args.repeat):
        for name, label, fn in rows:
            may_stall = name == "egd-nowake" or name.startswith("qmp")
            t = time.monotonic()
            s = measure(ctx, fn, args.stall_limit if may_stall else args.timeout)
            samples[name].append(s)
            if s.read_s is None:
                print(f"  round {rnd + 1}: {label}: {s.error}", flush=True)
            else:
                print(f"  round {rnd + 1}: {label}: {args.bytes / s.read_s / 1e3:.1f} KB/s "
                      f"(read {s.read_s:.2f}s after booting {s.boot_s:.2f}s; QEMU CPU "
                      f"{pct(s.qemu_cpu_read, s.read_s).strip()} reading, "
                      f"{pct(s.qemu_cpu_idle, s.idle_s).strip()} idle; whole boot "
                      f"{time.monotonic() - t:.1f}s)", flush=True)

    base = None
    table = []
    for name, label, _ in rows:
        ok = [s for s in samples[name] if s.read_s is not None]
        if not ok:
            table.append((label, None, samples[name][0].error, None))
            continue
        med = statistics.median(s.read_s for s in ok)
        rate = args.bytes / med / 1e3
        spread = f"{args.bytes / max(s.read_s for s in ok) / 1e3:.0f}-" \
                 f"{args.bytes / min(s.read_s for s in ok) / 1e3:.0f}"

        def mcpu(attr: str, span: str) -> float:
            vals = [getattr(s, attr) / getattr(s, span) for s in ok if getattr(s, span) > 0]
            return statistics.median(vals) if vals else float("nan")
        cpu = (mcpu("qemu_cpu_read", "read_s"), mcpu("pacer_cpu_read", "read_s"),
               mcpu("qemu_cpu_idle", "idle_s"), mcpu("pacer_cpu_idle", "idle_s"))
        if not ok[0].has_pacer:
            cpu = (cpu[0], float("nan"), cpu[2], float("nan"))
        note = f"{len(samples[name]) - len(ok)} of {len(samples[name])} stalled" \
            if len(ok) < len(samples[name]) else ""
        table.append((label, rate, spread, cpu, note))
        if name == "builtin":
            base = rate

    width = max(len(t[0]) for t in table)
    print()
    print(f"{'backend':<{width}}  {'KB/s':>7}  {'range':>9}  {'x builtin':>9}  {'QEMU CPU':>8}  "
          f"{'pacer':>6}  {'QEMU idle':>9}  {'pacer idle':>10}")
    print(f"{'-' * width}  {'-' * 7}  {'-' * 9}  {'-' * 9}  {'-' * 8}  {'-' * 6}  {'-' * 9}  "
          f"{'-' * 10}")
    for label, rate, *rest in table:
        if rate is None:
            reason = rest[0]
            word = "stalled" if reason.startswith("stalled") else "FAILED"
            print(f"{label:<{width}}  {word:>7}  {reason.split(': ', 1)[-1]}")
            continue
        spread, cpu, note = rest
        ratio = f"{rate / base:.2f}" if base else "-"
        cols = "  ".join(f"{'-':>{w + 1}}" if c != c else f"{100 * c:{w}.0f}%"
                         for c, w in zip(cpu, (7, 5, 8, 9)))
        print(f"{label:<{width}}  {rate:7.1f}  {spread:>9}  {ratio:>9}  {cols}  {note}")
    print("\nKB/s: median over rounds (range: slowest-fastest round). CPU columns: percent "
          "of one core, median over rounds; QEMU/pacer during the read, and during the "
          "guest's idle sleep afterwards.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
