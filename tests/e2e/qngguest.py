"""An x86_64 guest with emulated FTDI USB serial chips, one of them a simulated QNG.

The harness for tests/e2e/test_qng_usb.py. It boots (TCG) Debian's *generic* kernel
(linux-image-amd64: the cloud kernel has CONFIG_USB_SUPPORT off) with a QEMU xHCI
controller and `usb-serial` devices. QEMU's usb-serial emulates an FTDI FT232 (0403:6001)
with a `serial=` property and its data path on a chardev; the QNG-like one's chardev is a
unix socket served on the host by qngsim (tests/qngsim/qngsim.c), so what the guest's entropyd
reads can be located in qngsim's known stream.

The initramfs holds busybox, the USB modules (xhci-pci, ftdi_sio and their dependencies,
found from each module's .modinfo), build/entropyd with every shared library ldd names
plus the dynamic loader, and two small programs compiled on the host:
  egdget     static EGD client: N bytes from 127.0.0.1:PORT in blocking 0x02 requests;
  ftdiprobe  libftdi1 probe: runs each libftdi call on one emulated chip and prints a
             `PROBE call rc=N ...` line per call (what the emulated FT232 accepts).

Reused from guest.py / peers.py (imported, not copied): the cache folder, apt-get
download + dpkg -x, module decompression, static busybox, the QEMU runner (GuestRun:
start, console waits, kill by PID) and the piece checker; peers.Process runs qngsim.

Guest protocol: console (ttyS0) lines start with "E2E: "; files leave through ttyS1 as
"=====BEGIN name=====", base64 lines, "=====END name=====". Parameters reach the init
through the kernel command line (qngmode=usb|tty|gen4, qngbytes=N, qngopts=..., ...).

Invariants: nothing is installed on the host; every process (QEMU, qngsim) has a bounded
life and is stopped by its own PID; any missing piece (package, tool, library) raises
GuestError with the reason, which the tests turn into a failure, never a skip.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import guest
import peers
from guest import GuestError

REPO_ROOT = guest.REPO_ROOT
KERNEL_META_PACKAGE = "linux-image-amd64"
# Modules wanted; their dependencies are added (and ordered) from each .modinfo.
WANTED_MODULES = ("xhci-pci", "ftdi_sio")

PLAIN_SERIAL = "A50285BI"        # an ordinary FTDI serial adapter (not a QNG)
QNG_SERIAL = "QWR4SIM00005"      # a PQ4000KU-like QNG (generation 3)
GEN4_SERIAL = "QWR7SIM00007"     # a generation-4 serial (ftdi_set_bitmode path)
GUEST_EGD_PORT = 7777

MARK = "E2E: "


def qngsim_path() -> Path:
    """$QNGSIM, or build/tests/qngsim/qngsim."""
    env = os.environ.get("QNGSIM")
    p = Path(env) if env else REPO_ROOT / "build" / "tests" / "qngsim" / "qngsim"
    return p if p.is_absolute() else REPO_ROOT / p


# ---------------------------------------------------------------------------
# Programs compiled on the host for the guest
# ---------------------------------------------------------------------------

EGDGET_C = r"""
/* egdget PORT N [SECONDS]: N bytes from the EGD server on 127.0.0.1:PORT to stdout, asked
 * for with blocking requests (0x02 LEN, LEN <= 255). Connecting is retried; the whole run
 * is bounded by SECONDS (default 120) through alarm(). Exit 0 only if all N arrived. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	unsigned char buf[256];
	long n, total = 0;
	int fd = -1;

	if (argc < 3) {
		fprintf(stderr, "usage: egdget PORT N [SECONDS]\n");
		return 2;
	}
	n = atol(argv[2]);
	alarm(argc > 3 ? (unsigned)atoi(argv[3]) : 120u);
	sa.sin_port = htons((unsigned short)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(0x7f000001);
	for (int i = 0; i < 1200; i++) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			break;
		}
		if (fd >= 0) {
			close(fd);
		}
		fd = -1;
		usleep(100000);
	}
	if (fd < 0) {
		perror("egdget: connect");
		return 1;
	}
	while (total < n) {
		long want = n - total > 255 ? 255 : n - total, got = 0;
		unsigned char req[2] = {2, (unsigned char)want};

		if (write(fd, req, 2) != 2) {
			perror("egdget: write");
			return 1;
		}
		while (got < want) {
			ssize_t r = read(fd, buf, (size_t)(want - got));

			if (r <= 0) {
				fprintf(stderr, "egdget: read failed after %ld bytes\n", total + got);
				return 1;
			}
			fwrite(buf, 1, (size_t)r, stdout);
			got += r;
		}
		total += want;
	}
	fflush(stdout);
	return 0;
}
"""

FTDIPROBE_C = r"""
/* ftdiprobe SERIAL: open the FTDI chip 0403:6001 with this USB serial through libftdi1 and
 * run, one by one, the libftdi calls a QNG driver (or any FTDI user) might make, printing
 * `PROBE <call> rc=<rc> [values] err=<libftdi error or ->` for each. It writes the
 * 10 bytes "ftdiprobe\n" to the chip (they reach the device's chardev on the host).
 * No call's failure stops the probe. */
