/* handover: see handover.h. The memfd holds handover_codec.h's format; the environment
 * names it. A descriptor a record names is only acted on if, when the new image starts, it
 * is a connected stream socket outside the listeners' range and named by no other record:
 * at that moment nothing of the new image's own is open yet, so no record can point it at
 * a source's or the event loop's descriptor. */
#include "handover.h"

#include "client_impl.h"
#include "vu_handover.h"
#include "workers.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define HANDOVER_ENV "ENTROPYD_HANDOVER"

_Static_assert(HANDOVER_IN_MAX == CLIENT_INBUF, "a record holds a client's input buffer");
_Static_assert(HANDOVER_OUT_MAX == sizeof(((struct client *)0)->out), "and its reply");
_Static_assert(HANDOVER_SPEC_MAX >= sizeof(((struct client *)0)->endpoint), "its spec");
_Static_assert(HANDOVER_PEER_MAX >= sizeof(((struct client *)0)->peer), "its peer");

struct handover {
	struct handover_rec *recs;
	bool *ok; /* valid and not taken */
	size_t n;
	struct handover_vu_rec *vus; /* vhost-user devices */
	bool *vuok;
	size_t nvu;
};

/* ---- the old image ---- */

static void fill(struct handover_rec *r, const struct client *c, int fd)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->flags =
	    (c->eof ? HANDOVER_EOF : 0) | (c->spoke ? HANDOVER_SPOKE : 0) |
	    (c->q.other ? HANDOVER_OTHER : 0) |
	    (c->primer_ev != NULL && evtimer_pending(c->primer_ev, NULL) ? HANDOVER_PRIMER : 0);
	r->served = c->served;
	r->since = c->since;
	r->ahead = c->q.ahead;
	r->blocks = c->q.blocks;
	snprintf(r->spec, sizeof(r->spec), "%s", c->endpoint);
	snprintf(r->peer, sizeof(r->peer), "%s", c->peer);
	memcpy(r->in, c->in, c->inlen);
	r->inlen = c->inlen;
	r->outlen = c->outlen - c->outoff;
	memcpy(r->out, c->out + c->outoff, r->outlen);
	for (unsigned i = 0; i < c->q.count; i++) {
		const struct reqq_op *op = &c->q.ops[(c->q.head + i) % REQQ_SLOTS];

		if (op->kind != REQQ_BLOCK || op->n > 0) { /* an empty 0x02 run owes nothing */
			r->ops[r->nops++] = *op;
		}
	}
}

/* Write buf[0..n) to a new memfd left open across execve at lowest or above; -1 if not. */
static int write_memfd(const uint8_t *buf, size_t n, int lowest)
{
	int mfd = memfd_create("entropyd-handover", MFD_CLOEXEC), kept;
	size_t done = 0;

	while (mfd >= 0 && done < n) {
		ssize_t w = write(mfd, buf + done, n - done);

		if (w <= 0) {
			close(mfd);
			return -1;
		}
		done += (size_t)w;
	}
	if (mfd < 0 || lseek(mfd, 0, SEEK_SET) < 0) {
		if (mfd >= 0) {
			close(mfd);
		}
		return -1;
	}
	kept = fcntl(mfd, F_DUPFD, lowest); /* without FD_CLOEXEC */
	close(mfd);
	return kept;
}

/* Close c now that the reload leaves it behind. */
static void leave(struct client *c, const char *why)
{
	c->on_closed = NULL; /* no redial: the new image dials */
	client_close(c, NULL, why);
}

