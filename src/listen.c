/* listen: listening endpoints. tcp and unix sockets are handed to libevent's listener and
 * every accepted connection becomes a client; a udp socket is served by udp.c; a fifo is a
 * named pipe kept full for QEMU's rng-random. A unix socket file is checked every second
 * (and at a reload): if it was removed or replaced by a dead socket, it is bound again; a
 * path that now names something else is left alone. */
#include "listen.h"

#include "clock.h"
#include "control.h"
#include "handover.h"
#include "log.h"
#include "netaddr.h"
#include "peercap.h"
#include "transport.h"
#include "udp.h"
#include "unixpath.h"
#include "vu_conn.h"
#include "vu_handover.h"
#include "workers.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_MAX_ADDRS 4
#define PATH_CHECK_S 1
#define FIFO_PIPE_SIZE (1L << 20) /* what grow_pipe() asks for */
#define DEFAULT_MAX_PER_PEER_TCP 64
#define STARVED_QUIET_MS 10000	 /* after accept() recovers, a relapse this soon is quiet */
#define STARVED_RELAPSE_PAUSES 5 /* ... unless it lasts this many pauses */

struct listener {
	struct evconnlistener *lev[LISTEN_MAX_ADDRS];
	size_t nlev;
	struct event *relisten;
	bool starved;		      /* accept() is failing: paused, retried each second */
	bool reported;		      /* this episode was logged */
	unsigned long pauses;	      /* in this episode */
	long long quiet_until;	      /* clock_ms(): a relapse before then is not logged */
	struct log_limit lim_starved; /* episodes that are logged are limited too */
	struct peercap *peers;	      /* tcp, unix: connections per peer (max-per-peer=) */
	struct unixpath path;	      /* unix: the socket file as bound */
	struct event *path_check;
	/* udp and fifo */
	struct udp_ep *udp;
	int fd, fifo_keeper;
};

/* What the peers of c speak, for the `listening on` line. */
static const char *speaks(const struct endpoint_conf *c)
{
	return c->kind == EP_VHOST ? "virtio-rng"
	       : c->control	   ? "control"
	       : c->opts.raw	   ? "raw"
				   : "egd";
}

static struct listener *listener_of(const struct endpoint *ep)
{
	return ep->impl;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct endpoint *ep = arg;
	struct listener *li = listener_of(ep);
	struct peercap_entry *counted;
	const struct transport *tr;
	void *ctx = NULL;
	bool refused;
	char peer[160], err[256];

	if (li->starved) {
		li->starved = false;
		li->quiet_until = clock_ms() + STARVED_QUIET_MS;
		if (li->reported) {
			log_limited(&li->lim_starved, LOG_WARNING,
				    "%s: accepting connections again after %lu pause(s) of 1 s",
				    ep->conf.spec, li->pauses);
		}
	}
	if (ep->conf.kind == EP_UNIX || ep->conf.kind == EP_VHOST) {
		snprintf(peer, sizeof(peer), "%s:%s#%d", endpoint_kind_name(ep->conf.kind),
			 ep->conf.path, (int)fd);
	} else {
		netaddr_format(sa, (socklen_t)len, peer, sizeof(peer));
	}
	if (ep->conf.control) {
		control_accept(ep, fd, peer);
		return;
	}
	counted = peercap_take(listener_of(ep)->peers, fd, sa, peer, &refused);
	if (refused) {
		close(fd);
		return;
	}
	if (ep->conf.kind == EP_VHOST) {
		if (vu_conn_new(ep->base, ep->cs, fd, &ep->conf.opts, peer,
				counted != NULL ? peercap_put : NULL, counted) < 0 &&
		    counted != NULL) {
			peercap_put(counted);
		}
		return;
	}
	tr = transport_for(&ep->conf);
	if (tr->attach != NULL &&
	    (ctx = tr->attach(fd, true, &ep->conf, err, sizeof(err))) == NULL) {
		log_warnx("%s: connection %s refused: %s", ep->conf.spec, peer, err);
		close(fd);
		if (counted != NULL) {
			peercap_put(counted);
		}
		return;
	}
	if (ep->conf.kind == EP_TCP) {
		netaddr_no_delay(fd);
	}
	if (workers_client_new(ep->workers, ep->cs, tr, ctx, fd, &ep->conf.opts, peer,
			       counted != NULL ? peercap_put : NULL, counted, NULL, NULL) < 0 &&
	    counted != NULL) {
		peercap_put(counted);
	}
}

