"""Runs inside the systemd-nspawn container of test_systemd.py (Debian's python3): an EGD
peer that keeps drawing and prints its running totals every 0.2 s.

  systemd_peer.py tcp PORT   connect to 127.0.0.1:PORT, ask 64 bytes at a time; reconnect
                             when dropped. Prints `tcp BYTES CONNECTIONS`.
  systemd_peer.py udp PORT   one UDP socket for its whole life (as QEMU's udp chardev),
                             `02 40` to 127.0.0.1:PORT every 20 ms. Prints `udp REPLIES`.
"""

import socket
import sys
import time


def report(*fields):
    print(*fields, flush=True)


def tcp(port):
    total, conns, last = 0, 0, 0.0
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                conns += 1
                while True:
                    c.sendall(b"\x02\x40")
                    got = 0
                    while got < 64:
                        chunk = c.recv(64 - got)
                        if not chunk:
                            raise OSError("closed")
                        got += len(chunk)
                    total += got
                    if time.monotonic() - last > 0.2:
                        last = time.monotonic()
                        report("tcp", total, conns)
        except OSError:
            report("tcp", total, conns)
            time.sleep(0.1)


def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.02)
    replies, last = 0, 0.0
    while True:
        try:
            s.sendto(b"\x02\x40", ("127.0.0.1", port))
            if len(s.recv(65536)) == 64:
                replies += 1
        except OSError:  # a timeout, or ICMP port unreachable while nobody listens
            time.sleep(0.02)
        if time.monotonic() - last > 0.2:
            last = time.monotonic()
            report("udp", replies)


if __name__ == "__main__":
    (tcp if sys.argv[1] == "tcp" else udp)(int(sys.argv[2]))
