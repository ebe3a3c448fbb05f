/* vring: a guest's memory as the vhost-user front-end shares it, and the split virtqueue
 * that a virtio-rng driver fills with device-writable buffers.
 *
 * The guest is untrusted. Every address it gives (the rings, each descriptor, each indirect
 * table) is translated through the region table and must lie wholly inside one region;
 * each descriptor is copied out of guest memory once and only the copy is checked and used,
 * so a guest that rewrites its ring while we walk it cannot move a buffer after the check.
 * A chain longer than its table, an indirect table inside an indirect table, a read-only
 * buffer, an index out of range: the walk fails with a reason and the caller stops the
 * ring. No I/O here: the caller maps nothing but through vring_mem_add. */
#ifndef ENTROPYD_VRING_H
#define ENTROPYD_VRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define VRING_MAX_REGIONS 8
#define VRING_MAX_SIZE 32768u /* the largest split queue */
#define VRING_MAX_IOV 64      /* buffers of one chain that are filled (the rest: walked) */

/* One region of guest memory mapped from the front-end's descriptor. */
struct vring_region {
	uint64_t gpa, size, uaddr; /* guest-physical start, length, front-end's address */
	uint8_t *host;		   /* where gpa is mapped here */
	void *map;		   /* the whole mapping (mmap_offset + size bytes) */
	size_t maplen;
	int fd; /* a copy of the front-end's descriptor, kept for a reload (vu_handover.c) */
};

/* The memory table. */
struct vring_mem {
	struct vring_region r[VRING_MAX_REGIONS];
	unsigned n;
};

/* A split virtqueue's state as the back-end keeps it. */
struct vring {
	uint16_t num;			     /* queue size; 0: not set */
	uint64_t desc_ua, avail_ua, used_ua; /* in the front-end's address space */
	bool have_addr;
	uint16_t last_avail; /* next avail entry to take */
	uint16_t used_idx;   /* next used entry to write */
	bool event_idx;	     /* VIRTIO_RING_F_EVENT_IDX negotiated */
	/* resolved by vring_attach */
	uint8_t *desc, *avail, *used;
};

/* Map len bytes of fd (the region at mmap_offset in it) as region gpa..gpa+size of m,
 * keeping a copy of fd (fd itself stays the caller's); -1 with a reason in err (overlap,
 * overflow, a file too short, mmap failed). */
int vring_mem_add(struct vring_mem *m, int fd, uint64_t gpa, uint64_t size, uint64_t uaddr,
		  uint64_t mmap_offset, char *err, size_t errlen);
/* Unmap every region (and close the copies of their descriptors). */
void vring_mem_clear(struct vring_mem *m);
/* Host address of guest-physical gpa..gpa+len, all in one region; NULL if not. */
uint8_t *vring_gpa(const struct vring_mem *m, uint64_t gpa, uint64_t len);
/* Host address of the front-end's address ua..ua+len, all in one region; NULL if not. */
uint8_t *vring_uaddr(const struct vring_mem *m, uint64_t ua, uint64_t len);

/* Set queue size num (a power of two, 1..VRING_MAX_SIZE); -1 if not one. */
int vring_set_num(struct vring *vr, uint32_t num);
/* Resolve the ring addresses in m and read the used index the guest memory holds (where a
 * restarted back-end resumes); -1 with a reason in err if a ring is outside m. */
int vring_attach(struct vring *vr, const struct vring_mem *m, char *err, size_t errlen);

/* Copy up to limit bytes into the buffers iov[0..n); returns the count written. */
typedef size_t (*vring_fill_fn)(void *arg, const struct iovec *iov, size_t n, size_t limit);

/* Take available chains in order and fill each (through fill) while fewer than max bytes
 * are written and a chain is left, marking each used with the length written; the chain
 * begun last is filled whole if cap (>= max) allows, so a turn ending inside a chain does
 * not cut it short. *written: the bytes written into chains now used, *used_any: a chain
 * was used. Returns 0, or -1 with a reason in err: the guest broke the ring (what was used
 * before stays used and counted). */
int vring_serve(struct vring *vr, const struct vring_mem *m, size_t max, size_t cap,
		vring_fill_fn fill, void *arg, size_t *written, bool *used_any, char *err,
		size_t errlen);
/* True if the guest has chains waiting (without taking one). */
bool vring_has_avail(const struct vring *vr);
/* After chains were used since old_used: should the guest be signalled (its
 * VRING_AVAIL_F_NO_INTERRUPT flag, or with EVENT_IDX its used_event)? */
bool vring_need_call(const struct vring *vr, uint16_t old_used);

#endif
