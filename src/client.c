/* client: see client.h for the model. Notes on the choices made here:
 *
 * - Requests are queued in arrival order; a run of 0x02 requests merges into one count, so
 *   a peer that pipelines thousands of 0x02 costs a counter, not memory. Other requests
 *   take a queue slot; when the queue is full we stop reading that peer (TCP pushes back)
 *   and resume when it drains, so memory per client stays bounded.
 * - A reply other than raw bytes (0x00, 0x01, 0x04) is built in the client's small `out`
 *   buffer when it reaches the head of the queue; 0x01's bytes are copied there from the
 *   pool and wiped once written.
 * - Bytes for 0x02 (and raw endpoints and primers) are written from the pool and consumed
 *   only as far as the kernel accepted them.
 * - Clients holding an incomplete command sit in one list, oldest first, watched by one
 *   shared timer: the deadline costs a list link and a time stamp per client, not a timer.
 * - With rate=, every answer takes tokens first; a client out of tokens leaves the rotation
 *   and a timer of its own brings it back when enough tokens are there. Its requests stay
 *   queued as usual (bounded; TCP pushes back, datagrams are dropped when it is full). */
#include "client.h"

#include "egd.h"
#include "gate.h"
#include "log.h"
#include "pool.h"
#include "rate.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/uio.h>
#include <unistd.h>

#define CLIENT_INBUF 1024u
#define CLIENT_OPS 64u
#define CLIENT_QUANTUM_MIN 256u
#define CLIENT_PRIMER_DELAY_US 100000
#define CLIENT_WRITE_H 4.0 /* min-entropy assumed for bytes clients write with 0x03 */

enum op_kind { OP_BLOCK, OP_NONBLOCK, OP_LEVEL, OP_PID };

struct op {
	enum op_kind kind;
	uint64_t n; /* bytes owed (BLOCK) or asked (NONBLOCK) */
};

struct client {
	struct clients *cs;
	int fd;
	char peer[128];
	struct client_opts opts;
	struct client_io io;
	struct event *rev, *wev, *primer_ev;
	client_closed_fn on_closed;
	void *on_closed_arg;

	uint8_t in[CLIENT_INBUF];
	size_t inlen;
	bool reading; /* rev is armed */
	bool eof;     /* peer finished sending; close once everything owed is sent */
	bool spoke;   /* peer sent something (no primer then) */

	struct op ops[CLIENT_OPS];
	unsigned ophead, opcount;

	uint8_t out[256 + 4];
	size_t outlen, outoff;

	bool hungry;	    /* in cs->hungry, waiting for pool bytes */
	bool write_blocked; /* socket full; wev armed */
	bool closing;
	struct gate *wgate; /* write=on: health gate for bytes peers write */
	uint64_t served;

	bool partial;		/* in cs->partial: an incomplete command is buffered */
	uint64_t partial_since; /* when that command's first byte was buffered (ms) */
	bool rated;		/* rate= applies: answers take tokens from `rate` */
	struct rate rate;
	struct event *rate_ev; /* wakes a paced client when tokens are back */
	bool rate_wait;	       /* out of tokens: rate_ev armed, client out of the rotation */
	bool paced;	       /* had to wait for tokens since it last owed nothing */
	uint64_t delayed;      /* bytes sent later than asked because of rate= */

	TAILQ_ENTRY(client) hungry_link;
	TAILQ_ENTRY(client) partial_link;
	LIST_ENTRY(client) all_link;
};

TAILQ_HEAD(client_queue, client);
LIST_HEAD(client_list, client);

struct clients {
	struct event_base *base;
	struct pool *pool;
	unsigned alpha_log2;
	struct event *pool_ev;
	struct client_queue hungry;
	size_t nhungry;
	struct client_list all;
	bool serving;
	struct client_queue partial; /* oldest incomplete command first */
	struct event *partial_ev;
	/* per-category limits for the lines peers cause */
	struct log_limit lim_io, lim_proto, lim_timeout, lim_primer, lim_other;
};

