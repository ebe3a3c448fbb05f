/* listen: see listen.h. A listening endpoint is one or more bound sockets handed to
 * libevent's listener; a connecting endpoint is a small state machine (idle -> dialing ->
 * connected -> idle) driven by one timer and one write event. */
#include "listen.h"

#include "log.h"
#include "netaddr.h"
#include "udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define DIAL_BACKOFF_MIN_MS 100
#define DIAL_BACKOFF_MAX_MS 5000
#define DIAL_TIMEOUT_S 5
#define MAX_INHERITED 64
#define PEER_BUCKETS 64
#define PEER_KEY_LEN 9
#define DEFAULT_MAX_PER_PEER_TCP 64

/* Live connections of one peer on a listener (max-per-peer=): the peer is an IPv4 address,
 * an IPv6 /64, or the uid of a unix-socket peer. Freed when its last connection closes. */
struct peer_count {
	struct endpoint *ep;
	struct peer_count *next;
	unsigned n;
	uint8_t key[PEER_KEY_LEN];
};

struct endpoint {
	struct endpoints *eps;
	struct endpoint_conf conf;
	struct evconnlistener *lev[4];
	struct event *relisten;
	size_t nlev;
	bool own_path; /* we created the unix socket file */
	struct udp_ep *udp;
	int udp_fd, fifo_fd, fifo_keeper;
	/* connecting endpoints */
	struct event *timer, *dial_ev;
	int dial_fd;
	unsigned backoff_ms;
	int last_errno;
	/* listeners: connections per peer (max-per-peer=) */
	struct peer_count *peers[PEER_BUCKETS];
	struct log_limit cap_log;
	struct endpoint *next;
};

struct endpoints {
	struct event_base *base;
	struct clients *cs;
	struct endpoint *head;
	int inherited[MAX_INHERITED]; /* -1 once adopted */
	size_t ninherited;
};

struct endpoints *endpoints_new(struct event_base *base, struct clients *cs)
{
	struct endpoints *eps = calloc(1, sizeof(*eps));
	int n;

	if (eps == NULL) {
		return NULL;
	}
	eps->base = base;
	eps->cs = cs;
	n = sd_listen_fds(1);
	if (n > MAX_INHERITED) {
		log_warnx("%d sockets passed; using the first %d", n, MAX_INHERITED);
		n = MAX_INHERITED;
	}
	for (int i = 0; i < n; i++) {
		eps->inherited[eps->ninherited++] = SD_LISTEN_FDS_START + i;
	}
	if (n > 0) {
		log_info(
		    "%d listening socket(s) or pipe(s) passed in (socket activation or re-exec)",
		    n);
	}
	return eps;
}

/* Take an inherited descriptor that matches; -1 if none. */
static int adopt_inet(struct endpoints *eps, int type, const struct sockaddr *want)
{
	for (size_t i = 0; i < eps->ninherited; i++) {
		int fd = eps->inherited[i];
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (fd >= 0 && sd_is_socket(fd, AF_UNSPEC, type, -1) > 0 &&
		    getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
		    netaddr_same_inet((struct sockaddr *)&ss, want)) {
			eps->inherited[i] = -1;
			return fd;
		}
	}
	return -1;
}

static int adopt_path(struct endpoints *eps, const char *path, bool fifo)
{
	for (size_t i = 0; i < eps->ninherited; i++) {
		int fd = eps->inherited[i];

		if (fd >= 0 && (fifo ? sd_is_fifo(fd, path)
				     : sd_is_socket_unix(fd, SOCK_STREAM, 1, path, 0)) > 0) {
			eps->inherited[i] = -1;
			return fd;
		}
	}
	return -1;
}

/* The most connections one peer may hold on ep; 0 = no limit. */
static unsigned peer_cap(const struct endpoint *ep)
{
	if (ep->conf.opts.has_max_per_peer) {
		return ep->conf.opts.max_per_peer;
	}
	return ep->conf.kind == EP_TCP ? DEFAULT_MAX_PER_PEER_TCP : 0;
}

