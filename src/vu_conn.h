/* vu_conn: one vhost-user front-end (one QEMU, one virtio-rng device) on a connected unix
 * socket, accepted by a `vhost-user:` listener or dialed by a `--connect vhost-user:`
 * endpoint. It reads the front-end's messages (with the descriptors they carry) for
 * vhost_user.c, waits on the kick eventfd, and fills the guest's buffers from the pool
 * when its turn comes (vring.c), then signals the call eventfd.
 *
 * Sharing the pool: the device holds a struct turn in the clients' rotation (client.h),
 * the same queue EGD clients wait in. When the guest kicks and chains are waiting, it joins
 * the queue; on its turn it fills chains with up to the quantum every waiting consumer gets
 * (the pool's bytes divided among them), and queues again while chains are left. So a VM
 * and an EGD client take bytes in turn, and no byte goes to two of them.
 *
 * A front-end that sends part of a message and stops is closed CLIENT_PARTIAL_TIMEOUT_MS
 * after its first stall, as an EGD client inside a command is. The device is a row of the
 * status (clients_each: kind vm, state running, stopped or broken). */
#ifndef ENTROPYD_VU_CONN_H
#define ENTROPYD_VU_CONN_H

#include "client.h"

struct event_base;

/* Serve the front-end connected on fd (non-blocking; taken over, closed on failure) for
 * cs's pool; peer names it in log lines; rate= of opts paces it; on_closed (may be NULL)
 * runs with arg once it is gone (not at shutdown). -1 if out of memory. */
int vu_conn_new(struct event_base *base, struct clients *cs, int fd, const struct client_opts *opts,
		const char *peer, client_closed_fn on_closed, void *arg);

#endif
