"""doc/libvirt.md against the QEMU command line libvirt really generates.

Every ```xml block of doc/libvirt.md is parsed out of the document (so the doc
and this test cannot drift apart), wrapped in a minimal domain and converted
with `virsh domxml-to-native qemu-argv` after `virsh define --validate` (libvirt's
parser silently ignores unknown elements and attributes, the RNG schema does not).

  * An `<rng>` block goes inside `<devices>` of an x86_64 `pc` domain; the
    "→ `…`" that follows it in the doc lists QEMU arguments, each of which must
    appear in the generated command line. They are compared semantically:
    `-opt a,k=v` and libvirt's JSON `-opt {"qom-type"/"driver":"a","k":"v"}` are
    the same; numbers, strings and on/off booleans compare by value. An argument
    written with `…` may have more keys in the real one; one written without
    `…` must match it exactly (same keys, same values).
  * A `<qemu:commandline>` block goes into a `<domain>` that carries the
    `xmlns:qemu` the doc names next to it (a ppc64 `pseries` domain when it is
    about spapr-rng); its `<qemu:arg>` values must appear in order, verbatim.
  * A ```conf block in a section is the qemu.conf its snippets need (TLS:
    `chardev_tls`, `chardev_tls_x509_cert_dir`). Those snippets get their own
    embedded libvirt whose ROOT/etc/qemu.conf is that text, with every absolute
    `*_dir` path moved under ROOT (libvirt refuses a directory that does not
    exist, and nothing on the host is made); the generated command line is read
    with ROOT taken off those paths again, so the doc's paths are compared.

libvirt runs in-process through the embedded QEMU driver (`qemu:///embed?root=DIR`,
libvirt >= 6.1): no libvirtd, no socket, nothing on the host configuration is
read or written, everything lives under a temporary DIR. As root the driver would
be "privileged" and insist on the `libvirt-qemu` user that only
libvirt-daemon-system creates, so as root virsh is run as `nobody` (setpriv);
the chardev/rng arguments do not depend on that.

Needs (Debian 12, installed by the Makefile): libvirt-clients libvirt-daemon
libvirt-daemon-driver-qemu qemu-system-x86 qemu-system-ppc. A missing piece
fails the test with the reason; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

DOC = Path(os.environ.get("ENTROPYD_LIBVIRT_DOC",
                         Path(__file__).resolve().parents[2] / "doc" / "libvirt.md"))
VIRSH_TIMEOUT = float(os.environ.get("ENTROPYD_VIRSH_TIMEOUT", "120"))
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
EMULATORS = {
    "x86_64": ("/usr/bin/qemu-system-x86_64", "pc", "qemu-system-x86"),
    "ppc64": ("/usr/bin/qemu-system-ppc64", "pseries", "qemu-system-ppc"),
}
PACKAGES = ("libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu "
            "qemu-system-x86 qemu-system-ppc")

# The implied first key of `-opt value,k=v` in QEMU's keyval syntax.
IMPLIED_KEY = {"-object": "qom-type", "-device": "driver", "-chardev": "backend",
               "-netdev": "type"}


# --------------------------------------------------------------------------
# The doc: its snippets and their expectations
# --------------------------------------------------------------------------

@dataclass
class Snippet:
    section: str          # the `## ` heading it is under
    index: int            # its number among the doc's ```xml blocks
    line: int             # 1-based line of its ```xml fence
    xml: str
    expectation: str | None           # the text of "→ `…`", if any
    domain_tag: str | None = None     # a `<domain …>` named in the section's prose
    qemu_conf: str | None = None      # the ```conf block of its section, if any

    @property
    def ident(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-")[:40]
        return f"{self.index}-{slug}"


def parse_doc(text: str) -> list[Snippet]:
    """Every ```xml block, with the "→ `…`" that follows it (before the next
    block or heading) and any `<domain …>` the prose of its section shows."""
    snippets: list[Snippet] = []
    section = "(no section)"
    section_start = 0
    fence = re.compile(r"^```xml[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
    conf_fence = re.compile(r"^```conf[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
    heading = re.compile(r"^## +(.+)$", re.M)
    headings = [(m.start(), m.group(1).strip()) for m in heading.finditer(text)]
    blocks = list(fence.finditer(text))
    for i, m in enumerate(blocks):
        for pos, title in headings:
            if pos < m.start():
                section, section_start = title, pos
        # The text after the block up to the next block or heading.
        end = len(text)
        if i + 1 < len(blocks):
            end = blocks[i + 1].start()
        for pos, _ in headings:
            if m.end() < pos < end:
                end = pos
                break
        after = text[m.end():end]
        arrow = re.search(r"→\s*`([^`]+)`", after)
        prose = text[section_start:m.start()]
        dom = re.search(r"`(<domain\b[^`]*>)`", prose)
        section_end = next((pos for pos, _ in headings if pos > m.start()), len(text))
        conf = conf_fence.search(text, section_start, section_end)
        snippets.append(Snippet(
            section=section, index=i + 1, line=text.count("\n", 0, m.start()) + 1,
            xml=m.group(1),
            expectation=" ".join(arrow.group(1).split()) if arrow else None,
            domain_tag=dom.group(1) if dom else None,
            qemu_conf=conf.group(1) if conf else None))
    return snippets


SNIPPETS = parse_doc(DOC.read_text(encoding="utf-8")) if DOC.exists() else []


# --------------------------------------------------------------------------
# QEMU arguments: parsing and semantic comparison
# --------------------------------------------------------------------------

def split_keyval(value: str) -> list[str]:
    """Split QEMU's `a,b=c,d` on single commas (`,,` is an escaped comma)."""
    parts, cur, i = [], "", 0
    while i < len(value):
        if value[i] == ",":
            if value[i + 1:i + 2] == ",":
                cur += ","
                i += 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += value[i]
        i += 1
    parts.append(cur)
    return parts


def norm(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    s = str(v)
    return {"true": "on", "yes": "on", "false": "off", "no": "off"}.get(s, s)


def arg_props(opt: str, value: str) -> tuple[dict[str, str], bool]:
    """The properties of one option value (JSON or keyval) and whether the
    doc's `…` marks it as a fragment."""
    partial = "…" in value
    v = re.sub(r",?\s*…", "", value)
    if v.startswith("{"):
        try:
            obj = json.loads(v)
        except json.JSONDecodeError as e:
            raise ValueError(f"{opt} {value!r} is not JSON: {e}") from None
        return {k: norm(x) for k, x in obj.items()}, partial
    props: dict[str, str] = {}
    for n, part in enumerate(split_keyval(v)):
        if "=" in part:
            k, x = part.split("=", 1)
            props[k] = norm(x)
        elif n == 0 and part:
            props[IMPLIED_KEY.get(opt, "")] = part
        elif part:
            props[part] = "on"      # a bare flag
    return props, partial


def pair_options(tokens: list[str]) -> list[tuple[str, str | None]]:
    """[(option, value-or-None)] from a QEMU argv (without the binary)."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.startswith("-") and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
            out.append((t, tokens[i + 1]))
            i += 2
        else:
            out.append((t, None))
            i += 1
    return out


def parse_expectation(text: str) -> list[tuple[str, str]]:
    tokens = text.split()
    pairs = pair_options(tokens)
    bad = [o for o, v in pairs if v is None or not o.startswith("-")]
    if bad:
        raise ValueError(f"cannot read {bad} as `-option value` in {text!r}")
    return [(o, v) for o, v in pairs]  # type: ignore[misc]


@dataclass
class Argv:
    raw: str
    tokens: list[str]           # after the emulator binary
    options: list[tuple[str, str | None]]

    def find(self, opt: str, want: dict[str, str], partial: bool) -> bool:
        for o, v in self.options:
            if o != opt or v is None:
                continue
            try:
                have, _ = arg_props(o, v)
            except ValueError:
                continue
            if partial and all(have.get(k) == x for k, x in want.items()):
                return True
            if not partial and have == want:
                return True
        return False

    def same_option(self, opt: str) -> list[str]:
        return [v for o, v in self.options if o == opt and v is not None]


def parse_argv(out: str) -> Argv:
    """virsh prints `ENV=… /usr/bin/qemu-system-… args`, shell-quoted, one line."""
    tokens = shlex.split(out)
    while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
        tokens.pop(0)
    if not tokens or "qemu-system" not in tokens[0]:
        raise ValueError(f"no QEMU binary in virsh's output: {out!r}")
    rest = tokens[1:]
    return Argv(raw=out.strip(), tokens=rest, options=pair_options(rest))


# --------------------------------------------------------------------------
# libvirt: the embedded QEMU driver, run by virsh, bounded in time
# --------------------------------------------------------------------------

CONF_DIR = re.compile(r'^(\s*\w+_dir\s*=\s*")(/[^"]*)(")', re.M)


class Libvirt:
    def __init__(self, root: Path, as_user: tuple[int, int] | None):
        self.root = root
        self.as_user = as_user
        self.uri = f"qemu:///embed?root={root}"
        self.moved: dict[str, str] = {}     # ROOT/path -> path, for `*_dir` settings

    def configure(self, qemu_conf: str) -> None:
        """Write ROOT/etc/qemu.conf, every absolute `*_dir` path moved under ROOT (made)."""
        def move(m: re.Match) -> str:
            inside = f"{self.root}{m.group(2)}"
            Path(inside).mkdir(parents=True, exist_ok=True)
            self.moved[inside] = m.group(2)
            return f"{m.group(1)}{inside}{m.group(3)}"

        conf = self.root / "etc" / "qemu.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(CONF_DIR.sub(move, qemu_conf), encoding="utf-8")
        if self.as_user:
            for p in [conf.parent, *conf.parent.rglob("*")]:
                os.chown(p, *self.as_user)

    def unmove(self, out: str) -> str:
        """The generated command line with the moved `*_dir` paths as the doc writes them."""
        for inside, outside in sorted(self.moved.items(), key=lambda kv: -len(kv[0])):
            out = out.replace(inside, outside)
        return out

    def _cmd(self, *args: str) -> list[str]:
        cmd = ["virsh", "--quiet", "-c", self.uri, *args]
        if self.as_user:
            uid, gid = self.as_user
            cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *cmd]
        return cmd

    def _env(self) -> dict[str, str]:
        r = str(self.root)
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": r,
                "XDG_CACHE_HOME": f"{r}/xdg/cache", "XDG_CONFIG_HOME": f"{r}/xdg/config",
                "XDG_RUNTIME_DIR": f"{r}/xdg/run", "LIBVIRT_DEFAULT_URI": self.uri}

    def virsh(self, *args: str, timeout: float = VIRSH_TIMEOUT) -> subprocess.CompletedProcess:
        p = subprocess.Popen(self._cmd(*args), env=self._env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             stdin=subprocess.DEVNULL)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(p)
            out, err = p.communicate()
            self.kill_probes()
            pytest.fail(f"`{shlex.join(self._cmd(*args))}` did not finish in {timeout:g} s "
                        f"(killed). stdout: {out!r} stderr: {err!r}", pytrace=False)
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)

    @staticmethod
    def _kill_group(p: subprocess.Popen) -> None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill_probes(self) -> None:
        """A capability-probing QEMU that libvirt started under our root and
        that outlived virsh: ended by the PID in its pid file, if it is ours."""
        for pidfile in self.root.rglob("*.pid"):
            try:
                pid = int(pidfile.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if b"qemu-system" in cmdline and str(self.root).encode() in cmdline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _missing_tools() -> list[str]:
    missing = [t for t in ("virsh",) + (("setpriv",) if os.geteuid() == 0 else ())
               if not shutil.which(t)]
    for emu, _, pkg in EMULATORS.values():
        if not os.access(emu, os.X_OK):
            missing.append(f"{emu} (package {pkg})")
    driver = list(Path("/usr/lib").glob("*/libvirt/connection-driver/libvirt_driver_qemu.so"))
    if not driver:
        missing.append("libvirt's QEMU driver libvirt_driver_qemu.so "
                       "(package libvirt-daemon-driver-qemu)")
    return missing


@pytest.fixture(scope="module")
def libvirt_for():
    """libvirt_for(qemu_conf) -> a started embedded libvirt (one per distinct qemu.conf,
    None: libvirt's defaults), each under its own temporary ROOT."""
    missing = _missing_tools()
    if missing:
        pytest.fail(f"libvirt cannot be run: missing {', '.join(missing)}; "
                    f"apt-get install --no-install-recommends {PACKAGES}", pytrace=False)
    made: dict[str | None, Libvirt] = {}
    bases: list[Path] = []

    def get(qemu_conf: str | None) -> Libvirt:
        if qemu_conf in made:
            return made[qemu_conf]
        base = Path(tempfile.mkdtemp(prefix="entropyd-libvirt-"))
        bases.append(base)
        root = base / "root"
        root.mkdir()
        as_user = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("nobody")
                as_user = (pw.pw_uid, pw.pw_gid)
            except KeyError:
                as_user = (65534, 65534)
            os.chmod(base, 0o755)
            os.chown(root, *as_user)
        lv = Libvirt(root, as_user)
        made[qemu_conf] = lv
        if qemu_conf is not None:
            lv.configure(qemu_conf)
        p = lv.virsh("version")
        if p.returncode != 0:
            pytest.fail(f"libvirt's embedded QEMU driver does not start "
                        f"(`{shlex.join(p.args)}`, exit {p.returncode}):\n{p.stderr}{p.stdout}"
                        + (f"\nqemu.conf:\n{qemu_conf}" if qemu_conf else ""), pytrace=False)
        print(p.stdout)
        return lv

    try:
        yield get
    finally:
        for lv in made.values():
            lv.kill_probes()
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------
# Wrapping a snippet in a domain
# --------------------------------------------------------------------------

def snippet_root_tag(xml: str) -> str:
    m = re.match(r"\s*<([A-Za-z_][\w:.-]*)", xml)
    if not m:
        raise ValueError(f"not an XML element: {xml[:60]!r}")
    return m.group(1)


def ppc64_section(s: Snippet) -> bool:
    return bool(re.search(r"ppc64|pseries|spapr", s.section + s.xml, re.I))


def wrap(s: Snippet, name: str) -> tuple[str, str]:
    """(domain XML, arch) for one snippet."""
    tag = snippet_root_tag(s.xml)
    ns_attrs = ""
    if tag.startswith("qemu:"):
        if not s.domain_tag:
            raise ValueError("a <qemu:…> block, but its section names no `<domain …>` "
                             "with the xmlns:qemu it needs")
        ns = re.search(r"xmlns:qemu\s*=\s*['\"]([^'\"]+)['\"]", s.domain_tag)
        if not ns:
            raise ValueError(f"{s.domain_tag} declares no xmlns:qemu")
        ns_attrs = f" xmlns:qemu='{ns.group(1)}'"
    arch = "ppc64" if ppc64_section(s) else "x86_64"
    emulator, machine, _ = EMULATORS[arch]
    # type='qemu' (TCG): there is no KVM here, and none for ppc64 on x86 anyway;
    # the accelerator does not change the chardev/rng/qemu:commandline arguments.
    devices = s.xml if tag == "rng" else ""
    outside = s.xml if tag != "rng" else ""
    dom = f"""<domain type='qemu'{ns_attrs}>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <os>
    <type arch='{arch}' machine='{machine}'>hvm</type>
  </os>
  <devices>
    <emulator>{emulator}</emulator>
{devices}
  </devices>
{outside}
</domain>
"""
    ET.fromstring(dom)   # well-formed, or fail here with the parser's message
    return dom, arch


# --------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------

def test_doc_has_snippets():
    assert DOC.exists(), f"{DOC} is missing"
    assert SNIPPETS, f"no ```xml block found in {DOC}"
    for s in SNIPPETS:
        tag = snippet_root_tag(s.xml)
        assert tag in ("rng", "qemu:commandline"), (
            f"{DOC.name}:{s.line} ({s.section}): a <{tag}> block; this test knows "
            f"where to put <rng> and <qemu:commandline> only")
        if tag == "rng":
            assert s.expectation, (f"{DOC.name}:{s.line} ({s.section}): the <rng> block "
                                   f"is followed by no \"→ `QEMU arguments`\"")


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.ident for s in SNIPPETS])
def test_snippet(libvirt_for, snippet: Snippet):
    where = f"{DOC.name}:{snippet.line} ({snippet.section})"
    libvirt = libvirt_for(snippet.qemu_conf)
    if snippet.qemu_conf:
        print(f"--- qemu.conf for {where}\n{snippet.qemu_conf}")
    name = f"doc{snippet.index}"
    try:
        dom, arch = wrap(snippet, name)
    except (ValueError, ET.ParseError) as e:
        pytest.fail(f"{where}: cannot wrap the snippet in a domain: {e}", pytrace=False)
    xmlfile = libvirt.root / f"{name}.xml"
    xmlfile.write_text(dom, encoding="utf-8")
    os.chmod(xmlfile, 0o644)
    print(f"--- domain for {where} ({arch})\n{dom}")

    # The schema: libvirt's own parser ignores what it does not know.
    p = libvirt.virsh("define", "--validate", str(xmlfile))
    if p.returncode != 0:
        pytest.fail(f"{where}: libvirt rejects the domain (`virsh define --validate`):\n"
                    f"{p.stderr.strip()}\n{dom}", pytrace=False)
    libvirt.virsh("undefine", name)

    p = libvirt.virsh("domxml-to-native", "qemu-argv", str(xmlfile))
    if p.returncode != 0:
        pytest.fail(f"{where}: libvirt rejects the snippet (`virsh domxml-to-native "
                    f"qemu-argv`):\n{p.stderr.strip()}\n{dom}", pytrace=False)
    try:
        argv = parse_argv(libvirt.unmove(p.stdout))
    except ValueError as e:
        pytest.fail(f"{where}: {e}", pytrace=False)
    print(f"--- generated command line\n{argv.raw}")

    problems: list[str] = []
    if snippet.expectation:
        try:
            expected = parse_expectation(snippet.expectation)
        except ValueError as e:
            pytest.fail(f"{where}: the doc's expectation: {e}", pytrace=False)
        for opt, value in expected:
            want, partial = arg_props(opt, value)
            if not argv.find(opt, want, partial):
                have = argv.same_option(opt)
                problems.append(f"{opt} {value}\n    not in the generated {opt} arguments:\n"
                                + "".join(f"      {opt} {h}\n" for h in have))

    if snippet_root_tag(snippet.xml) == "qemu:commandline":
        root = ET.fromstring(f"<x xmlns:qemu='{QEMU_NS}'>{snippet.xml}</x>")
        values = [a.get("value") for a in root.iter(f"{{{QEMU_NS}}}arg")]
        if not values:
            problems.append("the <qemu:commandline> block has no <qemu:arg value=…>")
        n = len(values)
        if not any(argv.tokens[i:i + n] == values for i in range(len(argv.tokens) - n + 1)):
            problems.append(f"the qemu:arg values {values} are not in the command line "
                            f"in that order")

    if problems:
        pytest.fail(f"{where}: libvirt 9.0 generates something else than the doc says:\n"
                    + "\n".join(f"  {x}" for x in problems)
                    + f"\ngenerated: {argv.raw}", pytrace=False)
