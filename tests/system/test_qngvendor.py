"""The `qngvendor` source (a ComScire QNG through the vendor's C++ library libqwqng) on the
real daemon, built against tests/fake-qwqng: an API-compatible fake of the library whose
"device" produces a known stream and whose faults are set through FAKE_QWQNG_* variables
(see tests/fake-qwqng/qwqng.cpp), and which logs every call the shim makes.

Checked: a lone client gets exactly the fake's stream from offset 1024 on (the start-up
test) in 512-byte windows, read in calls of at most 8192 bytes; a RandBytes() that fails or
throws makes the source delete the library's instance, create a fresh one (with backoff
while that fails) and re-run the start-up test, and no byte of the failed call reaches a
client; a constructor that fails or throws at start is a one-line error and exit status 1;
a second qngvendor source is refused; the normal build (without libqwqng) refuses the kind
in one line and says so in --list-sources.

The fake library and an entropyd configured against it (-Dqngvendor=enabled
-Dqwqng_libdir=... -Dqwqng_includedir=...) are built on first use and cached under
build/qngvendor/ (entropyd-asan/ with ENTROPYD_SANITIZED=1); ninja rebuilds what changed.
$ENTROPYD, the normal build, serves only the without-libqwqng checks."""

import os
import re
import shutil
import subprocess
import time

import pytest

import entropyd_proc
from egdsupport import STARTUP_BYTES, WINDOW_BYTES
from entropyd_proc import REPO, run_entropyd

FAKE_SRC = REPO / "tests" / "fake-qwqng"
CACHE = REPO / "build" / "qngvendor"
BUILD_TIMEOUT = 900
SANITIZED = os.environ.get("ENTROPYD_SANITIZED") == "1"
SERIAL = "QWR4FAKE0001"
READ_MAX = 8192
POOL = ["--pool-size", "65536"]
WITHOUT = ("entropyd was built without libqwqng, the ComScire vendor library (the native qng "
           "source drives the same devices)")


# ---------------------------------------------------------------------------------------
# The fake library's stream and call log


