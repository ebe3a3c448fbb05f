/* udp: see udp.h. Each allowed peer becomes a client of the shared state machine whose
 * bytes leave through sendmsg() to its address from the endpoint's socket; the endpoint
 * reads datagrams and hands their bytes to that client. Peers are kept in a small table;
 * idle ones are dropped when it fills, and a peer that owes nothing for 10 minutes is
 * forgotten.
 *
 * Each datagram is a request set of its own (one that ends inside a command is dropped and
 * counted), and each peer's answers are paced by rate= (default UDP_DEFAULT_RATE_BYTES per
 * UDP_DEFAULT_RATE_MS): a forged but allowed source gets at most that, whatever it asks. */
#include "udp.h"

#include "client.h"
#include "log.h"
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define UDP_MAX_PEERS 256
#define UDP_IDLE_S 600
#define UDP_DEFAULT_RATE_BYTES (2u << 20)
#define UDP_DEFAULT_RATE_MS 1000u

struct udp_peer {
	struct udp_ep *u;
	struct sockaddr_storage addr;
	socklen_t len;
	struct client *c;
	time_t last;
};

struct udp_ep {
	struct event_base *base;
	struct clients *cs;
	int fd;
	char name[160];
	struct client_opts opts;
	struct udp_prefix allow[UDP_MAX_ALLOW];
	size_t nallow;
	struct event *rev;
	struct udp_peer *peers[UDP_MAX_PEERS];
	struct log_limit lim_refused, lim_full, lim_partial;
	unsigned long partial_dropped; /* datagrams that ended inside a command */
};

int udp_parse_prefix(const char *s, struct udp_prefix *p)
{
	char buf[80];
	char *slash, *end;
	long bits;

	if (strlen(s) >= sizeof(buf)) {
		return -1;
	}
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash != NULL) {
		*slash = '\0';
	}
	memset(p, 0, sizeof(*p));
	if (inet_pton(AF_INET, buf, p->addr) == 1) {
		p->family = AF_INET;
		p->bits = 32;
	} else if (inet_pton(AF_INET6, buf, p->addr) == 1) {
		p->family = AF_INET6;
		p->bits = 128;
	} else {
		return -1;
	}
	if (slash != NULL) {
		bits = strtol(slash + 1, &end, 10);
		if (end == slash + 1 || *end != '\0' || bits < 0 || bits > (long)p->bits) {
			return -1;
		}
		p->bits = (unsigned)bits;
	}
	return 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0) {
		return false;
	}
	return rest == 0 || ((a[whole] ^ b[whole]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool udp_allowed(const struct sockaddr *sa, const struct udp_prefix *allow, size_t n)
{
	const uint8_t *a4 = NULL, *a6 = NULL;

	if (sa->sa_family == AF_INET) {
		a4 = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		a6 = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)a6)) {
			a4 = a6 + 12;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (allow[i].family == AF_INET && a4 != NULL &&
		    prefix_match(a4, allow[i].addr, allow[i].bits)) {
			return true;
		}
		if (allow[i].family == AF_INET6 && a6 != NULL &&
		    prefix_match(a6, allow[i].addr, allow[i].bits)) {
			return true;
		}
	}
	return false;
}

