#!/usr/bin/python3
"""Side by side, in one run: every way an x86 guest (TCG) can get entropy from the host,
entropyd against its peers, as ratios. For each path the guest reads --mib MiB from
/dev/hwrng; rounds interleave the paths so load drift on a shared machine hits them
alike; each path reports the median of its rounds.

  rng-builtin                 QEMU's own getrandom() (the reference)
  rng-random file             rng-random reading a regular file of random bytes
  rng-random fifo entropyd    rng-random reading entropyd's named pipe (fifo endpoint)
  rng-egd tcp|unix entropyd   rng-egd to entropyd --source getrandom (endpoint options
                              --egd-options, default ,surplus=65536)
  rng-egd tcp entropyd, endpoint defaults   the same with no endpoint option
  rng-egd tcp|unix socat      rng-egd to `socat ...-LISTEN,fork OPEN:/dev/urandom`
  rng-egd tcp entropybroker   rng-egd to Entropy Broker: entropy_broker fed by
                              eb_server_stream (/dev/urandom), served by eb_client_egd

Next to each: MB/s, the ratio to rng-builtin, and the serving side's CPU seconds per MiB
delivered (utime + stime from /proc/PID/stat over the whole boot, children included).
The comparisons entropyd/socat, entropyd fifo/file and entropyd/entropybroker follow.
The summary is also written in Markdown to build/bench-summary.md; bench/readme_table.py
copies it into README.md.

  /usr/bin/python3 bench/bench_compare.py [--mib N] [--rounds N] [--paths a,b,...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import guest  # noqa: E402
import peers  # noqa: E402

from benchlib import free_port, markdown_table, tree_cpu  # noqa: E402

MIB = 1 << 20


class Setup:
    """A running host side: QEMU's backend arguments, the pids whose CPU counts, a stop."""

    def __init__(self, backend, pids, stops):
        self.backend, self.pids, self.stops = backend, pids, stops

    def stop(self):
        for s in reversed(self.stops):
            s()


def tmpdir():
    return Path(tempfile.mkdtemp(prefix="entropyd-bench-"))


def entropyd(binary, listen):
    d = peers.Entropyd(["--source", "getrandom", "--listen", listen], binary=binary)
    return d


def p_builtin(ctx):
    return Setup(guest.builtin_backend(), [], [])


def p_file(ctx):
    path = tmpdir() / "random.bin"
    with open(path, "wb") as f:  # the read plus what the guest takes at boot
        f.write(os.urandom(ctx.nbytes + 16 * MIB))
    return Setup(guest.random_backend(path), [], [lambda: path.unlink()])


def p_fifo(ctx):
    path = tmpdir() / "rng.fifo"
    d = entropyd(ctx.binary, f"fifo:{path}")
    d.wait_line(r"listening on fifo:", 10)
    return Setup(guest.random_backend(path), [d.pid], [d.stop])


def p_egd_entropyd(kind, options=None):
    """options: the endpoint's options (None: --egd-options, surplus=65536 by default)."""
    def setup(ctx):
        opts = ctx.egd_options if options is None else options
        if kind == "tcp":
            d = entropyd(ctx.binary, "tcp:127.0.0.1:0" + opts)
            chardev = f"socket,id=egd0,host=127.0.0.1,port={d.port()},reconnect=1"
        else:
            path = tmpdir() / "egd.sock"
            d = entropyd(ctx.binary, f"unix:{path}" + opts)
            peers.wait_path(path, 10)
            chardev = f"socket,id=egd0,path={path},reconnect=1"
        return Setup(guest.egd_backend(chardev), [d.pid], [d.stop])
    return setup


def p_egd_socat(kind):
    def setup(ctx):
        if kind == "tcp":
            port = free_port()
            listen = f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"
            chardev = f"socket,id=egd0,host=127.0.0.1,port={port},reconnect=1"
        else:
            path = tmpdir() / "socat.sock"
            listen = f"UNIX-LISTEN:{path},fork"
            chardev = f"socket,id=egd0,path={path},reconnect=1"
        s = peers.Process(["socat", listen, "OPEN:/dev/urandom"], "socat")
        if kind == "tcp":
            peers.wait_listening(port, 10, s.proc)
        else:
            peers.wait_path(path, 10)
        return Setup(guest.egd_backend(chardev), [s.pid], [s.stop])
    return setup


EB_CONF = {"listen_adapter": "::FFFF:127.0.0.1", "webserver_interface": "::FFFF:127.0.0.1",
           "default_max_get_bps": "1000000000", "default_max_bits_per_interval": "8000000000"}


