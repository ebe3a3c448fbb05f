/* vhost_user: see vhost_user.h. Message layout: a 12-byte header {request, flags, size},
 * little-endian, then size bytes of payload. Flags: bits 0-1 the version (1), bit 2 a
 * reply, bit 3 NEED_REPLY. */
#include "vhost_user.h"

#include <endian.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum {
	VU_GET_FEATURES = 1,
	VU_SET_FEATURES = 2,
	VU_SET_OWNER = 3,
	VU_RESET_OWNER = 4,
	VU_SET_MEM_TABLE = 5,
	VU_SET_LOG_BASE = 6,
	VU_SET_LOG_FD = 7,
	VU_SET_VRING_NUM = 8,
	VU_SET_VRING_ADDR = 9,
	VU_SET_VRING_BASE = 10,
	VU_GET_VRING_BASE = 11,
	VU_SET_VRING_KICK = 12,
	VU_SET_VRING_CALL = 13,
	VU_SET_VRING_ERR = 14,
	VU_GET_PROTOCOL_FEATURES = 15,
	VU_SET_PROTOCOL_FEATURES = 16,
	VU_GET_QUEUE_NUM = 17,
	VU_SET_VRING_ENABLE = 18,
};

#define VU_VERSION 1u
#define VU_FLAG_REPLY (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)
#define VU_VRING_NOFD (1ull << 8)

#define F_INDIRECT_DESC (1ull << 28)
#define F_EVENT_IDX (1ull << 29)
#define F_PROTOCOL_FEATURES (1ull << 30)
#define F_VERSION_1 (1ull << 32)
#define PF_REPLY_ACK (1ull << 3)

/* What this back-end offers. */
#define VU_FEATURES (F_INDIRECT_DESC | F_EVENT_IDX | F_PROTOCOL_FEATURES | F_VERSION_1)
#define VU_PROTOCOL_FEATURES PF_REPLY_ACK

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
						      ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

void vu_dev_init(struct vu_dev *d)
{
	memset(d, 0, sizeof(*d));
	d->kick_fd = d->call_fd = d->err_fd = -1;
}

void vu_dev_reset(struct vu_dev *d)
{
	unsigned gen = d->kick_gen;

	close_fd(&d->kick_fd);
	close_fd(&d->call_fd);
	close_fd(&d->err_fd);
	vring_mem_clear(&d->mem);
	vu_dev_init(d);
	d->kick_gen = gen + 1;
}

int vu_parse_header(const uint8_t hdr[VU_HDR_SIZE], struct vu_msg *m, char *err, size_t errlen)
{
	uint32_t w[3];

	memcpy(w, hdr, sizeof(w));
	m->request = le32toh(w[0]);
	m->flags = le32toh(w[1]);
	m->size = le32toh(w[2]);
	if ((m->flags & 3u) != VU_VERSION) {
		return fail(err, errlen, "message of protocol version %u (expected 1)",
			    m->flags & 3u);
	}
	if ((m->flags & ~(3u | VU_FLAG_NEED_REPLY)) != 0) {
		return fail(err, errlen, "message with unknown or reply flags 0x%x", m->flags);
	}
	if (m->size > VU_MAX_PAYLOAD) {
		return fail(err, errlen, "message payload of %u bytes (too large)", m->size);
	}
	return 0;
}

bool vu_live(const struct vu_dev *d)
{
	bool enabled = d->enabled || (d->features & F_PROTOCOL_FEATURES) == 0;

	return !d->broken && d->kick_fd >= 0 && d->mem.n > 0 && d->vr.num > 0 && d->vr.have_addr &&
	       enabled;
}

void vu_break(struct vu_dev *d, const char *why)
{
	if (!d->broken) {
		d->broken = true;
		snprintf(d->why, sizeof(d->why), "%s", why);
		d->kick_gen++;
	}
}

/* After any change to the ring's set-up: resolve its addresses again if it is live. */
static void settle(struct vu_dev *d)
{
	char why[96];

	d->kick_gen++;
	d->vr.event_idx = (d->features & F_EVENT_IDX) != 0;
	if (vu_live(d) && vring_attach(&d->vr, &d->mem, why, sizeof(why)) < 0) {
		vu_break(d, why);
	}
}

