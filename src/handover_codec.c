/* handover_codec: see handover_codec.h. Every read goes through struct rd, which never
 * reads past its end: a short field marks the reader bad instead. */
#include "handover_codec.h"

#include <stdio.h>
#include <string.h>

static const uint8_t magic[4] = {'E', 'D', 'H', 'O'};

struct rd {
	const uint8_t *p;
	size_t n, off;
	bool bad;
};

static const uint8_t *rd_take(struct rd *r, size_t n)
{
	const uint8_t *at = r->p + r->off;

	if (r->bad || n > r->n - r->off) {
		r->bad = true;
		return NULL;
	}
	r->off += n;
	return at;
}

static uint64_t rd_uint(struct rd *r, size_t width)
{
	const uint8_t *b = rd_take(r, width);
	uint64_t v = 0;

	for (size_t i = 0; b != NULL && i < width; i++) {
		v |= (uint64_t)b[i] << (8 * i);
	}
	return v;
}

/* A u16 length and that many bytes into dst (at most max); false if longer. */
static bool rd_bytes(struct rd *r, uint8_t *dst, size_t max, size_t *len)
{
	size_t n = (size_t)rd_uint(r, 2);
	const uint8_t *b;

	if (n > max) {
		r->bad = true;
		return false;
	}
	b = rd_take(r, n);
	if (b != NULL && n > 0) {
		memcpy(dst, b, n);
	}
	*len = b != NULL ? n : 0;
	return b != NULL;
}

static void put_uint(uint8_t *b, uint64_t v, size_t width)
{
	for (size_t i = 0; i < width; i++) {
		b[i] = (uint8_t)(v >> (8 * i));
	}
}

static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] < 0x20 || s[i] > 0x7e) {
			return false;
		}
	}
	return n > 0;
}

/* Why r is not a record the new image may act on; NULL if it is. */
static const char *invalid(const struct handover_rec *r)
{
	if (r->fd < 3) {
		return "descriptor below 3";
	}
	if ((r->flags & ~HANDOVER_FLAGS) != 0) {
		return "unknown flags";
	}
	if (r->inlen > HANDOVER_IN_MAX || r->outlen > HANDOVER_OUT_MAX || r->nops > REQQ_SLOTS) {
		return "a length out of range";
	}
	if (!printable(r->spec, strnlen(r->spec, sizeof(r->spec))) ||
	    strnlen(r->spec, sizeof(r->spec)) == sizeof(r->spec) ||
	    !printable(r->peer, strnlen(r->peer, sizeof(r->peer))) ||
	    strnlen(r->peer, sizeof(r->peer)) == sizeof(r->peer)) {
		return "endpoint or peer name empty, too long or not printable";
	}
	if (r->ahead > HANDOVER_OWED_MAX) {
		return "bytes sent ahead out of range";
	}
	for (unsigned i = 0; i < r->nops; i++) {
		const struct reqq_op *op = &r->ops[i];

		if (op->kind == REQQ_BLOCK	? op->n == 0 || op->n > HANDOVER_OWED_MAX
		    : op->kind == REQQ_NONBLOCK ? op->n > 255
		    : op->kind == REQQ_LEVEL || op->kind == REQQ_PID ? op->n != 0
								     : true) {
			return "a queued request of unknown kind or size";
		}
	}
	return NULL;
}

void handover_put_header(uint8_t *buf, uint32_t count)
{
	memcpy(buf, magic, sizeof(magic));
	put_uint(buf + 4, HANDOVER_VERSION, 4);
	put_uint(buf + 8, count, 4);
}

