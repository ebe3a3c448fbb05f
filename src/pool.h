/* pool: the buffer of health-tested bytes between the source threads and the event loop.
 *
 * Raw-mode delivery rule: every byte put in is handed out at most once and then wiped.
 * Producers (source threads) append under a mutex; the single consumer (the event loop)
 * reads the filled region without the lock, so it can write() straight from the buffer,
 * and only then consumes (and wipes) what the kernel accepted. The memory is locked
 * against swapping and excluded from core dumps. */
#ifndef ENTROPYD_POOL_H
#define ENTROPYD_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct pool;

/* Caches a shared pool can have at most (pool_new_cache). */
#define POOL_MAX_CACHES 72

/* New pool holding up to capacity bytes; NULL on failure (errno set). */
struct pool *pool_new(size_t capacity);
/* Wipe and free the pool. */
void pool_free(struct pool *p);
/* Descriptor (eventfd) that becomes readable when bytes arrive after the consumer asked. */
int pool_wakeup_fd(const struct pool *p);
/* Consumer: clear the wake-up descriptor after it fired. */
void pool_ack_wakeup(struct pool *p);

/* Producer (any thread): append up to n bytes, never blocking; returns how many fitted. */
size_t pool_put(struct pool *p, const uint8_t *buf, size_t n);
/* Producer: block until a quarter of the pool is free (or any space, if it is already) or
 * *stop is true (whoever sets *stop must then call pool_wake_producers); returns free bytes. */
size_t pool_wait_space(struct pool *p, const atomic_bool *stop);
/* Wake every producer blocked in pool_wait_space (used at shutdown). */
void pool_wake_producers(struct pool *p);

/* Consumer: bytes available now (a cache: its own and its shared pool's, which pool_take
 * reaches; pool_peek sees only its own: pool_level). */
size_t pool_avail(struct pool *p);
/* Consumer: bytes p itself holds (a cache: without its shared pool's). */
size_t pool_level(struct pool *p);
/* Total capacity in bytes. */
size_t pool_capacity(const struct pool *p);
/* Consumer: describe the first min(n, avail) bytes as up to two iovecs; returns iovcnt
 * (0 when empty). Nothing is consumed. */
int pool_peek(struct pool *p, size_t n, struct iovec iov[2]);
/* Consumer: consume (and wipe) the first n available bytes; n <= pool_avail(). */
void pool_consume(struct pool *p, size_t n);
/* Consumer: copy up to n bytes to out and consume them (a cache that runs short takes the
 * rest from its shared pool); returns the count. */
size_t pool_take(struct pool *p, uint8_t *out, size_t n);
/* Consumer: ask for a wake-up when bytes are next put (call when found empty). */
void pool_want(struct pool *p);
/* Consumer: ask for a wake-up once n bytes (at most the capacity) are available, now if
 * they are already (call when found holding fewer than n). */
void pool_want_at(struct pool *p, size_t n);
/* Wake p's consumer now (a thread whose cache needs bytes tells the shared pool's). */
void pool_poke(struct pool *p);
/* Total bytes ever consumed (delivered); a shared pool counts what its caches handed out. */
uint64_t pool_delivered(struct pool *p);
/* Test hook: how often a producer has gone to sleep in pool_wait_space (found too little
 * space and is about to wait, or waiting); lets a test prove a thread is really blocked. */
uint64_t pool_producer_sleeps(struct pool *p);

/* A cache of up holding capacity bytes, for one consumer thread, filled only by
 * pool_move; freed with up. Create every cache before the threads start; NULL on failure
 * (errno set). */
struct pool *pool_new_cache(struct pool *up, size_t capacity);
/* up's consumer: move up to n bytes from up into its cache c (each byte once: it is wiped
 * in up); returns how many (c's consumer is woken if it asked). */
size_t pool_move(struct pool *up, struct pool *c, size_t n);

#endif
