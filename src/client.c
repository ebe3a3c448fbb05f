/* client: every connected peer, whatever its transport (transport.h), and the rotation
 * that shares the pool among them. Each peer's requests are read (even while bytes are
 * owed), parsed (egd.c), queued (reqq.c) and answered in order; pool bytes are written and
 * consumed only as far as the transport took them. Notes on the choices made here:
 *
 * - When a peer's request queue is full we stop reading it (TCP pushes back) and resume
 *   when it drains, so memory per client stays bounded.
 * - A reply other than raw bytes (0x00, 0x01, 0x04) is built in the client's small `out`
 *   buffer when it reaches the head of the queue; 0x01's bytes are copied there from the
 *   pool and wiped once written.
 * - Clients owed bytes are served round-robin in turns of CLIENT_QUANTUM (rotation.c); a
 *   client whose socket is full leaves the rotation until it is writable, so it never
 *   delays another; with rate= (pacer.c) every answer takes tokens first, and a client out
 *   of tokens leaves the rotation until they are back.
 * - A command left half-sent for CLIENT_PARTIAL_TIMEOUT_MS closes the peer (deadline.c),
 *   and so does a transport not ready that long after the client was created (a TLS
 *   handshake that never finishes): the same deadline item, started at creation and
 *   stopped when the transport becomes ready, so a stuck handshake costs no timer. */
#include "client_impl.h"

#include "answer.h"
#include "egd.h"
#include "gate.h"
#include "pool.h"
#include "written.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_PRIMER_DELAY_US 100000
static ssize_t client_give(struct client *c, size_t quantum);

/* True if c's turn was cut short by the pool alone (not by its socket, rate= or the end of
 * what it asked): it keeps the rest of its turn. */
static bool turn_interrupted(struct client *c)
{
	struct reqq_op *op = c->opts.raw ? NULL : reqq_head(&c->q);

	return !c->opts.drbg && pool_level(c->cs->pool) == 0 && !c->write_blocked &&
	       !c->pacer.waiting && !c->eof &&
	       (c->opts.raw || (op != NULL && op->kind == REQQ_BLOCK));
}

/* Its turn in the rotation: up to quantum bytes, then answer what follows. */
static bool client_serve(struct turn *t, size_t quantum)
{
	struct client *c = (struct client *)((char *)t - offsetof(struct client, turn));
	ssize_t w = client_give(c, quantum);

	if (w < 0) {
		return false; /* c is gone */
	}
	if ((size_t)w < quantum && turn_interrupted(c)) {
		t->left = quantum - (size_t)w;
		return true;
	}
	client_kick(c);
	return false;
}

static void read_cb(evutil_socket_t fd, short what, void *arg);

/* After a transport call: once the transport is ready (its handshake done), the deadline
 * item is free for half-sent commands. */
static void check_ready(struct client *c)
{
	if (c->unready && c->tr->ready(c->tr_ctx)) {
		struct timeval tv = {0, CLIENT_PRIMER_DELAY_US};

		c->unready = false;
		deadline_stop(&c->cs->partial, &c->partial);
		if (c->primer_ev != NULL && !c->spoke) {
			evtimer_add(c->primer_ev,
				    &tv); /* silence counts from the handshake's end */
		}
	}
}

/* Why the last transport call failed, and the log category of that close: the transport's
 * own words (a refused TLS handshake) or errno's. */
static const char *io_why(struct client *c, struct log_limit **lim)
{
	const char *why = c->tr->error != NULL ? c->tr->error(c->tr_ctx) : NULL;

	*lim = why != NULL ? &c->cs->lim_proto : &c->cs->lim_io;
	return why != NULL ? why : strerror(errno);
}

/* Point ev (cb's event) at the readiness of fd the transport's last blocked call in
 * direction dir waits for (a TLS handshake may have to write while the client reads);
 * flags: EV_PERSIST or 0. Returns true if ev had to change (it is then not added). */
