/* conf_opts: the option tables of source and endpoint specs (see conf_opts.h), the function
 * that applies each option, and the phrases that describe the tables. Adding an option is one
 * table entry plus its parse function here: --help, the man page (make man) and the error
 * messages pick it up from the entry. Text in the tables is plain (no roff); conf_doc.c
 * escapes it. */
#include "conf_opts.h"

#include "netaddr.h"
#include "rate.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int conf_parse_long(const char *v, long min, long max, int base, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(v, &end, base);
	return (errno != 0 || end == v || *end != '\0' || *out < min || *out > max) ? -1 : 0;
}

/* A decimal in min..max into *out; otherwise "not in MIN..MAX" in why and -1. */
static int in_range(const char *val, long min, long max, long *out, char *why, size_t whylen)
{
	if (conf_parse_long(val, min, max, 10, out) < 0) {
		snprintf(why, whylen, "not in %ld..%ld", min, max);
		return -1;
	}
	return 0;
}

/* on or off into *on; otherwise "expected on or off" in why and -1. */
static int on_off(const char *val, bool *on, char *why, size_t whylen)
{
	if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0) {
		snprintf(why, whylen, "expected on or off");
		return -1;
	}
	*on = strcmp(val, "on") == 0;
	return 0;
}

/* ---- Source options (target: struct source_conf) ---- */

static int src_h(void *target, char *val, char *why, size_t whylen)
{
	struct source_conf *s = target;
	char *end;
	double h = strtod(val, &end);

	if (end == val || *end != '\0' || !(h > 0 && h <= 8)) {
		snprintf(why, whylen, "not a number in (0, 8]");
		return -1;
	}
	s->min_entropy = h;
	return 0;
}

