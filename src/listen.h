/* listen: endpoints. Listening endpoints accept peers (tcp, unix); connecting endpoints dial a
 * peer (a QEMU chardev with server=on) and redial forever with capped exponential backoff.
 * Either way each connection becomes a client of the same state machine. */
#ifndef ENTROPYD_LISTEN_H
#define ENTROPYD_LISTEN_H

#include "client.h"
#include "udp.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct endpoints;

enum endpoint_kind { EP_TCP, EP_UNIX, EP_UDP, EP_FIFO };

/* An endpoint as configured: `KIND:ADDRESS[,option=value…]`. Listening sockets passed by
 * systemd (socket activation) or kept across a SIGHUP re-exec are adopted by address. */
struct endpoint_conf {
	char *spec; /* as written, for log lines */
	bool connect;
	enum endpoint_kind kind;
	char *host, *port;			/* tcp, udp */
	char *path;				/* unix, fifo */
	char *local_host, *local_port;		/* udp connect: local=HOST:PORT */
	struct udp_prefix allow[UDP_MAX_ALLOW]; /* udp listen: allowed peers */
	size_t nallow;
	bool has_mode, has_owner, has_group;
	mode_t mode;
	uid_t owner;
	gid_t group;
	struct client_opts opts;
};

/* The set of endpoints whose peers become clients of cs. */
struct endpoints *endpoints_new(struct event_base *base, struct clients *cs);
/* Bind (listen) or start dialing (connect) now; -1 with a one-line message in err. */
int endpoints_add(struct endpoints *eps, const struct endpoint_conf *conf, char *err,
		  size_t errlen);
/* Close every endpoint (unix socket files are removed). */
void endpoints_free(struct endpoints *eps);
/* Re-execute entropyd (same argv) keeping every listening socket and pipe open, passed as
 * systemd passes sockets (LISTEN_FDS), with endpoints_reload_signals blocked across the
 * exec; returns only on failure (errno set, mask restored). */
int endpoints_reexec(struct endpoints *eps, char *const argv[]);
/* The signals that stay blocked from a re-exec until main() has its handlers again. */
void endpoints_reload_signals(sigset_t *set);

#endif
