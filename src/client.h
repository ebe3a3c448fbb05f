/* client: one state machine for every connected peer, whatever the transport, and the
 * scheduler that shares the pool among them.
 *
 * Each client owns an ordered queue of requests (runs of 0x02 merge into one count of owed
 * bytes) and keeps reading requests while it owes bytes. Bytes are written straight from
 * the pool and consumed only once the kernel took them, so no byte is lost or sent twice.
 * Clients that wait for bytes are served round-robin; a client whose socket is full leaves
 * the rotation until it is writable, so it never delays another.
 *
 * A peer cannot hold the daemon's attention without asking for something: a command left
 * incomplete for CLIENT_PARTIAL_TIMEOUT_MS closes the connection (an idle peer, with
 * nothing buffered, stays forever); with rate= its answers are paced, never dropped; every
 * line a peer can cause is rate-limited in the log. */
#ifndef ENTROPYD_CLIENT_H
#define ENTROPYD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <sys/uio.h>

struct event_base;
struct pool;
struct clients;
struct client;
struct transport;
struct pacer_shared;
struct share_slot;

/* Per-endpoint behaviour of its clients. */
struct client_opts {
	bool raw;	  /* proto=raw: stream bytes, no protocol */
	unsigned primer;  /* unrequested bytes sent if a new peer stays silent for 100 ms */
	unsigned surplus; /* bytes kept ahead of a QEMU-like peer's requests (surplus.c) */
	bool allow_write; /* write=on: accept 0x03 (else refused, connection closed) */
	bool has_rate;	  /* rate= was given (else the endpoint kind's default applies) */
	uint64_t rate_bytes, rate_ms;	    /* rate=BYTES/MS: answers paced per client; 0 = none */
	uint64_t eprate_bytes, eprate_ms;   /* endpoint-rate=BYTES/MS: all clients; 0 = none */
	struct pacer_shared *endpoint_rate; /* its bucket, set by the endpoint (NULL: none) */
	bool has_max_per_peer;		    /* max-per-peer= was given (else the kind's default) */
	unsigned max_per_peer; /* listeners: connections per peer address/uid; 0 = any */
	bool drbg;	       /* mode=drbg: serve the DRBG's output (clients_drbg) */
	bool pr;	       /* prediction-resistance=on: reseed before every request */
	uint64_t reseed_bytes; /* reseed=: output per seed at most (0: the default) */
	uint64_t reseed_ms;    /* reseed-ms=: a seed's lifetime at most (0: the default) */
	const char *endpoint;  /* the endpoint's spec, copied by each client (status) */
};

/* One client (or another consumer: a VM's vhost-user device) at one moment (for status and
 * metrics). */
struct client_stat {
	const char *peer, *endpoint;
	const char *kind; /* "egd" (a client), "vm" (a vhost-user device) */
	const char
	    *state;	 /* "running"; a VM: "running", "stopped" (ring not started) or "broken" */
	uint64_t served; /* bytes sent */
	uint64_t owed;	 /* bytes asked for and not sent yet */
	uint64_t throttled; /* bytes held back by rate= or endpoint-rate= */
	double rate;	    /* bytes/s over the last 10 s */
	long long since;    /* connected at (seconds since the epoch) */
	int thread;	    /* serving event loop: 0 the main thread's, i > 0 thread i */
};

/* Defaults of reseed= and reseed-ms=. */
#define CLIENT_RESEED_BYTES (1u << 20)
#define CLIENT_RESEED_MS 1000u

/* A peer that sent part of a command and not the rest within this time is closed. */
#define CLIENT_PARTIAL_TIMEOUT_MS 10000u

/* A place in the rotation that shares the pool when bytes are scarce: every client holds
 * one, and so does any other consumer of pool bytes (a vhost-user device), so that all of
 * them take turns in one queue. */
