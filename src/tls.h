/* tls: TLS (OpenSSL 3, TLS 1.2 or newer) for tcp endpoints and egd: sources, compatible with
 * QEMU's tls-creds-x509. A struct tls_conf is one directory of credentials in QEMU's layout
 * (ca-cert.pem, optional ca-crl.pem, server-cert.pem + server-key.pem for a listener,
 * client-cert.pem + client-key.pem for a connecting side), loaded at start-up; a struct
 * tls_conn is one connection over a non-blocking socket, served through transport_tls.
 *
 * Invariants: no application byte is sent before the handshake finished and the peer passed
 * every check (CA, CRL, host name, authz= subject list); bytes writev reports as taken are
 * held in the connection's own buffer until OpenSSL sent them, so the pool never hands the
 * same bytes to another client; that buffer is wiped once sent and at close. */
#ifndef ENTROPYD_TLS_H
#define ENTROPYD_TLS_H

#include "transport.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct tls_conf;
struct tls_conn;

/* Load the credentials of dir for a listening (server) or connecting side; verify: require
 * and check the peer's certificate; authz_file (server, may be NULL): the subjects allowed.
 * NULL with a one-line message in err on failure. */
struct tls_conf *tls_conf_new(const char *dir, bool server, bool verify, const char *authz_file,
			      char *err, size_t errlen);
/* Free a conf (connections made from it keep what they need). NULL is allowed. */
void tls_conf_free(struct tls_conf *t);

/* Pure: is subject (RFC 2253, as `openssl x509 -noout -subject -nameopt RFC2253` prints it)
 * listed in list, the text of an authz= file (one subject per line, an optional leading
 * "subject=", blanks around it ignored, '#' comments and blank lines skipped)? */
bool tls_authz_match(const char *list, const char *subject);

/* A connection over the connected non-blocking socket fd; a client (not server) checks the
 * server's certificate against host (a name, or an IP address against an IP
 * subjectAltName) and sends its first handshake flight now. NULL with a message in err. */
struct tls_conn *tls_conn_new(struct tls_conf *t, int fd, bool server, const char *host, char *err,
			      size_t errlen);
/* Drive the handshake: 1 when done, -1 with errno (EAGAIN: wait for tls_waits(c, EV_READ)). */
int tls_handshake(struct tls_conn *c);
/* Read decrypted bytes: > 0, 0 at the end of the stream, -1 with errno (EAGAIN: not now). */
ssize_t tls_read(struct tls_conn *c, void *buf, size_t n);
/* Take bytes to send (see the invariant above): the count taken, -1 with errno. */
ssize_t tls_writev(struct tls_conn *c, const struct iovec *iov, int cnt);
/* Send bytes taken earlier and still held: 0 when none is left, -1 with errno (EAGAIN). */
int tls_flush(struct tls_conn *c);
/* True while bytes taken by tls_writev are not sent yet. */
bool tls_write_pending(const struct tls_conn *c);
/* True if tls_read has decrypted bytes to return without reading the socket. */
bool tls_read_pending(const struct tls_conn *c);
/* The socket readiness (EV_READ or EV_WRITE) the last blocked read (dir EV_READ) or write
 * (dir EV_WRITE) waits for. */
short tls_waits(const struct tls_conn *c, short dir);
/* Why the last call failed (a refused handshake: the check that refused and OpenSSL's
 * words), or NULL when errno says it all. */
const char *tls_error(const struct tls_conn *c);
/* The peer's certificate subject once the handshake is done, else NULL. */
const char *tls_subject(const struct tls_conn *c);
/* Say goodbye (close_notify, if the handshake was done) and free c; fd stays open. */
void tls_conn_free(struct tls_conn *c);

/* tcp endpoints with tls=: attach makes a tls_conn from the endpoint's tls_conf. */
extern const struct transport transport_tls;

#endif
