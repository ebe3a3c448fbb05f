/* src_egd: the `egd:ENDPOINT` source kind: an upstream EGD server (another entropyd, or any
 * server of the protocol), so that one entropyd can feed another.
 *
 *   egd:tcp:HOST:PORT   egd:tcp:[V6ADDR]:PORT   egd:unix:PATH
 *   egd:tcp:HOST:PORT,tls=DIR[,verify-peer=off]   (the source options tls= and verify-peer=
 *                                                   arrive appended to the argument)
 *
 * With tls=, open() makes a mutual TLS connection (tls.c: DIR's ca-cert.pem,
 * client-cert.pem, client-key.pem, optional ca-crl.pem; the upstream's certificate must name
 * HOST) and finishes the handshake before the first request, within the connect deadline.
 *
 * open() connects (within EGD_CONNECT_TIMEOUT_MS) and sends its first requests at once: an
 * entropyd upstream then never takes us for a reconnected QEMU waiting for primer bytes.
 * Blocking requests (`02 FF`) are kept EGD_DEPTH deep, so that throughput is not bound by
 * round trips. The upstream's bytes pass this daemon's own health tests like any source's.
 *
 * Invariant: read() returns only bytes the upstream sent, and `owed` is exactly the bytes
 * requested and not yet received (bytes beyond it, unrequested, count as delivered and
 * leave it at 0). A closed connection, an error, or no byte for egd_stall_ms (30 s) while
 * bytes are owed fails the read: src.c then reconnects with backoff. */
#include "src_driver.h"

#include "clock.h"
#include "netaddr.h"
#include "tls.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EGD_DEPTH 16u /* requests in flight */
#define EGD_REQ 255u  /* bytes per request, the protocol's maximum */
#define EGD_CONNECT_TIMEOUT_MS 10000

/* No byte for this long while bytes are owed is a stall (a variable for tests). */
static int egd_stall_ms = 30000;

struct egd_where {
	bool unix_path;
	char host[256]; /* without brackets */
	char port[8];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char tls_dir[4096]; /* tls=DIR, or "" */
	bool verify;	    /* verify-peer= (default on) */
};

struct egd_src {
	int fd;
	char where[300]; /* the endpoint as given, for messages */
	unsigned long long owed, received;
	uint8_t out[2 * EGD_DEPTH]; /* requests not yet written */
	size_t outlen;
	bool server_done;	   /* the server finished sending: no request goes out */
	struct tls_conf *tls_conf; /* tls=: the credentials, and the connection */
	struct tls_conn *tls;
};

/* The ",tls=DIR,verify-peer=on|off" tail of the argument (opts, cut up in place). */
static int options_parse(char *opts, struct egd_where *w, char *err, size_t errlen)
{
	char *save = NULL;

	for (char *o = strtok_r(opts, ",", &save); o != NULL; o = strtok_r(NULL, ",", &save)) {
		if (strncmp(o, "tls=", 4) == 0 && o[4] != '\0') {
			snprintf(w->tls_dir, sizeof(w->tls_dir), "%s", o + 4);
		} else if (strcmp(o, "verify-peer=on") == 0 || strcmp(o, "verify-peer=off") == 0) {
			w->verify = strcmp(o, "verify-peer=on") == 0;
		} else {
			snprintf(err, errlen, "egd: unknown option '%s'", o);
			return -1;
		}
	}
	return 0;
}

/* tcp:HOST:PORT, tcp:[V6]:PORT or unix:PATH, then options; -1 with a message naming what
 * is wrong. */
static int upstream_parse(const char *arg, struct egd_where *w, char *err, size_t errlen)
{
	static const char *const kinds[] = {"tcp", "unix", NULL};
	struct netaddr_spec a;
	char why[200], addr[600], *comma;

	memset(w, 0, sizeof(*w));
	w->verify = true;
	snprintf(addr, sizeof(addr), "%s", arg);
	comma = strchr(addr, ',');
	if (comma != NULL) {
		*comma = '\0';
		if (options_parse(comma + 1, w, err, errlen) < 0) {
			return -1;
		}
	}
	if (netaddr_parse(addr, kinds, false, &a, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "egd: '%s': %s", addr, why);
		return -1;
	}
	if (a.is_path && w->tls_dir[0] != '\0') {
		snprintf(err, errlen, "egd: '%s': tls= needs egd:tcp:HOST:PORT", addr);
		return -1;
	}
	if (!w->verify && w->tls_dir[0] == '\0') {
		snprintf(err, errlen, "egd: '%s': verify-peer= needs tls=DIR", addr);
		return -1;
	}
	w->unix_path = a.is_path;
	snprintf(w->host, sizeof(w->host), "%s", a.host);
	snprintf(w->port, sizeof(w->port), "%s", a.port);
	snprintf(w->path, sizeof(w->path), "%s", a.path);
	return 0;
}

