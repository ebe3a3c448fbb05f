/* reqq: see reqq.h. A ring of REQQ_SLOTS entries. */
#include "reqq.h"

#include "egd.h"

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
	if (q->count > 0 && kind == REQQ_BLOCK && !q->nomerge) {
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

bool reqq_ahead(struct reqq *q, uint64_t n)
{
	if (!reqq_push(q, REQQ_BLOCK, n)) {
		return false;
	}
	q->ahead += n;
	return true;
}

/* A 0x02 request of n bytes: what was sent ahead answers it first. */
static bool push_block(struct reqq *q, uint64_t n)
{
	uint64_t covered = n < q->ahead ? n : q->ahead;

	if (n > covered && !reqq_push(q, REQQ_BLOCK, n - covered)) {
		return false; /* parsed again once the queue drains */
	}
	q->blocks++;
	q->ahead -= covered;
	return true;
}

/* Take back what was queued ahead and not yet sent (the last q->ahead bytes of the tail
 * 0x02 run); false if some of it was already sent. */
static bool retract(struct reqq *q)
{
	struct reqq_op *tail = q->count > 0 ? &q->ops[(q->head + q->count - 1) % REQQ_SLOTS] : NULL;

	if (tail == NULL || tail->kind != REQQ_BLOCK || tail->n < q->ahead) {
		return false;
	}
	tail->n -= q->ahead;
	q->ahead = 0;
	if (tail->n == 0) {
		q->count--;
	}
	return true;
}

enum reqq_stop reqq_parse(struct reqq *q, const uint8_t *in, size_t n, size_t *used, bool *partial,
			  struct egd_req *write)
{
	*used = 0;
	*partial = false;
	while (*used < n) {
		struct egd_req req;
		int len = egd_parse(in + *used, n - *used, &req);
		bool queued = true;

		if (len == 0) {
			*partial = true;
			return REQQ_END;
		}
		if (len < 0) {
			return REQQ_UNKNOWN;
		}
		if (req.cmd != EGD_BLOCK) {
			if (q->ahead > 0 && !retract(q)) {
				return REQQ_AHEAD;
			}
			q->other = true;
		}
		switch (req.cmd) {
		case EGD_BLOCK:
			queued = req.len == 0 || push_block(q, req.len);
			break;
		case EGD_NONBLOCK:
			queued = reqq_push(q, REQQ_NONBLOCK, req.len);
			break;
		case EGD_LEVEL:
			queued = reqq_push(q, REQQ_LEVEL, 0);
			break;
		case EGD_PID:
			queued = reqq_push(q, REQQ_PID, 0);
			break;
		case EGD_WRITE:
			*write = req;
			*used += (size_t)len;
			return REQQ_WRITE;
		}
		if (!queued) {
			return REQQ_FULL;
		}
		*used += (size_t)len;
	}
	return REQQ_END;
}

bool reqq_whole(const uint8_t *buf, size_t n)
{
	size_t off = 0;

	while (off < n) {
		struct egd_req req;
		int len = egd_parse(buf + off, n - off, &req);

		if (len == 0) {
			return false;
		}
		if (len < 0) {
			return true; /* unknown: the parse proper refuses it, as for a stream */
		}
		off += (size_t)len;
	}
	return true;
}
