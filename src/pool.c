/* pool: a ring of health-tested bytes, many producers, one consumer.
 *
 * Invariant: a byte is handed out once. head and tail only grow (64-bit, never wrap in
 * practice); the filled region is [tail, head). Producers extend head under the mutex;
 * the consumer reads [tail, head) without the mutex (only it moves tail, and producers
 * never write there), then wipes and releases what it consumed.
 *
 * With event-loop threads (--threads), the pool is shared and each thread serves from a
 * cache: a pool of its own (pool_new_cache) whose bytes come only from the shared pool by
 * pool_move, on the main thread (share.c), as the thread's clients need them. The shared
 * pool's consumers then take its `take` mutex: pool_move and a cache's pool_take that
 * found its cache short (an answer that cannot wait: 0x01). A cache's own reads are
 * lock-free as before. */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

struct pool {
	uint8_t *buf;
	size_t cap;
	size_t low;	       /* producers sleep until this much space is free (hysteresis) */
	_Atomic uint64_t head; /* total bytes ever put */
	_Atomic uint64_t tail; /* total bytes ever consumed */
	atomic_bool want;      /* consumer asked for a wake-up */
	_Atomic size_t want_n; /* ... once this many bytes are available */
	int efd;
	pthread_mutex_t lock;
	pthread_cond_t space;
	atomic_uint waiting;	 /* producers in pool_wait_space */
	_Atomic uint64_t sleeps; /* times a producer went to sleep on `space` (for tests) */
	/* A shared pool with caches: */
	pthread_mutex_t take; /* held by whoever consumes from it */
	struct pool *down[POOL_MAX_CACHES];
	_Atomic size_t ndown;
	_Atomic uint64_t moved; /* bytes moved into caches (counted in tail too) */
	struct pool *up;	/* a cache: the shared pool it is filled from */
};

struct pool *pool_new(size_t capacity)
{
	struct pool *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		return NULL;
	}
	p->cap = capacity;
	/* Waking a producer for every small consume costs a context switch per request, CPU
	 * that the guests' QEMU threads need: wake them only when a quarter is free. */
	p->low = capacity / 4 > 0 ? capacity / 4 : 1;
	p->buf = mmap(NULL, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->buf == MAP_FAILED) {
		free(p);
		return NULL;
	}
	/* Best effort: without CAP_IPC_LOCK the limit may be too small; main() reports it. */
	(void)mlock(p->buf, capacity);
	(void)madvise(p->buf, capacity, MADV_DONTDUMP);
	/* A child (an exec: source's guard) must not inherit a copy of unserved bytes. */
	(void)madvise(p->buf, capacity, MADV_WIPEONFORK);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0) {
		int saved = errno;
		munmap(p->buf, capacity);
		free(p);
		errno = saved;
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->take, NULL);
	pthread_cond_init(&p->space, NULL);
	return p;
}

void pool_free(struct pool *p)
{
	if (p == NULL) {
		return;
	}
	for (size_t i = 0; i < atomic_load(&p->ndown); i++) {
		pool_free(p->down[i]); /* bytes cached and not handed out are wiped */
	}
	explicit_bzero(p->buf, p->cap);
	munmap(p->buf, p->cap);
	close(p->efd);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->take);
	pthread_cond_destroy(&p->space);
	free(p);
}

int pool_wakeup_fd(const struct pool *p)
{
	return p->efd;
}

void pool_ack_wakeup(struct pool *p)
{
	uint64_t v;

	while (read(p->efd, &v, sizeof(v)) > 0) {
	}
}

size_t pool_put(struct pool *p, const uint8_t *buf, size_t n)
{
	pthread_mutex_lock(&p->lock);
	uint64_t head = atomic_load(&p->head);
	uint64_t used = head - atomic_load(&p->tail);
	size_t room = p->cap - (size_t)used;
	size_t put = n < room ? n : room;
	size_t off = (size_t)(head % p->cap);
	size_t first = put < p->cap - off ? put : p->cap - off;

	memcpy(p->buf + off, buf, first);
	memcpy(p->buf, buf + first, put - first);
	atomic_store(&p->head, head + put);
	pthread_mutex_unlock(&p->lock);

	if (put > 0 && atomic_load(&p->want) &&
	    head + put - atomic_load(&p->tail) >= atomic_load(&p->want_n) &&
	    atomic_exchange(&p->want, false)) {
		uint64_t one = 1;
		(void)!write(p->efd, &one, sizeof(one));
	}
	return put;
}

size_t pool_wait_space(struct pool *p, const atomic_bool *stop)
{
	size_t room;

	pthread_mutex_lock(&p->lock);
	/* Announce before checking: the consumer advances tail before it reads `waiting`, so
	 * (sequentially consistent) either we see its space or it sees us and wakes us. */
	atomic_fetch_add(&p->waiting, 1);
	for (;;) {
		room = p->cap - (size_t)(atomic_load(&p->head) - atomic_load(&p->tail));
		if (room >= p->low || room == p->cap || atomic_load(stop)) {
			break;
		}
		/* Counted under the lock, which pthread_cond_wait releases only once the
		 * thread waits: a broadcast after the count was seen cannot be missed. */
		atomic_fetch_add(&p->sleeps, 1);
		pthread_cond_wait(&p->space, &p->lock);
	}
	atomic_fetch_sub(&p->waiting, 1);
	pthread_mutex_unlock(&p->lock);
	return room;
}

