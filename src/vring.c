/* vring: see vring.h. Layout of a split virtqueue (virtio 1.x, little-endian):
 * descriptors of 16 bytes {addr, len, flags, next}; the avail ring {flags, idx, ring[num],
 * used_event}; the used ring {flags, idx, {id, len}[num], avail_event}. Ordering: the avail
 * index is read with acquire before the entries it covers; the used entry is written before
 * the used index (release); a full fence separates publishing the used index (or our
 * avail_event) from reading the guest's notification fields, as the virtio spec asks. */
#include "vring.h"

#include <endian.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define DESC_F_NEXT 1u
#define DESC_F_WRITE 2u
#define DESC_F_INDIRECT 4u
#define AVAIL_F_NO_INTERRUPT 1u

static int fail(char *err, size_t errlen, const char *why)
{
	snprintf(err, errlen, "%s", why);
	return -1;
}

int vring_mem_add(struct vring_mem *m, int fd, uint64_t gpa, uint64_t size, uint64_t uaddr,
		  uint64_t mmap_offset, char *err, size_t errlen)
{
	struct vring_region *r;
	struct stat st;
	uint64_t len = mmap_offset + size;
	void *p;
	int copy;

	if (m->n >= VRING_MAX_REGIONS) {
		return fail(err, errlen, "more than 8 memory regions");
	}
	if (size == 0 || len < size || gpa + size < gpa || uaddr + size < uaddr || len > SIZE_MAX) {
		return fail(err, errlen,
			    "memory region of size 0 or past the end of the address space");
	}
	for (unsigned i = 0; i < m->n; i++) {
		if (gpa < m->r[i].gpa + m->r[i].size && m->r[i].gpa < gpa + size) {
			return fail(err, errlen, "memory regions overlap");
		}
	}
	/* A file shorter than the region would fault (SIGBUS) when the guest's buffer is
	 * written: refuse it now. */
	if (fstat(fd, &st) < 0 || (S_ISREG(st.st_mode) && (uint64_t)st.st_size < len)) {
		return fail(err, errlen, "memory region larger than its file");
	}
	p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		return fail(err, errlen, "cannot map a memory region");
	}
	copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (copy < 0) {
		munmap(p, (size_t)len);
		return fail(err, errlen, "cannot keep a memory region's descriptor");
	}
	(void)madvise(p, (size_t)len, MADV_DONTDUMP); /* guest memory stays out of core dumps */
	r = &m->r[m->n++];
	*r = (struct vring_region){.gpa = gpa,
				   .size = size,
				   .uaddr = uaddr,
				   .host = (uint8_t *)p + mmap_offset,
				   .map = p,
				   .maplen = (size_t)len,
				   .fd = copy};
	return 0;
}

void vring_mem_clear(struct vring_mem *m)
{
	for (unsigned i = 0; i < m->n; i++) {
		munmap(m->r[i].map, m->r[i].maplen);
		close(m->r[i].fd);
	}
	memset(m, 0, sizeof(*m));
}

/* Host address of [a, a+len) where each region starts at its field at offset `base`. */
static uint8_t *translate(const struct vring_mem *m, uint64_t a, uint64_t len, bool phys)
{
	for (unsigned i = 0; i < m->n; i++) {
		const struct vring_region *r = &m->r[i];
		uint64_t start = phys ? r->gpa : r->uaddr;

		if (a >= start && a - start <= r->size && len <= r->size - (a - start)) {
			return r->host + (a - start);
		}
	}
	return NULL;
}

uint8_t *vring_gpa(const struct vring_mem *m, uint64_t gpa, uint64_t len)
{
	return translate(m, gpa, len, true);
}

uint8_t *vring_uaddr(const struct vring_mem *m, uint64_t ua, uint64_t len)
{
	return translate(m, ua, len, false);
}

int vring_set_num(struct vring *vr, uint32_t num)
{
	if (num == 0 || num > VRING_MAX_SIZE || (num & (num - 1)) != 0) {
		return -1;
	}
	vr->num = (uint16_t)num; /* 32768 fits in 16 bits */
	return 0;
}

static uint16_t load16(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE));
}

static void store16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELEASE);
}

int vring_attach(struct vring *vr, const struct vring_mem *m, char *err, size_t errlen)
{
	uint64_t num = vr->num;
	uint16_t used;

	vr->desc = vr->avail = vr->used = NULL;
	if (num == 0 || !vr->have_addr) {
		return fail(err, errlen, "ring started before its size and addresses were set");
	}
	vr->desc = vring_uaddr(m, vr->desc_ua, 16 * num);
	vr->avail = vring_uaddr(m, vr->avail_ua, 6 + 2 * num);
	vr->used = vring_uaddr(m, vr->used_ua, 6 + 8 * num);
	if (vr->desc == NULL || vr->avail == NULL || vr->used == NULL) {
		vr->desc = vr->avail = vr->used = NULL;
		return fail(err, errlen, "ring outside guest memory");
	}
	if (((uintptr_t)vr->desc & 15) != 0 || ((uintptr_t)vr->avail & 1) != 0 ||
	    ((uintptr_t)vr->used & 3) != 0) {
		vr->desc = vr->avail = vr->used = NULL;
		return fail(err, errlen, "ring not aligned");
	}
	/* Resume where the guest's used ring says: every chain taken before it was also
	 * used (we never hold one), so chains between it and the base given are re-served. */
	used = load16(vr->used + 2);
	if ((uint16_t)(vr->last_avail - used) > vr->num) {
		vr->desc = vr->avail = vr->used = NULL;
		return fail(err, errlen, "used index in guest memory is past the ring base");
	}
	vr->used_idx = used;
	vr->last_avail = used;
	return 0;
}

