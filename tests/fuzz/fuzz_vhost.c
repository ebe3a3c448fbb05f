/* libFuzzer target for the vhost-user back-end: hostile messages through the parser
 * (vhost_user.c) and hostile ring memory through the ring walker (vring.c), with no socket.
 *
 * Input: two bytes of length L, then L bytes that become the start of the guest memory (a
 * memfd of GUEST_BYTES, the file every region maps), then messages, each one byte giving
 * how many descriptors come with it (0..8, each a dup of the memfd), then a 12-byte header
 * and as much payload as the header asks (cut at the end of the input). After each message
 * the ring is served if it is live, with a fill function that checks every buffer it is
 * given lies inside a mapped region (the oracle: no address escapes guest memory) and
 * writes into all of it. Every descriptor is closed and every mapping removed at the end. */
#include "vhost_user.h"
#include "vring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUEST_BYTES (64u * 1024u)

/* The libFuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_vhost: %s\n", what);
	abort();
}

/* Fill: every buffer must lie inside one mapped region; write into all of it. */
static size_t fill(void *arg, const struct iovec *iov, size_t n, size_t limit)
{
	const struct vring_mem *m = arg;
	size_t done = 0;

	if (n > VRING_MAX_IOV) {
		fail("more buffers than VRING_MAX_IOV");
	}
	for (size_t i = 0; i < n && done < limit; i++) {
		const uint8_t *b = iov[i].iov_base;
		bool inside = false;
		size_t k;

		for (unsigned r = 0; r < m->n; r++) {
			const uint8_t *lo = m->r[r].host;

			inside |= b >= lo && iov[i].iov_len <= m->r[r].size &&
				  (size_t)(b - lo) <= m->r[r].size - iov[i].iov_len;
		}
		if (!inside || iov[i].iov_len == 0) {
			fail("a buffer outside guest memory (or empty) reached fill");
		}
		k = iov[i].iov_len < limit - done ? iov[i].iov_len : limit - done;
		memset(iov[i].iov_base, 0xA5, k);
		done += k;
	}
	return done;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vu_dev d;
	size_t at = 2, len;

	if (memfd < 0) {
		memfd = memfd_create("fuzz-guest", MFD_CLOEXEC);
		if (memfd < 0 || ftruncate(memfd, GUEST_BYTES) < 0) {
			fail("memfd");
		}
	}
	if (size < 2) {
		return 0;
	}
	len = (size_t)data[0] << 8 | data[1];
	len = len < size - 2 ? len : size - 2;
	len = len < GUEST_BYTES ? len : GUEST_BYTES;
	{
		static const uint8_t zero[GUEST_BYTES];

		if (pwrite(memfd, zero, GUEST_BYTES, 0) != GUEST_BYTES ||
		    pwrite(memfd, data + at, len, 0) != (ssize_t)len) {
			fail("pwrite");
		}
	}
	at += len;
	vu_dev_init(&d);
	while (at + 1 + VU_HDR_SIZE <= size) {
		struct vu_msg m;
		uint8_t reply[VU_MAX_REPLY];
		size_t replylen, nfds = data[at] % (VU_MAX_FDS + 1), take;
		char err[128];
		bool used;

		memset(&m, 0, sizeof(m));
		at++;
		for (size_t i = 0; i < nfds; i++) {
			m.fds[m.nfds++] = dup(memfd);
		}
		if (vu_parse_header(data + at, &m, err, sizeof(err)) < 0) {
			for (size_t i = 0; i < m.nfds; i++) {
				close(m.fds[i]);
			}
			break;
		}
		at += VU_HDR_SIZE;
		take = m.size < size - at ? m.size : size - at;
		memcpy(m.payload, data + at, take);
		at += take;
		if (vu_handle(&d, &m, reply, &replylen, err, sizeof(err)) < 0) {
			break;
		}
		if (replylen > VU_MAX_REPLY) {
			fail("reply longer than VU_MAX_REPLY");
		}
		if (vu_live(&d)) {
			uint16_t old = d.vr.used_idx;
			size_t n;
			int rc = vring_serve(&d.vr, &d.mem, 4096, 8192, fill, &d.mem, &n, &used,
					     err, sizeof(err));

			if (n > 8192) {
				fail("served more than the cap (a chain begun under 4096 is filled "
				     "whole up to 8192, never beyond)");
			} else if (rc < 0) {
				vu_break(&d, err);
			} else if (used) {
				(void)vring_need_call(&d.vr, old);
			}
		}
	}
	vu_dev_reset(&d);
	return 0;
}
