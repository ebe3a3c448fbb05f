/* client_drbg: serving mode=drbg clients from the event loop's DRBG (drbg.c) instead of the
 * raw pool. Before any output for a client the DRBG must be fresh by that client's own
 * limits (reseed=, reseed-ms=, and with prediction-resistance=on a seed per request); a
 * reseed takes its bytes from the pool, and when the pool holds too few the client waits,
 * exactly as a raw client waits on an empty pool, and is woken when bytes are put. Output is
 * written straight from the DRBG's ring (two iovecs where it wraps), and the next block is
 * generated after each write, while the peer reads; 0x00 reports what the DRBG can give and
 * 0x01 is answered from it. */
#include "client_impl.h"

#include "answer.h"
#include "clock.h"
#include "drbg.h"
#include "egd.h"
#include "pacer.h"
#include "pool.h"

#include <string.h>

static uint64_t reseed_bytes(const struct client *c)
{
	return c->opts.reseed_bytes > 0 ? c->opts.reseed_bytes : CLIENT_RESEED_BYTES;
}

static uint64_t reseed_ms(const struct client *c)
{
	return c->opts.reseed_ms > 0 ? c->opts.reseed_ms : CLIENT_RESEED_MS;
}

bool client_drbg_ready(struct client *c)
{
	struct clients *cs = c->cs;
	long long now = clock_ms();

	if (cs->drbg == NULL) {
		cs->drbg_starved = true;
		return false;
	}
	if (!drbg_due(cs->drbg, reseed_bytes(c), reseed_ms(c), now) &&
	    (!c->opts.pr || c->pr_fresh)) {
		return true;
	}
	if (drbg_reseed(cs->drbg, now) > 0) {
		c->pr_fresh = true;
		return true;
	}
	cs->drbg_starved = true;
	clients_ask(cs, drbg_seed_size(cs->drbg));
	return false;
}

int client_drbg_peek(struct client *c, size_t want, struct iovec iov[2])
{
	if (!client_drbg_ready(c)) {
		return 0;
	}
	return drbg_peek(c->cs->drbg, want, reseed_bytes(c), iov);
}

void client_drbg_consume(struct client *c, size_t n)
{
	drbg_consume(c->cs->drbg, n);
	if (!c->opts.pr) { /* with prediction-resistance=on the next request reseeds anyway */
		drbg_prefill(c->cs->drbg, reseed_bytes(c));
	}
}

/* Bits the DRBG can give c now without waiting for the pool (for 0x00). */
static uint64_t can_give_bits(struct client *c)
{
	struct drbg *d = c->cs->drbg;
	uint64_t seeds, limit = reseed_bytes(c);

	if (d == NULL) {
		return 0;
	}
	seeds = pool_avail(c->cs->pool) / drbg_seed_size(d);
	if (c->opts.pr) {
		return seeds * 255 * 8; /* one request of at most 255 bytes per seed */
	}
	if (!drbg_due(d, limit, reseed_ms(c), clock_ms())) {
		return (limit - drbg_generated(d) + seeds * limit) * 8;
	}
	return seeds * limit * 8;
}

size_t client_drbg_answer(struct client *c, const struct reqq_op *op)
{
	size_t k, got = 0;
	struct iovec iov[2];
	int cnt;

	if (op->kind == REQQ_LEVEL) {
		uint64_t bits = can_give_bits(c);

		if (pacer_take(&c->pacer, 4, 4) == 0) {
			return 0;
		}
		egd_encode_level(bits > UINT32_MAX ? UINT32_MAX : (uint32_t)bits, c->out);
		return 4;
	}
	if (op->kind != REQQ_NONBLOCK) {
		return answer_build(op, c->cs->pool, &c->pacer, c->out, sizeof(c->out), &c->served);
	}
	k = pacer_take(&c->pacer, 1 + (size_t)op->n, 1);
	if (k == 0) {
		return 0;
	}
	cnt = client_drbg_peek(c, k - 1, iov);
	for (int i = 0; i < cnt; i++) {
		memcpy(c->out + 1 + got, iov[i].iov_base, iov[i].iov_len);
		got += iov[i].iov_len;
	}
	if (got > 0) {
		drbg_consume(c->cs->drbg, got);
	}
	c->pr_fresh = false;
	c->out[0] = (uint8_t)got;
	c->served += got;
	pacer_sent(&c->pacer, got);
	pacer_return(&c->pacer, k - (1u + got));
	return 1u + got;
}
