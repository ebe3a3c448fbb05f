"""Source priority at start: a fallback does not feed while the preferred source is still
in its first start-up test (up to 10 s), so the first bytes clients get are the
preferred source's."""

import os
import threading
import time


def test_fallback_waits_for_the_preferred_sources_first_startup(entropyd, tmp_path):
    fifo = tmp_path / "trng.fifo"
    os.mkfifo(fifo)
    # Hold a writer open (as a TRNG's driver would) so that the reader never sees EOF.
    wfd = os.open(fifo, os.O_RDWR)
    try:
        d = entropyd(sources=["file:%s" % fifo, "getrandom"])
        d.wait_log(r"waiting up to 10 s for source file:", 5)
        data = os.urandom(1024 + 8 * 512)

        def feed():
            time.sleep(1.0)  # the preferred source is slow to start
            os.write(wfd, data)

        t = threading.Thread(target=feed)
        t.start()
        with d.connect() as c:
            got = c.block(1024, timeout=20)
        t.join()
        assert got == data[1024:2048], (
            "the first bytes served did not come from the preferred source's first windows "
            "after its start-up test (the fallback fed the pool first)")
        d.wait_log(r"serving from source file:", 5)
    finally:
        os.close(wfd)
