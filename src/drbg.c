/* drbg: see drbg.h. The CTR-DRBG's own reseed triggers (request count, time) are switched
 * off: reseeds happen only when this module asks, with bytes it took from the pool, so that
 * when the pool is short the DRBG stops (drbg_due stays true) instead of stretching an old
 * seed. Output is generated DRBG_BLOCK bytes at a time (fewer when the limit is near) into
 * a ring of two blocks, so that an answer crossing a block's end still goes out in one
 * writev (two iovecs) and the next block can be generated after a write, while the peer
 * reads, instead of before the next one; a reseed wipes the whole ring, so no byte produced
 * under an old seed is handed out after a new one was asked for. */
#include "drbg.h"

#include "drbg_seed.h"
#include "log.h"
#include "pool.h"

#include <math.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

struct drbg {
	struct pool *pool;
	OSSL_LIB_CTX *lib;
	OSSL_PROVIDER *prov[2];
	EVP_RAND_CTX *parent, *ctx;
	bool seeded;
	size_t seed_size;
	uint8_t *seed;	    /* seed_size bytes, staged for the parent */
	uint64_t generated; /* since the last seed */
	long long seeded_ms;
	uint64_t seeds;
	uint8_t ring[DRBG_RING];
	size_t head, fill; /* fill bytes from ring[head] (wrapping) not handed out yet */
};

size_t drbg_seed_bytes(double h)
{
	return (size_t)ceil((double)DRBG_SEED_BITS / h);
}

static void ssl_fail(const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	ERR_error_string_n(e, buf, sizeof(buf));
	log_warnx("drbg: %s: %s", what, e != 0 ? buf : "failed");
	ERR_clear_error();
}

struct drbg *drbg_new(struct pool *pool, double h)
{
	struct drbg *d;
	EVP_RAND *ctr = NULL;
	int df = 1;
	unsigned zero = 0;
	time_t never = 0;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_DRBG_PARAM_CIPHER, (char *)"AES-256-CTR", 0),
	    OSSL_PARAM_construct_int(OSSL_DRBG_PARAM_USE_DF, &df),
	    OSSL_PARAM_construct_end(),
	};
	OSSL_PARAM off[] = {
	    OSSL_PARAM_construct_uint(OSSL_DRBG_PARAM_RESEED_REQUESTS, &zero),
	    OSSL_PARAM_construct_time_t(OSSL_DRBG_PARAM_RESEED_TIME_INTERVAL, &never),
	    OSSL_PARAM_construct_end(),
	};

	if (!(h > 0 && h <= 8)) {
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return NULL;
	}
	d->pool = pool;
	d->seed_size = drbg_seed_bytes(h);
	d->seed = calloc(1, d->seed_size);
	if (d->seed == NULL || drbg_seed_open(&d->lib, d->prov, &d->parent) < 0) {
		ssl_fail("cannot load the seed source");
		drbg_free(d);
		return NULL;
	}
	ctr = EVP_RAND_fetch(d->lib, "CTR-DRBG", NULL);
	d->ctx = ctr != NULL ? EVP_RAND_CTX_new(ctr, d->parent) : NULL;
	EVP_RAND_free(ctr);
	if (d->ctx == NULL || !EVP_RAND_CTX_set_params(d->ctx, params) ||
	    !EVP_RAND_CTX_set_params(d->ctx, off)) {
		ssl_fail("cannot create an AES-256 CTR-DRBG");
		drbg_free(d);
		return NULL;
	}
	return d;
}

void drbg_free(struct drbg *d)
{
	if (d == NULL) {
		return;
	}
	EVP_RAND_CTX_free(d->ctx);
	drbg_seed_close(d->lib, d->prov, d->parent);
	if (d->seed != NULL) {
		explicit_bzero(d->seed, d->seed_size);
	}
	free(d->seed);
	explicit_bzero(d, sizeof(*d));
	free(d);
}

bool drbg_seeded(const struct drbg *d)
{
	return d->seeded;
}

bool drbg_due(const struct drbg *d, uint64_t reseed_bytes, uint64_t reseed_ms, long long now_ms)
{
	return !d->seeded || d->generated >= reseed_bytes ||
	       now_ms - d->seeded_ms >= (long long)reseed_ms;
}