#include <ftdi.h>
#include <libusb.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static struct ftdi_context *f;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void report(const char *call, int rc, const char *extra)
{
	printf("PROBE %s rc=%d%s%s err=%s\n", call, rc, extra[0] ? " " : "", extra,
	       rc < 0 ? ftdi_get_error_string(f) : "-");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	char x[256], man[64] = "", desc[64] = "", ser[64] = "";
	unsigned char u8 = 0, buf[512];
	unsigned short u16 = 0;
	unsigned int u32 = 0;
	double t0;
	int rc, got = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: ftdiprobe SERIAL\n");
		return 2;
	}
	f = ftdi_new();
	if (f == NULL) {
		printf("PROBE ftdi_new rc=-1 err=NULL\n");
		return 1;
	}
	rc = ftdi_usb_open_desc(f, 0x0403, 0x6001, NULL, argv[1]);
	snprintf(x, sizeof(x), "type=%d max_packet_size=%u", (int)f->type, f->max_packet_size);
	report("ftdi_usb_open_desc", rc, x);
	if (rc < 0) {
		printf("PROBE-DONE\n");
		return 1;
	}
	rc = ftdi_usb_get_strings2(f, libusb_get_device(f->usb_dev), man, sizeof(man), desc,
				   sizeof(desc), ser, sizeof(ser));
	snprintf(x, sizeof(x), "manufacturer='%s' description='%s' serial='%s'", man, desc, ser);
	report("ftdi_usb_get_strings2", rc, x);

	rc = ftdi_set_latency_timer(f, 2);
	report("ftdi_set_latency_timer(2)", rc, "");
	rc = ftdi_get_latency_timer(f, &u8);
	snprintf(x, sizeof(x), "value=%u", u8);
	report("ftdi_get_latency_timer", rc, x);
	rc = ftdi_set_latency_timer(f, 20);
	report("ftdi_set_latency_timer(20)", rc, "");
	u8 = 0;
	rc = ftdi_get_latency_timer(f, &u8);
	snprintf(x, sizeof(x), "value=%u", u8);
	report("ftdi_get_latency_timer", rc, x);
	ftdi_set_latency_timer(f, 2);

	/* An idle chip: a real FT232 answers a bulk IN every latency period with its two
	 * modem-status bytes; ftdi_read_data() then returns 0 at once. */
	f->usb_read_timeout = 300;
	t0 = now_ms();
	rc = ftdi_read_data(f, buf, 64);
	snprintf(x, sizeof(x), "idle timeout=300ms elapsed_ms=%.0f", now_ms() - t0);
	report("ftdi_read_data", rc, x);
	t0 = now_ms();
	rc = libusb_bulk_transfer(f->usb_dev, (unsigned char)f->out_ep, buf, 64, &got, 300);
	snprintf(x, sizeof(x), "idle timeout=300ms transferred=%d elapsed_ms=%.0f libusb=%s", got,
		 now_ms() - t0, libusb_error_name(rc));
	printf("PROBE libusb_bulk_transfer(IN) rc=%d %s err=-\n", rc, x);

	rc = ftdi_set_baudrate(f, 115200);
	snprintf(x, sizeof(x), "actual=%d", f->baudrate);
	report("ftdi_set_baudrate(115200)", rc, x);
	rc = ftdi_set_line_property(f, BITS_8, STOP_BIT_1, NONE);
	report("ftdi_set_line_property(8N1)", rc, "");
	rc = ftdi_setflowctrl(f, SIO_RTS_CTS_HS);
	report("ftdi_setflowctrl(SIO_RTS_CTS_HS)", rc, "");
	rc = ftdi_setflowctrl(f, SIO_DISABLE_FLOW_CTRL);
	report("ftdi_setflowctrl(SIO_DISABLE_FLOW_CTRL)", rc, "");
	rc = ftdi_setdtr_rts(f, 1, 1);
	report("ftdi_setdtr_rts(1,1)", rc, "");
	rc = ftdi_poll_modem_status(f, &u16);
	snprintf(x, sizeof(x), "status=0x%04x", u16);
	report("ftdi_poll_modem_status", rc, x);
	rc = ftdi_set_event_char(f, 0, 0);
	report("ftdi_set_event_char", rc, "");
	rc = ftdi_set_error_char(f, 0, 0);
	report("ftdi_set_error_char", rc, "");

	rc = ftdi_set_bitmode(f, 0xff, BITMODE_RESET);
	report("ftdi_set_bitmode(0xff,BITMODE_RESET)", rc, "");
	rc = ftdi_set_bitmode(f, 0xff, BITMODE_SYNCFF);
	report("ftdi_set_bitmode(0xff,BITMODE_SYNCFF)", rc, "");
	rc = ftdi_read_pins(f, &u8);
	snprintf(x, sizeof(x), "pins=0x%02x", u8);
	report("ftdi_read_pins", rc, x);
	rc = ftdi_set_bitmode(f, 0x00, BITMODE_RESET);
	report("ftdi_set_bitmode(0x00,BITMODE_RESET)", rc, "");

	rc = ftdi_tcioflush(f);
	report("ftdi_tcioflush", rc, "");
	rc = ftdi_write_data(f, (const unsigned char *)"ftdiprobe\n", 10);
	report("ftdi_write_data(10)", rc, "");
	rc = ftdi_read_eeprom(f);
	report("ftdi_read_eeprom", rc, "");
	rc = ftdi_read_chipid(f, &u32);
	snprintf(x, sizeof(x), "chipid=0x%08x", u32);
	report("ftdi_read_chipid", rc, x);
	rc = ftdi_usb_reset(f);
	report("ftdi_usb_reset", rc, "");
	rc = ftdi_usb_close(f);
	report("ftdi_usb_close", rc, "");
	ftdi_free(f);
	printf("PROBE-DONE\n");
	return 0;
}
"""

# ---------------------------------------------------------------------------
# The guest's init
# ---------------------------------------------------------------------------

INIT_SCRIPT = """#!/bin/busybox sh
# entropyd QNG e2e guest: USB host + ftdi_sio, entropyd on an emulated FTDI QNG.
""" + guest.INIT_PRELUDE + r"""send() {  # send NAME FILE: the file, base64, framed, on ttyS1
    { echo "=====BEGIN $1====="; base64 "$2"; echo "=====END $1====="; } >/dev/ttyS1
}
ttys() {  # ttys TAG: one line per ttyUSB with its USB serial
    for t in /sys/class/tty/ttyUSB*; do
        [ -e "$t" ] || continue
        say "$1 $(basename $t) serial=$(cat $(readlink -f $t/device)/../../serial 2>/dev/null)"
    done
    say "$1-END"
}

