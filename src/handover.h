/* handover: connected clients carried across a SIGHUP re-exec. The old image stops
 * serving (it reads nothing more), writes each plain stream client's state (handover_codec.h:
 * unparsed input, queued requests, the rest of a reply partly written, bytes served) into a
 * memfd, and leaves the memfd and the clients' sockets open across execve (not in the
 * LISTEN_FDS range that inherit.c passes listeners in). The new image validates every
 * record and every descriptor before anything else opens a file, and gives each client
 * back to the endpoint of the same spec (endpoint.c); the rest are closed with one line.
 * TLS clients cannot be carried (OpenSSL's state stays behind): they are closed with one
 * line each. Datagram peers and pipes need nothing: their endpoints keep their sockets. */
#ifndef ENTROPYD_HANDOVER_H
#define ENTROPYD_HANDOVER_H

#include "client.h"
#include "handover_codec.h"

#include <stdbool.h>
#include <stddef.h>

struct clients;
struct client;
struct handover;
struct workers;

/* Old image, just before the re-exec: write the clients of cs to a memfd named in the
 * environment, with every descriptor at lowest or above and left open across execve.
 * Returns how many clients are carried, -1 if none can be (logged; clients are dropped). */
int handover_save(struct clients *const *regs, size_t nregs, int lowest);
/* New image, before anything opens a descriptor: the clients handed over (validated;
 * bad records closed with one line each), or NULL if none. */
struct handover *handover_load(void);
/* How many records were read (valid or not). */
size_t handover_count(const struct handover *h);
/* Record i, or NULL if it was bad or is taken. */
const struct handover_rec *handover_get(const struct handover *h, size_t i);
/* True if a valid record names the endpoint spec. */
bool handover_names(const struct handover *h, const char *spec);
/* Take record i's descriptor (the caller owns it now). */
int handover_take(struct handover *h, size_t i);
/* Serve fd, record r's descriptor, as a client of cs with opts (or of the event-loop thread
 * with the fewest clients: workers_client_new), with r's state given back. -1 if it
 * cannot be (fd closed, on_closed not called). */
int handover_adopt(struct workers *ws, struct clients *cs, int fd, const struct client_opts *opts,
		   const struct handover_rec *r, client_closed_fn on_closed, void *arg);
/* How many vhost-user device records were read (valid or not). */
size_t handover_vu_count(const struct handover *h);
/* Device record i, or NULL if it was bad or is taken. */
const struct handover_vu_rec *handover_vu_get(const struct handover *h, size_t i);
/* Take device record i (the caller owns its descriptors now). */
void handover_vu_take(struct handover *h, size_t i);
/* Close the descriptors no endpoint took, one line each, and free. */
void handover_free(struct handover *h);

#endif
