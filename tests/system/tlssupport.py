"""Certificates for the TLS system tests, made by the `openssl` command in a temporary
directory, laid out as QEMU's tls-creds-x509 expects (ca-cert.pem, server-cert.pem,
server-key.pem, client-cert.pem, client-key.pem, ca-crl.pem), and Python `ssl` contexts
that use them.

pki(tmp_path) makes: a CA and a second CA; a server certificate for IP 127.0.0.1 (and one
for the name "other.example", to show a wrong host name); client certificates
CN=hv1,O=example and CN=hv2,O=example; an expired one (CN=old,O=example); a revoked one
(CN=revoked,O=example) listed in the CA's CRL; and one from the second CA
(CN=stranger,O=example). Standard library only.
"""

import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

from egdsupport import req_block

CA_CONF = """
[ ca ]
default_ca = ca_default
[ ca_default ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/new
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 30
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
organizationName = optional
"""


def _run(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(args), r.stderr))
    return r.stdout


class _CA:
    def __init__(self, base, name):
        self.dir = base / name
        (self.dir / "new").mkdir(parents=True)
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        (self.dir / "crlnumber").write_text("1000\n")
        self.conf = self.dir / "ca.cnf"
        self.conf.write_text(CA_CONF.format(dir=self.dir))
        self.cert = self.dir / "ca-cert.pem"
        self.key = self.dir / "ca-key.pem"
        _run("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(self.key), "-out", str(self.cert), "-days", "30",
             "-subj", "/O=example/CN=%s" % name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, out_cert, out_key, subj, san=None, start=None, end=None):
        csr = out_cert.with_suffix(".csr")
        args = ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", str(out_key), "-out", str(csr), "-subj", subj]
        if san:
            args += ["-addext", "subjectAltName=%s" % san]
        _run(*args)
        args = ["ca", "-batch", "-config", str(self.conf), "-preserveDN", "-notext",
                "-cert", str(self.cert), "-keyfile", str(self.key), "-in", str(csr),
                "-out", str(out_cert)]
        if start:
            args += ["-startdate", start, "-enddate", end]
        _run(*args)
        csr.unlink()

    def revoke(self, cert):
        _run("ca", "-config", str(self.conf), "-cert", str(self.cert), "-keyfile",
             str(self.key), "-revoke", str(cert))

    def crl(self, out):
        _run("ca", "-config", str(self.conf), "-cert", str(self.cert), "-keyfile",
             str(self.key), "-gencrl", "-out", str(out))


class Pki:
    """Directories in QEMU's layout: .server (listener, with the CRL), .server_plain (same,
    without CRL), .wrongname (a server certificate for other.example), and one client
    directory per identity in .clients[name] (hv1, hv2, old, revoked, stranger)."""

    def __init__(self, base):
        base = Path(base) / "pki"
        self.base = base
        self.ca = _CA(base, "ca")
        self.ca2 = _CA(base, "ca2")
        self.server = base / "server"
        self.server.mkdir()
        shutil.copy(self.ca.cert, self.server / "ca-cert.pem")
        self.ca.issue(self.server / "server-cert.pem", self.server / "server-key.pem",
                      "/O=example/CN=127.0.0.1", san="IP:127.0.0.1")
        self.wrongname = base / "wrongname"
        self.wrongname.mkdir()
        shutil.copy(self.ca.cert, self.wrongname / "ca-cert.pem")
        self.ca.issue(self.wrongname / "server-cert.pem", self.wrongname / "server-key.pem",
                      "/O=example/CN=other.example", san="DNS:other.example")
        self.clients = {}
        for name, ca, extra in (("hv1", self.ca, {}), ("hv2", self.ca, {}),
                                ("old", self.ca, {"start": "20200101000000Z",
                                                  "end": "20200201000000Z"}),
                                ("revoked", self.ca, {}), ("stranger", self.ca2, {})):
            d = base / ("client-" + name)
            d.mkdir()
            shutil.copy(self.ca.cert, d / "ca-cert.pem")
            ca.issue(d / "client-cert.pem", d / "client-key.pem",
                     "/O=example/CN=%s" % name, **extra)
            self.clients[name] = d
        self.ca.revoke(self.clients["revoked"] / "client-cert.pem")
        self.ca.crl(self.server / "ca-crl.pem")

    def subject(self, name):
        out = _run("x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in",
                   str(self.clients[name] / "client-cert.pem"))
        return out.strip()

    def client_context(self, name):
        """A client context presenting `name`'s certificate, checking the server."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(self.ca.cert))
        ctx.load_cert_chain(str(self.clients[name] / "client-cert.pem"),
                            str(self.clients[name] / "client-key.pem"))
        return ctx

    def server_context(self, directory=None):
        """A server context (QEMU server=on with verify-peer=on) with `directory`'s
        server certificate, requiring a client certificate from the CA."""
        directory = Path(directory or self.server)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(directory / "server-cert.pem"),
                            str(directory / "server-key.pem"))
        ctx.load_verify_locations(str(self.ca.cert))
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def client_context_for(server_dir, name="hv1"):
    """A client context presenting `name`'s certificate from the Pki that holds the
    server directory server_dir (its sibling client-NAME), checking the server against
    server_dir's ca-cert.pem. An EOF without close_notify reads as an ordinary end."""
    server_dir = Path(server_dir)
    client_dir = server_dir.parent / ("client-" + name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(server_dir / "ca-cert.pem"))
    ctx.load_cert_chain(str(client_dir / "client-cert.pem"), str(client_dir / "client-key.pem"))
    ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    return ctx