say "INIT uptime=$(now)"
stty -F /dev/ttyS1 raw -echo 2>/dev/null
for m in $(cat /lib/modules/order); do
    insmod "/lib/modules/$m.ko" || fail "insmod $m"
done
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up || fail "lo up"

MODE=usb; BYTES=65536; OPTS=""; NDEV=2; PROBE=""; WANT=""; T=150; POOL=65536; ABSENT=""
for kv in $(cat /proc/cmdline); do
    case "$kv" in
    qngmode=*) MODE="${kv#qngmode=}" ;;
    qngbytes=*) BYTES="${kv#qngbytes=}" ;;
    qngopts=*) OPTS="${kv#qngopts=}" ;;
    qngdevs=*) NDEV="${kv#qngdevs=}" ;;
    qngprobe=*) PROBE="${kv#qngprobe=}" ;;
    qngserial=*) WANT="${kv#qngserial=}" ;;
    qngtimeout=*) T="${kv#qngtimeout=}" ;;
    qngpool=*) POOL="${kv#qngpool=}" ;;
    qngabsent=*) ABSENT="${kv#qngabsent=}" ;;
    esac
done
say "PARAMS mode=$MODE bytes=$BYTES opts=$OPTS devs=$NDEV probe=$PROBE serial=$WANT"

