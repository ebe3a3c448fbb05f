"""Boot a throw-away x86_64 Linux guest under QEMU and read its /dev/hwrng.

This is the end-to-end harness for entropyd: it builds (once, into a cache
folder) a guest made only of Debian's cloud kernel, busybox-static and a
six-module initramfs; boots it with any rng backend (rng-egd over any chardev,
rng-builtin, ...); collects the bytes the guest read from /dev/hwrng through
its second serial port; and checks that those bytes are pieces of a known
source file in increasing file order.

Invariants:
  * Nothing is installed on the host: packages are fetched with `apt-get
    download` and unpacked with `dpkg -x` into the cache folder.
  * Every QEMU run has a hard timeout and is ended by its own PID (SIGTERM,
    then SIGKILL), never by name.
  * Any failure to obtain QEMU, the kernel or busybox raises GuestError with
    the reason; callers turn it into a test failure, never a skip.

Guest protocol (console = ttyS0, data = ttyS1): the guest's init prints lines
starting with "E2E: " on the console and base64 of the bytes it read on
ttyS1. Parameters come from the kernel command line: rngbytes=N (bytes to
read), rngchunk=N (read in chunks of N bytes and print a PROGRESS line after
each; default one read), rngdump=0|1 (send the bytes to the host).
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

REPO_ROOT = Path(__file__).resolve().parents[2]
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
QEMU = "qemu-system-x86_64"

# Load order matters: each module needs the ones before it.
MODULES = (
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci",
    "drivers/char/hw_random/virtio-rng",
)

# Console marker prefix printed by the guest's init.
MARK = "E2E: "

# The start of every e2e guest's init (busybox): mounts, console, and the reporting
# functions the host's harness reads (lines starting "E2E: ", "END" before power-off).
INIT_PRELUDE = r"""/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1

say() { echo "E2E: $*"; }
finish() { sync; say "END"; poweroff -f; sleep 10; }
fail() { say "FAIL $*"; finish; }
now() { cut -d' ' -f1 /proc/uptime; }
"""

_INIT_TEMPLATE = r"""#!/bin/busybox sh
# entropyd e2e guest init: load the RNG driver, read /dev/hwrng, report, power off.
@PRELUDE@
say "INIT uptime=$(now)"
for m in @MODULES@; do
    insmod "/lib/modules/$m.ko" || fail "insmod $m"
done

N=@BYTES@; CHUNK=0; DUMP=1; IDLE=0
for kv in $(cat /proc/cmdline); do
    case "$kv" in
    rngbytes=*) N="${kv#rngbytes=}" ;;
    rngchunk=*) CHUNK="${kv#rngchunk=}" ;;
    rngdump=*) DUMP="${kv#rngdump=}" ;;
    rngidle=*) IDLE="${kv#rngidle=}" ;;
    esac
done

cur=""
i=0
while [ $i -lt 100 ]; do
    cur="$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
    [ "$cur" = "@RNG@" ] && break
    sleep 0.1
    i=$((i + 1))
done
[ "$cur" = "@RNG@" ] || fail "rng_current is '$cur', not @RNG@"
say "RNG $cur"

say "READ-START bytes=$N chunk=$CHUNK uptime=$(now)"
t0="$(now)"
if [ "$CHUNK" -gt 0 ] && [ "$CHUNK" -lt "$N" ]; then
    : >/tmp/data
    left=$N
    k=0
    while [ $left -gt 0 ]; do
        c=$CHUNK
        [ $c -gt $left ] && c=$left
        dd if=/dev/hwrng bs=$c count=1 iflag=fullblock 2>/dev/null >>/tmp/data || fail "dd chunk $k"
        left=$((left - c))
        k=$((k + 1))
        say "PROGRESS chunks=$k read=$((N - left)) uptime=$(now)"
    done
else
    dd if=/dev/hwrng of=/tmp/data bs=$N count=1 iflag=fullblock 2>/dev/null || fail "dd"
fi
t1="$(now)"
got="$(wc -c </tmp/data)"
say "READ-DONE bytes=$got t0=$t0 t1=$t1"
[ "$got" = "$N" ] || fail "read $got bytes, wanted $N"
say "SHA256 $(sha256sum /tmp/data | cut -d' ' -f1)"
if [ "$DUMP" = 1 ]; then
    stty -F /dev/@TTY@ raw -echo 2>/dev/null
    base64 /tmp/data >/dev/@TTY@ || fail "dump to @TTY@"
    say "DUMP-DONE uptime=$(now)"
