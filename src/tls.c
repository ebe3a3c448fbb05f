/* tls: see tls.h. Every OpenSSL call on a connection starts with an empty error queue, so
 * that SSL_get_error() and the reason of a refusal describe that call only. A refused
 * handshake is described in words an operator can act on (unknown CA, expired certificate,
 * revoked certificate, subject not allowed by authz=, wrong host name, a protocol older than
 * TLS 1.2, plain text on a TLS port), followed by OpenSSL's own words. */
#include "tls_impl.h"

#include "endpoint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct tls_conn *tls_conn_new(struct tls_conf *t, int fd, bool server, const char *host, char *err,
			      size_t errlen)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	unsigned char ip[16];

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ERR_clear_error();
	c->fd = fd;
	c->server = server;
	c->authz = server ? t->authz : NULL;
	c->rwant = SSL_ERROR_WANT_READ;
	c->wwant = SSL_ERROR_WANT_WRITE;
	c->ssl = SSL_new(t->ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1 ||
	    SSL_set_ex_data(c->ssl, tls_conn_index, c) != 1) {
		snprintf(err, errlen, "tls: cannot set up a connection: %s", tls_ssl_words());
		goto fail;
	}
	if (server) {
		SSL_set_accept_state(c->ssl);
		return c;
	}
	SSL_set_connect_state(c->ssl);
	if (t->verify && host != NULL) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
		bool is_ip =
		    inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;

		if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host)
			   : X509_VERIFY_PARAM_set1_host(vp, host, 0)) != 1) {
			snprintf(err, errlen, "tls: cannot check the server against %s", host);
			goto fail;
		}
		if (!is_ip) {
			SSL_set_tlsext_host_name(c->ssl, host);
		}
	}
	/* The client speaks first: send the hello now, nothing else would start it. */
	if (tls_handshake(c) < 0 && errno != EAGAIN) {
		snprintf(err, errlen, "%s", c->why[0] ? c->why : strerror(errno));
		goto fail;
	}
	return c;
fail:
	SSL_free(c->ssl);
	free(c);
	ERR_clear_error();
	return NULL;
}

/* Describe a failed verification of the peer's certificate. */
static const char *verify_words(long v, char *buf, size_t len, const struct tls_conn *c)
{
	const char *what;

	switch (v) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		what = "unknown CA";
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		what = "expired certificate";
		break;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		what = "certificate not yet valid";
		break;
	case X509_V_ERR_CERT_REVOKED:
		what = "revoked certificate";
		break;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		what = "wrong host name (the server's certificate does not name the host dialed)";
		break;
	default:
		what = "certificate not accepted";
		break;
	}
	snprintf(buf, len, "TLS refused: %s%s%s (%s)", what, c->subject[0] ? ": " : "", c->subject,
		 X509_verify_cert_error_string(v));
	return buf;
}

/* A version OpenSSL refused (we accept TLS 1.2 or newer) in words: "TLS 1.1". */
static const char *version_words(int v, char *buf, size_t len)
{
	switch (v) {
	case SSL3_VERSION:
		return "SSL 3.0";
	case TLS1_VERSION:
		return "TLS 1.0";
	case TLS1_1_VERSION:
		return "TLS 1.1";
	default:
		snprintf(buf, len, "protocol version 0x%04x", (unsigned)v);
		return buf;
	}
}

/* When the handshake failed on the protocol version, say so in c->why and return true. */
static bool old_protocol(struct tls_conn *c)
{
	int r = ERR_GET_REASON(ERR_peek_error());
	char buf[32];

	if (r != SSL_R_UNSUPPORTED_PROTOCOL && r != SSL_R_VERSION_TOO_LOW &&
	    r != SSL_R_TLSV1_ALERT_PROTOCOL_VERSION) {
		return false;
	}
	if (c->server) {
		/* The ClientHello's version: a client that offers TLS 1.2 or 1.3 says 1.2 here. */
		snprintf(c->why, sizeof(c->why),
			 "TLS refused: client offers at most %s, TLS 1.2 or newer required (%s)",
			 version_words(SSL_client_version(c->ssl), buf, sizeof(buf)),
			 tls_ssl_words());
	} else {
		snprintf(c->why, sizeof(c->why),
			 "TLS refused: server does not speak TLS 1.2 or newer (%s)",
			 tls_ssl_words());
	}
	return true;
}

