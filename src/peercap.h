/* peercap: how many connections each peer holds on one listener (max-per-peer=), so that
 * one address cannot hold the descriptor table. A peer is an IPv4 address, an IPv6 /64,
 * or the uid of a unix-socket peer. */
#ifndef ENTROPYD_PEERCAP_H
#define ENTROPYD_PEERCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct peercap;
struct peercap_entry;

/* A table for a listener named spec allowing cap connections per peer (0: no limit). */
struct peercap *peercap_new(const char *spec, unsigned cap);
/* Count the connection fd (from sa) for its peer: the entry to release when it closes, or
 * NULL when it is not counted (no limit, unknown peer, out of memory). *refused is set, with
 * one rate-limited log line naming peer, when the peer already holds cap connections. */
struct peercap_entry *peercap_take(struct peercap *pc, int fd, const struct sockaddr *sa,
				   const char *peer, bool *refused);
/* The same for a connection handed over across a reload (its peer from getpeername). */
struct peercap_entry *peercap_retake(struct peercap *pc, int fd, const char *peer, bool *refused);
/* A counted connection closed (a client_closed_fn: arg is the entry). */
void peercap_put(void *entry);
/* Free the table and its entries (connections that outlive it are no longer counted). */
void peercap_free(struct peercap *pc);

#endif
