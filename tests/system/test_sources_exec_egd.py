"""The exec: and egd: sources on the real binary, on loopback.

exec:COMMAND: clients get the command's output from offset 1024 on (the start-up test); a
command that ends is restarted; a stuck stream is caught by the health tests and never
served; its stderr is logged; a stop, a restart of the command and a reload (SIGHUP) leave
no process of it behind (checked by PID, including a group member that ignores SIGTERM).

egd:ENDPOINT: entropyd B fed by entropyd A serves A's stream minus B's own start-up bytes
(A's file from offset 2048 on, since each daemon discards 1024 bytes), over TCP (IPv4 and
IPv6) and unix sockets, without ever earning A's primer; B reconnects when A is killed and
restarted; an upstream that refuses the connection at start is a one-line error.

Every daemon is bounded in time and stopped by PID by the fixture; commands are found by
the PIDs entropyd logs and checked through /proc (start time compared, so that a reused
PID cannot pass for the command)."""

import fcntl
import os
import re
import signal
import socket
import struct
import termios
import threading
import time

import pytest

from egdsupport import STARTUP_BYTES, WINDOW_BYTES, block_requests
from entropyd_proc import ipv6_loopback_available, run_entropyd

_STARTED_RE = re.compile(r"source exec:.*: started as pid (\d+) \(its own process group\)")


# ---------------------------------------------------------------------------------------
# Processes by PID


def _stat(pid):
    """(state, ppid, start time) of pid, or None if there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1]), int(fields[19])


class Proc:
    """A process seen alive, identified by PID and start time."""

    def __init__(self, pid):
        st = _stat(pid)
        assert st is not None and st[0] != "Z", "process %d is not running" % pid
        self.pid, self.start = pid, st[2]

    def gone(self):
        """True once the process no longer exists (a zombie still does: whoever should
        reap it has not)."""
        st = _stat(self.pid)
        return st is None or st[2] != self.start

    def wait_gone(self, timeout, what):
        deadline = time.monotonic() + timeout
        while not self.gone():
            if time.monotonic() > deadline:
                st = _stat(self.pid)
                raise AssertionError("%s (pid %d) still exists %.0f s later (state %s)"
                                     % (what, self.pid, timeout, st[0] if st else "?"))
            time.sleep(0.05)


def _started_pids(d, start=0):
    return [int(_STARTED_RE.search(ln).group(1)) for ln in d.log_lines(start)
            if _STARTED_RE.search(ln)]


def _zombie_children(pid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None and st[1] == pid and st[0] == "Z":
                out.append(int(name))
    return out


def _wait_file(path, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text()
            if text.endswith("\n"):
                return text
        except FileNotFoundError:
            pass
        assert time.monotonic() < deadline, "%s not written within %d s" % (path, timeout)
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------
# exec:


def test_exec_source_serves_the_commands_output_from_offset_1024(entropyd, random_file):
    windows = 64
    path, data = random_file(STARTUP_BYTES + windows * WINDOW_BYTES)
    d = entropyd(sources=["exec:cat %s; exec sleep 60" % path])
    with d.connect() as c:
        got = c.block(windows * WINDOW_BYTES, timeout=20)
        assert got == data[STARTUP_BYTES:], (
            "the client did not receive exactly the command's output from offset %d on"
            % STARTUP_BYTES)
        c.assert_in_sync(d.pid)


@pytest.mark.time_limit(90)
def test_exec_command_that_ends_is_restarted_and_bytes_keep_flowing(entropyd):
    # Each run gives 64 KiB - 1024 start-up bytes: 256 KiB needs at least five runs.
    d = entropyd(sources=["exec:head -c 65536 /dev/urandom"])
    with d.connect() as c:
        got = c.block(4 * 65536, timeout=60)
    assert len(got) == 4 * 65536
    d.wait_log(r"source exec:head -c 65536 /dev/urandom: command \(pid \d+\) exited with "
               r"status 0 after 65536 bytes of output; closing it, re-opening in 1 s")
    d.wait_log(r"source exec:head -c 65536 /dev/urandom: re-opened; running the start-up test")
    pids = _started_pids(d)
    assert len(set(pids)) >= 5, "expected at least five runs, saw pids %s" % pids
    # Every run but the current one is gone (reaped, not a zombie).
    for pid in pids[:-2]:
        st = _stat(pid)
        assert st is None or st[0] != "Z", "finished command %d is a zombie" % pid


def test_exec_stuck_stream_is_caught_by_the_health_tests_and_never_served(entropyd):
    d = entropyd(sources=["exec:exec cat /dev/zero"])
    d.wait_log(r"source exec:exec cat /dev/zero: health test failed \(repetition count\)")
    with d.connect() as c:
        c.send(block_requests(64))
        c.expect_silence(3, " from a command that prints only zeros")
    assert d.count_log(r"start-up test passed") == 0
    # After three failures in a row the command is stopped and started again: the old
    # one is gone by the time the new one runs.
    d.wait_log(r"failures in a row; closing and re-opening it")
    deadline = time.monotonic() + 10
    while len(_started_pids(d)) < 2:
        assert time.monotonic() < deadline, "the command was not started again"
        time.sleep(0.05)
    first = _started_pids(d)[0]
    assert _stat(first) is None, "the first command (pid %d) still exists" % first


def test_exec_stderr_is_logged_line_by_line_and_the_exit_status_too(entropyd):
    d = entropyd(sources=["exec:echo 'first line' >&2; printf 'no newline' >&2; "
                          "head -c 4096 /dev/urandom; exit 7"])
    d.wait_log(r"source exec:.*: stderr: first line$")
    d.wait_log(r"source exec:.*: stderr: no newline$")
    d.wait_log(r"command \(pid \d+\) exited with status 7 after 4096 bytes of output")


@pytest.mark.time_limit(60)
def test_stopping_entropyd_kills_the_command_and_its_group(entropyd, tmp_path):
    # The group holds the command (cat) and a background member that ignores SIGTERM:
    # both must be gone after a stop, the second by SIGKILL after the 5 s grace.
    bgfile = tmp_path / "bg.pid"
    d = entropyd(sources=["exec:(trap '' TERM; exec sleep 300) & echo $! > %s; "
                          "exec cat /dev/urandom" % bgfile])
    cmd = Proc(_started_pids(d)[0])
    bg = Proc(int(_wait_file(bgfile)))
    assert os.getpgid(bg.pid) == cmd.pid, "the background member is not in the group"
    assert os.getpgid(cmd.pid) == cmd.pid, "the command does not lead its own group"
    rc, killed = d.stop()
    assert rc == 0 and not killed
    cmd.wait_gone(5, "the command")
    bg.wait_gone(15, "the group member that ignores SIGTERM")


def test_reload_stops_the_old_command_before_starting_the_new_one(entropyd):
    # The command falls silent after its burst, so that no SIGPIPE can end it: only its
    # guard can, when the re-execution closes entropyd's end of their socket.
    d = entropyd(sources=["exec:head -c 100000 /dev/urandom; exec sleep 300"])
    old = Proc(_started_pids(d)[0])
    mark = d.mark()
    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(r"\bready\b", start=mark)
    new = _started_pids(d, mark)
    assert new and new[0] != old.pid
    # The new image waited for the old guard (its child now) before starting the command.
    assert old.gone(), "the old command (pid %d) outlived the reload" % old.pid
    d.wait_log(r"exec: reaped 1 process\(es\) left by the previous image", start=mark)
    assert _zombie_children(d.pid) == []
    with d.connect() as c:
        assert len(c.block(4096, timeout=10)) == 4096


# ---------------------------------------------------------------------------------------
# egd:


def _chained(entropyd, random_file, a_listen, b_source, windows=128):
    """A serves a known file on a_listen; B reads A through b_source(endpoint of A); one
    client of B must get A's file from offset 2048 on, exactly."""
    path, data = random_file(2 * STARTUP_BYTES + windows * WINDOW_BYTES)
    a = entropyd(sources=["file:%s" % path], listen=[a_listen])
    b = entropyd(sources=[b_source(a.ep())])
    with b.connect() as c:
        got = c.block(windows * WINDOW_BYTES, timeout=30)
        c.assert_in_sync(b.pid)
    assert got == data[2 * STARTUP_BYTES:], (
        "B's client did not receive A's file from offset %d on" % (2 * STARTUP_BYTES))
    # B asked at once after connecting: A never took it for a silent QEMU.
    assert a.count_log(r"primer") == 0, "A sent B primer bytes:\n%s" % a.log()
    return a, b