static void serve(struct clients *cs);
static void client_close(struct client *c, struct log_limit *lim, const char *why);
static void client_kick(struct client *c);

static void pool_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct clients *cs = arg;

	pool_ack_wakeup(cs->pool);
	serve(cs);
}

static void partial_arm(struct clients *cs, uint64_t now)
{
	struct client *head = TAILQ_FIRST(&cs->partial);
	uint64_t due, ms;
	struct timeval tv;

	if (head == NULL) {
		return;
	}
	due = head->partial_since + CLIENT_PARTIAL_TIMEOUT_MS;
	ms = due > now ? due - now : 1;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(cs->partial_ev, &tv);
}

/* Close the clients whose incomplete command is older than the timeout. */
static void partial_cb(evutil_socket_t fd, short what, void *arg)
{
	struct clients *cs = arg;
	uint64_t now = rate_now_ms();
	struct client *c;

	while ((c = TAILQ_FIRST(&cs->partial)) != NULL &&
	       c->partial_since + CLIENT_PARTIAL_TIMEOUT_MS <= now) {
		char why[96];

		snprintf(why, sizeof(why), "sent %zu byte(s) of a command and not the rest in %u s",
			 c->inlen, CLIENT_PARTIAL_TIMEOUT_MS / 1000);
		client_close(c, &cs->lim_timeout, why);
	}
	partial_arm(cs, now);
}

static void partial_leave(struct client *c)
{
	if (c->partial) {
		TAILQ_REMOVE(&c->cs->partial, c, partial_link);
		c->partial = false;
	}
}

/* After parsing: partial says an incomplete command is buffered, progressed that the
 * buffered command is a new one (its deadline starts now). */
static void partial_update(struct client *c, bool partial, bool progressed)
{
	struct clients *cs = c->cs;

	if (c->partial && (!partial || progressed)) {
		partial_leave(c);
	}
	if (partial && !c->partial) {
		bool first = TAILQ_EMPTY(&cs->partial);

		c->partial = true;
		c->partial_since = rate_now_ms();
		TAILQ_INSERT_TAIL(&cs->partial, c, partial_link);
		if (first) {
			partial_arm(cs, c->partial_since);
		}
	}
}

struct clients *clients_new(struct event_base *base, struct pool *pool, unsigned alpha_log2)
{
	struct clients *cs = calloc(1, sizeof(*cs));

	if (cs == NULL) {
		return NULL;
	}
	cs->base = base;
	cs->pool = pool;
	cs->alpha_log2 = alpha_log2;
	TAILQ_INIT(&cs->hungry);
	TAILQ_INIT(&cs->partial);
	LIST_INIT(&cs->all);
	cs->partial_ev = evtimer_new(base, partial_cb, cs);
	if (cs->partial_ev == NULL) {
		free(cs);
		return NULL;
	}
	cs->pool_ev =
	    event_new(base, pool_wakeup_fd(pool), EV_READ | EV_PERSIST, pool_ready_cb, cs);
	if (cs->pool_ev == NULL || event_add(cs->pool_ev, NULL) < 0) {
		event_free(cs->partial_ev);
		free(cs);
		return NULL;
	}
	return cs;
}

void clients_free(struct clients *cs)
{
	if (cs == NULL) {
		return;
	}
	while (!LIST_EMPTY(&cs->all)) {
		struct client *c = LIST_FIRST(&cs->all);

		c->on_closed = NULL; /* shutting down: no redial */
		client_close(c, NULL, "shutting down");
	}
	event_free(cs->pool_ev);
	event_free(cs->partial_ev);
	free(cs);
}

static struct op *op_head(struct client *c)
{
	return c->opcount > 0 ? &c->ops[c->ophead] : NULL;
}

static void op_pop(struct client *c)
{
	c->ophead = (c->ophead + 1) % CLIENT_OPS;
	c->opcount--;
}