static void relisten_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *li = arg;

	for (size_t i = 0; i < li->nlev; i++) {
		evconnlistener_enable(li->lev[i]);
	}
}

/* accept() failed (for instance out of descriptors): pause this endpoint for a second
 * instead of spinning, and try again. One line when an episode starts and one when a
 * connection is accepted again, not one per pause. Right after a recovery the backlog that
 * piled up can hit the limit once more: such a relapse is logged only if it lasts
 * STARVED_RELAPSE_PAUSES. Logged episodes go through a log_limit. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct endpoint *ep = arg;
	struct listener *li = listener_of(ep);
	struct timeval tv = {1, 0};
	int err = EVUTIL_SOCKET_ERROR();

	if (!li->starved) {
		li->starved = true;
		li->pauses = 0;
		li->reported = false;
	}
	li->pauses++;
	if (!li->reported &&
	    (clock_ms() >= li->quiet_until || li->pauses >= STARVED_RELAPSE_PAUSES)) {
		li->reported = true;
		log_limited(&li->lim_starved, LOG_WARNING,
			    "%s: accept failed: %s; pausing this endpoint 1 s at a time until a "
			    "connection is accepted again",
			    ep->conf.spec, evutil_socket_error_to_string(err));
	}
	for (size_t i = 0; i < li->nlev; i++) {
		evconnlistener_disable(li->lev[i]);
	}
	evtimer_add(li->relisten, &tv);
}

static int add_listener(struct endpoint *ep, int fd, char *err, size_t errlen)
{
	struct listener *li = listener_of(ep);
	struct evconnlistener *l;

	if (li->nlev == LISTEN_MAX_ADDRS) {
		snprintf(err, errlen, "%s: too many addresses", ep->conf.spec);
		close(fd);
		return -1;
	}
	l = evconnlistener_new(ep->base, accept_cb, ep,
			       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (l == NULL) {
		snprintf(err, errlen, "%s: cannot watch the socket", ep->conf.spec);
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(l, accept_error_cb);
	li->lev[li->nlev++] = l;
	return 0;
}

static void free_listeners(struct listener *li)
{
	for (size_t i = 0; i < li->nlev; i++) {
		evconnlistener_free(li->lev[i]);
	}
	li->nlev = 0;
}

/* The module state every listening kind starts from. */
static int listener_new(struct endpoint *ep, char *err, size_t errlen)
{
	struct listener *li = calloc(1, sizeof(*li));

	if (li == NULL || (li->relisten = evtimer_new(ep->base, relisten_cb, li)) == NULL) {
		free(li);
		snprintf(err, errlen, "%s: out of memory", ep->conf.spec);
		return -1;
	}
	li->fd = li->fifo_keeper = -1;
	ep->impl = li;
	return 0;
}

/* The most connections one peer may hold on a stream listener; 0 = no limit. */
static unsigned peer_cap(const struct endpoint *ep)
{
	if (ep->conf.opts.has_max_per_peer) {
		return ep->conf.opts.max_per_peer;
	}
	return ep->conf.kind == EP_TCP ? DEFAULT_MAX_PER_PEER_TCP : 0;
}