int handover_save(struct clients *const *regs, size_t nregs, int lowest)
{
	struct clients *cs = regs[0];
	struct client *c, *next;
	size_t n = 0, off = HANDOVER_HEADER, over = 0, cap, nvu = vu_handover_count(cs), nvufds = 0;
	uint64_t owed = 0;
	int kept[HANDOVER_MAX], mfd, *vufds;
	uint8_t *buf;
	struct handover_rec *r = malloc(sizeof(*r));
	char env[24];

	for (size_t k = 0; k < nregs; k++) {
		LIST_FOREACH(c, &regs[k]->all, all_link)
		{
			n++;
		}
	}
	n = n < HANDOVER_MAX ? n : HANDOVER_MAX;
	nvu = nvu < HANDOVER_VU_MAX ? nvu : HANDOVER_VU_MAX;
	cap = HANDOVER_HEADER + n * HANDOVER_REC_MAX + 4 + nvu * (4 + HANDOVER_VU_REC_MAX);
	buf = malloc(cap);
	vufds = malloc((nvu + 1) * VU_HANDOVER_FDS * sizeof(int));
	if (buf == NULL || r == NULL || vufds == NULL) {
		free(buf);
		free(r);
		free(vufds);
		log_warnx("reload: out of memory; connected clients are dropped");
		return -1;
	}
	n = 0;
	for (size_t k = 0; k < nregs; k++) {
		for (c = LIST_FIRST(&regs[k]->all); c != NULL; c = next) {
			next = LIST_NEXT(c, all_link);
			if (c->closing || c->tr->read == NULL) {
				continue; /* a datagram peer or a pipe: its endpoint keeps it */
			}
			if (c->tr != &transport_stream) {
				log_info("client %s: TLS connection closed by the reload "
					 "(OpenSSL's state "
					 "cannot pass to the new image; the peer must reconnect)",
					 c->peer);
				leave(c, "closed by the reload");
				continue;
			}
			if (n == HANDOVER_MAX) {
				over++;
				leave(c, "closed by the reload (too many clients to hand over)");
				continue;
			}
			kept[n] = c->fd >= lowest ? c->fd : fcntl(c->fd, F_DUPFD_CLOEXEC, lowest);
			fill(r, c, kept[n]);
			if (kept[n] < 0 ||
			    handover_put_rec(r, buf, HANDOVER_HEADER + (n + 1) * HANDOVER_REC_MAX,
					     &off) < 0) {
				log_warnx("client %s: cannot hand it over; closed by the reload",
					  c->peer);
				leave(c, "closed by the reload");
				continue;
			}
			for (unsigned i = 0; i < r->nops; i++) {
				owed += r->ops[i].kind == REQQ_BLOCK ? r->ops[i].n : 0;
			}
			n++;
		}
	}
	if (over > 0) {
		log_warnx("reload: %zu client(s) beyond the %u a reload carries were closed", over,
			  HANDOVER_MAX);
	}
	handover_put_header(buf, (uint32_t)n);
	nvu = vu_handover_save(cs, lowest, HANDOVER_VU_MAX, buf, cap, &off, vufds, &nvufds);
	mfd = write_memfd(buf, off, lowest);
	explicit_bzero(buf, off);
	explicit_bzero(r, sizeof(*r));
	free(buf);
	free(r);
	if (mfd < 0) {
		log_warn("reload: cannot write the clients' state to a memfd; they are dropped");
		for (size_t i = 0; i < nvufds; i++) {
			close(vufds[i]);
		}
		free(vufds);
		return -1;
	}
	/* From here on they survive execve. */
	for (size_t i = 0; i < n; i++) {
		fcntl(kept[i], F_SETFD, 0);
	}
	for (size_t i = 0; i < nvufds; i++) {
		fcntl(vufds[i], F_SETFD, 0);
	}
	free(vufds);
	snprintf(env, sizeof(env), "%d", mfd);
	setenv(HANDOVER_ENV, env, 1);
	log_info("reload: handing %zu connected client(s) and %zu vhost-user device(s) over, "
		 "owed %llu bytes",
		 n, nvu, (unsigned long long)owed);
	return (int)n;
}

/* ---- the new image ---- */