/* The key a connection is counted by, and its name for log lines; -1 if unknown. */
static int peer_key(int fd, const struct sockaddr *sa, uint8_t key[PEER_KEY_LEN], char *name,
		    size_t namelen)
{
	memset(key, 0, PEER_KEY_LEN);
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		char host[INET6_ADDRSTRLEN];

		if (!IN6_IS_ADDR_V4MAPPED(a)) {
			struct in6_addr net = *a;

			key[0] = 6;
			memcpy(key + 1, a->s6_addr, 8);
			memset(net.s6_addr + 8, 0, 8);
			inet_ntop(AF_INET6, &net, host, sizeof(host));
			snprintf(name, namelen, "%s/64", host);
			return 0;
		}
		key[0] = 4;
		memcpy(key + 1, a->s6_addr + 12, 4);
	} else if (sa->sa_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else {
		struct ucred cred;
		socklen_t len = sizeof(cred);

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
			return -1;
		}
		key[0] = 'u';
		memcpy(key + 1, &cred.uid, sizeof(cred.uid));
		snprintf(name, namelen, "uid %u", (unsigned)cred.uid);
		return 0;
	}
	inet_ntop(AF_INET, key + 1, name, (socklen_t)namelen);
	return 0;
}

static struct peer_count **peer_slot(struct endpoint *ep, const uint8_t key[PEER_KEY_LEN])
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < PEER_KEY_LEN; i++) {
		h = (h ^ key[i]) * 16777619u;
	}
	return &ep->peers[h % PEER_BUCKETS];
}

/* The count for key, created (at 0) if absent; NULL when out of memory. */
static struct peer_count *peer_get(struct endpoint *ep, const uint8_t key[PEER_KEY_LEN])
{
	struct peer_count **slot = peer_slot(ep, key);
	struct peer_count *pc;

	for (pc = *slot; pc != NULL; pc = pc->next) {
		if (memcmp(pc->key, key, PEER_KEY_LEN) == 0) {
			return pc;
		}
	}
	pc = calloc(1, sizeof(*pc));
	if (pc == NULL) {
		return NULL;
	}
	pc->ep = ep;
	memcpy(pc->key, key, PEER_KEY_LEN);
	pc->next = *slot;
	*slot = pc;
	return pc;
}

/* One connection of pc's peer is gone (a client's close callback). */
static void peer_put(void *arg)
{
	struct peer_count *pc = arg;
	struct peer_count **p;

	if (pc->n > 0) {
		pc->n--;
	}
	if (pc->n > 0) {
		return;
	}
	for (p = peer_slot(pc->ep, pc->key); *p != NULL; p = &(*p)->next) {
		if (*p == pc) {
			*p = pc->next;
			break;
		}
	}
	free(pc);
}

/* Free ep's per-peer counts (clients that outlive them get no close callback). */
static void peers_free(struct endpoint *ep)
{
	for (size_t i = 0; i < PEER_BUCKETS; i++) {
		while (ep->peers[i] != NULL) {
			struct peer_count *pc = ep->peers[i];

			ep->peers[i] = pc->next;
			free(pc);
		}
	}
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct endpoint *ep = arg;
	unsigned cap = peer_cap(ep);
	struct peer_count *pc = NULL;
	uint8_t key[PEER_KEY_LEN];
	char peer[160], who[INET6_ADDRSTRLEN + 8];

	if (ep->conf.kind == EP_UNIX) {
		snprintf(peer, sizeof(peer), "unix:%s#%d", ep->conf.path, (int)fd);
	} else {
		netaddr_format(sa, (socklen_t)len, peer, sizeof(peer));
	}
	if (cap > 0 && peer_key(fd, sa, key, who, sizeof(who)) == 0) {
		pc = peer_get(ep, key); /* out of memory: served uncounted */
		if (pc != NULL && pc->n >= cap) {
			log_limited(&ep->cap_log, LOG_WARNING,
				    "%s: connection %s refused: %s already holds %u "
				    "(max-per-peer=%u); closed",
				    ep->conf.spec, peer, who, pc->n, cap);
			close(fd);
			return;
		}
		if (pc != NULL) {
			pc->n++;
		}
	}
	if (ep->conf.kind != EP_UNIX) {
		netaddr_no_delay(fd);
	}
	if (client_new(ep->eps->cs, fd, &ep->conf.opts, peer, pc != NULL ? peer_put : NULL, pc) ==
		NULL &&
	    pc != NULL) {
		peer_put(pc);
	}
}