struct turn {
	/* Take up to quantum bytes (the pool has some); join again (clients_turn_join) if
	 * still owed bytes. Returns true only if the pool ran dry before the turn was over:
	 * t then lives, is not queued, and has set left to what remains of its turn. */
	bool (*serve)(struct turn *t, size_t quantum);
	/* Bytes it could take at once (a client's head request; SIZE_MAX for a raw stream), or
	 * NULL: unknown, so it is served whatever the pool holds. The rotation waits for a
	 * batch (rotation.c) no longer than until the pool holds this much. */
	size_t (*owed)(struct turn *t);
	/* Shutting down: release the consumer (no redial); NULL for clients, which the
	 * registry closes itself. */
	void (*shutdown)(struct turn *t);
	/* Consumers other than clients: fill its snapshot (clients_each), sample its served
	 * counter for its rate (clients_tick, once a second). NULL for clients. */
	void (*stat)(struct turn *t, struct client_stat *st);
	void (*tick)(struct turn *t);
	bool queued;
	int q;	     /* its queue: 0 owed pool bytes, 1 owed DRBG output (mode=drbg) */
	size_t left; /* bytes left of a turn the pool cut short (clients.c) */
	TAILQ_ENTRY(turn) link;
	LIST_ENTRY(turn) member; /* consumers other than clients (clients_member_add) */
};

/* Called when a client is gone (for connecting endpoints, to redial). */
typedef void (*client_closed_fn)(void *arg);

/* The registry of clients serving from pool on base; NULL on failure. */
struct clients *clients_new(struct event_base *base, struct pool *pool, unsigned alpha_log2);
/* Create the DRBG that mode=drbg clients are served from, seeded from the pool assuming h
 * bits of min-entropy per pool byte; -1 on failure (logged). */
int clients_drbg(struct clients *cs, double h);
/* With event-loop threads: cs is thread's (0: the main thread's), and asks for its cache's
 * bytes through slot (share.h). */
void clients_set_share(struct clients *cs, struct share_slot *slot, int thread);
/* Close every client and free the registry. */
void clients_free(struct clients *cs);
/* The pool cs serves from. */
struct pool *clients_pool(struct clients *cs);
/* Queue t for its turn (nothing if queued) and serve the rotation now if not inside it. */
void clients_turn_join(struct clients *cs, struct turn *t);
/* Take t out of the rotation (nothing if not queued). */
void clients_turn_leave(struct clients *cs, struct turn *t);
/* Register a consumer other than a client, to be shut down with cs (t->shutdown). */
void clients_member_add(struct clients *cs, struct turn *t);
/* Unregister it (and take it out of the rotation). */
void clients_member_remove(struct clients *cs, struct turn *t);
/* Serve a connected peer whose bytes travel over transport tr (state ctx, descriptor fd,
 * non-blocking); peer names it in log lines; on_closed (may be NULL) is called with arg
 * once it is gone. Returns NULL (tr closed fd and ctx) on failure. */
struct client *client_new(struct clients *cs, const struct transport *tr, void *ctx, int fd,
			  const struct client_opts *opts, const char *peer,
			  client_closed_fn on_closed, void *arg);
/* Feed one datagram the endpoint received for c (transports without read): it is parsed on
 * its own. Returns 0, -1 if c was closed (unknown command), 1 if the datagram ended inside
 * a command and was dropped whole. */
int client_input(struct client *c, const uint8_t *buf, size_t n);
/* True if c neither owes nor is owed anything (an idle datagram peer may be dropped). */
bool client_idle(const struct client *c);
/* Close c (the endpoint drops a peer); why is logged. */
void client_drop(struct client *c, const char *why);
/* Owe c n more bytes, as if it had asked for them with 0x02 (the control socket's get). */
void client_owe(struct client *c, uint64_t n);
/* Call fn with each client's snapshot, then each other consumer's (VMs). */
void clients_each(struct clients *cs, void (*fn)(void *arg, const struct client_stat *st),
		  void *arg);
/* Sample each client's served counter (once a second) for its rate. */
void clients_tick(struct clients *cs);
/* How many clients are owed bytes and wait for the pool. */
size_t clients_waiting(const struct clients *cs);
/* How many clients (and VMs) came through the endpoint named spec. */
size_t clients_on(const struct clients *cs, const char *spec);

#endif