def test_egd_source_serves_the_upstreams_stream_after_both_startup_tests(entropyd,
                                                                          random_file):
    _chained(entropyd, random_file, "tcp:127.0.0.1:0",
             lambda ep: "egd:tcp:127.0.0.1:%d" % ep.port)


def test_egd_source_over_a_unix_socket(entropyd, random_file, tmp_path):
    sock = tmp_path / "a.sock"
    _chained(entropyd, random_file, "unix:%s" % sock, lambda ep: "egd:unix:%s" % ep.path)


def test_egd_source_over_ipv6_loopback(entropyd, random_file):
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback on this machine")
    _chained(entropyd, random_file, "tcp:[::1]:0", lambda ep: "egd:tcp:[::1]:%d" % ep.port)


@pytest.mark.time_limit(90)
def test_egd_source_reconnects_when_the_upstream_is_killed_and_restarted(entropyd,
                                                                         random_file):
    path1, data1 = random_file(2 * STARTUP_BYTES + 16 * WINDOW_BYTES, name="a1.bin")
    a1 = entropyd(sources=["file:%s" % path1])
    port = a1.ep().port
    b = entropyd(sources=["egd:tcp:127.0.0.1:%d" % port])
    with b.connect() as c:
        assert c.block(16 * WINDOW_BYTES, timeout=20) == data1[2 * STARTUP_BYTES:]
        mark = b.mark()
        a1.stop(signal.SIGKILL)
        a1.expect_exit = -signal.SIGKILL
        b.wait_log(r"source egd:tcp:127\.0\.0\.1:%d: .*(closed the connection|reset by "
                   r"peer).*; closing it, re-opening in \d+ s" % port, start=mark)
        path2, data2 = random_file(2 * STARTUP_BYTES + 32 * WINDOW_BYTES, name="a2.bin")
        entropyd(sources=["file:%s" % path2], listen=["tcp:127.0.0.1:%d" % port])
        b.wait_log(r"source egd:tcp:127\.0\.0\.1:%d: re-opened; running the start-up test"
                   % port, timeout=20, start=mark)
        assert c.block(32 * WINDOW_BYTES, timeout=30) == data2[2 * STARTUP_BYTES:], (
            "after the reconnection B's client did not get the new upstream's file from "
            "offset %d on" % (2 * STARTUP_BYTES))
        c.assert_in_sync(b.pid)


