/* listen: see listen.h. A listening endpoint is one or more bound sockets handed to
 * libevent's listener; a connecting endpoint is a small state machine (idle -> dialing ->
 * connected -> idle) driven by one timer and one write event. */
#include "listen.h"

#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DIAL_BACKOFF_MIN_MS 100
#define DIAL_BACKOFF_MAX_MS 5000
#define DIAL_TIMEOUT_S 5

struct endpoint {
	struct endpoints *eps;
	struct endpoint_conf conf;
	struct evconnlistener *lev[4];
	struct event *relisten;
	size_t nlev;
	bool own_path; /* we created the unix socket file */
	/* connecting endpoints */
	struct event *timer, *dial_ev;
	int dial_fd;
	unsigned backoff_ms;
	int last_errno;
	struct endpoint *next;
};

struct endpoints {
	struct event_base *base;
	struct clients *cs;
	struct endpoint *head;
};

struct endpoints *endpoints_new(struct event_base *base, struct clients *cs)
{
	struct endpoints *eps = calloc(1, sizeof(*eps));

	if (eps != NULL) {
		eps->base = base;
		eps->cs = cs;
	}
	return eps;
}

/* "tcp:127.0.0.1:8888", "tcp:[::1]:8888" or "unix:PATH" for a socket address. */
static void format_addr(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN], serv[16];

	if (sa->sa_family == AF_UNIX) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;

		snprintf(out, outlen, "unix:%s", len > sizeof(sa_family_t) ? sun->sun_path : "");
		return;
	}
	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(out, outlen, "tcp:?");
		return;
	}
	snprintf(out, outlen, sa->sa_family == AF_INET6 ? "tcp:[%s]:%s" : "tcp:%s:%s", host, serv);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct endpoint *ep = arg;
	char peer[160];

	if (ep->conf.kind == EP_UNIX) {
		snprintf(peer, sizeof(peer), "unix:%s#%d", ep->conf.path, (int)fd);
	} else {
		format_addr(sa, (socklen_t)len, peer, sizeof(peer));
	}
	client_new(ep->eps->cs, fd, &ep->conf.opts, peer, NULL, NULL);
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
		int one = 1;
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		struct sockaddr_storage ss;
		socklen_t sslen = sizeof(ss);
		char name[160];

		if (fd < 0) {
			snprintf(err, errlen, "%s: socket: %s", ep->conf.spec, strerror(errno));
			freeaddrinfo(res);
			return -1;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6) {
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		}
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
			snprintf(err, errlen, "%s: cannot listen: %s", ep->conf.spec, strerror(errno));
			close(fd);
			freeaddrinfo(res);
			return -1;
		}
		getsockname(fd, (struct sockaddr *)&ss, &sslen);
		format_addr((struct sockaddr *)&ss, sslen, name, sizeof(name));
		if (add_listener(ep, fd, err, errlen) < 0) {
			freeaddrinfo(res);
			return -1;
		}
		log_info("listening on %s (%s)", name, ep->conf.opts.raw ? "raw" : "egd");
	}
	freeaddrinfo(res);
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
	    ((c->has_owner || c->has_group) &&
	     chown(c->path, c->has_owner ? c->owner : (uid_t)-1,
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
	client_new(ep->eps->cs, fd, &ep->conf.opts, ep->conf.spec, connection_closed, ep);
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
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
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

int endpoints_add(struct endpoints *eps, const struct endpoint_conf *conf, char *err,
		  size_t errlen)
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
	ep->dial_fd = -1;
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
	rc = conf->kind == EP_TCP ? listen_tcp(ep, err, errlen) : listen_unix(ep, err, errlen);
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
		if (ep->dial_fd >= 0) {
			close(ep->dial_fd);
		}
		free(ep->conf.spec);
		free(ep->conf.host);
		free(ep->conf.port);
		free(ep->conf.path);
		free(ep);
	}
	free(eps);
}
