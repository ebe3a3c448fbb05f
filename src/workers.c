/* workers: see workers.h. */
#include "workers.h"

#include "log.h"
#include "mailbox.h"
#include "share.h"
#include "transport.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

/* An accepted connection on its way to a worker, then kept until its client ends. */
struct handed {
	struct worker *w;
	const struct transport *tr;
	void *ctx;
	int fd;
	struct client_opts opts;
	char endpoint[96], peer[160];
	client_closed_fn on_closed;
	void *arg;
	client_made_fn made; /* NULL: a fresh connection */
	void *made_arg;
	struct mail mail; /* to the worker, then back to the main thread */
	LIST_ENTRY(handed) link;
};

struct worker {
	struct workers *ws;
	unsigned idx;
	struct event_base *base;
	struct clients *cs;
	struct mailbox *mb;
	pthread_t tid;
	bool running;
	struct mail stop;
	atomic_size_t nclients;
	LIST_HEAD(, handed) handed; /* this thread's */
};

struct workers {
	struct mailbox *main_mb;
	unsigned n, next;
	struct worker w[];
};

struct workers *workers_new(struct event_base *main, struct share *sh, unsigned alpha_log2,
			    unsigned n)
{
	struct workers *ws = calloc(1, sizeof(*ws) + n * sizeof(ws->w[0]));

	if (ws == NULL) {
		return NULL;
	}
	ws->n = n;
	ws->main_mb = mailbox_new(main);
	if (ws->main_mb == NULL) {
		workers_free(ws);
		return NULL;
	}
	for (unsigned i = 0; i < n; i++) {
		struct worker *w = &ws->w[i];

		w->ws = ws;
		w->idx = i;
		LIST_INIT(&w->handed);
		w->base = event_base_new();
		w->cs = w->base != NULL ? clients_new(w->base, share_cache(sh, i + 1), alpha_log2)
					: NULL;
		w->mb = w->cs != NULL ? mailbox_new(w->base) : NULL;
		if (w->mb == NULL) {
			workers_free(ws);
			return NULL;
		}
		clients_set_share(w->cs, share_slot(sh, i + 1), (int)i + 1);
	}
	return ws;
}

int workers_drbg(struct workers *ws, double h)
{
	for (unsigned i = 0; ws != NULL && i < ws->n; i++) {
		if (clients_drbg(ws->w[i].cs, h) < 0) {
			return -1;
		}
	}
	return 0;
}

int workers_reinit(struct workers *ws)
{
	for (unsigned i = 0; ws != NULL && i < ws->n; i++) {
		if (event_reinit(ws->w[i].base) < 0) {
			return -1;
		}
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "entropyd-w%u", w->idx + 1);
	(void)pthread_setname_np(pthread_self(), name);
	event_base_dispatch(w->base);
	return NULL;
}

int workers_start(struct workers *ws)
{
	sigset_t all, old;
	int rc = 0;

	if (ws == NULL || ws->w[0].running) {
		return 0;
	}
	/* Signals are the main thread's (libevent's signal events live on its loop). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned i = 0; i < ws->n && rc == 0; i++) {
		rc = pthread_create(&ws->w[i].tid, NULL, worker_main, &ws->w[i]);
		ws->w[i].running = rc == 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	return 0;
}

static void stop_loop(void *arg)
{
	struct worker *w = arg;

	event_base_loopbreak(w->base);
}

void workers_stop(struct workers *ws)
{
	for (unsigned i = 0; ws != NULL && i < ws->n; i++) {
		struct worker *w = &ws->w[i];

		if (w->running) {
			w->stop = (struct mail){.fn = stop_loop, .arg = w};
			mailbox_post(w->mb, &w->stop);
			pthread_join(w->tid, NULL);
			w->running = false;
		}
	}
	if (ws != NULL) {
		mailbox_drain(ws->main_mb);
	}
}

void workers_free(struct workers *ws)
{
	if (ws == NULL) {
		return;
	}
	workers_stop(ws);
	for (unsigned i = 0; i < ws->n; i++) {
		struct worker *w = &ws->w[i];

		if (w->mb != NULL) {
			mailbox_drain(w->mb); /* connections handed and not served yet */
		}
		clients_free(w->cs); /* no callbacks: their endpoints are gone */
		while (!LIST_EMPTY(&w->handed)) {
			struct handed *h = LIST_FIRST(&w->handed);

			LIST_REMOVE(h, link);
			free(h);
		}
		mailbox_free(w->mb);
		if (w->base != NULL) {
			event_base_free(w->base);
		}
	}
	mailbox_free(ws->main_mb);
	free(ws); /* the caches are the pool's (pool_free) */
}

size_t workers_registries(struct workers *ws, struct clients **regs, size_t max)
{
	size_t n = 0;

	for (unsigned i = 0; ws != NULL && i < ws->n && n < max; i++) {
		regs[n++] = ws->w[i].cs;
	}
	return n;
}

/* On the main thread: the endpoint's callback for a client that ended. */
static void closed_on_main(void *arg)
{
	struct handed *h = arg;

	h->on_closed(h->arg);
	free(h);
}

