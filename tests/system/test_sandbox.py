"""Privilege separation: entropyd started as root with --user drops to that user and its
groups, keeps no capability, sets no-new-privs and installs a seccomp filter (and still
serves, re-opens after a reload or a fault, repairs and reloads); a forbidden system call
kills it with SIGSYS; the shipped systemd unit rates 2.0 or better.

These tests start entropyd as root (as every system test runs) and use the user nobody and
the group nogroup, which Debian always has: no user is created."""

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from entropyd_proc import ENTROPYD, require_binary
from test_tty_source import FakeTrng

REPO = Path(__file__).resolve().parents[2]
NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrnam("nogroup")
SIGSYS = 31


def require_root():
    assert os.geteuid() == 0, "the sandbox tests start entropyd as root (run them as root)"


def status(pid):
    """The fields of /proc/PID/status that the sandbox sets."""
    out = {}
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.split()
    return out


def assert_sandboxed(pid, uid, gid):
    s = status(pid)
    assert s["Uid"] == [str(uid)] * 4, s["Uid"]
    assert s["Gid"] == [str(gid)] * 4, s["Gid"]
    for cap in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert int(s[cap][0], 16) == 0, "%s is %s" % (cap, s[cap][0])
    assert s["NoNewPrivs"] == ["1"], s["NoNewPrivs"]
    assert s["Seccomp"] == ["2"], s["Seccomp"]


def draw_tcp(d, n=32):
    c = d.connect()
    try:
        return c.block(n)
    finally:
        c.close()


def draw_unix(path, n=32, timeout=5.0):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(timeout)
        c.connect(path)
        c.sendall(bytes([2, n]))
        got = b""
        while len(got) < n:
            chunk = c.recv(n - len(got))
            assert chunk, "connection closed before %d bytes" % n
            got += chunk
        return got


def reload(d):
    before = d.mark()
    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(r"listening socket\(s\) or pipe\(s\) passed in", 10, start=before)
    d.wait_log(r"\bready\b", 10, start=before)
    assert d.proc.poll() is None, d.log()
    return before


@pytest.fixture
def shared_dir():
    """A directory the user nobody can enter (pytest's tmp_path is root's alone)."""
    path = tempfile.mkdtemp(prefix="entropyd-sandbox-")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.time_limit(40)
def test_daemon_run_with_user_nobody_has_no_privilege_and_a_filter_across_a_reload(entropyd):
    require_root()
    d = entropyd(extra=["--user", "nobody"])
    assert_sandboxed(d.pid, NOBODY.pw_uid, NOBODY.pw_gid)
    assert d.count_log(r"running as user nobody \(uid %d" % NOBODY.pw_uid) == 1, d.log()
    assert len(draw_tcp(d)) == 32
    before = reload(d)
    # The new image runs as nobody from its start: it adopts the socket, does not drop again.
    assert d.count_log(r"^entropyd: running as user nobody \(uid", before) == 0, d.log()
    assert d.count_log(r"already running as user nobody", before) == 1, d.log()
    assert_sandboxed(d.pid, NOBODY.pw_uid, NOBODY.pw_gid)
    assert len(draw_tcp(d)) == 32
    reload(d)  # and a reload of a reloaded image
    assert_sandboxed(d.pid, NOBODY.pw_uid, NOBODY.pw_gid)
    assert len(draw_tcp(d)) == 32


@pytest.mark.time_limit(30)
def test_socket_file_the_user_cannot_look_at_is_named_so_once_not_called_foreign(entropyd):
    """The fixture's control socket sits in a directory only root may enter. As nobody,
    entropyd cannot lstat it any more: it says so once (and that a removed file is then not
    bound again), instead of claiming that the path names something else."""
    require_root()
    d = entropyd(extra=["--user", "nobody"])
    d.wait_log(r"control\.sock: cannot look at the socket file \(Permission denied\); it is "
               r"not bound again if removed", 5)
    time.sleep(2.5)  # the path is looked at every second: still one line
    assert d.count_log(r"control\.sock: cannot look at the socket file") == 1, d.log()
    assert d.count_log(r"names something other than entropyd's socket") == 0, d.log()
    assert len(draw_tcp(d)) == 32


