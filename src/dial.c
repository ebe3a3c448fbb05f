/* dial: see dial.h. A stream endpoint is a small state machine (idle -> dialing ->
 * connected -> idle) driven by one timer and one write event. UDP has no connection to wait
 * for: the endpoint binds the local address QEMU sends to (local=), connects to QEMU's
 * address and serves that one peer; it keeps this socket for its whole life and passes it
 * across a re-exec, because if the port were ever unbound while QEMU runs, an ICMP error
 * would make QEMU stop reading its chardev for good. */
#include "dial.h"

#include "clock.h"
#include "handover.h"
#include "log.h"
#include "netaddr.h"
#include "transport.h"
#include "udp.h"
#include "vu_conn.h"
#include "vu_handover.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DIAL_BACKOFF_MIN_MS 100
#define DIAL_BACKOFF_MAX_MS 5000
#define DIAL_TIMEOUT_S 5
#define DIAL_STABLE_MS 5000 /* a connection this old was a good one */

struct dialer {
	struct endpoint *ep;
	struct event *timer, *dial_ev;
	int dial_fd;
	unsigned backoff_ms;
	int last_errno;
	long long connected_ms; /* when the last connection was made (clock_ms) */
	struct log_limit lines; /* connected / lost lines: a peer that drops us at once */
	/* udp: the socket kept for life, and its one peer */
	struct udp_ep *udp;
	int udp_fd;
};

static void dial(struct dialer *d);

static void schedule_dial(struct dialer *d)
{
	struct timeval tv = {d->backoff_ms / 1000, (d->backoff_ms % 1000) * 1000};

	evtimer_add(d->timer, &tv);
	d->backoff_ms *= 2;
	if (d->backoff_ms > DIAL_BACKOFF_MAX_MS) {
		d->backoff_ms = DIAL_BACKOFF_MAX_MS;
	}
}

static void dial_failed(struct dialer *d, int err)
{
	const char *spec = d->ep->conf.spec;

	if (d->dial_fd >= 0) {
		close(d->dial_fd);
		d->dial_fd = -1;
	}
	if (err != d->last_errno) {
		log_warnx("%s: cannot connect: %s; retrying every %u ms at most", spec,
			  strerror(err), DIAL_BACKOFF_MAX_MS);
		d->last_errno = err;
	} else {
		log_debug("%s: cannot connect: %s", spec, strerror(err));
	}
	schedule_dial(d);
}

/* The connection ended. One that lasted DIAL_STABLE_MS starts the backoff afresh; one that
 * the peer dropped at once (a refused handshake, a peer that closes on accept) keeps
 * lengthening it, so that such a peer is not redialed ten times a second. */
static void connection_closed(void *arg)
{
	struct dialer *d = arg;

	if (clock_ms() - d->connected_ms >= DIAL_STABLE_MS) {
		d->backoff_ms = DIAL_BACKOFF_MIN_MS;
	}
	log_limited(&d->lines, LOG_INFO, "%s: connection lost; redialing in %u ms",
		    d->ep->conf.spec, d->backoff_ms);
	d->last_errno = 0;
	schedule_dial(d);
}

static void dial_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dialer *d = arg;
	struct endpoint *ep = d->ep;
	int soerr = ETIMEDOUT;
	socklen_t len = sizeof(soerr);
	const struct transport *tr;
	void *ctx = NULL;
	char err[256];

	if ((what & EV_WRITE) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
		soerr = errno;
	}
	if (soerr != 0) {
		dial_failed(d, soerr);
		return;
	}
	d->dial_fd = -1;
	d->last_errno = 0;
	d->connected_ms = clock_ms();
	log_limited(&d->lines, LOG_INFO, "connected to %s", ep->conf.spec);
	if (ep->conf.kind == EP_TCP) {
		netaddr_no_delay(fd);
	}
	if (ep->conf.kind == EP_VHOST) {
		char peer[160];

		snprintf(peer, sizeof(peer), "%s#%d", ep->conf.spec, (int)fd);
		if (vu_conn_new(ep->base, ep->cs, fd, &ep->conf.opts, peer, connection_closed, d) <
		    0) {
			connection_closed(d);
		}
		return;
	}
	tr = transport_for(&ep->conf);
	if (tr->attach != NULL &&
	    (ctx = tr->attach(fd, false, &ep->conf, err, sizeof(err))) == NULL) {
		log_warnx("%s: %s", ep->conf.spec, err);
		close(fd);
		connection_closed(d);
		return;
	}
	client_new(ep->cs, tr, ctx, fd, &ep->conf.opts, ep->conf.spec, connection_closed, d);
}

