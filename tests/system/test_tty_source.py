"""A TRNG on a tty (TrueRNG/OneRNG style) through `file:`: raw mode, line speed and init
commands written after every open. A pseudo-terminal stands in for the USB CDC-ACM device:
like a OneRNG it sends nothing until it has received its start command."""

import os
import select
import termios
import threading
import time


class FakeTrng:
    def __init__(self, start_cmd=b"cmdO\n"):
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        os.close(slave)
        # Until the slave is opened the master reads EIO and select() calls it readable; a
        # blocking read that starts just as entropyd opens the slave would wait for bytes
        # forever (a device that needs no start command then never sent a byte).
        os.set_blocking(self.master, False)
        self.start_cmd = start_cmd
        self.received = b""
        self.sent = bytearray()
        self.stop = False
        self.started = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            r, w, _ = select.select([self.master], [self.master] if self.started.is_set() else [],
                                    [], 0.05)
            if r:
                try:
                    self.received += os.read(self.master, 256)
                except OSError:
                    time.sleep(0.01)
                    continue
                if self.start_cmd in self.received:
                    self.started.set()
            if w:
                chunk = os.urandom(512)
                try:
                    n = os.write(self.master, chunk)
                except OSError:
                    continue
                self.sent += chunk[:n]
                time.sleep(0.001)

    def close(self):
        self.stop = True
        self.thread.join(5)
        os.close(self.master)


def test_tty_trng_gets_its_init_command_and_then_serves(entropyd):
    dev = FakeTrng()
    try:
        d = entropyd(sources=["file:%s,init=cmdO\\n,baud=115200" % dev.path])
        assert dev.started.wait(10), "the device never received its init command; got %r" % (
            dev.received,)
        with d.connect() as c:
            got = c.block(4096, timeout=20)
        # The device thread records a chunk just after writing it: stop it first, or the
        # last chunk served may not be in dev.sent yet.
        dev.stop = True
        dev.thread.join(5)
        assert bytes(got) in bytes(dev.sent), "served bytes are not the device's"
        # the line is raw: no byte was translated (CR/LF mapping would break the search above)
        attrs = termios.tcgetattr(dev.master)
        assert attrs is not None
    finally:
        dev.close()


def test_init_on_a_non_tty_is_refused_with_one_line(tmp_path):
    from entropyd_proc import run_entropyd
    f = tmp_path / "not-a-tty"
    f.write_bytes(os.urandom(4096))
    r = run_entropyd(["-f", "--source", "file:%s,init=cmdO\\n" % f,
                      "--listen", "tcp:127.0.0.1:0"])
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode != 0
    assert len(err) == 1 and "need a tty" in err[0], err
