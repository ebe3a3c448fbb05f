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
#include "vhost_user.h"

struct event_base;
struct vu_conn;

/* What a reload carries of a connection (vu_handover.c); pointers into it. */
struct vu_conn_state {
	int fd;
	const char *spec, *peer; /* its endpoint's spec, and how log lines name it */
	uint64_t served;
	const struct vu_dev *dev;
	/* The message partly read: got bytes of the header, or (in_payload) the whole header
	 * and got bytes of the payload; part/partlen: the same as one run of bytes. */
	const uint8_t *hdr, *payload;
	size_t got;
	bool in_payload;
	const uint8_t *part;
	size_t partlen;
	const int *part_fds; /* the descriptors that came with it */
	size_t npart_fds;
};

/* Serve the front-end connected on fd (non-blocking; taken over, closed on failure) for
 * cs's pool; peer names it in log lines; rate= of opts paces it; on_closed (may be NULL)
 * runs with arg once it is gone (not at shutdown). -1 if out of memory. */
int vu_conn_new(struct event_base *base, struct clients *cs, int fd, const struct client_opts *opts,
		const char *peer, client_closed_fn on_closed, void *arg);

/* The connection t is the turn of, or NULL if t is not a vhost-user device's. */
struct vu_conn *vu_conn_of(struct turn *t);
/* Fill st with v's state (valid until v changes). */
void vu_conn_state(const struct vu_conn *v, struct vu_conn_state *st);
/* As vu_conn_new, for a connection handed over across a reload: dev is the device as
 * restored (taken over), st->part[0..partlen) and st->part_fds (taken over) the message
 * partly read (st's fd, peer and served are used; its other fields ignored). -1 (all
 * closed with one line, on_closed not called) if the partial message is not one or out of
 * memory. */
int vu_conn_resume(struct event_base *base, struct clients *cs, const struct client_opts *opts,
		   const struct vu_conn_state *st, struct vu_dev *dev, client_closed_fn on_closed,
		   void *arg);

#endif
