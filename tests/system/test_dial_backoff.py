"""A --connect endpoint whose peer drops every connection at once (a refused TLS handshake,
a server that closes on accept) is redialed with a growing delay, not ten times a second;
a connection that lasted starts the backoff afresh."""

import re
import socket
import threading
import time

import pytest


def dropping_server():
    """A loopback server that accepts and closes at once; returns (socket, counter, stop),
    where stop() ends its thread and then closes the socket (closing it under a blocked
    accept() would raise in the thread)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    count = [0]
    done = threading.Event()

    def run():
        while not done.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            count[0] += 1
            c.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def stop():
        done.set()
        t.join(5)
        srv.close()

    return srv, count, stop


@pytest.mark.time_limit(60)
def test_peer_that_drops_every_connection_is_redialed_with_growing_delay(entropyd):
    srv, count, stop = dropping_server()
    try:
        port = srv.getsockname()[1]
        d = entropyd(listen=(), extra=["--connect", "tcp:127.0.0.1:%d" % port])
        time.sleep(8)
        n = count[0]
        # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s: about 7 dials in 8 s; resetting the delay to
        # 100 ms after every connect would give about 50 or more.
        assert 3 <= n <= 12, "entropyd dialed %d times in 8 s" % n
        delays = [int(m) for m in re.findall(r"connection lost; redialing in (\d+) ms", d.log())]
        assert delays[:4] == sorted(delays[:4]) and delays[-1] >= 1600, d.log()
        assert d.count_log(r"connected to tcp:127\.0\.0\.1") <= 11, d.log()
    finally:
        stop()
