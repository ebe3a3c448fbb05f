"""Boot a throw-away ppc64 pseries Linux guest and read its /dev/hwrng (spapr-rng).

The ppc64 counterpart of guest.py: it fetches (once, into the same cache folder)
Debian's ppc64el kernel and busybox-static:ppc64el, builds an initramfs that
loads pseries-rng.ko, and boots it under qemu-system-ppc64 (TCG, minimal VOF
firmware) with any rng backend behind `-device spapr-rng,rng=rng0`. Every 8
bytes the guest reads is one H_RANDOM hypercall, which QEMU serves from the
backend: rng-builtin, rng-random on entropyd's named pipe, or rng-egd over a
socket to entropyd.

Invariants:
  * Nothing is installed on the host except qemu-system-ppc (apt-get) and the
    ppc64el foreign architecture in dpkg's list; the kernel and busybox are
    fetched with `apt-get download` and unpacked with `dpkg -x`.
  * Every QEMU run has a hard timeout and is ended by its own PID (SIGTERM,
    then SIGKILL: a QEMU stalled in H_RANDOM ignores SIGTERM).
  * Any failure to obtain QEMU, the kernel or busybox raises GuestError with the
    reason; callers turn it into a test failure, never a skip.
  * The ppc64 kernel issues H_RANDOM at early boot: the backend (entropyd) must
    be serving before start() is called.

Guest protocol, as guest.py's (console = hvc0 = QEMU's first -serial, here
stdio; data = hvc1 = the second -serial file:PATH): init prints lines starting
with "E2E: " on the console and base64 of the bytes it read on hvc1. Kernel
command-line parameters: rngbytes=N, rngchunk=N (read in N-byte chunks with a
PROGRESS line after each), rngdump=0|1, rngidle=S (sleep S seconds between
IDLE-START and IDLE-DONE lines before power-off, to measure idle CPU cost).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import gzip
import hashlib
import lzma
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import guest
from guest import GuestError, cache_dir

QEMU = "qemu-system-ppc64"
QEMU_PACKAGE = "qemu-system-ppc"
ARCH = "ppc64el"
KERNEL_META_PACKAGE = f"linux-image-powerpc64le:{ARCH}"
BUSYBOX_PACKAGE = f"busybox-static:{ARCH}"
MODULE = "drivers/char/hw_random/pseries-rng"
RNG_NAME = "pseries_rng"
MARK = "E2E: "
APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=300"]

INIT_SCRIPT = guest.make_init_script(["pseries-rng"], "pseries_rng", "hvc1", 65536)

# Image variants: the modules the initramfs loads (in order) and the rng the guest's
# init waits for. "spapr" reads spapr-rng (H_RANDOM); "virtio" reads a virtio-rng-pci or
# vhost-user-rng-pci device, with the same six virtio modules as the x86 guest.
VARIANTS = {
    "spapr": ([MODULE], INIT_SCRIPT),
    "virtio": (list(guest.MODULES),
               guest.make_init_script([Path(m).name for m in guest.MODULES],
                                      "virtio_rng.0", "hvc1", 65536)),
}


# ---------------------------------------------------------------------------
# Host set-up: QEMU, the ppc64el architecture, packages
# ---------------------------------------------------------------------------


def _run(cmd: Sequence[str], *, cwd: Path | None = None, timeout: float = 900,
         what: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; GuestError (with its output) if it cannot run or fails."""
    try:
        p = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True,
                           timeout=timeout, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except FileNotFoundError as e:
        raise GuestError(f"{what}: command not found: {cmd[0]}") from e
    except subprocess.TimeoutExpired as e:
        raise GuestError(f"{what}: timed out after {timeout}s: {' '.join(cmd)}") from e
    if check and p.returncode != 0:
        raise GuestError(f"{what}: `{' '.join(cmd)}` exited {p.returncode}:\n"
                         f"{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return p


@contextlib.contextmanager
def _locked(path: Path):
    """Serialise builders of the same cache (parallel runs, other harnesses)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_qemu() -> str:
    """qemu-system-ppc64's path, installing qemu-system-ppc if it is missing."""
    path = shutil.which(QEMU)
    if path:
        return path
    if os.geteuid() != 0:
        raise GuestError(f"{QEMU} is not installed and we are not root: "
                         f"apt-get install {QEMU_PACKAGE}")
    p = _run(["apt-get", "install", "-y", "-q", *APT_LOCK_WAIT, QEMU_PACKAGE],
             what=f"install {QEMU_PACKAGE}", check=False)
    path = shutil.which(QEMU)
    if not path:
        raise GuestError(f"apt-get install {QEMU_PACKAGE} (exit {p.returncode}) left no "
                         f"{QEMU}:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return path


def _apt_update() -> str:
    """apt-get update, tolerating failed indexes (the security archive's ppc64el
    index is known to fail now and then); returns apt's output for messages."""
    p = _run(["apt-get", "update", "-q", *APT_LOCK_WAIT], what="apt-get update", check=False)
    return p.stdout[-1500:] + p.stderr[-1500:]


def _ensure_foreign_arch() -> None:
    """Add ppc64el to dpkg's architectures (and refresh apt) if it is not there."""
    out = _run(["dpkg", "--print-foreign-architectures"], what="dpkg").stdout.split()
    if ARCH in out:
        return
    if os.geteuid() != 0:
        raise GuestError(f"dpkg does not know {ARCH} and we are not root: run "
                         f"`dpkg --add-architecture {ARCH} && apt-get update`")
    _run(["dpkg", "--add-architecture", ARCH], what=f"dpkg --add-architecture {ARCH}")
    _apt_update()


def _kernel_package_name() -> str:
    """The versioned kernel package linux-image-powerpc64le:ppc64el depends on."""
    def query() -> str | None:
        p = _run(["apt-cache", "depends", KERNEL_META_PACKAGE], what="apt-cache", check=False)
        m = re.search(r"Depends:\s*(linux-image-\S+-powerpc64le)(?::ppc64el)?\b", p.stdout)
        return m.group(1) if m else None

    name = query()
    log = ""
    if name is None and os.geteuid() == 0:
        log = _apt_update()
        name = query()
    if name is None:
        raise GuestError(f"cannot resolve the ppc64el kernel: `apt-cache depends "
                         f"{KERNEL_META_PACKAGE}` names no linux-image-*-powerpc64le "
                         f"(apt-get update said:\n{log})")
    return name


def _download_and_unpack(package: str, dest: Path) -> None:
    """apt-get download PACKAGE (refreshing apt once if needed), dpkg -x to dest."""
    work = Path(tempfile.mkdtemp(prefix="dl-", dir=dest.parent))
    try:
        p = _run(["apt-get", "download", package], cwd=work, what=f"download {package}",
                 check=False)
        if p.returncode != 0 and os.geteuid() == 0:
            _apt_update()
            p = _run(["apt-get", "download", package], cwd=work, what=f"download {package}",
                     check=False)
        debs = sorted(work.glob("*.deb"))
        if p.returncode != 0 or not debs:
            raise GuestError(f"apt-get download {package} failed (exit {p.returncode}, "
                             f"{len(debs)} .deb):\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
        _run(["dpkg", "-x", str(debs[0]), str(work / "root")], what=f"unpack {package}")
        if dest.exists():
            shutil.rmtree(dest)
        (work / "root").rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _is_static_ppc64le(path: Path) -> bool:
    """True if path is a little-endian ELF64 PowerPC executable with no interpreter."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(64)
            if len(hdr) < 64 or hdr[:4] != b"\x7fELF" or hdr[4] != 2 or hdr[5] != 1:
                return False
            machine, = struct.unpack_from("<H", hdr, 0x12)
            if machine != 21:  # EM_PPC64
                return False
            phoff, = struct.unpack_from("<Q", hdr, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", hdr, 0x36)
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                if struct.unpack("<I", f.read(4))[0] == 3:  # PT_INTERP
                    return False
            return True
    except OSError:
        return False


def _module_bytes(kernel_dir: Path, rel: str) -> bytes:
    """A module's bytes, decompressing .ko.xz / .ko.gz if that is how it ships."""
    base = kernel_dir / rel
    for suffix, unpack in ((".ko", lambda b: b), (".ko.xz", lzma.decompress),
                           (".ko.gz", gzip.decompress)):
        p = base.with_name(base.name + suffix)
        if p.exists():
            return unpack(p.read_bytes())
    raise GuestError(f"module {rel}.ko[.xz|.gz] not found under {kernel_dir}")


def newc_archive(files: dict[str, tuple[int, bytes]]) -> bytes:
    """A cpio "newc" archive (what the kernel unpacks as an initramfs) of
    {path: (mode, data)}; directories have mode 0o40755 and empty data. Written
    here so that no cpio binary is needed (a missing one silently yields an
    empty archive and a panicking guest)."""
    out = bytearray()

    def entry(ino: int, name: str, mode: int, data: bytes) -> None:
        nb = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0)
        out.extend(b"070701" + b"".join(b"%08X" % v for v in fields) + nb)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, (mode, data)) in enumerate(sorted(files.items()), start=1):
        entry(ino, name, mode, data)
    entry(0, "TRAILER!!!", 0, b"")
    return bytes(out)


@dataclass(frozen=True)
class Ppc64Image:
    kernel: Path
    initrd: Path
    kernel_version: str


def ensure_image(variant: str = "spapr") -> Ppc64Image:
    """Install QEMU if needed, fetch (once) the kernel and busybox, build (once)
    the initramfs of `variant` (a key of VARIANTS). Raises GuestError with the
    reason when anything is missing."""
    rels, init_script = VARIANTS[variant]
    ensure_qemu()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock-ppc64"):
        trees = [t for t in sorted(cache.glob("linux-image-*-powerpc64le"), reverse=True)
                 if list(t.glob("boot/vmlinux-*")) and list(t.glob("lib/modules/*/kernel"))]
        if trees:
            tree = trees[0]
        else:
            _ensure_foreign_arch()
            pkg = _kernel_package_name()
            tree = cache / pkg
            _download_and_unpack(f"{pkg}:{ARCH}", tree)
        vmlinux = sorted(tree.glob("boot/vmlinux-*"))
        kdirs = sorted(tree.glob("lib/modules/*/kernel"))
        if not vmlinux or not kdirs:
            raise GuestError(f"{tree} holds no boot/vmlinux-* or lib/modules/*/kernel")
        version = kdirs[-1].parent.name
        modules = {Path(rel).name: _module_bytes(kdirs[-1], rel) for rel in rels}

        bb_tree = cache / "busybox-static-ppc64el"
        busybox = bb_tree / "bin" / "busybox"
        if not _is_static_ppc64le(busybox):
            _ensure_foreign_arch()
            _download_and_unpack(BUSYBOX_PACKAGE, bb_tree)
        if not _is_static_ppc64le(busybox):
            raise GuestError(f"{BUSYBOX_PACKAGE} unpacked no static ppc64le {busybox}")
        bb = busybox.read_bytes()

        h = hashlib.sha256(init_script.encode() + b"\0" + bb + b"\0"
                           + b"\0".join(modules.values()))
        initrd = cache / f"ppc64-initrd-{version}-{h.hexdigest()[:16]}.cpio.gz"
        if not initrd.exists():
            # Drop stale images; a recent one may belong to a concurrent run of
            # another version of this file.
            for old in cache.glob("ppc64-initrd-*.cpio.gz"):
                if time.time() - old.stat().st_mtime > 3600:
                    old.unlink(missing_ok=True)
            d = 0o40755
            files = {p: (d, b"") for p in ("bin", "dev", "lib", "lib/modules", "proc",
                                          "sys", "tmp")}
            files["bin/busybox"] = (0o100755, bb)
            for name, data in modules.items():
                files[f"lib/modules/{name}.ko"] = (0o100644, data)
            files["init"] = (0o100755, init_script.encode())
            tmp = initrd.with_suffix(".tmp")
            tmp.write_bytes(gzip.compress(newc_archive(files), compresslevel=6))
            tmp.rename(initrd)
        return Ppc64Image(kernel=vmlinux[-1], initrd=initrd, kernel_version=version)


# ---------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------


def rng_random_backend(path: str | Path) -> list[str]:
    """QEMU arguments for rng-random reading a file or named pipe (entropyd's fifo)."""
    return ["-object", f"rng-random,id=rng0,filename={path}"]


def hmp_monitor_args(port: int) -> list[str]:
    """A human monitor on a TCP chardev that dials 127.0.0.1:port (reconnect=1).
    HMP reads in QEMU's main loop, so each byte a peer sends wakes that loop."""
    return ["-chardev", f"socket,id=mon0,host=127.0.0.1,port={port},reconnect=1",
            "-mon", "chardev=mon0,mode=readline"]


def qmp_monitor_args(port: int) -> list[str]:
    """A QMP monitor on a TCP chardev that dials 127.0.0.1:port (reconnect=1).
    QEMU reads a socket QMP monitor in its monitor I/O thread, not the main loop."""
    return ["-chardev", f"socket,id=mon0,host=127.0.0.1,port={port},reconnect=1",
            "-mon", "chardev=mon0,mode=control"]


# ---------------------------------------------------------------------------
# Running the guest
# ---------------------------------------------------------------------------


@dataclass
class Ppc64Result:
    data: bytes | None          # bytes the guest read (None when not dumped)
    nbytes: int                 # bytes the guest reports it read
    read_seconds: float         # guest-side time of the read (/proc/uptime, 10 ms)
    boot_seconds: float         # guest uptime at READ-START
    wall_seconds: float         # host time from QEMU start to QEMU exit
    qemu_cpu_seconds: float     # user+system CPU QEMU used in all
    console: str

    @property
    def kb_per_s(self) -> float:
        return self.nbytes / self.read_seconds / 1e3 if self.read_seconds > 0 else float("inf")


def cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of a live process (its own threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Ppc64Run(guest.QemuRun):
    """One qemu-system-ppc64 process; start() it, watch its console, finish()."""
    image: Ppc64Image
    backend: list[str]
    nbytes: int = 65536
    chunk: int = 0
    dump: bool = True
    idle: int = 0
    extra: list[str] = field(default_factory=list)
    memory_mb: int = 512
    device: str = "spapr-rng,rng=rng0"
    workdir: Path | None = None
    proc: subprocess.Popen | None = None
    t_start: float = 0.0
    last_cpu: float = 0.0
    _own_workdir: bool = False

    def command(self) -> list[str]:
        assert self.workdir is not None
        append = (f"quiet panic=-1 rngbytes={self.nbytes} rngchunk={self.chunk} "
                  f"rngdump={1 if self.dump else 0} rngidle={self.idle}")
        return [QEMU, "-M", "pseries,x-vof=on", "-accel", "tcg", "-m", str(self.memory_mb),
                "-nographic", "-no-reboot", "-nodefaults",
                "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
                "-append", append,
                "-serial", "stdio", "-serial", f"file:{self.data_path}",
                *self.backend, "-device", self.device, *self.extra]

    def start(self) -> "Ppc64Run":
        """Start QEMU (its backend must already be serving: H_RANDOM at early boot)."""
        self._make_workdir("entropyd-ppc64-")
        self.data_path.write_bytes(b"")
        self.t_start = time.monotonic()
        try:
            with open(self.console_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=err)
        except OSError as e:
            raise GuestError(f"cannot start {QEMU}: {e}") from e
        return self

    def console(self) -> str:
        try:
            return self.console_path.read_bytes().decode(errors="replace").replace("\r", "")
        except FileNotFoundError:
            return ""

    def describe(self, tail: int = 3000) -> str:
        """The command, QEMU's stderr and the console's tail, for failure messages."""
        try:
            err = self.stderr_path.read_text(errors="replace")
        except (FileNotFoundError, AssertionError):
            err = ""
        return (f"--- qemu command: {' '.join(self.command())}\n"
                f"--- qemu stderr:\n{err[-tail:]}\n"
                f"--- guest console (tail):\n{self.console()[-tail:]}")

    def cpu(self) -> float:
        """QEMU's CPU seconds so far (the last value seen once it has exited)."""
        if self.proc is not None and self.proc.poll() is None:
            self.last_cpu = cpu_seconds(self.proc.pid) or self.last_cpu
        return self.last_cpu

    def wait_console(self, pattern: str, timeout: float) -> re.Match:
        """Wait until the console matches the regex; GuestError on exit or timeout."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            self.cpu()
            m = rx.search(self.console())
            if m:
                return m
            if self.proc is not None and self.proc.poll() is not None:
                m = rx.search(self.console())
                if m:
                    return m
                raise GuestError(f"QEMU exited ({self.proc.returncode}) before the console "
                                 f"showed /{pattern}/\n{self.describe()}")
            if time.monotonic() > deadline:
                raise GuestError(f"console did not show /{pattern}/ within {timeout}s\n"
                                 f"{self.describe()}")
            time.sleep(0.05)

    def kill(self, grace: float = 5) -> None:
        """End QEMU by its PID: SIGTERM, then SIGKILL if it is still there after grace s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.cpu()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def finish(self, timeout: float) -> Ppc64Result:
        """Wait (bounded by timeout s from start) for power-off; parse and verify."""
        assert self.proc is not None
        deadline = self.t_start + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.cpu()
            try:
                self.proc.wait(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.kill()
            raise GuestError(f"guest did not finish within {timeout}s (QEMU killed)\n"
                             f"{self.describe()}")
        wall = time.monotonic() - self.t_start
        console = self.console()
        fail = re.search(rf"^{MARK}FAIL (.*)$", console, re.M)
        if fail:
            raise GuestError(f"guest reported failure: {fail.group(1)}\n{self.describe()}")
        done = re.search(rf"^{MARK}READ-DONE bytes=(\d+) t0=([\d.]+) t1=([\d.]+)", console, re.M)
        if not done:
            raise GuestError(f"guest exited ({self.proc.returncode}) without READ-DONE\n"
                             f"{self.describe()}")
        nbytes = int(done.group(1))
        data = None
        if self.dump:
            data = self._dumped(console, nbytes)
        start = re.search(rf"^{MARK}READ-START .*uptime=([\d.]+)", console, re.M)
        return Ppc64Result(data=data, nbytes=nbytes,
                           read_seconds=float(done.group(3)) - float(done.group(2)),
                           boot_seconds=float(start.group(1)) if start else 0.0,
                           wall_seconds=wall, qemu_cpu_seconds=self.last_cpu,
                           console=console)

    def _dumped(self, console: str, nbytes: int) -> bytes:
        """The bytes the guest sent on hvc1, checked against its SHA256 line."""
        if not re.search(rf"^{MARK}DUMP-DONE", console, re.M):
            raise GuestError(f"guest did not finish dumping its bytes\n{self.describe()}")
        raw = self.data_path.read_bytes()
        try:
            data = base64.b64decode(re.sub(rb"\s+", b"", raw), validate=True)
        except ValueError as e:
            raise GuestError(f"hvc1 output is not valid base64 ({len(raw)} bytes): {e}") from e
        want = re.search(rf"^{MARK}SHA256 ([0-9a-f]{{64}})", console, re.M)
        if not want or hashlib.sha256(data).hexdigest() != want.group(1):
            raise GuestError(f"bytes from hvc1 ({len(data)}) do not match the guest's sha256 "
                             f"(serial transfer damaged or cut short)")
        if len(data) != nbytes:
            raise GuestError(f"guest read {nbytes} bytes but sent {len(data)}")
        return data



def boot(image: Ppc64Image, backend: list[str], *, nbytes: int = 65536,
         timeout: float = 300, dump: bool = True, extra: Iterable[str] = (),
         chunk: int = 0, workdir: Path | None = None) -> Ppc64Result:
    """Boot, read nbytes from /dev/hwrng, power off; bounded by timeout seconds."""
    with Ppc64Run(image, list(backend), nbytes=nbytes, dump=dump, chunk=chunk,
                  extra=list(extra), workdir=workdir) as run:
        run.start()
        return run.finish(timeout)
