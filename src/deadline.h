/* deadline: many items that must each finish within the same time (a half-sent command
 * within 10 s), watched by one timer. Items sit in one list, oldest first, so a deadline
 * costs a list link and a time stamp per item, not a timer. */
#ifndef ENTROPYD_DEADLINE_H
#define ENTROPYD_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct event;
struct event_base;

/* Embedded in the item watched; zero-initialise. */
struct deadline_item {
	bool armed;
	uint64_t since; /* clock_ms() when it was started */
	TAILQ_ENTRY(deadline_item) link;
};

TAILQ_HEAD(deadline_list, deadline_item);

struct deadlines {
	struct deadline_list list;
	struct event *ev;
	uint64_t ms;
	void (*expired)(struct deadline_item *it, void *arg);
	void *arg;
};

/* Items started on d expire ms after their start: expired(it, arg) is called (the item is
 * off the list by then). -1 if out of memory. */
int deadlines_init(struct deadlines *d, struct event_base *base, uint64_t ms,
		   void (*expired)(struct deadline_item *it, void *arg), void *arg);
/* Release the timer (items still listed are forgotten). */
void deadlines_free(struct deadlines *d);
/* Start it's deadline now, unless it is already running. */
void deadline_start(struct deadlines *d, struct deadline_item *it);
/* Stop it's deadline, if running. */
void deadline_stop(struct deadlines *d, struct deadline_item *it);

#endif