# Wait for the FTDI devices and for ftdi_sio to bind each (one ttyUSB per chip).
i=0
while [ $i -lt 300 ]; do
    n=0
    for t in /sys/class/tty/ttyUSB*; do [ -e "$t" ] && n=$((n + 1)); done
    [ $n -ge $NDEV ] && break
    sleep 0.1
    i=$((i + 1))
done
for d in /sys/bus/usb/devices/*; do
    [ -f "$d/idVendor" ] || continue
    say "USB $(basename $d) $(cat $d/idVendor):$(cat $d/idProduct) serial=$(cat $d/serial 2>/dev/null) product=$(cat $d/product 2>/dev/null | tr ' ' _) driver=$(basename $(readlink $d/*:1.0/driver 2>/dev/null) 2>/dev/null)"
done
ttys TTY-BEFORE
[ $n -ge $NDEV ] || fail "only $n ttyUSB devices after 30 s, wanted $NDEV"
say "USB-READY uptime=$(now)"

spec=""
case "$MODE" in
usb) spec="qng${WANT:+:$WANT}" ;;
gen4) spec="qng:$WANT" ;;
tty)
    QTTY=""
    for t in /sys/class/tty/ttyUSB*; do
        s="$(cat $(readlink -f $t/device)/../../serial 2>/dev/null)"
        [ "$s" = "$WANT" ] && QTTY="/dev/$(basename $t)"
    done
    [ -n "$QTTY" ] || fail "no ttyUSB with serial $WANT"
    say "QNG-TTY $QTTY"
    spec="qng:tty=$QTTY"
    ;;
*) fail "unknown qngmode $MODE" ;;
esac
if [ -n "$OPTS" ]; then
    case "$spec" in qng) spec="qng:$OPTS" ;; *) spec="$spec+$OPTS" ;; esac
fi
say "SPEC $spec"

if [ "$MODE" = gen4 ]; then
    # Only open the device (configuration check) and report how that went.
    timeout -s KILL $T /usr/sbin/entropyd -f -n --source "$spec" --listen tcp:127.0.0.1:7777 \
        2>/tmp/d.log
    say "CHECK-EXIT $?"
    cat /tmp/d.log
    send log /tmp/d.log
else
    timeout -s KILL $T /usr/sbin/entropyd -f --pool-size $POOL --source "$spec" \
        --listen tcp:127.0.0.1:7777 2>/tmp/d.log &
    P=$!
    say "FETCH-START uptime=$(now)"
    /bin/egdget 7777 $BYTES $T >/tmp/data.bin
    rc=$?
    got=$(wc -c </tmp/data.bin)
    say "FETCH-DONE rc=$rc bytes=$got uptime=$(now)"
    ttys TTY-DURING
    kill $P
    wait $P
    say "ENTROPYD-EXIT $?"
    cat /tmp/d.log
    send log /tmp/d.log
    say "SHA256 $(sha256sum /tmp/data.bin | cut -d' ' -f1)"
    send data /tmp/data.bin
fi
if [ -n "$ABSENT" ]; then
    # A serial no device has: entropyd's error lists every FTDI chip libftdi enumerated,
    # in enumeration order, and marks those that are not QNGs.
    timeout -s KILL 60 /usr/sbin/entropyd -f -n --source "qng:$ABSENT" \
        --listen tcp:127.0.0.1:7778 2>/tmp/absent.log
    say "ABSENT-EXIT $?"
    cat /tmp/absent.log
    send absent /tmp/absent.log
fi
if [ -n "$PROBE" ]; then
    timeout -s KILL 60 /bin/ftdiprobe "$PROBE" >/tmp/probe.txt 2>&1
    say "PROBE-EXIT $?"
    cat /tmp/probe.txt
    send probe /tmp/probe.txt
    ttys TTY-AFTER-PROBE
fi
echo "=====DONE=====" >/dev/ttyS1
say "DUMP-DONE"
finish
"""


# ---------------------------------------------------------------------------
# Building the image
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QngImage:
    kernel: Path
    initrd: Path
    kernel_version: str
    modules: tuple[str, ...]     # insmod order
    entropyd_sha256: str


_GENERIC = re.compile(r"^linux-image-\d[\w.+~-]*-amd64$")


def _is_generic(name: str) -> bool:
    return bool(_GENERIC.match(name)) and "-cloud-" not in name and "-rt-" not in name


def _kernel_package_name() -> str:
    """Ask apt which versioned package linux-image-amd64 (the generic kernel) depends on."""
    def query() -> str | None:
        try:
            out = subprocess.run(["apt-cache", "depends", KERNEL_META_PACKAGE],
                                 capture_output=True, text=True, timeout=120).stdout
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return None
        for m in re.finditer(r"Depends:\s*(linux-image-\S+)", out):
            if _is_generic(m.group(1)):
                return m.group(1)
        return None

    name = query()
    if name is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
        name = query()
    if name is None:
        raise GuestError(f"cannot resolve the kernel package: `apt-cache depends "
                         f"{KERNEL_META_PACKAGE}` names no generic linux-image-*-amd64 "
                         f"(run `apt-get update`?)")
    return name


def _find_kernel_tree(cache: Path) -> Path | None:
    """A previously unpacked generic (non-cloud) kernel in the cache, newest first."""
    trees = sorted((t for t in cache.glob("linux-image-*-amd64") if _is_generic(t.name)),
                   reverse=True)
    for t in trees:
        if list(t.glob("boot/vmlinuz-*")) and list(t.glob("lib/modules/*/kernel")):
            return t
    return None


