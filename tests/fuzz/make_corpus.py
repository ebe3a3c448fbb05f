#!/usr/bin/env python3
"""Write the seed corpora of fuzz_egd, fuzz_qng, fuzz_udp and fuzz_vhost under tests/fuzz/corpus/NAME/
(`python3 tests/fuzz/make_corpus.py`): a dozen small inputs each, in the format the target
reads (see the comment at the top of each fuzz_NAME.c). The fuzz_spec seeds are kept by hand."""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(name, seeds):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.unlink(os.path.join(d, old))
    for key, blob in seeds.items():
        with open(os.path.join(d, key), "wb") as f:
            f.write(blob)


def egd():
    return {
        "level": b"\x00",
        "pid": b"\x04",
        "nonblock": b"\x01\x10",
        "block": b"\x02\x40",
        "block-zero": b"\x02\x00",
        "write": b"\x03\x00\x20\x04abcd",
        "write-max": b"\x03\xff\xff\xff" + bytes(range(255)),
        "pipelined": b"\x00\x02\x10\x04\x01\x05\x02\x08",
        "split-header": b"\x03\x03\x00\x10\x05" + b"x" * 5,
        "partial-write": b"\x03\x00\x40\x10abc",
        "unknown": b"\x02\x04\x07\x00",
        "partial-block": b"\x00\x02",
    }


# fuzz_qng: byte 0 selects (0/1 driver, 2 strip, 3 conf).
DELIM = b"\xa5\x5a\xc3\x3c\x0f\xf0"


def chunk(data):
    """One read of the fake pipe returning data (at most 254 bytes)."""
    assert 0 < len(data) <= 254
    return bytes([len(data) - 1]) + data


def stream(n, fill=0x11):
    out = b""
    while n > 0:
        k = min(n, 200)
        out += chunk(bytes([fill]) * k)
        n -= k
    return out


def good_check(status=b"\x03\x00\x00\x00"):
    # stop + drain (timeout), delimit + sync, 0xB0 -> status, delimit -> delimiter
    return b"\xff" + chunk(DELIM) + chunk(status) + chunk(DELIM)


def start_seq():
    # initialise: drain, two delimiters; start: drain, sync, 256 bytes of head
    return b"\xff" + chunk(DELIM) + chunk(DELIM) + b"\xff" + chunk(DELIM) + stream(256, 0x22)


def qng():
    hdr = bytes([0, 0x21, 0, 63])  # select driver; flags, no failing write, check 64 bytes
    one_block = hdr + start_seq() + stream(64, 0x33) + good_check()
    return {
        "driver-one-block": one_block,
        "driver-two-blocks": one_block + stream(256, 0x44) + stream(64, 0x55) + good_check(),
        "driver-badstats": hdr + start_seq() + stream(64) + good_check(b"\x07\x00\x00\x00"),
        "driver-not-enabled": hdr + start_seq() + stream(64) + good_check(b"\x02\x00\x00\x00"),
        "driver-garbled": hdr + start_seq() + stream(64) + b"\xff" + chunk(DELIM)
        + chunk(b"\x03\x00\x00\x00\x00") + chunk(DELIM),
        "driver-delim-differ": hdr + b"\xff" + chunk(DELIM) + chunk(DELIM[::-1]),
        "driver-unplug": hdr + start_seq() + chunk(b"\x01" * 10) + b"\xfe",
        "driver-stall-restart": hdr + start_seq() + stream(10) + b"\xff" + start_seq()
        + stream(64) + good_check(),
        "driver-write-fails": bytes([1, 0x00, 5, 63]) + start_seq(),
        "strip-64": bytes([2, 1]) + bytes(range(200)),
        "strip-512": bytes([2, 0]) + bytes(range(256)) * 3,
        "conf": b"\x03QWR4M004+check=131072+timeout=2000;tries=3",
        "conf-tty": b"\x03tty=/dev/ttyUSB0;cmdtimeout=50+drain=5+latency=16+checkms=0",
        "conf-devs": b"\x03" + b"\x04\x03\x60\x01QWR4M004\0\0\0\0" + b"\x04\x03\x60\x14QWR7X\0\0\0\0\0\0\0",
    }


# fuzz_udp: byte 0 holds flags; then datagrams, a length byte and the payload.
def dgram(payload):
    if len(payload) >= 0xFF:
        return b"\xff" + struct.pack(">H", len(payload)) + payload
    return bytes([len(payload)]) + payload


