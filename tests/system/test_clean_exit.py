"""Clean exits: at shutdown, source threads blocked in a read are woken and joined, what
they hold is closed, and entropyd leaves through one path that frees everything; `-n` and
refused arguments free what was parsed too. Under ASan (make asan) the leak check runs at
every exit, and a leak changes the exit status, which these tests and the `entropyd`
fixture check."""

import os
import re
import time

import pytest

from entropyd_proc import run_entropyd

# sources_free() gives the threads 2 s, then logs this and leaves without freeing.
STUCK_RE = r"did not stop within"


@pytest.mark.time_limit(60)
def test_shutdown_stops_and_reaps_a_silent_exec_command_before_exiting(entropyd):
    # The command writes nothing: its source thread is blocked waiting for output.
    d = entropyd(sources=("exec:sleep 100",))
    m = re.search(r"started as pid (\d+)", d.wait_log(r"exec:sleep 100: started as pid"))
    pid = int(m.group(1))
    time.sleep(0.5)

    rc, killed = d.stop()

    assert (rc, killed) == (0, False), d.log()
    assert d.count_log(STUCK_RE) == 0, d.log()
    # Closed by entropyd itself, which waited for its end (not left to its guard).
    assert d.count_log(r"command \(pid %d\) was killed by signal 15" % pid) == 1, d.log()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.time_limit(60)
def test_shutdown_wakes_a_source_blocked_in_a_fifo_read_at_once(entropyd, tmp_path):
    fifo = tmp_path / "silent.fifo"
    os.mkfifo(fifo)
    # A writer that never writes: the source's read() blocks in the kernel.
    holder = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        d = entropyd(sources=("file:%s" % fifo,))
        time.sleep(0.5)
        t0 = time.monotonic()
        rc, killed = d.stop()
        took = time.monotonic() - t0
    finally:
        os.close(holder)

    assert (rc, killed) == (0, False), d.log()
    assert d.count_log(STUCK_RE) == 0, d.log()
    assert took < 1.5, "shutdown took %.1f s\n%s" % (took, d.log())


def test_check_mode_frees_everything_and_exits_0(tmp_path):
    r = run_entropyd(["-n", "--source", "getrandom", "--source", "exec:sleep 100,prio=1",
                      "--listen", "tcp:127.0.0.1:0", "--listen", "unix:%s" % (tmp_path / "s"),
                      "--connect", "tcp:127.0.0.1:9"], timeout=30)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 0, "exit status %d\n%s" % (r.returncode, err)
    assert "configuration OK" in err, err


@pytest.mark.parametrize("args, says", [
    (["--source", "file:/dev/null,h=x"], "'h=x'"),
    (["--source", "file:/dev/null,zz=1"], "unknown option 'zz'"),
    (["--source", "file:/dev/null,zz"], "unknown option 'zz'"),
    (["--source", "file:/dev/null,baud=fast"], "'baud=fast'"),
    (["--source", "getrandom", "--source", "file:/dev/null,prio=-1"], "'prio=-1'"),
    (["--listen", "tcp:127.0.0.1:0,bogus=1"], "unknown option 'bogus'"),
    (["--listen", "tcp:127.0.0.1"], "expected tcp:HOST:PORT"),
])
def test_refused_argument_is_quoted_intact_and_exits_1(args, says):
    # The message quotes the option: it must not be read from freed memory (ASan aborts).
    r = run_entropyd(["-f"] + args, timeout=20)
    err = r.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert r.returncode == 1, "exit status %d, not 1\n%s" % (r.returncode, err)
    assert len(lines) == 1 and says in lines[0], err