/* Turn the last SSL call's result r into the -1/errno convention (or 0 at the end). */
static int failed(struct tls_conn *c, int r, bool writing)
{
	int e = SSL_get_error(c->ssl, r);
	long v;

	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		if (writing) {
			c->wwant = e;
		} else {
			c->rwant = e;
		}
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) {
			if (r == 0 || errno == 0) {
				if (!c->done && c->why[0] == '\0') {
					snprintf(
					    c->why, sizeof(c->why),
					    "peer closed the connection during the TLS handshake");
					errno = ECONNRESET;
					c->failed = true;
					return -1;
				}
				return 0;
			}
			c->failed = true;
			return -1; /* errno says it */
		}
		break;
	default:
		break;
	}
	c->failed = true;
	v = SSL_get_verify_result(c->ssl);
	if (c->why[0] != '\0') {
		/* verify_cb said why (authz=) */
	} else if (v != X509_V_OK) {
		verify_words(v, c->why, sizeof(c->why), c);
	} else if (old_protocol(c)) {
		/* written by old_protocol() */
	} else if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		snprintf(c->why, sizeof(c->why), "TLS refused: no client certificate (%s)",
			 tls_ssl_words());
	} else {
		snprintf(c->why, sizeof(c->why), "TLS %s failed: %s",
			 c->done ? "session" : "handshake", tls_ssl_words());
	}
	ERR_clear_error();
	errno = EPROTO;
	return -1;
}

/* A server's first byte must open a TLS handshake record (0x16): anything else is a plain
 * client on a TLS port, told apart before OpenSSL answers it with an alert. */
static int first_byte_is_tls(struct tls_conn *c)
{
	uint8_t b;
	ssize_t r;

	if (!c->server || c->peeked) {
		return 1;
	}
	r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (r <= 0) {
		return r == 0 ? 0 : -1;
	}
	c->peeked = true;
	if (b != 0x16) {
		snprintf(c->why, sizeof(c->why),
			 "TLS refused: plain text on a TLS port (first byte 0x%02x is not a TLS "
			 "handshake)",
			 (unsigned)b);
		c->failed = true;
		errno = EPROTO;
		return -1;
	}
	return 1;
}

static void handshake_done(struct tls_conn *c)
{
	X509 *peer;

	if (c->done || !SSL_is_init_finished(c->ssl)) {
		return;
	}
	c->done = true;
	peer = SSL_get1_peer_certificate(c->ssl);
	if (peer != NULL) {
		tls_subject_of(peer, c->subject, sizeof(c->subject));
		X509_free(peer);
	}
}

int tls_handshake(struct tls_conn *c)
{
	int r;

	if (c->failed) {
		errno = EPROTO;
		return -1;
	}
	if (c->done) {
		return 1;
	}
	r = first_byte_is_tls(c);
	if (r <= 0) {
		if (r == 0) {
			snprintf(c->why, sizeof(c->why),
				 "peer closed the connection during the TLS handshake");
			errno = ECONNRESET;
		}
		return -1;
	}
	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		handshake_done(c);
		return 1;
	}
	r = failed(c, r, false);
	if (r == 0) {
		errno = ECONNRESET;
	}
	return -1;
}

