/* deadline: see deadline.h. The timer is armed for the oldest item only. */
#include "deadline.h"

#include "clock.h"

#include <event2/event.h>

static void arm(struct deadlines *d, uint64_t now)
{
	struct deadline_item *head = TAILQ_FIRST(&d->list);
	uint64_t due, ms;
	struct timeval tv;

	if (head == NULL) {
		return;
	}
	due = head->since + d->ms;
	ms = due > now ? due - now : 1;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(d->ev, &tv);
}

static void deadlines_cb(evutil_socket_t fd, short what, void *arg)
{
	struct deadlines *d = arg;
	uint64_t now = (uint64_t)clock_ms();
	struct deadline_item *it;

	while ((it = TAILQ_FIRST(&d->list)) != NULL && it->since + d->ms <= now) {
		deadline_stop(d, it);
		d->expired(it, d->arg);
	}
	arm(d, now);
}

int deadlines_init(struct deadlines *d, struct event_base *base, uint64_t ms,
		   void (*expired)(struct deadline_item *it, void *arg), void *arg)
{
	TAILQ_INIT(&d->list);
	d->ms = ms;
	d->expired = expired;
	d->arg = arg;
	d->ev = evtimer_new(base, deadlines_cb, d);
	return d->ev != NULL ? 0 : -1;
}

void deadlines_free(struct deadlines *d)
{
	if (d->ev != NULL) {
		event_free(d->ev);
		d->ev = NULL;
	}
}

void deadline_start(struct deadlines *d, struct deadline_item *it)
{
	bool first = TAILQ_EMPTY(&d->list);

	if (it->armed) {
		return;
	}
	it->armed = true;
	it->since = (uint64_t)clock_ms();
	TAILQ_INSERT_TAIL(&d->list, it, link);
	if (first) {
		arm(d, it->since);
	}
}

void deadline_stop(struct deadlines *d, struct deadline_item *it)
{
	if (it->armed) {
		TAILQ_REMOVE(&d->list, it, link);
		it->armed = false;
	}
}