def _module_index(kernel_dir: Path) -> dict[str, str]:
    """Normalised module name (- → _) → path relative to kernel_dir, without .ko*."""
    index: dict[str, str] = {}
    for p in kernel_dir.rglob("*.ko*"):
        name = p.name.split(".ko")[0]
        rel = str(p.relative_to(kernel_dir).parent / name)
        index[name.replace("-", "_")] = rel
    return index


def _module_depends(data: bytes) -> list[str]:
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", data)
    if not m or not m.group(1):
        return []
    return [d for d in m.group(1).decode().split(",") if d]


def module_closure(kernel_dir: Path, wanted) -> list[tuple[str, bytes]]:
    """The wanted modules and all they depend on, dependencies first."""
    index = _module_index(kernel_dir)
    out: list[tuple[str, bytes]] = []
    done: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key in done:
            return
        if key in chain:
            raise GuestError(f"module dependency cycle: {' -> '.join(chain + (key,))}")
        rel = index.get(key)
        if rel is None:
            raise GuestError(f"module {name} not found under {kernel_dir} (built into "
                             f"the kernel, or a kernel without it?)")
        data = guest._module_bytes(kernel_dir, rel)
        for dep in _module_depends(data):
            visit(dep, chain + (key,))
        done.add(key)
        out.append((Path(rel).name, data))

    for w in wanted:
        visit(w, ())
    return out


def _compile(cache: Path, name: str, source: str, args: list[str]) -> Path:
    """gcc SOURCE ARGS into the cache (once per source+args)."""
    if shutil.which("gcc") is None:
        raise GuestError("gcc is not installed (apt-get install gcc): needed to build "
                         f"the guest's {name}")
    h = hashlib.sha256((source + "\0" + " ".join(args)).encode()).hexdigest()[:16]
    out = cache / f"{name}-{h}"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        src = Path(tmp) / f"{name}.c"
        src.write_text(source)
        exe = Path(tmp) / name
        guest._run(["gcc", "-O2", "-Wall", "-o", str(exe), str(src), *args],
                   what=f"compile {name}", timeout=300)
        exe.rename(out)
    return out