/* An int option of a source within [min, max]. */
static int int_opt(const char *val, long min, long max, int *out, char *why, size_t whylen)
{
	long v;

	if (in_range(val, min, max, &v, why, whylen) < 0) {
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int src_prio(void *target, char *val, char *why, size_t whylen)
{
	return int_opt(val, 0, 1000000, &((struct source_conf *)target)->prio, why, whylen);
}

static int src_threads(void *target, char *val, char *why, size_t whylen)
{
	return int_opt(val, 1, 64, &((struct source_conf *)target)->threads, why, whylen);
}

static int src_init(void *target, char *val, char *why, size_t whylen)
{
	struct source_conf *s = target;

	free(s->tty.init);
	s->tty.init = strdup(val);
	if (s->tty.init == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

static int src_baud(void *target, char *val, char *why, size_t whylen)
{
	struct source_conf *s = target;
	long v;

	if (in_range(val, 1, 4000000, &v, why, whylen) < 0) {
		return -1;
	}
	s->tty.baud = v;
	return 0;
}

static int src_stall(void *target, char *val, char *why, size_t whylen)
{
	struct source_conf *s = target;
	long v;

	if (conf_parse_long(val, 0, SRC_STALL_MAX_MS, 10, &v) < 0) {
		snprintf(why, whylen, "not in 0..%d ms (0 = never)", SRC_STALL_MAX_MS);
		return -1;
	}
	s->stall_ms = v;
	return 0;
}

/* egd: sources take tls= and verify-peer= as part of their argument (the driver reads them
 * from it: "tcp:HOST:PORT,tls=DIR"), so that each (re)connect loads them itself. */
static int src_egd_opt(struct source_conf *s, const char *key, const char *val, char *why,
		       size_t whylen)
{
	size_t len;
	char *arg;

	if (s->kind == NULL || strcmp(s->kind, "egd") != 0 || s->arg == NULL) {
		snprintf(why, whylen, "applies to egd: sources only");
		return -1;
	}
	if (strchr(val, ',') != NULL || val[0] == '\0') {
		snprintf(why, whylen, "empty, or holds a comma");
		return -1;
	}
	len = strlen(s->arg) + strlen(key) + strlen(val) + 3;
	arg = malloc(len);
	if (arg == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	snprintf(arg, len, "%s,%s=%s", s->arg, key, val);
	free(s->arg);
	s->arg = arg;
	return 0;
}

static int src_tls(void *target, char *val, char *why, size_t whylen)
{
	return src_egd_opt(target, "tls", val, why, whylen);
}

static int src_verify_peer(void *target, char *val, char *why, size_t whylen)
{
	bool on;

	if (on_off(val, &on, why, whylen) < 0) {
		return -1;
	}
	return src_egd_opt(target, "verify-peer", val, why, whylen);
}

const struct conf_spec_opt conf_source_opts[] = {
    {"h", "BITS", 0, "assumed min-entropy per byte, 0 < BITS <= 8 (default 4)",
     "It sets the cutoffs of the health tests.", src_h},
    {"prio", "N", 0,
     "priority group, 0..1000000 (default: the position; equal priorities "
     "feed together)",
     NULL, src_prio},
    {"threads", "N", 0,
     "readers of a getrandom, rdseed or darn source, 1..64, each with its own health tests "
     "(default 1)",
     "They form one priority group and feed together, named SPEC (1 of N) and so on in logs "
     "and status: more than one lets a generator whose reads cost CPU (getrandom: about 380 MB/s "
     "per core here) use more than one core.",
     src_threads},
    {"init", "STRING", 0, "written to a tty after each open (file: sources)",
     "Escapes: \\n \\r \\t \\\\ \\xHH; no commas; e.g. init=cmdO\\n for a OneRNG.", src_init},
    {"baud", "N", 0, "line speed of a tty, 1..4000000 (file: sources)", NULL, src_baud},
    {"stall", "MS", 0,
     "a read that gets nothing this long fails over (0 = never; default 5000, 30000 for "
     "qng and qngvendor)",
     "A healthy source whose read gets no byte for MS milliseconds is logged as stalled and "
     "fails over to the next group, as on a health failure; when it delivers again it re-runs "
     "its start-up test and takes its place back. Time spent waiting for room in the pool "
     "does not count; each source's deadline is in its description line at start.",
     src_stall},
    {"tls", "DIR", 0,
     "mutual TLS to an egd:tcp: upstream, with DIR's ca-cert.pem, client-cert.pem and "
     "client-key.pem",
     "DIR uses QEMU's x509 layout; an optional ca-crl.pem is honoured. The upstream's "
     "certificate must be signed by the CA and name HOST (an IP address must be an IP "
     "subjectAltName). Files are read at each connect.",
     src_tls},
    {"verify-peer", "on|off", 0,
     "with tls= on an egd: source: check the upstream's certificate (default on)", NULL,
     src_verify_peer},
};
const size_t conf_nsource_opts = sizeof(conf_source_opts) / sizeof(conf_source_opts[0]);

/* ---- Endpoint options (target: struct endpoint_conf) ---- */

static int ep_proto(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;

	if (strcmp(val, "raw") != 0 && strcmp(val, "egd") != 0) {
		snprintf(why, whylen, "expected egd or raw");
		return -1;
	}
	e->opts.raw = strcmp(val, "raw") == 0;
	return 0;
}

static int ep_primer(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;
	long n;

	if (in_range(val, 0, 1 << 20, &n, why, whylen) < 0) {
		return -1;
	}
	e->opts.primer = (unsigned)n;
	return 0;
}

static int ep_surplus(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;
	long n;

	if (in_range(val, 0, 1 << 22, &n, why, whylen) < 0) {
		return -1;
	}
	e->opts.surplus = (unsigned)n;
	return 0;
}

static int ep_write(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;

	return on_off(val, &e->opts.allow_write, why, whylen);
}

/* BYTES/MS (or off: both 0) into *bytes and *ms. */
static int parse_rate(char *val, uint64_t *bytes, uint64_t *ms, char *why, size_t whylen)
{
	char *slash = strchr(val, '/');
	long n, per;

	*bytes = *ms = 0;
	if (strcmp(val, "off") == 0) {
		return 0;
	}
	if (slash != NULL) {
		*slash = '\0';
	}
	if (slash == NULL || conf_parse_long(val, 1, (long)RATE_MAX_BYTES, 10, &n) < 0 ||
	    conf_parse_long(slash + 1, 1, (long)RATE_MAX_MS, 10, &per) < 0) {
		snprintf(why, whylen, "expected BYTES/MS, e.g. 2097152/1000, or off");
		return -1;
	}
	*bytes = (uint64_t)n;
	*ms = (uint64_t)per;
	return 0;
}

static int ep_rate(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;

	e->opts.has_rate = true;
	return parse_rate(val, &e->opts.rate_bytes, &e->opts.rate_ms, why, whylen);
}

static int ep_endpoint_rate(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;

	return parse_rate(val, &e->opts.eprate_bytes, &e->opts.eprate_ms, why, whylen);
}

static int ep_max_per_peer(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;
	long n;

	if (conf_parse_long(val, 0, 1000000, 10, &n) < 0) {
		snprintf(why, whylen, "not in 0..1000000 (0 = no limit)");
		return -1;
	}
	e->opts.max_per_peer = (unsigned)n;
	e->opts.has_max_per_peer = true;
	return 0;
}

static int ep_allow(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;
	char *save = NULL;

	e->nallow = 0;
	for (char *p = strtok_r(val, "+", &save); p; p = strtok_r(NULL, "+", &save)) {
		if (e->nallow == UDP_MAX_ALLOW || udp_parse_prefix(p, &e->allow[e->nallow]) < 0) {
			snprintf(why, whylen,
				 "bad entry '%s' (ADDR[/BITS], joined by +, at most %d)", p,
				 UDP_MAX_ALLOW);
			return -1;
		}
		e->nallow++;
	}
	return 0;
}

static int ep_local(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;
	struct netaddr_spec a;

	if (netaddr_parse_hostport(val, true, &a, why, whylen) < 0) {
		return -1;
	}
	free(e->local_host);
	free(e->local_port);
	e->local_host = strdup(a.host);
	e->local_port = strdup(a.port);
	return 0;
}

/* mode=raw|drbg (any endpoint), or mode=OCTAL (the permissions of a unix or fifo
 * listener's file). */
static int ep_mode(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;
	long n;

	if (strcmp(val, "raw") == 0 || strcmp(val, "drbg") == 0) {
		e->opts.drbg = strcmp(val, "drbg") == 0;
		if (e->opts.drbg && e->kind == EP_VHOST) {
			snprintf(why, whylen, "vhost-user serves raw pool bytes only");
			return -1;
		}
		return 0;
	}
	if (conf_parse_long(val, 0, 07777, 8, &n) < 0) {
		snprintf(why, whylen, "expected raw, drbg or an octal mode in 0..07777");
		return -1;
	}
	if (e->connect || (e->kind != EP_UNIX && e->kind != EP_FIFO && e->kind != EP_VHOST)) {
		snprintf(why, whylen,
			 "an octal mode applies to unix, fifo and vhost-user listeners only");
		return -1;
	}
	e->mode = (mode_t)n;
	e->has_mode = true;
	return 0;
}

static int ep_reseed(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;
	long n;

	if (in_range(val, 1, 1L << 40, &n, why, whylen) < 0) {
		return -1;
	}
	e->opts.reseed_bytes = (uint64_t)n;
	return 0;
}

static int ep_reseed_ms(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;
	long n;

	if (in_range(val, 1, 86400000, &n, why, whylen) < 0) {
		return -1;
	}
	e->opts.reseed_ms = (uint64_t)n;
	return 0;
}

static int ep_pr(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;

	return on_off(val, &e->opts.pr, why, whylen);
}

static int ep_owner(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;
	struct passwd *pw = getpwnam(val);
	long n = 0;

	if (pw == NULL && conf_parse_long(val, 0, INT_MAX, 10, &n) < 0) {
		snprintf(why, whylen, "no such user");
		return -1;
	}
	e->owner = pw ? pw->pw_uid : (uid_t)n;
	e->has_owner = true;
	return 0;
}

static int ep_group(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;
	struct group *gr = getgrnam(val);
	long n = 0;

	if (gr == NULL && conf_parse_long(val, 0, INT_MAX, 10, &n) < 0) {
		snprintf(why, whylen, "no such group");
		return -1;
	}
	e->group = gr ? gr->gr_gid : (gid_t)n;
	e->has_group = true;
	return 0;
}

static int ep_tls(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;

	free(e->tls_dir);
	e->tls_dir = strdup(val);
	if (e->tls_dir == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

static int ep_verify_peer(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;
	bool on;

	if (on_off(val, &on, why, whylen) < 0) {
		return -1;
	}
	e->tls_no_verify = !on;
	return 0;
}

static int ep_authz(void *target, char *val, char *why, size_t whylen)
{
	struct endpoint_conf *e = target;

	free(e->authz);
	e->authz = strdup(val);
	if (e->authz == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

#define STREAM_LISTENERS (CONF_LISTEN(EP_TCP) | CONF_LISTEN(EP_UNIX) | CONF_LISTEN(EP_VHOST))
#define FILE_LISTENERS (CONF_LISTEN(EP_UNIX) | CONF_LISTEN(EP_FIFO) | CONF_LISTEN(EP_VHOST))
#define STREAM_ENDPOINTS                                                                           \
	(CONF_LISTEN(EP_TCP) | CONF_LISTEN(EP_UNIX) | CONF_DIAL(EP_TCP) | CONF_DIAL(EP_UNIX))

const struct conf_spec_opt conf_endpoint_opts[] = {
    {"proto", "egd|raw", CONF_EGD_ENDPOINTS,
     "the protocol; raw streams bytes with no protocol (default egd; raw on fifo)", NULL, ep_proto},
    {"primer", "BYTES", CONF_EGD_ENDPOINTS,
     "bytes sent to a peer silent for 100 ms after connecting (default 128, 0 on udp and "
     "fifo; 0 = never)",
     "See RECONNECTS AND THE PRIMER.", ep_primer},
    {"surplus", "BYTES", STREAM_ENDPOINTS,
     "bytes kept in the socket ahead of the requests of a peer that sent only 0x02 (16 or "
     "more), for QEMU's rng-egd, e.g. 65536 (default 0: never)",
     "A peer that sends another command after bytes were sent ahead is closed: give it only "
     "to endpoints that serve QEMU.",
     ep_surplus},
    {"write", "on|off", CONF_EGD_ENDPOINTS,
     "accept EGD command 0x03 (write entropy) when on (default off)", NULL, ep_write},
    {"rate", "BYTES/MS", CONF_ANY_ENDPOINT,
     "pace each client's answers (default 2097152/1000 on udp, none elsewhere; off: no limit)",
     "A token bucket of BYTES bytes refilled every MS milliseconds, per client (per peer on "
     "udp, per VM on vhost-user), as QEMU's max-bytes/period: the same long-run rate, bursts "
     "of at most BYTES. A paced client keeps its queued requests and is answered as tokens "
     "return; the bytes held back are logged as throttled when it closes.",
     ep_rate},
    {"endpoint-rate", "BYTES/MS", CONF_ANY_ENDPOINT,
     "cap the endpoint as a whole: one token bucket shared by all its clients (default none)",
     "Applies on top of rate=: an answer takes tokens from both. Clients the shared bucket "
     "holds back queue for it first come, first served, 256 bytes a turn, so they get "
     "equal shares. Bytes held back by either bucket are counted as throttled, per client (logged "
     "when it closes) and per endpoint.",
     ep_endpoint_rate},
    {"max-per-peer", "N", STREAM_LISTENERS,
     "connections one peer may hold, 0..1000000 (default 64 for tcp, 0 = no limit for unix "
     "and vhost-user)",
     "Counted per IPv4 address, per IPv6 /64 prefix, or, on unix sockets, per user id of the "
     "peer (SO_PEERCRED). A connection over the cap is accepted and closed at once, with a "
     "log line; when one of the peer's connections closes, a new one is served again.",
     ep_max_per_peer},
    {"allow", "PREFIX+...", CONF_LISTEN(EP_UDP),
     "the peers answered: ADDR[/BITS] joined by + (at most 16; default 127.0.0.0/8+::1)", NULL,
     ep_allow},
    {"local", "HOST:PORT", CONF_DIAL(EP_UDP),
     "the local address (QEMU's chardev udp localaddr/localport)", NULL, ep_local},
    {"mode", "raw|drbg|OCTAL", CONF_ANY_ENDPOINT,
     "raw: each pool byte to one client (default); drbg: output of an AES-256 CTR-DRBG seeded "
     "from the pool; OCTAL (unix and fifo listeners): permissions of the socket or pipe "
     "file, e.g. 0660",
     "In drbg mode the DRBG (one per event loop) takes its only entropy input from the pool: "
     "384 bits of assessed entropy per seed (48 bytes at h=8; the lowest h of the sources, "
     "and 4 if an endpoint has write=on), consumed there as raw clients consume bytes, "
     "before its first output and again after reseed= bytes or reseed-ms= milliseconds. "
     "When the pool cannot supply a seed, drbg clients wait as raw clients do. See RAW MODE "
     "AND DRBG MODE in the README.",
     ep_mode},
    {"reseed", "BYTES", CONF_ANY_ENDPOINT,
     "with mode=drbg: reseed after this much output (default 1048576)", NULL, ep_reseed},
    {"reseed-ms", "MS", CONF_ANY_ENDPOINT,
     "with mode=drbg: reseed when the seed is this old before more output (default 1000)", NULL,
     ep_reseed_ms},
    {"prediction-resistance", "on|off", CONF_ANY_ENDPOINT,
     "with mode=drbg: reseed from the pool before every request (default off)",
     "Each 0x01 or 0x02 request (on proto=raw endpoints, each write) then costs one seed "
     "of pool bytes.",
     ep_pr},
    {"owner", "USER", FILE_LISTENERS, "owner of the socket or pipe file (name or uid)", NULL,
     ep_owner},
    {"group", "GROUP", FILE_LISTENERS, "group of the socket or pipe file (name or gid)", NULL,
     ep_group},
    {"tls", "DIR", CONF_LISTEN(EP_TCP) | CONF_DIAL(EP_TCP),
     "TLS with QEMU's x509 directory DIR (tls-creds-x509): ca-cert.pem, and server-cert.pem "
     "+ server-key.pem to listen, client-cert.pem + client-key.pem to connect",
     "An optional ca-crl.pem is honoured. TLS 1.2 or newer (OpenSSL). The files are read at "
     "start-up (and at each SIGHUP re-exec). A refused peer (plain text, unknown CA, expired or "
     "revoked certificate, subject not allowed, wrong host name) gets one log line and no "
     "byte. See TLS.",
     ep_tls},
    {"verify-peer", "on|off", CONF_LISTEN(EP_TCP) | CONF_DIAL(EP_TCP),
     "with tls=: a listener requires a client certificate signed by the CA, a connecting side "
     "checks the server's against the CA and the host dialed (default on)",
     NULL, ep_verify_peer},
    {"authz", "FILE", CONF_LISTEN(EP_TCP),
     "with tls=: serve only client certificates whose subject FILE lists",
     "One subject per line in RFC 2253 form, as `openssl x509 -noout -subject -nameopt "
     "RFC2253` prints it (a leading subject= is ignored), e.g. CN=hv1,O=example; # comments "
     "and blank lines are skipped. Read at start-up and at each SIGHUP re-exec.",
     ep_authz},
};
const size_t conf_nendpoint_opts = sizeof(conf_endpoint_opts) / sizeof(conf_endpoint_opts[0]);

const struct conf_spec_opt *conf_find_opt(const struct conf_spec_opt *table, size_t n,
					  const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++) {
		if (strlen(table[i].name) == len && strncmp(table[i].name, name, len) == 0) {
			return &table[i];
		}
	}
	return NULL;
}