fi
if [ "$IDLE" -gt 0 ]; then
    say "IDLE-START seconds=$IDLE uptime=$(now)"
    sleep "$IDLE"
    say "IDLE-DONE uptime=$(now)"
fi
finish
"""

def make_init_script(modules: list[str], rng: str, data_tty: str, default_bytes: int) -> str:
    """The guest's init: insmod `modules` in order, wait until rng_current is `rng`, read
    /dev/hwrng (rngbytes=, rngchunk=; rngidle=S stays idle S seconds after), send the bytes
    base64-encoded on /dev/`data_tty`, power off. Shared by the x86 and ppc64 guests."""
    return (_INIT_TEMPLATE.replace("@PRELUDE@", INIT_PRELUDE)
            .replace("@MODULES@", " ".join(modules)).replace("@RNG@", rng)
            .replace("@TTY@", data_tty).replace("@BYTES@", str(default_bytes)))


INIT_SCRIPT = make_init_script(["virtio_ring", "virtio", "virtio_pci_modern_dev",
                                "virtio_pci_legacy_dev", "virtio_pci", "virtio-rng"],
                               "virtio_rng.0", "ttyS1", 1048576)


class GuestError(Exception):
    """The guest could not be built, booted, or did not do what it should."""


# ---------------------------------------------------------------------------
# Building the guest image
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    kernel_version: str


def cache_dir() -> Path:
    """The cache folder: $ENTROPYD_GUEST_CACHE or build/guest-cache."""
    env = os.environ.get("ENTROPYD_GUEST_CACHE")
    return Path(env) if env else REPO_ROOT / "build" / "guest-cache"


def _run(cmd: Sequence[str], *, cwd: Path | None = None, timeout: float = 600,
         what: str = "") -> str:
    try:
        p = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True,
                           timeout=timeout)
    except FileNotFoundError as e:
        raise GuestError(f"{what or cmd[0]}: command not found: {cmd[0]} ({e})") from e
    except subprocess.TimeoutExpired as e:
        raise GuestError(f"{what or cmd[0]}: timed out after {timeout}s: {' '.join(cmd)}") from e
    if p.returncode != 0:
        raise GuestError(f"{what or cmd[0]}: `{' '.join(cmd)}` exited {p.returncode}:\n"
                         f"{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return p.stdout


@contextlib.contextmanager
def _locked(path: Path):
    """Serialise builders of the same cache (parallel test runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _kernel_package_name() -> str:
    """Ask apt which versioned package linux-image-cloud-amd64 depends on."""
    def query() -> str | None:
        try:
            out = subprocess.run(["apt-cache", "depends", KERNEL_META_PACKAGE],
                                 capture_output=True, text=True, timeout=120).stdout
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return None
        m = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)\b", out)
        return m.group(1) if m else None

    name = query()
    if name is None and os.geteuid() == 0:
        # apt-cache knows nothing before the first `apt-get update`.
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
        name = query()
    if name is None:
        raise GuestError(f"cannot resolve the kernel package: `apt-cache depends "
                         f"{KERNEL_META_PACKAGE}` names no linux-image-*-cloud-amd64 "
                         f"(run `apt-get update`?)")
    return name


def _download_and_unpack(package: str, dest: Path) -> None:
    """apt-get download PACKAGE and dpkg -x it into dest (atomically)."""
    work = Path(tempfile.mkdtemp(prefix="dl-", dir=dest.parent))
    try:
        _run(["apt-get", "download", package], cwd=work, what=f"download {package}")
        debs = sorted(work.glob("*.deb"))
        if not debs:
            raise GuestError(f"apt-get download {package} produced no .deb")
        unpacked = work / "root"
        _run(["dpkg", "-x", str(debs[0]), str(unpacked)], what=f"unpack {package}")
        if dest.exists():
            shutil.rmtree(dest)
        unpacked.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _find_kernel_tree(cache: Path) -> Path | None:
    """A previously unpacked kernel in the cache, newest first."""
    trees = sorted(cache.glob("linux-image-*-cloud-amd64"), reverse=True)
    for t in trees:
        if list(t.glob("boot/vmlinuz-*")) and list(t.glob("lib/modules/*/kernel")):
            return t
    return None