void pool_wake_producers(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	pthread_cond_broadcast(&p->space);
	pthread_mutex_unlock(&p->lock);
}

size_t pool_level(struct pool *p)
{
	return (size_t)(atomic_load(&p->head) - atomic_load(&p->tail));
}

size_t pool_avail(struct pool *p)
{
	return pool_level(p) + (p->up != NULL ? pool_level(p->up) : 0);
}

size_t pool_capacity(const struct pool *p)
{
	return p->cap;
}

int pool_peek(struct pool *p, size_t n, struct iovec iov[2])
{
	uint64_t tail = atomic_load(&p->tail);
	size_t avail = (size_t)(atomic_load(&p->head) - tail);
	size_t off = (size_t)(tail % p->cap);
	size_t first;

	if (n > avail) {
		n = avail;
	}
	if (n == 0) {
		return 0;
	}
	first = n < p->cap - off ? n : p->cap - off;
	iov[0].iov_base = p->buf + off;
	iov[0].iov_len = first;
	if (first == n) {
		return 1;
	}
	iov[1].iov_base = p->buf;
	iov[1].iov_len = n - first;
	return 2;
}

void pool_consume(struct pool *p, size_t n)
{
	struct iovec iov[2];
	int cnt = pool_peek(p, n, iov);

	for (int i = 0; i < cnt; i++) {
		explicit_bzero(iov[i].iov_base, iov[i].iov_len);
	}
	uint64_t tail = atomic_fetch_add(&p->tail, n) + n;
	size_t room = p->cap - (size_t)(atomic_load(&p->head) - tail);

	/* Producers sleep until a quarter is free: no lock and no wake-up before that. */
	if (room >= p->low && atomic_load(&p->waiting) > 0) {
		pthread_mutex_lock(&p->lock);
		pthread_cond_broadcast(&p->space);
		pthread_mutex_unlock(&p->lock);
	}
}

size_t pool_take(struct pool *p, uint8_t *out, size_t n)
{
	struct iovec iov[2];
	int cnt = pool_peek(p, n, iov);
	size_t got = 0;

	for (int i = 0; i < cnt; i++) {
		memcpy(out + got, iov[i].iov_base, iov[i].iov_len);
		got += iov[i].iov_len;
	}
	if (got > 0) {
		pool_consume(p, got);
	}
	if (got < n && p->up != NULL) {
		pthread_mutex_lock(&p->up->take);
		got += pool_take(p->up, out + got, n - got);
		pthread_mutex_unlock(&p->up->take);
	}
	return got;
}

void pool_want(struct pool *p)
{
	pool_want_at(p, 1);
}

void pool_want_at(struct pool *p, size_t n)
{
	if (n > p->cap) {
		n = p->cap; /* a full pool is as much as there can be */
	}
	if (atomic_load(&p->want) && atomic_load(&p->want_n) < n) {
		n = atomic_load(&p->want_n); /* an earlier, smaller wish stands */
	}
	atomic_store(&p->want_n, n > 0 ? n : 1);
	atomic_store(&p->want, true);
	/* A put may have landed between the caller's check and this store. */
	if (pool_level(p) >= n && atomic_exchange(&p->want, false)) {
		uint64_t one = 1;
		(void)!write(p->efd, &one, sizeof(one));
	}
}

void pool_poke(struct pool *p)
{
	uint64_t one = 1;

	(void)!write(p->efd, &one, sizeof(one));
}

uint64_t pool_delivered(struct pool *p)
{
	uint64_t n;

	/* tail and moved change together under the consumers' lock (pool_move); the caches'
	 * tails are read after: every byte a cache handed out before the call is counted. */
	pthread_mutex_lock(&p->take);
	n = atomic_load(&p->tail) - atomic_load(&p->moved);
	pthread_mutex_unlock(&p->take);
	for (size_t i = 0; i < atomic_load(&p->ndown); i++) {
		n += atomic_load(&p->down[i]->tail);
	}
	return n;
}

struct pool *pool_new_cache(struct pool *up, size_t capacity)
{
	size_t i = atomic_load(&up->ndown);
	struct pool *c;

	if (i == POOL_MAX_CACHES) {
		errno = ENOSPC;
		return NULL;
	}
	c = pool_new(capacity);
	if (c == NULL) {
		return NULL;
	}
	c->up = up;
	up->down[i] = c;
	atomic_store(&up->ndown, i + 1);
	return c;
}

size_t pool_move(struct pool *up, struct pool *c, size_t n)
{
	struct iovec iov[2];
	size_t got = 0;
	int cnt;

	pthread_mutex_lock(&up->take);
	cnt = pool_peek(up, n, iov);
	for (int i = 0; i < cnt; i++) {
		size_t put = pool_put(c, iov[i].iov_base, iov[i].iov_len);

		got += put;
		if (put < iov[i].iov_len) {
			break; /* the cache is full */
		}
	}
	if (got > 0) {
		atomic_fetch_add(&up->moved, got);
		pool_consume(up, got); /* wiped there */
	}
	pthread_mutex_unlock(&up->take);
	return got;
}

uint64_t pool_producer_sleeps(struct pool *p)
{
	return atomic_load(&p->sleeps);
}