bool vring_has_avail(const struct vring *vr)
{
	return vr->avail != NULL && load16(vr->avail + 2) != vr->last_avail;
}

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

/* Copy descriptor i of table (one read of guest memory; only the copy is used). */
static struct desc read_desc(const uint8_t *table, uint32_t i)
{
	struct desc d;

	memcpy(&d, table + 16 * (size_t)i, sizeof(d));
	d.addr = le64toh(d.addr);
	d.len = le32toh(d.len);
	d.flags = le16toh(d.flags);
	d.next = le16toh(d.next);
	return d;
}

/* Walk the chain at head into iov (the first VRING_MAX_IOV non-empty buffers); -1 with a
 * reason if the guest broke a rule. */
static int walk(const struct vring *vr, const struct vring_mem *m, uint16_t head, struct iovec *iov,
		size_t *niov, char *err, size_t errlen)
{
	const uint8_t *table = vr->desc;
	uint32_t tsize = vr->num, count = 0, i = head;
	bool indirect = false;

	*niov = 0;
	if (head >= vr->num) {
		return fail(err, errlen, "avail ring names a descriptor past the queue");
	}
	for (;;) {
		struct desc d = read_desc(table, i);
		uint8_t *p;

		if (++count > tsize) {
			return fail(err, errlen,
				    "descriptor chain loops or is longer than its table");
		}
		if (d.flags & DESC_F_INDIRECT) {
			if (indirect) {
				return fail(err, errlen, "indirect table inside an indirect table");
			}
			if (d.flags & DESC_F_NEXT) {
				return fail(err, errlen, "indirect descriptor with NEXT set");
			}
			if (d.len == 0 || d.len % 16 != 0 || d.len / 16 > VRING_MAX_SIZE) {
				return fail(err, errlen, "indirect table of a bad length");
			}
			table = vring_gpa(m, d.addr, d.len);
			if (table == NULL) {
				return fail(err, errlen, "indirect table outside guest memory");
			}
			tsize = d.len / 16;
			indirect = true;
			i = 0;
			count = 0;
			continue;
		}
		if (!(d.flags & DESC_F_WRITE)) {
			return fail(err, errlen,
				    "read-only buffer (virtio-rng buffers are written)");
		}
		p = vring_gpa(m, d.addr, d.len);
		if (p == NULL) {
			return fail(err, errlen, "buffer outside guest memory");
		}
		if (d.len > 0 && *niov < VRING_MAX_IOV) {
			iov[*niov] = (struct iovec){.iov_base = p, .iov_len = d.len};
			(*niov)++;
		}
		if (!(d.flags & DESC_F_NEXT)) {
			return 0;
		}
		i = d.next;
		if (i >= tsize) {
			return fail(err, errlen, "descriptor chain points past its table");
		}
	}
}

/* Are there chains past last_avail? With EVENT_IDX, first tell the guest where we are
 * (avail_event) and look again after a full fence, so a chain added meanwhile is not left
 * without a kick. -1: the index jumped further than the queue holds. */
static int pending(struct vring *vr)
{
	uint16_t n = (uint16_t)(load16(vr->avail + 2) - vr->last_avail);

	if (n == 0 && vr->event_idx) {
		store16(vr->used + 4 + 8 * (size_t)vr->num, vr->last_avail);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		n = (uint16_t)(load16(vr->avail + 2) - vr->last_avail);
	}
	return n > vr->num ? -1 : n;
}

int vring_serve(struct vring *vr, const struct vring_mem *m, size_t max, size_t cap,
		vring_fill_fn fill, void *arg, size_t *written, bool *used_any, char *err,
		size_t errlen)
{
	size_t done = 0;

	*written = 0;
	*used_any = false;
	if (vr->avail == NULL) {
		return 0;
	}
	/* At most one queue's worth per call: a guest that keeps posting empty chains
	 * cannot hold the loop. */
	for (unsigned taken = 0; done < max && done < cap && taken < vr->num; taken++) {
		struct iovec iov[VRING_MAX_IOV];
		size_t niov, n;
		int p = pending(vr);
		uint16_t head;
		uint8_t *elem;
		uint32_t id, len;

		*written = done; /* counted even if this chain breaks the ring */
		if (p < 0) {
			return fail(err, errlen,
				    "avail index ran ahead by more than the queue size");
		}
		if (p == 0) {
			break;
		}
		head = load16(vr->avail + 4 + 2 * (size_t)(vr->last_avail % vr->num));
		if (walk(vr, m, head, iov, &niov, err, errlen) < 0) {
			return -1;
		}
		n = fill(arg, iov, niov, cap - done);
		elem = vr->used + 4 + 8 * (size_t)(vr->used_idx % vr->num);
		id = htole32(head);
		len = htole32((uint32_t)n);
		memcpy(elem, &id, 4);
		memcpy(elem + 4, &len, 4);
		vr->used_idx++;
		vr->last_avail++;
		store16(vr->used + 2, vr->used_idx); /* release: the entry and the bytes first */
		done += n;
		*used_any = true;
	}
	*written = done;
	return 0;
}

bool vring_need_call(const struct vring *vr, uint16_t old_used)
{
	uint16_t event;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vr->event_idx) {
		return (load16(vr->avail) & AVAIL_F_NO_INTERRUPT) == 0;
	}
	event = load16(vr->avail + 4 + 2 * (size_t)vr->num);
	return (uint16_t)(vr->used_idx - event - 1) < (uint16_t)(vr->used_idx - old_used);
}