def _is_static_elf(path: Path) -> bool:
    """True if path is an ELF executable without a program interpreter."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(64)
            if hdr[:4] != b"\x7fELF" or hdr[4] != 2:  # ELF64 only (x86_64 host)
                return False
            phoff, = struct.unpack_from("<Q", hdr, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", hdr, 0x36)
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                p_type, = struct.unpack("<I", f.read(4))
                if p_type == 3:  # PT_INTERP
                    return False
            return True
    except OSError:
        return False


def _static_busybox(cache: Path) -> Path:
    """The host's /bin/busybox if static, else one unpacked from busybox-static."""
    for cand in (Path("/bin/busybox"), Path("/usr/bin/busybox")):
        if _is_static_elf(cand):
            return cand
    tree = cache / "busybox-static"
    cand = tree / "bin" / "busybox"
    if not _is_static_elf(cand):
        _download_and_unpack("busybox-static", tree)
    if not _is_static_elf(cand):
        raise GuestError(f"no static busybox: neither /bin/busybox nor {cand} is one")
    return cand


def _module_bytes(kernel_dir: Path, rel: str) -> bytes:
    """Read a module, decompressing .ko.xz / .ko.zst / .ko.gz as needed."""
    base = kernel_dir / rel
    plain = base.with_name(base.name + ".ko")
    if plain.exists():
        return plain.read_bytes()
    xz = base.with_name(base.name + ".ko.xz")
    if xz.exists():
        return lzma.decompress(xz.read_bytes())
    gz = base.with_name(base.name + ".ko.gz")
    if gz.exists():
        return gzip.decompress(gz.read_bytes())
    zst = base.with_name(base.name + ".ko.zst")
    if zst.exists():
        try:
            return subprocess.run(["zstd", "-dc", str(zst)], capture_output=True,
                                  check=True, timeout=60).stdout
        except (FileNotFoundError, subprocess.CalledProcessError) as e:
            raise GuestError(f"cannot decompress {zst} (need the zstd command): {e}") from e
    raise GuestError(f"module {rel}.ko[.xz|.gz|.zst] not found under {kernel_dir}")


def pack_initrd(root: Path, out: Path, min_bytes: int, timeout: float = 300) -> None:
    """Pack the folder root as a gzip'd newc cpio archive at out (atomically). An archive
    smaller than min_bytes means cpio silently left things out: that is an error."""
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    listing = "\n".join(["."] + names) + "\n"
    p = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root,
                       input=listing.encode(), capture_output=True, timeout=timeout)
    if p.returncode != 0 or len(p.stdout) < min_bytes:
        raise GuestError(f"cpio failed or wrote a near-empty archive "
                         f"({len(p.stdout)} bytes): {p.stderr.decode(errors='replace')}")
    tmp = out.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        f.write(p.stdout)
    tmp.rename(out)