int handover_put_rec(const struct handover_rec *r, uint8_t *buf, size_t cap, size_t *off)
{
	size_t speclen = strlen(r->spec), peerlen = strlen(r->peer);
	size_t body = 4 + 1 + 4 * 8 + 2 + speclen + 2 + peerlen + 2 + r->inlen + 2 + r->outlen + 1 +
		      (size_t)r->nops * 9;
	uint8_t *b;

	if (invalid(r) != NULL || *off > cap || cap - *off < 4 + body) {
		return -1;
	}
	b = buf + *off;
	put_uint(b, body, 4);
	b += 4;
	put_uint(b, (uint32_t)r->fd, 4);
	b[4] = (uint8_t)r->flags;
	put_uint(b + 5, r->served, 8);
	put_uint(b + 13, (uint64_t)r->since, 8);
	put_uint(b + 21, r->ahead, 8);
	put_uint(b + 29, r->blocks, 8);
	b += 37;
	const struct {
		const void *p;
		size_t n;
	} fields[] = {
	    {r->spec, speclen}, {r->peer, peerlen}, {r->in, r->inlen}, {r->out, r->outlen}};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		put_uint(b, fields[i].n, 2);
		if (fields[i].n > 0) {
			memcpy(b + 2, fields[i].p, fields[i].n);
		}
		b += 2 + fields[i].n;
	}
	*b++ = (uint8_t)r->nops;
	for (unsigned i = 0; i < r->nops; i++, b += 9) {
		b[0] = (uint8_t)r->ops[i].kind;
		put_uint(b + 1, r->ops[i].n, 8);
	}
	*off += 4 + body;
	return 0;
}

long handover_get_header(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct rd r = {buf, len, 0, false};
	const uint8_t *m = rd_take(&r, sizeof(magic));
	uint64_t version = rd_uint(&r, 4), count = rd_uint(&r, 4);

	if (r.bad || memcmp(m, magic, sizeof(magic)) != 0) {
		snprintf(err, errlen, "not a handover (%zu bytes)", len);
		return -1;
	}
	if (version != HANDOVER_VERSION) {
		snprintf(err, errlen, "handover version %llu, this image reads %u",
			 (unsigned long long)version, HANDOVER_VERSION);
		return -1;
	}
	if (count > HANDOVER_MAX) {
		snprintf(err, errlen, "%llu clients handed over, more than %u",
			 (unsigned long long)count, HANDOVER_MAX);
		return -1;
	}
	return (long)count;
}

int handover_get_rec(const uint8_t *buf, size_t len, size_t *off, struct handover_rec *rec,
		     char *err, size_t errlen)
{
	struct rd outer = {buf, len, *off, *off > len};
	size_t body = (size_t)rd_uint(&outer, 4), n;
	const uint8_t *b = body <= HANDOVER_REC_MAX ? rd_take(&outer, body) : NULL;
	struct rd r = {b, body, 0, false};
	const char *why;
	bool badkind = false;

	memset(rec, 0, sizeof(*rec));
	rec->fd = -1;
	if (b == NULL) {
		snprintf(err, errlen, "record length %zu past the end or above %u", body,
			 HANDOVER_REC_MAX);
		return -2;
	}
	*off = outer.off;
	rec->fd = (int)(int32_t)(uint32_t)rd_uint(&r, 4);
	rec->flags = (unsigned)rd_uint(&r, 1);
	rec->served = rd_uint(&r, 8);
	rec->since = (int64_t)rd_uint(&r, 8);
	rec->ahead = rd_uint(&r, 8);
	rec->blocks = rd_uint(&r, 8);
	rd_bytes(&r, (uint8_t *)rec->spec, sizeof(rec->spec) - 1, &n);
	rd_bytes(&r, (uint8_t *)rec->peer, sizeof(rec->peer) - 1, &n);
	rd_bytes(&r, rec->in, sizeof(rec->in), &rec->inlen);
	rd_bytes(&r, rec->out, sizeof(rec->out), &rec->outlen);
	rec->nops = (unsigned)rd_uint(&r, 1);
	for (unsigned i = 0; i < rec->nops && i < REQQ_SLOTS; i++) {
		uint64_t kind = rd_uint(&r, 1);

		badkind = badkind || kind > REQQ_PID;
		rec->ops[i].kind = (enum reqq_kind)(kind & 3);
		rec->ops[i].n = rd_uint(&r, 8);
	}
	if (badkind) {
		snprintf(err, errlen, "a queued request of unknown kind");
		return -1;
	}
	if (r.bad || r.off != r.n) {
		snprintf(err, errlen, "record of %zu bytes is %s", body,
			 r.bad ? "truncated or has a field too long" : "longer than its fields");
		return -1;
	}
	why = invalid(rec);
	if (why != NULL) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	return 0;
}

/* ---- vhost-user device records ---- */

int handover_put_vu_count(uint32_t count, uint8_t *buf, size_t cap, size_t *off)
{
	if (*off > cap || cap - *off < 4) {
		return -1;
	}
	put_uint(buf + *off, count, 4);
	*off += 4;
	return 0;
}

