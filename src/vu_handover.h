/* vu_handover: vhost-user devices carried across a SIGHUP re-exec, so that QEMU, which does
 * not reconnect a vhost-user-rng device it connected to, never notices the reload. The old
 * image writes each device (handover_codec.h's struct handover_vu_rec: its connection, the
 * guest memory regions' descriptors and places, the negotiated features, the ring's size,
 * addresses and base, its eventfds, and the message partly read with its descriptors) and
 * leaves every descriptor open across execve; the old image reads nothing more after that,
 * so no message is lost or replayed. The new image checks each descriptor's type, maps the
 * regions again, attaches the ring (it resumes at the used index in guest memory, which is
 * where the old image stopped: no chain is ever held) and serves on. */
#ifndef ENTROPYD_VU_HANDOVER_H
#define ENTROPYD_VU_HANDOVER_H

#include "client.h"
#include "handover_codec.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;

/* The most descriptors one device record names. */
#define VU_HANDOVER_FDS (4 + VRING_MAX_REGIONS + VU_MAX_FDS)

/* How many vhost-user devices cs serves. */
size_t vu_handover_count(struct clients *cs);
/* Old image: append the device count and a record for each device of cs (up to max) to
 * buf[*off..cap), every descriptor copied at lowest or above, close-on-exec still set; the
 * copies go to fds (*nfds of them). Returns how many devices are carried. */
size_t vu_handover_save(struct clients *cs, int lowest, size_t max, uint8_t *buf, size_t cap,
			size_t *off, int *fds, size_t *nfds);
/* Every descriptor r names into out[0..VU_HANDOVER_FDS); returns how many. */
size_t vu_handover_fds(const struct handover_vu_rec *r, int *out);
/* New image, at load: why r's descriptors are not of the types they must be (a connected
 * stream unix socket, regular files (memfds) for memory, eventfds); NULL if they are. */
const char *vu_handover_check_fds(const struct handover_vu_rec *r);
/* Close every descriptor r names, with one line saying why. */
void vu_handover_drop(const struct handover_vu_rec *r, const char *why);
/* Serve r's device again, its endpoint's options opts; every descriptor of r is taken.
 * -1 (all closed, one line logged, on_closed not called) if it cannot be. */
int vu_handover_resume(struct event_base *base, struct clients *cs, const struct client_opts *opts,
		       const struct handover_vu_rec *r, client_closed_fn on_closed, void *arg);

#endif