def wait_connectable(port, proc, timeout=20):
    """Entropy Broker listens on an IPv6 socket (::ffff:127.0.0.1), which /proc/net/tcp
    (peers.wait_listening) does not show: dial it instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise peers.PeerError(f"{proc.args[0]} exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise peers.PeerError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def p_egd_eb(ctx):
    """Entropy Broker: the broker, a source that streams /dev/urandom into it, and its EGD
    front end (eb_client_egd), which QEMU's rng-egd dials."""
    d = tmpdir()
    port, web, egd = free_port(), free_port(), free_port()
    conf = dict(EB_CONF, listen_port=str(port), webserver_port=str(web),
                users=str(d / "users.txt"))
    lines = []
    for line in Path("/etc/entropybroker/entropy_broker.conf").read_text().splitlines():
        key = line.split("=")[0].strip()
        lines.append(f"{key} = {conf.pop(key)}" if key in conf else line)
    lines += [f"{k} = {v}" for k, v in conf.items()]
    (d / "eb.conf").write_text("\n".join(lines) + "\n")
    (d / "users.txt").write_text("bench|benchpassword\n")
    (d / "cred.txt").write_text("bench\nbenchpassword\n")
    for f in ("users.txt", "cred.txt"):
        os.chmod(d / f, 0o600)
    procs = []

    def run(argv, name):
        procs.append(peers.Process(argv, name))
        return procs[-1]

    try:
        b = run(["entropy_broker", "-c", str(d / "eb.conf"), "-n", "-L", "1",
                 "-l", str(d / "eb.log")], "entropy_broker")
        wait_connectable(port, b.proc)
        cred = ["-X", str(d / "cred.txt"), "-n", "-L", "1", "-l", str(d / "eb-clients.log")]
        run(["eb_server_stream", "-I", f"localhost:{port}", "-d", "/dev/urandom"] + cred,
            "eb_server_stream")
        c = run(["eb_client_egd", "-I", f"localhost:{port}", "-t", "::FFFF:127.0.0.1",
                 "-T", str(egd)] + cred, "eb_client_egd")
        wait_connectable(egd, c.proc)
    except peers.PeerError:
        for p in reversed(procs):
            p.stop()
        raise
    chardev = f"socket,id=egd0,host=127.0.0.1,port={egd},reconnect=1"
    return Setup(guest.egd_backend(chardev), [p.pid for p in procs],
                 [p.stop for p in procs])


# name, setup, the server it measures (for the CPU column)
PATHS = {
    "builtin": ("rng-builtin", p_builtin),
    "file": ("rng-random file", p_file),
    "fifo": ("rng-random fifo entropyd", p_fifo),
    "tcp": ("rng-egd tcp entropyd", p_egd_entropyd("tcp")),
    "tcp-default": ("rng-egd tcp entropyd, endpoint defaults", p_egd_entropyd("tcp", "")),
    "socat-tcp": ("rng-egd tcp socat", p_egd_socat("tcp")),
    "unix": ("rng-egd unix entropyd", p_egd_entropyd("unix")),
    "socat-unix": ("rng-egd unix socat", p_egd_socat("unix")),
    "eb": ("rng-egd tcp entropybroker", p_egd_eb),
}
# (what, numerator, denominator, goal)
COMPARE = [
    ("entropyd / socat, rng-egd tcp", "tcp", "socat-tcp", 1.0),
    ("entropyd without surplus= / socat, rng-egd tcp", "tcp-default", "socat-tcp", 1.0),
    ("entropyd / socat, rng-egd unix", "unix", "socat-unix", 1.0),
    ("entropyd fifo / regular file, rng-random", "fifo", "file", 0.95),
    ("entropyd / entropybroker, rng-egd tcp", "tcp", "eb", None),
]


class Ctx:
    def __init__(self, binary, nbytes, timeout, egd_options):
        self.binary, self.nbytes, self.timeout = binary, nbytes, timeout
        self.egd_options = egd_options


def measure(image, ctx, setup_fn):
    """One boot: (guest-side read seconds, server CPU seconds over the boot)."""
    s = setup_fn(ctx)
    try:
        c0 = tree_cpu(s.pids)
        res = guest.boot_guest(image, s.backend, nbytes=ctx.nbytes, dump=False,
                               timeout=ctx.timeout)
        time.sleep(0.2)  # let a forked server's child exit and be reaped
        return res.read_seconds, tree_cpu(s.pids) - c0
    finally:
        s.stop()