long handover_get_vu_count(const uint8_t *buf, size_t len, size_t *off, char *err, size_t errlen)
{
	struct rd r = {buf, len, *off, *off > len};
	uint64_t count;

	if (*off == len) {
		return 0;
	}
	count = rd_uint(&r, 4);
	if (r.bad || count > HANDOVER_VU_MAX) {
		snprintf(err, errlen, "vhost-user device count %s",
			 r.bad ? "truncated" : "too large");
		return -1;
	}
	*off = r.off;
	return (long)count;
}

static bool fd_ok(int fd, bool optional)
{
	return fd >= 3 || (optional && fd == -1);
}

/* Why device record r cannot be acted on; NULL if it can. */
static const char *vu_invalid(const struct handover_vu_rec *r)
{
	size_t speclen = strnlen(r->spec, sizeof(r->spec)),
	       peerlen = strnlen(r->peer, sizeof(r->peer));

	if (!fd_ok(r->fd, false) || !fd_ok(r->kick_fd, true) || !fd_ok(r->call_fd, true) ||
	    !fd_ok(r->err_fd, true)) {
		return "a descriptor below 3";
	}
	if ((r->flags & ~HANDOVER_VU_FLAGS) != 0) {
		return "unknown flags";
	}
	if (!printable(r->spec, speclen) || speclen == sizeof(r->spec) ||
	    !printable(r->peer, peerlen) || peerlen == sizeof(r->peer)) {
		return "endpoint or peer name empty, too long or not printable";
	}
	if ((r->num != 0 && (r->num > VRING_MAX_SIZE || (r->num & (r->num - 1)) != 0)) ||
	    r->last_avail > 0xffff) {
		return "queue size or ring base out of range";
	}
	if (r->nregions > VRING_MAX_REGIONS || r->npart_fds > VU_MAX_FDS ||
	    r->partlen > HANDOVER_VU_PART_MAX || (r->partlen == 0 && r->npart_fds > 0)) {
		return "a count out of range";
	}
	for (unsigned i = 0; i < r->nregions; i++) {
		const struct handover_vu_region *g = &r->regions[i];

		if (!fd_ok(g->fd, false) || g->size == 0 || g->gpa + g->size < g->gpa ||
		    g->uaddr + g->size < g->uaddr || g->offset + g->size < g->size) {
			return "a memory region out of range";
		}
	}
	for (unsigned i = 0; i < r->npart_fds; i++) {
		if (!fd_ok(r->part_fds[i], false)) {
			return "a descriptor below 3";
		}
	}
	return NULL;
}

/* A bounded writer: a field that does not fit marks it bad. */
struct wr {
	uint8_t *p;
	size_t n, off;
	bool bad;
};

static void wr_uint(struct wr *w, uint64_t v, size_t width)
{
	if (w->bad || w->n - w->off < width) {
		w->bad = true;
		return;
	}
	put_uint(w->p + w->off, v, width);
	w->off += width;
}

static void wr_bytes(struct wr *w, const void *p, size_t len)
{
	wr_uint(w, len, 2);
	if (!w->bad && w->n - w->off < len) {
		w->bad = true;
	}
	if (!w->bad && len > 0) {
		memcpy(w->p + w->off, p, len);
		w->off += len;
	}
}

