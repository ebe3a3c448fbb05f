"""The Debian package: built with `make deb` (dpkg-buildpackage, lintian without error),
unpacked into a scratch root with `dpkg --root` (nothing is installed on this machine), and
its files checked: binaries, man pages, units, udev rule, default config as a conffile,
sysusers.d and tmpfiles.d files, and the maintainer scripts that create the user and enable
the socket."""

import subprocess

import pytest

from debsupport import deb_path

EXPECTED = [
    "usr/sbin/entropyd",
    "usr/share/man/man8/entropyd.8.gz",
    "usr/share/man/man5/entropyd.conf.5.gz",
    "lib/systemd/system/entropyd.service",
    "lib/systemd/system/entropyd.socket",
    "usr/lib/udev/rules.d/60-entropyd-qng.rules",
    "etc/entropyd/entropyd.conf",
    "usr/lib/sysusers.d/entropyd.conf",
    "usr/lib/tmpfiles.d/entropyd.conf",
    "usr/share/doc/entropyd/copyright",
]
CTL = ["usr/bin/entropyctl", "usr/share/man/man1/entropyctl.1.gz"]


def host_has_entropyd_package():
    return subprocess.run(["dpkg-query", "-W", "entropyd"], capture_output=True).returncode == 0


def scratch_root(root):
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"):
        (root / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("")
    (root / "var/lib/dpkg/available").write_text("")


@pytest.mark.time_limit(1000)
def test_package_unpacks_into_a_scratch_root_with_every_file(tmp_path):
    deb = deb_path()
    assert deb.name.startswith("entropyd_") and deb.name.endswith(".deb")
    was_installed = host_has_entropyd_package()
    root = tmp_path / "root"
    scratch_root(root)
    # --unpack: the files and the package database, no maintainer script run in the
    # scratch root (it has no shell); the dependencies are not in it either.
    r = subprocess.run(["dpkg", "--root=%s" % root, "--force-depends", "--force-script-chrootless",
                        "--no-triggers", "--unpack", str(deb)], capture_output=True, text=True,
                       timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                        "DPKG_ROOT": str(root)})
    assert r.returncode == 0, r.stdout + r.stderr
    expected = EXPECTED + CTL
    # An unpacked conffile waits as FILE.dpkg-new until the package is configured.
    missing = [f for f in expected if not (root / f).is_file()
               and not (f.startswith("etc/") and (root / (f + ".dpkg-new")).is_file())]
    assert not missing, "not in the package: %s" % missing
    listed = subprocess.run(["dpkg", "--root=%s" % root, "-L", "entropyd"], capture_output=True,
                            text=True, timeout=30).stdout.split()
    for f in expected:
        assert "/" + f in listed, "/%s not in dpkg -L" % f
    info = root / "var/lib/dpkg/info"
    assert "/etc/entropyd/entropyd.conf" in (info / "entropyd.conffiles").read_text().split()
    postinst = (info / "entropyd.postinst").read_text()
    assert "systemd-sysusers" in postinst and "entropyd.conf" in postinst
    assert postinst.index("systemd-sysusers") < postinst.index("systemd-tmpfiles"), \
        "the user must exist before /run/entropyd is made for it"
    assert "deb-systemd-helper enable 'entropyd.socket'" in postinst
    # The packaged daemon runs.
    out = subprocess.run([str(root / "usr/sbin/entropyd"), "--version"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith("entropyd "), out.stderr
    unit = (root / "lib/systemd/system/entropyd.service").read_text()
    assert "ExecStart=/usr/sbin/entropyd --foreground" in unit
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert host_has_entropyd_package() == was_installed, "the host's dpkg database changed"
