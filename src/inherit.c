/* inherit: see inherit.h. Inherited descriptors are numbered from SD_LISTEN_FDS_START. */
#include "inherit.h"

#include "log.h"
#include "netaddr.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

/* Across a re-exec: "FD:DEV:INO,…" for each unix listener, the socket file it was bound to. */
#define UNIX_IDS_ENV "ENTROPYD_UNIX_IDS"

struct inherited {
	int fds[INHERIT_MAX]; /* -1 once taken */
	size_t n;
	struct {
		int fd;
		dev_t dev;
		ino_t ino;
	} unix_ids[INHERIT_MAX]; /* from UNIX_IDS_ENV */
	size_t nunix_ids;
};

/* Read what inherit_reexec left in UNIX_IDS_ENV (only meaningful with LISTEN_FDS). */
static void read_unix_ids(struct inherited *in, bool inherited)
{
	const char *p = getenv(UNIX_IDS_ENV);

	while (inherited && p != NULL && *p != '\0' && in->nunix_ids < INHERIT_MAX) {
		int fd, used = 0;
		unsigned long long dev, ino;

		if (sscanf(p, "%d:%llu:%llu%n", &fd, &dev, &ino, &used) != 3) {
			break;
		}
		in->unix_ids[in->nunix_ids].fd = fd;
		in->unix_ids[in->nunix_ids].dev = (dev_t)dev;
		in->unix_ids[in->nunix_ids].ino = (ino_t)ino;
		in->nunix_ids++;
		p += used;
		p += *p == ',';
	}
	unsetenv(UNIX_IDS_ENV);
}

struct inherited *inherit_new(void)
{
	struct inherited *in = calloc(1, sizeof(*in));
	int n;

	if (in == NULL) {
		return NULL;
	}
	n = sd_listen_fds(1);
	if (n > INHERIT_MAX) {
		log_warnx("%d sockets passed; using the first %d", n, INHERIT_MAX);
		n = INHERIT_MAX;
	}
	for (int i = 0; i < n; i++) {
		in->fds[in->n++] = SD_LISTEN_FDS_START + i;
	}
	if (n > 0) {
		log_info(
		    "%d listening socket(s) or pipe(s) passed in (socket activation or re-exec)",
		    n);
	}
	read_unix_ids(in, n > 0);
	return in;
}

void inherit_free(struct inherited *in)
{
	if (in == NULL) {
		return;
	}
	for (size_t i = 0; i < in->n; i++) {
		if (in->fds[i] >= 0) {
			close(in->fds[i]); /* passed in, but no endpoint asked for it */
		}
	}
	free(in);
}

void inherit_close_unclaimed(struct inherited *in)
{
	size_t closed = 0;

	for (size_t i = 0; i < in->n; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (in->fds[i] < 0 || getpeername(in->fds[i], (struct sockaddr *)&ss, &len) == 0) {
			continue;
		}
		close(in->fds[i]);
		in->fds[i] = -1;
		closed++;
	}
	if (closed > 0) {
		log_info("closed %zu socket(s) or pipe(s) passed in that no endpoint names",
			 closed);
	}
}

int inherit_take_inet(struct inherited *in, int type, const struct sockaddr *local)
{
	for (size_t i = 0; i < in->n; i++) {
		int fd = in->fds[i];
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (fd >= 0 && sd_is_socket(fd, AF_UNSPEC, type, -1) > 0 &&
		    getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
		    netaddr_same_inet((struct sockaddr *)&ss, local)) {
			in->fds[i] = -1;
			return fd;
		}
	}
	return -1;
}

int inherit_take_peer(struct inherited *in, const struct sockaddr *peer)
{
	for (size_t i = 0; i < in->n; i++) {
		int fd = in->fds[i];
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (fd >= 0 && sd_is_socket(fd, AF_UNSPEC, SOCK_DGRAM, -1) > 0 &&
		    getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
		    netaddr_same_inet((struct sockaddr *)&ss, peer)) {
			in->fds[i] = -1;
			return fd;
		}
	}
	return -1;
}

int inherit_take_path(struct inherited *in, const char *path, bool fifo, bool *has_id, dev_t *dev,
		      ino_t *ino)
{
	*has_id = false;
	for (size_t i = 0; i < in->n; i++) {
		int fd = in->fds[i];

		if (fd < 0 || (fifo ? sd_is_fifo(fd, path)
				    : sd_is_socket_unix(fd, SOCK_STREAM, 1, path, 0)) <= 0) {
			continue;
		}
		in->fds[i] = -1;
		for (size_t j = 0; j < in->nunix_ids; j++) {
			if (in->unix_ids[j].fd == fd) {
				*has_id = true;
				*dev = in->unix_ids[j].dev;
				*ino = in->unix_ids[j].ino;
			}
		}
		return fd;
	}
	return -1;
}

int inherit_reexec(const struct inherit_kept *kept, size_t n, char *const argv[])
{
	int fds[INHERIT_MAX];
	char count[24], pid[24], ids[INHERIT_MAX * 48] = "";
	size_t idlen = 0;
	sigset_t sigs, old;
	int e;

	n = n > INHERIT_MAX ? INHERIT_MAX : n;
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
		fds[i] = fcntl(kept[i].fd, F_DUPFD_CLOEXEC, SD_LISTEN_FDS_START + INHERIT_MAX + 1);
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
	inherit_reload_signals(&sigs);
	sigprocmask(SIG_BLOCK, &sigs, &old);
	execv("/proc/self/exe", argv);
	e = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	log_warn("cannot re-execute /proc/self/exe");
	errno = e;
	return -1;
}

void inherit_reload_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
}
