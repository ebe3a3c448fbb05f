/* rotation: shares the pool among the consumers owed bytes (clients, and vhost-user devices
 * through the same struct turn): one queue of turns for raw pool bytes and one for DRBG
 * output, served in order. The consumers' serve callbacks are called through the turn;
 * this file includes none of them. */
#include "client_impl.h"

#include "drbg.h"
#include "pool.h"
#include "share.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

/* The bytes of a turn: the largest power of two from 256 to 65536 that the pool holds for
 * every waiting turn (the same for all in a round, so shares stay equal; large when bytes
 * are plentiful, so a client with many requests queued, or a raw stream, gets them in few
 * writes: each write costs a system call and the peer a wake-up). */
static size_t turn_size(size_t avail, size_t waiting)
{
	size_t q = CLIENT_QUANTUM_MAX;

	while (q > CLIENT_QUANTUM_MIN && avail / q < waiting) {
		q /= 2;
	}
	return q;
}

/* How much the pool should hold before a round when it is short: a full turn for each
 * waiting turn and one more, at most half the pool. */
static size_t refill_goal(const struct clients *cs)
{
	size_t half = pool_capacity(cs->pool) / 2;
	size_t n = (cs->nhungry[0] + 1) * CLIENT_QUANTUM_MAX;

	return n < half ? n : half;
}

/* The turns owed bytes drain the pool faster than the source fills it. Serving each
 * trickle as it lands would cost a wake-up and a small write per turn for every put; wait
 * instead until the pool holds need bytes, or CLIENT_BATCH_US, whichever comes first (the
 * timer then serves what there is: clients.c). A fast source fills that in a fraction of
 * the wait; a slow one is served what it gave. */
static void wait_refill(struct clients *cs, size_t need)
{
	struct timeval tv = {0, CLIENT_BATCH_US};

	clients_ask(cs, need);
	if (!evtimer_pending(cs->batch_ev, NULL)) {
		evtimer_add(cs->batch_ev, &tv);
	}
}

/* What the pool should hold before turn t starts: a batch (refill_goal), but never more
 * than t can take at once, so that a small request (QEMU's 64 bytes) the pool covers is
 * answered now; a consumer that cannot tell takes whatever there is. */
static size_t turn_need(const struct clients *cs, struct turn *t)
{
	size_t goal = refill_goal(cs);
	size_t owed = t->owed != NULL ? t->owed(t) : 1;

	return owed < goal ? owed : goal;
}

/* With threads: what a round of the waiting turns (and a DRBG's seed) could take beyond
 * what the cache holds, and at least what the wake-up waits for (need): asking for less,
 * only the batch timer would wake it. A turn takes at most CLIENT_QUANTUM_MAX a round. */
static size_t round_demand(const struct clients *cs, size_t need)
{
	size_t bytes = cs->drbg_starved && cs->drbg != NULL ? drbg_seed_size(cs->drbg) : 0;
	size_t have = pool_level(cs->pool);
	struct turn *t;

	TAILQ_FOREACH(t, &cs->hungry[0], link)
	{
		size_t owed = t->owed != NULL ? t->owed(t) : CLIENT_QUANTUM_MAX;

		bytes += owed < CLIENT_QUANTUM_MAX ? owed : CLIENT_QUANTUM_MAX;
	}
	bytes = bytes > need ? bytes : need;
	return bytes > have ? bytes - have : 0;
}

/* With threads, the cache short of need: when the pool holds a round's bytes beyond what
 * the other threads asked for, take them now (share_take) rather than ask the main thread
 * and wait for its wake-up, a round trip per request for a client that asks one request at
 * a time. True if the cache now holds need. */
static bool take_round(struct clients *cs, size_t need)
{
	size_t want = cs->slot != NULL ? round_demand(cs, need) : 0;

	return want > 0 && share_take(cs->slot, want) > 0 && pool_level(cs->pool) >= need &&
	       pool_level(cs->pool) > 0;
}

/* Serve queue q's turns (0: owed pool bytes, 1: owed DRBG output) until none is owed or
 * their supply runs out. The raw queue is a deficit round robin: a turn is worth a fixed
 * size (turn_size), not a share of what happens to be in the pool (that gave the first of
 * a burst several times what the last got, each turn smaller than the one before). A turn
 * the pool cut short keeps its place at the head with what is left of it (serve returns
 * true). Small turns only when bytes are scarce: 256-byte writes to a peer with a small
 * receive window crawled (delayed acknowledgements). */
static void rotate_queue(struct clients *cs, int q)
{
	while (!TAILQ_EMPTY(&cs->hungry[q]) && !(q == 1 && cs->drbg_starved)) {
		size_t avail = pool_level(cs->pool);
		struct turn *t = TAILQ_FIRST(&cs->hungry[q]);
		size_t quantum = CLIENT_DRBG_QUANTUM;
		size_t need = q == 0 ? turn_need(cs, t) : 0;

		if (q == 0 && (avail == 0 || (!cs->batch_due && t->left == 0 && avail < need))) {
			if (take_round(cs, need)) {
				continue;
			}
			wait_refill(cs, need);
			break;
		}
		if (q == 0 && t->left == 0) {
			/* Fixed for a round: recomputed at each turn, it fell as the round drained
			 * the pool, and the first turns of a round got more than the last. */
			if (cs->round_left == 0) {
				cs->round_q = turn_size(avail, cs->nhungry[0]);
				cs->round_left = cs->nhungry[0];
			}
			cs->round_left--;
			quantum = cs->round_q;
		} else if (q == 0) {
			quantum = t->left;
		}
		t->left = 0;
		clients_turn_leave(cs, t);
		if (t->serve(t, quantum) && q == 0 && t->left > 0 && !t->queued) {
			t->queued = true; /* cut short by the pool: first when bytes come */
			TAILQ_INSERT_HEAD(&cs->hungry[0], t, link);
			cs->nhungry[0]++;
		}
	}
}

void clients_ask(struct clients *cs, size_t need)
{
	if (cs->slot != NULL) {
		share_ask(cs->slot, round_demand(cs, need), cs->nhungry[0]);
		cs->asked = true;
	}
	pool_want_at(cs->pool, need); /* 0 counts as 1 there */
}

/* With threads: no turn waits any more, so no byte more is to come into the cache (one
 * would sit there until another client of this thread came). */
static void unask(struct clients *cs)
{
	if (cs->asked && cs->nhungry[0] == 0 && !cs->drbg_starved) {
		cs->asked = false;
		share_ask(cs->slot, 0, 0);
	}
}

void client_rotate(struct clients *cs)
{
	if (cs->serving) {
		return; /* re-entered from a close inside the loop */
	}
	cs->serving = true;
	cs->drbg_starved = false;
	rotate_queue(cs, 1); /* first: a reseed takes its few bytes before raw clients drain */
	rotate_queue(cs, 0);
	cs->serving = false;
	unask(cs);
}

void clients_turn_queue(struct clients *cs, struct turn *t)
{
	if (!t->queued) {
		t->queued = true;
		TAILQ_INSERT_TAIL(&cs->hungry[t->q], t, link);
		cs->nhungry[t->q]++;
	}
}

void clients_turn_join(struct clients *cs, struct turn *t)
{
	clients_turn_queue(cs, t);
	client_rotate(cs);
}

void clients_turn_leave(struct clients *cs, struct turn *t)
{
	if (t->queued) {
		t->queued = false;
		TAILQ_REMOVE(&cs->hungry[t->q], t, link);
		cs->nhungry[t->q]--;
		if (!cs->serving) {
			unask(cs); /* a client that waited is gone */
		}
	}
}
