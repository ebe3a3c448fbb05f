/* client_impl: what client.c (every peer's state machine and the rotation that shares the
 * pool) and clients.c (the registry: creating and freeing it, waking on pool bytes, the
 * deadline for half-sent commands) share. clients.c calls into client.c, never the
 * reverse. Only those two files include it. */
#ifndef ENTROPYD_CLIENT_IMPL_H
#define ENTROPYD_CLIENT_IMPL_H

#include "client.h"
#include "deadline.h"
#include "log.h"
#include "pacer.h"
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

	struct turn turn;   /* queued: in cs->hungry, waiting for pool bytes */
	bool write_blocked; /* socket full; wev armed */
	bool closing;
	struct gate *wgate; /* write=on: health gate for bytes peers write */
	uint64_t served;

	/* an incomplete command is buffered, or (unready) the transport's handshake is under
	 * way, since */
	struct deadline_item partial;
	bool unready;	    /* partial runs for the handshake (transport.h ready) */
	struct pacer pacer; /* rate= */

	LIST_ENTRY(client) all_link;
};

TAILQ_HEAD(turn_queue, turn);
LIST_HEAD(client_list, client);

struct clients {
	struct event_base *base;
	struct pool *pool;
	unsigned alpha_log2;
	struct event *pool_ev;
	struct turn_queue hungry;
	size_t nhungry;
	struct client_list all;
	LIST_HEAD(, turn) members; /* consumers other than clients (vhost-user devices) */
	bool serving;
	struct deadlines partial; /* half-sent commands, oldest first */
	/* per-category limits for the lines peers cause */
	struct log_limit lim_io, lim_proto, lim_timeout, lim_primer, lim_other;
};

/* Share the pool among the clients (and other turns) owed bytes, round-robin, until one
 * side runs out. */
void client_rotate(struct clients *cs);
/* Queue t for its turn without serving (nothing if queued). */
void clients_turn_queue(struct clients *cs, struct turn *t);
/* Close c; lim is the log category of a close the peer caused, or NULL for an ordinary end. */
void client_close(struct client *c, struct log_limit *lim, const char *why);

#endif
