"""The `darn` source (POWER9 DARN instruction) running for real inside a ppc64 guest.

entropyd is cross-built for ppc64el (crossbuild.py: Debian's cross compiler and the
ppc64el library packages unpacked into a sysroot, meson into build-ppc64el/). The
executable, every shared library it needs and the ppc64el loader go into an initramfs
next to ppc64.py's kernel and busybox; the guest boots under qemu-system-ppc64 (TCG,
pseries, `-cpu power9`) and its init:

  * prints the CPU line of /proc/cpuinfo and the AT_HWCAP/AT_HWCAP2 bits the loader
    sees (LD_SHOW_AUXV): entropyd's darn source needs PPC_FEATURE2_ARCH_3_00;
  * runs `entropyd --list-sources` (its output is part of the test's output);
  * runs `entropyd -f --source darn --listen fifo:/tmp/rng.fifo`, reads 64 KiB from the
    pipe with busybox dd, stops the daemon and prints its log;
  * sends the bytes out on hvc1 (base64), checked against their SHA-256 (ppc64.py).

The host then checks that the log shows the darn source passing its start-up test and
that the bytes look random (loose bounds that real randomness never fails). If QEMU's
CPU model had no DARN, the guest would print entropyd's "no DARN instruction" error and
the test fails with it: never a skip.

Every step inside the guest is bounded by busybox `timeout`; the guest by GUEST_LIMIT;
the whole test by a SIGALRM limit; QEMU is ended by its PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import collections
import gzip
import os
import re
import signal
from pathlib import Path

import pytest

import crossbuild
import guest
import ppc64

KIB = 1024
READ_BYTES = 64 * KIB
CPU_MODEL = os.environ.get("ENTROPYD_DARN_CPU", "power9")
GUEST_LIMIT = float(os.environ.get("ENTROPYD_PPC64_TIMEOUT", "240"))
# The cross build may have to download packages and compile: on top of the guest.
TEST_LIMIT = GUEST_LIMIT + 900
MARK = ppc64.MARK

DARN_INIT = """#!/bin/busybox sh
# entropyd darn e2e guest init: run the cross-built entropyd with --source darn.
""" + guest.INIT_PRELUDE + r"""export LD_LIBRARY_PATH=/lib/powerpc64le-linux-gnu
prefixed() { while IFS= read -r line; do say "$1 $line"; done <"$2"; }

say "INIT uptime=$(now)"
N=65536
for kv in $(cat /proc/cmdline); do
    case "$kv" in
    rngbytes=*) N="${kv#rngbytes=}" ;;
    esac
done
say "CPU $(grep -m1 '^cpu' /proc/cpuinfo)"
timeout 20 env LD_SHOW_AUXV=1 /bin/entropyd --version >/tmp/auxv 2>&1
say "VERSION-RC $?"
grep -E 'AT_HWCAP|entropyd' /tmp/auxv >/tmp/auxv.short
prefixed AUXV /tmp/auxv.short

timeout 30 /bin/entropyd --list-sources >/tmp/list 2>&1
rc=$?
prefixed LIST /tmp/list
say "LIST-DONE rc=$rc"

/bin/entropyd -f --source darn --listen fifo:/tmp/rng.fifo >/tmp/entropyd.log 2>&1 &
pid=$!
i=0
while [ $i -lt 300 ]; do
    grep -q "listening on fifo:" /tmp/entropyd.log && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
if ! kill -0 $pid 2>/dev/null; then
    wait $pid
    rc=$?
    prefixed LOG /tmp/entropyd.log
    dmesg | grep -iE "illegal instruction|unhandled signal|segfault" >/tmp/dmesg.short
    prefixed KERNEL /tmp/dmesg.short
    fail "entropyd exited with status $rc before serving: $(tail -n 1 /tmp/entropyd.log)"
fi
grep -q "listening on fifo:" /tmp/entropyd.log || {
    kill $pid; prefixed LOG /tmp/entropyd.log; fail "entropyd is not listening after 30 s"; }

say "READ-START bytes=$N chunk=0 uptime=$(now)"
t0="$(now)"
timeout 120 dd if=/tmp/rng.fifo of=/tmp/data bs=$N count=1 iflag=fullblock 2>/dev/null
rc=$?
t1="$(now)"
got="$(wc -c </tmp/data)"
kill -0 $pid 2>/dev/null && alive=1 || alive=0
kill $pid 2>/dev/null
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid
prefixed LOG /tmp/entropyd.log
say "DAEMON alive-after-read=$alive"
[ $rc = 0 ] || fail "dd from the fifo exited $rc after $got bytes"
say "READ-DONE bytes=$got t0=$t0 t1=$t1"
[ "$got" = "$N" ] || fail "read $got bytes, wanted $N"
say "SHA256 $(sha256sum /tmp/data | cut -d' ' -f1)"
stty -F /dev/hvc1 raw -echo 2>/dev/null
base64 /tmp/data >/dev/hvc1 || fail "dump to hvc1"
say "DUMP-DONE uptime=$(now)"
finish
"""


class HardTimeLimitExceeded(Exception):
    """The whole test ran past TEST_LIMIT."""


@pytest.fixture(autouse=True)
def _hard_time_limit():
    def expired(signum, frame):
        raise HardTimeLimitExceeded(f"test exceeded its hard limit of {TEST_LIMIT:.0f}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, TEST_LIMIT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _busybox(image: ppc64.Ppc64Image) -> bytes:
    """ppc64.py's static ppc64el busybox (unpacked by ensure_image into its cache)."""
    path = guest.cache_dir() / "busybox-static-ppc64el" / "bin" / "busybox"
    if not ppc64._is_static_ppc64le(path):
        raise guest.GuestError(f"no static ppc64le busybox at {path} after "
                               f"ppc64.ensure_image()")
    return path.read_bytes()


