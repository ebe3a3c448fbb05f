/* answer: see answer.h. */
#include "answer.h"

#include "egd.h"
#include "pacer.h"
#include "pool.h"
#include "reqq.h"

#include <stdint.h>
#include <unistd.h>

size_t answer_build(const struct reqq_op *op, struct pool *pool, struct pacer *pacer, uint8_t *out,
		    size_t outlen, uint64_t *served)
{
	size_t len, k;

	switch (op->kind) {
	case REQQ_LEVEL: {
		uint64_t bits = (uint64_t)pool_avail(pool) * 8;

		if (pacer_take(pacer, 4, 4) == 0) {
			return 0;
		}
		egd_encode_level(bits > UINT32_MAX ? UINT32_MAX : (uint32_t)bits, out);
		return 4;
	}
	case REQQ_PID:
		len = egd_encode_pid((long)getpid(), out, outlen);
		return pacer_take(pacer, len, len) == 0 ? 0 : len;
	case REQQ_NONBLOCK:
		k = pacer_take(pacer, 1 + (size_t)op->n, 1);
		if (k == 0) {
			return 0;
		}
		out[0] = (uint8_t)pool_take(pool, out + 1, k - 1);
		*served += out[0];
		pacer_sent(pacer, out[0]);
		pacer_return(pacer, k - (1u + out[0]));
		return 1u + out[0];
	case REQQ_BLOCK:
		break;
	}
	return 0;
}
