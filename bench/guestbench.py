"""What the guest benchmarks share: the rng paths to a TCG x86 guest, one timed
boot, and the CPU a serving process spends (bench_guest.py, bench_vhost.py).

A path is a function that starts whatever serves the guest and returns a
Served: the QEMU arguments, the device, the serving process's PID (whose CPU is
measured; None for QEMU's own sources) and how to stop it. measure() boots the
e2e guest once, lets it read from /dev/hwrng, and returns the guest-side read
time and the serving process tree's CPU seconds over the read (sampled when the
console shows READ-START and READ-DONE). Every process is stopped by its PID.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

import guest  # noqa: E402
import peers  # noqa: E402

VIRTIO_RNG = "virtio-rng-pci,rng=rng0"
MEMORY_MB = 256


@dataclass
class Served:
    backend: list[str]                  # QEMU arguments for the rng source
    stop: Callable[[], object]          # stops the serving process (if any)
    pid: int | None = None              # the serving process, for its CPU
    device: str = VIRTIO_RNG


def builtin() -> Served:
    return Served(guest.builtin_backend(), lambda: None)


def entropyd_tcp(binary: Path, options: str = "") -> Callable[[], Served]:
    """rng-egd over TCP to `entropyd --source getrandom`."""
    def setup() -> Served:
        d = peers.Entropyd(["--source", "getrandom", "--listen", "tcp:127.0.0.1:0" + options],
                           binary=binary)
        chardev = f"socket,id=egd0,host=127.0.0.1,port={d.port()},reconnect=1"
        return Served(guest.egd_backend(chardev), d.stop, d.pid)
    return setup


def entropyd_vhost_user(binary: Path) -> Callable[[], Served]:
    """vhost-user-rng-pci served by `entropyd --source getrandom --listen vhost-user:`."""
    def setup() -> Served:
        path = Path(tempfile.mkdtemp(prefix="entropyd-bench-")) / "vu.sock"
        d = peers.Entropyd(["--source", "getrandom", "--listen", f"vhost-user:{path}"],
                           binary=binary)
        peers.wait_path(path, 10, d.proc)
        return Served(guest.vhost_user_backend(path, MEMORY_MB), d.stop, d.pid,
                      guest.VHOST_USER_DEVICE)
    return setup


def socat_tcp() -> Served:
    """rng-egd over TCP to `socat ... OPEN:/dev/urandom` (forks one child per connection)."""
    port = peers.free_port()
    s = peers.Socat(port, "OPEN:/dev/urandom")
    chardev = f"socket,id=egd0,host=127.0.0.1,port={port},reconnect=1"
    return Served(guest.egd_backend(chardev), s.stop, s.pid)


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of pid, of its reaped children (cutime+cstime) and of its live
    descendants, in seconds (/proc/PID/stat): socat's work is done in a child."""
    f = _stat(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / os.sysconf("SC_CLK_TCK") + sum(tree_cpu_seconds(c) for c in _children(pid))


@dataclass
class Measured:
    read_seconds: float                 # guest-side read time
    cpu_seconds: float | None           # the serving process tree's CPU over the read


def measure(image: guest.GuestImage, setup: Callable[[], Served], nbytes: int,
            extra: list[str], timeout: float) -> Measured:
    """One boot: the guest reads nbytes (not dumped); time and serving CPU."""
    served = setup()
    try:
        with guest.GuestRun(image, served.backend, nbytes=nbytes, dump=False,
                            device=served.device, memory_mb=MEMORY_MB,
                            extra=list(extra)) as run:
            run.start()
            cpu0 = cpu1 = None
            if served.pid is not None:
                run.wait_console(r"^E2E: READ-START", timeout)
                cpu0 = tree_cpu_seconds(served.pid)
                run.wait_console(r"^E2E: READ-DONE", timeout)
                cpu1 = tree_cpu_seconds(served.pid)
            res = run.finish(timeout)
        cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        return Measured(res.read_seconds, cpu)
    finally:
        served.stop()