/* A stream listener: the state, and its per-peer counts. */
static int stream_listener_new(struct endpoint *ep, char *err, size_t errlen)
{
	if (listener_new(ep, err, errlen) < 0) {
		return -1;
	}
	if (peer_cap(ep) > 0 &&
	    (listener_of(ep)->peers = peercap_new(ep->conf.spec, peer_cap(ep))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", ep->conf.spec);
		return -1;
	}
	return 0;
}

int listen_bind_inet(struct endpoint *ep, const struct addrinfo *ai, char *err, size_t errlen)
{
	int one = 1;
	bool stream = ai->ai_socktype == SOCK_STREAM;
	int fd = inherit_take_inet(ep->inherited, ai->ai_socktype, ai->ai_addr);

	if (fd >= 0) {
		evutil_make_socket_nonblocking(fd);
		return fd;
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "%s: socket: %s", ep->conf.spec, strerror(errno));
		return -1;
	}
	/* TCP only: a restart must not wait out TIME_WAIT. On UDP, SO_REUSEADDR would let any
	 * local process bind the same address beside us and answer some guests' requests. */
	if (stream) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	}
	if (ai->ai_family == AF_INET6) {
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || (stream && listen(fd, SOMAXCONN) < 0)) {
		snprintf(err, errlen, "%s: cannot listen: %s", ep->conf.spec, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int resolve(const struct endpoint *ep, int type, struct addrinfo **res, char *err,
		   size_t errlen)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = type, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	int rc = getaddrinfo(ep->conf.host, ep->conf.port, &hints, res);

	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", ep->conf.spec, gai_strerror(rc));
		return -1;
	}
	return 0;
}

static int open_tcp(struct endpoint *ep, char *err, size_t errlen)
{
	struct addrinfo *res, *ai;

	if (stream_listener_new(ep, err, errlen) < 0 ||
	    resolve(ep, SOCK_STREAM, &res, err, errlen) < 0) {
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = listen_bind_inet(ep, ai, err, errlen);
		char name[160];

		if (fd < 0) {
			freeaddrinfo(res);
			return -1;
		}
		netaddr_sock_name(fd, "tcp", name, sizeof(name));
		if (add_listener(ep, fd, err, errlen) < 0) {
			freeaddrinfo(res);
			return -1;
		}
		log_info("listening on %s (%s)", name, ep->conf.opts.raw ? "raw" : "egd");
	}
	freeaddrinfo(res);
	return 0;
}

static int open_udp(struct endpoint *ep, char *err, size_t errlen)
{
	struct listener *li;
	struct addrinfo *res;
	char name[160];

	if (listener_new(ep, err, errlen) < 0 || resolve(ep, SOCK_DGRAM, &res, err, errlen) < 0) {
		return -1;
	}
	li = listener_of(ep);
	li->fd = listen_bind_inet(ep, res, err, errlen);
	freeaddrinfo(res);
	if (li->fd < 0) {
		return -1;
	}
	netaddr_sock_name(li->fd, "udp", name, sizeof(name));
	li->udp = udp_listen(ep->base, ep->cs, li->fd, name, &ep->conf.opts, ep->conf.allow,
			     ep->conf.nallow);
	if (li->udp == NULL) {
		snprintf(err, errlen, "%s: cannot watch the socket", ep->conf.spec);
		return -1;
	}
	log_info("listening on %s (egd, %zu allowed prefix(es))", name, ep->conf.nallow);
	return 0;
}

/* Grow the pipe to 1 MiB, or to /proc/sys/fs/pipe-max-size if that is less, so that it
 * holds a long run of reads and entropyd refills it in large batches. Returns its size. */
static long grow_pipe(int fd)
{
	long want = FIFO_PIPE_SIZE, max = 0;
	FILE *f = fopen("/proc/sys/fs/pipe-max-size", "re");

	if (f != NULL) {
		if (fscanf(f, "%ld", &max) == 1 && max > 0 && max < want) {
			want = max;
		}
		fclose(f);
	}
	(void)fcntl(fd, F_SETPIPE_SZ, (int)want); /* on failure the pipe keeps its size */
	return fcntl(fd, F_GETPIPE_SZ);
}

/* A named pipe for QEMU's rng-random: entropyd keeps a read end of its own open, so the
 * pipe never reports a missing reader, and keeps the pipe full through a raw client. */
