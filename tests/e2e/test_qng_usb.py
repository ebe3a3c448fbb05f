"""entropyd's native QNG driver against an emulated FTDI USB chip in a real guest.

An x86_64 guest (TCG, Debian's generic kernel with xHCI and ftdi_sio) gets a QEMU xHCI
controller and two `usb-serial` devices, i.e. two emulated FTDI FT232 chips (0403:6001):
  * serial A50285BI: a plain serial adapter, its chardev a file on the host (anything
    written to the chip lands there);
  * serial QWR4SIM00005: a PQ4000KU-like QNG, its chardev a unix socket served by qngsim
    on the host (known --seed), so the bytes a client gets can be located in the stream.
entropyd runs inside the guest (build/entropyd with its shared libraries) with an EGD
listener; a static EGD client in the guest fetches 64 KiB and sends them to the host over
the guest's second serial port. The host checks that they are pieces, in stream order,
of qngsim's data stream after the 1024 bytes of the start-up test, and that none comes
from the 256 bytes after any start command (qngsim's separate "head" stream).

What works over QEMU 7.2's emulated FT232 (asserted below):
  * enumeration and serial-number selection: libftdi's ftdi_usb_find_all +
    ftdi_usb_get_strings see both chips (libusb lists them in reverse port order: the QNG
    is put on port 1 so that the plain adapter comes first and must be skipped); `qng`
    opens QWR4SIM00005 and leaves the plain adapter alone (its ttyUSB stays bound to
    ftdi_sio, nothing is written to it);
  * the gen-3 (PQ4000KU) set-up entropyd does: ftdi_usb_open_dev (detaches ftdi_sio),
    ftdi_set_latency_timer (stored: ftdi_get_latency_timer reads it back), ftdi_tcioflush;
    then libusb bulk transfers carry the command bytes and the stream;
  * the same device through the kernel: `qng:tty=/dev/ttyUSBn` over ftdi_sio.
What does not (asserted, so a QEMU that changes shows up here):
  * the latency timer's timing: a real FT232 answers every bulk IN after one latency
    period with its two modem-status bytes; the emulation answers nothing until it has
    data, so on an idle chip ftdi_read_data() fails with -7 "usb bulk read failed" after
    usb_read_timeout instead of returning 0 (why qng_ftdi.c does its own bulk reads);
  * ftdi_set_bitmode (any mode) fails -1 "unable to configure bitbang mode" (the
    emulation stalls SIO_SET_BITMODE), ftdi_read_pins -1, ftdi_read_eeprom -1 and
    ftdi_read_chipid -1 (no EEPROM requests): the gen-4+ set-up (ftdi_set_bitmode
    BITMODE_RESET, then BITMODE_SYNCFF, then RTS/CTS) cannot run, so entropyd refuses a
    gen-4 serial (QWR7...) at "resetting the bit mode failed";
  * QEMU's usb-serial has no vendor/product-id property: 0403:6014 (PQ32MU and later)
    cannot be emulated at all.

Every guest run is bounded (support.GUEST_TIMEOUT; inside the guest `timeout` and the
client's alarm()); QEMU and qngsim are stopped by PID. A missing package or tool fails
the test with the reason.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import qngguest as q
from qngguest import GuestError
from support import GUEST_TIMEOUT, STARTUP_DISCARD, check_source

NBYTES = 64 << 10
SEED = 20240607
ABSENT_SERIAL = "QWR4NOSUCH01"


@pytest.fixture(scope="module")
def qng_image() -> q.QngImage:
    try:
        img = q.ensure_image()
    except GuestError as e:
        pytest.fail(f"cannot build the USB/QNG guest (QEMU, generic kernel, busybox, "
                    f"entropyd's libraries, gcc, libftdi1-dev): {e}", pytrace=False)
    print(f"guest: kernel {img.kernel_version}, modules {' '.join(img.modules)}, "
          f"entropyd sha256 {img.entropyd_sha256[:16]}")
    return img


class Boot:
    """One guest with a plain FTDI adapter and one QNG-like FTDI chip backed by qngsim."""

    def __init__(self, image: q.QngImage, workdir: Path, qng_serial: str,
                 params: dict[str, str], qng_port: int):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.plain_out = workdir / "plain.out"
        self.sim = None
        self.run = None
        try:
            self.sim = q.QngSim(workdir, qng_serial, SEED)
        except GuestError as e:
            pytest.fail(f"cannot start qngsim: {e}", pytrace=False)
        devices = [(q.PLAIN_SERIAL, f"file,path={self.plain_out}"),
                   (qng_serial, f"socket,path={self.sim.sock}")]
        if qng_port == 1:   # the QNG on the controller's first port
            devices.reverse()
        self.run = q.QngGuestRun(image, [], extra=q.usb_serial_args(devices), params=params,
                                 workdir=workdir)
        t0 = time.monotonic()
        try:
            self.run.start()
            self.res = self.run.finish(GUEST_TIMEOUT)
            self.stats = self.sim.stats()
        except GuestError as e:
            self.close()
            pytest.fail(f"{e}\n{self.sim.describe()}", pytrace=False)
        self.seconds = time.monotonic() - t0
        print(f"guest {params}: {self.seconds:.1f}s wall (QEMU {self.res.wall_seconds:.1f}s), "
              f"fetch {self.res.fetch_seconds}s; qngsim {self.stats}")

    def close(self) -> None:
        if self.run is not None:
            self.run.kill()
        if self.sim is not None:
            self.sim.stop()

    def describe(self) -> str:
        return f"{self.run.describe(6000)}\n{self.sim.describe()}"


def _boot(image, tmp_path_factory, name, qng_serial, params, qng_port=2):
    b = Boot(image, tmp_path_factory.mktemp(name), qng_serial, params, qng_port)
    yield b
    b.close()
    print(b.describe())


@pytest.fixture(scope="module")
def usb_boot(qng_image, tmp_path_factory):
    """`--source qng` (libftdi), then `qng:QWR4NOSUCH01` (lists what libftdi saw), then
    ftdiprobe on the plain adapter. The QNG sits on the xHCI's first port: libusb then
    lists the plain adapter first, so `qng` has to skip it (asserted)."""
    yield from _boot(qng_image, tmp_path_factory, "usb", q.QNG_SERIAL,
                     {"mode": "usb", "bytes": str(NBYTES), "probe": q.PLAIN_SERIAL,
                      "absent": ABSENT_SERIAL}, qng_port=1)


def _assert_stream(b: Boot) -> None:
    """The guest's bytes are pieces of qngsim's data stream after the start-up test,
    in order, and none is from the 256-byte heads after a start command."""
    res = b.res
    fetched = res.line("FETCH-DONE")
    assert fetched and fetched.startswith(f"rc=0 bytes={NBYTES}"), \
        f"the EGD client in the guest did not get {NBYTES} bytes: {fetched}\n{b.describe()}"
    data = res.files.get("data")
    assert data is not None and len(data) == NBYTES, \
        f"guest sent {None if data is None else len(data)} bytes, not {NBYTES}"
    st = b.stats
    assert st["starts"] >= 1 and st["data"] >= NBYTES + STARTUP_DISCARD, \
        f"qngsim did not stream enough: {st}"
    stream = b.sim.stream(st["data"], "data")
    report = check_source(data, stream, min_offset=STARTUP_DISCARD)
    head = b.sim.stream(st["head"], "head") if st["head"] else b""
    windows = {data[i:i + 8] for i in range(len(data) - 7)}
    leaked = [i for i in range(0, max(0, len(head) - 7)) if head[i:i + 8] in windows]
    assert not leaked, (f"{len(leaked)} 8-byte windows of the post-start heads reached the "
                        f"client (first at head offset {leaked[0]})")
    first = report.pieces[0]
    print(f"{NBYTES} bytes in {report}; first byte = data-stream offset "
          f"{first.file_offset}; head bytes streamed {st['head']} ({st['starts']} starts), "
          f"none delivered; guest fetch took {res.fetch_seconds}s")


def _assert_clean_exit(b: Boot, source: str) -> None:
    log = b.res.text("log")
    assert b.res.line("ENTROPYD-EXIT") == "0", f"entropyd did not exit 0:\n{log}"
    m = re.search(rf"source {re.escape(source)}: (\d+) bytes read, .*?(\d+) repetition-count "
                  rf"and (\d+) adaptive-proportion failures, (\d+) re-opens", log)
    assert m, f"no summary line for source {source} in entropyd's log:\n{log}"
    assert m.group(2, 3, 4) == ("0", "0", "0"), f"health failures or re-opens:\n{log}"


def _ttys(res: q.QngResult, tag: str) -> dict[str, str]:
    """serial → ttyUSBn from the guest's `TAG ttyUSBn serial=S` lines."""
    out = {}
    for line in res.lines(tag):
        m = re.match(r"(ttyUSB\d+) serial=(\S*)", line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


def test_qng_libftdi_picks_the_qwr_chip_and_serves_its_stream(usb_boot):
    """`--source qng` enumerates both FT232s with libftdi, opens only the QWR one
    (ftdi_usb_open_dev, ftdi_set_latency_timer, ftdi_tcioflush, then bulk transfers),
    and a client gets bytes of the simulated QNG's data stream."""
    b = usb_boot
    res = b.res
    usb = "\n".join(res.lines("USB"))
    for serial in (q.PLAIN_SERIAL, q.QNG_SERIAL):
        assert re.search(rf"0403:6001 serial={serial} .*driver=ftdi_sio", usb), \
            f"the guest does not see FT232 {serial} bound to ftdi_sio:\n{usb}"
    log = res.text("log")
    assert re.search(rf"^entropyd: qng {q.QNG_SERIAL}: streaming ", log, re.M), \
        f"entropyd's log does not show it streaming from {q.QNG_SERIAL}:\n{log}"
    assert q.PLAIN_SERIAL not in log, f"entropyd mentions the plain adapter:\n{log}"
    # libftdi enumerated both chips, the plain adapter FIRST, and classified it as no QNG:
    # so `qng` really skipped a 0403:6001 device to reach the QWR one.
    absent = res.text("absent")
    assert res.line("ABSENT-EXIT") == "1", f"qng:{ABSENT_SERIAL} did not fail:\n{absent}"
    seen = re.search(r"FTDI devices seen: (.*)$", absent, re.M)
    assert seen, f"no `FTDI devices seen` list in:\n{absent}"
    listed = re.findall(r"0403:6001 serial (\S+)( \(not a QNG\))?", seen.group(1))
    assert listed == [(q.PLAIN_SERIAL, " (not a QNG)"), (q.QNG_SERIAL, "")], \
        (f"libftdi's enumeration order/classification is {listed}: the test relies on the "
         f"plain adapter being listed before the QNG (else `qng` skips nothing); swap the "
         f"ports (qng_port) if libusb's order changed")
    print(f"libftdi enumeration (ftdi_usb_find_all 0403:6001 + ftdi_usb_get_strings): "
          f"{seen.group(1)}")
    # libftdi detached ftdi_sio from the QNG only: the plain adapter keeps its tty.
    before, during = _ttys(res, "TTY-BEFORE"), _ttys(res, "TTY-DURING")
    assert set(before) == {q.PLAIN_SERIAL, q.QNG_SERIAL}, f"ttys before: {before}"
    assert set(during) == {q.PLAIN_SERIAL}, \
        f"while entropyd ran, ttys were {during}: expected only the plain adapter's"
    _assert_stream(b)
    _assert_clean_exit(b, "qng")
    # Nothing but the probe's own 10 bytes (written after entropyd stopped) reached the
    # plain adapter: entropyd never sent it a command.
    plain = b.plain_out.read_bytes()
    assert plain == b"ftdiprobe\n", f"the plain adapter received {plain[:64]!r}"
    assert b.stats["clears"] >= 1 and b.stats["statuses"] >= 1, \
        f"entropyd did not clear and check the device's status: {b.stats}"


# What QEMU 7.2's usb-serial (an FT232BM, bcdDevice 0x0400) does with each libftdi call
# of the probe: call -> (rc, a substring of the rest of its line). Observed with
# libftdi1 1.5 and QEMU 7.2; a change here means the emulation (or libftdi) changed.
EXPECTED_PROBE = {
    "ftdi_usb_open_desc": (0, "type=1 max_packet_size=64"),          # TYPE_BM
    "ftdi_usb_get_strings2": (0, f"serial='{q.PLAIN_SERIAL}'"),
    "ftdi_set_latency_timer(2)": (0, ""),
    "ftdi_get_latency_timer": (0, "value=2"),
    "ftdi_set_latency_timer(20)": (0, ""),
    "ftdi_get_latency_timer#2": (0, "value=20"),
    # Idle chip: no status-only packets every latency period, just a timeout.
    "ftdi_read_data": (-7, "err=usb bulk read failed"),
    "libusb_bulk_transfer(IN)": (-7, "transferred=0"),
    "ftdi_set_baudrate(115200)": (0, "actual=115200"),
    "ftdi_set_line_property(8N1)": (0, ""),
    "ftdi_setflowctrl(SIO_RTS_CTS_HS)": (0, ""),
    "ftdi_setflowctrl(SIO_DISABLE_FLOW_CTRL)": (0, ""),
    "ftdi_setdtr_rts(1,1)": (0, ""),
    "ftdi_poll_modem_status": (0, "status="),
    "ftdi_set_event_char": (0, ""),
    "ftdi_set_error_char": (0, ""),
    "ftdi_set_bitmode(0xff,BITMODE_RESET)": (-1, "unable to configure bitbang mode"),
    "ftdi_set_bitmode(0xff,BITMODE_SYNCFF)": (-1, "unable to configure bitbang mode"),
    "ftdi_read_pins": (-1, "read pins failed"),
    "ftdi_set_bitmode(0x00,BITMODE_RESET)": (-1, "unable to configure bitbang mode"),
    "ftdi_tcioflush": (0, ""),
    "ftdi_write_data(10)": (10, ""),
    "ftdi_read_eeprom": (-1, "reading eeprom failed"),
    "ftdi_read_chipid": (-1, "read of FTDIChip-ID failed"),
    "ftdi_usb_reset": (0, ""),
    "ftdi_usb_close": (0, ""),
}


def test_emulated_ft232_libftdi_calls(usb_boot):
    """Each libftdi call on QEMU's emulated FT232 (the plain adapter, after entropyd
    stopped), compared with EXPECTED_PROBE. Works: open, strings, latency timer
    set/get (value stored), baud rate, line properties, flow control, DTR/RTS, modem
    status, event/error char, tcioflush, write, usb_reset, close. Does not work:
    ftdi_set_bitmode (every mode) -1, ftdi_read_pins -1, ftdi_read_eeprom -1,
    ftdi_read_chipid -1; and an idle ftdi_read_data fails -7 after its timeout where a
    real chip returns 0 within one latency period (the latency timer's timing is not
    emulated)."""
    res = usb_boot.res
    text = res.text("probe")
    assert res.line("PROBE-EXIT") == "0" and "PROBE-DONE" in text, \
        f"ftdiprobe did not finish:\n{text}\n{usb_boot.describe()}"
    got = q.parse_probe(text)
    print("libftdi calls on QEMU's emulated FT232 (rc, details):")
    for call, (rc, rest) in got.items():
        print(f"  {call:42s} rc={rc:3d} {rest}")
    mismatches = []
    for call, (rc, needle) in EXPECTED_PROBE.items():
        if call not in got:
            mismatches.append(f"{call}: missing from the probe's output")
        elif got[call][0] != rc or needle not in got[call][1]:
            mismatches.append(f"{call}: expected rc={rc} with {needle!r}, got "
                              f"rc={got[call][0]} {got[call][1]!r}")
    extra = sorted(set(got) - set(EXPECTED_PROBE))
    assert not mismatches and not extra, \
        "the emulated FT232 behaves differently than recorded:\n  " + \
        "\n  ".join(mismatches + [f"{c}: not expected" for c in extra])
    # The idle read really waited for its whole timeout (no early status packet).
    elapsed = float(re.search(r"elapsed_ms=(\d+)", got["ftdi_read_data"][1]).group(1))
    assert elapsed >= 250, f"idle ftdi_read_data returned after {elapsed} ms"


def test_qng_tty_through_kernel_ftdi_sio(qng_image, tmp_path_factory):
    """`--source qng:tty=/dev/ttyUSBn`, the ttyUSB whose USB serial is QWR4SIM00005,
    through the guest kernel's ftdi_sio: a client gets bytes of the QNG's stream."""
    gen = _boot(qng_image, tmp_path_factory, "tty", q.QNG_SERIAL,
                {"mode": "tty", "bytes": str(NBYTES), "serial": q.QNG_SERIAL})
    b = next(gen)
    try:
        res = b.res
        before = _ttys(res, "TTY-BEFORE")
        assert set(before) == {q.PLAIN_SERIAL, q.QNG_SERIAL}, f"ttys before: {before}"
        tty = f"/dev/{before[q.QNG_SERIAL]}"
        assert res.line("QNG-TTY") == tty, f"guest chose {res.line('QNG-TTY')}, not {tty}"
        log = res.text("log")
        assert re.search(rf"^entropyd: qng tty {re.escape(tty)}: streaming ", log, re.M), \
            f"entropyd's log does not show it streaming from {tty}:\n{log}"
        # ftdi_sio keeps both chips: the kernel driver is in use, not libftdi.
        assert set(_ttys(res, "TTY-DURING")) == {q.PLAIN_SERIAL, q.QNG_SERIAL}
        _assert_stream(b)
        _assert_clean_exit(b, f"qng:tty={tty}")
        plain = b.plain_out.read_bytes()
        assert plain == b"", f"the plain adapter received {plain[:64]!r}"
        # The plain adapter is ttyUSB0: the QNG's tty was found by its serial, not first.
        assert before[q.PLAIN_SERIAL] == "ttyUSB0", f"ttys: {before}"
    finally:
        next(gen, None)


def test_qng_gen4_setup_fails_on_emulated_ft232_set_bitmode(qng_image, tmp_path_factory):
    """A generation-4 serial (QWR7...) makes entropyd do the gen-4 set-up: on QEMU's
    emulated FT232 its first ftdi_set_bitmode(0xff, BITMODE_RESET) fails, so entropyd
    (-n: open the source and exit) refuses the device with that exact reason and sends
    the simulated QNG no command. This records the limitation: the gen-4+ path
    (bit mode reset, synchronous FIFO mode, RTS/CTS, 64 KiB transfers) is NOT exercised
    by any emulated device; it needs real hardware (and 0403:6014, which QEMU's
    usb-serial cannot present)."""
    gen = _boot(qng_image, tmp_path_factory, "gen4", q.GEN4_SERIAL,
                {"mode": "gen4", "serial": q.GEN4_SERIAL})
    b = next(gen)
    try:
        log = b.res.text("log")
        print(f"entropyd -n --source qng:{q.GEN4_SERIAL} in the guest:\n{log}")
        assert b.res.line("CHECK-EXIT") == "1", \
            f"entropyd -n did not fail (exit {b.res.line('CHECK-EXIT')}):\n{log}"
        assert (f"{q.GEN4_SERIAL}: resetting the bit mode failed: unable to configure "
                f"bitbang mode") in log, f"unexpected failure reason:\n{log}"
        assert b.stats["delimits"] == 0 and b.stats["starts"] == 0, \
            f"commands reached the device despite the failed set-up: {b.stats}"
    finally:
        next(gen, None)
