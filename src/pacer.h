/* pacer: paces one client's answers (rate=BYTES/MS) with a token bucket (rate.c) and a
 * timer that calls back once enough tokens are back; with endpoint-rate=BYTES/MS every
 * answer also takes tokens from the endpoint's bucket, shared by all its clients (a
 * client the shared bucket holds back waits on its own timer). A paced client is never
 * dropped: it waits out of the rotation and its requests stay queued. */
#ifndef ENTROPYD_PACER_H
#define ENTROPYD_PACER_H

#include "rate.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;
struct event_base;

/* An endpoint's bucket (endpoint-rate=), shared by every client of the endpoint; it lives
 * as long as the endpoint, which outlives its clients' use of it. */
struct pacer_shared {
	bool on;
	struct rate rate;
	uint64_t throttled; /* bytes held back by a bucket before they were sent, all clients */
};

struct pacer {
	bool on;		     /* rate= or endpoint-rate= applies */
	bool own;		     /* rate= applies */
	struct pacer_shared *shared; /* endpoint-rate=, or NULL */
	bool waiting;		     /* out of tokens: the timer will call wake */
	bool paced;	    /* had to wait since the owner last owed nothing (it clears this) */
	uint64_t throttled; /* bytes held back by a bucket before they were sent (pacer_sent) */
	struct rate rate;
	struct event *ev;
	void (*wake)(void *arg);
	void *arg;
};

/* Start the endpoint bucket s: bytes per per_ms (bytes 0: none). */
void pacer_shared_init(struct pacer_shared *s, uint64_t bytes, uint64_t per_ms);
/* Pace at bytes per per_ms (bytes 0: no pacing of its own), and by shared (NULL, or off:
 * none); wake(arg) runs when a wait is over. -1 if out of memory. */
int pacer_init(struct pacer *p, struct event_base *base, uint64_t bytes, uint64_t per_ms,
	       struct pacer_shared *shared, void (*wake)(void *arg), void *arg);
/* Up to want bytes may go now (all without pacing); fewer than min: none, and the pacer
 * waits (waiting set) until wake. */
size_t pacer_take(struct pacer *p, size_t want, size_t min);
/* Give back n bytes taken but not sent. */
void pacer_return(struct pacer *p, size_t n);
/* n bytes taken were sent: counted as throttled if a bucket held the owner back. */
void pacer_sent(struct pacer *p, size_t n);
/* Release the timer. */
void pacer_free(struct pacer *p);

#endif
