/* client_impl: what client.c (every peer's state machine), rotation.c (the rotation that
 * shares the pool), client_close.c (a client's end), clients.c (the registry: creating and
 * freeing it, waking on pool bytes, the deadline for half-sent commands), client_drbg.c
 * (mode=drbg), surplus.c (bytes sent ahead to QEMU-like peers) and handover.c (a client's
 * state carried across a reload) share. clients.c calls into client.c, never the reverse;
 * rotation.c reaches consumers only through their turn's serve. Only these files include
 * it. */
#ifndef ENTROPYD_CLIENT_IMPL_H
#define ENTROPYD_CLIENT_IMPL_H

#include "client.h"
#include "deadline.h"
#include "log.h"
#include "meter.h"
#include "pacer.h"
#include "reqq.h"
#include "transport.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/uio.h>

#define CLIENT_INBUF 1024u
#define CLIENT_QUANTUM_MIN 256u	  /* bytes per turn of the rotation (clients.c) */
#define CLIENT_QUANTUM_MAX 65536u /* a turn's bytes when the pool has plenty for all */
/* Bytes a mode=drbg client is given per turn of the rotation. */
#define CLIENT_BATCH_US 1000u /* the longest a dry pool's refill is waited for (rotation.c) */
#define CLIENT_DRBG_QUANTUM (256u * 1024u)

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
	bool reading;	   /* rev is armed (or datagrams are accepted) */
	bool eof;	   /* peer finished sending; close once everything owed is sent */
	bool spoke;	   /* peer sent something (no primer then) */
	bool ahead_logged; /* surplus.c said once that this peer gets bytes ahead */

	struct reqq q;

	uint8_t out[256 + 4];
	size_t outlen, outoff;

	struct turn turn;   /* queued: in cs->hungry[turn.q], waiting for pool (or DRBG) bytes */
	bool pr_fresh;	    /* prediction-resistance=on: reseeded for the head request */
	bool write_blocked; /* socket full; wev armed */
	bool closing;
	struct gate *wgate; /* write=on: health gate for bytes peers write */
	uint64_t served;
	char endpoint[96];  /* the spec of the endpoint it came through (status) */
	long long since;    /* connected at (seconds since the epoch) */
	struct meter meter; /* served, sampled each second (clients_tick) */

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
	struct event *batch_ev; /* the pool ran short: serve what it holds after CLIENT_BATCH_US */
	bool batch_due;		/* ... and that time has come */
	struct turn_queue hungry[2]; /* owed raw pool bytes [0], DRBG output [1] */
	size_t nhungry[2];
	size_t round_q;	   /* the raw queue's turn size in this round (rotation.c) */
	size_t round_left; /* turns of this round not started yet */
	struct drbg *drbg; /* mode=drbg clients' generator (clients_drbg), or NULL */
	bool drbg_starved; /* this rotation, the DRBG waits for a seed from the pool */
	struct client_list all;
	LIST_HEAD(, turn) members; /* consumers other than clients (vhost-user devices) */
	bool serving;
	struct share_slot *slot;  /* with threads: its cache's demand (share.c), else NULL */
	bool asked;		  /* ... and it asked for bytes since its queue was last empty */
	int thread;		  /* 0: the main thread's; i: event-loop thread i (status) */
	struct deadlines partial; /* half-sent commands, oldest first */
	/* per-category limits for the lines peers cause */
	struct log_limit lim_io, lim_proto, lim_timeout, lim_primer, lim_other;
};

/* Share the pool among the clients (and other turns) owed bytes, round-robin, until one
 * side runs out. */
void client_rotate(struct clients *cs);
/* Free c's events and pacer (client_close, or a client_new that failed). */
void client_free_events(struct client *c);
/* mode=drbg (client_drbg.c): make the DRBG fit to serve c (reseeded from the pool if due by
 * c's reseed=, reseed-ms= or prediction-resistance=on); false when it must wait for pool
 * bytes (cs->drbg_starved is set and a wake-up asked for). */
bool client_drbg_ready(struct client *c);
/* mode=drbg: describe up to want bytes of DRBG output for c as iov[0]; returns iovcnt (0
 * when it must wait). Nothing is consumed. */
int client_drbg_peek(struct client *c, size_t want, struct iovec iov[2]);
/* mode=drbg: consume (and wipe) n bytes client_drbg_peek showed. */
void client_drbg_consume(struct client *c, size_t n);
/* mode=drbg: the reply to op as answer_build builds it, 0x00 and 0x01 answered from the
 * DRBG; 0 when paced. */
size_t client_drbg_answer(struct client *c, const struct reqq_op *op);
/* Answer what needs no pool bytes, then join the rotation if c is owed some. */
void client_kick(struct client *c);
/* Ask for a wake-up once the pool (a cache: its own bytes) holds need bytes; with threads,
 * also ask the main thread for what the waiting turns could take (rotation.c). */
void clients_ask(struct clients *cs, size_t need);
/* Queue t for its turn without serving (nothing if queued). */
void clients_turn_queue(struct clients *cs, struct turn *t);
/* Serve c, whose state handover.c just restored: parse its buffered input, then answer;
 * eof: the peer had finished sending. */
void client_resume(struct client *c, bool eof);
/* Close c; lim is the log category of a close the peer caused, or NULL for an ordinary end. */
void client_close(struct client *c, struct log_limit *lim, const char *why);
/* Queue bytes ahead of requests for a peer that behaves like QEMU, up to its endpoint's
 * surplus= (surplus.c). */
void surplus_top_up(struct client *c);
/* Free c's events and its pacer (client_close.c). */
void client_free_events(struct client *c);

#endif
