/* clients: every connected peer together. The registry, the rotation that shares the pool
 * among clients owed bytes (round-robin, in quanta of at least CLIENT_QUANTUM_MIN; a client
 * whose socket is full leaves it until writable, so it never delays another), rate=
 * pacing, and the one deadline list for half-sent commands: clients holding an incomplete
 * command sit in one list, oldest first, watched by one shared timer, so the deadline costs
 * a list link and a time stamp per client, not a timer. See client.h for the model. */
#include "client_impl.h"

#include "clock.h"
#include "pool.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

static void pool_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct clients *cs = arg;

	pool_ack_wakeup(cs->pool);
	clients_serve(cs);
}

static void partial_arm(struct clients *cs, uint64_t now)
{
	struct client *head = TAILQ_FIRST(&cs->partial);
	uint64_t due, ms;
	struct timeval tv;

	if (head == NULL) {
		return;
	}
	due = head->partial_since + CLIENT_PARTIAL_TIMEOUT_MS;
	ms = due > now ? due - now : 1;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(cs->partial_ev, &tv);
}

/* Close the clients whose incomplete command is older than the timeout. */
static void partial_cb(evutil_socket_t fd, short what, void *arg)
{
	struct clients *cs = arg;
	uint64_t now = (uint64_t)clock_ms();
	struct client *c;

	while ((c = TAILQ_FIRST(&cs->partial)) != NULL &&
	       c->partial_since + CLIENT_PARTIAL_TIMEOUT_MS <= now) {
		char why[96];

		snprintf(why, sizeof(why), "sent %zu byte(s) of a command and not the rest in %u s",
			 c->inlen, CLIENT_PARTIAL_TIMEOUT_MS / 1000);
		client_close(c, &cs->lim_timeout, why);
	}
	partial_arm(cs, now);
}

static void partial_leave(struct client *c)
{
	if (c->partial) {
		TAILQ_REMOVE(&c->cs->partial, c, partial_link);
		c->partial = false;
	}
}

void clients_partial_update(struct client *c, bool partial, bool progressed)
{
	struct clients *cs = c->cs;

	if (c->partial && (!partial || progressed)) {
		partial_leave(c);
	}
	if (partial && !c->partial) {
		bool first = TAILQ_EMPTY(&cs->partial);

		c->partial = true;
		c->partial_since = (uint64_t)clock_ms();
		TAILQ_INSERT_TAIL(&cs->partial, c, partial_link);
		if (first) {
			partial_arm(cs, c->partial_since);
		}
	}
}

struct clients *clients_new(struct event_base *base, struct pool *pool, unsigned alpha_log2)
{
	struct clients *cs = calloc(1, sizeof(*cs));

	if (cs == NULL) {
		return NULL;
	}
	cs->base = base;
	cs->pool = pool;
	cs->alpha_log2 = alpha_log2;
	TAILQ_INIT(&cs->hungry);
	TAILQ_INIT(&cs->partial);
	LIST_INIT(&cs->all);
	cs->partial_ev = evtimer_new(base, partial_cb, cs);
	if (cs->partial_ev == NULL) {
		free(cs);
		return NULL;
	}
	cs->pool_ev =
	    event_new(base, pool_wakeup_fd(pool), EV_READ | EV_PERSIST, pool_ready_cb, cs);
	if (cs->pool_ev == NULL || event_add(cs->pool_ev, NULL) < 0) {
		event_free(cs->partial_ev);
		free(cs);
		return NULL;
	}
	return cs;
}

void clients_free(struct clients *cs)
{
	if (cs == NULL) {
		return;
	}
	while (!LIST_EMPTY(&cs->all)) {
		struct client *c = LIST_FIRST(&cs->all);

		c->on_closed = NULL; /* shutting down: no redial */
		client_close(c, NULL, "shutting down");
	}
	event_free(cs->pool_ev);
	event_free(cs->partial_ev);
	free(cs);
}

void clients_add(struct client *c)
{
	LIST_INSERT_HEAD(&c->cs->all, c, all_link);
}

void clients_remove(struct client *c)
{
	struct clients *cs = c->cs;

	partial_leave(c);
	if (c->hungry) {
		TAILQ_REMOVE(&cs->hungry, c, hungry_link);
		cs->nhungry--;
		c->hungry = false;
	}
	LIST_REMOVE(c, all_link);
}

void clients_join(struct client *c)
{
	if (!c->hungry) {
		c->hungry = true;
		TAILQ_INSERT_TAIL(&c->cs->hungry, c, hungry_link);
		c->cs->nhungry++;
	}
}

void clients_serve(struct clients *cs)
{
	if (cs->serving) {
		return; /* re-entered from a close inside the loop */
	}
	cs->serving = true;
	while (!TAILQ_EMPTY(&cs->hungry)) {
		size_t avail = pool_avail(cs->pool);
		struct client *c;
		size_t quantum;

		if (avail == 0) {
			pool_want(cs->pool);
			break;
		}
		quantum = avail / cs->nhungry;
		quantum = quantum < CLIENT_QUANTUM_MIN ? CLIENT_QUANTUM_MIN : quantum;
		c = TAILQ_FIRST(&cs->hungry);
		TAILQ_REMOVE(&cs->hungry, c, hungry_link);
		cs->nhungry--;
		c->hungry = false;
		if (client_give(c, quantum) == 0) {
			client_kick(c);
		}
	}
	cs->serving = false;
}

static void rate_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	struct clients *cs = c->cs;

	c->rate_wait = false;
	client_kick(c);
	clients_serve(cs);
}

int clients_rate_init(struct client *c)
{
	c->rated = c->opts.rate_bytes > 0 && rate_init(&c->rate, c->opts.rate_bytes,
						       c->opts.rate_ms, (uint64_t)clock_ms()) == 0;
	if (c->rated) {
		c->rate_ev = evtimer_new(c->cs->base, rate_cb, c);
		return c->rate_ev != NULL ? 0 : -1;
	}
	return 0;
}

size_t clients_pace(struct client *c, size_t want, size_t min)
{
	uint64_t now, ms;
	size_t got, wake;
	struct timeval tv;

	if (!c->rated) {
		return want;
	}
	now = (uint64_t)clock_ms();
	got = rate_take(&c->rate, now, want);
	if (got >= min) {
		return got;
	}
	rate_return(&c->rate, got);
	wake = want < CLIENT_QUANTUM_MIN ? want : CLIENT_QUANTUM_MIN;
	wake = wake < min ? min : wake;
	ms = rate_wait_ms(&c->rate, now, wake);
	ms = ms == 0 ? 1 : ms;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	c->rate_wait = true;
	c->paced = true;
	evtimer_add(c->rate_ev, &tv);
	return 0;
}
