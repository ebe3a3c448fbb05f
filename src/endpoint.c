/* endpoint: see endpoint.h. Inherited descriptors are numbered from SD_LISTEN_FDS_START;
 * each is taken at most once, by the endpoint whose address it is bound to. */
#include "endpoint.h"

#include "dial.h"
#include "listen.h"
#include "log.h"
#include "netaddr.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define MAX_INHERITED 64
/* Across a re-exec: "FD:DEV:INO,…" for each unix listener, the socket file it was bound to. */
#define UNIX_IDS_ENV "ENTROPYD_UNIX_IDS"

struct endpoints {
	struct event_base *base;
	struct clients *cs;
	struct endpoint *head;
	int inherited[MAX_INHERITED]; /* -1 once adopted */
	size_t ninherited;
	struct {
		int fd;
		dev_t dev;
		ino_t ino;
	} unix_ids[MAX_INHERITED]; /* from UNIX_IDS_ENV */
	size_t nunix_ids;
};

/* Read what endpoints_reexec left in UNIX_IDS_ENV (only meaningful with LISTEN_FDS). */
static void read_unix_ids(struct endpoints *eps, bool inherited)
{
	const char *p = getenv(UNIX_IDS_ENV);

	while (inherited && p != NULL && *p != '\0' && eps->nunix_ids < MAX_INHERITED) {
		int fd, used = 0;
		unsigned long long dev, ino;

		if (sscanf(p, "%d:%llu:%llu%n", &fd, &dev, &ino, &used) != 3) {
			break;
		}
		eps->unix_ids[eps->nunix_ids].fd = fd;
		eps->unix_ids[eps->nunix_ids].dev = (dev_t)dev;
		eps->unix_ids[eps->nunix_ids].ino = (ino_t)ino;
		eps->nunix_ids++;
		p += used;
		p += *p == ',';
	}
	unsetenv(UNIX_IDS_ENV);
}

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
	read_unix_ids(eps, n > 0);
	return eps;
}

int endpoints_adopt_inet(struct endpoints *eps, int type, const struct sockaddr *local)
{
	for (size_t i = 0; i < eps->ninherited; i++) {
		int fd = eps->inherited[i];
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (fd >= 0 && sd_is_socket(fd, AF_UNSPEC, type, -1) > 0 &&
		    getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
		    netaddr_same_inet((struct sockaddr *)&ss, local)) {
			eps->inherited[i] = -1;
			return fd;
		}
	}
	return -1;
}

int endpoints_adopt_peer(struct endpoints *eps, const struct sockaddr *peer)
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

int endpoints_adopt_path(struct endpoints *eps, const char *path, bool fifo, bool *has_id,
			 dev_t *dev, ino_t *ino)
{
	*has_id = false;
	for (size_t i = 0; i < eps->ninherited; i++) {
		int fd = eps->inherited[i];

		if (fd < 0 || (fifo ? sd_is_fifo(fd, path)
				    : sd_is_socket_unix(fd, SOCK_STREAM, 1, path, 0)) <= 0) {
			continue;
		}
		eps->inherited[i] = -1;
		for (size_t j = 0; j < eps->nunix_ids; j++) {
			if (eps->unix_ids[j].fd == fd) {
				*has_id = true;
				*dev = eps->unix_ids[j].dev;
				*ino = eps->unix_ids[j].ino;
			}
		}
		return fd;
	}
	return -1;
}

static const struct endpoint_ops *ops_for(const struct endpoint_conf *c)
{
	static const struct endpoint_ops *const listeners[] = {
	    [EP_TCP] = &listen_tcp_ops,
	    [EP_UNIX] = &listen_unix_ops,
	    [EP_UDP] = &listen_udp_ops,
	    [EP_FIFO] = &listen_fifo_ops,
	};

	return c->connect ? &dial_ops : listeners[c->kind];
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

int endpoints_add(struct endpoints *eps, const struct endpoint_conf *conf, char *err, size_t errlen)
{
	struct endpoint *ep = calloc(1, sizeof(*ep));

	if (ep == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ep->eps = eps;
	ep->base = eps->base;
	ep->cs = eps->cs;
	ep->conf = *conf;
	ep->conf.spec = dup_or_null(conf->spec);
	ep->conf.host = dup_or_null(conf->host);
	ep->conf.port = dup_or_null(conf->port);
	ep->conf.path = dup_or_null(conf->path);
	ep->conf.local_host = dup_or_null(conf->local_host);
	ep->conf.local_port = dup_or_null(conf->local_port);
	ep->ops = ops_for(conf);
	ep->next = eps->head;
	eps->head = ep;
	return ep->ops->open(ep, err, errlen);
}

void endpoints_free(struct endpoints *eps)
{
	if (eps == NULL) {
		return;
	}
	while (eps->head != NULL) {
		struct endpoint *ep = eps->head;

		eps->head = ep->next;
		ep->ops->close(ep);
		free(ep->conf.spec);
		free(ep->conf.host);
		free(ep->conf.port);
		free(ep->conf.path);
		free(ep->conf.local_host);
		free(ep->conf.local_port);
		free(ep);
	}
	for (size_t i = 0; i < eps->ninherited; i++) {
		if (eps->inherited[i] >= 0) {
			close(eps->inherited[i]); /* passed in, but no endpoint asked for it */
		}
	}
	free(eps);
}

int endpoints_reexec(struct endpoints *eps, char *const argv[])
{
	struct endpoint_kept kept[MAX_INHERITED];
	int fds[MAX_INHERITED];
	size_t n = 0;
	char count[24], pid[24], ids[MAX_INHERITED * 48] = "";
	size_t idlen = 0;
	sigset_t sigs, old;
	int e;

	for (struct endpoint *ep = eps->head; ep != NULL; ep = ep->next) {
		n += ep->ops->keep(ep, kept + n, MAX_INHERITED - n);
	}
	for (size_t i = 0; i < n; i++) {
		if (kept[i].has_id && idlen < sizeof(ids)) {
			idlen += (size_t)snprintf(
			    ids + idlen, sizeof(ids) - idlen, "%s%d:%llu:%llu",
			    idlen > 0 ? "," : "", SD_LISTEN_FDS_START + (int)i,
			    (unsigned long long)kept[i].dev, (unsigned long long)kept[i].ino);
		}
	}
	if (access("/proc/self/exe", X_OK) < 0) {
		return -1;
	}
	/* Move them to 3, 4, … (first out of the way, so that no move overwrites another). */
	for (size_t i = 0; i < n; i++) {
		fds[i] =
		    fcntl(kept[i].fd, F_DUPFD_CLOEXEC, SD_LISTEN_FDS_START + MAX_INHERITED + 1);
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
	setenv(UNIX_IDS_ENV, ids, 1);
	log_info("re-executing with %zu listening socket(s) and pipe(s) kept open", n);
	/* Until the new image has its handlers, a SIGHUP (or SIGTERM) would kill the default way
	 * and unbind every endpoint: keep them blocked (a mask survives execve and a blocked
	 * signal stays pending); main() unblocks them once its signal events are in place. */
	endpoints_reload_signals(&sigs);
	sigprocmask(SIG_BLOCK, &sigs, &old);
	execv("/proc/self/exe", argv);
	e = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	log_warn("cannot re-execute /proc/self/exe");
	errno = e;
	return -1;
}

void endpoints_reload_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
}