class BioTls:
    """TLS driven by hand over a connected socket (ssl.MemoryBIO), so that a test chooses
    how the handshake's bytes travel: client_hello() returns the first flight without
    sending it; finish() completes the handshake; send() and recv_exact() then carry
    application bytes. Every step is bounded by a deadline."""

    def __init__(self, sock, ctx, server_hostname="127.0.0.1"):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)

    def client_hello(self):
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.out.read()

    def _pump_in(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("TLS peer: nothing from the server in time")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        self.inc.write(data)

    def finish(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                self.sock.sendall(self.out.read())
                return self.obj.version()
            except ssl.SSLWantReadError:
                self.sock.sendall(self.out.read())
                self._pump_in(deadline)

    def send(self, data):
        self.obj.write(data)
        self.sock.sendall(self.out.read())

    def recv_exact(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.obj.read(n - len(buf))
            except ssl.SSLWantReadError:
                self._pump_in(deadline)
                continue
            if not chunk:
                raise ConnectionResetError("the server ended the session after %d of %d "
                                           "bytes" % (len(buf), n))
            buf += chunk
        self.sock.sendall(self.out.read())  # whatever the session had to answer
        return bytes(buf)


def tls_connect(address, ctx, timeout=10.0, rcvbuf=None):
    """A TLS socket to address; the handshake done (the server's certificate checked
    against 127.0.0.1). rcvbuf: a small receive buffer (set before connecting). Raises
    ssl.SSLError / OSError when refused."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(timeout)
    try:
        raw.connect(address)
    except BaseException:
        raw.close()
        raise
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return ctx.wrap_socket(raw, server_hostname=address[0])
    except BaseException:
        raw.close()
        raise


def recv_exact(sock, n, timeout=20.0):
    """Exactly n bytes from sock within timeout (AssertionError otherwise)."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        assert left > 0, "got %d of %d bytes within %.0f s" % (len(buf), n, timeout)
        sock.settimeout(left)
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        assert chunk, "the daemon closed the connection after %d of %d bytes" % (len(buf), n)
        buf += chunk
    return bytes(buf)


def refused_attempt(address, ctx):
    """Connect (TLS when ctx, else plain text), ask for bytes, and read until the daemon
    closes. Returns (local port, bytes received, the ssl.SSLError or OSError that ended it,
    or None)."""
    raw = socket.create_connection(address, timeout=10)
    port = raw.getsockname()[1]
    got = bytearray()
    sock = raw
    error = None
    try:
        if ctx is not None:
            sock = ctx.wrap_socket(raw, server_hostname=address[0])
        sock.sendall(req_block(64) * 4)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            sock.settimeout(deadline - time.monotonic())
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
        else:
            raise AssertionError("the daemon did not close a refused connection in 10 s")
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        error = e  # the handshake or the session was refused: what we want
    finally:
        sock.close()
    return port, bytes(got), error
