/* clients: the registry of clients: created and freed with the daemon, woken when the pool
 * has bytes for those owed some, the rotation that shares the pool among them (and among
 * the other consumers that hold a turn, vhost-user devices), and closing those whose half-sent
 * command (or whose transport's handshake) outlived its deadline. The state machine itself is
 * client.c. */
#include "client_impl.h"

#include "pool.h"

#include <ctype.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

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

void client_rotate(struct clients *cs)
{
	if (cs->serving) {
		return; /* re-entered from a close inside the loop */
	}
	cs->serving = true;
	while (!TAILQ_EMPTY(&cs->hungry)) {
		size_t avail = pool_avail(cs->pool);
		struct turn *t;
		size_t quantum;

		if (avail == 0) {
			pool_want(cs->pool);
			break;
		}
		quantum = avail / cs->nhungry;
		quantum = quantum < CLIENT_QUANTUM_MIN ? CLIENT_QUANTUM_MIN : quantum;
		t = TAILQ_FIRST(&cs->hungry);
		clients_turn_leave(cs, t);
		t->serve(t, quantum);
	}
	cs->serving = false;
}

void clients_turn_queue(struct clients *cs, struct turn *t)
{
	if (!t->queued) {
		t->queued = true;
		TAILQ_INSERT_TAIL(&cs->hungry, t, link);
		cs->nhungry++;
	}
}

void clients_turn_join(struct clients *cs, struct turn *t)
{
	clients_turn_queue(cs, t);
	client_rotate(cs);
}

void clients_turn_leave(struct clients *cs, struct turn *t)
{
	if (t->queued) {
		t->queued = false;
		TAILQ_REMOVE(&cs->hungry, t, link);
		cs->nhungry--;
	}
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
	client_rotate(cs);
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
	LIST_INIT(&cs->all);
	LIST_INIT(&cs->members);
	if (deadlines_init(&cs->partial, base, CLIENT_PARTIAL_TIMEOUT_MS, partial_expired, cs) <
	    0) {
		free(cs);
		return NULL;
	}
	cs->pool_ev =
	    event_new(base, pool_wakeup_fd(pool), EV_READ | EV_PERSIST, pool_ready_cb, cs);
	if (cs->pool_ev == NULL || event_add(cs->pool_ev, NULL) < 0) {
		deadlines_free(&cs->partial);
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
	while (!LIST_EMPTY(&cs->members)) {
		struct turn *t = LIST_FIRST(&cs->members);

		t->shutdown(t); /* removes itself */
	}
	event_free(cs->pool_ev);
	deadlines_free(&cs->partial);
	free(cs);
}
