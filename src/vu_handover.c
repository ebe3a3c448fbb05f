/* vu_handover: see vu_handover.h. Only vu_conn.h's accessors and vhost_user.h's public
 * device state are used: the connection's internals stay vu_conn.c's. */
#include "vu_handover.h"

#include "client_impl.h"
#include "log.h"
#include "vu_conn.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define F_EVENT_IDX (1ull << 29) /* VIRTIO_RING_F_EVENT_IDX */

size_t vu_handover_count(struct clients *cs)
{
	struct turn *t;
	size_t n = 0;

	LIST_FOREACH(t, &cs->members, member)
	{
		n += vu_conn_of(t) != NULL;
	}
	return n;
}

/* A copy of fd at lowest or above (-1 stays -1); false if it cannot be made. */
static bool copy_fd(int fd, int lowest, int *out, int *fds, size_t *nfds)
{
	*out = fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, lowest);
	if (*out >= 0) {
		fds[(*nfds)++] = *out;
	}
	return fd < 0 || *out >= 0;
}

/* r for the device st (descriptors copied); false if a copy failed. */
static bool fill(struct handover_vu_rec *r, const struct vu_conn_state *st, int lowest, int *fds,
		 size_t *nfds)
{
	const struct vu_dev *d = st->dev;
	bool ok = copy_fd(st->fd, lowest, &r->fd, fds, nfds) &&
		  copy_fd(d->kick_fd, lowest, &r->kick_fd, fds, nfds) &&
		  copy_fd(d->call_fd, lowest, &r->call_fd, fds, nfds) &&
		  copy_fd(d->err_fd, lowest, &r->err_fd, fds, nfds);

	r->flags = (d->enabled ? HANDOVER_VU_ENABLED : 0) |
		   (d->vr.have_addr ? HANDOVER_VU_HAVE_ADDR : 0) |
		   (d->broken ? HANDOVER_VU_BROKEN : 0);
	r->served = st->served;
	r->features = d->features;
	r->protocol_features = d->protocol_features;
	r->num = d->vr.num;
	r->desc_ua = d->vr.desc_ua;
	r->avail_ua = d->vr.avail_ua;
	r->used_ua = d->vr.used_ua;
	r->last_avail = d->vr.last_avail;
	r->nregions = d->mem.n;
	for (unsigned i = 0; i < d->mem.n; i++) {
		const struct vring_region *g = &d->mem.r[i];

		r->regions[i] = (struct handover_vu_region){
		    .gpa = g->gpa,
		    .size = g->size,
		    .uaddr = g->uaddr,
		    .offset = (uint64_t)(g->host - (const uint8_t *)g->map)};
		ok = ok && copy_fd(g->fd, lowest, &r->regions[i].fd, fds, nfds);
	}
	if (st->in_payload) {
		memcpy(r->part, st->hdr, VU_HDR_SIZE);
		memcpy(r->part + VU_HDR_SIZE, st->payload, st->got);
		r->partlen = VU_HDR_SIZE + st->got;
	} else {
		memcpy(r->part, st->hdr, st->got);
		r->partlen = st->got;
	}
	r->npart_fds = (unsigned)st->npart_fds;
	for (size_t i = 0; i < st->npart_fds; i++) {
		ok = ok && copy_fd(st->part_fds[i], lowest, &r->part_fds[i], fds, nfds);
	}
	snprintf(r->spec, sizeof(r->spec), "%s", st->spec != NULL ? st->spec : "");
	snprintf(r->peer, sizeof(r->peer), "%s", st->peer);
	return ok;
}

size_t vu_handover_save(struct clients *cs, int lowest, size_t max, uint8_t *buf, size_t cap,
			size_t *off, int *fds, size_t *nfds)
{
	struct handover_vu_rec r;
	struct turn *t;
	size_t at = *off, n = 0;

	*off += 4;
	LIST_FOREACH(t, &cs->members, member)
	{
		struct vu_conn *v = vu_conn_of(t);
		struct vu_conn_state st;
		size_t mark = *nfds;

		if (v == NULL) {
			continue;
		}
		vu_conn_state(v, &st);
		memset(&r, 0, sizeof(r));
		if (n == max || !fill(&r, &st, lowest, fds, nfds) ||
		    handover_put_vu_rec(&r, buf, cap, off) < 0) {
			log_warnx("vhost-user %s: cannot hand it over; closed by the reload",
				  st.peer);
			while (*nfds > mark) {
				close(fds[--(*nfds)]);
			}
			continue;
		}
		n++;
	}
	(void)handover_put_vu_count((uint32_t)n, buf, cap, &at);
	explicit_bzero(&r, sizeof(r));
	return n;
}