def _build_initrd(out: Path, busybox: Path, modules: dict[str, bytes]) -> None:
    """Pack busybox, the modules and init into a gzip'd newc cpio archive."""
    if shutil.which("cpio") is None:
        raise GuestError("cpio is not installed (apt-get install cpio); without it the "
                         "initramfs is empty and the guest kernel panics")
    root = Path(tempfile.mkdtemp(prefix="initrd-", dir=out.parent))
    try:
        (root / "bin").mkdir()
        (root / "lib" / "modules").mkdir(parents=True)
        for d in ("dev", "proc", "sys", "tmp"):
            (root / d).mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        os.chmod(root / "bin" / "busybox", 0o755)
        for name, data in modules.items():
            (root / "lib" / "modules" / f"{name}.ko").write_bytes(data)
        init = root / "init"
        init.write_text(INIT_SCRIPT)
        os.chmod(init, 0o755)
        pack_initrd(root, out, min_bytes=100_000)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ensure_image() -> GuestImage:
    """Fetch (once) the kernel and busybox, build (once) the initramfs."""
    if shutil.which(QEMU) is None:
        raise GuestError(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        tree = _find_kernel_tree(cache)
        if tree is None:
            pkg = _kernel_package_name()
            tree = cache / pkg
            _download_and_unpack(pkg, tree)
        vmlinuz = sorted(tree.glob("boot/vmlinuz-*"))
        kdirs = sorted(tree.glob("lib/modules/*/kernel"))
        if not vmlinuz or not kdirs:
            raise GuestError(f"{tree} holds no boot/vmlinuz-* or lib/modules/*/kernel")
        kernel_dir = kdirs[-1]
        version = kernel_dir.parent.name
        busybox = _static_busybox(cache)
        modules = {Path(rel).name: _module_bytes(kernel_dir, rel) for rel in MODULES}

        h = hashlib.sha256()
        h.update(INIT_SCRIPT.encode())
        h.update(busybox.read_bytes())
        for name, data in modules.items():
            h.update(name.encode() + b"\0" + data)
        initrd = cache / f"initrd-{version}-{h.hexdigest()[:16]}.cpio.gz"
        if not initrd.exists():
            for old in cache.glob("initrd-*.cpio.gz"):
                old.unlink()
            _build_initrd(initrd, busybox, modules)
        return GuestImage(kernel=vmlinuz[-1], initrd=initrd, kernel_version=version)


# ---------------------------------------------------------------------------
# Running the guest
# ---------------------------------------------------------------------------


def egd_backend(chardev: str) -> list[str]:
    """QEMU arguments for rng-egd over the chardev whose id must be egd0."""
    if "id=egd0" not in chardev.split(","):
        raise ValueError(f"chardev must have id=egd0: {chardev}")
    return ["-chardev", chardev, "-object", "rng-egd,id=rng0,chardev=egd0"]


def random_backend(path: str | os.PathLike) -> list[str]:
    """QEMU arguments for rng-random reading a file or named pipe."""
    return ["-object", f"rng-random,id=rng0,filename={path}"]


def builtin_backend() -> list[str]:
    """QEMU arguments for QEMU's own getrandom() backend."""
    return ["-object", "rng-builtin,id=rng0"]


# vhost-user-rng: QEMU's virtio-rng device whose virtqueue a backend process (entropyd)
# serves straight from the guest's memory. The device's chardev id is vu0.
VHOST_USER_DEVICE = "vhost-user-rng-pci,chardev=vu0"


def vhost_user_backend(path: str | os.PathLike, memory_mb: int, *,
                       qemu_listens: bool = False) -> list[str]:
    """QEMU arguments for a vhost-user-rng-pci device on the unix socket `path`.

    qemu_listens=False: QEMU connects to a backend that already listens (never
    `reconnect=1`: QEMU 7.2 aborts with it on this device). qemu_listens=True: QEMU
    listens and waits (before running the guest) for the backend to dial; a backend
    that restarts dials again and QEMU replays the ring set-up. Both need the guest's
    RAM (memory_mb, the same as -m) in a shared memfd: QEMU hands the backend only
    fd-backed memory. On pseries the second -machine merges with -M pseries,...."""
    chardev = f"socket,id=vu0,path={path}" + (",server=on,wait=on" if qemu_listens else "")
    return ["-chardev", chardev,
            "-object", f"memory-backend-memfd,id=mem0,size={memory_mb}M,share=on",
            "-machine", "memory-backend=mem0"]


# A periodic main-loop wake-up (see the facts page): a hub port with no NIC and
# a filter-buffer whose timer re-arms itself every `interval` microseconds.
def pacer_args(interval_us: int = 100) -> list[str]:
    return ["-netdev", "hubport,id=pace0,hubid=0", "-object",
            f"filter-buffer,id=pacer0,netdev=pace0,queue=all,interval={interval_us}"]


@dataclass
class GuestResult:
    data: bytes | None          # bytes the guest read (None when not dumped)
    nbytes: int                 # bytes the guest reports it read
    read_seconds: float         # guest-side time of the read (/proc/uptime, 10 ms)
    boot_seconds: float         # guest uptime when the read started (~ boot time)
    wall_seconds: float         # host time from QEMU start to QEMU exit
    console: str
    exit_code: int | None

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.read_seconds / 1e6 if self.read_seconds > 0 else float("inf")


class QemuRun:
    """What every e2e QEMU run shares: its work folder (made if not given, removed at the
    end if made), the files QEMU writes there, and clean-up as a context manager. The
    subclass is a dataclass with `workdir` and `_own_workdir` fields and a kill()."""

    @property
    def console_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "console.log"

    @property
    def data_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "data.b64"

    @property
    def stderr_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "qemu.stderr"

    def _make_workdir(self, prefix: str) -> None:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=prefix))
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)

    def cleanup(self) -> None:
        self.kill()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