static bool wait_for(struct client *c, struct event *ev, short dir, short flags,
		     event_callback_fn cb)
{
	short want = c->tr->waits != NULL ? c->tr->waits(c->tr_ctx, dir) : dir;

	if ((event_get_events(ev) & (EV_READ | EV_WRITE)) == want) {
		return false;
	}
	event_del(ev);
	event_assign(ev, c->cs->base, c->fd, (short)(want | flags), cb, c);
	return true;
}

static void set_reading(struct client *c, bool on)
{
	if (on == c->reading || c->eof) {
		return;
	}
	c->reading = on;
	if (c->rev == NULL) {
		return; /* input arrives through client_input(); a full queue drops it there */
	}
	if (on) {
		event_add(c->rev, NULL);
		if (transport_read_pending(c->tr, c->tr_ctx)) {
			event_active(c->rev, EV_READ, 0);
		}
	} else {
		event_del(c->rev);
	}
}

/* Parse what is buffered into requests. Returns -1 if the client was closed. */
static int parse_input(struct client *c)
{
	size_t off = 0, used;
	bool partial;
	struct egd_req w;
	enum reqq_stop stop;

	while ((stop = reqq_parse(&c->q, c->in + off, c->inlen - off, &used, &partial, &w)),
	       off += used, stop == REQQ_WRITE) {
		if (!c->opts.allow_write) {
			client_close(c, &c->cs->lim_proto,
				     "refused command 0x03 (write entropy): not enabled on this "
				     "endpoint (write=on)");
			return -1;
		}
		written_feed(&c->wgate, c->cs->alpha_log2, c->cs->pool, w.data, w.len, c->peer,
			     &c->cs->lim_proto);
	}
	if (stop == REQQ_UNKNOWN) {
		char why[64];

		snprintf(why, sizeof(why), "unknown command 0x%02x", (unsigned)c->in[off]);
		client_close(c, &c->cs->lim_proto, why);
		return -1;
	}
	if (stop == REQQ_AHEAD) {
		char why[160];

		snprintf(why, sizeof(why),
			 "command 0x%02x after %llu bytes were sent ahead of its requests (a peer "
			 "that mixes commands needs surplus=0)",
			 (unsigned)c->in[off], (unsigned long long)c->q.ahead);
		client_close(c, &c->cs->lim_proto, why);
		return -1;
	}
	if (stop == REQQ_FULL) {
		set_reading(c, false); /* queue full: let TCP push back */
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	surplus_top_up(c);
	if (c->unready) {
		return 0; /* the handshake's deadline runs (no bytes come before it ends) */
	}
	if (c->partial.armed && (!partial || off > 0)) {
		deadline_stop(&c->cs->partial, &c->partial);
	}
	if (partial) {
		deadline_start(&c->cs->partial, &c->partial);
	}
	return 0;
}

static void mark_spoke(struct client *c)
{
	if (!c->spoke) {
		c->spoke = true;
		if (c->tr->peer != NULL) {
			/* Now the transport may know more (a certificate's subject). */
			char given[sizeof(c->peer)];

			snprintf(given, sizeof(given), "%s", c->peer);
			c->tr->peer(c->tr_ctx, c->fd, given, c->peer, sizeof(c->peer));
			if (strcmp(given, c->peer) != 0) {
				log_debug("client %s: identified (%s)", c->peer, c->tr->name);
			}
		}
		if (c->primer_ev != NULL) {
			event_del(c->primer_ev);
		}
	}
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	struct clients *cs = c->cs;
	uint8_t sink[CLIENT_INBUF];
	uint8_t *dst = c->opts.raw ? sink : c->in + c->inlen;
	size_t room = c->opts.raw ? sizeof(sink) : sizeof(c->in) - c->inlen;
	struct log_limit *lim;
	ssize_t r;

	if (!c->reading || c->closing || room == 0) {
		return; /* made active (read_pending) before reading stopped */
	}
	r = c->tr->read(c->tr_ctx, fd, dst, room);
	check_ready(c);
	if (c->tr->waits != NULL && wait_for(c, c->rev, EV_READ, EV_PERSIST, read_cb)) {
		event_add(c->rev, NULL);
	}
	if (r < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			return;
		}
		const char *why = io_why(c, &lim);
		client_close(c, lim, why);
		return;
	}
	if (r == 0) {
		if (c->opts.raw || c->q.count == 0) {
			client_close(c, NULL, "peer closed the connection");
			return;
		}
		set_reading(c, false);
		c->eof = true;
		return;
	}
	mark_spoke(c);
	if (c->opts.raw) {
		if (transport_read_pending(c->tr, c->tr_ctx)) {
			event_active(c->rev, EV_READ, 0);
		}
		return;
	}
	c->inlen += (size_t)r;
	if (parse_input(c) < 0) {
		return;
	}
	if (c->reading && transport_read_pending(c->tr, c->tr_ctx)) {
		event_active(c->rev, EV_READ, 0); /* more is held: read it without fd's help */
	}
	client_kick(c);
	client_rotate(cs);
}