@pytest.mark.time_limit(30)
def test_started_as_root_without_user_becomes_entropyd_only_if_that_user_exists(entropyd):
    require_root()
    d = entropyd()
    s = status(d.pid)
    try:
        user = pwd.getpwnam("entropyd")
    except KeyError:
        user = None
    if user is None:
        # This machine (and the rest of tests/system) relies on this: entropyd stays root.
        assert s["Uid"] == ["0"] * 4, s["Uid"]
        assert int(s["CapEff"][0], 16) != 0, "root without --user lost its capabilities"
    else:
        assert_sandboxed(d.pid, user.pw_uid, user.pw_gid)
    # The filter is installed either way.
    assert s["NoNewPrivs"] == ["1"] and s["Seccomp"] == ["2"], s


@pytest.mark.time_limit(30)
@pytest.mark.parametrize("extra", [["--user", "nobody"], ["--user", "root"]],
                         ids=["as-nobody", "as-root"])
def test_forbidden_system_call_kills_the_daemon_with_sigsys(extra):
    require_binary()
    require_root()
    env = dict(os.environ, ENTROPYD_TEST_FORBIDDEN_SYSCALL="1")
    proc = subprocess.Popen([ENTROPYD, "-f", "-s", "getrandom", "-l", "tcp:127.0.0.1:0",
                             "--control", "none"] + extra,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail("entropyd survived its forbidden system call for 15 s")
    log = err.decode("utf-8", "replace")
    assert "making a forbidden system call" in log, log
    assert proc.returncode == -SIGSYS, "exit status %d, not killed by SIGSYS (31)\n%s" % (
        proc.returncode, log)


@pytest.mark.time_limit(30)
def test_unix_socket_directory_created_as_root_is_handed_to_the_user_and_repaired(
        entropyd, shared_dir):
    require_root()
    run = shared_dir / "run"
    path = str(run / "egd.sock")
    d = entropyd(listen=["unix:%s,mode=0666" % path], extra=["--user", "nobody"])
    st = os.stat(run)
    assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid), \
        "%s belongs to %d:%d, not to nobody" % (run, st.st_uid, st.st_gid)
    assert len(draw_unix(path)) == 32
    before = d.mark()
    os.unlink(path)  # bound again by the daemon, now nobody, in its directory
    d.wait_log(r"socket file was removed or replaced; binding it again", 10, start=before)
    # "listening on" comes once the new file is bound, its mode set and listen() done (the
    # file exists a moment before its mode is applied).
    d.wait_log(r"listening on unix:%s " % re.escape(path), 10, start=before)
    assert os.stat(path).st_uid == NOBODY.pw_uid
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    assert len(draw_unix(path)) == 32
    assert_sandboxed(d.pid, NOBODY.pw_uid, NOBODY.pw_gid)


@pytest.mark.time_limit(40)
def test_file_source_is_opened_again_as_the_user_through_its_group(entropyd, shared_dir):
    require_root()
    src = shared_dir / "generator.bin"
    src.write_bytes(os.urandom(1 << 20))
    # Readable by root and the group nogroup only, as the udev rule gives a device to a group.
    os.chown(src, 0, NOGROUP.gr_gid)
    os.chmod(src, 0o640)
    # The fixture's control socket sits in a directory only root may enter: the new image
    # (as nobody) must adopt it, not bind it again (a source thread still reading during the
    # re-exec once closed it: sources_join).
    d = entropyd(sources=["file:%s" % src], extra=["--user", "nobody"])
    assert len(draw_tcp(d)) == 32
    before = reload(d)  # the new image opens the file as nobody:nogroup
    assert not [ln for ln in d.log_lines(before)
                if "generator.bin" in ln and re.search(r"cannot|denied", ln)], d.log()
    assert len(draw_tcp(d)) == 32
    assert_sandboxed(d.pid, NOBODY.pw_uid, NOBODY.pw_gid)


def plug_tty(link, mode):
    """A new generator on a pty, its device given to the group nogroup with mode (as a udev
    rule's GROUP= and MODE= do) and put at link (a symlink replaced at once, as udev
    re-points /dev/serial/by-id). It sends once it receives cmdO or started.set(): before
    entropyd puts the line in raw mode, the tty would translate its bytes."""
    dev = FakeTrng()
    os.chown(dev.path, 0, NOGROUP.gr_gid)
    os.chmod(dev.path, mode)
    tmp = "%s.new" % link
    os.symlink(dev.path, tmp)
    os.replace(tmp, link)
    return dev


def drain(d):
    """Take every byte the daemon holds (01 requests until one answers nothing)."""
    with d.connect() as c:
        while c.nonblock(255):
            pass


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("init,mode", [("", 0o640), (",init=cmdO\\n", 0o660)],
                         ids=["read-only-0640", "init-command-0660"])
