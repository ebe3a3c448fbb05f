/* written: see written.h. */
#include "written.h"

#include "gate.h"
#include "log.h"
#include "pool.h"

static void to_pool(void *arg, const uint8_t *p, size_t n)
{
	(void)pool_put(arg, p, n);
}

void written_feed(struct gate **g, unsigned alpha_log2, struct pool *pool, const uint8_t *p,
		  size_t n, const char *peer, struct log_limit *lim)
{
	struct gate_result r;

	if (*g == NULL && (*g = gate_new(WRITTEN_H, alpha_log2)) == NULL) {
		return;
	}
	gate_feed(*g, p, n, to_pool, pool, &r);
	if (r.failed) {
		log_limited(lim, LOG_WARNING,
			    "client %s: bytes written with 0x03 failed the %s health test; %zu "
			    "bytes discarded",
			    peer, r.failed_rct ? "repetition count" : "adaptive proportion",
			    r.discarded);
	}
}