def _pkg_config(*pkgs: str) -> list[str]:
    if shutil.which("pkg-config") is None:
        raise GuestError("pkg-config is not installed: needed to build ftdiprobe")
    try:
        out = guest._run(["pkg-config", "--cflags", "--libs", *pkgs], what="pkg-config")
    except GuestError as e:
        raise GuestError(f"{e}\n(need libftdi1-dev and libusb-1.0-0-dev)") from e
    return out.split()


def shared_libraries(binaries) -> dict[str, Path]:
    """Guest path → host file for every library ldd names for the binaries (+ loader)."""
    libs: dict[str, Path] = {}
    for b in binaries:
        out = guest._run(["ldd", str(b)], what=f"ldd {b}")
        for line in out.splitlines():
            line = line.strip()
            if "not found" in line:
                raise GuestError(f"ldd {b}: a library is missing on the host: {line}")
            m = re.match(r"\S+\s+=>\s+(/\S+)\s+\(", line)
            if m:
                libs[m.group(1)] = Path(m.group(1)).resolve()
                continue
            m = re.match(r"(/\S+)\s+\(", line)   # the dynamic loader
            if m:
                libs[m.group(1)] = Path(m.group(1)).resolve()
    if not any("ld-linux" in k for k in libs):
        raise GuestError(f"ldd named no dynamic loader for {', '.join(map(str, binaries))}")
    return libs


def _pack_initrd(out: Path, files: dict[str, tuple[int, bytes]]) -> None:
    """Write files (guest path → (mode, bytes)) into a gzip'd newc cpio archive."""
    if shutil.which("cpio") is None:
        raise GuestError("cpio is not installed (apt-get install cpio); without it the "
                         "initramfs is empty and the guest kernel panics")
    root = Path(tempfile.mkdtemp(prefix="qnginitrd-", dir=out.parent))
    try:
        for d in ("dev", "proc", "sys", "tmp", "run"):
            (root / d).mkdir()
        for gpath, (mode, data) in files.items():
            p = root / gpath.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            os.chmod(p, mode)
        guest.pack_initrd(root, out, min_bytes=1_000_000)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ensure_image() -> QngImage:
    """Fetch (once) the generic kernel; build the tools and (when inputs change) the initrd."""
    if shutil.which(guest.QEMU) is None:
        raise GuestError(f"{guest.QEMU} is not installed (apt-get install qemu-system-x86)")
    binary = peers.entropyd_path()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise GuestError(f"entropyd binary not found or not executable: {binary}")
    cache = guest.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    qcache = cache / "qng"
    qcache.mkdir(exist_ok=True)
    with guest._locked(cache / ".lock"):
        tree = _find_kernel_tree(cache)
        if tree is None:
            pkg = _kernel_package_name()
            tree = cache / pkg
            guest._download_and_unpack(pkg, tree)
        vmlinuz = sorted(tree.glob("boot/vmlinuz-*"))
        kdirs = sorted(tree.glob("lib/modules/*/kernel"))
        if not vmlinuz or not kdirs:
            raise GuestError(f"{tree} holds no boot/vmlinuz-* or lib/modules/*/kernel")
        kernel_dir = kdirs[-1]
        version = kernel_dir.parent.name
        busybox = guest._static_busybox(cache)
    with guest._locked(qcache / ".lock"):
        modules = module_closure(kernel_dir, WANTED_MODULES)
        egdget = _compile(qcache, "egdget", EGDGET_C, ["-static"])
        if not guest._is_static_elf(egdget):
            raise GuestError(f"{egdget} is not a static executable (glibc static libs "
                             f"missing? apt-get install libc6-dev)")
        probe = _compile(qcache, "ftdiprobe", FTDIPROBE_C, _pkg_config("libftdi1",
                                                                       "libusb-1.0"))
        entropyd_bytes = binary.read_bytes()   # one snapshot: others may rebuild it
        staged = qcache / "entropyd.staged"
        staged.write_bytes(entropyd_bytes)
        os.chmod(staged, 0o755)
        libs = shared_libraries([staged, probe])

        files: dict[str, tuple[int, bytes]] = {
            "/init": (0o755, INIT_SCRIPT.encode()),
            "/bin/busybox": (0o755, busybox.read_bytes()),
            "/bin/egdget": (0o755, egdget.read_bytes()),
            "/bin/ftdiprobe": (0o755, probe.read_bytes()),
            "/usr/sbin/entropyd": (0o755, entropyd_bytes),
            "/lib/modules/order": (0o644, ("\n".join(n for n, _ in modules) + "\n").encode()),
        }
        for name, data in modules:
            files[f"/lib/modules/{name}.ko"] = (0o644, data)
        for gpath, host in sorted(libs.items()):
            files[gpath] = (0o755, host.read_bytes())

        h = hashlib.sha256()
        for gpath in sorted(files):
            mode, data = files[gpath]
            h.update(f"{gpath}\0{mode}\0".encode() + hashlib.sha256(data).digest())
        initrd = qcache / f"initrd-{version}-{h.hexdigest()[:16]}.cpio.gz"
        if not initrd.exists():
            for old in qcache.glob("initrd-*.cpio.gz"):
                old.unlink()
            _pack_initrd(initrd, files)
        return QngImage(kernel=vmlinuz[-1], initrd=initrd, kernel_version=version,
                        modules=tuple(n for n, _ in modules),
                        entropyd_sha256=hashlib.sha256(entropyd_bytes).hexdigest())


