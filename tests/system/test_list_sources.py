"""`entropyd --list-sources`: what this machine offers, and why a source is unusable."""

import re

from entropyd_proc import run_entropyd


# Test hook (src_cpu.c): entropyd acts as if the CPU lacked the listed
# instructions.
HIDE_CPU_RNG = "ENTROPYD_TEST_HIDE_CPU_RNG"


def cpu_has_rdseed():
    with open("/proc/cpuinfo") as f:
        return any(line.startswith("flags") and " rdseed" in line for line in f)


def list_sources():
    """--list-sources output and its rows as {kind: (usable|unusable, rest of the line)}."""
    r = run_entropyd(["--list-sources"], timeout=30)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    rows = {m.group(2): (m.group(1), m.group(3)) for m in
            re.finditer(r"^  (usable|unusable)\s+(\S+)[ \t]*(.*)$", out, re.M)}
    return out, rows


def test_list_sources_reports_each_kind_and_why(monkeypatch):
    monkeypatch.delenv(HIDE_CPU_RNG, raising=False)
    out, rows = list_sources()
    for kind in ("file:/dev/hwrng", "rdseed", "darn", "getrandom", "qng"):
        assert kind in rows, "no line for %s in:\n%s" % (kind, out)
    assert rows["getrandom"][0] == "usable"
    # Without the hook the CPU decides; both outcomes are asserted, neither is skipped.
    if cpu_has_rdseed():
        assert rows["rdseed"][0] == "usable", out
    else:
        assert rows["rdseed"][0] == "unusable", out
        assert "no RDSEED instruction" in rows["rdseed"][1], out
    for kind, (state, why) in rows.items():
        if state == "unusable":
            assert why.strip(), "no reason given for %s:\n%s" % (kind, out)


def test_list_sources_reports_rdseed_unusable_with_the_reason_when_the_cpu_lacks_it(
        monkeypatch):
    monkeypatch.setenv(HIDE_CPU_RNG, "rdseed,darn")
    out, rows = list_sources()
    assert rows["rdseed"][0] == "unusable", out
    assert "no RDSEED instruction" in rows["rdseed"][1], out
    assert rows["darn"][0] == "unusable", out
    assert "no DARN instruction" in rows["darn"][1], out
    assert rows["getrandom"][0] == "usable", out


def test_unknown_source_kind_is_refused_naming_every_kind(monkeypatch):
    # The kinds come from the driver table, the list --list-sources walks too: every kind
    # it shows, and those that need an argument, are named.
    monkeypatch.delenv(HIDE_CPU_RNG, raising=False)
    _, rows = list_sources()
    r = run_entropyd(["--source", "nosuchkind", "--check"], timeout=10)
    err = r.stderr.decode()
    assert r.returncode != 0, err
    m = re.search(r"source nosuchkind: unknown kind 'nosuchkind' \(known: ([^)]*)\)", err)
    assert m, err
    known = m.group(1).split(", ")
    for kind in [k for k in rows if ":" not in k] + ["file", "exec", "egd"]:
        assert kind in known, "%s missing from: %s" % (kind, err)
    assert len(set(known)) == len(known), err