def summarize(keys, times, cpus, errors, nbytes):
    """Rows of the per-path table and of the comparison table (lists of str)."""
    rate = {k: nbytes / statistics.median(times[k]) / 1e6 for k in keys if times[k]}
    cpu = {k: statistics.median(cpus[k]) / (nbytes / MIB) for k in keys if cpus[k]}
    base = rate.get("builtin")
    paths = []
    for k in keys:
        name = PATHS[k][0]
        if k not in rate:
            paths.append([name, "failed", "-", "-", errors.get(k, "")])
            continue
        paths.append([name, f"{rate[k]:.2f}", f"{rate[k] / base:.2f}" if base else "-",
                      f"{cpu[k]:.4f}" if k not in ("builtin", "file") else "(QEMU)",
                      " ".join(f"{nbytes / t / 1e6:.2f}" for t in times[k])])
    comp = []
    for what, a, b, goal in COMPARE:
        if a not in keys or b not in keys:
            continue
        if a not in rate or b not in rate:
            comp.append([what, "-", "-", f"{goal:.2f}" if goal else "-", "failed"])
            continue
        r = rate[a] / rate[b]
        cpu_r = f"{cpu[a]:.4f} / {cpu[b]:.4f}" if a in cpu and b in cpu else "-"
        met = "-" if goal is None else ("met" if r >= goal else "missed")
        comp.append([what, f"{r:.2f}", cpu_r, f"{goal:.2f}" if goal else "-", met])
    return paths, comp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=4, help="MiB the guest reads (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--paths", default=",".join(PATHS),
                    help="comma-separated subset of " + ",".join(PATHS))
    ap.add_argument("--entropyd", type=Path, default=peers.entropyd_path())
    ap.add_argument("--egd-options", default=",surplus=65536",
                    help="options of entropyd's rng-egd endpoints (default ,surplus=65536; "
                         "'' for a build without surplus=)")
    ap.add_argument("--timeout", type=float, default=600, help="hard limit per boot, s")
    ap.add_argument("--summary", type=Path, default=REPO / "build" / "bench-summary.md")
    args = ap.parse_args()

    keys = [k for k in PATHS if k in args.paths.split(",")]
    unknown = set(args.paths.split(",")) - set(PATHS)
    if unknown:
        ap.error("unknown paths: " + ", ".join(sorted(unknown)))
    for tool in ("socat", "entropy_broker"):
        if shutil.which(tool) is None:
            print(f"bench_compare: {tool} is not installed", file=sys.stderr)
            return 1
    try:
        image = guest.ensure_image()
    except guest.GuestError as e:
        print(f"bench_compare: cannot obtain the guest: {e}", file=sys.stderr)
        return 1
    nbytes = args.mib * MIB
    ctx = Ctx(args.entropyd, nbytes, args.timeout, args.egd_options)
    times = {k: [] for k in keys}
    cpus = {k: [] for k in keys}
    errors = {}
    print(f"guest {image.kernel_version}, TCG, reads {args.mib} MiB from /dev/hwrng; "
          f"{args.rounds} interleaved rounds; entropyd {args.entropyd}", flush=True)
    for rnd in range(args.rounds):
        for k in keys:
            if k in errors:
                continue
            try:
                t, c = measure(image, ctx, PATHS[k][1])
            except (guest.GuestError, peers.PeerError, OSError) as e:
                errors[k] = str(e).splitlines()[0] if str(e) else type(e).__name__
                print(f"  round {rnd + 1}: {PATHS[k][0]}: FAILED: {e}", file=sys.stderr,
                      flush=True)
                continue
            times[k].append(t)
            cpus[k].append(c)
            print(f"  round {rnd + 1}: {PATHS[k][0]}: {nbytes / t / 1e6:.2f} MB/s, "
                  f"server CPU {c:.2f} s", flush=True)
    paths, comp = summarize(keys, times, cpus, errors, nbytes)
    md = (f"x86 guest under TCG reading {args.mib} MiB from /dev/hwrng, median of "
          f"{args.rounds} interleaved rounds; CPU: the serving processes' utime+stime per MiB "
          f"delivered, over the whole boot. The rng-egd entropyd rows use the endpoint "
          f"options `{args.egd_options or '(none)'}`, except the one marked endpoint "
          f"defaults.\n\n"
          + markdown_table(["path", "MB/s", "× rng-builtin", "server CPU s/MiB", "rounds MB/s"],
                           paths)
          + "\n"
          + markdown_table(["comparison", "ratio", "CPU s/MiB (a / b)", "goal", ""], comp))
    print()
    print(md)
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(md)
    print(f"(written to {args.summary})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
