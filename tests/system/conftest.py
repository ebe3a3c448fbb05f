"""System tests: the real entropyd binary on loopback.

The `entropyd` fixture starts the daemon in the foreground with the given sources and
endpoints, waits (bounded) for its `ready` line, learns the real addresses from its
`listening on ...` lines, and at the end stops it by PID (SIGTERM, then SIGKILL after a
timeout) and requires exit status 0. Its stderr is dumped when a test fails.

The binary is $ENTROPYD, by default build/entropyd under the repository root. Run with
Debian's Python: /usr/bin/python3 -m pytest tests/system
"""

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from egdsupport import random_file_bytes  # noqa: E402
from entropyd_proc import (READY_TIMEOUT, STOP_TIMEOUT, Daemon, build_args,  # noqa: E402
                           require_binary)

DEFAULT_TEST_TIME_LIMIT = 120


# ---------------------------------------------------------------------------------------
# Fixtures


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): hard limit for one test "
                            "(default %d s)" % DEFAULT_TEST_TIME_LIMIT)


class TimeLimitExceeded(BaseException):
    pass


@pytest.fixture(autouse=True)
def _time_limit(request):
    """Every test is bounded in time even if a helper forgot a timeout."""
    marker = request.node.get_closest_marker("time_limit")
    limit = int(marker.args[0]) if marker else DEFAULT_TEST_TIME_LIMIT

    def expired(signum, frame):
        raise TimeLimitExceeded("test exceeded its time limit of %d s" % limit)

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def entropyd(request):
    """Factory: entropyd(sources=[...], listen=[...], extra=[...]) -> a ready Daemon.

    Every daemon started is stopped at the end with SIGTERM (SIGKILL after 10 s) and must
    exit with status 0, unless the test set daemon.expect_exit (after stopping it
    itself)."""
    require_binary()
    started = []

    def start(sources=("getrandom",), listen=("tcp:127.0.0.1:0",), connect=(), extra=(),
              verbose=True, ready_timeout=READY_TIMEOUT):
        d = Daemon(build_args(sources, listen, connect, extra, verbose))
        started.append(d)
        try:
            d.wait_ready(listen, ready_timeout)
        except AssertionError as e:
            rc, killed = d.stop()
            raise AssertionError("entropyd did not become ready: %s\n(args: %s; stopped: "
                                 "status %s%s)" % (e, " ".join(d.args[1:]), rc,
                                                   ", killed" if killed else "")) from None
        return d

    yield start

    problems = []
    for d in started:
        rc, killed = d.stop()
        if d.expect_exit is not None:
            continue
        if killed:
            problems.append("entropyd (pid %d) ignored SIGTERM for %.0f s and was killed"
                            % (d.pid, STOP_TIMEOUT))
        elif rc != 0:
            problems.append("entropyd (pid %d) exited with status %d after SIGTERM, not 0"
                            % (d.pid, rc))
    failed = any(getattr(request.node, "rep_" + w, None) is not None
                 and getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    if failed or problems:
        for d in started:
            sys.stderr.write("--- entropyd log (pid %d; %s) ---\n%s\n"
                             % (d.pid, " ".join(d.args[1:]), d.log()))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def random_file(tmp_path):
    """Factory: random_file(n, name) -> (path, bytes): n random bytes in a file."""
    def make(n, name="source.bin", data=None):
        if data is None:
            data = random_file_bytes(n)
        p = tmp_path / name
        p.write_bytes(data)
        return p, data
    return make
