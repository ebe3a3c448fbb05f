/* pacer: paces one client's answers (rate=BYTES/MS) with a token bucket (rate.c) and a
 * timer that calls back once enough tokens are back. A paced client is never dropped: it
 * waits out of the rotation and its requests stay queued. */
#ifndef ENTROPYD_PACER_H
#define ENTROPYD_PACER_H

#include "rate.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;
struct event_base;

struct pacer {
	bool on;	  /* rate= applies */
	bool waiting;	  /* out of tokens: the timer will call wake */
	bool paced;	  /* had to wait since the owner last owed nothing (it clears this) */
	uint64_t delayed; /* bytes sent later than asked (counted by the owner) */
	struct rate rate;
	struct event *ev;
	void (*wake)(void *arg);
	void *arg;
};

/* Pace at bytes per per_ms (bytes 0: no pacing); wake(arg) runs when a wait is over. -1 if
 * out of memory. */
int pacer_init(struct pacer *p, struct event_base *base, uint64_t bytes, uint64_t per_ms,
	       void (*wake)(void *arg), void *arg);
/* Up to want bytes may go now (all without pacing); fewer than min: none, and the pacer
 * waits (waiting set) until wake. */
size_t pacer_take(struct pacer *p, size_t want, size_t min);
/* Give back n bytes taken but not sent. */
void pacer_return(struct pacer *p, size_t n);
/* Release the timer. */
void pacer_free(struct pacer *p);

#endif
