"""Helpers for the control socket, entropyctl and the http endpoint: run entropyctl, keep a
client drawing bytes in the background, find the http endpoint's port."""

import os
import re
import socket
import subprocess
import threading

import pytest

from entropyd_proc import ENTROPYD

ENTROPYCTL = os.environ.get("ENTROPYCTL",
                            os.path.join(os.path.dirname(ENTROPYD), "entropyctl"))


def entropyctl(*args, socket_path=None, timeout=20, check=True, binary=False):
    """Run entropyctl [--socket PATH] ARGS; returns CompletedProcess (stdout as text unless
    binary). Fails the test on a non-zero exit if check."""
    if not os.access(ENTROPYCTL, os.X_OK):
        pytest.fail("entropyctl not found at %s (build it, or set ENTROPYCTL)" % ENTROPYCTL,
                    pytrace=False)
    cmd = [ENTROPYCTL] + (["--socket", socket_path] if socket_path else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=timeout, text=not binary)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (" ".join(cmd), p.returncode, p.stderr))
    return p


class Drawer:
    """A TCP EGD client drawing bytes with blocking requests until stopped."""

    def __init__(self, address, family=socket.AF_INET, pause=0.02):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(address)
        self.local = "tcp:%s:%d" % self.sock.getsockname()[:2]
        self.bytes = 0
        self.pause = pause
        self.stop_ev = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while not self.stop_ev.is_set():
                self.sock.sendall(bytes([2, 255]) * 16)
                want = 255 * 16
                while want > 0:
                    got = self.sock.recv(want)
                    if not got:
                        raise EOFError("entropyd closed the drawing client")
                    want -= len(got)
                    self.bytes += len(got)
                self.stop_ev.wait(self.pause)
        except Exception as e:  # reported by stop()
            self.error = e

    def stop(self, close=True):
        """Stop drawing (the connection stays open unless close); returns bytes drawn."""
        self.stop_ev.set()
        self.thread.join(10)
        if close:
            self.sock.close()
        assert self.error is None, "drawing client failed: %r" % self.error
        return self.bytes


def http_port(d, timeout=10):
    """The port of the daemon's http endpoint, from its listening line."""
    d.wait_log(r"listening on http:", timeout)
    m = re.search(r"listening on http:127\.0\.0\.1:(\d+)", d.log())
    assert m, "no http listening line in:\n" + d.log()
    return int(m.group(1))