# ---------------------------------------------------------------------------
# qngsim on the host
# ---------------------------------------------------------------------------


class QngSim(peers.Process):
    """qngsim --listen SOCK --control CTL --serial S --seed N: one simulated QNG."""

    def __init__(self, workdir: Path, serial: str, seed: int, extra=()):
        binary = qngsim_path()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise GuestError(f"qngsim not found or not executable: {binary} (build it, "
                             f"or set QNGSIM)")
        self.binary = binary
        self.serial = serial
        self.seed = seed
        # Unix socket paths are limited to 107 bytes: keep them short, under /tmp.
        self.sockdir = Path(tempfile.mkdtemp(prefix="qs-", dir="/tmp"))
        self.sock = self.sockdir / "dev.sock"
        self.ctl = self.sockdir / "ctl.sock"
        super().__init__([str(binary), "--serial", serial, "--seed", str(seed),
                          "--control", str(self.ctl), "--listen", str(self.sock), *extra],
                         f"qngsim {serial}")
        try:
            self.wait_line(r"^qngsim: ready ", 15)
            peers.wait_path(self.sock, 10, self.proc)
        except peers.PeerError as e:
            self.stop()
            raise GuestError(str(e)) from e

    def control(self, line: str, timeout: float = 5) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.ctl))
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return buf.decode(errors="replace").strip()

    def stats(self) -> dict[str, int]:
        reply = self.control("stats")
        if not reply.startswith("ok "):
            raise GuestError(f"qngsim stats: unexpected reply {reply!r}")
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", reply)}

    def stream(self, n: int, which: str = "data") -> bytes:
        """The first n bytes of qngsim's stream `which` (data, head, bad) for this seed."""
        p = subprocess.run([str(self.binary), "--dump-stream", str(n), "--seed",
                            str(self.seed), "--stream", which], capture_output=True,
                           timeout=120)
        if p.returncode != 0 or len(p.stdout) != n:
            raise GuestError(f"qngsim --dump-stream {n} --stream {which} failed "
                             f"({p.returncode}, {len(p.stdout)} bytes): {p.stderr!r}")
        return p.stdout

    def stop(self, timeout: float = 10) -> int | None:
        code = super().stop(timeout)
        shutil.rmtree(self.sockdir, ignore_errors=True)
        return code


# ---------------------------------------------------------------------------
# The guest run
# ---------------------------------------------------------------------------


def usb_serial_args(devices: list[tuple[str, str]]) -> list[str]:
    """QEMU arguments: an xHCI controller and one usb-serial per (serial, chardev spec).

    Each chardev spec is given without its id (e.g. "socket,path=/x" or "null"); the
    chardevs are named usbser0, usbser1, ... in order."""
    args = ["-device", "qemu-xhci,id=xhci"]
    for i, (serial, chardev) in enumerate(devices):
        kind, _, rest = chardev.partition(",")
        args += ["-chardev", f"{kind},id=usbser{i}" + (f",{rest}" if rest else ""),
                 "-device", f"usb-serial,bus=xhci.0,serial={serial},chardev=usbser{i}"]
    return args


