"""Rate limits: endpoint-rate=BYTES/MS caps an endpoint's clients together, rate=BYTES/MS
still holds per client under it, and the bytes a bucket held back are logged as throttled
in each client's close line."""

import json
import re
import socket

import pytest

from ctlsupport import entropyctl
from egdsupport import hungry_draw

WARMUP_S = 0.6  # the buckets start full: their first burst is not counted
WINDOW_S = 3.0


def hungry_rates(d, n):
    """n clients, each keeping 256 requests of 255 bytes queued; bytes/s each received
    over the window."""
    return [g / WINDOW_S for g in hungry_draw(d.ep().address, n, 256, WARMUP_S, WINDOW_S)]


@pytest.mark.time_limit(60)
def test_endpoint_rate_caps_the_sum_of_four_clients(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0,primer=0,endpoint-rate=50000/100"])
    rates = hungry_rates(d, 4)
    total = sum(rates)
    print("endpoint-rate=500000 B/s, 4 clients: %.0f B/s in all (%s)"
          % (total, ", ".join("%.0f" % r for r in rates)))
    assert 425_000 <= total <= 575_000, "4 clients got %.0f B/s under a 500000 B/s cap" % total


def jain(xs):
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs)) if any(xs) else 0.0


@pytest.mark.time_limit(60)
def test_four_clients_share_an_endpoint_rate_equally(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0,primer=0,endpoint-rate=50000/100"])
    rates = hungry_rates(d, 4)
    share = [r / sum(rates) for r in rates] if sum(rates) else [0.0] * 4
    print("endpoint-rate=500000 B/s, 4 clients: shares %s, Jain %.4f"
          % (", ".join("%.3f" % s for s in share), jain(rates)))
    for i, s in enumerate(share):
        assert 0.20 <= s <= 0.30, "client %d got %.1f%% of the endpoint's bytes" % (i, 100 * s)
    assert jain(rates) >= 0.99, "Jain's index %.4f over 4 clients" % jain(rates)


@pytest.mark.time_limit(60)
def test_per_client_rate_holds_under_an_endpoint_rate(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0,primer=0,rate=10000/100,endpoint-rate=1000000/100"])
    rates = hungry_rates(d, 4)
    print("rate=100000 B/s under endpoint-rate=10 MB/s: %s"
          % ", ".join("%.0f" % r for r in rates))
    for i, r in enumerate(rates):
        assert 85_000 <= r <= 115_000, "client %d got %.0f B/s at rate=100000 B/s" % (i, r)


@pytest.mark.time_limit(60)
def test_throttled_bytes_are_logged_when_a_client_closes(entropyd):
    d = entropyd(listen=["tcp:127.0.0.1:0,primer=0,endpoint-rate=20000/100"])
    mark = d.mark()
    hungry_rates(d, 2)
    for _ in range(2):
        ln = d.wait_log(r"client .*\(served \d+ bytes, throttled \d+\)", start=mark)
        mark = d.log_lines().index(ln) + 1
        served, throttled = map(int, re.search(r"served (\d+) bytes, throttled (\d+)",
                                               ln).groups())
        assert 0 < throttled <= served, ln


@pytest.mark.time_limit(60)
def test_status_shows_each_clients_throttled_bytes(entropyd):
    # A client held back by rate= shows the bytes held back in entropyctl status --json
    # (and so in /api/status and /metrics), while it is still connected.
    d = entropyd(listen=["tcp:127.0.0.1:0,primer=0,rate=2000/100"])
    with socket.create_connection(d.ep().address, timeout=10) as s:
        s.send(b"\x02\xff" * 64)  # 16,320 bytes asked at 20,000 B/s: paced
        got = 0
        while got < 4000:
            data = s.recv(65536)
            assert data, "closed by entropyd"
            got += len(data)
        doc = json.loads(entropyctl("status", "--json", socket_path=d.control).stdout)
        rows = [c for c in doc["clients"] if c["peer"] == "tcp:%s:%d" % s.getsockname()[:2]]
        assert len(rows) == 1, doc["clients"]
        assert 0 < rows[0]["throttled_bytes"] <= rows[0]["bytes_served"], rows[0]