int drbg_reseed(struct drbg *d, long long now_ms)
{
	int ok;

	if (pool_avail(d->pool) < d->seed_size) {
		return 0;
	}
	(void)pool_take(d->pool, d->seed, d->seed_size);
	if (drbg_seed_stage(d->parent, d->seed, d->seed_size) < 0) {
		explicit_bzero(d->seed, d->seed_size);
		ssl_fail("cannot stage a seed");
		return -1;
	}
	/* The parent hands the staged bytes over as the entropy input (and wipes them). */
	ok = d->seeded ? EVP_RAND_reseed(d->ctx, 0, NULL, 0, NULL, 0)
		       : EVP_RAND_instantiate(d->ctx, 256, 0, NULL, 0, NULL);
	explicit_bzero(d->seed, d->seed_size);
	explicit_bzero(d->ring, sizeof(d->ring));
	d->head = d->fill = 0;
	if (!ok) {
		ssl_fail(d->seeded ? "reseed failed" : "instantiation failed");
		d->seeded = false;
		return -1;
	}
	d->seeded = true;
	d->generated = 0;
	d->seeded_ms = now_ms;
	d->seeds++;
	return 1;
}

/* Generate one piece after what is buffered: at most a block, what the ring has room for
 * up to its end, and what limit leaves. 1 if generated, 0 if nothing can be, -1 on a
 * failure (the ring is wiped and a reseed is then due). */
static int drbg_generate(struct drbg *d, uint64_t limit)
{
	size_t tail = (d->head + d->fill) % DRBG_RING;
	uint64_t left = limit > d->generated ? limit - d->generated : 0;
	size_t want = DRBG_RING - tail < DRBG_BLOCK ? DRBG_RING - tail : DRBG_BLOCK;

	want = DRBG_RING - d->fill < want ? DRBG_RING - d->fill : want;
	want = left < want ? (size_t)left : want;
	if (!d->seeded || want == 0) {
		return 0;
	}
	if (!EVP_RAND_generate(d->ctx, d->ring + tail, want, 256, 0, NULL, 0)) {
		ssl_fail("generate failed");
		explicit_bzero(d->ring, sizeof(d->ring));
		d->head = d->fill = 0;
		d->seeded = false; /* reseed (from the pool) before anything else */
		return -1;
	}
	d->fill += want;
	d->generated += want;
	return 1;
}

int drbg_peek(struct drbg *d, size_t n, uint64_t limit, struct iovec iov[2])
{
	size_t first;

	while (d->fill < n && drbg_generate(d, limit) > 0) {
	}
	if (!d->seeded || d->fill == 0 || n == 0) {
		return 0;
	}
	n = n < d->fill ? n : d->fill;
	first = DRBG_RING - d->head < n ? DRBG_RING - d->head : n;
	iov[0].iov_base = d->ring + d->head;
	iov[0].iov_len = first;
	if (first == n) {
		return 1;
	}
	iov[1].iov_base = d->ring;
	iov[1].iov_len = n - first;
	return 2;
}

void drbg_consume(struct drbg *d, size_t n)
{
	size_t first = DRBG_RING - d->head < n ? DRBG_RING - d->head : n;

	explicit_bzero(d->ring + d->head, first);
	explicit_bzero(d->ring, n - first);
	d->head = (d->head + n) % DRBG_RING;
	d->fill -= n;
	if (d->fill == 0) {
		d->head = 0; /* blocks stay whole: one generate call each */
	}
}

void drbg_prefill(struct drbg *d, uint64_t limit)
{
	if (d->fill < DRBG_BLOCK) {
		(void)drbg_generate(d, limit);
	}
}

uint64_t drbg_generated(const struct drbg *d)
{
	return d->generated;
}

uint64_t drbg_seeds(const struct drbg *d)
{
	return d->seeds;
}

size_t drbg_seed_size(const struct drbg *d)
{
	return d->seed_size;
}

uint64_t drbg_parent_handed(const struct drbg *d)
{
	return drbg_seed_handed(d->parent);
}
