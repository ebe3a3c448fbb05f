"""Cross-build entropyd for Debian ppc64el and collect what it needs to run in a guest.

Used by test_darn_ppc64.py, which runs the cross-built daemon inside the ppc64 pseries
guest of ppc64.py. Three steps, each cached:

  * Toolchain: Debian's gcc-powerpc64le-linux-gnu (with binutils-powerpc64le-linux-gnu
    and libc6-dev-ppc64el-cross), installed with apt-get if it is missing. These are
    amd64/all packages: nothing is tied to the versions of the host's own libraries.
  * Sysroot: the ppc64el library packages (-dev and runtime) are fetched with
    `apt-get download PKG:ppc64el` and unpacked with `dpkg -x` into
    <cache>/ppc64el-sysroot-<hash>. They are deliberately *not* installed as multiarch
    packages: a Multi-Arch: same library must have the same version for amd64 and
    ppc64el, and on a host whose amd64 libraries come from bookworm-security while that
    archive's ppc64el index fails to download (it does, now and then) apt cannot install
    e.g. libevent-dev:ppc64el at all without downgrading the host's libevent.
  * Build: meson with tests/e2e/ppc64el-cross.ini plus a generated cross file that points
    pkg-config and the linker at the sysroot, into build-ppc64el/ (or
    $ENTROPYD_PPC64EL_BUILD); ninja rebuilds when sources change.

runtime_files() then lists the executable's shared-library closure (DT_NEEDED, resolved in
the sysroot) and the ppc64el dynamic loader, as {path in the guest: bytes}.

Every failure raises CrossBuildError (a GuestError) with the reason; callers turn it into
a test failure, never a skip. Every command is bounded in time.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from guest import REPO_ROOT, GuestError, cache_dir
from ppc64 import APT_LOCK_WAIT, _apt_update, _ensure_foreign_arch, _locked, _run

ARCH = "ppc64el"
TRIPLET = "powerpc64le-linux-gnu"
CC = f"{TRIPLET}-gcc"
READELF = f"{TRIPLET}-readelf"
STRIP = f"{TRIPLET}-strip"
# The host packages the cross build needs (--no-install-recommends).
# (libc6-dev-ppc64el-cross is only a Recommends of gcc-powerpc64le-linux-gnu: name it.)
TOOLCHAIN_PACKAGES = ("gcc-powerpc64le-linux-gnu", "libc6-dev-ppc64el-cross", "pkg-config",
                      "meson", "ninja-build")
# Files whose absence means a package above is missing.
CROSS_LIBC_DEV = Path(f"/usr/{TRIPLET}/lib/crti.o")
# ppc64el packages unpacked into the sysroot: what meson.build asks pkg-config for, and
# the run-time libraries of those (checked against DT_NEEDED by runtime_files()).
DEV_PACKAGES = ("libevent-dev", "libsystemd-dev", "libftdi1-dev", "libusb-1.0-0-dev",
                "libcmocka-dev", "libssl-dev", "libseccomp-dev", "libjson-c-dev")
RUNTIME_PACKAGES = ("libc6", "libevent-core-2.1-7", "libsystemd0", "libcap2", "libgcrypt20",
                    "libgpg-error0", "liblz4-1", "liblzma5", "libzstd1", "libftdi1-2",
                    "libusb-1.0-0", "libudev1", "libcmocka0", "libssl3", "libseccomp2",
                    "libjson-c5")
STATIC_CROSS_FILE = Path(__file__).resolve().parent / "ppc64el-cross.ini"
LOADER = "/lib64/ld64.so.2"
GUEST_LIBDIR = f"/lib/{TRIPLET}"


class CrossBuildError(GuestError):
    """The ppc64el cross build (toolchain, sysroot, meson/ninja) is not possible."""


def build_dir() -> Path:
    env = os.environ.get("ENTROPYD_PPC64EL_BUILD")
    return Path(env) if env else REPO_ROOT / "build-ppc64el"


def ensure_toolchain() -> None:
    """The cross compiler (and meson, ninja, pkg-config), installed if missing."""
    def lacking() -> list[str]:
        tools = [t for t in (CC, READELF, STRIP, "pkg-config", "meson", "ninja")
                 if shutil.which(t) is None]
        return tools + ([str(CROSS_LIBC_DEV)] if not CROSS_LIBC_DEV.exists() else [])

    missing = lacking()
    if not missing:
        return
    if os.geteuid() != 0:
        raise CrossBuildError(f"missing {', '.join(missing)} and we are not root: "
                              f"apt-get install {' '.join(TOOLCHAIN_PACKAGES)}")
    p = _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_LOCK_WAIT,
              *TOOLCHAIN_PACKAGES], what="install the ppc64el cross toolchain", check=False)
    if p.returncode != 0:
        _apt_update()
        p = _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_LOCK_WAIT,
                  *TOOLCHAIN_PACKAGES], what="install the ppc64el cross toolchain",
                 check=False)
    still = lacking()
    if still:
        raise CrossBuildError(f"apt-get install {' '.join(TOOLCHAIN_PACKAGES)} (exit "
                              f"{p.returncode}) left no {', '.join(still)}:\n"
                              f"{p.stdout[-2000:]}{p.stderr[-2000:]}")


def _relink_absolute_symlinks(root: Path) -> None:
    """Make absolute symlinks inside root point inside root (libfoo.so -> /lib/...)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                target = os.readlink(p)
                if target.startswith("/"):
                    p.unlink()
                    p.symlink_to(os.path.relpath(root / target.lstrip("/"), p.parent))