/* Queue a request; false when the queue is full (the caller stops reading). */
static bool op_push(struct client *c, enum op_kind kind, uint64_t n)
{
	if (c->opcount > 0 && kind == OP_BLOCK) {
		struct op *tail = &c->ops[(c->ophead + c->opcount - 1) % CLIENT_OPS];

		if (tail->kind == OP_BLOCK) {
			tail->n += n;
			return true;
		}
	}
	if (c->opcount == CLIENT_OPS) {
		return false;
	}
	c->ops[(c->ophead + c->opcount) % CLIENT_OPS] = (struct op){kind, n};
	c->opcount++;
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
	} else {
		event_del(c->rev);
	}
}

static void wgate_out(void *arg, const uint8_t *p, size_t n)
{
	struct client *c = arg;

	/* Written entropy is a bonus: when the pool is full it is dropped, never waited for. */
	(void)pool_put(c->cs->pool, p, n);
}

/* Handle 0x03 on an endpoint with write=on. */
static void accept_written(struct client *c, const struct egd_req *req)
{
	struct gate_result r;

	if (c->wgate == NULL) {
		c->wgate = gate_new(CLIENT_WRITE_H, c->cs->alpha_log2);
		if (c->wgate == NULL) {
			return;
		}
	}
	gate_feed(c->wgate, req->data, req->len, wgate_out, c, &r);
	if (r.failed) {
		log_warnx("client %s: bytes written with 0x03 failed the %s health test; %zu "
			  "bytes discarded",
			  c->peer, r.failed_rct ? "repetition count" : "adaptive proportion",
			  r.discarded);
	}
}

/* Parse what is buffered into requests. Returns -1 if the client was closed. */
static int parse_input(struct client *c)
{
	size_t off = 0;
	bool partial = false;

	while (off < c->inlen) {
		struct egd_req req;
		int used = egd_parse(c->in + off, c->inlen - off, &req);
		bool queued = true;

		if (used == 0) {
			partial = true;
			break;
		}
		if (used < 0) {
			char why[64];

			snprintf(why, sizeof(why), "unknown command 0x%02x", (unsigned)c->in[off]);
			client_close(c, &c->cs->lim_proto, why);
			return -1;
		}
		switch (req.cmd) {
		case EGD_BLOCK:
			queued = req.len == 0 || op_push(c, OP_BLOCK, req.len);
			break;
		case EGD_NONBLOCK:
			queued = op_push(c, OP_NONBLOCK, req.len);
			break;
		case EGD_LEVEL:
			queued = op_push(c, OP_LEVEL, 0);
			break;
		case EGD_PID:
			queued = op_push(c, OP_PID, 0);
			break;
		case EGD_WRITE:
			if (!c->opts.allow_write) {
				client_close(c, &c->cs->lim_proto,
					     "refused command 0x03 (write entropy): not enabled "
					     "on this endpoint (write=on)");
				return -1;
			}
			accept_written(c, &req);
			break;
		}
		if (!queued) {
			set_reading(c, false); /* queue full: let TCP push back */
			break;
		}
		off += (size_t)used;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	partial_update(c, partial, off > 0);
	return 0;
}

static void mark_spoke(struct client *c)
{
	if (!c->spoke) {
		c->spoke = true;
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
	ssize_t r = read(fd, dst, room);

	if (r < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			return;
		}
		client_close(c, &cs->lim_io, strerror(errno));
		return;
	}
	if (r == 0) {
		if (c->opts.raw || c->opcount == 0) {
			client_close(c, NULL, "peer closed the connection");
			return;
		}
		set_reading(c, false);
		c->eof = true;
		return;
	}
	mark_spoke(c);
	if (c->opts.raw) {
		return;
	}
	c->inlen += (size_t)r;
	if (parse_input(c) < 0) {
		return;
	}
	client_kick(c);
	serve(cs);
}

int client_input(struct client *c, const uint8_t *buf, size_t n)
{
	struct clients *cs = c->cs;
	size_t off = 0;

	mark_spoke(c);
	if (c->opts.raw) {
		return 0;
	}
	/* A datagram is a request set of its own: one that ends inside a command is dropped
	 * whole (never joined with the next), so the buffer only ever holds whole commands. */
	while (off < n) {
		struct egd_req req;
		int used = egd_parse(buf + off, n - off, &req);

		if (used == 0) {
			return 1;
		}
		if (used < 0) {
			break; /* parse_input closes the client, as for a stream */
		}
		off += (size_t)used;
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
	serve(cs);
	return 0;
}

bool client_idle(const struct client *c)
{
	return c->opcount == 0 && c->outlen == c->outoff && !c->opts.raw;
}

void client_drop(struct client *c, const char *why)
{
	client_close(c, strncmp(why, "shutting down", 13) == 0 ? NULL : &c->cs->lim_other, why);
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	struct clients *cs = c->cs;

	c->write_blocked = false;
	client_kick(c);
	serve(cs);
}

static void primer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	struct clients *cs = c->cs;

	if (c->spoke) {
		return;
	}
	log_limited(&cs->lim_primer, LOG_DEBUG,
		    "client %s: silent for 100 ms; sending %u primer bytes", c->peer,
		    c->opts.primer);
	op_push(c, OP_BLOCK, c->opts.primer);
	client_kick(c);
	serve(cs);
}

static void rate_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	struct clients *cs = c->cs;

	c->rate_wait = false;
	client_kick(c);
	serve(cs);
}

