/* vu_conn: see vu_conn.h. A message is read in two steps, each with recvmsg of exactly
 * what is missing (the 12-byte header, then its payload), so a read never runs into the
 * next message and the descriptors QEMU sends with a message arrive with its header; a
 * descriptor that comes with a payload is a protocol error. */
#include "vu_conn.h"

#include "log.h"
#include "meter.h"
#include "pacer.h"
#include "pool.h"
#include "vhost_user.h"

#include <errno.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bytes a turn may run over to finish the chain it began (charged to its next turns). */
#define VU_OVERSHOOT 65536u

struct vu_conn {
	struct event_base *base;
	struct clients *cs;
	int fd;
	const char *spec; /* its endpoint's (client_opts.endpoint) */
	char peer[128];
	struct event *rev, *kick_ev;
	struct event *partial_ev; /* a message begun and not finished: its deadline */
	unsigned armed_gen;	  /* dev.kick_gen the kick event was armed for */
	bool kick_et;		  /* the kick eventfd is watched edge-triggered (kick_cb) */
	struct vu_dev dev;
	struct turn turn;
	struct pacer pacer;
	uint8_t hdr[VU_HDR_SIZE];
	size_t got;
	bool in_payload;
	struct vu_msg msg;
	client_closed_fn on_closed;
	void *on_closed_arg;
	uint64_t served;
	size_t debt;	    /* bytes taken beyond its last turns (a chain finished whole) */
	char endpoint[96];  /* the spec of its endpoint (status) */
	long long since;    /* connected at (seconds since the epoch) */
	struct meter meter; /* served, sampled each second */
};

static void conn_free(struct vu_conn *v)
{
	clients_member_remove(v->cs, &v->turn);
	if (v->rev != NULL) {
		event_free(v->rev);
	}
	if (v->kick_ev != NULL) {
		event_free(v->kick_ev);
	}
	if (v->partial_ev != NULL) {
		event_free(v->partial_ev);
	}
	pacer_free(&v->pacer);
	for (size_t i = 0; i < v->msg.nfds; i++) {
		close(v->msg.fds[i]);
	}
	vu_dev_reset(&v->dev);
	close(v->fd);
	explicit_bzero(v, sizeof(*v));
	free(v);
}

/* End the connection; why (NULL: the front-end closed it) is logged. */
static void conn_close(struct vu_conn *v, const char *why)
{
	client_closed_fn cb = v->on_closed;
	void *arg = v->on_closed_arg;

	if (why != NULL) {
		log_warnx("vhost-user %s: %s; connection closed (served %llu bytes)", v->peer, why,
			  (unsigned long long)v->served);
	} else {
		log_info("vhost-user %s: front-end closed the connection (served %llu bytes)",
			 v->peer, (unsigned long long)v->served);
	}
	conn_free(v);
	if (cb != NULL) {
		cb(arg);
	}
}

static void conn_shutdown(struct turn *t)
{
	conn_free((struct vu_conn *)((char *)t - offsetof(struct vu_conn, turn)));
}

static void conn_stat(struct turn *t, struct client_stat *st)
{
	struct vu_conn *v = (struct vu_conn *)((char *)t - offsetof(struct vu_conn, turn));

	*st = (struct client_stat){.peer = v->peer,
				   .endpoint = v->endpoint,
				   .kind = "vm",
				   .state = v->dev.broken      ? "broken"
					    : vu_live(&v->dev) ? "running"
							       : "stopped",
				   .served = v->served,
				   .throttled = v->pacer.throttled,
				   .rate = meter_rate(&v->meter),
				   .since = v->since};
}

static void conn_tick(struct turn *t)
{
	struct vu_conn *v = (struct vu_conn *)((char *)t - offsetof(struct vu_conn, turn));

	meter_sample(&v->meter, v->served);
}

/* Join the rotation if the ring is live, chains wait and rate= allows. */
static void want_turn(struct vu_conn *v)
{
	if (vu_live(&v->dev) && !v->pacer.waiting && vring_has_avail(&v->dev.vr)) {
		clients_turn_join(v->cs, &v->turn);
	}
}

/* The guest kicked. The kick eventfd is watched edge-triggered where the event backend can
 * (epoll): every write by the front-end wakes the loop once, so its counter need not be
 * read back; one system call less per request (its counter reaches 2^64 - 1 after that
 * many kicks, which no guest lives to post). Elsewhere it is drained. */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vu_conn *v = arg;

	if (!v->kick_et) {
		uint64_t n;

		(void)!read(fd, &n, sizeof(n)); /* EAGAIN when nothing is left is fine */
	}
	want_turn(v);
}

