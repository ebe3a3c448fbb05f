"""--threads N: N event-loop threads serve the clients of tcp and unix listeners, each client
owned by one thread for its life. Each thread serves from a cache that the main thread fills
from the shared pool only as that thread's waiting clients need bytes, so: no byte reaches
two clients across threads (alignment checker), scarce bytes are shared equally by clients
of different threads (Jain's index), and bytes never sit in the cache of a thread whose
client left while a client of another thread waits for them. Status names each client's
thread; max-per-peer= is counted on the main thread; a reload hands the threads' clients
over; mode=drbg runs a DRBG per thread; bad values are refused in one line."""

import json
import os
import re
import signal
import socket
import time

import pytest

from alignment import align_streams, coverage_summary
from ctlsupport import entropyctl
from egdsupport import (STARTUP_BYTES, EgdClient, block_requests, fifo_source,
                        hungry_draw_from_slow_fifo, jain, read_many)
from entropyd_proc import run_entropyd

TAKES = re.compile(r"thread (\d+) takes a client")
READY = r"\bready: \d+ source"


def takes_per_thread(d, start=0):
    """{thread: clients it took} from the daemon's debug lines."""
    took = {}
    for ln in d.log_lines(start):
        m = TAKES.search(ln)
        if m:
            took[int(m.group(1))] = took.get(int(m.group(1)), 0) + 1
    return took


def serving_threads(pid):
    """Names of the daemon's event-loop threads (/proc/PID/task/*/comm)."""
    names = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
        except FileNotFoundError:
            continue
        if name.startswith("entropyd-w"):
            names.append(name)
    return sorted(names)


def status(d):
    return json.loads(entropyctl("status", "--json", socket_path=d.control).stdout)