int client_input(struct client *c, const uint8_t *buf, size_t n)
{
	struct clients *cs = c->cs;

	mark_spoke(c);
	if (c->opts.raw) {
		return 0;
	}
	/* A datagram is a request set of its own: one that ends inside a command is dropped
	 * whole (never joined with the next), so the buffer only ever holds whole commands. */
	if (!reqq_whole(buf, n)) {
		return 1;
	}
	if (n > sizeof(c->in) - c->inlen || !c->reading) {
		/* A datagram peer that outruns its queue: drop what does not fit, as the
		 * network would (it is not acknowledged either way). */
		log_debug("client %s: request queue full; %zu bytes dropped", c->peer, n);
		return 0;
	}
	memcpy(c->in + c->inlen, buf, n);
	c->inlen += n;
	if (parse_input(c) < 0) {
		return -1;
	}
	client_kick(c);
	client_rotate(cs);
	return 0;
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	struct clients *cs = c->cs;
	struct log_limit *lim;

	c->write_blocked = false;
	if (c->tr->flush != NULL && c->tr->flush(c->tr_ctx, fd) < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			c->write_blocked = true;
			wait_for(c, c->wev, EV_WRITE, 0, write_cb);
			event_add(c->wev, NULL);
			return;
		}
		const char *why = io_why(c, &lim);
		client_close(c, lim, why);
		return;
	}
	client_kick(c);
	client_rotate(cs);
}

static void primer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	struct clients *cs = c->cs;

	/* A peer whose bytes wait unread spoke in time: its read event was not reported yet
	 * (epoll hands out a few dozen at a time after a burst of accepts). */
	if (c->spoke || transport_input_waiting(c->tr, c->tr_ctx, c->fd)) {
		return;
	}
	log_limited(&cs->lim_primer, LOG_DEBUG,
		    "client %s: silent for 100 ms; sending %u primer bytes", c->peer,
		    c->opts.primer);
	reqq_push(&c->q, REQQ_BLOCK, c->opts.primer);
	client_kick(c);
	client_rotate(cs);
}

/* Write buf; returns bytes written, or -1 if the client was closed. Arms wev on a short
 * write, and while the transport still holds bytes it counted as written. */
static ssize_t client_writev(struct client *c, const struct iovec *iov, int cnt, size_t want)
{
	ssize_t w = c->tr->writev(c->tr_ctx, c->fd, iov, cnt);
	struct log_limit *lim;

	check_ready(c);
	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			const char *why = io_why(c, &lim);

			client_close(c, lim, why);
			return -1;
		}
		w = 0;
	}
	if ((size_t)w < want || (c->tr->write_pending != NULL && c->tr->write_pending(c->tr_ctx))) {
		c->write_blocked = true;
		wait_for(c, c->wev, EV_WRITE, 0, write_cb);
		event_add(c->wev, NULL);
	}
	return w;
}

