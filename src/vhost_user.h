/* vhost_user: the vhost-user protocol as a back-end speaks it (QEMU's
 * docs/interop/vhost-user.rst) for one virtio-rng device: message framing and checks, the
 * front-end's set-up (features, memory table, the one virtqueue's size, addresses, base,
 * eventfds, enable), and the replies. No I/O: the connection (vu_conn.c) reads a header,
 * its payload and the descriptors that came with it, and hands the message here.
 *
 * Every message is checked before it is acted on: version 1, no reply flag, the exact
 * payload size its request has, descriptors only on the messages that take them (as many
 * as they take), queue index 0. A message that breaks a rule, or a request this back-end
 * does not offer, ends the connection. Replies go to the GET_ requests, and to any request
 * with NEED_REPLY set: QEMU sets it on a reconnect without having negotiated REPLY_ACK on
 * the new connection, and waits for the answer. */
#ifndef ENTROPYD_VHOST_USER_H
#define ENTROPYD_VHOST_USER_H

#include "vring.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VU_HDR_SIZE 12
#define VU_MAX_PAYLOAD (8 + 32 * VRING_MAX_REGIONS) /* the memory table is the largest */
#define VU_MAX_FDS VRING_MAX_REGIONS
#define VU_MAX_REPLY (VU_HDR_SIZE + 8)

/* One message from the front-end. */
struct vu_msg {
	uint32_t request, flags, size;
	uint8_t payload[VU_MAX_PAYLOAD];
	int fds[VU_MAX_FDS];
	size_t nfds;
};

/* The device as the front-end set it up. */
struct vu_dev {
	uint64_t features, protocol_features; /* acknowledged by the front-end */
	struct vring_mem mem;
	struct vring vr;
	int kick_fd, call_fd, err_fd; /* -1: none */
	bool enabled;		      /* SET_VRING_ENABLE 1 */
	bool broken;		      /* the guest broke the ring: never served again */
	char why[96];		      /* why it broke */
	unsigned kick_gen;	      /* changes whenever the ring starts, stops or moves */
};

/* A device with nothing set up. */
void vu_dev_init(struct vu_dev *d);
/* Close every descriptor and unmap guest memory (the device is as after vu_dev_init). */
void vu_dev_reset(struct vu_dev *d);
/* Decode and check a header into m (request, flags, size; its descriptors are left as
 * they are); -1 with a reason in err. */
int vu_parse_header(const uint8_t hdr[VU_HDR_SIZE], struct vu_msg *m, char *err, size_t errlen);
/* Act on a whole message (its descriptors are taken over: kept or closed); the reply to
 * send, if any, in reply[0..*replylen). -1 with a reason in err: end the connection. */
int vu_handle(struct vu_dev *d, struct vu_msg *m, uint8_t reply[VU_MAX_REPLY], size_t *replylen,
	      char *err, size_t errlen);
/* True if the ring is set up, started and enabled, and not broken: chains may be served. */
bool vu_live(const struct vu_dev *d);
/* Mark the ring broken for why (it is never served again on this connection). */
void vu_break(struct vu_dev *d, const char *why);

#endif