/* Read the memfd named fd (validated) into a buffer; NULL if it is not one. */
static uint8_t *read_state(int fd, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t max = HANDOVER_HEADER + (size_t)HANDOVER_MAX * HANDOVER_REC_MAX + 4 +
		     (size_t)HANDOVER_VU_MAX * (4 + HANDOVER_VU_REC_MAX);

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
	    (size_t)st.st_size > max) {
		log_warnx("reload: the clients' state is not a file of at most %zu bytes; "
			  "connected clients are not resumed",
			  max);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	*len = 0;
	while (buf != NULL && *len < (size_t)st.st_size) {
		ssize_t r = pread(fd, buf + *len, (size_t)st.st_size - *len, (off_t)*len);

		if (r <= 0) {
			break;
		}
		*len += (size_t)r;
	}
	return buf;
}

/* How many descriptors LISTEN_FDS passes to this process (from 3 on). */
static int listen_count(void)
{
	const char *n = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");

	if (n == NULL || pid == NULL || atol(pid) != (long)getpid()) {
		return 0;
	}
	return atoi(n) > 0 ? atoi(n) : 0;
}

/* Why record i's descriptor cannot be a client; NULL if it can. *ours: the descriptor is
 * a connected stream socket the new image may close. */
static const char *check_fd(const struct handover *h, size_t i, int mfd, bool *ours)
{
	int fd = h->recs[i].fd;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	*ours = false;
	if (fd < 3 + listen_count() || fd == mfd) {
		return "names a standard or listening descriptor";
	}
	for (size_t j = 0; j < i; j++) {
		if (h->ok[j] && h->recs[j].fd == fd) {
			return "names the descriptor of another record";
		}
	}
	if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 0) <= 0 ||
	    getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
		return "names no connected stream socket";
	}
	*ours = true;
	return NULL;
}

/* True if a valid client record, or device record before vu, names fd. */
static bool claimed(const struct handover *h, int fd, size_t vu)
{
	int fds[VU_HANDOVER_FDS];

	for (size_t j = 0; j < h->n; j++) {
		if (h->ok[j] && h->recs[j].fd == fd) {
			return true;
		}
	}
	for (size_t j = 0; j < vu; j++) {
		size_t k = h->vuok[j] ? vu_handover_fds(&h->vus[j], fds) : 0;

		for (size_t i = 0; i < k; i++) {
			if (fds[i] == fd) {
				return true;
			}
		}
	}
	return false;
}

/* Why device record i's descriptors cannot be taken; NULL if they can. *ours: its
 * connection is a socket the new image may close. */
static const char *check_vu_fds(const struct handover *h, size_t i, int mfd, bool *ours)
{
	int fds[VU_HANDOVER_FDS];
	size_t k = vu_handover_fds(&h->vus[i], fds);

	*ours = false;
	for (size_t a = 0; a < k; a++) {
		if (fds[a] < 3 + listen_count() || fds[a] == mfd) {
			return "names a standard or listening descriptor";
		}
		for (size_t b = 0; b < a; b++) {
			if (fds[a] == fds[b]) {
				return "names a descriptor twice";
			}
		}
		if (claimed(h, fds[a], i)) {
			return "names the descriptor of another record";
		}
	}
	*ours = sd_is_socket_unix(h->vus[i].fd, SOCK_STREAM, -1, NULL, 0) > 0;
	return vu_handover_check_fds(&h->vus[i]);
}

