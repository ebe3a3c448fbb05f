/* rate: see rate.h. Tokens are counted in units of 1/per_ms byte so that refilling
 * `bytes` per `per_ms` adds exactly `bytes` units per millisecond; with bytes <= 2^32 and
 * per_ms <= 2^22 every product stays below 2^54. */
#include "rate.h"

#include <time.h>

int rate_init(struct rate *r, uint64_t bytes, uint64_t per_ms, uint64_t now_ms)
{
	if (bytes == 0 || bytes > RATE_MAX_BYTES || per_ms == 0 || per_ms > RATE_MAX_MS) {
		return -1;
	}
	r->bytes = bytes;
	r->per_ms = per_ms;
	r->scaled = bytes * per_ms;
	r->last_ms = now_ms;
	return 0;
}

static void refill(struct rate *r, uint64_t now_ms)
{
	uint64_t cap = r->bytes * r->per_ms;
	uint64_t elapsed;

	if (now_ms <= r->last_ms) {
		return; /* the clock did not move (or a caller's clock went back): no refill */
	}
	elapsed = now_ms - r->last_ms;
	r->last_ms = now_ms;
	if (elapsed >= r->per_ms) {
		r->scaled = cap; /* a whole period refills the bucket: also bounds the product */
		return;
	}
	r->scaled += elapsed * r->bytes;
	if (r->scaled > cap) {
		r->scaled = cap;
	}
}

size_t rate_take(struct rate *r, uint64_t now_ms, size_t want)
{
	uint64_t avail;

	refill(r, now_ms);
	avail = r->scaled / r->per_ms;
	if ((uint64_t)want > avail) {
		want = (size_t)avail;
	}
	r->scaled -= (uint64_t)want * r->per_ms;
	return want;
}

void rate_return(struct rate *r, size_t n)
{
	uint64_t cap = r->bytes * r->per_ms;

	if ((uint64_t)n >= r->bytes) {
		r->scaled = cap;
		return;
	}
	r->scaled += (uint64_t)n * r->per_ms;
	if (r->scaled > cap) {
		r->scaled = cap;
	}
}

uint64_t rate_wait_ms(struct rate *r, uint64_t now_ms, size_t want)
{
	uint64_t need;

	refill(r, now_ms);
	if ((uint64_t)want > r->bytes) {
		want = (size_t)r->bytes;
	}
	need = (uint64_t)want * r->per_ms;
	if (r->scaled >= need) {
		return 0;
	}
	return (need - r->scaled + r->bytes - 1) / r->bytes;
}