static ssize_t peer_send(void *ctx, int fd, const struct iovec *iov, int cnt)
{
	struct udp_peer *p = ctx;
	struct msghdr msg = {
	    .msg_name = &p->addr,
	    .msg_namelen = p->len,
	    .msg_iov = (struct iovec *)iov,
	    .msg_iovlen = (size_t)cnt,
	};

	return sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* The socket is the endpoint's; the peer's record goes with its client (peer_gone). */
static void peer_close(void *ctx, int fd)
{
}

/* A datagram peer: answers leave by sendmsg() to its address; its requests are read by the
 * endpoint and handed over whole (client_input). */
static const struct transport udp_transport = {
    .name = "udp", .writev = peer_send, .close = peer_close, .max_send = UDP_MAX_REPLY};

static void peer_gone(void *arg)
{
	struct udp_peer *p = arg;
	struct udp_ep *u = p->u;

	for (size_t i = 0; i < UDP_MAX_PEERS; i++) {
		if (u->peers[i] == p) {
			u->peers[i] = NULL;
		}
	}
	free(p);
}

static struct udp_peer *find_peer(struct udp_ep *u, const struct sockaddr_storage *ss,
				  socklen_t len)
{
	time_t now = time(NULL);
	int slot = -1;

	for (int i = 0; i < UDP_MAX_PEERS; i++) {
		struct udp_peer *p = u->peers[i];

		if (p != NULL && p->len == len && memcmp(&p->addr, ss, len) == 0) {
			return p;
		}
		if (p != NULL && client_idle(p->c) && now - p->last > UDP_IDLE_S) {
			client_drop(p->c, "idle for 10 minutes");
			p = NULL;
		}
		if (p == NULL && slot < 0) {
			slot = i;
		}
	}
	if (slot < 0) {
		/* Full: forget an idle peer, never one that is owed bytes. */
		for (int i = 0; i < UDP_MAX_PEERS && slot < 0; i++) {
			if (client_idle(u->peers[i]->c)) {
				client_drop(u->peers[i]->c,
					    "peer table full; dropping an idle peer");
				slot = i;
			}
		}
		if (slot < 0) {
			return NULL;
		}
	}

	struct udp_peer *p = calloc(1, sizeof(*p));
	char host[INET6_ADDRSTRLEN], serv[16], peer[200];

	if (p == NULL) {
		return NULL;
	}
	p->u = u;
	memcpy(&p->addr, ss, len);
	p->len = len;
	getnameinfo((const struct sockaddr *)ss, len, host, sizeof(host), serv, sizeof(serv),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(peer, sizeof(peer), ss->ss_family == AF_INET6 ? "udp:[%s]:%s" : "udp:%s:%s", host,
		 serv);
	p->c = client_new(u->cs, &udp_transport, p, u->fd, &u->opts, peer, peer_gone, p);
	if (p->c == NULL) {
		free(p);
		return NULL;
	}
	u->peers[slot] = p;
	log_info("%s: new peer %s", u->name, peer);
	return p;
}

static void udp_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct udp_ep *u = arg;

	for (int burst = 0; burst < 64; burst++) {
		uint8_t buf[2048];
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		ssize_t r =
		    recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&ss, &len);
		struct udp_peer *p;

		if (r < 0) {
			/* ECONNREFUSED: a connected endpoint's peer (QEMU) is not running; the
			 * socket stays bound and serves it again when it is back. */
			if (errno == ECONNREFUSED) {
				log_debug("%s: peer not there (ICMP port unreachable)", u->name);
				continue;
			}
			if (errno != EAGAIN && errno != EINTR) {
				log_warn("%s: receive", u->name);
			}
			return;
		}
		if (!udp_allowed((struct sockaddr *)&ss, u->allow, u->nallow)) {
			char host[INET6_ADDRSTRLEN] = "?";

			getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), NULL, 0,
				    NI_NUMERICHOST);
			log_limited(&u->lim_refused, LOG_WARNING,
				    "%s: datagram from %s ignored: not in allow=", u->name, host);
			continue;
		}
		p = find_peer(u, &ss, len);
		if (p == NULL) {
			log_limited(&u->lim_full, LOG_WARNING,
				    "%s: too many peers owed bytes; datagram ignored", u->name);
			continue;
		}
		p->last = time(NULL);
		if (client_input(p->c, buf, (size_t)r) == 1) {
			char host[INET6_ADDRSTRLEN] = "?", serv[16] = "?";

			u->partial_dropped++;
			getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), serv,
				    sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV);
			log_limited(&u->lim_partial, LOG_WARNING,
				    "%s: datagram of %zd bytes from %s port %s ends inside a "
				    "command; dropped (requests are never joined across "
				    "datagrams; %lu dropped so far)",
				    u->name, r, host, serv, u->partial_dropped);
		}
	}
}

struct udp_ep *udp_listen(struct event_base *base, struct clients *cs, int fd, const char *name,
			  const struct client_opts *opts, const struct udp_prefix *allow,
			  size_t nallow)
{
	struct udp_ep *u = calloc(1, sizeof(*u));

	if (u == NULL) {
		return NULL;
	}
	u->base = base;
	u->cs = cs;
	u->fd = fd;
	snprintf(u->name, sizeof(u->name), "%s", name);
	u->opts = *opts;
	u->opts.primer = 0; /* no connections, so no reconnects to unstick */
	u->opts.raw = false;
	if (!u->opts.has_rate) {
		u->opts.rate_bytes = UDP_DEFAULT_RATE_BYTES;
		u->opts.rate_ms = UDP_DEFAULT_RATE_MS;
	}
	memcpy(u->allow, allow, nallow * sizeof(*allow));
	u->nallow = nallow;
	u->rev = event_new(base, fd, EV_READ | EV_PERSIST, udp_read_cb, u);
	if (u->rev == NULL || event_add(u->rev, NULL) < 0) {
		free(u);
		return NULL;
	}
	return u;
}

void udp_free(struct udp_ep *u)
{
	if (u == NULL) {
		return;
	}
	for (size_t i = 0; i < UDP_MAX_PEERS; i++) {
		if (u->peers[i] != NULL) {
			client_drop(u->peers[i]->c, "shutting down");
		}
	}
	event_free(u->rev);
	free(u);
}