/* Read the device records at buf[*off..len) into h (after the clients'). */
static void load_vus(struct handover *h, const uint8_t *buf, size_t len, size_t off, int mfd)
{
	char err[160];
	long count = handover_get_vu_count(buf, len, &off, err, sizeof(err));

	if (count > 0 && ((h->vus = calloc((size_t)count, sizeof(*h->vus))) == NULL ||
			  (h->vuok = calloc((size_t)count, sizeof(*h->vuok))) == NULL)) {
		snprintf(err, sizeof(err), "out of memory");
		count = -1;
	}
	if (count < 0) {
		log_warnx("reload: vhost-user devices are not resumed: %s", err);
		return;
	}
	for (long i = 0; i < count; i++) {
		struct handover_vu_rec *r = &h->vus[i];
		int rc = handover_get_vu_rec(buf, len, &off, r, err, sizeof(err));
		bool ours = false;
		const char *why = rc < 0 ? err : check_vu_fds(h, (size_t)i, mfd, &ours);
		int fds[VU_HANDOVER_FDS];

		h->nvu = (size_t)i + 1;
		h->vuok[i] = why == NULL;
		if (!h->vuok[i]) {
			if (rc < 0 && r->fd >= 3 + listen_count() && r->fd != mfd &&
			    !claimed(h, r->fd, (size_t)i)) {
				ours = sd_is_socket_unix(r->fd, SOCK_STREAM, -1, NULL, 0) > 0;
			}
			log_warnx("reload: handed-over vhost-user device %ld is bad (%s); %s", i,
				  why, ours ? "its connection is closed" : "ignored");
			if (ours) {
				close(r->fd);
			}
		} else {
			for (size_t k = vu_handover_fds(r, fds); k > 0; k--) {
				(void)fcntl(fds[k - 1], F_SETFD, FD_CLOEXEC);
			}
		}
		if (rc == -2) {
			break;
		}
	}
}

struct handover *handover_load(void)
{
	const char *env = getenv(HANDOVER_ENV);
	char *end, err[160];
	long mfd = env != NULL ? strtol(env, &end, 10) : -1;
	struct handover *h;
	uint8_t *buf = NULL;
	size_t len = 0, off = HANDOVER_HEADER;
	long count;
	bool whole = true; /* every client record read: the devices' follow */

	if (env == NULL) {
		return NULL;
	}
	if (*env == '\0' || *end != '\0' || mfd < 3 || mfd > 1 << 24 ||
	    (buf = read_state((int)mfd, &len)) == NULL) {
		log_warnx("reload: %s=%s names no clients' state; none is resumed", HANDOVER_ENV,
			  env);
		unsetenv(HANDOVER_ENV);
		return NULL;
	}
	count = handover_get_header(buf, len, err, sizeof(err));
	h = calloc(1, sizeof(*h));
	if (count < 0 || h == NULL ||
	    (count > 0 && ((h->recs = calloc((size_t)count, sizeof(*h->recs))) == NULL ||
			   (h->ok = calloc((size_t)count, sizeof(*h->ok))) == NULL))) {
		log_warnx("reload: connected clients are not resumed: %s",
			  count < 0 ? err : "out of memory");
		count = 0;
		whole = false;
	}
	for (long i = 0; h != NULL && i < count; i++) {
		struct handover_rec *r = &h->recs[i];
		int rc = handover_get_rec(buf, len, &off, r, err, sizeof(err));
		bool ours = false;
		const char *fdwhy = r->fd >= 0 ? check_fd(h, (size_t)i, (int)mfd, &ours) : NULL;
		const char *why = rc < 0 ? err : fdwhy;

		h->n = (size_t)i + 1;
		h->ok[i] = why == NULL;
		if (!h->ok[i]) {
			log_warnx("reload: handed-over client %ld is bad (%s); %s", i, why,
				  ours ? "its connection is closed" : "ignored");
			if (ours) {
				close(r->fd);
			}
		} else {
			(void)fcntl(r->fd, F_SETFD, FD_CLOEXEC);
		}
		if (rc == -2) {
			whole = false;
			break;
		}
	}
	if (whole) {
		load_vus(h, buf, len, off, (int)mfd);
	}
	explicit_bzero(buf, len);
	free(buf);
	close((int)mfd);
	unsetenv(HANDOVER_ENV);
	return h;
}

size_t handover_count(const struct handover *h)
{
	return h != NULL ? h->n : 0;
}

const struct handover_rec *handover_get(const struct handover *h, size_t i)
{
	return h != NULL && i < h->n && h->ok[i] ? &h->recs[i] : NULL;
}

