"""A unix endpoint whose socket file is deleted is noticed and bound again (within a few
seconds, and at once on SIGHUP); a path that another process took over is left alone."""

import os
import re
import signal
import socket
import time

import pytest

REBOUND = r"unix:%s: socket file was removed or replaced; binding it again"


def egd_draw(path, n=32, timeout=5.0):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(timeout)
        c.connect(path)
        return draw_on(c, n)


def draw_on(c, n=32):
    c.sendall(bytes([2, n]))
    got = b""
    while len(got) < n:
        chunk = c.recv(n - len(got))
        assert chunk, "connection closed before %d bytes" % n
        got += chunk
    return got


@pytest.mark.time_limit(30)
def test_deleted_unix_socket_path_is_bound_again(entropyd, tmp_path):
    path = str(tmp_path / "egd.sock")
    d = entropyd(listen=["unix:%s,mode=0640,primer=0" % path])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
        held.settimeout(5)
        held.connect(path)
        assert len(draw_on(held)) == 32
        before = d.mark()
        os.unlink(path)
        t0 = time.monotonic()
        while True:
            try:
                got = egd_draw(path, timeout=1)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                assert time.monotonic() - t0 < 5, (
                    "%s still cannot be connected to 5 s after its deletion" % path)
                time.sleep(0.1)
        assert len(got) == 32
        assert d.count_log(REBOUND % re.escape(path), before) == 1, d.log()
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o640), "mode not applied again"
        # The client connected before the deletion is still served.
        assert len(draw_on(held)) == 32
    time.sleep(1.5)  # and the new file is recognised as ours: no second rebinding
    assert d.count_log(REBOUND % re.escape(path), before) == 1, d.log()


@pytest.mark.time_limit(30)
def test_sighup_rebinds_a_deleted_unix_socket_path(entropyd, tmp_path):
    path = str(tmp_path / "egd.sock")
    d = entropyd(listen=["unix:%s" % path])
    assert len(egd_draw(path)) == 32
    before = d.mark()
    os.unlink(path)
    os.kill(d.pid, signal.SIGHUP)  # at once: before the periodic check can see it
    # the unix socket and the control socket
    d.wait_log(r"2 listening socket\(s\) or pipe\(s\) passed in", 10, start=before)
    d.wait_log(r"\bready\b", 10, start=before)
    assert d.proc.poll() is None
    assert os.path.exists(path), "after the reload %s still does not exist" % path
    # Repaired by the reload itself (the new image checks what it adopts), not by the timer.
    lines = d.log_lines(before)
    passed_in = next(i for i, ln in enumerate(lines) if "passed in" in ln)
    assert any(re.search(REBOUND % re.escape(path), ln) for ln in lines[passed_in:]), d.log()
    assert len(egd_draw(path)) == 32


@pytest.mark.time_limit(30)
def test_unix_path_taken_by_another_process_is_left_alone(entropyd, tmp_path):
    path = str(tmp_path / "egd.sock")
    d = entropyd(listen=["unix:%s" % path])
    before = d.mark()
    os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(path)
        other.listen(8)
        ino = os.stat(path).st_ino
        d.wait_log(r"unix:%s: the path now names something other than entropyd's socket; "
                   r"leaving it alone" % re.escape(path), 5, start=before)
        time.sleep(2.5)
        assert d.count_log(r"leaving it alone", before) == 1, d.log()
        assert d.count_log(REBOUND % re.escape(path), before) == 0, d.log()
        assert os.stat(path).st_ino == ino, "entropyd replaced another process's socket"
        rc, killed = d.stop()
        assert rc == 0 and not killed
        assert os.path.exists(path) and os.stat(path).st_ino == ino, (
            "entropyd removed another process's socket file when it stopped")