/* The payload size and descriptor count a request must come with; -1: not offered. */
static int expect(const struct vu_msg *m, size_t *nfds)
{
	uint64_t u = 0;

	*nfds = 0;
	switch (m->request) {
	case VU_GET_FEATURES:
	case VU_SET_OWNER:
	case VU_RESET_OWNER:
	case VU_GET_PROTOCOL_FEATURES:
	case VU_GET_QUEUE_NUM:
		return 0;
	case VU_SET_FEATURES:
	case VU_SET_PROTOCOL_FEATURES:
	case VU_SET_VRING_NUM:
	case VU_SET_VRING_BASE:
	case VU_GET_VRING_BASE:
	case VU_SET_VRING_ENABLE:
		return 8;
	case VU_SET_VRING_ADDR:
		return 40;
	case VU_SET_VRING_KICK:
	case VU_SET_VRING_CALL:
	case VU_SET_VRING_ERR:
		memcpy(&u, m->payload, 8);
		*nfds = (le64toh(u) & VU_VRING_NOFD) ? 0 : 1;
		return 8;
	case VU_SET_MEM_TABLE: {
		uint32_t n;

		memcpy(&n, m->payload, 4);
		n = le32toh(n);
		*nfds = n;
		return n >= 1 && n <= VRING_MAX_REGIONS ? (int)(8 + 32 * n) : -2;
	}
	default:
		return -1;
	}
}

static uint64_t get64(const struct vu_msg *m, size_t at)
{
	uint64_t v;

	memcpy(&v, m->payload + at, 8);
	return le64toh(v);
}

static uint32_t get32(const struct vu_msg *m, size_t at)
{
	uint32_t v;

	memcpy(&v, m->payload + at, 4);
	return le32toh(v);
}

static size_t put_reply(uint8_t *reply, uint32_t request, const void *payload, uint32_t size)
{
	uint32_t w[3] = {htole32(request), htole32(VU_VERSION | VU_FLAG_REPLY), htole32(size)};

	memcpy(reply, w, sizeof(w));
	memcpy(reply + VU_HDR_SIZE, payload, size);
	return VU_HDR_SIZE + size;
}

static size_t reply64(uint8_t *reply, uint32_t request, uint64_t v)
{
	v = htole64(v);
	return put_reply(reply, request, &v, 8);
}

/* SET_MEM_TABLE: replace the regions (the old ones are unmapped). */
static int set_mem_table(struct vu_dev *d, struct vu_msg *m, char *err, size_t errlen)
{
	vring_mem_clear(&d->mem);
	for (size_t i = 0; i < m->nfds; i++) {
		size_t at = 8 + 32 * i;

		if (vring_mem_add(&d->mem, m->fds[i], get64(m, at), get64(m, at + 8),
				  get64(m, at + 16), get64(m, at + 24), err, errlen) < 0) {
			vring_mem_clear(&d->mem);
			settle(d);
			return -1;
		}
	}
	settle(d);
	return 0;
}

/* SET_VRING_KICK, _CALL, _ERR: keep the descriptor (or none) in *slot. */
static void set_fd(struct vu_dev *d, struct vu_msg *m, int *slot)
{
	close_fd(slot);
	if (m->nfds == 1) {
		*slot = m->fds[0];
		m->fds[0] = -1;
	}
	settle(d);
}

