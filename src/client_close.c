/* client_close: the end of a client (client_impl.h): its events freed, the closing line
 * logged (with the bytes served and those a bucket throttled), its turn left, its
 * transport closed, its memory wiped. */
#include "client_impl.h"

#include "gate.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void client_free_events(struct client *c)
{
	if (c->rev != NULL) {
		event_free(c->rev);
	}
	if (c->wev != NULL) {
		event_free(c->wev);
	}
	if (c->primer_ev != NULL) {
		event_free(c->primer_ev);
	}
	pacer_free(&c->pacer);
}

/* Close c. lim: the log category of a close the peer caused, or NULL for an ordinary end
 * (logged as a debug line, or as information when a bucket throttled some of its bytes). */
void client_close(struct client *c, struct log_limit *lim, const char *why)
{
	struct clients *cs = c->cs;
	client_closed_fn cb = c->on_closed;
	void *arg = c->on_closed_arg;

	if (c->closing) {
		return;
	}
	c->closing = true;
	if (lim != NULL) {
		log_limited(lim, LOG_WARNING,
			    "client %s: %s; connection closed (served %llu bytes, throttled %llu)",
			    c->peer, why, (unsigned long long)c->served,
			    (unsigned long long)c->pacer.throttled);
	} else if (c->pacer.throttled > 0) {
		log_info("client %s: %s (served %llu bytes, throttled %llu)", c->peer, why,
			 (unsigned long long)c->served, (unsigned long long)c->pacer.throttled);
	} else {
		log_debug("client %s: %s (served %llu bytes, throttled 0)", c->peer, why,
			  (unsigned long long)c->served);
	}
	deadline_stop(&cs->partial, &c->partial);
	clients_turn_leave(cs, &c->turn);
	LIST_REMOVE(c, all_link);
	client_free_events(c);
	gate_free(c->wgate);
	c->tr->close(c->tr_ctx, c->fd);
	explicit_bzero(c, sizeof(*c));
	free(c);
	if (cb != NULL) {
		cb(arg);
	}
}
