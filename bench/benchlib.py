"""benchlib: what the benchmarks in bench/ share: CPU accounting of a process (and its
threads and children) from /proc, free loopback ports, and a Markdown table writer."""

import os
import socket

CLK = os.sysconf("SC_CLK_TCK")


def _stat_fields(path):
    with open(path) as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()  # fields from the 3rd (state) on


def proc_cpu(pid, children=False):
    """Seconds of CPU (utime + stime) of a process (all threads); with children=True also
    its waited-for children (cutime, cstime)."""
    f = _stat_fields("/proc/%d/stat" % pid)
    t = int(f[11]) + int(f[12])
    if children:
        t += int(f[13]) + int(f[14])
    return t / CLK


def thread_cpu(pid):
    """{tid: (name, seconds)} for every thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            f = _stat_fields("/proc/%d/task/%s/stat" % (pid, tid))
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as c:
                name = c.read().strip()
        except OSError:
            continue
        out[tid] = (name, (int(f[11]) + int(f[12])) / CLK)
    return out


def live_children_cpu(pid):
    """CPU seconds of pid's children that are still running (socat's per-connection
    forks, before they are reaped)."""
    total = 0.0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            f = _stat_fields("/proc/%s/stat" % d)
        except OSError:
            continue
        if int(f[1]) == pid:
            total += (int(f[11]) + int(f[12])) / CLK
    return total


def tree_cpu(pids):
    """CPU seconds of every pid in pids with its children, reaped or still running."""
    total = 0.0
    for pid in pids:
        try:
            total += proc_cpu(pid, children=True) + live_children_cpu(pid)
        except OSError:
            pass
    return total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def markdown_table(header, rows):
    """A Markdown table (a string ending in a newline) of header and rows (lists of str)."""
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(header))) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