int handover_put_vu_rec(const struct handover_vu_rec *r, uint8_t *buf, size_t cap, size_t *off)
{
	struct wr w = {buf, cap, *off + 4, *off > cap || cap - *off < 4};

	if (vu_invalid(r) != NULL || w.bad) {
		return -1;
	}
	w.n = *off + 4 + HANDOVER_VU_REC_MAX < cap ? *off + 4 + HANDOVER_VU_REC_MAX : cap;
	wr_uint(&w, (uint32_t)r->fd, 4);
	wr_uint(&w, r->flags, 1);
	wr_uint(&w, r->served, 8);
	wr_uint(&w, r->features, 8);
	wr_uint(&w, r->protocol_features, 8);
	wr_uint(&w, r->num, 4);
	wr_uint(&w, r->desc_ua, 8);
	wr_uint(&w, r->avail_ua, 8);
	wr_uint(&w, r->used_ua, 8);
	wr_uint(&w, r->last_avail, 2);
	wr_uint(&w, (uint32_t)r->kick_fd, 4);
	wr_uint(&w, (uint32_t)r->call_fd, 4);
	wr_uint(&w, (uint32_t)r->err_fd, 4);
	wr_uint(&w, r->nregions, 1);
	for (unsigned i = 0; i < r->nregions; i++) {
		wr_uint(&w, (uint32_t)r->regions[i].fd, 4);
		wr_uint(&w, r->regions[i].gpa, 8);
		wr_uint(&w, r->regions[i].size, 8);
		wr_uint(&w, r->regions[i].uaddr, 8);
		wr_uint(&w, r->regions[i].offset, 8);
	}
	wr_bytes(&w, r->spec, strlen(r->spec));
	wr_bytes(&w, r->peer, strlen(r->peer));
	wr_bytes(&w, r->part, r->partlen);
	wr_uint(&w, r->npart_fds, 1);
	for (unsigned i = 0; i < r->npart_fds; i++) {
		wr_uint(&w, (uint32_t)r->part_fds[i], 4);
	}
	if (w.bad) {
		return -1;
	}
	put_uint(buf + *off, w.off - *off - 4, 4);
	*off = w.off;
	return 0;
}

static int rd_fd(struct rd *r)
{
	return (int)(int32_t)(uint32_t)rd_uint(r, 4);
}

int handover_get_vu_rec(const uint8_t *buf, size_t len, size_t *off, struct handover_vu_rec *rec,
			char *err, size_t errlen)
{
	struct rd outer = {buf, len, *off, *off > len};
	size_t body = (size_t)rd_uint(&outer, 4), n;
	const uint8_t *b = body <= HANDOVER_VU_REC_MAX ? rd_take(&outer, body) : NULL;
	struct rd r = {b, body, 0, false};
	const char *why;

	memset(rec, 0, sizeof(*rec));
	rec->fd = rec->kick_fd = rec->call_fd = rec->err_fd = -1;
	if (b == NULL) {
		snprintf(err, errlen, "device record length %zu past the end or above %u", body,
			 HANDOVER_VU_REC_MAX);
		return -2;
	}
	*off = outer.off;
	rec->fd = rd_fd(&r);
	rec->flags = (unsigned)rd_uint(&r, 1);
	rec->served = rd_uint(&r, 8);
	rec->features = rd_uint(&r, 8);
	rec->protocol_features = rd_uint(&r, 8);
	rec->num = (uint32_t)rd_uint(&r, 4);
	rec->desc_ua = rd_uint(&r, 8);
	rec->avail_ua = rd_uint(&r, 8);
	rec->used_ua = rd_uint(&r, 8);
	rec->last_avail = (uint32_t)rd_uint(&r, 2);
	rec->kick_fd = rd_fd(&r);
	rec->call_fd = rd_fd(&r);
	rec->err_fd = rd_fd(&r);
	rec->nregions = (unsigned)rd_uint(&r, 1);
	for (unsigned i = 0; i < rec->nregions && !r.bad; i++) {
		struct handover_vu_region *g = &rec->regions[i < VRING_MAX_REGIONS ? i : 0];

		if (i >= VRING_MAX_REGIONS) {
			r.bad = true;
			break;
		}
		g->fd = rd_fd(&r);
		g->gpa = rd_uint(&r, 8);
		g->size = rd_uint(&r, 8);
		g->uaddr = rd_uint(&r, 8);
		g->offset = rd_uint(&r, 8);
	}
	rd_bytes(&r, (uint8_t *)rec->spec, sizeof(rec->spec) - 1, &n);
	rd_bytes(&r, (uint8_t *)rec->peer, sizeof(rec->peer) - 1, &n);
	rd_bytes(&r, rec->part, sizeof(rec->part), &rec->partlen);
	rec->npart_fds = (unsigned)rd_uint(&r, 1);
	for (unsigned i = 0; i < rec->npart_fds && !r.bad; i++) {
		if (i >= VU_MAX_FDS) {
			r.bad = true;
			break;
		}
		rec->part_fds[i] = rd_fd(&r);
	}
	if (r.bad || r.off != r.n) {
		snprintf(err, errlen, "device record of %zu bytes is %s", body,
			 r.bad ? "truncated or has a field too long" : "longer than its fields");
		return -1;
	}
	why = vu_invalid(rec);
	if (why != NULL) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	return 0;
}