/* Take up to want bytes of c's answer rate (all of them without rate=). Fewer than min:
 * none, and c leaves the rotation until enough tokens are back (a timer brings it back). */
static size_t pace(struct client *c, size_t want, size_t min)
{
	uint64_t now, ms;
	size_t got, wake;
	struct timeval tv;

	if (!c->rated) {
		return want;
	}
	now = rate_now_ms();
	got = rate_take(&c->rate, now, want);
	if (got >= min) {
		return got;
	}
	rate_return(&c->rate, got);
	wake = want < CLIENT_QUANTUM_MIN ? want : CLIENT_QUANTUM_MIN;
	wake = wake < min ? min : wake;
	ms = rate_wait_ms(&c->rate, now, wake);
	ms = ms == 0 ? 1 : ms;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	c->rate_wait = true;
	c->paced = true;
	evtimer_add(c->rate_ev, &tv);
	return 0;
}

/* Write buf; returns bytes written, or -1 if the client was closed. Arms wev on a short
 * write. */
static ssize_t client_writev(struct client *c, const struct iovec *iov, int cnt, size_t want)
{
	ssize_t w =
	    c->io.send != NULL ? c->io.send(c->io.ctx, c->fd, iov, cnt) : writev(c->fd, iov, cnt);

	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			client_close(c, &c->cs->lim_io, strerror(errno));
			return -1;
		}
		w = 0;
	}
	if ((size_t)w < want) {
		c->write_blocked = true;
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
	struct op *op = op_head(c);
	return op != NULL && op->kind == OP_BLOCK;
}

/* Answer every queued request that needs no pool bytes, up to the first 0x02; then join the
 * rotation if bytes are owed. */
static void client_kick(struct client *c)
{
	struct pool *pool = c->cs->pool;
	struct op *op;

	if (c->closing || c->write_blocked || c->rate_wait) {
		return;
	}
	for (;;) {
		int f = flush_out(c);

		if (f <= 0) {
			return;
		}
		op = c->opts.raw ? NULL : op_head(c);
		if (op == NULL || op->kind == OP_BLOCK) {
			break;
		}
		switch (op->kind) {
		case OP_LEVEL: {
			uint64_t bits = (uint64_t)pool_avail(pool) * 8;

			if (pace(c, 4, 4) == 0) {
				return;
			}
			egd_encode_level(bits > UINT32_MAX ? UINT32_MAX : (uint32_t)bits, c->out);
			c->outlen = 4;
			break;
		}
		case OP_PID: {
			size_t len = egd_encode_pid((long)getpid(), c->out, sizeof(c->out));

			if (pace(c, len, len) == 0) {
				return;
			}
			c->outlen = len;
			break;
		}
		case OP_NONBLOCK: {
			size_t k = pace(c, 1 + (size_t)op->n, 1);

			if (k == 0) {
				return;
			}
			c->out[0] = (uint8_t)pool_take(pool, c->out + 1, k - 1);
			c->outlen = 1u + c->out[0];
			c->served += c->out[0];
			c->delayed += c->paced ? c->out[0] : 0;
			if (c->rated) {
				rate_return(&c->rate, k - c->outlen);
			}
			break;
		}
		case OP_BLOCK:
			break;
		}
		op_pop(c);
		if (c->opcount < CLIENT_OPS / 2 && !c->reading && !c->eof) {
			set_reading(c, true);
			if (c->inlen > 0 && parse_input(c) < 0) {
				return;
			}
		}
	}
	if (!owes_pool_bytes(c) && c->opcount == 0) {
		c->paced = false;
	}
	if (owes_pool_bytes(c)) {
		if (!c->hungry) {
			c->hungry = true;
			TAILQ_INSERT_TAIL(&c->cs->hungry, c, hungry_link);
			c->cs->nhungry++;
		}
	} else if (c->eof) {
		client_close(c, NULL, "peer closed the connection; everything owed was sent");
	}
}

