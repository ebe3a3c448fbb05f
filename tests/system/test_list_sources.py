"""`entropyd --list-sources`: what this machine offers, and why a source is unusable."""

import re

from entropyd_proc import run_entropyd


def cpu_has_rdseed():
    with open("/proc/cpuinfo") as f:
        return any(line.startswith("flags") and " rdseed" in line for line in f)


def test_list_sources_reports_each_kind_and_why():
    r = run_entropyd(["--list-sources"], timeout=30)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    rows = {m.group(2): m.group(1) for m in
            re.finditer(r"^  (usable|unusable)\s+(\S+)", out, re.M)}
    for kind in ("file:/dev/hwrng", "rdseed", "getrandom", "qng"):
        assert kind in rows, "no line for %s in:\n%s" % (kind, out)
    assert rows["getrandom"] == "usable"
    assert rows["rdseed"] == ("usable" if cpu_has_rdseed() else "unusable"), out
    if rows["rdseed"] == "unusable":
        assert "no RDSEED instruction" in out
    if rows["qng"] == "unusable":
        assert re.search(r"unusable\s+qng\s+\S.*", out), "no reason given for qng:\n" + out