/* Send the pending fixed reply; returns 1 if done, 0 if blocked, -1 if closed. */
static int flush_out(struct client *c)
{
	while (c->outoff < c->outlen) {
		struct iovec iov = {c->out + c->outoff, c->outlen - c->outoff};
		ssize_t w = client_writev(c, &iov, 1, iov.iov_len);

		if (w < 0) {
			return -1;
		}
		if (w == 0) {
			return 0;
		}
		c->outoff += (size_t)w;
	}
	explicit_bzero(c->out, c->outlen);
	c->outlen = c->outoff = 0;
	return 1;
}

static bool owes_pool_bytes(struct client *c)
{
	if (c->opts.raw) {
		return true;
	}
	struct reqq_op *op = reqq_head(&c->q);
	return op != NULL && op->kind == REQQ_BLOCK;
}

/* Answer every queued request that needs no pool bytes, up to the first 0x02; then join the
 * rotation if bytes are owed. */
void client_kick(struct client *c)
{
	struct reqq_op *op;

	if (c->closing || c->write_blocked || c->pacer.waiting) {
		return;
	}
	for (;;) {
		int f = flush_out(c);

		if (f <= 0) {
			return;
		}
		op = c->opts.raw ? NULL : reqq_head(&c->q);
		if (op == NULL || op->kind == REQQ_BLOCK) {
			break;
		}
		c->outlen = c->opts.drbg ? client_drbg_answer(c, op)
					 : answer_build(op, c->cs->pool, &c->pacer, c->out,
							sizeof(c->out), &c->served);
		if (c->outlen == 0) {
			return; /* paced: a timer brings it back */
		}
		reqq_pop(&c->q);
		if (c->q.count < REQQ_SLOTS / 2 && !c->reading && !c->eof) {
			set_reading(c, true);
			if (c->inlen > 0 && parse_input(c) < 0) {
				return;
			}
		}
	}
	if (!owes_pool_bytes(c) && c->q.count == 0) {
		c->pacer.paced = false;
	}
	if (owes_pool_bytes(c)) {
		clients_turn_queue(c->cs, &c->turn);
	} else if (c->eof) {
		client_close(c, NULL, "peer closed the connection; everything owed was sent");
	}
}

/* Give client c up to quantum bytes of the pool for its head 0x02 (or raw stream);
 * returns -1 if the client was closed. */
static ssize_t client_give(struct client *c, size_t quantum)
{
	struct pool *pool = c->cs->pool;
	struct reqq_op *op = c->opts.raw ? NULL : reqq_head(&c->q);
	uint64_t owed = op != NULL ? op->n : UINT64_MAX;
	size_t want = owed < quantum ? (size_t)owed : quantum;

	if (c->tr->max_send > 0 && want > c->tr->max_send) {
		want = c->tr->max_send;
	}
	struct iovec iov[2];
	int cnt = c->opts.drbg ? client_drbg_peek(c, want, iov) : pool_peek(pool, want, iov);
	size_t have = iov[0].iov_len + (cnt == 2 ? iov[1].iov_len : 0);
	size_t allowed;
	ssize_t w;

	if (cnt == 0) {
		return 0;
	}
	allowed = pacer_take(&c->pacer, have, 1);
	if (allowed == 0) {
		return 0;
	}
	if (allowed < have) {
		have = allowed;
		cnt = c->opts.drbg ? client_drbg_peek(c, have, iov) : pool_peek(pool, have, iov);
	}
	w = client_writev(c, iov, cnt, have);
	if (w < 0) {
		return -1; /* c is gone */
	}
	if ((size_t)w < have) {
		pacer_return(&c->pacer, have - (size_t)w);
	}
	if (w == 0) {
		return 0;
	}
	if (c->opts.drbg) {
		client_drbg_consume(c, (size_t)w);
	} else {
		pool_consume(pool, (size_t)w);
	}
	c->served += (uint64_t)w;
	pacer_sent(&c->pacer, (size_t)w);
	if (op != NULL) {
		op->n -= (uint64_t)w;
		if (op->n == 0) {
			reqq_pop(&c->q);
		}
	}
	c->pr_fresh = c->pr_fresh && op != NULL && op->n > 0; /* a request (raw: a write) done */
	return w;
}