size_t vu_handover_fds(const struct handover_vu_rec *r, int *out)
{
	size_t n = 0;
	const int ring[] = {r->fd, r->kick_fd, r->call_fd, r->err_fd};

	for (size_t i = 0; i < 4; i++) {
		if (ring[i] >= 0) {
			out[n++] = ring[i];
		}
	}
	for (unsigned i = 0; i < r->nregions && i < VRING_MAX_REGIONS; i++) {
		out[n++] = r->regions[i].fd;
	}
	for (unsigned i = 0; i < r->npart_fds && i < VU_MAX_FDS; i++) {
		out[n++] = r->part_fds[i];
	}
	return n;
}

void vu_handover_drop(const struct handover_vu_rec *r, const char *why)
{
	int fds[VU_HANDOVER_FDS];

	log_warnx("vhost-user %s: not resumed after the reload (%s); connection closed", r->peer,
		  why);
	for (size_t k = vu_handover_fds(r, fds); k > 0; k--) {
		close(fds[k - 1]);
	}
}

/* True if fd is an eventfd (its /proc/self/fd link names the anonymous inode). */
static bool is_eventfd(int fd)
{
	char path[40], link[40];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0) {
		return false;
	}
	link[n] = '\0';
	return strcmp(link, "anon_inode:[eventfd]") == 0;
}

static bool is_file(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

const char *vu_handover_check_fds(const struct handover_vu_rec *r)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (sd_is_socket_unix(r->fd, SOCK_STREAM, -1, NULL, 0) <= 0 ||
	    getpeername(r->fd, (struct sockaddr *)&ss, &len) < 0) {
		return "its connection is no connected unix stream socket";
	}
	if ((r->kick_fd >= 0 && !is_eventfd(r->kick_fd)) ||
	    (r->call_fd >= 0 && !is_eventfd(r->call_fd)) ||
	    (r->err_fd >= 0 && !is_eventfd(r->err_fd))) {
		return "a kick, call or err descriptor is no eventfd";
	}
	for (unsigned i = 0; i < r->nregions; i++) {
		if (!is_file(r->regions[i].fd)) {
			return "a memory region's descriptor is no file";
		}
	}
	for (unsigned i = 0; i < r->npart_fds; i++) {
		if (!is_file(r->part_fds[i]) && !is_eventfd(r->part_fds[i])) {
			return "a descriptor of the message partly read is no file or eventfd";
		}
	}
	return NULL;
}

/* Restore r's device into d (r's ring descriptors taken; region descriptors left to the
 * caller); -1 with the reason in why. */
static int restore(struct vu_dev *d, const struct handover_vu_rec *r, char *why, size_t whylen)
{
	vu_dev_init(d);
	d->features = r->features;
	d->protocol_features = r->protocol_features;
	d->kick_fd = r->kick_fd;
	d->call_fd = r->call_fd;
	d->err_fd = r->err_fd;
	d->enabled = (r->flags & HANDOVER_VU_ENABLED) != 0;
	d->vr.event_idx = (r->features & F_EVENT_IDX) != 0;
	d->vr.desc_ua = r->desc_ua;
	d->vr.avail_ua = r->avail_ua;
	d->vr.used_ua = r->used_ua;
	d->vr.have_addr = (r->flags & HANDOVER_VU_HAVE_ADDR) != 0;
	d->vr.last_avail = (uint16_t)r->last_avail;
	if (r->num != 0 && vring_set_num(&d->vr, r->num) < 0) {
		snprintf(why, whylen, "queue size %u", r->num);
		return -1;
	}
	for (unsigned i = 0; i < r->nregions; i++) {
		const struct handover_vu_region *g = &r->regions[i];

		if (vring_mem_add(&d->mem, g->fd, g->gpa, g->size, g->uaddr, g->offset, why,
				  whylen) < 0) {
			return -1;
		}
	}
	if (r->flags & HANDOVER_VU_BROKEN) {
		vu_break(d, "broken before the reload");
	} else if (vu_live(d) && vring_attach(&d->vr, &d->mem, why, whylen) < 0) {
		return -1;
	}
	return 0;
}

int vu_handover_resume(struct event_base *base, struct clients *cs, const struct client_opts *opts,
		       const struct handover_vu_rec *r, client_closed_fn on_closed, void *arg)
{
	struct vu_dev dev;
	struct vu_conn_state st = {.fd = r->fd,
				   .peer = r->peer,
				   .served = r->served,
				   .part = r->part,
				   .partlen = r->partlen,
				   .part_fds = r->part_fds,
				   .npart_fds = r->npart_fds};
	char why[96];
	int rc = restore(&dev, r, why, sizeof(why));

	for (unsigned i = 0; i < r->nregions; i++) {
		close(r->regions[i].fd); /* the device keeps its own copies */
	}
	if (rc < 0) {
		log_warnx("vhost-user %s: cannot resume it after the reload (%s); connection "
			  "closed",
			  r->peer, why);
		vu_dev_reset(&dev);
		close(r->fd);
		for (unsigned i = 0; i < r->npart_fds; i++) {
			close(r->part_fds[i]);
		}
		return -1;
	}
	return vu_conn_resume(base, cs, opts, &st, &dev, on_closed, arg);
}