@dataclass
class GuestRun(QemuRun):
    """One QEMU process; start() it, optionally watch its console, finish()."""
    image: GuestImage
    backend: list[str]
    nbytes: int = 1 << 20
    chunk: int = 0
    dump: bool = True
    device: str = "virtio-rng-pci,rng=rng0"
    extra: list[str] = field(default_factory=list)
    memory_mb: int = 256
    workdir: Path | None = None
    proc: subprocess.Popen | None = None
    t_start: float = 0.0
    _own_workdir: bool = False
    # Words put before QEMU's own command (e.g. `ip netns exec NS`); the prefix must exec
    # QEMU in place, so that the PID started is QEMU's and kill() reaches it.
    prefix: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        assert self.workdir is not None
        # no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check
        # can fail at boot ("IO-APIC + timer doesn't work!", a panic); seen with four
        # guests booting at once on two cores.
        append = (f"console=ttyS0 quiet panic=-1 no_timer_check rngbytes={self.nbytes} "
                  f"rngchunk={self.chunk} rngdump={1 if self.dump else 0}")
        return [*self.prefix, QEMU, "-accel", "tcg", "-m", str(self.memory_mb), "-nographic",
                "-nodefaults", "-no-reboot",
                "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
                "-append", append,
                "-serial", f"file:{self.console_path}",
                "-serial", f"file:{self.data_path}",
                *self.backend, "-device", self.device, *self.extra]

    def start(self) -> "GuestRun":
        self._make_workdir("entropyd-guest-")
        for p in (self.console_path, self.data_path):
            p.write_bytes(b"")
        self.t_start = time.monotonic()
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=open(self.stderr_path, "ab"),
                                         stderr=subprocess.STDOUT)
        except OSError as e:
            raise GuestError(f"cannot start {QEMU}: {e}") from e
        return self

    def console(self) -> str:
        try:
            return self.console_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def qemu_output(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self, tail: int = 3000) -> str:
        """Console and QEMU output for failure messages."""
        return (f"--- qemu command: {' '.join(self.command())}\n"
                f"--- qemu output:\n{self.qemu_output()[-tail:]}\n"
                f"--- guest console (tail):\n{self.console()[-tail:]}")

    def wait_console(self, pattern: str, timeout: float) -> re.Match:
        """Wait until the console matches the regex; fail if QEMU exits first."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.console())
            if m:
                return m
            if self.proc is not None and self.proc.poll() is not None:
                m = rx.search(self.console())
                if m:
                    return m
                raise GuestError(f"QEMU exited ({self.proc.returncode}) before the "
                                 f"console showed /{pattern}/\n{self.describe()}")
            if time.monotonic() > deadline:
                raise GuestError(f"console did not show /{pattern}/ within {timeout}s\n"
                                 f"{self.describe()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """End QEMU by its PID: SIGTERM, then SIGKILL if it ignores that."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def finish(self, timeout: float) -> GuestResult:
        """Wait (bounded) for the guest to power off; parse and verify its output."""
        assert self.proc is not None
        remaining = max(0.0, self.t_start + timeout - time.monotonic())
        try:
            self.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
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
        read_s = float(done.group(3)) - float(done.group(2))
        data = None
        if self.dump:
            if not re.search(rf"^{MARK}DUMP-DONE", console, re.M):
                raise GuestError(f"guest did not finish dumping its bytes\n{self.describe()}")
            raw = self.data_path.read_bytes()
            try:
                data = base64.b64decode(re.sub(rb"\s+", b"", raw), validate=True)
            except ValueError as e:
                raise GuestError(f"ttyS1 output is not valid base64 ({len(raw)} bytes): {e}") from e
            want = re.search(rf"^{MARK}SHA256 ([0-9a-f]{{64}})", console, re.M)
            if not want or hashlib.sha256(data).hexdigest() != want.group(1):
                raise GuestError(f"bytes from ttyS1 ({len(data)}) do not match the guest's "
                                 f"sha256 (serial transfer damaged or cut short)")
            if len(data) != nbytes:
                raise GuestError(f"guest read {nbytes} bytes but sent {len(data)}")
        return GuestResult(data=data, nbytes=nbytes, read_seconds=read_s,
                           boot_seconds=self.boot_seconds(), wall_seconds=wall,
                           console=console, exit_code=self.proc.returncode)

    def boot_seconds(self) -> float:
        """Guest uptime at the READ-START line, about the boot time (0 if unknown)."""
        m = re.search(rf"^{MARK}READ-START .*uptime=([\d.]+)", self.console(), re.M)
        return float(m.group(1)) if m else 0.0



def boot_guest(image: GuestImage, backend: list[str], *, nbytes: int = 1 << 20,
               timeout: float = 300, dump: bool = True, extra: Iterable[str] = (),
               chunk: int = 0) -> GuestResult:
    """Boot, read nbytes from /dev/hwrng, power off; bounded by timeout seconds."""
    with GuestRun(image, list(backend), nbytes=nbytes, dump=dump, chunk=chunk,
                  extra=list(extra)) as run:
        run.start()
        return run.finish(timeout)


