"""Processes that serve a guest's rng-egd chardev: entropyd itself and socat.

Each is started with subprocess, watched through its own stderr, and stopped
by its own PID (SIGTERM, then SIGKILL); nothing here kills by name. Every wait
is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]


class PeerError(Exception):
    """A peer process did not start, get ready or stop as expected."""


def entropyd_path() -> Path:
    """$ENTROPYD, or build/entropyd under the repository root."""
    env = os.environ.get("ENTROPYD")
    p = Path(env) if env else REPO_ROOT / "build" / "entropyd"
    return p if p.is_absolute() else (REPO_ROOT / p)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind port 0, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port() -> int:
    """A loopback UDP port that was free a moment ago (bind port 0, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_bound(port: int) -> bool:
    """True if some UDP socket is bound to port, any local address (/proc/net/udp)."""
    suffix = f":{port:04X}"
    try:
        with open("/proc/net/udp") as f:
            return any(line.split()[1].endswith(suffix) for line in f.readlines()[1:])
    except OSError:
        return False


def wait_udp_bound(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until some UDP socket is bound to port."""
    deadline = time.monotonic() + timeout
    while not udp_bound(port):
        if proc is not None and proc.poll() is not None:
            raise PeerError(f"process exited ({proc.returncode}) before binding udp {port}")
        if time.monotonic() > deadline:
            raise PeerError(f"nothing is bound to udp 127.0.0.1:{port} after {timeout}s")
        time.sleep(0.05)


def wait_path(path: str | os.PathLike, timeout: float,
              proc: subprocess.Popen | None = None) -> None:
    """Wait until path exists (a unix socket or pipe another process creates)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc is not None and proc.poll() is not None:
            raise PeerError(f"process exited ({proc.returncode}) before creating {path}")
        if time.monotonic() > deadline:
            raise PeerError(f"{path} does not exist after {timeout}s")
        time.sleep(0.05)


def tcp_listening(port: int) -> bool:
    """True if some TCP socket listens on port, any local address (/proc/net/tcp)."""
    suffix = f":{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[1].endswith(suffix) and cols[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def wait_listening(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not tcp_listening(port):
        if proc is not None and proc.poll() is not None:
            raise PeerError(f"process exited ({proc.returncode}) before listening on {port}")
        if time.monotonic() > deadline:
            raise PeerError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")
        time.sleep(0.05)


class Process:
    """A child whose stderr lines are collected in the background."""

    def __init__(self, argv: Sequence[str], name: str):
        self.argv = list(argv)
        self.name = name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as e:
            raise PeerError(f"cannot start {name}: {' '.join(self.argv)}: {e}") from e
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float, start: int = 0) -> re.Match:
        """Wait for a stderr line (index >= start) matching the regex."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise PeerError(f"{self.name} exited ({self.proc.returncode}) without "
                                    f"a line matching /{pattern}/\n{self.describe()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerError(f"{self.name}: no line matching /{pattern}/ within "
                                    f"{timeout}s\n{self.describe()}")
                self._cond.wait(min(left, 0.2))

    def count_lines(self, pattern: str) -> int:
        rx = re.compile(pattern)
        with self._cond:
            return sum(1 for line in self.lines if rx.search(line))

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM by PID, SIGKILL if still alive after timeout; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def describe(self) -> str:
        return (f"--- {self.name} (pid {self.proc.pid}, exit {self.proc.poll()}): "
                f"{' '.join(self.argv)}\n--- stderr:\n{self.stderr_text()[-6000:]}")


class Entropyd(Process):
    """build/entropyd -f with the given arguments; waits for its `ready` line."""

    def __init__(self, args: Sequence[str], binary: Path | None = None,
                 wait_ready: bool = True, ready_timeout: float = 30):
        binary = binary or entropyd_path()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise PeerError(f"entropyd binary not found or not executable: {binary} "
                            f"(build it, or set ENTROPYD)")
        args = list(args)
        self._ctl_dir = None
        if "--control" not in args:
            # Never the default /run/entropyd/control.sock: each daemon gets its own.
            self._ctl_dir = tempfile.mkdtemp(prefix="entropyd-ctl-")
            args += ["--control", os.path.join(self._ctl_dir, "control.sock")]
        super().__init__([str(binary), "-f", *args], "entropyd")
        if wait_ready:
            self.wait_ready(ready_timeout)

    def stop(self, timeout: float = 10) -> int | None:
        code = super().stop(timeout)
        if self._ctl_dir is not None and not self.running():
            shutil.rmtree(self._ctl_dir, ignore_errors=True)
        return code

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait for the line saying all endpoints are set up."""
        self.wait_line(r"\bready\b", timeout)

    def tcp_ports(self) -> list[int]:
        """Ports from `listening on tcp:127.0.0.1:PORT` lines."""
        return self.listen_ports("tcp")

    def listen_ports(self, kind: str = "tcp") -> list[int]:
        """Ports from `listening on KIND:127.0.0.1:PORT` lines (kind tcp or udp)."""
        rx = re.compile(rf"listening on {kind}:127\.0\.0\.1:(\d+)")
        with self._cond:
            return [int(m.group(1)) for line in self.lines if (m := rx.search(line))]

    def udp_port(self) -> int:
        ports = self.listen_ports("udp")
        if not ports:
            raise PeerError(f"entropyd logged no `listening on udp:` line\n{self.describe()}")
        return ports[0]

    def port(self) -> int:
        ports = self.tcp_ports()
        if not ports:
            raise PeerError(f"entropyd logged no `listening on tcp:` line\n{self.describe()}")
        return ports[0]


class Socat(Process):
    """socat TCP-LISTEN:port,reuseaddr,fork ADDRESS (e.g. OPEN:/dev/urandom).

    socat is bidirectional by default: what QEMU sends (its 02 LEN requests) is written into
    ADDRESS. one_way=True runs `socat -U`, which only reads ADDRESS (a source file must be:
    a full e2e run once found its file overwritten with requests from socat's offset on).
    Then nobody reads the requests, which is fine while they fit the socket's buffers."""

    def __init__(self, port: int, address: str, timeout: float = 10, one_way: bool = False):
        super().__init__(["socat"] + (["-U"] if one_way else [])
                         + [f"TCP-LISTEN:{port},reuseaddr,fork", address], "socat")
        self.port = port
        wait_listening(port, timeout, self.proc)