/* Give client c up to quantum bytes of the pool for its head 0x02 (or raw stream);
 * returns -1 if the client was closed. */
static int give(struct client *c, size_t quantum)
{
	struct pool *pool = c->cs->pool;
	struct op *op = c->opts.raw ? NULL : op_head(c);
	uint64_t owed = op != NULL ? op->n : UINT64_MAX;
	size_t want = owed < quantum ? (size_t)owed : quantum;

	if (c->io.max_send > 0 && want > c->io.max_send) {
		want = c->io.max_send;
	}
	struct iovec iov[2];
	int cnt = pool_peek(pool, want, iov);
	size_t have = iov[0].iov_len + (cnt == 2 ? iov[1].iov_len : 0);
	size_t allowed;
	ssize_t w;

	if (cnt == 0) {
		return 0;
	}
	allowed = pace(c, have, 1);
	if (allowed == 0) {
		return 0;
	}
	if (allowed < have) {
		have = allowed;
		cnt = pool_peek(pool, have, iov);
	}
	w = client_writev(c, iov, cnt, have);
	if (w < 0) {
		return -1; /* c is gone */
	}
	if (c->rated && (size_t)w < have) {
		rate_return(&c->rate, have - (size_t)w);
	}
	if (w == 0) {
		return 0;
	}
	pool_consume(pool, (size_t)w);
	c->served += (uint64_t)w;
	c->delayed += c->paced ? (uint64_t)w : 0;
	if (op != NULL) {
		op->n -= (uint64_t)w;
		if (op->n == 0) {
			op_pop(c);
		}
	}
	return 0;
}

/* Share the pool among waiting clients, round-robin, until one side runs out. */
static void serve(struct clients *cs)
{
	if (cs->serving) {
		return; /* re-entered from a close inside the loop */
	}
	cs->serving = true;
	while (!TAILQ_EMPTY(&cs->hungry)) {
		size_t avail = pool_avail(cs->pool);
		struct client *c;
		size_t quantum;

		if (avail == 0) {
			pool_want(cs->pool);
			break;
		}
		quantum = avail / cs->nhungry;
		quantum = quantum < CLIENT_QUANTUM_MIN ? CLIENT_QUANTUM_MIN : quantum;
		c = TAILQ_FIRST(&cs->hungry);
		TAILQ_REMOVE(&cs->hungry, c, hungry_link);
		cs->nhungry--;
		c->hungry = false;
		if (give(c, quantum) == 0) {
			client_kick(c);
		}
	}
	cs->serving = false;
}

struct client *client_new(struct clients *cs, int fd, const struct client_opts *opts,
			  const char *peer, client_closed_fn on_closed, void *arg)
{
	static const struct client_io stream_io;

	return client_new_io(cs, fd, opts, peer, on_closed, arg, &stream_io);
}