/* The ring started, stopped, moved or broke: watch the kick eventfd the device has now. */
static void rearm(struct vu_conn *v)
{
	if (v->armed_gen == v->dev.kick_gen) {
		return;
	}
	v->armed_gen = v->dev.kick_gen;
	event_del(v->kick_ev);
	clients_turn_leave(v->cs, &v->turn);
	if (v->dev.broken) {
		log_warnx("vhost-user %s: the guest broke the ring (%s); device stopped, served "
			  "%llu bytes",
			  v->peer, v->dev.why, (unsigned long long)v->served);
		return;
	}
	if (!vu_live(&v->dev)) {
		return;
	}
	event_assign(v->kick_ev, v->base, v->dev.kick_fd,
		     EV_READ | EV_PERSIST | (v->kick_et ? EV_ET : 0), kick_cb, v);
	event_add(v->kick_ev, NULL);
	want_turn(v); /* chains posted before the kick eventfd came */
}

/* Copy up to limit pool bytes into the guest's buffers. */
static size_t fill_from_pool(void *arg, const struct iovec *iov, size_t n, size_t limit)
{
	struct pool *pool = clients_pool(((struct vu_conn *)arg)->cs);
	struct iovec src[2];
	size_t want = 0, have = 0, si = 0, soff = 0;
	int cnt;

	for (size_t i = 0; i < n && want < limit; i++) {
		want += iov[i].iov_len < limit - want ? iov[i].iov_len : limit - want;
	}
	cnt = pool_peek(pool, want, src);
	for (size_t i = 0; i < n && si < (size_t)cnt; i++) {
		size_t doff = 0;

		while (doff < iov[i].iov_len && si < (size_t)cnt) {
			size_t k = iov[i].iov_len - doff;

			k = k < src[si].iov_len - soff ? k : src[si].iov_len - soff;
			memcpy((uint8_t *)iov[i].iov_base + doff,
			       (uint8_t *)src[si].iov_base + soff, k);
			doff += k;
			soff += k;
			have += k;
			if (soff == src[si].iov_len) {
				si++;
				soff = 0;
			}
		}
	}
	pool_consume(pool, have);
	return have;
}

/* Its turn: fill chains with up to quantum bytes, signal the guest, queue again while
 * chains are left. */
static bool serve(struct turn *t, size_t quantum)
{
	struct vu_conn *v = (struct vu_conn *)((char *)t - offsetof(struct vu_conn, turn));
	struct vu_dev *d = &v->dev;
	size_t avail = pool_level(clients_pool(v->cs));
	size_t cap = quantum + VU_OVERSHOOT, allowed;
	uint16_t old = d->vr.used_idx;
	bool used;
	char why[96];
	size_t n;
	int rc;

	if (!vu_live(d) || avail == 0) {
		return false;
	}
	if (v->debt >= quantum) { /* a whole chain went beyond earlier turns: pay it back */
		v->debt -= quantum;
		clients_turn_join(v->cs, &v->turn); /* inside the rotation: queued only */
		return false;
	}
	quantum -= v->debt;
	v->debt = 0;
	cap = cap < avail ? cap : avail;
	allowed = pacer_take(&v->pacer, cap, 1);
	if (allowed == 0) {
		return false; /* paced: the pacer calls back */
	}
	rc = vring_serve(&d->vr, &d->mem, quantum < allowed ? quantum : allowed, allowed,
			 fill_from_pool, v, &n, &used, why, sizeof(why));
	pacer_return(&v->pacer, allowed - n);
	pacer_sent(&v->pacer, n);
	v->debt = n > quantum ? n - quantum : 0;
	v->served += (uint64_t)n; /* taken from the pool, even if the ring broke after */
	if (used && d->call_fd >= 0 && vring_need_call(&d->vr, old)) {
		uint64_t one = 1;

		(void)!write(d->call_fd, &one, sizeof(one));
	}
	if (rc < 0) {
		vu_break(d, why);
		rearm(v);
		return false;
	}
	if (!vring_has_avail(&d->vr)) {
		v->pacer.paced = false; /* caught up with the guest */
	} else if (n > 0) {
		clients_turn_join(v->cs, &v->turn); /* inside the rotation: queued only */
	}
	return false;
}

