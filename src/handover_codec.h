/* handover_codec: the record of one connected client carried across a SIGHUP re-exec, and
 * its byte format (pure: no I/O). The new image reads what the old one wrote, but treats it
 * as untrusted input: every length is bounded, every field checked, and a bad record is
 * reported without stopping the others. The format is versioned: an image that does not
 * know the version reads nothing (its clients are closed, as before handover existed).
 *
 * Format (little-endian): "EDHO", u32 version, u32 count, then count records, each a u32
 * body length and the body: i32 fd, u8 flags, u64 served, i64 since, u64 ahead, u64 blocks,
 * then spec, peer, in and out, each a u16 length and the bytes, then u8 nops and nops
 * times (u8 kind, u64 n).
 *
 * Version 2 adds, after the client records, a u32 count of vhost-user devices and that many
 * device records (struct handover_vu_rec), each a u32 body length and the body: i32 fd,
 * u8 flags, u64 served, features, protocol features, u32 queue size, u64 desc, avail and
 * used addresses (the front-end's), u16 last_avail, i32 kick, call and err fds, u8 regions
 * and per region i32 fd, u64 gpa, size, uaddr, mmap offset, then spec and peer (u16 length
 * and bytes), the message partly read (u16 length and bytes) and u8 count and i32 fds of
 * the descriptors that came with it. */
#ifndef ENTROPYD_HANDOVER_CODEC_H
#define ENTROPYD_HANDOVER_CODEC_H

#include "reqq.h"
#include "vhost_user.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HANDOVER_VERSION 2u
/* The most clients one reload carries; the others are closed. */
#define HANDOVER_MAX 1024u
#define HANDOVER_SPEC_MAX 96u
#define HANDOVER_PEER_MAX 128u
#define HANDOVER_IN_MAX 1024u
#define HANDOVER_OUT_MAX 260u
#define HANDOVER_HEADER 12u
/* No record is longer (the largest valid one is about 2.2 KiB). */
#define HANDOVER_REC_MAX 4096u
/* The most bytes one queued request may owe (merged 0x02 runs, or the control socket's
 * get): a bound on hostile records that no real client reaches. */
#define HANDOVER_OWED_MAX (1ull << 40)

enum {
	HANDOVER_EOF = 1u << 0,	   /* the peer finished sending; close once served */
	HANDOVER_SPOKE = 1u << 1,  /* the peer sent something */
	HANDOVER_PRIMER = 1u << 2, /* the primer has not fired yet */
	HANDOVER_OTHER = 1u << 3,  /* a command other than 0x02 was parsed (reqq.other) */
	HANDOVER_FLAGS = 0xfu,
};

/* One client as handed over. */
struct handover_rec {
	int fd;
	unsigned flags;
	uint64_t served, ahead, blocks;
	int64_t since;
	char spec[HANDOVER_SPEC_MAX], peer[HANDOVER_PEER_MAX]; /* printable, NUL-terminated */
	uint8_t in[HANDOVER_IN_MAX];			       /* input not parsed yet */
	size_t inlen;
	uint8_t out[HANDOVER_OUT_MAX]; /* the rest of a reply partly written */
	size_t outlen;
	struct reqq_op ops[REQQ_SLOTS]; /* queued requests, oldest first */
	unsigned nops;
};

enum {
	HANDOVER_VU_ENABLED = 1u << 0,	 /* SET_VRING_ENABLE 1 */
	HANDOVER_VU_HAVE_ADDR = 1u << 1, /* SET_VRING_ADDR was given */
	HANDOVER_VU_BROKEN = 1u << 2,	 /* the guest broke the ring */
	HANDOVER_VU_FLAGS = 0x7u,
};
/* The most vhost-user devices one reload carries. */
#define HANDOVER_VU_MAX 64u
#define HANDOVER_VU_REC_MAX 2048u
#define HANDOVER_VU_PART_MAX (VU_HDR_SIZE + VU_MAX_PAYLOAD)

/* One guest memory region: its descriptor and where it lies. */
struct handover_vu_region {
	int fd;
	uint64_t gpa, size, uaddr, offset;
};

/* One vhost-user device (its connection, vhost_user.h's struct vu_dev) as handed over. */
struct handover_vu_rec {
	int fd; /* the connection */
	unsigned flags;
	uint64_t served, features, protocol_features;
	uint32_t num;			     /* queue size; 0: not set */
	uint64_t desc_ua, avail_ua, used_ua; /* in the front-end's address space */
	uint32_t last_avail;
	int kick_fd, call_fd, err_fd; /* -1: none */
	struct handover_vu_region regions[VRING_MAX_REGIONS];
	unsigned nregions;
	char spec[HANDOVER_SPEC_MAX], peer[HANDOVER_PEER_MAX]; /* printable, NUL-terminated */
	uint8_t part[HANDOVER_VU_PART_MAX]; /* the message partly read: header, then payload */
	size_t partlen;
	int part_fds[VU_MAX_FDS]; /* the descriptors that came with it */
	unsigned npart_fds;
};

/* Write the header for count records into buf[0..HANDOVER_HEADER). */
void handover_put_header(uint8_t *buf, uint32_t count);
/* Append r's record at buf[*off..cap), advancing *off; -1 if it does not fit or r is not
 * valid (the same checks as handover_get_rec). */
int handover_put_rec(const struct handover_rec *r, uint8_t *buf, size_t cap, size_t *off);
/* Read the header of buf[0..len): the record count, or -1 (bad magic, other version, a
 * count above HANDOVER_MAX) with the reason in err. */
long handover_get_header(const uint8_t *buf, size_t len, char *err, size_t errlen);
/* Read the record at buf[*off..len) into r. 0: valid; -1: a bad record, skipped (*off is
 * past it; r->fd is its descriptor, or -1 when not even that was read); -2: the rest of
 * buf cannot be read (a length past the end or above HANDOVER_REC_MAX). err says why. */
int handover_get_rec(const uint8_t *buf, size_t len, size_t *off, struct handover_rec *r, char *err,
		     size_t errlen);

/* Append the count of device records at buf[*off..cap); -1 if it does not fit. */
int handover_put_vu_count(uint32_t count, uint8_t *buf, size_t cap, size_t *off);
/* Read the count of device records at buf[*off..len) (none if the buffer ends there); -1
 * with the reason in err if it is above HANDOVER_VU_MAX or truncated. */
long handover_get_vu_count(const uint8_t *buf, size_t len, size_t *off, char *err, size_t errlen);
/* Append r's device record, as handover_put_rec. */
int handover_put_vu_rec(const struct handover_vu_rec *r, uint8_t *buf, size_t cap, size_t *off);
/* Read a device record, as handover_get_rec (r->fd and the other descriptors: -1 when not
 * read). Descriptors are only checked to be 3 or above, or -1 where none may be. */
int handover_get_vu_rec(const uint8_t *buf, size_t len, size_t *off, struct handover_vu_rec *r,
			char *err, size_t errlen);

#endif
