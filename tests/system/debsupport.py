"""The Debian package for the tests: $ENTROPYD_DEB if set (make check builds it first with
`make deb`), else `make deb` is run here."""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKE_DEB_TIMEOUT = 900


def version():
    m = re.search(r"^  version : '([^']+)'", (REPO / "meson.build").read_text(), re.M)
    assert m, "no version in meson.build"
    return m.group(1)


def deb_path():
    """The .deb to test: $ENTROPYD_DEB, or one built now with `make deb` (bounded)."""
    given = os.environ.get("ENTROPYD_DEB")
    if given and Path(given).is_file():
        return Path(given)
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        r = subprocess.run(["make", "-C", str(REPO), "deb"], capture_output=True, text=True,
                           timeout=MAKE_DEB_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("make deb did not finish within %d s" % MAKE_DEB_TIMEOUT, pytrace=False)
    deb = REPO / "build-deb" / ("entropyd_%s_%s.deb" % (version(), arch))
    if r.returncode != 0 or not deb.is_file():
        pytest.fail("make deb failed (status %d):\n%s\n%s" % (r.returncode, r.stdout[-3000:],
                                                              r.stderr[-3000:]), pytrace=False)
    return deb