static void relisten_cb(evutil_socket_t fd, short what, void *arg)
{
	struct endpoint *ep = arg;

	for (size_t i = 0; i < ep->nlev; i++) {
		evconnlistener_enable(ep->lev[i]);
	}
}

/* accept() failed (for instance out of descriptors): pause this endpoint for a second
 * instead of spinning, and say so once per pause. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct endpoint *ep = arg;
	struct timeval tv = {1, 0};

	log_warn("%s: accept failed; pausing this endpoint for 1 s", ep->conf.spec);
	for (size_t i = 0; i < ep->nlev; i++) {
		evconnlistener_disable(ep->lev[i]);
	}
	evtimer_add(ep->relisten, &tv);
}

static int add_listener(struct endpoint *ep, int fd, char *err, size_t errlen)
{
	struct evconnlistener *l;

	if (ep->nlev == sizeof(ep->lev) / sizeof(ep->lev[0])) {
		snprintf(err, errlen, "%s: too many addresses", ep->conf.spec);
		close(fd);
		return -1;
	}
	l = evconnlistener_new(ep->eps->base, accept_cb, ep,
			       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (l == NULL) {
		snprintf(err, errlen, "%s: cannot watch the socket", ep->conf.spec);
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(l, accept_error_cb);
	ep->lev[ep->nlev++] = l;
	return 0;
}

/* Bind (or adopt an inherited) socket for one address of an inet endpoint. */
static int bind_inet(struct endpoint *ep, const struct addrinfo *ai, char *err, size_t errlen)
{
	int one = 1;
	bool stream = ai->ai_socktype == SOCK_STREAM;
	int fd = adopt_inet(ep->eps, ai->ai_socktype, ai->ai_addr);

	if (fd >= 0) {
		evutil_make_socket_nonblocking(fd);
		return fd;
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "%s: socket: %s", ep->conf.spec, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
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

static int listen_tcp(struct endpoint *ep, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res, *ai;
	int rc = getaddrinfo(ep->conf.host, ep->conf.port, &hints, &res);

	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", ep->conf.spec, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = bind_inet(ep, ai, err, errlen);
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

static int listen_udp(struct endpoint *ep, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_DGRAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res;
	char name[160];
	int rc = getaddrinfo(ep->conf.host, ep->conf.port, &hints, &res);

	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", ep->conf.spec, gai_strerror(rc));
		return -1;
	}
	ep->udp_fd = bind_inet(ep, res, err, errlen);
	freeaddrinfo(res);
	if (ep->udp_fd < 0) {
		return -1;
	}
	netaddr_sock_name(ep->udp_fd, "udp", name, sizeof(name));
	ep->udp = udp_listen(ep->eps->base, ep->eps->cs, ep->udp_fd, name, &ep->conf.opts,
			     ep->conf.allow, ep->conf.nallow);
	if (ep->udp == NULL) {
		snprintf(err, errlen, "%s: cannot watch the socket", ep->conf.spec);
		return -1;
	}
	log_info("listening on %s (egd, %zu allowed prefix(es))", name, ep->conf.nallow);
	return 0;
}

/* A named pipe for QEMU's rng-random: entropyd keeps a read end of its own open, so the
 * pipe never reports a missing reader, and keeps the pipe full through a raw client. */
static int listen_fifo(struct endpoint *ep, char *err, size_t errlen)
{
	static const struct client_io pipe_io = {.no_input = true};
	struct endpoint_conf *c = &ep->conf;
	char peer[160];

	ep->fifo_fd = adopt_path(ep->eps, c->path, true);
	if (ep->fifo_fd < 0) {
		if (mkfifo(c->path, c->has_mode ? c->mode : 0600) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "%s: mkfifo: %s", c->spec, strerror(errno));
			return -1;
		}
		ep->fifo_keeper = open(c->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		ep->fifo_fd = open(c->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	} else {
		ep->fifo_keeper = open(c->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	}
	struct stat sb;
	if (ep->fifo_keeper < 0 || ep->fifo_fd < 0 || fstat(ep->fifo_fd, &sb) < 0 ||
	    !S_ISFIFO(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a usable named pipe: %s", c->spec,
			 errno ? strerror(errno) : "not a FIFO");
		return -1;
	}
	if ((c->has_mode && chmod(c->path, c->mode) < 0) ||
	    ((c->has_owner || c->has_group) && chown(c->path, c->has_owner ? c->owner : (uid_t)-1,
						     c->has_group ? c->group : (gid_t)-1) < 0)) {
		snprintf(err, errlen, "%s: %s", c->spec, strerror(errno));
		return -1;
	}
	c->opts.raw = true;
	snprintf(peer, sizeof(peer), "fifo:%s", c->path);
	/* The pipe's descriptor must outlive the client: the client gets a duplicate. */
	int dup = fcntl(ep->fifo_fd, F_DUPFD_CLOEXEC, 3);
	if (dup < 0 ||
	    client_new_io(ep->eps->cs, dup, &c->opts, peer, NULL, NULL, &pipe_io) == NULL) {
		snprintf(err, errlen, "%s: cannot serve the pipe", c->spec);
		return -1;
	}
	log_info("listening on fifo:%s (raw; for QEMU -object rng-random,filename=%s)", c->path,
		 c->path);
	return 0;
}

static int unix_addr(const char *path, struct sockaddr_un *sun, char *err, size_t errlen)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		snprintf(err, errlen, "unix:%s: path longer than %zu bytes", path,
			 sizeof(sun->sun_path) - 1);
		return -1;
	}
	strcpy(sun->sun_path, path);
	return 0;
}

/* A socket file left by a previous run is removed; one that another process serves is not. */
static int clear_stale_socket(const char *path, const struct sockaddr_un *sun, char *err,
			      size_t errlen)
{
	struct stat sb;
	int fd;

	if (lstat(path, &sb) < 0) {
		return 0;
	}
	if (!S_ISSOCK(sb.st_mode)) {
		snprintf(err, errlen, "unix:%s: exists and is not a socket", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0) {
		close(fd);
		snprintf(err, errlen, "unix:%s: in use by another process", path);
		return -1;
	}
	if (fd >= 0) {
		close(fd);
	}
	unlink(path);
	return 0;
}

static int listen_unix(struct endpoint *ep, char *err, size_t errlen)
{
	const struct endpoint_conf *c = &ep->conf;
	struct sockaddr_un sun;
	char dir[sizeof(sun.sun_path)];
	char *slash;
	int fd;

	if (unix_addr(c->path, &sun, err, errlen) < 0) {
		return -1;
	}
	fd = adopt_path(ep->eps, c->path, false);
	if (fd >= 0) {
		evutil_make_socket_nonblocking(fd);
		ep->own_path = true;
		if (add_listener(ep, fd, err, errlen) < 0) {
			return -1;
		}
		log_info("listening on unix:%s (%s)", c->path, c->opts.raw ? "raw" : "egd");
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s", c->path);
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) == 0) {
			log_info("created directory %s", dir);
		}
	}
	if (clear_stale_socket(c->path, &sun, err, errlen) < 0) {
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(err, errlen, "%s: cannot bind: %s", c->spec, strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
		return -1;
	}
	ep->own_path = true;
	if ((c->has_mode && chmod(c->path, c->mode) < 0) ||
	    ((c->has_owner || c->has_group) && chown(c->path, c->has_owner ? c->owner : (uid_t)-1,
						     c->has_group ? c->group : (gid_t)-1) < 0) ||
	    listen(fd, SOMAXCONN) < 0) {
		snprintf(err, errlen, "%s: %s", c->spec, strerror(errno));
		close(fd);
		return -1;
	}
	if (add_listener(ep, fd, err, errlen) < 0) {
		return -1;
	}
	log_info("listening on unix:%s (%s)", c->path, c->opts.raw ? "raw" : "egd");
	return 0;
}

static void dial(struct endpoint *ep);

static void schedule_dial(struct endpoint *ep)
{
	struct timeval tv = {ep->backoff_ms / 1000, (ep->backoff_ms % 1000) * 1000};

	evtimer_add(ep->timer, &tv);
	ep->backoff_ms *= 2;
	if (ep->backoff_ms > DIAL_BACKOFF_MAX_MS) {
		ep->backoff_ms = DIAL_BACKOFF_MAX_MS;
	}
}

static void dial_failed(struct endpoint *ep, int err)
{
	if (ep->dial_fd >= 0) {
		close(ep->dial_fd);
		ep->dial_fd = -1;
	}
	if (err != ep->last_errno) {
		log_warnx("%s: cannot connect: %s; retrying every %u ms at most", ep->conf.spec,
			  strerror(err), DIAL_BACKOFF_MAX_MS);
		ep->last_errno = err;
	} else {
		log_debug("%s: cannot connect: %s", ep->conf.spec, strerror(err));
	}
	schedule_dial(ep);
}

static void connection_closed(void *arg)
{
	struct endpoint *ep = arg;

	log_info("%s: connection lost; redialing", ep->conf.spec);
	ep->last_errno = 0;
	ep->backoff_ms = DIAL_BACKOFF_MIN_MS;
	schedule_dial(ep);
}

static void dial_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct endpoint *ep = arg;
	int soerr = ETIMEDOUT;
	socklen_t len = sizeof(soerr);

	if ((what & EV_WRITE) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
		soerr = errno;
	}
	if (soerr != 0) {
		dial_failed(ep, soerr);
		return;
	}
	ep->dial_fd = -1;
	ep->last_errno = 0;
	ep->backoff_ms = DIAL_BACKOFF_MIN_MS;
	log_info("connected to %s", ep->conf.spec);
	if (ep->conf.kind == EP_TCP) {
		netaddr_no_delay(fd);
	}
	client_new(ep->eps->cs, fd, &ep->conf.opts, ep->conf.spec, connection_closed, ep);
}

/* A connected UDP socket to adopt (kept across a re-exec): same local address, same peer. */
static int adopt_udp_connected(struct endpoints *eps, const struct sockaddr *peer)
{
	for (size_t i = 0; i < eps->ninherited; i++) {
		int fd = eps->inherited[i];
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (fd >= 0 && sd_is_socket(fd, AF_UNSPEC, SOCK_DGRAM, -1) > 0 &&
		    getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
		    netaddr_same_inet((struct sockaddr *)&ss, peer)) {
			eps->inherited[i] = -1;
			return fd;
		}
	}
	return -1;
}

/* UDP has no connection to wait for: bind the local address QEMU sends to (local=), connect
 * to QEMU's address, and serve that one peer. The endpoint keeps this socket for its whole
 * life and passes it across a re-exec: if the port were ever unbound while QEMU runs, an
 * ICMP error would make QEMU stop reading its chardev for good. */
static void dial_udp(struct endpoint *ep, const struct sockaddr_storage *ss, socklen_t sslen)
{
	struct udp_prefix only;
	char host[INET6_ADDRSTRLEN], name[200];
	int one = 1;
	int fd = adopt_udp_connected(ep->eps, (const struct sockaddr *)ss);

	if (fd < 0) {
		fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			dial_failed(ep, errno);
			return;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	}
	if (ep->conf.local_host != NULL && netaddr_port(fd) == 0) {
		struct addrinfo hints = {.ai_family = ss->ss_family,
					 .ai_socktype = SOCK_DGRAM,
					 .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
		struct addrinfo *res;
		int rc = getaddrinfo(ep->conf.local_host, ep->conf.local_port, &hints, &res);

		if (rc != 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
			int e = rc != 0 ? EADDRNOTAVAIL : errno;

			if (rc == 0) {
				freeaddrinfo(res);
			}
			close(fd);
			dial_failed(ep, e);
			return;
		}
		freeaddrinfo(res);
	}
	if (connect(fd, (const struct sockaddr *)ss, sslen) < 0) {
		int e = errno;

		close(fd);
		dial_failed(ep, e);
		return;
	}
	getnameinfo((const struct sockaddr *)ss, sslen, host, sizeof(host), NULL, 0,
		    NI_NUMERICHOST);
	if (udp_parse_prefix(host, &only) < 0) {
		close(fd);
		dial_failed(ep, EINVAL);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	snprintf(name, sizeof(name), "%s", ep->conf.spec);
	ep->udp_fd = fd;
	ep->udp = udp_listen(ep->eps->base, ep->eps->cs, fd, name, &ep->conf.opts, &only, 1);
	if (ep->udp == NULL) {
		ep->udp_fd = -1;
		close(fd);
		dial_failed(ep, ENOMEM);
		return;
	}
	ep->last_errno = 0;
	log_info("connected to %s", ep->conf.spec);
}

static void dial(struct endpoint *ep)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	char err[256];

	if (ep->conf.kind == EP_UNIX) {
		if (unix_addr(ep->conf.path, (struct sockaddr_un *)&ss, err, sizeof(err)) < 0) {
			dial_failed(ep, ENAMETOOLONG);
			return;
		}
		sslen = sizeof(struct sockaddr_un);
	} else {
		bool udp = ep->conf.kind == EP_UDP;
		struct addrinfo hints = {.ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM,
					 .ai_flags = AI_NUMERICSERV};
		struct addrinfo *res;
		int rc = getaddrinfo(ep->conf.host, ep->conf.port, &hints, &res);

		if (rc != 0) {
			log_warnx("%s: %s", ep->conf.spec, gai_strerror(rc));
			dial_failed(ep, EHOSTUNREACH);
			return;
		}
		memcpy(&ss, res->ai_addr, res->ai_addrlen);
		sslen = res->ai_addrlen;
		freeaddrinfo(res);
	}
	if (ep->conf.kind == EP_UDP) {
		dial_udp(ep, &ss, sslen);
		return;
	}
	ep->dial_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ep->dial_fd < 0) {
		dial_failed(ep, errno);
		return;
	}
	if (connect(ep->dial_fd, (struct sockaddr *)&ss, sslen) < 0 && errno != EINPROGRESS) {
		dial_failed(ep, errno);
		return;
	}
	struct timeval tv = {DIAL_TIMEOUT_S, 0};
	event_assign(ep->dial_ev, ep->eps->base, ep->dial_fd, EV_WRITE, dial_done_cb, ep);
	event_add(ep->dial_ev, &tv);
}

static void dial_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	dial(arg);
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

int endpoints_add(struct endpoints *eps, const struct endpoint_conf *conf, char *err, size_t errlen)
{
	struct endpoint *ep = calloc(1, sizeof(*ep));
	int rc;

	if (ep == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ep->eps = eps;
	ep->conf = *conf;
	ep->conf.spec = dup_or_null(conf->spec);
	ep->conf.host = dup_or_null(conf->host);
	ep->conf.port = dup_or_null(conf->port);
	ep->conf.path = dup_or_null(conf->path);
	ep->conf.local_host = dup_or_null(conf->local_host);
	ep->conf.local_port = dup_or_null(conf->local_port);
	ep->dial_fd = ep->udp_fd = ep->fifo_fd = ep->fifo_keeper = -1;
	ep->next = eps->head;
	eps->head = ep;
	if (conf->connect) {
		ep->timer = evtimer_new(eps->base, dial_timer_cb, ep);
		ep->dial_ev = event_new(eps->base, -1, 0, NULL, NULL);
		ep->backoff_ms = DIAL_BACKOFF_MIN_MS;
		log_info("connecting to %s (%s)", conf->spec, conf->opts.raw ? "raw" : "egd");
		dial(ep);
		return 0;
	}
	ep->relisten = evtimer_new(eps->base, relisten_cb, ep);
	switch (conf->kind) {
	case EP_TCP:
		rc = listen_tcp(ep, err, errlen);
		break;
	case EP_UDP:
		rc = listen_udp(ep, err, errlen);
		break;
	case EP_FIFO:
		rc = listen_fifo(ep, err, errlen);
		break;
	default:
		rc = listen_unix(ep, err, errlen);
		break;
	}
	return rc;
}

void endpoints_free(struct endpoints *eps)
{
	if (eps == NULL) {
		return;
	}
	while (eps->head != NULL) {
		struct endpoint *ep = eps->head;

		eps->head = ep->next;
		for (size_t i = 0; i < ep->nlev; i++) {
			evconnlistener_free(ep->lev[i]);
		}
		if (ep->own_path) {
			unlink(ep->conf.path);
		}
		if (ep->timer != NULL) {
			event_free(ep->timer);
		}
		if (ep->dial_ev != NULL) {
			event_del(ep->dial_ev);
			event_free(ep->dial_ev);
		}
		if (ep->relisten != NULL) {
			event_free(ep->relisten);
		}
		udp_free(ep->udp);
		peers_free(ep);
		for (int *fd = &ep->dial_fd; fd <= &ep->fifo_keeper; fd++) {
			if (*fd >= 0) {
				close(*fd);
			}
		}
		free(ep->conf.spec);
		free(ep->conf.host);
		free(ep->conf.port);
		free(ep->conf.path);
		free(ep->conf.local_host);
		free(ep->conf.local_port);
		free(ep);
	}
	free(eps);
}

int endpoints_reexec(struct endpoints *eps, char *const argv[])
{
	int fds[MAX_INHERITED];
	size_t n = 0;
	char count[24], pid[24];

	for (struct endpoint *ep = eps->head; ep != NULL; ep = ep->next) {
		for (size_t i = 0; i < ep->nlev && n < MAX_INHERITED; i++) {
			fds[n++] = evconnlistener_get_fd(ep->lev[i]);
		}
		if (ep->udp_fd >= 0 && n < MAX_INHERITED) {
			fds[n++] = ep->udp_fd;
		}
		if (ep->fifo_fd >= 0 && n < MAX_INHERITED) {
			fds[n++] = ep->fifo_fd;
		}
	}
	if (access("/proc/self/exe", X_OK) < 0) {
		return -1;
	}
	/* Move them to 3, 4, … (first out of the way, so that no move overwrites another). */
	for (size_t i = 0; i < n; i++) {
		fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, SD_LISTEN_FDS_START + MAX_INHERITED + 1);
		if (fds[i] < 0) {
			return -1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (dup2(fds[i], SD_LISTEN_FDS_START + (int)i) < 0) {
			return -1;
		}
	}
	snprintf(count, sizeof(count), "%zu", n);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("LISTEN_FDS", count, 1);
	setenv("LISTEN_PID", pid, 1);
	unsetenv("LISTEN_FDNAMES");
	log_info("re-executing with %zu listening socket(s) and pipe(s) kept open", n);
	execv("/proc/self/exe", argv);
	return -1;
}
