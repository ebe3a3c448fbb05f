"""entropyd under a real systemd: a Debian 12 root made here with mmdebstrap (from the apt
sources this machine uses; the tarball is cached under build/e2e-systemd/), the .deb of
`make deb` installed into it with dpkg, booted with `systemd-nspawn -b` (private network:
its own loopback), and driven with nsenter from here:

- entropyd.socket is enabled by the package; a client's connection starts entropyd.service,
  which reaches `active` only once entropyd sent READY=1 (Type=notify);
- `systemctl reload` (SIGHUP, a re-exec) under a drawing TCP client and a UDP peer: same
  MainPID, both keep getting bytes (the TCP client reconnects: a re-exec drops connections);
- `systemctl restart` while the UDP peer keeps its one socket: answered again afterwards;
- the service runs as the package's user, with no capability, no new privileges and the
  system-call filter; and again so as a DynamicUser= (a drop-in), as the unit's comment says;
- `systemctl stop`: entropyd exits with status 0.

The container is stopped by the PID of systemd-nspawn (SIGTERM, then SIGKILL), bounded.
Needs root, systemd-container and mmdebstrap. If a systemd cannot be booted, the test fails
and says what was tried."""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))
from debsupport import deb_path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "e2e-systemd"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3-minimal"]
TEST_LIMIT = 1500
MMDEBSTRAP_TIMEOUT = 1200
BOOT_TIMEOUT = 90


class Failed(AssertionError):
    pass


def run(cmd, timeout, **kw):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        raise Failed("%s did not finish within %d s; output so far:\n%s\n%s"
                     % (" ".join(cmd), timeout, e.stdout, e.stderr)) from None


def package_names(depends):
    """The first alternative of each entry of a Depends field, without versions."""
    return [re.split(r"[\s(:]", alt.split("|")[0].strip())[0] for alt in depends.split(",")]


def rootfs_tarball(deb):
    """A bookworm root with systemd and the package's dependencies, cached by its list."""
    depends = run(["dpkg-deb", "-f", str(deb), "Depends"], 30).stdout.strip()
    include = sorted(set(BASE_PACKAGES + package_names(depends)))
    key = hashlib.sha256(",".join(include).encode()).hexdigest()[:12]
    tar = CACHE / ("bookworm-%s.tar" % key)
    if tar.is_file():
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = tar.with_suffix(".tmp")
    cmd = ["mmdebstrap", "--variant=apt", "--mode=root", "--format=tar",
           "--include=" + ",".join(include), "bookworm", str(tmp)]
    if SOURCES.is_file():
        cmd.append(str(SOURCES))
    r = run(cmd, MMDEBSTRAP_TIMEOUT)
    if r.returncode != 0:
        raise Failed("cannot make the Debian 12 root: `%s` exited with %d:\n%s"
                     % (" ".join(cmd), r.returncode, r.stderr[-4000:]))
    tmp.rename(tar)
    return tar