def _splitmix_stream(seed, n):
    """Bytes 0..n-1 of the fake's stream for seed (the formula in qwqng.cpp)."""
    mask = (1 << 64) - 1
    out = bytearray()
    for word in range((n + 7) // 8):
        z = (seed + (word + 1) * 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out += z.to_bytes(8, "little")
    return bytes(out[:n])


class Fake:
    def __init__(self, monkeypatch, log_path, seed):
        self.monkeypatch = monkeypatch
        self.log_path = log_path
        self.seed = seed

    def set(self, **env):
        """Set FAKE_QWQNG_<NAME> variables for daemons started after this."""
        for k, v in env.items():
            self.monkeypatch.setenv("FAKE_QWQNG_" + k.upper(), str(v))

    def stream(self, n):
        return _splitmix_stream(self.seed, n)

    def bad_stream(self, n):
        return _splitmix_stream(self.seed ^ 0x0BADBADBADBADBAD, n)

    def calls(self):
        """The call log: a list of word lists, e.g. ['read', '0', '8192', '16384', 'ok']."""
        if not self.log_path.exists():
            return []
        return [ln.split() for ln in self.log_path.read_text().splitlines() if ln.strip()]


# ---------------------------------------------------------------------------------------
# Builds


def _run(cmd, what):
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("%s did not finish within %d s: %s" % (what, BUILD_TIMEOUT, " ".join(cmd)),
                    pytrace=False)
    if r.returncode != 0:
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        pytest.fail("%s failed (exit status %d): %s\n%s" % (what, r.returncode, " ".join(cmd),
                                                            out[-6000:]), pytrace=False)


def _meson_build(src, builddir, options, targets=()):
    if not (builddir / "build.ninja").exists():
        shutil.rmtree(builddir, ignore_errors=True)  # a setup that did not finish
        _run(["meson", "setup", str(builddir), str(src)] + options,
             "meson setup of %s" % builddir)
    _run(["ninja", "-C", str(builddir)] + list(targets), "building %s" % builddir)


@pytest.fixture(scope="module")
def vendor_build():
    """The path of an entropyd built with the qngvendor source against the fake library."""
    fake_dir = CACHE / "fake"
    _meson_build(FAKE_SRC, fake_dir, [])
    options = ["-Dqngvendor=enabled", "-Dqwqng_libdir=%s" % fake_dir,
               "-Dqwqng_includedir=%s" % FAKE_SRC]
    if SANITIZED:
        options += ["-Db_sanitize=address,undefined", "-Db_lundef=false", "-Dbuildtype=debug"]
    builddir = CACHE / ("entropyd-asan" if SANITIZED else "entropyd")
    _meson_build(REPO, builddir, options, ["entropyd"])
    return builddir / "entropyd"


@pytest.fixture
def fake(vendor_build, monkeypatch, tmp_path):
    """Daemons started by the test (the `entropyd` fixture, run_entropyd) are the build
    against the fake library, which gets a fresh call log and seed and no faults."""
    monkeypatch.setattr(entropyd_proc, "ENTROPYD", str(vendor_build))
    for k in list(os.environ):
        if k.startswith("FAKE_QWQNG_"):
            monkeypatch.delenv(k)
    f = Fake(monkeypatch, tmp_path / "fake-qwqng.log", 0x5EED0001)
    f.set(seed=f.seed, log=f.log_path)
    return f


# ---------------------------------------------------------------------------------------
# Helpers


def lines_in_order(d, patterns, start=0):
    i = 0
    for ln in d.log_lines(start):
        if re.search(patterns[i], ln):
            i += 1
            if i == len(patterns):
                return True
    return False


def wait_lines_in_order(d, patterns, timeout):
    deadline = time.monotonic() + timeout
    while not lines_in_order(d, patterns):
        assert time.monotonic() < deadline, (
            "log lines matching %s did not appear in this order within %.0f s\n--- log ---\n%s"
            % (patterns, timeout, d.log()))
        time.sleep(0.1)


def first_difference(a, b):
    return next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))


def stderr_lines(r):
    return [ln for ln in r.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]


# ---------------------------------------------------------------------------------------
# Tests


def test_qngvendor_client_gets_the_devices_stream_after_the_start_up_test(fake, entropyd):
    n = 400 * WINDOW_BYTES
    d = entropyd(sources=["qngvendor"], extra=POOL)
    d.wait_log(r"qngvendor: libqwqng opened the QNG with serial %s" % SERIAL)
    with d.connect() as c:
        got = c.block(n, timeout=30)
        c.assert_in_sync(d.pid)
    want = fake.stream(STARTUP_BYTES + n)[STARTUP_BYTES:]
    assert got == want, (
        "the client did not receive exactly the fake device's stream from offset %d on "
        "(first difference at stream offset %d)" % (STARTUP_BYTES, first_difference(got, want)))
    calls = fake.calls()
    assert [c[0] for c in calls if c[0] in ("open", "reset", "clear")] == ["open"], calls[:5]
    assert calls[0] == ["open", "0", "ok", SERIAL], calls[0]
    reads = [c for c in calls if c[0] == "read"]
    assert reads, "the shim never called RandBytes()"
    too_big = [c for c in reads if int(c[2]) > READ_MAX]
    assert not too_big, "RandBytes() asked for more than %d bytes: %s" % (READ_MAX, too_big[:3])
    assert all(c[4] == "ok" for c in reads), [c for c in reads if c[4] != "ok"][:3]


