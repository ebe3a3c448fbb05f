/* endpoint: the registry of configured endpoints and their lifetime. Sockets passed in by
 * systemd (socket activation) or kept by the previous image across a SIGHUP re-exec
 * (inherit.c) are taken by the endpoint of the same address; a re-exec hands every
 * listening socket and pipe on. Each endpoint
 * kind lives in a module of its own behind struct endpoint_ops (listen.c: tcp, unix, udp
 * and fifo listeners; dial.c: connecting endpoints, redialed with backoff); the registry
 * never looks at the kind. Every connection becomes a client of the same state machine. */
#ifndef ENTROPYD_ENDPOINT_H
#define ENTROPYD_ENDPOINT_H

#include "client.h"
#include "inherit.h"
#include "pacer.h"
#include "udp.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct event_base;
struct endpoints;
struct tls_conf;

enum endpoint_kind { EP_TCP, EP_UNIX, EP_UDP, EP_FIFO };

/* An endpoint as configured: `KIND:ADDRESS[,option=value…]`. */
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
	char *tls_dir;	      /* tcp: tls=DIR, QEMU's x509 directory layout, or NULL */
	bool tls_no_verify;   /* verify-peer=off */
	char *authz;	      /* listeners with tls=: authz=FILE, the subjects allowed */
	struct tls_conf *tls; /* loaded from tls_dir when the spec is parsed (owned here) */
};

/* The set of endpoints whose peers become clients of cs. */
struct endpoints *endpoints_new(struct event_base *base, struct clients *cs);
/* Bind (listen) or start dialing (connect) now; -1 with a one-line message in err. */
int endpoints_add(struct endpoints *eps, const struct endpoint_conf *conf, char *err,
		  size_t errlen);
/* Close every endpoint (unix socket files that are still ours are removed). */
void endpoints_free(struct endpoints *eps);
/* Re-execute entropyd (same argv) keeping every listening socket and pipe open, passed as
 * systemd passes sockets (LISTEN_FDS); returns only on failure (errno set). */
int endpoints_reexec(struct endpoints *eps, char *const argv[]);

/* ---- For the endpoint kind modules (listen.c, dial.c) ---- */

/* One configured endpoint; impl is its kind module's state. */
struct endpoint {
	struct inherited *inherited; /* sockets passed in, for the kind module to take */
	struct event_base *base;
	struct clients *cs;
	struct endpoint_conf conf;
	const struct endpoint_ops *ops;
	void *impl;
	struct pacer_shared *rate; /* endpoint-rate=: the bucket its clients share (conf.opts
				      points at it), or NULL; ->throttled counts what it and
				      rate= held */
	struct endpoint *next;
};

/* What a kind module does for its endpoints. */
struct endpoint_ops {
	/* Bind or start dialing; -1 with a one-line message in err. */
	int (*open)(struct endpoint *ep, char *err, size_t errlen);
	/* Fill out[0..room) with the descriptors to keep across a re-exec; returns how many. */
	size_t (*keep)(const struct endpoint *ep, struct inherit_kept *out, size_t room);
	/* Release everything the module holds (ep->impl included). */
	void (*close)(struct endpoint *ep);
};

#endif
