/* pacer: see pacer.h. */
#include "pacer.h"

#include "clock.h"

#include <event2/event.h>

/* Tokens asked back before waking: one quantum, so a paced client does not wake per byte. */
#define PACER_WAKE_BYTES 256u

static void pacer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pacer *p = arg;

	p->waiting = false;
	p->wake(p->arg);
}

void pacer_shared_init(struct pacer_shared *s, uint64_t bytes, uint64_t per_ms)
{
	*s = (struct pacer_shared){0};
	s->on = bytes > 0 && rate_init(&s->rate, bytes, per_ms, (uint64_t)clock_ms()) == 0;
}

int pacer_init(struct pacer *p, struct event_base *base, uint64_t bytes, uint64_t per_ms,
	       struct pacer_shared *shared, void (*wake)(void *arg), void *arg)
{
	*p = (struct pacer){.wake = wake, .arg = arg};
	p->own = bytes > 0 && rate_init(&p->rate, bytes, per_ms, (uint64_t)clock_ms()) == 0;
	p->shared = shared != NULL && shared->on ? shared : NULL;
	p->on = p->own || p->shared != NULL;
	if (p->on) {
		p->ev = evtimer_new(base, pacer_cb, p);
		return p->ev != NULL ? 0 : -1;
	}
	return 0;
}

size_t pacer_take(struct pacer *p, size_t want, size_t min)
{
	uint64_t now, ms;
	size_t got, wake;
	struct timeval tv;

	if (!p->on) {
		return want;
	}
	now = (uint64_t)clock_ms();
	got = p->own ? rate_take(&p->rate, now, want) : want;
	if (p->shared != NULL) {
		/* Shared tokens go in pieces of at least PACER_WAKE_BYTES (or all that is asked):
		 * the clients woken together then take turns, none takes each token as it
		 * trickles back. */
		size_t piece = got < PACER_WAKE_BYTES ? got : PACER_WAKE_BYTES;
		size_t ep = rate_take(&p->shared->rate, now, got);

		if (ep < piece && ep < want) {
			rate_return(&p->shared->rate, ep);
			ep = 0;
		}

		if (p->own) {
			rate_return(&p->rate, got - ep);
		}
		got = ep;
	}
	if (got >= min) {
		return got;
	}
	pacer_return(p, got);
	wake = want < PACER_WAKE_BYTES ? want : PACER_WAKE_BYTES;
	wake = wake < min ? min : wake;
	ms = p->own ? rate_wait_ms(&p->rate, now, wake) : 0;
	if (p->shared != NULL) {
		uint64_t sms = rate_wait_ms(&p->shared->rate, now, wake);

		ms = sms > ms ? sms : ms;
	}
	ms = ms == 0 ? 1 : ms;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
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
}
