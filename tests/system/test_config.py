"""The config file (--config FILE, default /etc/entropyd/entropyd.conf): its options apply,
the command line adds to them, `-n` names a bad line as FILE:LINE without binding anything,
and a SIGHUP reads it again: an unchanged endpoint keeps its very socket (and its UDP peer
keeps being answered), a new one is bound, a removed one is closed, the sources follow the
file; a file that no longer parses leaves the running configuration alone."""

import os
import signal
import socket
import time

import pytest

from entropyd_proc import run_entropyd
from test_sandbox import draw_unix
from test_reload_burst import UdpGuest


def unix_listener_inode(path):
    """The inode of the listening socket bound to path, from /proc/net/unix; None if none."""
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            # Num RefCount Protocol Flags Type St Inode Path; St 01 = listening
            if len(fields) >= 8 and fields[7] == str(path) and fields[5] == "01":
                return int(fields[6])
    return None


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sighup(d):
    before = d.mark()
    os.kill(d.pid, signal.SIGHUP)
    return before


def start_with_file(entropyd, conf, text, cli=(), expect=()):
    conf.write_text(text)
    d = entropyd(sources=(), listen=(), extra=["--config", str(conf)] + list(cli))
    d.wait_ready(list(expect))
    return d


@pytest.mark.time_limit(30)
def test_file_options_apply_and_the_command_line_adds_to_them(entropyd, tmp_path):
    a, b = tmp_path / "a.sock", tmp_path / "b.sock"
    d = start_with_file(entropyd, tmp_path / "entropyd.conf",
                        "# entropyd.conf for a test\n\n"
                        "source getrandom\n"
                        "  listen unix:%s,mode=0600  \n"
                        "pool-size 8192\n" % a,
                        cli=["--listen", "unix:%s" % b],
                        expect=["unix:%s" % a, "unix:%s" % b])
    assert d.count_log(r"ready: 1 source\(s\), 3 endpoint\(s\), pool of 8192 bytes") == 1, \
        d.log()
    assert os.stat(a).st_mode & 0o777 == 0o600
    assert len(draw_unix(str(a))) == 32
    assert len(draw_unix(str(b))) == 32


@pytest.mark.time_limit(30)
def test_check_names_the_bad_line_by_file_and_line_and_binds_nothing(tmp_path):
    sock = tmp_path / "never.sock"
    conf = tmp_path / "bad.conf"
    conf.write_text("source getrandom\nlisten unix:%s\n# fine so far\nlisten tcp:127.0.0.1:1,"
                    "frob=2\n" % sock)
    r = run_entropyd(["-n", "-f", "--config", str(conf)])
    err = r.stderr.decode()
    assert r.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "%s:4: endpoint tcp:127.0.0.1:1,frob=2: unknown option 'frob'" % conf in lines[0], err
    assert not sock.exists()
    # And an explicitly named file that does not exist.
    r = run_entropyd(["-n", "-f", "--config", str(tmp_path / "missing.conf")])
    assert r.returncode == 1
    assert "missing.conf: cannot open" in r.stderr.decode()


@pytest.mark.time_limit(60)
def test_sighup_rereads_the_file_keeping_unchanged_endpoints_and_their_peers(
        entropyd, tmp_path, random_file):
    keep, gone, new = tmp_path / "keep.sock", tmp_path / "gone.sock", tmp_path / "new.sock"
    port = free_udp_port()
    conf = tmp_path / "entropyd.conf"
    d = start_with_file(entropyd, conf,
                        "source getrandom\nlisten unix:%s\nlisten unix:%s\n"
                        "listen udp:127.0.0.1:%d\n" % (keep, gone, port),
                        expect=["unix:%s" % keep, "unix:%s" % gone])
    keep_inode, gone_inode = unix_listener_inode(keep), unix_listener_inode(gone)
    assert keep_inode and gone_inode
    guest_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    guest_sock.bind(("127.0.0.1", 0))
    guest = UdpGuest(guest_sock, port)
    guest.start()
    try:
        deadline = time.monotonic() + 5
        while not guest.replies and time.monotonic() < deadline:
            time.sleep(0.05)
        assert guest.replies, "the UDP peer got no answer before the reload"

        src, _ = random_file(1 << 20)
        conf.write_text("source file:%s\nlisten unix:%s\nlisten udp:127.0.0.1:%d\n"
                        "listen unix:%s\n" % (src, keep, port, new))
        before = sighup(d)
        d.wait_log(r"re-executing with 4 listening", 10, start=before)
        d.wait_log(r"\bready: 1 source\(s\), 4 endpoint\(s\)", 10, start=before)
        assert d.proc.poll() is None, d.log()
        reloaded_at = time.monotonic()

        assert unix_listener_inode(keep) == keep_inode, "the kept endpoint was bound again"
        assert unix_listener_inode(gone) is None, "the removed endpoint still listens"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            with pytest.raises(OSError):
                c.connect(str(gone))
        assert unix_listener_inode(new) is not None
        assert len(draw_unix(str(new))) == 32
        assert len(draw_unix(str(keep))) == 32
        # The source follows the file: the new image opened the file, not getrandom.
        d.wait_log(r"file:%s" % src, 5, start=before)
        deadline = time.monotonic() + 5
        while not [t for t in guest.replies if t > reloaded_at] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [t for t in guest.replies if t > reloaded_at], \
            "the UDP peer of the kept endpoint got no answer after the reload"
    finally:
        guest.stop.set()
        guest.join(5)
        guest_sock.close()


@pytest.mark.time_limit(40)
def test_a_file_broken_before_sighup_leaves_the_running_configuration(entropyd, tmp_path):
    keep = tmp_path / "keep.sock"
    conf = tmp_path / "entropyd.conf"
    d = start_with_file(entropyd, conf, "source getrandom\nlisten unix:%s\n" % keep,
                        expect=["unix:%s" % keep])
    inode = unix_listener_inode(keep)
    conf.write_text("source getrandom\nlisten unix:%s\nsource nosuchkind:x,h=99\n" % keep)
    before = sighup(d)
    d.wait_log(r"reload refused", 10, start=before)
    time.sleep(0.5)
    refused = [ln for ln in d.log_lines(before) if "%s:3:" % conf in ln]
    assert len(refused) == 1, d.log()
    assert d.count_log(r"re-executing", before) == 0, d.log()
    assert d.proc.poll() is None
    assert unix_listener_inode(keep) == inode
    assert len(draw_unix(str(keep))) == 32
    # Fixed again, the next SIGHUP reloads.
    conf.write_text("source getrandom\nlisten unix:%s\n" % keep)
    before = sighup(d)
    d.wait_log(r"\bready\b", 10, start=before)
    assert unix_listener_inode(keep) == inode