class Container:
    """A systemd-nspawn -b container of root; commands run in it through nsenter."""

    def __init__(self, root, log):
        self.root, self.log_path = root, log
        self.name = "entropyd-e2e-%d" % os.getpid()
        self.cmd = ["systemd-nspawn", "-q", "-b", "-D", str(root), "--register=no",
                    "--keep-unit", "--private-network", "--machine=" + self.name]
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.leader = None

    def boot_log(self):
        return Path(self.log_path).read_text(errors="replace")[-4000:]

    def wait_booted(self):
        deadline = time.monotonic() + BOOT_TIMEOUT
        state = "no init yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.leader is None:
                kids = Path("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid))
                found = kids.read_text().split() if kids.exists() else []
                self.leader = int(found[0]) if found else None
            if self.leader is not None:
                state = self.sh(["systemctl", "is-system-running"], 10).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.5)
        raise Failed("systemd did not boot in the container within %d s (tried: %s; state: "
                     "%s; nspawn %s)\n--- console ---\n%s"
                     % (BOOT_TIMEOUT, " ".join(self.cmd), state,
                        "running" if self.proc.poll() is None else
                        "exited with %d" % self.proc.returncode, self.boot_log()))

    def sh(self, cmd, timeout=30):
        return run(["nsenter", "-t", str(self.leader), "-a", "--"] + cmd, timeout)

    def ok(self, cmd, timeout=30):
        r = self.sh(cmd, timeout)
        if r.returncode != 0:
            raise Failed("in the container, `%s` exited with %d:\n%s%s\n--- journal ---\n%s"
                         % (" ".join(cmd), r.returncode, r.stdout, r.stderr, self.journal()))
        return r.stdout

    def popen(self, cmd):
        return subprocess.Popen(["nsenter", "-t", str(self.leader), "-a", "--"] + cmd,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def journal(self):
        if self.leader is None:
            return ""
        return self.sh(["journalctl", "--no-pager", "-o", "short-monotonic", "-u",
                        "entropyd.service", "-u", "entropyd.socket"], 30).stdout[-6000:]

    def unit(self, *props):
        out = self.ok(["systemctl", "show", "entropyd.service"] +
                      ["-p" + p for p in props])
        return dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)

    def stop(self):
        """SIGTERM to systemd-nspawn (an orderly poweroff of the container), SIGKILL after
        30 s; the peers inside end with the container's PID namespace."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class Peer(threading.Thread):
    """systemd_peer.py in the container; its latest totals, read from its output."""

    def __init__(self, box, kind, port):
        super().__init__(daemon=True)
        self.proc = box.popen(["python3", "/opt/systemd_peer.py", kind, str(port)])
        self.kind, self.value, self.conns, self.lines = kind, 0, 0, []
        self.start()

    def run(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            f = line.split()
            if len(f) >= 2 and f[0] == self.kind:
                self.value = int(f[1])
                if len(f) > 2:
                    self.conns = int(f[2])

    def grows_beyond(self, than, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.value > than:
                return True
            time.sleep(0.1)
        return False


def wait_state(box, state, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = box.unit("ActiveState")["ActiveState"]
        if got == state:
            return
        time.sleep(0.2)
    raise Failed("entropyd.service not %s within %d s (it is %s)\n--- journal ---\n%s"
                 % (state, timeout, got, box.journal()))


@pytest.fixture
def alarm():
    def expired(signum, frame):
        raise Failed("test_systemd exceeded its %d s" % TEST_LIMIT)
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def unprivileged_status(box, pid):
    """/proc/PID/status of the service in the container, checked: no capability, no new
    privileges, the system-call filter."""
    status = dict(ln.split(":", 1) for ln in box.ok(["cat", "/proc/%s/status" % pid])
                  .splitlines() if ":" in ln)
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, status
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2", status
    return status


def test_socket_activation_reload_restart_and_stop_under_real_systemd(tmp_path, alarm):
    if os.geteuid() != 0:
        pytest.fail("needs root (systemd-nspawn)", pytrace=False)
    for tool in ("systemd-nspawn", "mmdebstrap", "nsenter"):
        if shutil.which(tool) is None:
            pytest.fail("%s not found (apt-get install systemd-container mmdebstrap)" % tool,
                        pytrace=False)
    deb = deb_path()
    tar = rootfs_tarball(deb)
    root = tmp_path / "root"
    root.mkdir()
    box = None
    try:
        r = run(["tar", "-xf", str(tar), "-C", str(root), "--numeric-owner"], 300)
        assert r.returncode == 0, r.stderr
        shutil.copy(deb, root / "opt" / "entropyd.deb")
        shutil.copy(Path(__file__).with_name("systemd_peer.py"), root / "opt")
        # Installed before the boot, as in any image build: the postinst makes the user and
        # the group, /run/entropyd's tmpfiles entry, and enables entropyd.socket.
        r = run(["systemd-nspawn", "-q", "-D", str(root), "--register=no", "--keep-unit",
                 "--private-network", "dpkg", "-i", "/opt/entropyd.deb"], 300)
        assert r.returncode == 0, "dpkg -i in the root failed:\n%s%s" % (r.stdout, r.stderr)
        assert (root / "etc/systemd/system/sockets.target.wants/entropyd.socket").is_symlink()

        box = Container(root, tmp_path / "console.log")
        box.wait_booted()
        box.ok(["systemctl", "start", "entropyd.socket"])
        assert box.ok(["systemctl", "is-active", "entropyd.socket"]).strip() == "active"
        u = box.unit("ActiveState", "Type")
        assert u == {"ActiveState": "inactive", "Type": "notify"}, u

        # A client's connection starts the service; `active` means READY=1 came.
        tcp = Peer(box, "tcp", 8888)
        wait_state(box, "active")
        assert tcp.grows_beyond(0), "".join(tcp.lines) + box.journal()
        pid = box.unit("MainPID")["MainPID"]
        assert pid != "0"
        # Started as root by systemd, it opened its sockets and dropped to the package's user
        # (no --user given: the default), with no capability, no new privileges and the
        # system-call filter.
        user = box.ok(["getent", "passwd", "entropyd"]).split(":")
        status = unprivileged_status(box, pid)
        assert status["Uid"].split() == [user[2]] * 4, (status["Uid"], user)
        assert status["Gid"].split() == [user[3]] * 4, (status["Gid"], user)
        print("entropyd.service runs as %s (uid %s), CapEff %s, Seccomp %s"
              % (user[0], user[2], status["CapEff"].strip(), status["Seccomp"].strip()))
        udp = Peer(box, "udp", 8889)
        assert udp.grows_beyond(0), "".join(udp.lines) + box.journal()

        # Reload: SIGHUP, a re-exec in the same process.
        t0, u0, c0 = tcp.value, udp.value, tcp.conns
        box.ok(["systemctl", "reload", "entropyd.service"])
        deadline = time.monotonic() + 15
        while "re-executing" not in box.journal() and time.monotonic() < deadline:
            time.sleep(0.3)
        wait_state(box, "active")
        assert box.unit("MainPID")["MainPID"] == pid, "reload changed the MainPID"
        assert "re-executing" in box.journal()
        assert tcp.grows_beyond(t0 + 64 * 10), "TCP client got nothing after the reload"
        assert udp.grows_beyond(u0 + 10), "UDP peer got nothing after the reload"
        print("reload: tcp client connections %d -> %d" % (c0, tcp.conns))

        # Restart: a new process; systemd kept the sockets, the UDP peer its one socket.
        u1 = udp.value
        box.ok(["systemctl", "restart", "entropyd.service"])
        wait_state(box, "active")
        assert box.unit("MainPID")["MainPID"] not in (pid, "0")
        assert udp.grows_beyond(u1 + 10), "UDP peer got nothing after the restart"

        # The unit's comment says the same settings work with DynamicUser=yes and
        # SupplementaryGroups=entropyd instead of User=: a drop-in does that, and the
        # restarted service serves as a dynamic user, unprivileged, filtered.
        box.ok(["mkdir", "-p", "/etc/systemd/system/entropyd.service.d"])
        # (A user of the unit's own name exists, and DynamicUser= would take it: name another.)
        box.ok(["sh", "-c", "printf '[Service]\\nUser=entropyd-dynamic\\nGroup=\\n"
                "DynamicUser=yes\\n"
                "SupplementaryGroups=entropyd\\n' >/etc/systemd/system/entropyd.service.d/"
                "dynamic.conf"])
        box.ok(["systemctl", "daemon-reload"])
        u2 = udp.value
        box.ok(["systemctl", "restart", "entropyd.service"])
        wait_state(box, "active")
        dyn = box.unit("MainPID")["MainPID"]
        status = unprivileged_status(box, dyn)
        assert status["Uid"].split()[0] not in ("0", user[2]), (status["Uid"], user)
        assert udp.grows_beyond(u2 + 10), "UDP peer got nothing from the DynamicUser service"
        assert tcp.grows_beyond(tcp.value + 64 * 10), "TCP client got nothing (DynamicUser)"
        print("with DynamicUser=yes: uid %s, CapEff %s, Seccomp %s"
              % (status["Uid"].split()[0], status["CapEff"].strip(), status["Seccomp"].strip()))

        # Stop: the sockets first (no re-activation), then the service.
        box.ok(["systemctl", "stop", "entropyd.socket", "entropyd.service"])
        wait_state(box, "inactive")
        u = box.unit("Result", "ExecMainStatus")
        assert u == {"Result": "success", "ExecMainStatus": "0"}, (u, box.journal())
        assert re.search(r"delivered \d+ bytes in all; stopped", box.journal()), box.journal()
        print("entropyd journal:\n" + box.journal())
    finally:
        if box is not None:
            box.stop()
        shutil.rmtree(root, ignore_errors=True)