def test_tty_generator_unplugged_and_plugged_again_is_reopened_as_the_user(entropyd,
                                                                          shared_dir, init,
                                                                          mode):
    require_root()
    link = shared_dir / "trng"
    spec = "file:%s%s" % (link, init)
    dev = plug_tty(link, mode)
    try:
        d = entropyd(sources=[spec], extra=["--user", "nobody"])
        assert not init or dev.started.wait(10), "no init command at start: %r" % (
            dev.received,)
        dev.started.set()
        assert len(draw_tcp(d, 1024)) == 1024
        assert_sandboxed(d.pid, NOBODY.pw_uid, NOBODY.pw_gid)
        before = d.mark()
        unplugged = time.monotonic()
        dev.close()  # unplugged: the master goes away, entropyd's tty hangs up
        dev = None
        d.wait_log(r"source %s: .*; closing it, re-opening in 1 s" % re.escape(spec), 10,
                   start=before)
        noticed = time.monotonic()
        # As nobody, the first try finds no device (not a refusal, not a forbidden call).
        d.wait_log(r"source %s: cannot re-open: cannot open %s: No such file or directory"
                   % (re.escape(spec), re.escape(str(link))), 10, start=before)
        assert d.proc.poll() is None, d.log()
        assert_sandboxed(d.pid, NOBODY.pw_uid, NOBODY.pw_gid)
        drain(d)  # what is served from now on comes from the new device
        mark = d.mark()
        dev = plug_tty(link, mode)
        plugged = time.monotonic()
        d.wait_log(r"source %s: re-opened; running the start-up test" % re.escape(spec), 10,
                   start=mark)
        reopened = time.monotonic()
        # With init=, nobody opened the new device for writing too and sent it the command.
        assert not init or dev.started.wait(10), "no init command after the re-open: %r" % (
            dev.received,)
        dev.started.set()
        d.wait_log(r"source %s: start-up test passed" % re.escape(spec), 10, start=mark)
        print("tty: unplug noticed in %.3f s; re-opened as nobody %.2f s after it came "
              "back (next try was due in at most 2 s)" % (noticed - unplugged,
                                                          reopened - plugged))
        with d.connect() as c:
            got = c.block(4096, timeout=20)
        dev.stop = True
        dev.thread.join(5)
        assert bytes(got) in bytes(dev.sent), "served bytes are not the new device's"
        assert not [ln for ln in d.log_lines(before)
                    if "SIGSYS" in ln or ("trng" in ln and "denied" in ln)], d.log()
        assert d.proc.poll() is None, d.log()  # a call outside the filter would have killed it
        assert_sandboxed(d.pid, NOBODY.pw_uid, NOBODY.pw_gid)
    finally:
        if dev is not None:
            dev.close()


@pytest.mark.time_limit(20)
def test_user_option_refuses_an_unknown_user_and_warns_when_root_is_kept():
    require_binary()
    require_root()
    bad = subprocess.run([ENTROPYD, "-n", "-f", "-s", "getrandom", "-l", "tcp:127.0.0.1:0",
                          "--control", "none", "--user", "no-such-user-entropyd"],
                         capture_output=True, timeout=10)
    assert bad.returncode == 1
    assert b"--user no-such-user-entropyd: no such user" in bad.stderr, bad.stderr
    kept = subprocess.run([ENTROPYD, "-n", "-f", "-s", "getrandom", "-l", "tcp:127.0.0.1:0",
                           "--control", "none", "--user", "root"],
                          capture_output=True, timeout=10)
    assert kept.returncode == 0, kept.stderr
    assert b"--user root: running as root" in kept.stderr, kept.stderr


@pytest.mark.time_limit(60)
def test_shipped_systemd_unit_rates_an_exposure_of_2_or_better():
    unit = REPO / "doc" / "systemd" / "entropyd.service"
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                         capture_output=True, text=True, timeout=50)
    m = re.search(r"Overall exposure level for entropyd\.service: (\d+\.\d+)",
                  out.stdout + out.stderr)
    assert m, "no exposure level in:\n%s%s" % (out.stdout, out.stderr)
    score = float(m.group(1))
    print("systemd-analyze security exposure of %s: %.1f" % (unit.name, score))
    assert score <= 2.0, "exposure %.1f is above 2.0:\n%s" % (score, out.stdout)