static void pacer_wake(void *arg)
{
	struct vu_conn *v = arg;

	want_turn(v);
}

/* recvmsg of exactly n bytes at most; descriptors that come along are appended to the
 * message (refused with a payload). Returns the count, 0 at the end, -1 with errno or with
 * *why set. */
static ssize_t receive(struct vu_conn *v, void *buf, size_t n, const char **why)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {buf, n};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf)};
	ssize_t r = recvmsg(v->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	bool too_many = (mh.msg_flags & MSG_CTRUNC) != 0;

	if (r < 0) {
		return -1;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
			continue;
		}
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (v->in_payload || v->msg.nfds >= VU_MAX_FDS) {
				close(fd);
				too_many = true;
				continue;
			}
			v->msg.fds[v->msg.nfds++] = fd;
		}
	}
	if (too_many) {
		*why =
		    v->in_payload ? "descriptors sent with a payload" : "more than 8 descriptors";
		return -1;
	}
	return r;
}

/* A whole message is in v->msg: act on it and answer. -1 if the connection was closed. */
static int dispatch(struct vu_conn *v)
{
	uint8_t reply[VU_MAX_REPLY];
	size_t replylen;
	char err[128];

	v->in_payload = false;
	v->got = 0;
	if (evtimer_pending(v->partial_ev, NULL)) {
		evtimer_del(v->partial_ev);
	}
	if (vu_handle(&v->dev, &v->msg, reply, &replylen, err, sizeof(err)) < 0) {
		conn_close(v, err);
		return -1;
	}
	if (replylen > 0 && send(v->fd, reply, replylen, MSG_NOSIGNAL) != (ssize_t)replylen) {
		conn_close(v, "cannot send a reply");
		return -1;
	}
	rearm(v);
	return 0;
}

/* A message begun CLIENT_PARTIAL_TIMEOUT_MS ago is still not whole. */
static void partial_expired(evutil_socket_t fd, short what, void *arg)
{
	struct vu_conn *v = arg;
	char why[96];

	snprintf(why, sizeof(why), "sent %zu byte(s) of a message and not the rest in %u s",
		 (v->in_payload ? VU_HDR_SIZE : 0) + v->got, CLIENT_PARTIAL_TIMEOUT_MS / 1000);
	conn_close(v, why);
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vu_conn *v = arg;

	for (;;) {
		const char *why = NULL;
		char msg[128];
		uint8_t *at = v->in_payload ? v->msg.payload : v->hdr;
		size_t need = v->in_payload ? v->msg.size : VU_HDR_SIZE;
		ssize_t r = receive(v, at + v->got, need - v->got, &why);

		if (r < 0 && why == NULL && (errno == EAGAIN || errno == EINTR)) {
			if ((v->in_payload || v->got > 0) &&
			    !evtimer_pending(v->partial_ev, NULL)) {
				struct timeval tv = {CLIENT_PARTIAL_TIMEOUT_MS / 1000,
						     (CLIENT_PARTIAL_TIMEOUT_MS % 1000) * 1000};

				evtimer_add(v->partial_ev, &tv); /* from the first stall on */
			}
			return;
		}
		if (r <= 0) {
			if (r == 0 && !v->in_payload && v->got == 0 && v->msg.nfds == 0) {
				conn_close(v, NULL);
			} else {
				conn_close(v, why != NULL ? why
					      : r == 0	  ? "connection ended inside a message"
							  : strerror(errno));
			}
			return;
		}
		v->got += (size_t)r;
		if (v->got < need) {
			continue;
		}
		if (!v->in_payload) {
			if (vu_parse_header(v->hdr, &v->msg, msg, sizeof(msg)) < 0) {
				conn_close(v, msg);
				return;
			}
			v->in_payload = true;
			v->got = 0;
			if (v->msg.size > 0) {
				continue;
			}
		}
		if (dispatch(v) < 0) {
			return;
		}
	}
}

