/* client_impl: the state shared by client.c (one peer's state machine: reading, parsing,
 * answering, writing, closing) and clients.c (all peers: the registry, the rotation and
 * rate pacing that share the pool, the deadline for half-sent commands). Only those two
 * files include it. */
#ifndef ENTROPYD_CLIENT_IMPL_H
#define ENTROPYD_CLIENT_IMPL_H

#include "client.h"
#include "log.h"
#include "rate.h"
#include "reqq.h"
#include "transport.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#define CLIENT_INBUF 1024u
#define CLIENT_QUANTUM_MIN 256u

struct client {
	struct clients *cs;
	const struct transport *tr;
	void *tr_ctx;
	int fd;
	char peer[128];
	struct client_opts opts;
	struct event *rev, *wev, *primer_ev;
	client_closed_fn on_closed;
	void *on_closed_arg;

	uint8_t in[CLIENT_INBUF];
	size_t inlen;
	bool reading; /* rev is armed (or datagrams are accepted) */
	bool eof;     /* peer finished sending; close once everything owed is sent */
	bool spoke;   /* peer sent something (no primer then) */

	struct reqq q;

	uint8_t out[256 + 4];
	size_t outlen, outoff;

	bool hungry;	    /* in cs->hungry, waiting for pool bytes */
	bool write_blocked; /* socket full; wev armed */
	bool closing;
	struct gate *wgate; /* write=on: health gate for bytes peers write */
	uint64_t served;

	bool partial;		/* in cs->partial: an incomplete command is buffered */
	uint64_t partial_since; /* when that command's first byte was buffered (ms) */
	bool rated;		/* rate= applies: answers take tokens from `rate` */
	struct rate rate;
	struct event *rate_ev; /* wakes a paced client when tokens are back */
	bool rate_wait;	       /* out of tokens: rate_ev armed, client out of the rotation */
	bool paced;	       /* had to wait for tokens since it last owed nothing */
	uint64_t delayed;      /* bytes sent later than asked because of rate= */

	TAILQ_ENTRY(client) hungry_link;
	TAILQ_ENTRY(client) partial_link;
	LIST_ENTRY(client) all_link;
};

TAILQ_HEAD(client_queue, client);
LIST_HEAD(client_list, client);

struct clients {
	struct event_base *base;
	struct pool *pool;
	unsigned alpha_log2;
	struct event *pool_ev;
	struct client_queue hungry;
	size_t nhungry;
	struct client_list all;
	bool serving;
	struct client_queue partial; /* oldest incomplete command first */
	struct event *partial_ev;
	/* per-category limits for the lines peers cause */
	struct log_limit lim_io, lim_proto, lim_timeout, lim_primer, lim_other;
};

/* client.c: answer what needs no pool bytes, then join the rotation if bytes are owed. */
void client_kick(struct client *c);
/* client.c: write up to quantum pool bytes for c's head 0x02; -1 if c was closed. */
int client_give(struct client *c, size_t quantum);
/* client.c: close c; lim is the log category of a close the peer caused, or NULL. */
void client_close(struct client *c, struct log_limit *lim, const char *why);

/* clients.c: add c to the registry. */
void clients_add(struct client *c);
/* clients.c: take c out of the registry, the rotation and the deadline list. */
void clients_remove(struct client *c);
/* clients.c: put c in the rotation (it owes pool bytes). */
void clients_join(struct client *c);
/* clients.c: share the pool among the clients in the rotation. */
void clients_serve(struct clients *cs);
/* clients.c: after parsing c's input: partial says an incomplete command is buffered,
 * progressed that it is a new one (its deadline starts now). */
void clients_partial_update(struct client *c, bool partial, bool progressed);
/* clients.c: the rate= bucket of a new client (nothing without rate=); -1 if out of memory. */
int clients_rate_init(struct client *c);
/* clients.c: take up to want bytes of c's rate (all without rate=); fewer than min gives
 * none, and c leaves the rotation until a timer brings it back. */
size_t clients_pace(struct client *c, size_t want, size_t min);

#endif