@dataclass
class QngResult:
    console: str
    files: dict[str, bytes]
    wall_seconds: float
    fetch_seconds: float | None
    exit_code: int | None

    def lines(self, tag: str) -> list[str]:
        return [m.group(1) for m in re.finditer(rf"^{MARK}{tag} ?(.*)$", self.console, re.M)]

    def line(self, tag: str) -> str | None:
        found = self.lines(tag)
        return found[0] if found else None

    def text(self, name: str) -> str:
        return self.files.get(name, b"").decode(errors="replace")


@dataclass
class QngGuestRun(guest.GuestRun):
    """guest.GuestRun with USB devices, its own kernel command line and result parsing."""
    params: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        assert self.workdir is not None
        append = "console=ttyS0 quiet panic=-1 " + " ".join(
            f"qng{k}={v}" for k, v in self.params.items())
        return [guest.QEMU, "-accel", "tcg", "-m", str(self.memory_mb), "-nographic",
                "-nodefaults", "-no-reboot",
                "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
                "-append", append,
                "-serial", f"file:{self.console_path}",
                "-serial", f"file:{self.data_path}",
                *self.extra]

    def finish(self, timeout: float) -> QngResult:  # type: ignore[override]
        """Wait (bounded) for the guest to power off; parse its console and files."""
        assert self.proc is not None
        remaining = max(0.0, self.t_start + timeout - time.monotonic())
        try:
            self.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            self.kill()
            raise GuestError(f"guest did not finish within {timeout}s (QEMU killed)\n"
                             f"{self.describe()}")
        wall = time.monotonic() - self.t_start
        console = self.console().replace("\r\n", "\n")   # the tty adds CRs
        fail = re.search(rf"^{MARK}FAIL (.*)$", console, re.M)
        if fail:
            raise GuestError(f"guest reported failure: {fail.group(1)}\n{self.describe()}")
        if not re.search(rf"^{MARK}DUMP-DONE", console, re.M):
            raise GuestError(f"guest exited ({self.proc.returncode}) without DUMP-DONE\n"
                             f"{self.describe()}")
        raw = self.data_path.read_bytes().decode(errors="replace")
        if "=====DONE=====" not in raw:
            raise GuestError(f"ttyS1 output is incomplete ({len(raw)} bytes)")
        files: dict[str, bytes] = {}
        for m in re.finditer(r"=====BEGIN (\S+)=====\s*\n(.*?)=====END \1=====", raw, re.S):
            try:
                files[m.group(1)] = base64.b64decode(re.sub(r"\s+", "", m.group(2)),
                                                     validate=True)
            except ValueError as e:
                raise GuestError(f"ttyS1 section {m.group(1)} is not valid base64: {e}") from e
        if "data" in files:
            want = re.search(rf"^{MARK}SHA256 ([0-9a-f]{{64}})", console, re.M)
            if not want or hashlib.sha256(files["data"]).hexdigest() != want.group(1):
                raise GuestError(f"bytes from ttyS1 ({len(files['data'])}) do not match "
                                 f"the guest's sha256 (serial transfer damaged)")
        t0 = re.search(rf"^{MARK}FETCH-START uptime=([\d.]+)", console, re.M)
        t1 = re.search(rf"^{MARK}FETCH-DONE .*uptime=([\d.]+)", console, re.M)
        fetch = float(t1.group(1)) - float(t0.group(1)) if t0 and t1 else None
        return QngResult(console=console, files=files, wall_seconds=wall,
                         fetch_seconds=fetch, exit_code=self.proc.returncode)


def parse_probe(text: str) -> dict[str, tuple[int, str]]:
    """ftdiprobe output → call → (rc, rest of the line). Repeated calls get #2, #3..."""
    out: dict[str, tuple[int, str]] = {}
    for m in re.finditer(r"^PROBE (\S+) rc=(-?\d+)(.*)$", text, re.M):
        name, k = m.group(1), 2
        while name in out:
            name = f"{m.group(1)}#{k}"
            k += 1
        out[name] = (int(m.group(2)), m.group(3).strip())
    return out
