/* mailbox: calls posted to the thread that runs an event loop, from any thread: a queue
 * under a mutex and an eventfd that wakes the loop. A post does not wait (the caller owns
 * the node until the call ran); mailbox_call waits until the loop ran it. workers.c hands
 * accepted connections to its event-loop threads this way, asks them for their clients'
 * status, stops them, and sends the close of a client back to the main thread. */
#ifndef ENTROPYD_MAILBOX_H
#define ENTROPYD_MAILBOX_H

#include <stdbool.h>

struct event_base;
struct mailbox;

/* One call: fn(arg) on the loop's thread. */
struct mail {
	void (*fn)(void *arg);
	void *arg;
	bool sync, done; /* mailbox_call: the caller waits for done */
	struct mail *next;
};

/* A mailbox whose calls run on base's thread; NULL on failure. */
struct mailbox *mailbox_new(struct event_base *base);
/* Free mb (calls still queued are not run: mailbox_drain first). */
void mailbox_free(struct mailbox *mb);
/* Queue m (fn and arg set; m stays the caller's until fn runs) and wake the loop. */
void mailbox_post(struct mailbox *mb, struct mail *m);
/* Run fn(arg) on the loop's thread and wait until it returned. The loop must be running. */
void mailbox_call(struct mailbox *mb, void (*fn)(void *arg), void *arg);
/* Run every queued call on this thread now (the loop's thread, or once it is gone). */
void mailbox_drain(struct mailbox *mb);

#endif
