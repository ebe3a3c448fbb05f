/* client_impl: what client.c (every peer's state machine), rotation.c (the rotation that
 * shares the pool) and clients.c (the registry: creating and freeing it, waking on pool bytes, the
 * deadline for half-sent commands) share. clients.c calls into client.c, never the
 * reverse. Only those files include it. */
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
#define CLIENT_QUANTUM 256u /* bytes per turn of the rotation (rotation.c) */

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
	size_t turn;	    /* bytes left of its turn in the rotation (rotation.c) */
	bool write_blocked; /* socket full; wev armed */
	bool closing;
	struct gate *wgate; /* write=on: health gate for bytes peers write */
	uint64_t served;

	/* an incomplete command is buffered, or (unready) the transport's handshake is under
	 * way, since */
	struct deadline_item partial;
	bool unready;	    /* partial runs for the handshake (transport.h ready) */
	struct pacer pacer; /* rate= */

	TAILQ_ENTRY(client) hungry_link;
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
	struct deadlines partial; /* half-sent commands, oldest first */
	/* per-category limits for the lines peers cause */
	struct log_limit lim_io, lim_proto, lim_timeout, lim_primer, lim_other;
};

/* Share the pool among the clients owed bytes, round-robin, until one side runs out. */
void client_rotate(struct clients *cs);
/* Answer what needs no pool bytes, then join the rotation if bytes are owed. */
void client_kick(struct client *c);
/* Write iov (want bytes) to c; bytes written, or -1 if c was closed; arms the write event
 * on a short write. */
ssize_t client_writev(struct client *c, const struct iovec *iov, int cnt, size_t want);
/* Close c; lim is the log category of a close the peer caused, or NULL for an ordinary end. */
void client_close(struct client *c, struct log_limit *lim, const char *why);

#endif
