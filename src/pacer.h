/* pacer: paces one client's answers (rate=BYTES/MS) with a token bucket (rate.c) and a
 * timer that calls back once enough tokens are back; with endpoint-rate=BYTES/MS every
 * answer also takes tokens from the endpoint's bucket, shared by all its clients.
 *
 * The shared bucket is handed out first come, first served: a client it cannot serve joins
 * the endpoint's FIFO of waiting clients, and one timer on the bucket grants the head a
 * turn of PACER_TURN_BYTES (reserved for it as credit) whenever that many tokens are back,
 * then the next. While clients wait, no other client takes from the bucket directly, so a
 * client whose timer happened to fire first cannot take every token as it trickles back.
 * A paced client is never dropped: it waits out of the rotation and its requests stay
 * queued. */
#ifndef ENTROPYD_PACER_H
#define ENTROPYD_PACER_H

#include "rate.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct event;
struct event_base;

/* Bytes of the endpoint's bucket one waiting client is granted per turn. */
#define PACER_TURN_BYTES 256u

TAILQ_HEAD(pacer_queue, pacer);

/* An endpoint's bucket (endpoint-rate=), shared by every client of the endpoint. Reference
 * counted: the endpoint and each of its clients' pacers hold one, so it outlives whichever
 * goes last (endpoints are freed before clients at shutdown). */
struct pacer_shared {
	struct rate rate;
	uint64_t throttled; /* bytes held back by a bucket before they were sent, all clients */
	struct pacer_queue waiting; /* clients waiting for a turn, first come first */
	struct event *ev;	    /* fires when the head's turn is back in the bucket */
	unsigned refs;
};

struct pacer {
	bool on;		     /* rate= or endpoint-rate= applies */
	bool own;		     /* rate= applies */
	struct pacer_shared *shared; /* endpoint-rate=, or NULL */
	bool waiting;		     /* out of tokens: a timer (own or shared) will call wake */
	bool queued;		     /* in shared->waiting */
	size_t need;		     /* while queued: the fewest bytes it can use */
	size_t credit;		     /* shared tokens granted to it by its turn, not yet taken */
	bool paced;	    /* had to wait since the owner last owed nothing (it clears this) */
	uint64_t throttled; /* bytes held back by a bucket before they were sent (pacer_sent) */
	struct rate rate;
	struct event *ev;
	void (*wake)(void *arg);
	void *arg;
	TAILQ_ENTRY(pacer) link; /* in shared->waiting */
};

/* A new endpoint bucket on base: bytes per per_ms; NULL if out of memory or out of range.
 * The caller holds its one reference. */
struct pacer_shared *pacer_shared_new(struct event_base *base, uint64_t bytes, uint64_t per_ms);
/* Drop a reference to s (NULL: nothing); the last frees it. */
void pacer_shared_unref(struct pacer_shared *s);
/* Pace at bytes per per_ms (bytes 0: no pacing of its own), and by shared (NULL: none; the
 * pacer takes a reference); wake(arg) runs when a wait is over. -1 if out of memory. */
int pacer_init(struct pacer *p, struct event_base *base, uint64_t bytes, uint64_t per_ms,
	       struct pacer_shared *shared, void (*wake)(void *arg), void *arg);
/* Up to want bytes may go now (all without pacing); fewer than min: none, and the pacer
 * waits (waiting set) until wake. */
size_t pacer_take(struct pacer *p, size_t want, size_t min);
/* Give back n bytes taken but not sent. */
void pacer_return(struct pacer *p, size_t n);
/* n bytes taken were sent: counted as throttled if a bucket held the owner back. */
void pacer_sent(struct pacer *p, size_t n);
/* Release the timer, leave the endpoint's queue and drop the reference to its bucket. */
void pacer_free(struct pacer *p);

#endif
