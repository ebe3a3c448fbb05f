/* listen: the listening endpoint kinds (tcp, unix, udp, fifo), each an endpoint_ops table
 * for the registry in endpoint.c. */
#ifndef ENTROPYD_LISTEN_H
#define ENTROPYD_LISTEN_H

#include "endpoint.h"

/* tcp:HOST:PORT, every address the host resolves to. */
extern const struct endpoint_ops listen_tcp_ops;
/* unix:PATH, re-bound when its socket file is removed. */
extern const struct endpoint_ops listen_unix_ops;
/* udp:HOST:PORT, answering the allowed peers (udp.c). */
extern const struct endpoint_ops listen_udp_ops;
/* fifo:PATH, a named pipe kept full for QEMU's rng-random. */
extern const struct endpoint_ops listen_fifo_ops;

struct addrinfo;

/* Bind (or adopt an inherited) socket for one address ai of an inet endpoint (listening if
 * a stream); the descriptor, or -1 with a message in err. */
int listen_bind_inet(struct endpoint *ep, const struct addrinfo *ai, char *err, size_t errlen);

#endif
