/* drbg: the AES-256 CTR-DRBG (NIST SP 800-90A, OpenSSL 3 EVP_RAND, derivation function on)
 * behind mode=drbg endpoints, one per serving event loop. Its only entropy input is
 * health-tested bytes taken (and so consumed) from the pool: the DRBG's parent is a seed
 * source of our own (drbg_seed.c) that hands over exactly the bytes staged from the pool,
 * never the operating system's. It is fully seeded from DRBG_SEED_BITS of assessed
 * entropy before its first output and reseeded when the caller says so (drbg_due).
 * Output is generated in large blocks into a ring of two the caller writes from directly
 * (drbg_peek), and wiped as it is handed out (drbg_consume) or when a reseed makes it
 * stale. Single-threaded: the event loop that owns it. */
#ifndef ENTROPYD_DRBG_H
#define ENTROPYD_DRBG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct drbg;
struct pool;

/* Assessed entropy drawn from the pool for each (re)seed: 256 bits of entropy input plus
 * the 128-bit nonce's worth (SP 800-90A, 3/2 of the security strength). */
#define DRBG_SEED_BITS 384u
/* Output generated per EVP_RAND_generate call (its per-request maximum). */
#define DRBG_BLOCK 65536u
/* Output buffered at most: two blocks, one being handed out while the next is ready. */
#define DRBG_RING (2u * DRBG_BLOCK)

/* Pool bytes one seed takes when each carries h bits of min-entropy: ceil(384 / h). */
size_t drbg_seed_bytes(double h);
/* A DRBG (not yet seeded) drawing seeds of drbg_seed_bytes(h) bytes from pool; NULL on
 * failure (OpenSSL's reason is logged). */
struct drbg *drbg_new(struct pool *pool, double h);
/* Wipe and free (NULL is fine). */
void drbg_free(struct drbg *d);
/* True once seeded (its first output may be produced). */
bool drbg_seeded(const struct drbg *d);
/* True if a reseed is due before more output: unseeded, reseed_bytes or more generated
 * since the last seed, or reseed_ms or more milliseconds (now_ms) elapsed since it. */
bool drbg_due(const struct drbg *d, uint64_t reseed_bytes, uint64_t reseed_ms, long long now_ms);
/* (Re)seed from the pool now: 1 if done (buffered output is wiped), 0 if the pool holds too
 * few bytes (nothing taken), -1 on an OpenSSL failure. */
int drbg_reseed(struct drbg *d, long long now_ms);
/* Up to n bytes of output (at most DRBG_RING; at most limit bytes generated per seed:
 * drbg_due's reseed_bytes) described by iov[0] and, where the ring wraps, iov[1]; returns
 * the iovec count, 0 when unseeded or when the limit is reached. Nothing is consumed. */
int drbg_peek(struct drbg *d, size_t n, uint64_t limit, struct iovec iov[2]);
/* Hand out (and wipe) the first n bytes drbg_peek showed. */
void drbg_consume(struct drbg *d, size_t n);
/* Generate the next block ahead (within limit) if less than a block is buffered, so that
 * the next request is answered without waiting for the cipher. */
void drbg_prefill(struct drbg *d, uint64_t limit);
/* Bytes generated since the last seed (buffered ones included). */
uint64_t drbg_generated(const struct drbg *d);
/* Seeds taken so far, and pool bytes they consumed. */
uint64_t drbg_seeds(const struct drbg *d);
/* Test hook: seeds the parent (the seed source) handed to the DRBG; equals drbg_seeds()
 * when every seed came from the pool and nothing else was asked for. */
uint64_t drbg_parent_handed(const struct drbg *d);
/* Pool bytes one seed of d takes. */
size_t drbg_seed_size(const struct drbg *d);

#endif
