/* tls_conf: one directory of credentials in QEMU's x509 layout, loaded at start-up into an
 * OpenSSL context (TLS 1.2 or newer, the CA, an optional CRL, our certificate and key), the
 * peer verification (CA, then the subject against authz=) and the authz= list itself. */
#include "tls_impl.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TLS_AUTHZ_MAX (1u << 20)

int tls_conn_index = -1;

bool tls_authz_match(const char *list, const char *subject)
{
	size_t slen = strlen(subject);

	if (list == NULL || slen == 0) {
		return false;
	}
	for (const char *p = list; *p != '\0';) {
		const char *end = strchr(p, '\n');
		const char *stop = end != NULL ? end : p + strlen(p);
		const char *a = p, *b = stop;

		p = end != NULL ? end + 1 : stop;
		while (a < b && (*a == ' ' || *a == '\t')) {
			a++;
		}
		while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r')) {
			b--;
		}
		if (a == b || *a == '#') {
			continue;
		}
		if ((size_t)(b - a) > 8 && strncmp(a, "subject=", 8) == 0) {
			a += 8;
			while (a < b && (*a == ' ' || *a == '\t')) {
				a++;
			}
		}
		if ((size_t)(b - a) == slen && memcmp(a, subject, slen) == 0) {
			return true;
		}
	}
	return false;
}

/* The subject of cert in RFC 2253 form into out. */
void tls_subject_of(X509 *cert, char *out, size_t outlen)
{
	BIO *b = BIO_new(BIO_s_mem());
	int n = 0;

	out[0] = '\0';
	if (b == NULL) {
		return;
	}
	if (X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_read(b, out, (int)outlen - 1);
	}
	out[n > 0 ? n : 0] = '\0';
	BIO_free(b);
}

/* Checks the peer's leaf certificate against authz= once the CA accepted it. */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = ssl != NULL ? SSL_get_ex_data(ssl, tls_conn_index) : NULL;

	if (c == NULL || X509_STORE_CTX_get_error_depth(xs) != 0) {
		return ok;
	}
	tls_subject_of(X509_STORE_CTX_get_current_cert(xs), c->subject, sizeof(c->subject));
	if (ok && c->authz != NULL && !tls_authz_match(c->authz, c->subject)) {
		snprintf(c->why, sizeof(c->why),
			 "TLS refused: subject %s not allowed by authz=", c->subject);
		X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	return ok;
}

const char *tls_ssl_words(void)
{
	unsigned long e = ERR_peek_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	return r != NULL ? r : "unknown error";
}

static int load_fail(char *err, size_t errlen, const char *what, const char *path)
{
	snprintf(err, errlen, "tls: cannot load %s %s: %s", what, path, tls_ssl_words());
	ERR_clear_error();
	return -1;
}

/* Read the authz= file whole; -1 with a message. */
static int read_authz(struct tls_conf *t, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (f == NULL) {
		snprintf(err, errlen, "authz=%s: %s", path, strerror(errno));
		return -1;
	}
	t->authz = calloc(1, TLS_AUTHZ_MAX + 1);
	n = t->authz != NULL ? fread(t->authz, 1, TLS_AUTHZ_MAX + 1, f) : 0;
	fclose(f);
	if (t->authz == NULL || n > TLS_AUTHZ_MAX || memchr(t->authz, '\0', n) != NULL) {
		snprintf(err, errlen, "authz=%s: %s", path,
			 t->authz == NULL ? "out of memory" : "larger than 1 MiB, or not text");
		return -1;
	}
	return 0;
}

static int load(struct tls_conf *t, const char *dir, const char *authz_file, char *err,
		size_t errlen)
{
	const char *role = t->server ? "server" : "client";
	char ca[4096], crl[4096], cert[4096], key[4096];
	X509_STORE *store = SSL_CTX_get_cert_store(t->ctx);

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	snprintf(crl, sizeof(crl), "%s/ca-crl.pem", dir);
	snprintf(cert, sizeof(cert), "%s/%s-cert.pem", dir, role);
	snprintf(key, sizeof(key), "%s/%s-key.pem", dir, role);
	if (SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) != 1) {
		return load_fail(err, errlen, "the protocol version", "TLS 1.2");
	}
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				     SSL_MODE_RELEASE_BUFFERS);
	if ((t->verify || access(ca, F_OK) == 0) &&
	    SSL_CTX_load_verify_locations(t->ctx, ca, NULL) != 1) {
		return load_fail(err, errlen, "the CA certificate", ca);
	}
	if (access(crl, F_OK) == 0) {
		X509_LOOKUP *lu = X509_STORE_add_lookup(store, X509_LOOKUP_file());

		if (lu == NULL || X509_load_crl_file(lu, crl, X509_FILETYPE_PEM) <= 0) {
			return load_fail(err, errlen, "the CRL", crl);
		}
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	}
	/* A client without a certificate can still reach a server that asks none
	 * (verify-peer=off there); a server always needs one. */
	if (t->server || access(cert, F_OK) == 0) {
		if (SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1) {
			return load_fail(err, errlen, "the certificate", cert);
		}
		if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1) {
			return load_fail(err, errlen, "the private key", key);
		}
		if (SSL_CTX_check_private_key(t->ctx) != 1) {
			return load_fail(err, errlen, "a key that matches", cert);
		}
	}
	if (t->verify) {
		SSL_CTX_set_verify(
		    t->ctx, SSL_VERIFY_PEER | (t->server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
		    verify_cb);
	} else {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
	}
	if (t->server) {
		static const unsigned char sid[] = "entropyd";

		SSL_CTX_set_session_id_context(t->ctx, sid, sizeof(sid) - 1);
		SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_num_tickets(t->ctx, 0);
	}
	return authz_file != NULL ? read_authz(t, authz_file, err, errlen) : 0;
}

struct tls_conf *tls_conf_new(const char *dir, bool server, bool verify, const char *authz_file,
			      char *err, size_t errlen)
{
	struct tls_conf *t = calloc(1, sizeof(*t));

	if (tls_conn_index < 0) {
		tls_conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	}
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->server = server;
	t->verify = verify;
	t->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (t->ctx == NULL) {
		load_fail(err, errlen, "a TLS context for", dir);
		free(t);
		return NULL;
	}
	if (load(t, dir, authz_file, err, errlen) < 0) {
		tls_conf_free(t);
		return NULL;
	}
	return t;
}

void tls_conf_free(struct tls_conf *t)
{
	if (t == NULL) {
		return;
	}
	SSL_CTX_free(t->ctx);
	free(t->authz);
	free(t);
}