static int open_fifo(struct endpoint *ep, char *err, size_t errlen)
{
	struct endpoint_conf *c = &ep->conf;
	struct listener *li;
	char peer[160];
	struct stat sb;
	bool has_id;
	dev_t dev;
	ino_t ino;

	if (listener_new(ep, err, errlen) < 0) {
		return -1;
	}
	li = listener_of(ep);
	li->fd = inherit_take_path(ep->inherited, c->path, true, &has_id, &dev, &ino);
	if (li->fd < 0) {
		if (mkfifo(c->path, c->has_mode ? c->mode : 0600) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "%s: mkfifo: %s", c->spec, strerror(errno));
			return -1;
		}
		li->fifo_keeper = open(c->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		li->fd = open(c->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	} else {
		li->fifo_keeper = open(c->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	}
	if (li->fifo_keeper < 0 || li->fd < 0 || fstat(li->fd, &sb) < 0 || !S_ISFIFO(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a usable named pipe: %s", c->spec,
			 errno ? strerror(errno) : "not a FIFO");
		return -1;
	}
	if (unixpath_apply_perms(c, err, errlen) < 0) {
		return -1;
	}
	c->opts.raw = true;
	snprintf(peer, sizeof(peer), "fifo:%s", c->path);
	/* The pipe's descriptor must outlive the client: the client gets a duplicate. */
	int dup = fcntl(li->fd, F_DUPFD_CLOEXEC, 3);
	if (dup < 0 ||
	    client_new(ep->cs, &transport_pipe, NULL, dup, &c->opts, peer, NULL, NULL) == NULL) {
		snprintf(err, errlen, "%s: cannot serve the pipe", c->spec);
		return -1;
	}
	log_info("listening on fifo:%s (raw, pipe of %ld bytes; for QEMU -object "
		 "rng-random,filename=%s)",
		 c->path, grow_pipe(li->fd), c->path);
	return 0;
}

/* Every PATH_CHECK_S: a socket file that was removed (or replaced by a dead one) is bound
 * again; connected clients are not touched. */
static void path_check_cb(evutil_socket_t unused, short what, void *arg)
{
	struct endpoint *ep = arg;
	struct listener *li = listener_of(ep);
	char err[320];
	int fd;

	switch (unixpath_state(&li->path, ep->conf.path)) {
	case UNIXPATH_OURS:
		li->path.taken = false;
		return;
	case UNIXPATH_TAKEN:
		if (!li->path.taken) {
			log_warnx("unix:%s: %s", ep->conf.path, li->path.why);
			li->path.taken = true;
		}
		return;
	case UNIXPATH_FREE:
		break;
	}
	log_warnx("unix:%s: socket file was removed or replaced; binding it again", ep->conf.path);
	fd = unixpath_bind(&li->path, &ep->conf, err, sizeof(err));
	if (fd < 0) {
		log_warnx("%s; trying again in %d s", err, PATH_CHECK_S);
		return;
	}
	free_listeners(li);
	if (add_listener(ep, fd, err, sizeof(err)) < 0) {
		log_warnx("%s", err);
		return;
	}
	log_info("listening on %s:%s (%s)", endpoint_kind_name(ep->conf.kind), ep->conf.path,
		 speaks(&ep->conf));
}

static int open_unix(struct endpoint *ep, char *err, size_t errlen)
{
	const struct endpoint_conf *c = &ep->conf;
	struct timeval every = {PATH_CHECK_S, 0};
	struct listener *li;
	struct sockaddr_un sun;
	bool has_id;
	int fd;

	if (netaddr_unix(c->path, &sun, err, errlen) < 0 ||
	    stream_listener_new(ep, err, errlen) < 0) {
		return -1;
	}
	li = listener_of(ep);
	li->path_check = event_new(ep->base, -1, EV_PERSIST, path_check_cb, ep);
	if (li->path_check == NULL) {
		snprintf(err, errlen, "%s: out of memory", c->spec);
		return -1;
	}
	fd =
	    inherit_take_path(ep->inherited, c->path, false, &has_id, &li->path.dev, &li->path.ino);
	if (fd >= 0 && has_id && unixpath_state(&li->path, c->path) == UNIXPATH_FREE) {
		/* Adopted by its bound name, but the file is gone: the socket is unreachable. */
		log_warnx("unix:%s: socket file was removed or replaced; binding it again",
			  c->path);
		close(fd);
		fd = -1;
	} else if (fd >= 0) {
		if (has_id) {
			li->path.owned = true;
		} else {
			unixpath_adopt(&li->path, c->path); /* socket activation: it is ours */
		}
		evutil_make_socket_nonblocking(fd);
	} else {
		unixpath_make_parent(c->path);
	}
	if (fd < 0) {
		fd = unixpath_bind(&li->path, c, err, errlen);
	}
	if (fd < 0 || add_listener(ep, fd, err, errlen) < 0) {
		return -1;
	}
	event_add(li->path_check, &every);
	log_info("listening on %s:%s (%s)", endpoint_kind_name(c->kind), c->path, speaks(c));
	return 0;
}

static size_t keep(const struct endpoint *ep, struct inherit_kept *out, size_t room)
{
	const struct listener *li = listener_of(ep);
	size_t n = 0;

	if (li == NULL) {
		return 0;
	}
	for (size_t i = 0; i < li->nlev && n < room; i++, n++) {
		out[n] = (struct inherit_kept){.fd = evconnlistener_get_fd(li->lev[i]),
					       .has_id = ep->conf.kind == EP_UNIX ||
							 ep->conf.kind == EP_VHOST,
					       .dev = li->path.dev,
					       .ino = li->path.ino};
	}
	if (li->fd >= 0 && n < room) {
		out[n++] = (struct inherit_kept){.fd = li->fd};
	}
	return n;
}

/* A connection the previous image accepted, handed over across a reload (handover.h):
 * counted against max-per-peer= again, and served as if just accepted (on the thread with
 * the fewest clients; the control socket's on the main thread). */
static int adopt(struct endpoint *ep, int fd, const struct handover_rec *r)
{
	struct client_opts control = {.endpoint = ep->conf.spec}; /* as control.c's get */
	bool refused = false;
	struct peercap_entry *counted =
	    ep->conf.control ? NULL : peercap_retake(listener_of(ep)->peers, fd, r->peer, &refused);

	if (refused) {
		close(fd);
		return -1;
	}
	if (handover_adopt(ep->conf.control ? NULL : ep->workers, ep->cs, fd,
			   ep->conf.control ? &control : &ep->conf.opts, r,
			   counted != NULL ? peercap_put : NULL, counted) < 0) {
		if (counted != NULL) {
			peercap_put(counted);
		}
		return -1;
	}
	return 0;
}

/* The same for a vhost-user device (vu_handover.h). */
static int adopt_vu(struct endpoint *ep, const struct handover_vu_rec *r)
{
	bool refused;
	struct peercap_entry *counted =
	    peercap_retake(listener_of(ep)->peers, r->fd, r->peer, &refused);

	if (refused) {
		vu_handover_drop(r, "over max-per-peer=");
		return -1;
	}
	if (vu_handover_resume(ep->base, ep->cs, &ep->conf.opts, r,
			       counted != NULL ? peercap_put : NULL, counted) < 0) {
		if (counted != NULL) {
			peercap_put(counted);
		}
		return -1;
	}
	return 0;
}

static void close_listener(struct endpoint *ep)
{
	struct listener *li = listener_of(ep);

	if (li == NULL) {
		return;
	}
	free_listeners(li);
	if (ep->conf.control) {
		control_close(ep);
	}
	if (ep->conf.kind == EP_UNIX || ep->conf.kind == EP_VHOST) {
		unixpath_remove(&li->path, ep->conf.path);
	}
	if (li->path_check != NULL) {
		event_free(li->path_check);
	}
	event_free(li->relisten);
	peercap_free(li->peers);
	udp_free(li->udp);
	if (li->fd >= 0) {
		close(li->fd);
	}
	if (li->fifo_keeper >= 0) {
		close(li->fifo_keeper);
	}
	free(li);
	ep->impl = NULL;
}

const struct endpoint_ops listen_tcp_ops = {
    .open = open_tcp, .keep = keep, .close = close_listener, .adopt = adopt};
const struct endpoint_ops listen_unix_ops = {
    .open = open_unix, .keep = keep, .close = close_listener, .adopt = adopt, .adopt_vu = adopt_vu};
const struct endpoint_ops listen_udp_ops = {
    .open = open_udp, .keep = keep, .close = close_listener};
const struct endpoint_ops listen_fifo_ops = {
    .open = open_fifo, .keep = keep, .close = close_listener};
