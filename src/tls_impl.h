/* tls_impl: what tls.c (connections and the transport) and tls_conf.c (credentials,
 * verification, authz=) share. Only those two files include it; tls.c calls into
 * tls_conf.c, never the reverse. */
#ifndef ENTROPYD_TLS_IMPL_H
#define ENTROPYD_TLS_IMPL_H

#include "tls.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_RECORD 16384u /* the most plaintext one record carries */

struct tls_conf {
	SSL_CTX *ctx;
	bool server, verify;
	char *authz; /* the authz= file's text, or NULL: any subject the CA signed */
};

struct tls_conn {
	SSL *ssl;
	int fd;
	bool server, done, failed, peeked;
	int rwant, wwant;	  /* SSL_ERROR_WANT_READ/WRITE of the last blocked read, write */
	char *authz;		  /* the conf's list (the conf outlives its connections) */
	char why[512];		  /* the reason of the last failure, "" if errno says it */
	char subject[256];	  /* the peer's certificate subject, "" until known */
	uint8_t wbuf[TLS_RECORD]; /* plaintext handed to SSL_write and not yet sent */
	size_t wlen;
};

/* The SSL ex_data slot that holds a connection's struct tls_conn (set by tls_conf_new). */
extern int tls_conn_index;

/* OpenSSL's first queued error in words. */
const char *tls_ssl_words(void);
/* A certificate's subject in RFC 2253 form (as `openssl x509 -nameopt RFC2253` prints it). */
void tls_subject_of(X509 *cert, char *out, size_t outlen);

#endif
