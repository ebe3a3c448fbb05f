/* inherit: listening sockets and pipes passed in, by systemd (socket activation) or by the
 * previous image across a SIGHUP re-exec, and passing them on at the next re-exec. Each
 * inherited descriptor is taken at most once, by the endpoint whose address it is bound
 * to; a unix listener also gets back the identity of its socket file. */
#ifndef ENTROPYD_INHERIT_H
#define ENTROPYD_INHERIT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct inherited;

/* The most listening sockets and pipes passed in, or on at a re-exec. Connected clients do
 * not count: handover.c passes them (up to HANDOVER_MAX) above this range. */
#define INHERIT_MAX 64

/* A descriptor to hand to the next image; a unix listener also passes the identity of its
 * socket file, so the next image can tell a removed path. */
struct inherit_kept {
	int fd;
	bool has_id;
	dev_t dev;
	ino_t ino;
};

/* What was passed in (LISTEN_FDS for this process, and the socket-file identities); NULL
 * when out of memory. */
struct inherited *inherit_new(void);
/* Close the listening sockets and pipes no endpoint took (at a reload: the endpoints removed
 * from the configuration); connected datagram sockets stay for a --connect udp: endpoint,
 * which takes its own once its address is resolved. */
void inherit_close_unclaimed(struct inherited *in);
/* Close what no endpoint took, and free. */
void inherit_free(struct inherited *in);
/* An inherited socket bound to local (type SOCK_STREAM or SOCK_DGRAM), taken; -1 if none. */
int inherit_take_inet(struct inherited *in, int type, const struct sockaddr *local);
/* An inherited datagram socket connected to peer, taken; -1 if none. */
int inherit_take_peer(struct inherited *in, const struct sockaddr *peer);
/* An inherited unix listener (or fifo) bound to path, taken; -1 if none. For a unix
 * listener, *has_id tells whether the previous image recorded its socket file in dev/ino. */
int inherit_take_path(struct inherited *in, const char *path, bool fifo, bool *has_id, dev_t *dev,
		      ino_t *ino);
/* Re-execute /proc/self/exe with argv, passing kept[0..n) as systemd passes sockets;
 * returns only on failure (errno set). */
int inherit_reexec(const struct inherit_kept *kept, size_t n, char *const argv[]);
/* The signals kept blocked across a re-exec until the new image handles them. */
void inherit_reload_signals(sigset_t *set);

#endif
