/* answer: the reply to one EGD request that needs no stream of pool bytes: 0x00 (entropy
 * level), 0x01 (non-blocking read: a count, then the bytes ready now, taken from the
 * pool) and 0x04 (pid), each paced by rate= first. Pure but for the pool it takes from. */
#ifndef ENTROPYD_ANSWER_H
#define ENTROPYD_ANSWER_H

#include <stddef.h>
#include <stdint.h>

struct pacer;
struct pool;
struct reqq_op;

/* Build the reply to op (REQQ_LEVEL, REQQ_NONBLOCK or REQQ_PID) in out[0..outlen) (at least
 * 256 bytes) and return its length; 0 when the pacer has no tokens for it yet (nothing was
 * taken). Pool bytes handed out are added to *served. */
size_t answer_build(const struct reqq_op *op, struct pool *pool, struct pacer *pacer, uint8_t *out,
		    size_t outlen, uint64_t *served);

#endif