def _refused(spec, offending):
    r = run_entropyd(["-f", "--source", spec, "--listen", "tcp:127.0.0.1:0"], timeout=20)
    err = r.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert r.returncode == 1, "exit status %d, not 1 (stderr: %r)" % (r.returncode, err)
    assert len(lines) == 1 and lines[0].startswith("entropyd: source %s: " % spec), (
        "expected one error line naming the source:\n%s" % err)
    assert offending in lines[0], "the error does not say %r:\n%s" % (offending, err)


@pytest.mark.time_limit(90)
def test_egd_upstream_down_at_start_is_retried_until_it_comes_up(entropyd, random_file):
    # An unreachable upstream is not a configuration error (its host may boot later): B
    # starts, says so, and serves A's bytes once A is up.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = entropyd(sources=["egd:tcp:127.0.0.1:%d" % port])
    b.wait_log(r"cannot open it now: .*Connection refused.*retrying in the background", 5)
    path, data = random_file(2 * STARTUP_BYTES + 16 * WINDOW_BYTES)
    entropyd(sources=["file:%s" % path], listen=["tcp:127.0.0.1:%d" % port])
    with b.connect() as c:
        got = c.block(16 * WINDOW_BYTES, timeout=60)
    assert got == data[2 * STARTUP_BYTES:], "B did not serve A's file from offset 2048 on"


def test_exec_command_may_hold_commas_before_its_options(entropyd):
    d = entropyd(sources=["exec:echo 'a,b' >&2; exec cat /dev/urandom,h=6,prio=0"])
    d.wait_log(r"source exec:echo 'a,b' >&2; exec cat /dev/urandom,h=6,prio=0: .*h=6 bits/byte")
    d.wait_log(r"source exec:echo 'a,b' >&2; exec cat /dev/urandom: stderr: a,b$")
    with d.connect() as c:
        assert len(c.block(4096, timeout=10)) == 4096


@pytest.mark.parametrize("endpoint", [
    "tcp:127.0.0.1",        # no port
    "tcp:::1:8888",         # IPv6 without brackets
    "tcp:127.0.0.1:70000",  # port out of range
    "udp:127.0.0.1:8888",   # not a stream transport
    "unix:",                # empty path
])
def test_egd_unparsable_endpoint_is_a_one_line_error(endpoint):
    _refused("egd:%s" % endpoint, "egd: ")


def _unsent(conn):
    """Bytes in conn's send queue the peer has not acknowledged (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


@pytest.mark.time_limit(90)
def test_egd_source_reads_every_byte_an_upstream_sent_before_it_closed(entropyd):
    """An upstream sends its last bytes and ends its side (FIN); once B has them all (none
    left in the upstream's send queue) it reads what requests are still in flight for
    0.3 s and closes. B must then read all it got, and log the end. A request B sent after
    the close would draw a reset, which makes B's kernel drop what B received and had not
    read yet: so B must stop asking once the FIN is there."""
    data = os.urandom(STARTUP_BYTES + 768 * 1024)
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    closed = []

    def upstream():
        conn, _ = lsock.accept()
        lsock.close()  # B's re-open after the end is refused
        with conn:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(0.05)
            end = time.monotonic() + 30
            while _unsent(conn) > 0 and time.monotonic() < end:
                try:
                    conn.recv(65536)
                except socket.timeout:
                    pass
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                try:
                    if not conn.recv(65536):
                        break
                except socket.timeout:
                    pass
            closed.append(time.monotonic())

    t = threading.Thread(target=upstream, daemon=True)
    t.start()
    b = entropyd(sources=["egd:tcp:127.0.0.1:%d" % port], extra=["--pool-size", "65536"])
    want = len(data) - STARTUP_BYTES  # B's start-up test takes the first 1024
    with b.connect() as c:
        got = b""
        while len(got) < want:  # slowly: B still reads, and asks, after the upstream closed
            got += c.block(min(16 * 1024, want - len(got)), timeout=30)
            time.sleep(0.05)
    t.join(10)
    assert closed, "the upstream never finished"
    assert got == data[STARTUP_BYTES:], "B's client did not get the upstream's bytes"
    b.wait_log(r"source egd:tcp:127\.0\.0\.1:%d: tcp:127\.0\.0\.1:%d closed the connection "
               r"after %d bytes" % (port, port, len(data)), 20)
