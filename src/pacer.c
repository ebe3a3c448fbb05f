/* pacer: see pacer.h. */
#include "pacer.h"

#include "clock.h"

#include <event2/event.h>
#include <stdlib.h>

/* Tokens asked back before waking: one quantum, so a paced client does not wake per byte. */
#define PACER_WAKE_BYTES PACER_TURN_BYTES

static void ms_to_tv(uint64_t ms, struct timeval *tv)
{
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

/* What a turn grants p: one turn, or what p needs at once if more, at most the bucket. */
static size_t turn_bytes(const struct pacer_shared *s, const struct pacer *p)
{
	size_t g = p->need > PACER_TURN_BYTES ? p->need : PACER_TURN_BYTES;

	return (uint64_t)g > s->rate.bytes ? (size_t)s->rate.bytes : g;
}

/* Arm s's timer for the moment its head's turn is back in the bucket. */
static void shared_arm(struct pacer_shared *s, uint64_t now)
{
	struct pacer *head = TAILQ_FIRST(&s->waiting);
	struct timeval tv;

	if (head == NULL) {
		return;
	}
	ms_to_tv(rate_wait_ms(&s->rate, now, turn_bytes(s, head)), &tv);
	evtimer_add(s->ev, &tv);
}

/* Grant turns to the waiting clients, first come first, while the bucket holds one. */
static void shared_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pacer_shared *s = arg;
	uint64_t now = (uint64_t)clock_ms();
	struct pacer *p;

	s->refs++; /* a woken client may close, and with it the last other reference */
	while ((p = TAILQ_FIRST(&s->waiting)) != NULL) {
		size_t g = turn_bytes(s, p);
		size_t t = rate_take(&s->rate, now, g);

		if (t < g) {
			rate_return(&s->rate, t);
			shared_arm(s, now);
			break;
		}
		TAILQ_REMOVE(&s->waiting, p, link);
		p->queued = false;
		p->credit += t;
		p->waiting = false;
		p->wake(p->arg); /* may take its turn, queue again, or close */
	}
	pacer_shared_unref(s);
}

struct pacer_shared *pacer_shared_new(struct event_base *base, uint64_t bytes, uint64_t per_ms)
{
	struct pacer_shared *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		return NULL;
	}
	TAILQ_INIT(&s->waiting);
	s->refs = 1;
	s->ev = evtimer_new(base, shared_cb, s);
	if (s->ev == NULL || rate_init(&s->rate, bytes, per_ms, (uint64_t)clock_ms()) < 0) {
		pacer_shared_unref(s);
		return NULL;
	}
	return s;
}

void pacer_shared_unref(struct pacer_shared *s)
{
	if (s == NULL || --s->refs > 0) {
		return;
	}
	if (s->ev != NULL) {
		event_free(s->ev);
	}
	free(s);
}

static void pacer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pacer *p = arg;

	p->waiting = false;
	p->wake(p->arg);
}

int pacer_init(struct pacer *p, struct event_base *base, uint64_t bytes, uint64_t per_ms,
	       struct pacer_shared *shared, void (*wake)(void *arg), void *arg)
{
	*p = (struct pacer){.wake = wake, .arg = arg};
	p->own = bytes > 0 && rate_init(&p->rate, bytes, per_ms, (uint64_t)clock_ms()) == 0;
	if (p->own) {
		p->ev = evtimer_new(base, pacer_cb, p);
		if (p->ev == NULL) {
			return -1;
		}
	}
	if (shared != NULL) {
		shared->refs++;
		p->shared = shared;
	}
	p->on = p->own || p->shared != NULL;
	return 0;
}

/* Up to got bytes from p's credit and, if no client waits for a turn, from the endpoint's
 * bucket directly (in pieces of at least one turn, or all that is asked: no client takes
 * each token as it trickles back). */
static size_t take_shared(struct pacer *p, uint64_t now, size_t got)
{
	struct pacer_shared *s = p->shared;
	size_t ep = p->credit < got ? p->credit : got;

	p->credit -= ep;
	if (ep < got && !p->queued && TAILQ_EMPTY(&s->waiting)) {
		size_t piece = got < PACER_WAKE_BYTES ? got : PACER_WAKE_BYTES;
		size_t more = rate_take(&s->rate, now, got - ep);

		if (ep + more < piece) {
			rate_return(&s->rate, more);
			more = 0;
		}
		ep += more;
	}
	return ep;
}

size_t pacer_take(struct pacer *p, size_t want, size_t min)
{
	uint64_t now;
	size_t got, wake;
	struct timeval tv;

	if (!p->on) {
		return want;
	}
	now = (uint64_t)clock_ms();
	got = p->own ? rate_take(&p->rate, now, want) : want;
	if (got >= min && p->shared != NULL) {
		size_t ep = take_shared(p, now, got);

		if (p->own) {
			rate_return(&p->rate, got - ep);
		}
		if (ep < min) {
			p->credit += ep; /* kept for its turn */
			p->need = min;
			if (!p->queued) {
				TAILQ_INSERT_TAIL(&p->shared->waiting, p, link);
				p->queued = true;
			}
			if (!evtimer_pending(p->shared->ev, NULL)) {
				shared_arm(p->shared, now);
			}
			p->waiting = true;
			p->paced = true;
			return 0;
		}
		return ep;
	}
	if (got >= min) {
		return got;
	}
	rate_return(&p->rate, got); /* rate= holds it back: wait on its own timer */
	wake = want < PACER_WAKE_BYTES ? want : PACER_WAKE_BYTES;
	wake = wake < min ? min : wake;
	ms_to_tv(rate_wait_ms(&p->rate, now, wake), &tv);
	if (tv.tv_sec == 0 && tv.tv_usec == 0) {
		tv.tv_usec = 1000;
	}
	p->waiting = true;
	p->paced = true;
	evtimer_add(p->ev, &tv);
	return 0;
}

void pacer_return(struct pacer *p, size_t n)
{
	if (p->own) {
		rate_return(&p->rate, n);
	}
	if (p->shared != NULL) {
		rate_return(&p->shared->rate, n);
	}
}

void pacer_sent(struct pacer *p, size_t n)
{
	if (p->paced) {
		p->throttled += n;
		if (p->shared != NULL) {
			p->shared->throttled += n;
		}
	}
}

void pacer_free(struct pacer *p)
{
	if (p->ev != NULL) {
		event_free(p->ev);
		p->ev = NULL;
	}
	if (p->shared != NULL) {
		if (p->queued) {
			TAILQ_REMOVE(&p->shared->waiting, p, link);
			p->queued = false;
		}
		rate_return(&p->shared->rate, p->credit);
		p->credit = 0;
		pacer_shared_unref(p->shared);
		p->shared = NULL;
	}
}