static void free_events(struct client *c)
{
	if (c->rev != NULL) {
		event_free(c->rev);
	}
	if (c->wev != NULL) {
		event_free(c->wev);
	}
	if (c->primer_ev != NULL) {
		event_free(c->primer_ev);
	}
	if (c->rate_ev != NULL) {
		event_free(c->rate_ev);
	}
}

struct client *client_new_io(struct clients *cs, int fd, const struct client_opts *opts,
			     const char *peer, client_closed_fn on_closed, void *arg,
			     const struct client_io *io)
{
	struct client *c = calloc(1, sizeof(*c));
	bool primer = !opts->raw && opts->primer > 0 && !io->shared_fd;

	if (c == NULL) {
		log_warnx("client %s: out of memory; closing", peer);
		if (!io->shared_fd) {
			close(fd);
		}
		return NULL;
	}
	if (!io->shared_fd) {
		evutil_make_socket_nonblocking(fd);
	}
	c->cs = cs;
	c->fd = fd;
	c->opts = *opts;
	c->io = *io;
	c->on_closed = on_closed;
	c->on_closed_arg = arg;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	if (!io->shared_fd && !io->no_input) {
		c->rev = event_new(cs->base, fd, EV_READ | EV_PERSIST, read_cb, c);
	}
	c->wev = event_new(cs->base, fd, EV_WRITE, write_cb, c);
	if (primer) {
		c->primer_ev = evtimer_new(cs->base, primer_cb, c);
	}
	c->rated = opts->rate_bytes > 0 &&
		   rate_init(&c->rate, opts->rate_bytes, opts->rate_ms, rate_now_ms()) == 0;
	if (c->rated) {
		c->rate_ev = evtimer_new(cs->base, rate_cb, c);
	}
	if ((c->rev == NULL && !io->shared_fd && !io->no_input) || c->wev == NULL ||
	    (primer && c->primer_ev == NULL) || (c->rated && c->rate_ev == NULL)) {
		log_warnx("client %s: cannot create events; closing", peer);
		free_events(c);
		if (!io->shared_fd) {
			close(fd);
		}
		free(c);
		return NULL;
	}
	LIST_INSERT_HEAD(&cs->all, c, all_link);
	set_reading(c, true);
	if (c->primer_ev != NULL) {
		struct timeval tv = {0, CLIENT_PRIMER_DELAY_US};

		evtimer_add(c->primer_ev, &tv);
	}
	log_debug("client %s: connected", peer);
	if (opts->raw) {
		client_kick(c);
		serve(cs);
	}
	return c;
}

/* Close c. lim: the log category of a close the peer caused, or NULL for an ordinary end
 * (logged as a debug line, or as information when rate= delayed some of its bytes). */
static void client_close(struct client *c, struct log_limit *lim, const char *why)
{
	struct clients *cs = c->cs;
	client_closed_fn cb = c->on_closed;
	void *arg = c->on_closed_arg;
	char delayed[64] = "";

	if (c->closing) {
		return;
	}
	c->closing = true;
	if (c->delayed > 0) {
		snprintf(delayed, sizeof(delayed),
			 ", %llu of them delayed by rate=", (unsigned long long)c->delayed);
	}
	if (lim != NULL) {
		log_limited(lim, LOG_WARNING,
			    "client %s: %s; connection closed (served %llu bytes%s)", c->peer, why,
			    (unsigned long long)c->served, delayed);
	} else if (c->delayed > 0) {
		log_info("client %s: %s (served %llu bytes%s)", c->peer, why,
			 (unsigned long long)c->served, delayed);
	} else {
		log_debug("client %s: %s (served %llu bytes)", c->peer, why,
			  (unsigned long long)c->served);
	}
	partial_leave(c);
	if (c->hungry) {
		TAILQ_REMOVE(&cs->hungry, c, hungry_link);
		cs->nhungry--;
	}
	LIST_REMOVE(c, all_link);
	free_events(c);
	gate_free(c->wgate);
	if (!c->io.shared_fd) {
		close(c->fd);
	}
	explicit_bzero(c, sizeof(*c));
	free(c);
	if (cb != NULL) {
		cb(arg);
	}
}
