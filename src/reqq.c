/* reqq: see reqq.h. A ring of REQQ_SLOTS entries. */
#include "reqq.h"

#include <stddef.h>

struct reqq_op *reqq_head(struct reqq *q)
{
	return q->count > 0 ? &q->ops[q->head] : NULL;
}

void reqq_pop(struct reqq *q)
{
	q->head = (q->head + 1) % REQQ_SLOTS;
	q->count--;
}

bool reqq_push(struct reqq *q, enum reqq_kind kind, uint64_t n)
{
	if (q->count > 0 && kind == REQQ_BLOCK) {
		struct reqq_op *tail = &q->ops[(q->head + q->count - 1) % REQQ_SLOTS];

		if (tail->kind == REQQ_BLOCK) {
			tail->n += n;
			return true;
		}
	}
	if (q->count == REQQ_SLOTS) {
		return false;
	}
	q->ops[(q->head + q->count) % REQQ_SLOTS] = (struct reqq_op){kind, n};
	q->count++;
	return true;
}
