/* clients: the registry of clients (and of the other consumers that hold a turn, vhost-user
 * devices): created and freed with the daemon, woken when the pool has bytes for those owed
 * some (the rotation itself: rotation.c), their status, and closing those whose half-sent
 * command (or whose transport's handshake) outlived its deadline. The state machine itself
 * is client.c; a client's end, client_close.c. */
#include "client_impl.h"

#include "drbg.h"
#include "gate.h"
#include "pool.h"

#include <ctype.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A half-sent command, or a transport's handshake, outlived its deadline. */
static void partial_expired(struct deadline_item *it, void *arg)
{
	struct client *c = (struct client *)((char *)it - offsetof(struct client, partial));
	char why[96], name[16];
	size_t i;

	if (c->unready) {
		for (i = 0; c->tr->name[i] != '\0' && i + 1 < sizeof(name); i++) {
			name[i] = (char)toupper((unsigned char)c->tr->name[i]);
		}
		name[i] = '\0';
		snprintf(why, sizeof(why), "%s handshake not finished in %u s", name,
			 CLIENT_PARTIAL_TIMEOUT_MS / 1000);
	} else {
		snprintf(why, sizeof(why), "sent %zu byte(s) of a command and not the rest in %u s",
			 c->inlen, CLIENT_PARTIAL_TIMEOUT_MS / 1000);
	}
	client_close(c, &c->cs->lim_timeout, why);
}

void clients_member_add(struct clients *cs, struct turn *t)
{
	LIST_INSERT_HEAD(&cs->members, t, member);
}

void clients_member_remove(struct clients *cs, struct turn *t)
{
	clients_turn_leave(cs, t);
	LIST_REMOVE(t, member);
}

struct pool *clients_pool(struct clients *cs)
{
	return cs->pool;
}

static void pool_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct clients *cs = arg;

	pool_ack_wakeup(cs->pool);
	evtimer_del(cs->batch_ev);
	client_rotate(cs);
}

/* The pool ran dry and its refill was waited for CLIENT_BATCH_US (rotation.c): serve what
 * it holds now, or from its first put. */
static void batch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct clients *cs = arg;

	if (pool_level(cs->pool) == 0) {
		pool_want(cs->pool);
		return;
	}
	cs->batch_due = true;
	client_rotate(cs);
	cs->batch_due = false;
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
	TAILQ_INIT(&cs->hungry[0]);
	TAILQ_INIT(&cs->hungry[1]);
	LIST_INIT(&cs->all);
	LIST_INIT(&cs->members);
	if (deadlines_init(&cs->partial, base, CLIENT_PARTIAL_TIMEOUT_MS, partial_expired, cs) <
	    0) {
		free(cs);
		return NULL;
	}
	cs->pool_ev =
	    event_new(base, pool_wakeup_fd(pool), EV_READ | EV_PERSIST, pool_ready_cb, cs);
	cs->batch_ev = evtimer_new(base, batch_cb, cs);
	if (cs->pool_ev == NULL || cs->batch_ev == NULL || event_add(cs->pool_ev, NULL) < 0) {
		if (cs->pool_ev != NULL) {
			event_free(cs->pool_ev);
		}
		if (cs->batch_ev != NULL) {
			event_free(cs->batch_ev);
		}
		deadlines_free(&cs->partial);
		free(cs);
		return NULL;
	}
	return cs;
}

int clients_drbg(struct clients *cs, double h)
{
	if (cs->drbg == NULL) {
		cs->drbg = drbg_new(cs->pool, h);
	}
	if (cs->drbg == NULL) {
		return -1;
	}
	if (cs->thread > 0) {
		return 0; /* an event-loop thread's: the main thread's said it */
	}
	log_info("drbg: AES-256 CTR-DRBG, seeded from the pool only: %zu bytes (384 bits at "
		 "h=%g) per seed",
		 drbg_seed_size(cs->drbg), h);
	return 0;
}

void clients_set_share(struct clients *cs, struct share_slot *slot, int thread)
{
	cs->slot = slot;
	cs->thread = thread;
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
	while (!LIST_EMPTY(&cs->members)) {
		struct turn *t = LIST_FIRST(&cs->members);

		t->shutdown(t); /* removes itself */
	}
	event_free(cs->pool_ev);
	event_free(cs->batch_ev);
	drbg_free(cs->drbg);
	deadlines_free(&cs->partial);
	free(cs);
}

bool client_idle(const struct client *c)
{
	return c->q.count == 0 && c->outlen == c->outoff && !c->opts.raw;
}

void client_drop(struct client *c, const char *why)
{
	client_close(c, strncmp(why, "shutting down", 13) == 0 ? NULL : &c->cs->lim_other, why);
}

void client_owe(struct client *c, uint64_t n)
{
	if (!reqq_push(&c->q, REQQ_BLOCK, n)) {
		client_close(c, &c->cs->lim_other, "request queue full");
		return;
	}
	client_kick(c);
	client_rotate(c->cs);
}

void clients_each(struct clients *cs, void (*fn)(void *arg, const struct client_stat *st),
		  void *arg)
{
	struct client *c;
	struct turn *t;

	LIST_FOREACH(c, &cs->all, all_link)
	{
		struct client_stat st = {.peer = c->peer,
					 .endpoint = c->endpoint,
					 .kind = "egd",
					 .state = "running",
					 .served = c->served,
					 .throttled = c->pacer.throttled,
					 .rate = meter_rate(&c->meter),
					 .since = c->since,
					 .thread = cs->thread};

		for (unsigned i = 0; i < c->q.count; i++) {
			const struct reqq_op *op = &c->q.ops[(c->q.head + i) % REQQ_SLOTS];

			st.owed += op->kind == REQQ_BLOCK || op->kind == REQQ_NONBLOCK ? op->n : 0;
		}
		fn(arg, &st);
	}
	LIST_FOREACH(t, &cs->members, member)
	{
		struct client_stat st = {0};

		t->stat(t, &st);
		fn(arg, &st);
	}
}

void clients_tick(struct clients *cs)
{
	struct client *c;

	struct turn *t;

	LIST_FOREACH(c, &cs->all, all_link)
	{
		meter_sample(&c->meter, c->served);
	}
	LIST_FOREACH(t, &cs->members, member)
	{
		t->tick(t);
	}
}

size_t clients_waiting(const struct clients *cs)
{
	return cs->nhungry[0] + cs->nhungry[1];
}

size_t clients_on(const struct clients *cs, const char *spec)
{
	const struct client *c;
	struct turn *t;
	size_t n = 0;

	LIST_FOREACH(c, &cs->all, all_link)
	{
		n += strcmp(c->endpoint, spec) == 0;
	}
	LIST_FOREACH(t, &cs->members, member)
	{
		struct client_stat st = {0};

		t->stat(t, &st);
		n += st.endpoint != NULL && strcmp(st.endpoint, spec) == 0;
	}
	return n;
}
