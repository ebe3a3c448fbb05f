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
#include <sys/types.h>
#include <sys/uio.h>

struct event_base;
struct pool;
struct clients;
struct client;
struct transport;
struct pacer_shared;

/* Per-endpoint behaviour of its clients. */
struct client_opts {
	bool raw;	  /* proto=raw: stream bytes, no protocol */
	unsigned primer;  /* unrequested bytes sent if a new peer stays silent for 100 ms */
	bool allow_write; /* write=on: accept 0x03 (else refused, connection closed) */
	bool has_rate;	  /* rate= was given (else the endpoint kind's default applies) */
	uint64_t rate_bytes, rate_ms;	    /* rate=BYTES/MS: answers paced per client; 0 = none */
	uint64_t eprate_bytes, eprate_ms;   /* endpoint-rate=BYTES/MS: all clients; 0 = none */
	struct pacer_shared *endpoint_rate; /* its bucket, set by the endpoint (NULL: none) */
	bool has_max_per_peer;		    /* max-per-peer= was given (else the kind's default) */
	unsigned max_per_peer; /* listeners: connections per peer address/uid; 0 = any */
};

/* A peer that sent part of a command and not the rest within this time is closed. */
#define CLIENT_PARTIAL_TIMEOUT_MS 10000u

/* Called when a client is gone (for connecting endpoints, to redial). */
typedef void (*client_closed_fn)(void *arg);

/* The registry of clients serving from pool on base; NULL on failure. */
struct clients *clients_new(struct event_base *base, struct pool *pool, unsigned alpha_log2);
/* Close every client and free the registry. */
void clients_free(struct clients *cs);
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

#endif