@pytest.fixture
def darn_image(tmp_path) -> ppc64.Ppc64Image:
    """ppc64.py's kernel with an initramfs of busybox, the cross-built entropyd and its
    libraries, and DARN_INIT."""
    try:
        base = ppc64.ensure_image()
        exe = crossbuild.build()
        files = {p: (0o40755, b"") for p in ("bin", "dev", "lib", "lib64", "proc", "sys",
                                            "tmp", f"lib/{crossbuild.TRIPLET}")}
        files.update(crossbuild.runtime_files(exe))
        files["bin/busybox"] = (0o100755, _busybox(base))
        files["init"] = (0o100755, DARN_INIT.encode())
    except guest.GuestError as e:
        pytest.fail(f"cannot prepare the ppc64el entropyd guest: {e}", pytrace=False)
    initrd = tmp_path / "darn-initrd.cpio.gz"
    initrd.write_bytes(gzip.compress(ppc64.newc_archive(files), compresslevel=1))
    print(f"cross-built {exe}; initramfs {initrd.stat().st_size} bytes with "
          f"{', '.join(sorted(Path(p).name for p in files if p.startswith('lib')))}")
    return ppc64.Ppc64Image(kernel=base.kernel, initrd=initrd,
                            kernel_version=base.kernel_version)


def _lines(console: str, tag: str) -> list[str]:
    """The rest of each console line "E2E: TAG rest" (not "E2E: TAG-OTHER ...")."""
    return re.findall(rf"^{MARK}{tag}(?: (.*))?$", console, re.M)


def _check_random(data: bytes) -> str:
    """Loose sanity bounds that real randomness never fails; a description."""
    n = len(data)
    assert len(set(data)) > 1, "all bytes are equal"
    words = [data[i:i + 8] for i in range(0, n - n % 8, 8)]
    repeated = len(words) - len(set(words))
    # 8192 random 64-bit words collide with probability ~2^-38.
    assert repeated == 0, f"{repeated} of {len(words)} 8-byte words repeat"
    counts = collections.Counter(data)
    missing = [b for b in range(256) if counts[b] == 0]
    # P(some byte value absent from 64 KiB of random bytes) ~ 256 * e^-256.
    assert not missing, f"byte values never seen in {n} bytes: {missing[:16]}"
    expected = n / 256
    chi2 = sum((counts[b] - expected) ** 2 / expected for b in range(256))
    # 255 degrees of freedom: mean 255, sd 22.6; 450 is > 8 sd out.
    assert chi2 < 450, f"byte histogram chi-square {chi2:.1f} (255 d.o.f.) is far off"
    ones = sum(bin(b).count("1") for b in data) / (8 * n)
    # sd of the fraction of ones is 0.0007 for 64 KiB: 0.01 is > 14 sd out.
    assert abs(ones - 0.5) < 0.01, f"fraction of one bits {ones:.4f}"
    return (f"{n} bytes: {len(counts)} byte values, chi-square {chi2:.1f} (255 d.o.f.), "
            f"one bits {ones:.4f}, {len(words)} distinct 8-byte words")


def test_darn_source_serves_64kib_in_ppc64_guest(darn_image, tmp_path):
    run = ppc64.Ppc64Run(darn_image, ["-object", "rng-builtin,id=rng0"], nbytes=READ_BYTES,
                         extra=["-cpu", CPU_MODEL], workdir=tmp_path / "guest")
    failure = None
    try:
        with run:
            try:
                run.start()
                res = run.finish(GUEST_LIMIT)
            except guest.GuestError as e:
                failure = str(e)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        print(run.describe(tail=20000))
    if failure is not None:
        seen = run.console()
        summary = "\n".join(
            [f"  CPU {c}" for c in _lines(seen, "CPU")]
            + [f"  {a}" for a in _lines(seen, "AUXV") if "HWCAP2" in a]
            + [f"  --list-sources: {x}" for x in _lines(seen, "LIST")
               if re.search(r"\bdarn\b", x)]
            + [f"  log: {x}" for x in _lines(seen, "LOG")]
            + [f"  kernel: {x}" for x in _lines(seen, "KERNEL")])
        pytest.fail(f"the darn guest failed (QEMU -cpu {CPU_MODEL}):\n{summary}\n{failure}",
                    pytrace=False)
    console = res.console

    cpu = _lines(console, "CPU")
    auxv = _lines(console, "AUXV")
    listing = _lines(console, "LIST")
    log = _lines(console, "LOG")
    print("guest CPU:", *cpu)
    print("guest auxv:", *auxv, sep="\n  ")
    print("entropyd --list-sources in the guest:", *listing, sep="\n  ")
    print("entropyd log in the guest:", *log, sep="\n  ")

    assert _lines(console, "LIST-DONE") == ["rc=0"], "entropyd --list-sources failed"
    darn_listed = [line for line in listing if re.search(r"\bdarn\b", line)]
    assert darn_listed and darn_listed[0].split()[0] == "usable", \
        f"--list-sources does not call darn usable: {darn_listed}"
    assert any(re.search(r"source darn: start-up test passed", line) for line in log), \
        "entropyd's log does not show the darn source passing its start-up test"
    assert not any(re.search(r"health test failed", line) for line in log), \
        "the darn source failed a health test"
    assert res.data is not None and len(res.data) == READ_BYTES
    report = _check_random(res.data)
    print(f"guest reached its read {res.boot_seconds:.2f}s after boot, read {res.nbytes} "
          f"bytes in {res.read_seconds:.2f}s ({res.kb_per_s:.1f} KB/s); powered off after "
          f"{res.wall_seconds:.1f}s; {report}")
