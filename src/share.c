/* share: see share.h. Invariant: bytes move from the pool into a cache only against a
 * thread's outstanding demand, each byte once (pool_move wipes it in the pool).
 *
 * A demand is kept as two running totals, not as a count both sides change: the thread
 * asks for a total (target: what has moved into its cache so far plus what its clients
 * could take now) and each move adds to moved; the demand is their difference. A count
 * that the main thread lowered by what it gave could not tell an ask made after the thread
 * had already served those bytes (an equal ask again: ABA) from one made before, and lost
 * the ask: a client waited forever for its last bytes. A move adds the most it may move
 * before the bytes land and takes back what did not move after, so a thread that reads moved
 * meanwhile over-asks (a few bytes more in its cache) and never under-asks. */
#include "share.h"

#include "pool.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

struct share_slot {
	struct pool *cache;
	struct share *sh;
	_Atomic uint64_t target; /* moved + what its waiting clients could take, at the ask */
	_Atomic uint64_t moved;	 /* bytes moved into cache so far (the most, while moving) */
	_Atomic size_t weight;	 /* its waiting clients */
};

struct share {
	struct pool *pool;
	struct event *ev;
	struct event *batch_ev; /* bytes are short: split what there is after SHARE_BATCH_US */
	bool batch_due;		/* ... and that time has come */
	size_t n, next;		/* next: who gets the first odd byte of a split (round-robin) */
	struct share_slot slot[];
};

/* What s's thread asked for and has not got. */
static size_t demand(struct share_slot *s)
{
	uint64_t moved = atomic_load(&s->moved), target = atomic_load(&s->target);

	return target > moved ? (size_t)(target - moved) : 0;
}

/* Move up to n bytes of the pool into s's cache; returns how many. */
static size_t move(struct share_slot *s, size_t n)
{
	size_t got;

	if (n == 0) {
		return 0;
	}
	atomic_fetch_add(&s->moved, n);
	got = pool_move(s->sh->pool, s->cache, n);
	atomic_fetch_sub(&s->moved, n - got);
	return got;
}

/* Split what the pool holds among the threads' demands. */
static void split(struct share *sh)
{
	size_t want[POOL_MAX_CACHES], weight[POOL_MAX_CACHES], total = 0, wsum = 0;
	size_t level, given = 0;
	struct timeval tv = {0, SHARE_BATCH_US};

	for (size_t i = 0; i < sh->n; i++) {
		want[i] = demand(&sh->slot[i]);
		weight[i] = want[i] > 0 ? atomic_load(&sh->slot[i].weight) : 0;
		weight[i] += want[i] > 0 && weight[i] == 0; /* a DRBG's seed alone */
		total += want[i];
		wsum += weight[i];
	}
	if (total == 0) {
		return;
	}
	level = pool_level(sh->pool);
	if (level == 0) {
		pool_want(sh->pool);
		return;
	}
	/* Short: as the rotation does (rotation.c), wait a moment for a batch rather than hand
	 * out each trickle as it lands; a split of a trickle reaches the clients in uneven
	 * turns. */
	if (level < total && level < pool_capacity(sh->pool) / 2 && !sh->batch_due) {
		size_t half = pool_capacity(sh->pool) / 2;

		pool_want_at(sh->pool, total < half ? total : half);
		if (!evtimer_pending(sh->batch_ev, NULL)) {
			evtimer_add(sh->batch_ev, &tv);
		}
		return;
	}
	if (level >= total) {
		for (size_t i = 0; i < sh->n; i++) {
			(void)move(&sh->slot[i], want[i]);
		}
		return;
	}
	/* Scarce: in proportion to the waiting clients, then the odd bytes round-robin. */
	for (size_t i = 0; i < sh->n; i++) {
		size_t part = (size_t)((unsigned __int128)level * weight[i] / wsum);

		part = part < want[i] ? part : want[i];
		want[i] -= part;
		given += part;
		(void)move(&sh->slot[i], part);
	}
	for (size_t k = 0; k < sh->n && given < level; k++) {
		size_t i = (sh->next + k) % sh->n;
		size_t part = level - given < want[i] ? level - given : want[i];

		given += part;
		(void)move(&sh->slot[i], part);
	}
	sh->next = (sh->next + 1) % sh->n;
	pool_want(sh->pool); /* demand is left: the next bytes wake this again */
}

/* The pool has bytes, or a thread asked. */
static void share_cb(evutil_socket_t fd, short what, void *arg)
{
	struct share *sh = arg;

	pool_ack_wakeup(sh->pool);
	split(sh);
}

/* The pool was short for SHARE_BATCH_US: split what it holds now, or its next bytes. */
static void batch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct share *sh = arg;

	sh->batch_due = true;
	split(sh);
	sh->batch_due = false;
}

struct share *share_new(struct event_base *base, struct pool *pool, size_t n, size_t cap)
{
	struct share *sh;

	if (n > POOL_MAX_CACHES) {
		return NULL;
	}
	sh = calloc(1, sizeof(*sh) + n * sizeof(sh->slot[0]));
	if (sh == NULL) {
		return NULL;
	}
	sh->pool = pool;
	sh->n = n;
	for (size_t i = 0; i < n; i++) {
		sh->slot[i].sh = sh;
		sh->slot[i].cache = pool_new_cache(pool, cap);
		if (sh->slot[i].cache == NULL) {
			free(sh);
			return NULL;
		}
	}
	sh->ev = event_new(base, pool_wakeup_fd(pool), EV_READ | EV_PERSIST, share_cb, sh);
	sh->batch_ev = evtimer_new(base, batch_cb, sh);
	if (sh->ev == NULL || sh->batch_ev == NULL || event_add(sh->ev, NULL) < 0) {
		share_free(sh);
		return NULL;
	}
	return sh;
}

void share_free(struct share *sh)
{
	if (sh == NULL) {
		return;
	}
	if (sh->ev != NULL) {
		event_free(sh->ev);
	}
	if (sh->batch_ev != NULL) {
		event_free(sh->batch_ev);
	}
	free(sh);
}

struct pool *share_cache(struct share *sh, size_t i)
{
	return sh->slot[i].cache;
}

struct share_slot *share_slot(struct share *sh, size_t i)
{
	return &sh->slot[i];
}

size_t share_take(struct share_slot *s, size_t bytes)
{
	struct share *sh = s->sh;
	size_t others = 0, room = pool_capacity(s->cache) - pool_level(s->cache);

	for (size_t i = 0; i < sh->n; i++) {
		others += &sh->slot[i] != s ? demand(&sh->slot[i]) : 0;
	}
	bytes = bytes < room ? bytes : room;
	if (bytes == 0 || pool_level(sh->pool) < others + bytes) {
		return 0; /* short: the main thread splits what there is */
	}
	return move(s, bytes); /* less its own demand by as much */
}

void share_ask(struct share_slot *s, size_t bytes, size_t weight)
{
	size_t room = pool_capacity(s->cache) - pool_level(s->cache);

	/* room and the caller's demand were counted from the cache's level before this reads
	 * moved: bytes landing meanwhile are counted twice (an over-ask), never missed. */
	atomic_store(&s->weight, weight);
	atomic_store(&s->target, atomic_load(&s->moved) + (bytes < room ? bytes : room));
	if (bytes > 0) {
		pool_poke(s->sh->pool);
	}
}
