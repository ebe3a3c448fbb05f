"""The http endpoint's /metrics: valid Prometheus text (checked by Debian's promtool on the
live output), and values that match what a client drew; /api/status is the document
`entropyctl status --json` prints."""

import json
import re
import subprocess
import time
import urllib.request

import pytest

from ctlsupport import Drawer, entropyctl, http_port


def fetch(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.headers.get("Content-Type"), r.read()


def value(text, name, **labels):
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    rx = re.compile(r"^%s\{([^}]*)\} (\S+)$" % re.escape(name) if labels
                    else r"^%s() (\S+)$" % re.escape(name), re.M)
    for m in rx.finditer(text):
        if all('%s="%s"' % kv in m.group(1) for kv in labels.items()):
            return float(m.group(2))
    raise AssertionError("no %s{%s} in:\n%s" % (name, want, text))


@pytest.mark.time_limit(60)
def test_metrics_pass_promtool_and_match_what_the_client_drew(entropyd, tmp_path):
    d = entropyd(extra=["--listen", "http:127.0.0.1:0"])
    port = http_port(d)
    drawer = Drawer(d.ep(0).address)
    time.sleep(2)
    drawn = drawer.stop(close=False)
    time.sleep(0.3)
    ctype, body = fetch(port, "/metrics")
    drawer.sock.close()
    text = body.decode()
    assert ctype.startswith("text/plain; version=0.0.4")
    (tmp_path / "metrics.txt").write_text(text)
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                           timeout=30)
    assert check.returncode == 0, "promtool: %s%s" % (check.stdout.decode(),
                                                     check.stderr.decode())
    assert value(text, "entropyd_client_bytes_served_total", peer=drawer.local) == drawn
    assert value(text, "entropyd_delivered_bytes_total") == drawn
    passed = value(text, "entropyd_source_bytes_passed_total", source="getrandom")
    read = value(text, "entropyd_source_bytes_read_total", source="getrandom")
    assert read >= passed >= drawn
    assert value(text, "entropyd_pool_capacity_bytes") == 1048576
    assert value(text, "entropyd_endpoint_clients", kind="tcp") == 1
    assert value(text, "entropyd_clients_waiting") == 0
    for ln in text.splitlines():
        if ln.startswith("# TYPE") and ln.endswith(" counter"):
            assert ln.split()[2].endswith("_total"), ln


@pytest.mark.time_limit(30)
def test_metrics_labels_are_escaped(entropyd, tmp_path):
    # A source spec with a backslash and a double quote in its path.
    odd = tmp_path / 'we"ird\\name.bin'
    odd.write_bytes(bytes(range(256)) * 64)
    d = entropyd(sources=["file:%s" % odd, "getrandom"],
                 extra=["--listen", "http:127.0.0.1:0"])
    _, body = fetch(http_port(d), "/metrics")
    assert b'source="file:%s"' % str(odd).replace("\\", "\\\\").replace('"', '\\"').encode() \
        in body
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.time_limit(30)
def test_api_status_is_the_document_entropyctl_prints(entropyd):
    d = entropyd(extra=["--listen", "http:127.0.0.1:0"])
    ctype, body = fetch(http_port(d), "/api/status")
    assert ctype == "application/json"
    api = json.loads(body)
    ctl = json.loads(entropyctl("status", "--json", socket_path=d.control).stdout)
    assert set(api) == set(ctl)
    assert [e["spec"] for e in api["endpoints"]] == [e["spec"] for e in ctl["endpoints"]]
    assert api["sources"][0]["spec"] == ctl["sources"][0]["spec"] == "getrandom"
