/* dial: connecting endpoints (`--connect`): dial a peer (a QEMU chardev with server=on) and
 * redial forever with capped exponential backoff; one endpoint_ops table for every kind. */
#ifndef ENTROPYD_DIAL_H
#define ENTROPYD_DIAL_H

#include "endpoint.h"

/* tcp:HOST:PORT, unix:PATH and udp:HOST:PORT[,local=HOST:PORT] dialed. */
extern const struct endpoint_ops dial_ops;

#endif