bool handover_names(const struct handover *h, const char *spec)
{
	for (size_t i = 0; i < handover_count(h); i++) {
		if (h->ok[i] && strcmp(h->recs[i].spec, spec) == 0) {
			return true;
		}
	}
	for (size_t i = 0; i < handover_vu_count(h); i++) {
		if (h->vuok[i] && strcmp(h->vus[i].spec, spec) == 0) {
			return true;
		}
	}
	return false;
}

size_t handover_vu_count(const struct handover *h)
{
	return h != NULL ? h->nvu : 0;
}

const struct handover_vu_rec *handover_vu_get(const struct handover *h, size_t i)
{
	return h != NULL && i < h->nvu && h->vuok[i] ? &h->vus[i] : NULL;
}

void handover_vu_take(struct handover *h, size_t i)
{
	h->vuok[i] = false;
}

int handover_take(struct handover *h, size_t i)
{
	h->ok[i] = false;
	return h->recs[i].fd;
}

/* Give c, just created on record r's descriptor, r's state, and serve it. */
static void resume(struct client *c, const struct handover_rec *r)
{
	c->served = r->served;
	c->since = r->since;
	c->spoke = (r->flags & HANDOVER_SPOKE) != 0;
	c->q.ahead = r->ahead;
	c->q.blocks = r->blocks;
	c->q.other = (r->flags & HANDOVER_OTHER) != 0;
	c->q.head = 0;
	c->q.count = r->nops;
	memcpy(c->q.ops, r->ops, r->nops * sizeof(r->ops[0]));
	memcpy(c->in, r->in, r->inlen);
	c->inlen = r->inlen;
	memcpy(c->out, r->out, r->outlen);
	c->outlen = r->outlen;
	c->outoff = 0;
	meter_sample(&c->meter, c->served);
	if (c->primer_ev != NULL && (c->spoke || !(r->flags & HANDOVER_PRIMER))) {
		event_del(c->primer_ev);
	}
	client_resume(c, (r->flags & HANDOVER_EOF) != 0);
}

/* On the client's thread: r is a copy the new client owns until now. */
static void resume_made(struct client *c, void *arg)
{
	struct handover_rec *r = arg;

	if (c != NULL) {
		resume(c, r);
	}
	free(r);
}

int handover_adopt(struct workers *ws, struct clients *cs, int fd, const struct client_opts *opts,
		   const struct handover_rec *r, client_closed_fn on_closed, void *arg)
{
	struct handover_rec *copy = malloc(sizeof(*copy));

	if (copy == NULL) {
		close(fd);
		return -1;
	}
	*copy = *r;
	return workers_client_new(ws, cs, &transport_stream, NULL, fd, opts, r->peer, on_closed,
				  arg, resume_made, copy);
}

void handover_free(struct handover *h)
{
	if (h == NULL) {
		return;
	}
	for (size_t i = 0; i < h->n; i++) {
		if (h->ok[i]) {
			log_info("client %s: its endpoint %s is gone after the reload; connection "
				 "closed",
				 h->recs[i].peer, h->recs[i].spec);
			close(h->recs[i].fd);
		}
	}
	for (size_t i = 0; i < h->nvu; i++) {
		int fds[VU_HANDOVER_FDS];

		if (h->vuok[i]) {
			log_info("vhost-user %s: its endpoint %s is gone after the reload; "
				 "connection closed",
				 h->vus[i].peer, h->vus[i].spec);
			for (size_t k = vu_handover_fds(&h->vus[i], fds); k > 0; k--) {
				close(fds[k - 1]);
			}
		}
	}
	if (h->vus != NULL) { /* no device: NULL, which explicit_bzero must not get */
		explicit_bzero(h->vus, h->nvu * sizeof(*h->vus));
	}
	free(h->vus);
	free(h->vuok);
	free(h->recs);
	free(h->ok);
	free(h);
}