/* A connection on fd with a device as after vu_dev_init; NULL (fd closed) if out of memory. */
static struct vu_conn *conn_new(struct event_base *base, struct clients *cs, int fd,
				const struct client_opts *opts, const char *peer,
				client_closed_fn on_closed, void *arg)
{
	struct vu_conn *v = calloc(1, sizeof(*v));

	if (v == NULL) {
		close(fd);
		return NULL;
	}
	v->base = base;
	v->cs = cs;
	v->fd = fd;
	v->spec = opts->endpoint;
	v->on_closed = on_closed;
	v->on_closed_arg = arg;
	snprintf(v->peer, sizeof(v->peer), "%s", peer);
	snprintf(v->endpoint, sizeof(v->endpoint), "%s",
		 opts->endpoint != NULL ? opts->endpoint : "");
	v->since = (long long)time(NULL);
	vu_dev_init(&v->dev);
	v->armed_gen = v->dev.kick_gen;
	v->kick_et = (event_base_get_features(base) & EV_FEATURE_ET) != 0;
	v->turn.serve = serve;
	v->turn.shutdown = conn_shutdown;
	v->turn.stat = conn_stat;
	v->turn.tick = conn_tick;
	clients_member_add(cs, &v->turn);
	v->rev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, v);
	v->kick_ev = event_new(base, -1, 0, NULL, NULL);
	v->partial_ev = evtimer_new(base, partial_expired, v);
	if (v->rev == NULL || v->kick_ev == NULL || v->partial_ev == NULL ||
	    event_add(v->rev, NULL) < 0 ||
	    pacer_init(&v->pacer, base, opts->rate_bytes, opts->rate_ms, opts->endpoint_rate,
		       pacer_wake, v) < 0) {
		log_warnx("vhost-user %s: out of memory; closing", peer);
		conn_free(v);
		return NULL;
	}
	return v;
}

int vu_conn_new(struct event_base *base, struct clients *cs, int fd, const struct client_opts *opts,
		const char *peer, client_closed_fn on_closed, void *arg)
{
	struct vu_conn *v = conn_new(base, cs, fd, opts, peer, on_closed, arg);

	if (v == NULL) {
		return -1;
	}
	log_info("vhost-user %s: front-end connected", v->peer);
	return 0;
}

struct vu_conn *vu_conn_of(struct turn *t)
{
	return t->serve == serve ? (struct vu_conn *)((char *)t - offsetof(struct vu_conn, turn))
				 : NULL;
}

void vu_conn_state(const struct vu_conn *v, struct vu_conn_state *st)
{
	*st = (struct vu_conn_state){.fd = v->fd,
				     .spec = v->spec,
				     .peer = v->peer,
				     .served = v->served,
				     .dev = &v->dev,
				     .hdr = v->hdr,
				     .payload = v->msg.payload,
				     .got = v->got,
				     .in_payload = v->in_payload,
				     .part_fds = v->msg.fds,
				     .npart_fds = v->msg.nfds};
}

int vu_conn_resume(struct event_base *base, struct clients *cs, const struct client_opts *opts,
		   const struct vu_conn_state *st, struct vu_dev *dev, client_closed_fn on_closed,
		   void *arg)
{
	struct vu_conn *v = conn_new(base, cs, st->fd, opts, st->peer, on_closed, arg);
	char why[128];

	for (size_t i = 0; v != NULL && i < st->npart_fds; i++) {
		v->msg.fds[v->msg.nfds++] = st->part_fds[i];
	}
	if (v == NULL) {
		for (size_t i = 0; i < st->npart_fds; i++) {
			close(st->part_fds[i]);
		}
		vu_dev_reset(dev);
		return -1;
	}
	v->dev = *dev;
	v->served = st->served;
	v->got = st->partlen < VU_HDR_SIZE ? st->partlen : st->partlen - VU_HDR_SIZE;
	memcpy(v->hdr, st->part, st->partlen < VU_HDR_SIZE ? st->partlen : VU_HDR_SIZE);
	if (st->partlen >= VU_HDR_SIZE) {
		if (vu_parse_header(v->hdr, &v->msg, why, sizeof(why)) < 0 ||
		    v->got >= v->msg.size) {
			log_warnx("vhost-user %s: handed-over partial message is bad (%s); "
				  "connection closed",
				  v->peer, v->got >= v->msg.size ? "it is whole" : why);
			conn_free(v);
			return -1;
		}
		v->in_payload = true;
		memcpy(v->msg.payload, st->part + VU_HDR_SIZE, v->got);
	}
	v->armed_gen = v->dev.kick_gen - 1;
	rearm(v);
	log_info("vhost-user %s: connection kept across the reload", v->peer);
	return 0;
}
