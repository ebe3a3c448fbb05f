/* rotation: shares the pool among the clients owed bytes, by deficit round robin.
 *
 * Every turn is worth the same CLIENT_QUANTUM bytes, whatever the pool holds and however
 * many wait: a share that depended on what happened to be in the pool (a burst split as
 * avail / nhungry, each turn smaller than the last) gave the first clients of a burst
 * several times what the last got. A turn cut short because the pool ran dry is not lost:
 * the client stays at the head of the queue (the cursor persists) with what is left of
 * its turn, and is served first when bytes arrive. A turn ends early, and its rest is
 * dropped, when the client owes nothing more, its socket is full or rate= holds it back;
 * it then rejoins at the tail when it is owed bytes again (client_kick).
 *
 * When the pool holds a long turn for every waiting client (CLIENT_QUANTUM_PLENTY each),
 * turns are that long instead: nobody can be short-changed then, and a client with many
 * requests queued gets them in one write, not one write per 256 bytes (at 1,000
 * connections with 8 requests each in flight: 2.4x the requests per second).
 *
 * Bytes are written straight from the pool and consumed only as far as the transport took
 * them, so no byte goes to two clients. */
#include "client_impl.h"

#include "pool.h"

#include <stdint.h>
#include <sys/uio.h>

#define CLIENT_QUANTUM_PLENTY 4096u /* a turn's bytes when the pool has plenty for all */

/* Give c up to its turn's remaining bytes for its head 0x02 (or raw stream); -1 if c was
 * closed. */
static int client_give(struct client *c)
{
	struct pool *pool = c->cs->pool;
	struct reqq_op *op = c->opts.raw ? NULL : reqq_head(&c->q);
	uint64_t owed = op != NULL ? op->n : UINT64_MAX;
	size_t want = owed < c->turn ? (size_t)owed : c->turn;

	if (c->tr->max_send > 0 && want > c->tr->max_send) {
		want = c->tr->max_send;
	}
	struct iovec iov[2];
	int cnt = pool_peek(pool, want, iov);
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
		cnt = pool_peek(pool, have, iov);
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
	pool_consume(pool, (size_t)w);
	c->served += (uint64_t)w;
	c->turn -= (size_t)w;
	pacer_sent(&c->pacer, (size_t)w);
	if (op != NULL) {
		op->n -= (uint64_t)w;
		if (op->n == 0) {
			reqq_pop(&c->q);
		}
	}
	return 0;
}

/* True if c's turn was cut short by the pool alone: it keeps the rest of it. */
static bool turn_interrupted(struct client *c)
{
	struct reqq_op *op = c->opts.raw ? NULL : reqq_head(&c->q);

	return c->turn > 0 && pool_avail(c->cs->pool) == 0 && !c->write_blocked &&
	       !c->pacer.waiting && !c->eof &&
	       (c->opts.raw || (op != NULL && op->kind == REQQ_BLOCK));
}

void client_rotate(struct clients *cs)
{
	if (cs->serving) {
		return; /* re-entered from a close inside the loop */
	}
	cs->serving = true;
	while (!TAILQ_EMPTY(&cs->hungry)) {
		struct client *c;

		if (pool_avail(cs->pool) == 0) {
			pool_want(cs->pool);
			break;
		}
		c = TAILQ_FIRST(&cs->hungry);
		TAILQ_REMOVE(&cs->hungry, c, hungry_link);
		cs->nhungry--;
		c->hungry = false;
		if (c->turn == 0) {
			bool plenty = pool_avail(cs->pool) / CLIENT_QUANTUM_PLENTY > cs->nhungry;

			c->turn = plenty ? CLIENT_QUANTUM_PLENTY : CLIENT_QUANTUM;
		}
		if (client_give(c) < 0) {
			continue;
		}
		if (turn_interrupted(c)) {
			c->hungry = true; /* keeps its place at the head */
			TAILQ_INSERT_HEAD(&cs->hungry, c, hungry_link);
			cs->nhungry++;
			continue;
		}
		c->turn = 0;
		client_kick(c);
	}
	cs->serving = false;
}
