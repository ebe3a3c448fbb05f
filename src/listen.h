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

#endif