def wait_status(d, pred, what, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        st = status(d)
        if pred(st):
            return st
        assert time.monotonic() < deadline, "%s: status %s\n%s" % (what, st, d.log())
        time.sleep(0.05)


@pytest.mark.time_limit(60)
def test_two_threads_both_serve_clients_and_status_names_each_clients_thread(entropyd):
    d = entropyd(extra=["--threads", "2"])
    d.wait_log(r"2 event-loop threads serve", 5)
    deadline = time.monotonic() + 5  # each thread names itself once it runs
    while serving_threads(d.pid) != ["entropyd-w1", "entropyd-w2"]:
        assert time.monotonic() < deadline, serving_threads(d.pid)
        time.sleep(0.05)
    clients = [d.connect(label="client %d" % i) for i in range(4)]
    try:
        for c in clients:
            assert len(c.block(4096, timeout=10)) == 4096
        st = status(d)
    finally:
        for c in clients:
            c.close()
    egd = [c for c in st["clients"] if c["kind"] == "egd"]
    assert sorted(c["thread"] for c in egd) == [1, 1, 2, 2], egd
    assert all(c["bytes_served"] == 4096 for c in egd), egd
    tcp = [e for e in st["endpoints"] if e["kind"] == "tcp"]
    assert tcp[0]["clients"] == 4, tcp
    assert takes_per_thread(d) == {1: 2, 2: 2}, d.log()


@pytest.mark.time_limit(60)
def test_threads_1_serves_every_client_on_the_main_loop(entropyd):
    d = entropyd(extra=["--threads", "1"])
    with d.connect(label="client") as c:
        assert len(c.block(4096, timeout=10)) == 4096
        st = status(d)
    assert serving_threads(d.pid) == [], "--threads 1 started serving threads"
    assert [c["thread"] for c in st["clients"] if c["kind"] == "egd"] == [0], st["clients"]


@pytest.mark.time_limit(240)
def test_no_byte_reaches_two_clients_of_different_threads(entropyd, tmp_path):
    # A FIFO filled once all sixteen clients wait: they draw at the same time, on 2 threads.
    source, data, wfd, feeder = fifo_source(tmp_path, 8 << 20, start=False)
    want = 400_000  # 16 x 400 kB of the 8 MiB
    clients = []
    try:
        d = entropyd(sources=[source], extra=["--threads", "2"])
        for i in range(16):
            c = d.connect(label="client %d" % i)
            clients.append(c)
            c.send(block_requests(want))
        feeder.start()
        got = read_many({c.sock: want for c in clients}, timeout=180)
        streams = {c.label: got[c.sock] for c in clients}
    finally:
        for c in clients:
            c.close()
        os.close(wfd)
    placed = align_streams(data, streams, min_offset=STARTUP_BYTES)
    _lo, _hi, total = coverage_summary(placed)
    assert total == 16 * want
    assert takes_per_thread(d) == {1: 8, 2: 8}, d.log()


@pytest.mark.time_limit(60)
def test_64_hungry_clients_on_two_threads_get_equal_shares_of_a_slow_source(entropyd,
                                                                            tmp_path):
    d, got = hungry_draw_from_slow_fifo(entropyd, tmp_path, 64, 4, 1.5, 5.0,
                                        extra=["--threads", "2"])
    index = jain(got)
    print("64 clients on 2 threads, %d bytes: min %d max %d, Jain %.4f"
          % (sum(got), min(got), max(got), index))
    assert takes_per_thread(d) == {1: 32, 2: 32}, d.log()
    assert sum(got) > 100_000, "the slow source delivered only %d bytes" % sum(got)
    assert index >= 0.99, "unequal shares: Jain's index %.4f (min %d, max %d bytes)" % (
        index, min(got), max(got))
    # The two threads' clients, apart (clients alternate between the threads).
    print("thread shares: %d, %d" % (sum(got[0::2]), sum(got[1::2])))
    assert 0.97 < sum(got[0::2]) / sum(got[1::2]) < 1.03


@pytest.mark.time_limit(60)
def test_bytes_left_by_a_client_of_one_thread_reach_a_client_of_the_other(entropyd, tmp_path):
    # A finite source: 200 kB after the start-up test (the pool gets its whole windows). A
    # (thread 1) takes 50 kB and leaves; B (thread 2) then asks for every byte the pool got
    # and must get them all: none may sit in thread 1's cache.
    source, data, wfd, _ = fifo_source(tmp_path, STARTUP_BYTES + 200_000)
    try:
        d = entropyd(sources=[source], listen=["tcp:127.0.0.1:0,primer=0"],
                     extra=["--threads", "2"])
        a = d.connect(label="A")
        b = d.connect(label="B")
        wait_status(d, lambda st: sorted(c["thread"] for c in st["clients"]) == [1, 2],
                    "A and B on two threads")
        st = wait_status(d, lambda st: st["sources"][0]["bytes_read"] == len(data)
                         and st["pool"]["level"] == st["sources"][0]["bytes_passed"],
                         "the source read to its end")
        total = st["pool"]["level"]
        got_a = a.block(50_000, timeout=10)
        a.close()
        b.send(block_requests(total - 50_000))
        got_b = read_many({b.sock: total - 50_000}, timeout=20)[b.sock]
        st = wait_status(d, lambda st: st["pool"]["delivered"] == total, "all delivered")
        b.close()
    finally:
        os.close(wfd)
    assert total > 190_000 and st["pool"]["level"] == 0, st["pool"]
    placed = align_streams(data, {"A": got_a, "B": got_b}, min_offset=STARTUP_BYTES)
    assert coverage_summary(placed)[2] == total


@pytest.mark.time_limit(90)
def test_a_reload_keeps_the_clients_of_the_threads(entropyd, tmp_path):
    source, data, wfd, _ = fifo_source(tmp_path, 4 << 20)
    clients, bufs = [], {}
    try:
        d = entropyd(sources=[source], extra=["--threads", "2"])
        for i in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(10)
            s.connect(d.ep().address)
            clients.append(EgdClient(s, "client %d" % i))
        wait_status(d, lambda st: sorted(c["thread"] for c in st["clients"]) == [1, 1, 2, 2],
                    "four clients on two threads")
        for c in clients:
            c.send(block_requests(200_000))  # blocked on a small window at the reload
        time.sleep(0.3)
        mark = d.mark()
        os.kill(d.pid, signal.SIGHUP)
        d.wait_log(READY, 15, start=mark)
        d.wait_log(r"reload: handing 4 connected client\(s\)", 5)
        # The new image spreads them over its threads again, not all on its main thread.
        wait_status(d, lambda st: sorted(c["thread"] for c in st["clients"]) == [1, 1, 2, 2],
                    "the four clients handed over, on the two threads")
        got = read_many({c.sock: 200_000 for c in clients}, timeout=40)
        for c in clients:
            bufs[c.label] = got[c.sock]
            assert c.pid(10) == d.pid  # the EGD framing stayed in step
    finally:
        for c in clients:
            c.close()
        os.close(wfd)
    placed = align_streams(data, bufs, min_offset=STARTUP_BYTES)
    assert coverage_summary(placed)[2] == 4 * 200_000


@pytest.mark.time_limit(90)
def test_a_thread_that_asks_again_for_as_much_as_it_just_got_is_not_forgotten(entropyd):
    # A small pool: each 64 KiB draw is many moves of at most 4 KiB into the thread's cache,
    # and the thread asks again as soon as its client took them, often for as much as it
    # just got. When the main thread lowered the thread's ask by what it had given, an ask
    # made after the thread had served those bytes was lowered too: the demand was lost and
    # the client waited forever for its last bytes (a few rounds in a few hundred here).
    d = entropyd(listen=("tcp:127.0.0.1:0,max-per-peer=0",),
                 extra=["--pool-size", "4096", "--threads", "2"])
    rounds, deadline = 0, time.monotonic() + 20
    while rounds < 1500 and time.monotonic() < deadline:
        with d.connect(label="round %d" % rounds) as c:
            assert len(c.block(64 << 10, timeout=5)) == 64 << 10
        rounds += 1
    assert rounds >= 300, "only %d rounds of 64 KiB in 20 s" % rounds


@pytest.mark.time_limit(60)
def test_max_per_peer_counts_clients_of_both_threads_and_frees_their_slots(entropyd):
    d = entropyd(listen=("tcp:127.0.0.1:0,max-per-peer=2",), extra=["--threads", "2"])
    held = [d.connect(label="allowed %d" % i) for i in range(2)]
    try:
        for c in held:
            assert len(c.block(64, timeout=10)) == 64
        assert sorted(c["thread"] for c in status(d)["clients"]) == [1, 2]
        mark = d.mark()
        with d.connect(label="over the cap") as c:
            assert c.expect_closed(5) == b""
        d.wait_log(r"refused: 127\.0\.0\.1 already holds 2 \(max-per-peer=2\)", 5, start=mark)
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the end reaches the main thread's count shortly after
            c = d.connect(label="after one closed")
            try:
                if len(c.block(64, timeout=2)) == 64:
                    held.append(c)
                    break
            except Exception:
                pass
            c.close()
            assert time.monotonic() < deadline, "a freed slot was not given back:\n" + d.log()
            time.sleep(0.1)
    finally:
        for c in held:
            c.close()


@pytest.mark.time_limit(60)
def test_mode_drbg_runs_one_drbg_per_thread(entropyd):
    d = entropyd(listen=("tcp:127.0.0.1:0,mode=drbg,reseed-ms=60000",),
                 extra=["--threads", "2"])
    clients = [d.connect(label="drbg %d" % i) for i in range(4)]
    try:
        outs = [c.block(100_000, timeout=10) for c in clients]
        st = status(d)
    finally:
        for c in clients:
            c.close()
    assert sorted(c["thread"] for c in st["clients"]) == [1, 1, 2, 2], st["clients"]
    # One seed per thread that served: 2 x 48 bytes of the pool, not 4 x 100 kB.
    assert st["pool"]["delivered"] < 1000, st["pool"]
    assert len({o[:32] for o in outs}) == 4
    assert d.count_log(r"drbg: AES-256 CTR-DRBG, seeded from the pool only") == 1, d.log()


@pytest.mark.parametrize("value", ["-1", "65", "two", ""])
def test_a_bad_thread_count_is_refused_in_one_line(value):
    p = run_entropyd(["--threads", value, "--listen", "tcp:127.0.0.1:0"])
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert err.count("\n") == 1 and "--threads" in err and "0..64" in err, err
