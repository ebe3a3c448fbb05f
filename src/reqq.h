/* reqq: one client's EGD requests, in arrival order. A run of 0x02 requests merges into
 * one count of owed bytes, so a peer that pipelines thousands of them costs a counter;
 * every other request takes one of REQQ_SLOTS slots, and a full queue tells the caller to
 * stop reading that peer. Pure: no I/O. */
#ifndef ENTROPYD_REQQ_H
#define ENTROPYD_REQQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct egd_req;

#define REQQ_SLOTS 64u

enum reqq_kind { REQQ_BLOCK, REQQ_NONBLOCK, REQQ_LEVEL, REQQ_PID };

struct reqq_op {
	enum reqq_kind kind;
	uint64_t n; /* bytes owed (BLOCK) or asked (NONBLOCK) */
};

struct reqq {
	struct reqq_op ops[REQQ_SLOTS];
	unsigned head, count;
	bool nomerge;	 /* keep each 0x02 a request of its own (prediction resistance) */
	uint64_t ahead;	 /* bytes queued or sent beyond what was asked (reqq_ahead): they
			  * answer the next 0x02 requests, which then queue nothing */
	uint64_t blocks; /* 0x02 requests parsed */
	bool other;	 /* a command other than 0x02 was parsed */
};

/* The oldest request, or NULL when none is queued. */
struct reqq_op *reqq_head(struct reqq *q);
/* Remove the oldest request. */
void reqq_pop(struct reqq *q);
/* Queue a request (a BLOCK joins a BLOCK at the tail); false when the queue is full. */
bool reqq_push(struct reqq *q, enum reqq_kind kind, uint64_t n);

/* Queue n bytes no request asked for yet, to answer the next 0x02 requests; false when
 * the queue is full. */
bool reqq_ahead(struct reqq *q, uint64_t n);

/* Why reqq_parse stopped. */
enum reqq_stop {
	REQQ_END,     /* all input taken, or the rest is an incomplete command */
	REQQ_FULL,    /* the queue is full: stop reading the peer */
	REQQ_UNKNOWN, /* an unknown command starts at in[*used] */
	REQQ_WRITE,   /* a 0x03 ends at in[*used]: *write holds it; call again after */
	REQQ_AHEAD,   /* a command other than 0x02 starts at in[*used] while bytes were sent
		       * ahead: its reply would be read as a 0x02's bytes */
};

/* Parse in[0..n) into q. *used is how many bytes were taken; *partial is set when the
 * input ends inside a command. A 0x03 request stops the parse with its data in *write. */
enum reqq_stop reqq_parse(struct reqq *q, const uint8_t *in, size_t n, size_t *used, bool *partial,
			  struct egd_req *write);
/* True if buf[0..n) holds only whole commands (a datagram that ends inside one is refused). */
bool reqq_whole(const uint8_t *buf, size_t n);

#endif