static int handle(struct vu_dev *d, struct vu_msg *m, uint8_t *reply, size_t *replylen, char *err,
		  size_t errlen)
{
	uint32_t index = m->size >= 4 ? get32(m, 0) : 0, num = m->size >= 8 ? get32(m, 4) : 0;

	switch (m->request) {
	case VU_GET_FEATURES:
		*replylen = reply64(reply, m->request, VU_FEATURES);
		return 0;
	case VU_SET_FEATURES:
		/* Taken as given: QEMU passes on what the guest acknowledged even where the
		 * back-end did not offer it (EVENT_IDX), and the ring must follow the guest. */
		d->features = get64(m, 0);
		settle(d);
		return 0;
	case VU_GET_PROTOCOL_FEATURES:
		*replylen = reply64(reply, m->request, VU_PROTOCOL_FEATURES);
		return 0;
	case VU_SET_PROTOCOL_FEATURES:
		d->protocol_features = get64(m, 0) & VU_PROTOCOL_FEATURES;
		return 0;
	case VU_GET_QUEUE_NUM:
		*replylen = reply64(reply, m->request, 1);
		return 0;
	case VU_SET_OWNER:
		return 0;
	case VU_RESET_OWNER:
		vu_dev_reset(d);
		return 0;
	case VU_SET_MEM_TABLE:
		return set_mem_table(d, m, err, errlen);
	case VU_SET_VRING_KICK:
	case VU_SET_VRING_CALL:
	case VU_SET_VRING_ERR: {
		uint64_t u = get64(m, 0);

		if ((u & ~(VU_VRING_NOFD | 0xffull)) != 0 || (u & 0xff) != 0) {
			return fail(err, errlen, "eventfd message for queue %u (one queue)",
				    (unsigned)(u & 0xff));
		}
		if (m->request == VU_SET_VRING_KICK && m->nfds == 0) {
			return fail(err, errlen, "polling mode (no kick eventfd) not offered");
		}
		set_fd(d, m,
		       m->request == VU_SET_VRING_KICK	 ? &d->kick_fd
		       : m->request == VU_SET_VRING_CALL ? &d->call_fd
							 : &d->err_fd);
		return 0;
	}
	default:
		break;
	}
	/* The remaining requests name the queue. */
	if (index != 0) {
		return fail(err, errlen, "message for queue %u (one queue)", index);
	}
	switch (m->request) {
	case VU_SET_VRING_NUM:
		if (vring_set_num(&d->vr, num) < 0) {
			return fail(err, errlen, "queue size %u (a power of two up to 32768)", num);
		}
		settle(d);
		return 0;
	case VU_SET_VRING_ADDR:
		d->vr.desc_ua = get64(m, 8);
		d->vr.used_ua = get64(m, 16);
		d->vr.avail_ua = get64(m, 24);
		d->vr.have_addr = true;
		settle(d);
		return 0;
	case VU_SET_VRING_BASE:
		if (num > 0xffff) {
			return fail(err, errlen, "ring base %u (at most 65535)", num);
		}
		d->vr.last_avail = (uint16_t)num;
		settle(d);
		return 0;
	case VU_GET_VRING_BASE: {
		uint32_t st[2] = {0, htole32(d->vr.last_avail)};

		close_fd(&d->kick_fd); /* the ring stops */
		settle(d);
		*replylen = put_reply(reply, m->request, st, sizeof(st));
		return 0;
	}
	case VU_SET_VRING_ENABLE:
		if (num > 1) {
			return fail(err, errlen, "SET_VRING_ENABLE %u (0 or 1)", num);
		}
		d->enabled = num == 1;
		settle(d);
		return 0;
	default:
		return fail(err, errlen, "request %u not offered by this back-end", m->request);
	}
}

int vu_handle(struct vu_dev *d, struct vu_msg *m, uint8_t reply[VU_MAX_REPLY], size_t *replylen,
	      char *err, size_t errlen)
{
	size_t nfds;
	int size = expect(m, &nfds);
	int rc;

	*replylen = 0;
	if (size == -1) {
		rc = fail(err, errlen, "request %u not offered by this back-end", m->request);
	} else if (size == -2 || (uint32_t)size != m->size) {
		rc = fail(err, errlen, "request %u with a payload of the wrong size", m->request);
	} else if (nfds != m->nfds) {
		snprintf(err, errlen, "request %u with %zu descriptor(s) (expected %zu)",
			 m->request, m->nfds, nfds);
		rc = -1;
	} else {
		rc = handle(d, m, reply, replylen, err, errlen);
	}
	for (size_t i = 0; i < m->nfds; i++) {
		close_fd(&m->fds[i]);
	}
	m->nfds = 0;
	if (rc == 0 && *replylen == 0 && (m->flags & VU_FLAG_NEED_REPLY)) {
		*replylen = reply64(reply, m->request, 0);
	}
	return rc;
}
