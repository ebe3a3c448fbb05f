/* reqq: one client's EGD requests, in arrival order. A run of 0x02 requests merges into
 * one count of owed bytes, so a peer that pipelines thousands of them costs a counter;
 * every other request takes one of REQQ_SLOTS slots, and a full queue tells the caller to
 * stop reading that peer. Pure: no I/O. */
#ifndef ENTROPYD_REQQ_H
#define ENTROPYD_REQQ_H

#include <stdbool.h>
#include <stdint.h>

#define REQQ_SLOTS 64u

enum reqq_kind { REQQ_BLOCK, REQQ_NONBLOCK, REQQ_LEVEL, REQQ_PID };

struct reqq_op {
	enum reqq_kind kind;
	uint64_t n; /* bytes owed (BLOCK) or asked (NONBLOCK) */
};

struct reqq {
	struct reqq_op ops[REQQ_SLOTS];
	unsigned head, count;
};

/* The oldest request, or NULL when none is queued. */
struct reqq_op *reqq_head(struct reqq *q);
/* Remove the oldest request. */
void reqq_pop(struct reqq *q);
/* Queue a request (a BLOCK joins a BLOCK at the tail); false when the queue is full. */
bool reqq_push(struct reqq *q, enum reqq_kind kind, uint64_t n);

#endif