def ensure_sysroot() -> Path:
    """The ppc64el sysroot (downloaded and unpacked once); CrossBuildError on failure."""
    packages = sorted(DEV_PACKAGES + RUNTIME_PACKAGES)
    tag = hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
    cache = cache_dir()
    root = cache / f"{ARCH}-sysroot-{tag}"
    stamp = root / ".complete"
    with _locked(cache / ".lock-ppc64el-sysroot"):
        if stamp.exists():
            return root
        _ensure_foreign_arch()
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="sysroot-dl-", dir=cache))
        try:
            names = [f"{p}:{ARCH}" for p in packages]
            cmd = ["apt-get", "download", *names]
            p = _run(cmd, cwd=work, what="download the ppc64el libraries", check=False)
            if p.returncode != 0 and os.geteuid() == 0:
                _apt_update()
                p = _run(cmd, cwd=work, what="download the ppc64el libraries", check=False)
            debs = sorted(work.glob("*.deb"))
            got = {d.name.split("_", 1)[0] for d in debs}
            lacking = [n for n in packages if n not in got]
            if p.returncode != 0 or lacking:
                raise CrossBuildError(
                    f"`apt-get download {' '.join(names)}` failed (exit {p.returncode}; "
                    f"missing: {', '.join(lacking) or 'none'}):\n"
                    f"{p.stdout[-2000:]}{p.stderr[-2000:]}")
            tree = work / "root"
            versions = []
            for deb in debs:
                _run(["dpkg", "-x", str(deb), str(tree)], what=f"unpack {deb.name}")
                versions.append(deb.name)
            _relink_absolute_symlinks(tree)
            (tree / ".complete").write_text("\n".join(versions) + "\n")
            if root.exists():
                shutil.rmtree(root)
            tree.rename(root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return root


def _lib_dirs(sysroot: Path) -> list[Path]:
    return [sysroot / "lib" / TRIPLET, sysroot / "usr" / "lib" / TRIPLET]


def _generated_cross_file(sysroot: Path) -> str:
    pc = [sysroot / "usr" / "lib" / TRIPLET / "pkgconfig", sysroot / "usr" / "share" / "pkgconfig"]
    rpath_link = ":".join(str(d) for d in _lib_dirs(sysroot))
    return ("# Generated by tests/e2e/crossbuild.py: the sysroot of unpacked ppc64el packages.\n"
            "[properties]\n"
            f"pkg_config_libdir = [{', '.join(repr(str(p)) for p in pc)}]\n"
            f"sys_root = {str(sysroot)!r}\n"
            "\n[built-in options]\n"
            # Multiarch headers (openssl/opensslconf.h) live under include/TRIPLET, which the
            # cross compiler searches only in its own tree, not in the sysroot.
            f"c_args = ['-isystem', {str(sysroot / 'usr' / 'include' / TRIPLET)!r}]\n"
            f"c_link_args = ['-Wl,-rpath-link,{rpath_link}']\n")


def build() -> Path:
    """Cross-build entropyd (cached; meson/ninja rebuild what changed); its path."""
    ensure_toolchain()
    sysroot = ensure_sysroot()
    bdir = build_dir()
    gen = cache_dir() / f"{ARCH}-sysroot-cross.ini"
    text = _generated_cross_file(sysroot)
    with _locked(cache_dir() / f".lock-{ARCH}-build"):
        configured = (bdir / "build.ninja").exists()
        stale = not gen.exists() or gen.read_text() != text
        if stale:
            gen.write_text(text)
        if not configured or stale:
            cmd = ["meson", "setup", str(bdir), "--cross-file", str(STATIC_CROSS_FILE),
                   "--cross-file", str(gen)]
            if configured:
                cmd.append("--wipe")
            elif bdir.exists():
                shutil.rmtree(bdir)  # a failed set-up: meson cannot --wipe it
            p = _run(cmd, cwd=REPO_ROOT, timeout=300, what="meson setup (ppc64el)",
                     check=False)
            if p.returncode != 0:
                raise CrossBuildError(f"`{' '.join(cmd)}` exited {p.returncode}:\n"
                                      f"{p.stdout[-4000:]}{p.stderr[-2000:]}")
        p = _run(["ninja", "-C", str(bdir), "entropyd"], timeout=900,
                 what="ninja (ppc64el)", check=False)
        if p.returncode != 0:
            raise CrossBuildError(f"`ninja -C {bdir} entropyd` exited {p.returncode}:\n"
                                  f"{p.stdout[-6000:]}{p.stderr[-2000:]}")
    exe = bdir / "entropyd"
    head = exe.read_bytes()[:20] if exe.exists() else b""
    # ELF, 64-bit, little-endian, e_machine EM_PPC64 (21).
    if head[:6] != b"\x7fELF\x02\x01" or head[18:20] != b"\x15\x00":
        raise CrossBuildError(f"{exe} is not a little-endian ELF64 PowerPC executable")
    return exe


def _dynamic(path: Path) -> tuple[list[str], str | None]:
    """(DT_NEEDED names, PT_INTERP) of a ppc64el ELF file, from readelf."""
    p = _run([READELF, "-d", "-l", "-W", str(path)], timeout=60, what=f"readelf {path.name}")
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", p.stdout)
    interp = re.search(r"Requesting program interpreter: ([^\]]+)\]", p.stdout)
    return needed, interp.group(1) if interp else None


def runtime_files(exe: Path, sysroot: Path | None = None) -> dict[str, tuple[int, bytes]]:
    """{guest path: (mode, bytes)}: the stripped executable as /bin/entropyd, every shared
    library it needs (transitively) in /lib/powerpc64le-linux-gnu, the loader at
    /lib64/ld64.so.2. CrossBuildError if any library is not in the sysroot."""
    sysroot = sysroot or ensure_sysroot()
    files: dict[str, tuple[int, bytes]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stripped = Path(tmp) / "entropyd"
        _run([STRIP, "-o", str(stripped), str(exe)], timeout=60, what="strip entropyd")
        files["bin/entropyd"] = (0o100755, stripped.read_bytes())
    needed, interp = _dynamic(exe)
    if interp != LOADER:
        raise CrossBuildError(f"{exe} asks for the loader {interp!r}, expected {LOADER}")
    loader = sysroot / "lib" / TRIPLET / "ld64.so.2"
    if not loader.exists():
        raise CrossBuildError(f"no ppc64el loader {loader} in the sysroot (libc6:{ARCH})")
    files[LOADER.lstrip("/")] = (0o100755, loader.resolve().read_bytes())
    todo, seen = list(needed), set()
    while todo:
        name = todo.pop()
        if name in seen or name == "ld64.so.2":
            continue
        seen.add(name)
        hits = [d / name for d in _lib_dirs(sysroot) if (d / name).exists()]
        if not hits:
            raise CrossBuildError(f"{exe.name} needs {name}, which none of the unpacked "
                                  f"ppc64el packages provides (add its package to "
                                  f"crossbuild.RUNTIME_PACKAGES)")
        real = hits[0].resolve()
        files[f"{GUEST_LIBDIR.lstrip('/')}/{name}"] = (0o100755, real.read_bytes())
        todo.extend(_dynamic(real)[0])
    return files
