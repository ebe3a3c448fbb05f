"""entropyctl test and feed-kernel, run as a user would: the real binary on real files,
a real pseudo-terminal, a running entropyd and the host kernel's /dev/random."""

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENTROPYCTL = os.environ.get("ENTROPYCTL", str(Path(os.environ.get(
    "ENTROPYD", str(REPO / "build" / "entropyd"))).parent / "entropyctl"))


def entropyctl(*args, timeout=60):
    return subprocess.run([ENTROPYCTL, *args], capture_output=True, timeout=timeout)


def biased_bytes(n):
    """Byte 0 with probability 1/2, else uniform over 1..255: min-entropy 1 bit per byte."""
    raw = os.urandom(2 * n)
    return bytes(0 if raw[2 * i] < 128 else 1 + raw[2 * i + 1] % 255 for i in range(n))


def suggested_h(out):
    m = re.search(r"^h=(\d+)$", out, re.M)
    assert m, out
    return int(m.group(1))


@pytest.mark.time_limit(60)
def test_test_on_a_biased_file_suggests_a_low_h(tmp_path):
    p = tmp_path / "biased.bin"
    p.write_bytes(biased_bytes(200000))
    r = entropyctl("test", "file:%s" % p, "--bytes", "200000")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert suggested_h(out) == 1, out
    mcv = float(re.search(r"most common value\s+\(6\.3\.1\)\s+([\d.]+)", out).group(1))
    assert 0.95 < mcv < 1.05, out
    for name in ("collision", "Markov", "compression", "t-tuple", "longest repeated"):
        assert name in out, out
    assert "suggested: --source file:%s,h=1" % p in out, out
    # Not a terminal: no progress bar on stderr.
    assert b"\r" not in r.stderr and b"reading [" not in r.stderr, r.stderr


@pytest.mark.time_limit(60)
def test_test_on_a_random_file_suggests_h_7_or_8(tmp_path):
    p = tmp_path / "random.bin"
    p.write_bytes(os.urandom(1000000))
    r = entropyctl("test", "file:%s,h=4" % p, "--bytes", "1000000")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert suggested_h(out) in (7, 8), out
    assert re.search(r"suggested: --source file:%s,h=[78]$" % re.escape(str(p)), out, re.M), out


@pytest.mark.time_limit(60)
def test_test_shows_a_progress_bar_on_a_terminal(tmp_path):
    p = tmp_path / "random.bin"
    p.write_bytes(os.urandom(100000))
    master, slave = pty.openpty()
    proc = subprocess.Popen([ENTROPYCTL, "test", "file:%s" % p, "--bytes", "100000"],
                            stdin=slave, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    out = proc.communicate(timeout=30)[0].decode()
    os.close(master)
    assert proc.returncode == 0
    assert b"reading [" in seen and b"100%" in seen and b"\r" in seen, seen
    assert "h=" in out and "reading [" not in out, out


@pytest.mark.time_limit(30)
def test_test_of_a_missing_file_fails_with_one_line(tmp_path):
    r = entropyctl("test", "file:%s" % (tmp_path / "none"), "--bytes", "1000")
    assert r.returncode == 1
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "none" in err, err


def ioctl_credits(strace_out):
    """(bytes, bits) of every RNDADDENTROPY that strace saw succeed."""
    return [(int(m.group(2)), int(m.group(1))) for m in re.finditer(
        r"RNDADDENTROPY, \{entropy_count=(\d+), buf_size=(\d+),.*\) = 0$", strace_out, re.M)]


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("h", ["8", "2.5"])
def test_feed_kernel_credits_bytes_times_h(entropyd, tmp_path, h):
    assert os.geteuid() == 0, "feed-kernel needs root: run the system tests as root"
    sock = tmp_path / "egd.sock"
    entropyd(listen=["unix:%s" % sock])
    trace = tmp_path / "strace.out"
    r = subprocess.run(["strace", "-o", str(trace), "-e", "trace=ioctl", ENTROPYCTL,
                        "feed-kernel", "--from", "unix:%s" % sock, "--h", h, "--bytes", "200",
                        "--interval", "0.2"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    calls = ioctl_credits(trace.read_text())
    # The first call is the permission probe (0 bytes, 0 bits); then rounds of a pool's worth.
    assert calls[0] == (0, 0), calls
    fed = calls[1:]
    assert sum(b for b, _ in fed) == 200, calls
    for nbytes, bits in fed:
        assert bits == int(nbytes * float(h)), calls
    printed = [(int(a), int(b)) for a, b in re.findall(r"fed (\d+) bytes, credited (\d+) bits",
                                                      r.stdout.decode())]
    assert printed == fed, (printed, fed)


@pytest.mark.time_limit(60)
def test_feed_kernel_does_not_credit_plain_tcp_by_default(entropyd, tmp_path):
    d = entropyd(listen=["tcp:127.0.0.1:0"])
    trace = tmp_path / "strace.out"
    r = subprocess.run(["strace", "-o", str(trace), "-e", "trace=ioctl", ENTROPYCTL,
                        "feed-kernel", "--from", repr(d.ep()), "--once"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    fed = ioctl_credits(trace.read_text())[1:]
    assert len(fed) == 1 and fed[0][0] > 0 and fed[0][1] == 0, fed


@pytest.mark.time_limit(60)
def test_feed_kernel_stops_cleanly_on_sigterm(entropyd, tmp_path):
    sock = tmp_path / "egd.sock"
    entropyd(listen=["unix:%s" % sock])
    p = subprocess.Popen([ENTROPYCTL, "feed-kernel", "--from", "unix:%s" % sock],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stdout.readline().decode()
    assert "feeding the kernel" in line, line
    # unix socket, no --h: credited at 4 bits per byte (a pool's worth: 64 bytes, 256 bits).
    assert p.stdout.readline().startswith(b"fed 64 bytes, credited 256 bits")
    p.terminate()
    assert p.wait(timeout=10) == 0, p.stderr.read()


@pytest.mark.time_limit(60)
def test_feed_kernel_without_root_prints_one_line(entropyd, tmp_path):
    sock = tmp_path / "egd.sock"
    entropyd(listen=["unix:%s,mode=0666" % sock])
    r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                        ENTROPYCTL, "feed-kernel", "--from", "unix:%s" % sock, "--once"],
                       capture_output=True, timeout=30)
    err = r.stderr.decode().strip()
    assert r.returncode == 1 and r.stdout == b"", (r.stdout, err)
    assert len(err.splitlines()) == 1 and "root (CAP_SYS_ADMIN)" in err, err
