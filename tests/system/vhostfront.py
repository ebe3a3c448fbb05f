"""A vhost-user front-end in Python, standing in for QEMU in the system tests: guest memory
in a memfd shared with the back-end, one split virtqueue built in it, the set-up messages
sent with their descriptors (socket.send_fds), kicks through an eventfd, completions read
from the used ring once the call eventfd fires. It can also send what QEMU never would
(hostile descriptors, bad messages), which is the point."""

import mmap
import os
import select
import socket
import struct
import time

GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_LOG_BASE = 6
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE = 15, 16, 17, 18

F_INDIRECT, F_EVENT_IDX, F_PROTOCOL, F_VERSION_1 = 1 << 28, 1 << 29, 1 << 30, 1 << 32
PF_REPLY_ACK = 1 << 3
NEED_REPLY = 1 << 3
D_NEXT, D_WRITE, D_INDIRECT = 1, 2, 4

MEM_SIZE = 1 << 20
GPA = 0x40000000            # where the guest sees its memory
UADDR = 0x7F1200000000      # where "QEMU" has it mapped (ring addresses use this)
DESC, AVAIL, USED, INDIRECT = 0x0000, 0x4000, 0x8000, 0xC000  # offsets in the region
BUFS = 0x10000


class Front:
    """One front-end (one VM's device) on a connected unix socket."""

    def __init__(self, sock, qsize=8, memfd=None):
        self.sock = sock
        self.sock.settimeout(10)
        self.qsize = qsize
        self.memfd = memfd if memfd is not None else os.memfd_create("guest", 0)
        os.ftruncate(self.memfd, MEM_SIZE)
        self.mem = mmap.mmap(self.memfd, MEM_SIZE)
        self.kick = os.eventfd(0, os.EFD_NONBLOCK)
        self.call = os.eventfd(0, os.EFD_NONBLOCK)
        self.avail_idx = 0
        self.used_seen = 0
        self.next_desc = 0

    @classmethod
    def connect(cls, path, **kw):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(path))
        return cls(s, **kw)

    def close(self):
        for fd in (self.kick, self.call):
            try:
                os.close(fd)
            except OSError:
                pass
        self.sock.close()

    # -- messages --

    def send(self, req, payload=b"", fds=(), flags=1, size=None):
        hdr = struct.pack("<III", req, flags, len(payload) if size is None else size)
        if fds:
            socket.send_fds(self.sock, [hdr + payload], list(fds))
        else:
            self.sock.sendall(hdr + payload)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("back-end closed the connection")
            buf += chunk
        return buf

    def reply(self, req):
        r, flags, size = struct.unpack("<III", self.recv_exact(12))
        assert r == req and flags == 0x5, "reply to %d: request %d flags %#x" % (req, r, flags)
        return self.recv_exact(size)

    def get_u64(self, req):
        self.send(req)
        return struct.unpack("<Q", self.reply(req))[0]

    def set_u64(self, req, v, fds=(), ack=False):
        self.send(req, struct.pack("<Q", v), fds, flags=1 | (NEED_REPLY if ack else 0))
        if ack:
            assert struct.unpack("<Q", self.reply(req))[0] == 0

    def state(self, req, num, ack=False):
        self.send(req, struct.pack("<II", 0, num), flags=1 | (NEED_REPLY if ack else 0))
        if ack:
            assert struct.unpack("<Q", self.reply(req))[0] == 0

    def mem_table(self, regions=None):
        regions = regions or [(GPA, MEM_SIZE, UADDR, 0)]
        body = struct.pack("<II", len(regions), 0)
        for r in regions:
            body += struct.pack("<QQQQ", *r)
        self.send(SET_MEM_TABLE, body, [self.memfd] * len(regions), flags=1 | NEED_REPLY)
        assert struct.unpack("<Q", self.reply(SET_MEM_TABLE))[0] == 0

    def setup(self, event_idx=False, base=0, handshake=True, features=None):
        """The set-up QEMU sends: the handshake (unless a reconnect skips it), then the
        ring. base: the avail index to resume from (SET_VRING_BASE)."""
        if handshake:
            offered = self.get_u64(GET_FEATURES)
            assert offered & F_PROTOCOL and offered & F_VERSION_1
            assert self.get_u64(GET_PROTOCOL_FEATURES) & PF_REPLY_ACK
            self.set_u64(SET_PROTOCOL_FEATURES, PF_REPLY_ACK)
            self.send(SET_OWNER)
        if features is None:
            features = F_VERSION_1 | F_PROTOCOL | F_INDIRECT | (F_EVENT_IDX if event_idx else 0)
        self.set_u64(SET_VRING_CALL, 0, [self.call])
        self.set_u64(SET_FEATURES, features)
        self.mem_table()
        self.state(SET_VRING_NUM, self.qsize)
        self.state(SET_VRING_BASE, base)
        self.send(SET_VRING_ADDR, struct.pack("<IIQQQQ", 0, 0, UADDR + DESC, UADDR + USED,
                                              UADDR + AVAIL, 0))
        self.set_u64(SET_VRING_KICK, 0, [self.kick])
        self.state(SET_VRING_ENABLE, 1, ack=True)  # acked: the set-up is all handled

    # -- the ring --

    def write_desc(self, table_off, i, addr, length, flags, nxt=0):
        struct.pack_into("<QIHH", self.mem, table_off + 16 * i, addr, length, flags, nxt)

    def buf_gpa(self, k):
        return GPA + BUFS + 0x1000 * k

    def publish(self, head):
        q = self.qsize
        struct.pack_into("<H", self.mem, AVAIL + 4 + 2 * (self.avail_idx % q), head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        struct.pack_into("<H", self.mem, AVAIL + 2, self.avail_idx)
        os.eventfd_write(self.kick, 1)

    def post(self, sizes, indirect=False):
        """Post one chain of device-writable buffers of the given sizes (in the indirect
        table if asked); returns [(gpa, size)]."""
        bufs = []
        q = self.qsize
        head = self.next_desc
        if indirect:
            for j, n in enumerate(sizes):
                g = self.buf_gpa(j)
                last = j == len(sizes) - 1
                self.write_desc(INDIRECT, j, g, n, D_WRITE | (0 if last else D_NEXT), j + 1)
                bufs.append((g, n))
            self.write_desc(DESC, head, GPA + INDIRECT, 16 * len(sizes), D_INDIRECT)
            self.next_desc = (head + 1) % q
        else:
            for j, n in enumerate(sizes):
                i = (head + j) % q
                g = self.buf_gpa(i)
                last = j == len(sizes) - 1
                self.write_desc(DESC, i, g, n, D_WRITE | (0 if last else D_NEXT), (i + 1) % q)
                bufs.append((g, n))
            self.next_desc = (head + len(sizes)) % q
        self.publish(head)
        return bufs

    def used_idx(self):
        return struct.unpack_from("<H", self.mem, USED + 2)[0]

    def used_elem(self, k):
        return struct.unpack_from("<II", self.mem, USED + 4 + 8 * (k % self.qsize))

    def avail_event(self):
        return struct.unpack_from("<H", self.mem, USED + 4 + 8 * self.qsize)[0]

    def set_used_event(self, v):
        struct.pack_into("<H", self.mem, AVAIL + 4 + 2 * self.qsize, v)

    def wait_call(self, timeout):
        """True if the call eventfd fired within timeout (and clear it)."""
        r, _, _ = select.select([self.call], [], [], timeout)
        if r:
            os.eventfd_read(self.call)
            return True
        return False

    def wait_used(self, count=1, timeout=10.0):
        """Wait (on the call eventfd) until count more chains are used; their (id, len)."""
        deadline = time.monotonic() + timeout
        while (self.used_idx() - self.used_seen) & 0xFFFF < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("%d chain(s) used of %d within %.0f s"
                                   % ((self.used_idx() - self.used_seen) & 0xFFFF, count,
                                      timeout))
            self.wait_call(min(left, 0.2))
        out = [self.used_elem(self.used_seen + k) for k in range(count)]
        self.used_seen = (self.used_seen + count) & 0xFFFF
        return out

    def read(self, gpa, n):
        off = gpa - GPA
        return bytes(self.mem[off:off + n])

    def fill_chain(self, sizes, indirect=False, timeout=10.0):
        """Post one chain, wait for it, return the bytes written into it."""
        bufs = self.post(sizes, indirect)
        (_, length), = self.wait_used(1, timeout)
        out, left = b"", length
        for g, n in bufs:
            take = min(n, left)
            out += self.read(g, take)
            left -= take
        return out

    def read_bytes(self, total, chunk=256, timeout=30.0):
        """Read total bytes, one chunk-byte buffer at a time (as Linux's virtio-rng)."""
        out = b""
        deadline = time.monotonic() + timeout
        while len(out) < total:
            out += self.fill_chain([min(chunk, total - len(out))],
                                   timeout=max(0.1, deadline - time.monotonic()))
        return out
