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

int pacer_init(struct pacer *p, struct event_base *base, uint64_t bytes, uint64_t per_ms,
	       void (*wake)(void *arg), void *arg)
{
	*p = (struct pacer){.wake = wake, .arg = arg};
	p->on = bytes > 0 && rate_init(&p->rate, bytes, per_ms, (uint64_t)clock_ms()) == 0;
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
	got = rate_take(&p->rate, now, want);
	if (got >= min) {
		return got;
	}
	rate_return(&p->rate, got);
	wake = want < PACER_WAKE_BYTES ? want : PACER_WAKE_BYTES;
	wake = wake < min ? min : wake;
	ms = rate_wait_ms(&p->rate, now, wake);
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
	if (p->on) {
		rate_return(&p->rate, n);
	}
}

void pacer_free(struct pacer *p)
{
	if (p->ev != NULL) {
		event_free(p->ev);
		p->ev = NULL;
	}
}
