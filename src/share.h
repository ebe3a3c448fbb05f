/* share: with event-loop threads (--threads), the main thread moves bytes from the shared
 * pool into the threads' caches, on demand only: a thread whose clients wait asks for what
 * they can take (share_ask), so no byte sits in the cache of a thread with no client that
 * needs it. When the pool holds less than all threads asked for, it is split in proportion
 * to each thread's waiting clients, so clients on different threads get equal shares as
 * those of one thread do (the rotation, rotation.c, shares a cache among its clients).
 * When the pool holds more than every thread asked for, a thread takes its bytes itself
 * (share_take), under the pool's consumer lock, without waiting for the main thread. */
#ifndef ENTROPYD_SHARE_H
#define ENTROPYD_SHARE_H

#include <stddef.h>

/* When the threads ask for more than the pool holds, the longest the main thread waits for
 * more before it splits what there is (as CLIENT_BATCH_US does for one thread's clients). */
#define SHARE_BATCH_US 1000u

struct event_base;
struct pool;
struct share;
struct share_slot;

/* n caches of pool, each cap bytes, filled on base's thread (the pool's only consumer from
 * then on); NULL on failure. */
struct share *share_new(struct event_base *base, struct pool *pool, size_t n, size_t cap);
/* Stop filling (the caches are the pool's: pool_free frees them). */
void share_free(struct share *sh);
/* Cache i (0..n-1). */
struct pool *share_cache(struct share *sh, size_t i);
/* The demand slot of cache i. */
struct share_slot *share_slot(struct share *sh, size_t i);
/* From cache i's thread: move bytes into its cache now if the pool holds them beyond what
 * the other threads asked for (plenty: no split is needed); returns how many (0: ask). */
size_t share_take(struct share_slot *s, size_t bytes);
/* From cache i's thread: its waiting clients (weight) could take bytes more now; replaces
 * what it asked before (0: nothing). */
void share_ask(struct share_slot *s, size_t bytes, size_t weight);

#endif