/* On the worker: its client ended (or could not be created). */
static void handed_closed(void *arg)
{
	struct handed *h = arg;

	LIST_REMOVE(h, link);
	atomic_fetch_sub(&h->w->nclients, 1);
	if (h->on_closed == NULL) {
		free(h);
		return;
	}
	h->mail = (struct mail){.fn = closed_on_main, .arg = h};
	mailbox_post(h->w->ws->main_mb, &h->mail);
}

/* Tell the caller of workers_client_new what became of the client (made may be NULL). */
static struct client *tell(client_made_fn made, void *made_arg, struct client *c)
{
	if (made != NULL) {
		made(c, made_arg);
	}
	return c;
}

/* On the worker: the connection becomes its client. */
static void serve_handed(void *arg)
{
	struct handed *h = arg;
	struct worker *w = h->w;
	struct client *c;

	LIST_INSERT_HEAD(&w->handed, h, link);
	h->opts.endpoint = h->endpoint;
	/* Not naming the peer: the lines about a peer stay those of client.c. */
	log_debug("thread %u takes a client (%zu now)", w->idx + 1, atomic_load(&w->nclients));
	c = client_new(w->cs, h->tr, h->ctx, h->fd, &h->opts, h->peer, handed_closed, h);
	if (tell(h->made, h->made_arg, c) == NULL) {
		handed_closed(h);
	}
}

int workers_client_new(struct workers *ws, struct clients *cs, const struct transport *tr,
		       void *ctx, int fd, const struct client_opts *opts, const char *peer,
		       client_closed_fn on_closed, void *arg, client_made_fn made, void *made_arg)
{
	struct handed *h;
	struct worker *w;

	if (ws == NULL || opts->endpoint_rate != NULL) {
		struct client *c = client_new(cs, tr, ctx, fd, opts, peer, on_closed, arg);

		return tell(made, made_arg, c) != NULL ? 0 : -1;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		log_warnx("client %s: out of memory; closing", peer);
		tr->close(ctx, fd);
		(void)tell(made, made_arg, NULL);
		return -1;
	}
	/* The fewest clients; ties go round-robin. */
	w = &ws->w[ws->next++ % ws->n];
	for (unsigned i = 0; i < ws->n; i++) {
		if (atomic_load(&ws->w[i].nclients) < atomic_load(&w->nclients)) {
			w = &ws->w[i];
		}
	}
	atomic_fetch_add(&w->nclients, 1);
	*h = (struct handed){.w = w,
			     .tr = tr,
			     .ctx = ctx,
			     .fd = fd,
			     .opts = *opts,
			     .on_closed = on_closed,
			     .arg = arg,
			     .made = made,
			     .made_arg = made_arg};
	snprintf(h->endpoint, sizeof(h->endpoint), "%s", opts->endpoint ? opts->endpoint : "");
	snprintf(h->peer, sizeof(h->peer), "%s", peer);
	h->mail = (struct mail){.fn = serve_handed, .arg = h};
	mailbox_post(w->mb, &h->mail);
	return 0;
}

struct each_call {
	struct clients *cs;
	void (*fn)(void *arg, const struct client_stat *st);
	void *arg;
	const char *spec;
	size_t n;
};

static void each_on_worker(void *arg)
{
	struct each_call *x = arg;

	clients_each(x->cs, x->fn, x->arg);
}

static void tick_on_worker(void *arg)
{
	clients_tick(((struct each_call *)arg)->cs);
}

static void waiting_on_worker(void *arg)
{
	struct each_call *x = arg;

	x->n = clients_waiting(x->cs);
}

static void on_on_worker(void *arg)
{
	struct each_call *x = arg;

	x->n = clients_on(x->cs, x->spec);
}

/* Run call on every thread in turn, waiting for each; returns the sum of their n. */
static size_t ask_each(struct workers *ws, void (*call)(void *arg), struct each_call *x)
{
	size_t sum = 0;

	for (unsigned i = 0; ws != NULL && i < ws->n; i++) {
		x->cs = ws->w[i].cs;
		x->n = 0;
		if (ws->w[i].running) {
			mailbox_call(ws->w[i].mb, call, x);
		} else {
			call(x); /* not started (or joined): this thread may look */
		}
		sum += x->n;
	}
	return sum;
}

void workers_each(struct workers *ws, void (*fn)(void *arg, const struct client_stat *st),
		  void *arg)
{
	struct each_call x = {.fn = fn, .arg = arg};

	ask_each(ws, each_on_worker, &x);
}

void workers_tick(struct workers *ws)
{
	struct each_call x = {0};

	ask_each(ws, tick_on_worker, &x);
}

size_t workers_waiting(struct workers *ws)
{
	struct each_call x = {0};

	return ask_each(ws, waiting_on_worker, &x);
}

size_t workers_on(struct workers *ws, const char *spec)
{
	struct each_call x = {.spec = spec};

	return ask_each(ws, on_on_worker, &x);
}
