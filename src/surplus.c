/* surplus: bytes sent ahead of requests to peers that behave like QEMU's rng-egd, so that
 * their socket always holds the answer to their next requests (as socat's always-full
 * stream does) and entropyd writes in large batches instead of once per 2-byte request.
 *
 * A peer behaves like QEMU when every command it sent since connecting was 0x02, and at
 * least SURPLUS_AFTER of them: QEMU reads the socket as an undivided byte stream and keeps
 * bytes it did not ask for for its next requests. Strict EGD clients (OpenSSL, GnuPG) open
 * with 0x01 and never qualify. What is sent ahead is bounded by the endpoint's surplus=
 * (reqq.h ahead never exceeds it), comes from the pool like any answer (health-tested,
 * never to two clients), is counted as served to that peer, and answers its next 0x02
 * requests. A peer that then sends another command is closed (client.c): the reply would
 * be read as random bytes. */
#include "client_impl.h"

#define SURPLUS_AFTER 16u

void surplus_top_up(struct client *c)
{
	struct reqq *q = &c->q;
	uint64_t bound = c->opts.surplus;

	if (bound == 0 || c->opts.raw || q->other || q->blocks < SURPLUS_AFTER ||
	    q->ahead >= bound / 2) {
		return;
	}
	if (!c->ahead_logged) {
		c->ahead_logged = true;
		log_debug("client %s: only 0x02 requests so far; keeping up to %llu bytes ahead "
			  "(surplus=)",
			  c->peer, (unsigned long long)bound);
	}
	(void)reqq_ahead(q, bound - q->ahead); /* a full queue: the next request tops it up */
}