# (id, fake settings, what the daemon's log says about the failure, log lines while
# re-opening before the one that succeeds)
READ_FAULTS = [
    ("timeout", {"fail_at": 150_000},
     r"libqwqng: QNG I/O request has timed out\. \(status 0x80044403\)", []),
    ("bad-statistics", {"fail_at": 150_000, "fail_code": "0x80044406"},
     r"libqwqng: QNG test statistics exception\. \(status 0x80044406\)", []),
    ("exception", {"throw_at": 150_000},
     r"libqwqng: C\+\+ exception: fake libqwqng: RandBytes throws \(FAKE_QWQNG_THROW_AT\)", []),
    ("reopen-fails", {"fail_at": 150_000, "fail_opens": "1,2"},
     r"libqwqng: QNG I/O request has timed out\. \(status 0x80044403\)",
     [r"cannot re-open: libqwqng: QNG device not found or already in use\. \(next try in 2 s\)",
      r"cannot re-open: libqwqng: QNG device not found or already in use\. \(next try in 4 s\)"]),
    ("reopen-throws", {"fail_at": 150_000, "throw_opens": "1"},
     r"libqwqng: QNG I/O request has timed out\. \(status 0x80044403\)",
     [r"cannot re-open: libqwqng: C\+\+ exception: fake libqwqng: constructor throws"]),
]


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("settings,noticed,reopen_failures", [f[1:] for f in READ_FAULTS],
                         ids=[f[0] for f in READ_FAULTS])
def test_qngvendor_read_failure_gets_a_fresh_instance_and_bytes_continue(
        fake, entropyd, settings, noticed, reopen_failures):
    fake.set(**settings)
    n = 300_000
    d = entropyd(sources=["qngvendor"], extra=POOL)
    with d.connect() as c:
        got = c.block(n, timeout=60)
        c.assert_in_sync(d.pid)
    wait_lines_in_order(d, [r"source qngvendor: " + noticed + r"; closing it, re-opening in 1 s"]
                        + [r"source qngvendor: " + p for p in reopen_failures]
                        + [r"qngvendor: libqwqng opened the QNG with serial " + SERIAL,
                           r"source qngvendor: re-opened; running the start-up test",
                           r"source qngvendor: start-up test passed"], timeout=10)

    # The library: the failed call, then the instance deleted, then new instances until one
    # opens (no Reset(), no read on a failed instance); the stream goes on after the call.
    calls = fake.calls()
    failed = [i for i, c in enumerate(calls) if c[0] == "read" and c[4] != "ok"]
    assert len(failed) == 1, "expected one failed read: %s" % [calls[i] for i in failed]
    f = failed[0]
    inst, fail_len, fail_pos = calls[f][1], int(calls[f][2]), int(calls[f][3])
    assert calls[f + 1] == ["close", inst], calls[f:f + 3]
    after = calls[f + 2:]
    opened = next(i for i, c in enumerate(after) if c[0] == "open" and c[2] == "ok")
    assert all(c[0] in ("open", "close") for c in after[:opened]), after[:opened + 1]
    assert len([c for c in after[:opened] if c[0] == "open"]) == len(reopen_failures), after
    assert not [c for c in calls if c[0] in ("reset", "clear")], "the shim used Reset/Clear"
    new_reads = [c for c in after[opened:] if c[0] == "read"]
    assert new_reads and int(new_reads[0][3]) == fail_pos + fail_len, new_reads[:1]

    # The client: the stream up to the failed call's last whole window, then the stream
    # after the failed call minus the start-up test's bytes; nothing of the failed call.
    cut = STARTUP_BYTES + (fail_pos - STARTUP_BYTES) // WINDOW_BYTES * WINDOW_BYTES
    resume = fail_pos + fail_len + STARTUP_BYTES
    assert cut - STARTUP_BYTES < n, "the fault came after everything the client read"
    stream = fake.stream(resume + n)
    want = stream[STARTUP_BYTES:cut] + stream[resume:resume + n - (cut - STARTUP_BYTES)]
    assert got == want, (
        "the client's bytes are not the stream up to offset %d followed by the stream from "
        "offset %d (first difference at client offset %d)"
        % (cut, resume, first_difference(got, want)))
    bad = fake.bad_stream(fail_pos + fail_len)[fail_pos:]
    for i in range(0, len(bad) - 32 + 1, 256):
        assert bad[i:i + 32] not in got, "a client received bytes of the failed RandBytes()"


