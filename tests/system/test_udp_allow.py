"""The UDP allow list with a prefix, on the real binary: peers inside allow=PREFIX are
answered, peers outside it are ignored. Every address in 127.0.0.0/8 is loopback on
Linux, so clients bind to chosen loopback addresses inside and outside the prefix."""

import re
import socket

import pytest

ALLOW = "127.0.0.0/24"


def udp_port(d, host="127.0.0.1"):
    rx = r"listening on udp:%s:(\d+)" % re.escape(host)
    return int(re.search(rx, d.wait_log(rx, 10)).group(1))


def udp_client(source, port, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def test_udp_allow_prefix_answers_peers_inside_and_ignores_peers_outside(entropyd):
    d = entropyd(listen=(), extra=["--listen", "udp:127.0.0.1:0,allow=%s" % ALLOW])
    port = udp_port(d)
    # Inside the /24, including its last address: a 64-byte blocking read is answered.
    for source in ("127.0.0.5", "127.0.0.255"):
        with udp_client(source, port) as s:
            s.send(b"\x02\x40")
            assert len(s.recv(65536)) == 64, "no full answer to %s" % source
    # Outside it (the next /24): the daemon receives the datagram, says it ignored it, and
    # nothing comes back.
    mark = d.mark()
    with udp_client("127.0.1.5", port, timeout=0.5) as s:
        s.send(b"\x02\x40")
        d.wait_log(r"datagram from 127\.0\.1\.5 ignored: not in allow=", 5, start=mark)
        with pytest.raises(socket.timeout):
            s.recv(65536)
    assert d.count_log(r"datagram from 127\.0\.0\.(5|255) ignored") == 0, d.log()
    # The refusal did not stop the endpoint: an allowed peer is still answered.
    with udp_client("127.0.0.5", port) as s:
        s.send(b"\x02\x10")
        assert len(s.recv(65536)) == 16