ssize_t tls_read(struct tls_conn *c, void *buf, size_t n)
{
	int r;

	if (c->failed) {
		errno = EPROTO;
		return -1;
	}
	if (!c->done) {
		r = first_byte_is_tls(c);
		if (r <= 0) {
			return r;
		}
	}
	ERR_clear_error();
	r = SSL_read(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
	handshake_done(c);
	if (r > 0) {
		c->rwant = SSL_ERROR_WANT_READ;
		return r;
	}
	return failed(c, r, false);
}

int tls_flush(struct tls_conn *c)
{
	int r;

	if (c->wlen == 0) {
		return 0;
	}
	ERR_clear_error();
	r = SSL_write(c->ssl, c->wbuf, (int)c->wlen);
	if (r <= 0) {
		if (failed(c, r, true) == 0) {
			errno = EPIPE;
		}
		return -1;
	}
	/* Partial writes end at a record boundary: keep the rest, at the front. */
	memmove(c->wbuf, c->wbuf + r, c->wlen - (size_t)r);
	c->wlen -= (size_t)r;
	explicit_bzero(c->wbuf + c->wlen, (size_t)r);
	c->wwant = SSL_ERROR_WANT_WRITE;
	return c->wlen == 0 ? 0 : tls_flush(c);
}

ssize_t tls_writev(struct tls_conn *c, const struct iovec *iov, int cnt)
{
	size_t taken = 0;
	int i = 0;
	size_t off = 0;

	if (!c->done) {
		/* Nothing is taken before the peer passed its checks. */
		if (tls_handshake(c) < 0) {
			if (errno == EAGAIN) {
				c->wwant = c->rwant;
			}
			return -1;
		}
	}
	if (tls_flush(c) < 0) {
		return -1;
	}
	for (;;) {
		/* Copy the next record's worth into our own buffer: once taken, these bytes are
		 * this connection's alone, whatever SSL_write says. */
		while (c->wlen < TLS_RECORD && i < cnt) {
			size_t k = iov[i].iov_len - off;

			k = k < TLS_RECORD - c->wlen ? k : TLS_RECORD - c->wlen;
			memcpy(c->wbuf + c->wlen, (const uint8_t *)iov[i].iov_base + off, k);
			c->wlen += k;
			taken += k;
			off += k;
			if (off == iov[i].iov_len) {
				i++;
				off = 0;
			}
		}
		if (c->wlen == 0) {
			return (ssize_t)taken;
		}
		if (tls_flush(c) < 0) {
			if (errno == EAGAIN) {
				return (ssize_t)taken; /* held: sent by tls_flush later */
			}
			explicit_bzero(c->wbuf, sizeof(c->wbuf));
			c->wlen = 0;
			return -1;
		}
	}
}

bool tls_write_pending(const struct tls_conn *c)
{
	return c->wlen > 0;
}

bool tls_read_pending(const struct tls_conn *c)
{
	return !c->failed && SSL_pending(c->ssl) > 0;
}

short tls_waits(const struct tls_conn *c, short dir)
{
	int want = dir == EV_READ ? c->rwant : c->wwant;

	return want == SSL_ERROR_WANT_WRITE ? EV_WRITE : EV_READ;
}

const char *tls_error(const struct tls_conn *c)
{
	return c->why[0] != '\0' ? c->why : NULL;
}

const char *tls_subject(const struct tls_conn *c)
{
	return c->done && c->subject[0] != '\0' ? c->subject : NULL;
}

void tls_conn_free(struct tls_conn *c)
{
	if (c == NULL) {
		return;
	}
	if (c->done && !c->failed) {
		ERR_clear_error();
		(void)SSL_shutdown(c->ssl); /* one try: the socket is non-blocking */
	}
	ERR_clear_error();
	SSL_free(c->ssl);
	explicit_bzero(c->wbuf, sizeof(c->wbuf));
	free(c);
}

/* ---- The transport (tcp endpoints with tls=) ---- */

static bool tr_wants(const struct endpoint_conf *ec)
{
	return ec->tls != NULL;
}

static void *tr_attach(int fd, bool accepted, const struct endpoint_conf *ec, char *err,
		       size_t errlen)
{
	return tls_conn_new(ec->tls, fd, accepted, ec->host, err, errlen);
}

static ssize_t tr_read(void *ctx, int fd, void *buf, size_t n)
{
	return tls_read(ctx, buf, n);
}

static ssize_t tr_writev(void *ctx, int fd, const struct iovec *iov, int cnt)
{
	return tls_writev(ctx, iov, cnt);
}

static int tr_flush(void *ctx, int fd)
{
	return tls_flush(ctx);
}

static bool tr_write_pending(void *ctx)
{
	return tls_write_pending(ctx);
}

static bool tr_read_pending(void *ctx)
{
	return tls_read_pending(ctx);
}

static short tr_waits(void *ctx, short dir)
{
	return tls_waits(ctx, dir);
}

static const char *tr_error(void *ctx)
{
	return tls_error(ctx);
}

static bool tr_ready(void *ctx)
{
	const struct tls_conn *c = ctx;

	return c->done;
}

static void tr_peer(void *ctx, int fd, const char *given, char *out, size_t outlen)
{
	const char *s = tls_subject(ctx);
	char tail[300];

	snprintf(tail, sizeof(tail), " (%s)", s != NULL ? s : "");
	if (s != NULL && (strlen(given) < strlen(tail) ||
			  strcmp(given + strlen(given) - strlen(tail), tail) != 0)) {
		snprintf(out, outlen, "%s%s", given, tail); /* named once, not at every call */
	} else {
		snprintf(out, outlen, "%s", given);
	}
}

static void tr_close(void *ctx, int fd)
{
	tls_conn_free(ctx);
	close(fd);
}

const struct transport transport_tls = {
    .name = "tls",
    .wants = tr_wants,
    .attach = tr_attach,
    .read = tr_read,
    .writev = tr_writev,
    .peer = tr_peer,
    .close = tr_close,
    .flush = tr_flush,
    .write_pending = tr_write_pending,
    .read_pending = tr_read_pending,
    .waits = tr_waits,
    .error = tr_error,
    .ready = tr_ready,
};