# (id, fake settings, the error line)
OPEN_FAILURES = [
    ("no-device", {"fail_opens": "0"},
     r"libqwqng: QNG device not found or already in use\."),
    ("initialisation-fails", {"fail_opens": "0", "open_fail_code": "0x80044402"},
     r"libqwqng: QNG I/O error\."),
    ("constructor-throws", {"throw_opens": "0"},
     r"libqwqng: C\+\+ exception: fake libqwqng: constructor throws \(FAKE_QWQNG_THROW_OPENS\)"),
]


@pytest.mark.parametrize("settings,message", [f[1:] for f in OPEN_FAILURES],
                         ids=[f[0] for f in OPEN_FAILURES])
def test_qngvendor_open_failure_at_start_is_a_one_line_error(fake, settings, message):
    fake.set(**settings)
    r = run_entropyd(["-f", "--source", "qngvendor", "--listen", "tcp:127.0.0.1:0"])
    lines = stderr_lines(r)
    assert r.returncode == 1, "exit status %d\n%s" % (r.returncode, "\n".join(lines))
    assert len(lines) == 1 and re.fullmatch(r"entropyd: source qngvendor: " + message,
                                            lines[0]), (
        "expected one line 'entropyd: source qngvendor: %s', got:\n%s"
        % (message, "\n".join(lines)))
    calls = fake.calls()
    if "throw_opens" in settings:
        assert calls == [["open", "0", "throw"]], calls
    else:
        # The instance whose constructor failed is deleted, not kept or reused.
        assert [c[:3] for c in calls] == [["open", "0", "fail"], ["close", "0"]], calls


def test_qngvendor_second_source_is_refused_because_the_library_drives_one_device(fake):
    r = run_entropyd(["-f", "--source", "qngvendor", "--source", "qngvendor,h=5",
                      "--listen", "tcp:127.0.0.1:0"])
    lines = stderr_lines(r)
    assert r.returncode == 1, "exit status %d\n%s" % (r.returncode, "\n".join(lines))
    assert re.fullmatch(r"entropyd: source qngvendor,h=5: another qngvendor source already "
                        r"uses libqwqng, which drives one QNG per process .*", lines[-1]), lines
    assert [c[0] for c in fake.calls()] == ["open"], (
        "the second source should be refused before a second instance is made: %s"
        % fake.calls())


def test_qngvendor_in_list_sources_with_and_without_a_device(fake):
    r = run_entropyd(["--list-sources"])
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, out
    assert re.search(r"^  usable +qngvendor +hardware: ComScire QNG through the vendor's "
                     r"libqwqng$", out, re.M), out
    fake.set(fail_opens="all")
    r = run_entropyd(["--list-sources"])
    out = r.stdout.decode("utf-8", "replace")
    assert re.search(r"^  unusable +qngvendor +libqwqng: QNG device not found or already in "
                     r"use\.$", out, re.M), out


def test_build_without_libqwqng_refuses_qngvendor_in_one_line():
    """$ENTROPYD, the normal build: Debian has no libqwqng, so it is built without it."""
    hint = ("(is libqwqng installed on this machine, so that the normal build has the "
            "qngvendor source? This test expects the build without it.)")
    r = run_entropyd(["-f", "--source", "qngvendor", "--listen", "tcp:127.0.0.1:0"])
    lines = stderr_lines(r)
    assert r.returncode == 1, "exit status %d %s\n%s" % (r.returncode, hint, "\n".join(lines))
    assert lines == ["entropyd: source qngvendor: " + WITHOUT], (
        "expected one line saying entropyd was built without libqwqng, got:\n%s\n%s"
        % ("\n".join(lines), hint))
    r = run_entropyd(["--list-sources"])
    out = r.stdout.decode("utf-8", "replace")
    assert re.search(r"^  unusable +qngvendor +" + re.escape(WITHOUT) + "$", out, re.M), (
        "%s\n%s" % (out, hint))