def udp():
    return {
        "one-block": b"\x00" + dgram(b"\x02\x40"),
        "mixed": b"\x00" + dgram(b"\x00\x02\x10\x04\x01\x05\x02\x08"),
        "partial-then-whole": b"\x00" + dgram(b"\x02") + dgram(b"\x40"),
        "big-block": b"\x00" + dgram(b"\x02\xff" * 40),
        "many-levels": b"\x00" + dgram(b"\x00" * 200),
        "too-large": b"\x00" + dgram(b"\x00" * 1500) + dgram(b"\x02\x10"),
        "write-refused": b"\x00" + dgram(b"\x03\x00\x08\x01x") + dgram(b"\x02\x08"),
        "write-on": b"\x01" + dgram(b"\x03\x00\x08\x04abcd\x02\x08"),
        "unknown": b"\x00" + dgram(b"\x02\x04\x09") + dgram(b"\x00"),
        "blocking": b"\x1a" + dgram(b"\x02\xff\x02\xff\x01\x80\x00\x04"),
        "paced": b"\x04" + dgram(b"\x02\x80\x01\x20"),
        "prefix-v4": b"\x80127.0.0.0/8\0" + bytes([127, 0, 0, 1]) + bytes(12),
        "prefix-v6": b"\x80::1\0" + bytes(15) + b"\x01",
    }


GPA, UA, QSIZE = 0x10000000, 0x70000000, 4


def vmsg(req, payload=b"", nfds=0, flags=1):
    return bytes([nfds]) + struct.pack("<III", req, flags, len(payload)) + payload


def vsetup(features=(1 << 32) | (1 << 30) | (1 << 28), handshake=True, base=0):
    out = b""
    if handshake:
        out += vmsg(1) + vmsg(15) + vmsg(16, struct.pack("<Q", 8)) + vmsg(3)
    out += vmsg(13, struct.pack("<Q", 0), 1)
    out += vmsg(2, struct.pack("<Q", features))
    out += vmsg(5, struct.pack("<IIQQQQ", 1, 0, GPA, 0x8000, UA, 0), 1, flags=9)
    out += vmsg(8, struct.pack("<II", 0, QSIZE)) + vmsg(10, struct.pack("<II", 0, base))
    out += vmsg(9, struct.pack("<IIQQQQ", 0, 0, UA, UA + 0x200, UA + 0x100, 0))
    out += vmsg(12, struct.pack("<Q", 0), 1) + vmsg(18, struct.pack("<II", 0, 1))
    return out


def vguest(descs, heads, indirect=()):
    """Guest memory: descriptor table at 0, avail ring at 0x100, indirect table at 0x400."""
    mem = bytearray(0x600)
    for i, (addr, length, flags, nxt) in enumerate(descs):
        struct.pack_into("<QIHH", mem, 16 * i, addr, length, flags, nxt)
    for i, (addr, length, flags, nxt) in enumerate(indirect):
        struct.pack_into("<QIHH", mem, 0x400 + 16 * i, addr, length, flags, nxt)
    struct.pack_into("<HH", mem, 0x100, 0, len(heads))
    for i, h in enumerate(heads):
        struct.pack_into("<H", mem, 0x104 + 2 * i, h)
    return struct.pack(">H", len(mem)) + bytes(mem)


def vhost():
    buf = GPA + 0x1000
    ok = [(buf, 64, 2, 0)]
    return {
        "direct": vguest(ok, [0]) + vsetup(),
        "two-chains": vguest([(buf, 64, 3, 1), (buf + 64, 64, 2, 0), (buf + 256, 32, 2, 0)],
                             [0, 2]) + vsetup(),
        "indirect": vguest([(GPA + 0x400, 32, 4, 0)], [0],
                           [(buf, 16, 3, 1), (buf + 16, 48, 2, 0)]) + vsetup(),
        "event-idx": vguest(ok, [0]) + vsetup(features=(1 << 32) | (1 << 30) | (1 << 29)),
        "reconnect": vguest(ok, [0]) + vsetup(handshake=False, base=0),
        "loop": vguest([(buf, 64, 3, 1), (buf, 64, 3, 0)], [0]) + vsetup(),
        "nested-indirect": vguest([(GPA + 0x400, 16, 4, 0)], [0],
                                  [(GPA + 0x400, 16, 4, 0)]) + vsetup(),
        "read-only": vguest([(buf, 64, 0, 0)], [0]) + vsetup(),
        "outside": vguest([(GPA + 0x8000, 64, 2, 0)], [0]) + vsetup(),
        "wrap": vguest([((1 << 64) - 16, 64, 2, 0)], [0]) + vsetup(),
        "bad-size": vguest(ok, [0]) + vmsg(2, b"\0\0\0\0"),
        "fd-on-features": vguest(ok, [0]) + vmsg(2, struct.pack("<Q", 1), 1),
        "get-vring-base": vguest(ok, [0]) + vsetup() + vmsg(11, struct.pack("<II", 0, 0)),
    }


if __name__ == "__main__":
    write("vhost", vhost())
    write("egd", egd())
    write("qng", qng())
    write("udp", udp())
