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
 *   only as far as the kernel accepted them. */
#include "client.h"

#include "egd.h"
#include "gate.h"
#include "log.h"
#include "pool.h"

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

	TAILQ_ENTRY(client) hungry_link;
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
};

static void serve(struct clients *cs);
static void client_close(struct client *c, const char *why);
static void client_kick(struct client *c);

static void pool_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct clients *cs = arg;

	pool_ack_wakeup(cs->pool);
	serve(cs);
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
	LIST_INIT(&cs->all);
	cs->pool_ev =
	    event_new(base, pool_wakeup_fd(pool), EV_READ | EV_PERSIST, pool_ready_cb, cs);
	if (cs->pool_ev == NULL || event_add(cs->pool_ev, NULL) < 0) {
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
		client_close(c, "shutting down");
	}
	event_free(cs->pool_ev);
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

	while (off < c->inlen) {
		struct egd_req req;
		int used = egd_parse(c->in + off, c->inlen - off, &req);
		bool queued = true;

		if (used == 0) {
			break;
		}
		if (used < 0) {
			char why[64];

			snprintf(why, sizeof(why), "unknown command 0x%02x", (unsigned)c->in[off]);
			client_close(c, why);
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
				client_close(c, "refused command 0x03 (write entropy): not enabled "
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
		client_close(c, strerror(errno));
		return;
	}
	if (r == 0) {
		if (c->opts.raw || c->opcount == 0) {
			client_close(c, "peer closed the connection");
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

	mark_spoke(c);
	if (c->opts.raw) {
		return 0;
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
	client_close(c, why);
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
	log_debug("client %s: silent for 100 ms; sending %u primer bytes", c->peer, c->opts.primer);
	op_push(c, OP_BLOCK, c->opts.primer);
	client_kick(c);
	serve(cs);
}

/* Write buf; returns bytes written, or -1 if the client was closed. Arms wev on a short
 * write. */
static ssize_t client_writev(struct client *c, const struct iovec *iov, int cnt, size_t want)
{
	ssize_t w =
	    c->io.send != NULL ? c->io.send(c->io.ctx, c->fd, iov, cnt) : writev(c->fd, iov, cnt);

	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			client_close(c, strerror(errno));
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

	if (c->closing || c->write_blocked) {
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

			egd_encode_level(bits > UINT32_MAX ? UINT32_MAX : (uint32_t)bits, c->out);
			c->outlen = 4;
			break;
		}
		case OP_PID:
			c->outlen = egd_encode_pid((long)getpid(), c->out, sizeof(c->out));
			break;
		case OP_NONBLOCK:
			c->out[0] = (uint8_t)pool_take(pool, c->out + 1, op->n);
			c->outlen = 1u + c->out[0];
			c->served += c->out[0];
			break;
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
	if (owes_pool_bytes(c)) {
		if (!c->hungry) {
			c->hungry = true;
			TAILQ_INSERT_TAIL(&c->cs->hungry, c, hungry_link);
			c->cs->nhungry++;
		}
	} else if (c->eof) {
		client_close(c, "peer closed the connection; everything owed was sent");
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
	ssize_t w;

	if (cnt == 0) {
		return 0;
	}
	w = client_writev(c, iov, cnt, have);
	if (w <= 0) {
		return (int)w;
	}
	pool_consume(pool, (size_t)w);
	c->served += (uint64_t)w;
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
	if ((c->rev == NULL && !io->shared_fd && !io->no_input) || c->wev == NULL ||
	    (primer && c->primer_ev == NULL)) {
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

static void client_close(struct client *c, const char *why)
{
	struct clients *cs = c->cs;
	client_closed_fn cb = c->on_closed;
	void *arg = c->on_closed_arg;

	if (c->closing) {
		return;
	}
	c->closing = true;
	if (strncmp(why, "peer closed", 11) != 0 && strcmp(why, "shutting down") != 0) {
		log_warnx("client %s: %s; connection closed (served %llu bytes)", c->peer, why,
			  (unsigned long long)c->served);
	} else if (c->on_closed != NULL) {
		log_info("client %s: %s (served %llu bytes)", c->peer, why,
			 (unsigned long long)c->served);
	} else {
		log_debug("client %s: %s (served %llu bytes)", c->peer, why,
			  (unsigned long long)c->served);
	}
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