/* A paced client has tokens again. */
static void rate_cb(void *arg)
{
	struct client *c = arg;
	struct clients *cs = c->cs;

	client_kick(c);
	client_rotate(cs);
}

/* The turn's owed: its head 0x02 (merged with the ones after it), or a raw stream. */
static size_t client_owed(struct turn *t)
{
	struct client *c = (struct client *)((char *)t - offsetof(struct client, turn));

	if (!owes_pool_bytes(c)) {
		return 0;
	}
	if (c->opts.raw) {
		return SIZE_MAX;
	}
	uint64_t n = reqq_head(&c->q)->n;
	return n < SIZE_MAX ? (size_t)n : SIZE_MAX;
}

struct client *client_new(struct clients *cs, const struct transport *tr, void *ctx, int fd,
			  const struct client_opts *opts, const char *peer,
			  client_closed_fn on_closed, void *arg)
{
	struct client *c = calloc(1, sizeof(*c));
	bool primer = !opts->raw && opts->primer > 0;

	if (c == NULL) {
		log_warnx("client %s: out of memory; closing", peer);
		tr->close(ctx, fd);
		return NULL;
	}
	c->cs = cs;
	c->turn.serve = client_serve;
	c->turn.owed = client_owed;
	c->turn.q = opts->drbg ? 1 : 0;
	c->tr = tr;
	c->tr_ctx = ctx;
	c->fd = fd;
	c->opts = *opts;
	c->q.nomerge = opts->pr; /* prediction-resistance=on: each 0x02 gets its own seed */
	snprintf(c->endpoint, sizeof(c->endpoint), "%s", opts->endpoint ? opts->endpoint : "");
	c->since = (long long)time(NULL);
	c->on_closed = on_closed;
	c->on_closed_arg = arg;
	if (tr->peer != NULL) {
		tr->peer(ctx, fd, peer, c->peer, sizeof(c->peer));
	} else {
		snprintf(c->peer, sizeof(c->peer), "%s", peer);
	}
	if (tr->read != NULL) {
		c->rev = event_new(cs->base, fd, EV_READ | EV_PERSIST, read_cb, c);
	}
	c->wev = event_new(cs->base, fd, EV_WRITE, write_cb, c);
	if (primer) {
		c->primer_ev = evtimer_new(cs->base, primer_cb, c);
	}
	if ((c->rev == NULL && tr->read != NULL) || c->wev == NULL ||
	    (primer && c->primer_ev == NULL) ||
	    pacer_init(&c->pacer, cs->base, opts->rate_bytes, opts->rate_ms, opts->endpoint_rate,
		       rate_cb, c) < 0) {
		log_warnx("client %s: cannot create events; closing", peer);
		client_free_events(c);
		tr->close(ctx, fd);
		free(c);
		return NULL;
	}
	LIST_INSERT_HEAD(&cs->all, c, all_link);
	if (tr->ready != NULL && !tr->ready(ctx)) {
		c->unready = true;
		deadline_start(&cs->partial, &c->partial);
	}
	set_reading(c, true);
	if (c->primer_ev != NULL && !c->unready) { /* else from the handshake's end */
		struct timeval tv = {0, CLIENT_PRIMER_DELAY_US};

		evtimer_add(c->primer_ev, &tv);
	}
	log_debug("client %s: connected (%s)", peer, tr->name);
	if (opts->raw) {
		client_kick(c);
		client_rotate(cs);
	}
	return c;
}

void client_resume(struct client *c, bool eof)
{
	if (eof) {
		set_reading(c, false);
		c->eof = true;
	}
	if (c->inlen > 0 && parse_input(c) < 0) {
		return;
	}
	client_kick(c);
	client_rotate(c->cs);
}
