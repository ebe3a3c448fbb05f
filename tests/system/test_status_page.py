"""The status page in a real headless Chromium (Debian's chromium and chromium-driver, driven
by python3-selenium): loaded while a client draws, its Chart.js graphs show non-zero
bytes/s and a growing delivered counter. A screenshot goes to the test's tmp folder."""

import pytest

from ctlsupport import Drawer, http_port
from pagesupport import watch_page


@pytest.mark.time_limit(120)
def test_status_page_graphs_show_live_nonzero_rates_and_a_growing_counter(entropyd, tmp_path):
    d = entropyd(extra=["--listen", "http:127.0.0.1:0"])
    port = http_port(d)
    drawer = Drawer(d.ep(0).address)
    try:
        series, errors = watch_page(port, tmp_path / "status-page.png")
    finally:
        drawer.stop()
    assert series is not None, "no Chart objects on the page (Chart.js not served?)"
    assert errors == ""
    src = [s for s in series["sources"] if s["label"] == "getrandom"][0]["data"]
    assert max(src) > 0, "source bytes/s all zero: %r" % src
    cli = [s for s in series["clients"] if s["label"] == drawer.local]
    assert cli and max(cli[0]["data"]) > 0, "client bytes/s: %r" % series["clients"]
    served = series["served"][0]["data"]
    assert len(served) >= 4 and served[-1] > served[0] > 0, served
    assert all(b >= a for a, b in zip(served, served[1:])), served
    assert any(s["label"] == "level" for s in series["pool"])
    assert series["waiting"][0]["label"] == "clients waiting"
    assert [s["label"] for s in series["failures"]] == ["getrandom"]