/* Bind the udp socket fd to local=HOST:PORT unless it is bound already (inherited). */
static int bind_local(const struct endpoint_conf *c, int fd, int family)
{
	struct addrinfo hints = {.ai_family = family,
				 .ai_socktype = SOCK_DGRAM,
				 .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
	struct addrinfo *res;
	int rc;

	if (c->local_host == NULL || netaddr_port(fd) != 0) {
		return 0;
	}
	rc = getaddrinfo(c->local_host, c->local_port, &hints, &res);
	if (rc != 0) {
		errno = EADDRNOTAVAIL;
		return -1;
	}
	rc = bind(fd, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return rc;
}

static void dial_udp(struct dialer *d, const struct sockaddr_storage *ss, socklen_t sslen)
{
	struct endpoint *ep = d->ep;
	struct udp_prefix only;
	char host[INET6_ADDRSTRLEN];
	int fd = inherit_take_peer(ep->inherited, (const struct sockaddr *)ss);

	if (fd < 0) {
		fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			dial_failed(d, errno);
			return;
		}
	}
	if (bind_local(&ep->conf, fd, ss->ss_family) < 0 ||
	    connect(fd, (const struct sockaddr *)ss, sslen) < 0) {
		int e = errno;

		close(fd);
		dial_failed(d, e);
		return;
	}
	getnameinfo((const struct sockaddr *)ss, sslen, host, sizeof(host), NULL, 0,
		    NI_NUMERICHOST);
	if (udp_parse_prefix(host, &only) < 0) {
		close(fd);
		dial_failed(d, EINVAL);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	d->udp = udp_listen(ep->base, ep->cs, fd, ep->conf.spec, &ep->conf.opts, &only, 1);
	if (d->udp == NULL) {
		close(fd);
		dial_failed(d, ENOMEM);
		return;
	}
	d->udp_fd = fd;
	d->last_errno = 0;
	log_info("connected to %s", ep->conf.spec);
}

/* The peer's address; -1 (after scheduling a retry) if it cannot be had now. */
static int peer_address(struct dialer *d, struct sockaddr_storage *ss, socklen_t *sslen)
{
	const struct endpoint_conf *c = &d->ep->conf;
	struct addrinfo hints = {.ai_socktype = c->kind == EP_UDP ? SOCK_DGRAM : SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res;
	char err[256];
	int rc;

	if (c->kind == EP_UNIX || c->kind == EP_VHOST) {
		if (netaddr_unix(c->path, (struct sockaddr_un *)ss, err, sizeof(err)) < 0) {
			dial_failed(d, ENAMETOOLONG);
			return -1;
		}
		*sslen = sizeof(struct sockaddr_un);
		return 0;
	}
	rc = getaddrinfo(c->host, c->port, &hints, &res);
	if (rc != 0) {
		log_warnx("%s: %s", c->spec, gai_strerror(rc));
		dial_failed(d, EHOSTUNREACH);
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void dial(struct dialer *d)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct timeval tv = {DIAL_TIMEOUT_S, 0};

	if (peer_address(d, &ss, &sslen) < 0) {
		return;
	}
	if (d->ep->conf.kind == EP_UDP) {
		dial_udp(d, &ss, sslen);
		return;
	}
	d->dial_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (d->dial_fd < 0) {
		dial_failed(d, errno);
		return;
	}
	if (connect(d->dial_fd, (struct sockaddr *)&ss, sslen) < 0 && errno != EINPROGRESS) {
		dial_failed(d, errno);
		return;
	}
	event_assign(d->dial_ev, d->ep->base, d->dial_fd, EV_WRITE, dial_done_cb, d);
	event_add(d->dial_ev, &tv);
}

static void dial_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	dial(arg);
}

static int open_dialer(struct endpoint *ep, char *err, size_t errlen)
{
	struct dialer *d = calloc(1, sizeof(*d));

	if (d == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	d->ep = ep;
	d->dial_fd = d->udp_fd = -1;
	d->backoff_ms = DIAL_BACKOFF_MIN_MS;
	ep->impl = d;
	d->timer = evtimer_new(ep->base, dial_timer_cb, d);
	d->dial_ev = event_new(ep->base, -1, 0, NULL, NULL);
	if (d->timer == NULL || d->dial_ev == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	log_info("connecting to %s (%s)", ep->conf.spec,
		 ep->conf.kind == EP_VHOST ? "virtio-rng"
		 : ep->conf.opts.raw	   ? "raw"
					   : "egd");
	if (ep->held) {
		schedule_dial(d); /* unless adopt_dialed resumes the connection handed over */
	} else {
		dial(d);
	}
	return 0;
}

/* The connection the previous image dialed, handed over across a reload (handover.h). */
static int adopt_dialed(struct endpoint *ep, int fd, const struct handover_rec *r)
{
	struct dialer *d = ep->impl;

	if (d == NULL || ep->conf.kind == EP_UDP || d->dial_fd >= 0 ||
	    clients_on(ep->cs, ep->conf.spec) > 0) {
		close(fd);
		return -1;
	}
	evtimer_del(d->timer);
	d->backoff_ms = DIAL_BACKOFF_MIN_MS;
	d->last_errno = 0;
	d->connected_ms = clock_ms();
	log_info("%s: connection kept across the reload", ep->conf.spec);
	/* Dialed connections stay on the main thread (no workers). */
	return handover_adopt(NULL, ep->cs, fd, &ep->conf.opts, r, connection_closed, d);
}

/* The vhost-user device the previous image dialed, handed over (vu_handover.h); if it
 * cannot be resumed, dial at once (QEMU replays the set-up to a new connection). */
static int adopt_vu_dialed(struct endpoint *ep, const struct handover_vu_rec *r)
{
	struct dialer *d = ep->impl;

	if (d == NULL || d->dial_fd >= 0 || !evtimer_pending(d->timer, NULL)) {
		vu_handover_drop(r, "its endpoint is connected already");
		return -1;
	}
	evtimer_del(d->timer);
	d->backoff_ms = DIAL_BACKOFF_MIN_MS;
	d->last_errno = 0;
	d->connected_ms = clock_ms();
	if (vu_handover_resume(ep->base, ep->cs, &ep->conf.opts, r, connection_closed, d) < 0) {
		dial(d);
		return -1;
	}
	return 0;
}

static size_t keep_dialer(const struct endpoint *ep, struct inherit_kept *out, size_t room)
{
	const struct dialer *d = ep->impl;

	if (d == NULL || d->udp_fd < 0 || room == 0) {
		return 0;
	}
	out[0] = (struct inherit_kept){.fd = d->udp_fd};
	return 1;
}

static void close_dialer(struct endpoint *ep)
{
	struct dialer *d = ep->impl;

	if (d == NULL) {
		return;
	}
	if (d->timer != NULL) {
		event_free(d->timer);
	}
	if (d->dial_ev != NULL) {
		event_del(d->dial_ev);
		event_free(d->dial_ev);
	}
	udp_free(d->udp);
	if (d->udp_fd >= 0) {
		close(d->udp_fd);
	}
	if (d->dial_fd >= 0) {
		close(d->dial_fd);
	}
	free(d);
	ep->impl = NULL;
}

static const char *dialer_state(const struct endpoint *ep)
{
	const struct dialer *d = ep->impl;

	if (d == NULL) {
		return "closed";
	}
	if (d->udp != NULL || clients_on(ep->cs, ep->conf.spec) > 0) {
		return "connected";
	}
	return d->dial_fd >= 0 ? "dialing" : "waiting to redial";
}

const struct endpoint_ops dial_ops = {.open = open_dialer,
				      .keep = keep_dialer,
				      .close = close_dialer,
				      .adopt = adopt_dialed,
				      .adopt_vu = adopt_vu_dialed,
				      .state = dialer_state};