/* Connect fd to addr within the deadline; 0, or -1 with errno. */
static int connect_by(int fd, const struct sockaddr *addr, socklen_t len, long long deadline)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	socklen_t sl = sizeof(int);
	int soerr = 0;

	if (connect(fd, addr, len) == 0) {
		return 0;
	}
	if (errno != EINPROGRESS && errno != EINTR) {
		return -1;
	}
	for (;;) {
		long long left = deadline - clock_ms();
		int r;

		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&p, 1, (int)left);
		if (r > 0) {
			break;
		}
		if (r < 0 && errno != EINTR) {
			return -1;
		}
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
		return -1;
	}
	errno = soerr;
	return soerr == 0 ? 0 : -1;
}

static int connect_unix(const struct egd_where *w, long long deadline, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	memcpy(sun.sun_path, w->path, strlen(w->path) + 1);
	if (fd < 0 || connect_by(fd, (struct sockaddr *)&sun, sizeof(sun), deadline) < 0) {
		snprintf(err, errlen, "connect to unix:%s: %s", w->path,
			 errno == EAGAIN ? "the server's backlog is full" : strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
		return -1;
	}
	return fd;
}

static int connect_tcp(const struct egd_where *w, long long deadline, char *err, size_t errlen)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res, *ai;
	int fd = -1, one = 1, rc = getaddrinfo(w->host, w->port, &hints, &res);
	char addr[NI_MAXHOST] = "?";

	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", w->host,
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL, 0,
			    NI_NUMERICHOST);
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd >= 0 && connect_by(fd, ai->ai_addr, ai->ai_addrlen, deadline) == 0) {
			break;
		}
		snprintf(err, errlen, "connect to %s port %s: %s", addr, w->port, strerror(errno));
		if (fd >= 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd >= 0) {
		/* Requests are 2 bytes: send each batch at once. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return fd;
}

/* Queue requests until EGD_DEPTH are owed; owed counts a request from when it is queued. */
static void top_up(struct egd_src *s)
{
	while (s->owed <= (EGD_DEPTH - 1) * EGD_REQ && s->outlen + 2 <= sizeof(s->out)) {
		s->out[s->outlen++] = 0x02;
		s->out[s->outlen++] = EGD_REQ;
		s->owed += EGD_REQ;
	}
}

/* True once the server has finished sending (its FIN arrived). A request sent then meets a
 * closed socket, and the reset it draws makes this kernel drop what the server sent and was
 * not read yet: those bytes are read instead, then the end. */
static bool server_done(struct egd_src *s)
{
	struct pollfd p = {.fd = s->fd, .events = POLLRDHUP};

	if (!s->server_done && poll(&p, 1, 0) > 0 &&
	    (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
		s->server_done = true;
	}
	return s->server_done;
}

/* Write what the socket (or the TLS connection) takes of the queued requests; -1 on an
 * error. */
static int flush(struct egd_src *s)
{
	if (s->outlen > 0 && server_done(s)) {
		return 0;
	}
	while (s->outlen > 0) {
		struct iovec v = {s->out, s->outlen};
		ssize_t w = s->tls != NULL
				? tls_writev(s->tls, &v, 1)
				: send(s->fd, s->out, s->outlen, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w <= 0) {
			return w == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
				   ? 0
				   : -1;
		}
		memmove(s->out, s->out + w, s->outlen - (size_t)w);
		s->outlen -= (size_t)w;
	}
	if (s->tls != NULL && tls_flush(s->tls) < 0 && errno != EAGAIN) {
		return -1;
	}
	return 0;
}

/* Why the last I/O on s failed. */
static const char *io_why(const struct egd_src *s)
{
	const char *why = s->tls != NULL ? tls_error(s->tls) : NULL;

	return why != NULL ? why : strerror(errno);
}

/* poll() events for a TLS connection's readiness (tls_waits) in direction dir. */
static short poll_for(const struct egd_src *s, short dir)
{
	return tls_waits(s->tls, dir) == EV_WRITE ? POLLOUT : POLLIN;
}

/* tls=: load the credentials and finish the handshake by the deadline; -1 with a message. */
static int tls_start(struct egd_src *s, const struct egd_where *w, long long deadline, char *err,
		     size_t errlen)
{
	char why[400];

	s->tls_conf = tls_conf_new(w->tls_dir, false, w->verify, NULL, why, sizeof(why));
	if (s->tls_conf == NULL) {
		snprintf(err, errlen, "%s: %s", s->where, why);
		return -1;
	}
	s->tls = tls_conn_new(s->tls_conf, s->fd, false, w->host, why, sizeof(why));
	if (s->tls == NULL) {
		snprintf(err, errlen, "%s: %s", s->where, why);
		return -1;
	}
	for (;;) {
		struct pollfd p = {.fd = s->fd, .events = poll_for(s, EV_READ)};
		long long left = deadline - clock_ms();

		if (tls_handshake(s->tls) == 1) {
			return 0;
		}
		if (errno != EAGAIN) {
			snprintf(err, errlen, "%s: %s", s->where, io_why(s));
			return -1;
		}
		if (left <= 0 || src_stopping()) {
			snprintf(err, errlen, "%s: %s", s->where,
				 left <= 0 ? "TLS handshake timed out" : "stopping");
			return -1;
		}
		(void)poll(&p, 1, (int)left);
	}
}

/* Release what s holds (the descriptor included). */
static void egd_free(struct egd_src *s)
{
	tls_conn_free(s->tls);
	tls_conf_free(s->tls_conf);
	if (s->fd >= 0) {
		close(s->fd);
	}
	free(s);
}

static void *egd_open(const char *arg, char *err, size_t errlen)
{
	struct egd_where w;
	struct egd_src *s;
	long long deadline = clock_ms() + EGD_CONNECT_TIMEOUT_MS;

	if (upstream_parse(arg, &w, err, errlen) < 0) {
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->fd = -1;
	snprintf(s->where, sizeof(s->where), "%s", arg);
	s->where[strcspn(s->where, ",")] = '\0'; /* the address, without tls= */
	s->fd = w.unix_path ? connect_unix(&w, deadline, err, errlen)
			    : connect_tcp(&w, deadline, err, errlen);
	if (s->fd < 0) {
		free(s);
		return NULL;
	}
	if (w.tls_dir[0] != '\0' && tls_start(s, &w, deadline, err, errlen) < 0) {
		egd_free(s);
		return NULL;
	}
	/* The first requests go out now: silence would earn us unrequested primer bytes. */
	top_up(s);
	if (flush(s) < 0) {
		snprintf(err, errlen, "sending requests to %s: %s", s->where, io_why(s));
		egd_free(s);
		return NULL;
	}
	return s;
}

static long egd_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	struct egd_src *s = st;
	long long deadline = clock_ms() + egd_stall_ms;

	for (;;) {
		struct pollfd p = {.fd = s->fd, .events = POLLIN};
		long long left;
		ssize_t r;

		top_up(s);
		if (flush(s) < 0) {
			snprintf(err, errlen, "sending requests to %s: %s", s->where, io_why(s));
			return -1;
		}
		left = deadline - clock_ms();
		if (left <= 0) {
			snprintf(err, errlen, "no byte from %s for %d s while %llu bytes were owed",
				 s->where, egd_stall_ms / 1000, s->owed);
			return -1;
		}
		if (s->tls != NULL) {
			p.events = poll_for(s, EV_READ);
			if (s->outlen > 0 || tls_write_pending(s->tls)) {
				p.events |= poll_for(s, EV_WRITE);
			}
		} else {
			p.events |= s->outlen > 0 ? POLLOUT : 0;
		}
		if ((s->tls == NULL || !tls_read_pending(s->tls)) && poll(&p, 1, (int)left) <= 0) {
			if (src_stopping()) {
				snprintf(err, errlen, "stopping");
				return -1;
			}
			continue; /* a timeout or EINTR: the deadline decides */
		}
		r = s->tls != NULL ? tls_read(s->tls, buf, n) : recv(s->fd, buf, n, MSG_DONTWAIT);
		if (r > 0) {
			s->received += (unsigned long long)r;
			s->owed =
			    s->owed > (unsigned long long)r ? s->owed - (unsigned long long)r : 0;
			return (long)r;
		}
		if (r == 0) {
			snprintf(err, errlen,
				 "%s closed the connection after %llu bytes (%llu owed)", s->where,
				 s->received, s->owed);
			return -1;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			snprintf(err, errlen, "reading from %s: %s", s->where, io_why(s));
			return -1;
		}
	}
}

static void egd_close(void *st)
{
	egd_free(st);
}

static int egd_check(const char *arg, char *err, size_t errlen)
{
	struct egd_where w;

	return upstream_parse(arg, &w, err, errlen);
}

const struct src_driver src_egd_driver = {
    .kind = "egd",
    .syntax = "egd:EP",
    .help = "an upstream EGD server such as another entropyd: egd:tcp:HOST:PORT, "
	    "egd:tcp:[V6ADDR]:PORT or egd:unix:PATH (tcp over TLS with tls=DIR); retried with "
	    "backoff while it is down",
    .what = "an upstream EGD server (its bytes are tested here again)",
    .needs_arg = true,
    .takes_arg = true,
    .open = egd_open,
    .read = egd_read,
    .close = egd_close,
    .check = egd_check,
    .retry_at_start = true,
    .stall_ms = SRC_STALL_DEFAULT_MS,
};