# ---------------------------------------------------------------------------
# Checking the guest's bytes against the source file
# ---------------------------------------------------------------------------


class PieceCheckError(AssertionError):
    """The guest's bytes are not pieces of the source in increasing order."""


@dataclass
class Piece:
    data_offset: int
    file_offset: int
    length: int


@dataclass
class PieceReport:
    pieces: list[Piece]
    restarts: int           # times the file position went back (daemon restarts)

    @property
    def count(self) -> int:
        return len(self.pieces)

    def __str__(self) -> str:
        if not self.pieces:
            return "0 pieces"
        first, last = self.pieces[0], self.pieces[-1]
        return (f"{self.count} pieces, {self.restarts} restarts, file offsets "
                f"{first.file_offset}..{last.file_offset + last.length}, "
                f"shortest {min(p.length for p in self.pieces)} bytes")


ANCHOR = 8  # a piece this long or longer is located by its first ANCHOR bytes


def _match_len(data: bytes, i: int, src: bytes, q: int) -> int:
    """Length of the common run of data[i:] and src[q:]."""
    n = min(len(data) - i, len(src) - q)
    k = 0
    step = 4096
    while k < n:
        s = min(step, n - k)
        if data[i + k:i + k + s] == src[q + k:q + k + s]:
            k += s
            continue
        if s <= 16:
            while k < n and data[i + k] == src[q + k]:
                k += 1
            return k
        step = max(16, s // 4)
    return k


def _count_in(src: bytes, needle: bytes, lo: int, hi: int) -> list[int]:
    """Start offsets of needle lying wholly in src[lo:hi] (overlaps counted)."""
    out = []
    pos = src.find(needle, lo, hi)
    while pos >= 0 and len(out) < 2:
        out.append(pos)
        pos = src.find(needle, pos + 1, hi)
    return out


def check_pieces(data: bytes, source: bytes, *, min_offset: int = 0,
                 max_restarts: int = 0) -> PieceReport:
    """Check data is a concatenation of pieces of source at increasing offsets.

    Greedy: from the last matched file position, each piece is located by its
    first ANCHOR bytes and extended as far as it matches. A piece shorter than
    ANCHOR is accepted only if it occurs exactly once between the last matched
    position and the next piece's location; otherwise the check fails.
    max_restarts allows the file position to go back to min_offset that many
    times (each daemon lifetime serves the file from the start).
    Raises PieceCheckError with the reason; returns the pieces on success.
    """
    if not data:
        raise PieceCheckError("no bytes to check")
    pieces: list[Piece] = []
    restarts = 0
    p = min_offset
    i = 0
    n = len(data)
    while i < n:
        anchor = data[i:i + ANCHOR]
        q = source.find(anchor, p) if len(anchor) == ANCHOR else -1
        if q < 0 and len(anchor) == ANCHOR and restarts < max_restarts:
            q = source.find(anchor, min_offset)
            if q >= 0:
                restarts += 1
        if q >= 0:
            length = _match_len(data, i, source, q)
            pieces.append(Piece(i, q, length))
            i += length
            p = q + length
            continue
        # A piece shorter than ANCHOR (or bytes not from the source at all).
        placed = False
        for length in range(min(ANCHOR - 1, n - i), 0, -1):
            short = data[i:i + length]
            rest = i + length
            if rest == n:
                hi = len(source)
            else:
                nxt = data[rest:rest + ANCHOR]
                if len(nxt) < ANCHOR:
                    continue
                hi = source.find(nxt, p)
                if hi < 0:
                    continue
            found = _count_in(source, short, p, hi)
            if len(found) == 1:
                pieces.append(Piece(i, found[0], length))
                i += length
                p = found[0] + length
                placed = True
                break
            if len(found) > 1:
                raise PieceCheckError(
                    f"ambiguous: the {length}-byte piece {short.hex()} at guest offset "
                    f"{i} occurs more than once in the file between offsets {p} and {hi} "
                    f"(after {len(pieces)} pieces); cannot place it")
        if not placed:
            ctx = data[i:i + 16].hex()
            raise PieceCheckError(
                f"guest bytes at offset {i} ({ctx}...) are not found in the file at or "
                f"after offset {p} (after {len(pieces)} pieces, {restarts} restarts"
                f"{'' if max_restarts else ', none allowed'})")
    return PieceReport(pieces=pieces, restarts=restarts)
