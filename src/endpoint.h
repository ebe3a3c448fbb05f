/* endpoint: the registry of configured endpoints and their lifetime. Sockets passed in by
 * systemd (socket activation) or kept by the previous image across a SIGHUP re-exec
 * (inherit.c) are taken by the endpoint of the same address; a re-exec hands every
 * listening socket and pipe on, and connected clients (handover.c) back to the endpoint of
 * the same spec. Each endpoint
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
struct endpoint;
struct tls_conf;
struct stats;
struct handover;
struct handover_rec;
struct handover_vu_rec;
struct workers;

/* EP_HTTP: the status page and metrics (http.c); EP_VHOST: a unix socket that speaks
 * vhost-user (vu_conn.c) instead of EGD. */
enum endpoint_kind { EP_TCP, EP_UNIX, EP_UDP, EP_FIFO, EP_HTTP, EP_VHOST };

/* The kind as written in a spec (tcp, unix, udp, fifo, http, vhost-user). */
static inline const char *endpoint_kind_name(enum endpoint_kind k)
{
	static const char *const names[] = {
	    [EP_TCP] = "tcp",	[EP_UNIX] = "unix", [EP_UDP] = "udp",
	    [EP_FIFO] = "fifo", [EP_HTTP] = "http", [EP_VHOST] = "vhost-user"};

	return names[k];
}

/* An endpoint as configured: `KIND:ADDRESS[,option=value…]`. */
struct endpoint_conf {
	char *spec; /* as written, for log lines */
	bool connect;
	enum endpoint_kind kind;
	char *host, *port;			/* tcp, udp */
	char *path;				/* unix, fifo, vhost-user */
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
	bool control;	      /* unix: the control socket (control.c), not an EGD endpoint */
};

/* The set of endpoints whose peers become clients of cs. */
struct endpoints *endpoints_new(struct event_base *base, struct clients *cs);
/* Bind (listen) or start dialing (connect) now; -1 with a one-line message in err. */
int endpoints_add(struct endpoints *eps, const struct endpoint_conf *conf, char *err,
		  size_t errlen);
/* The status model that control and http endpoints answer from (set before adding them). */
void endpoints_set_stats(struct endpoints *eps, struct stats *st);
/* The event-loop threads that serve listeners' clients (set before adding endpoints; NULL:
 * the main thread serves every client). */
void endpoints_set_workers(struct endpoints *eps, struct workers *ws);
/* Call fn for each endpoint, in the order added. */
void endpoints_each(struct endpoints *eps, void (*fn)(void *arg, const struct endpoint *ep),
		    void *arg);
/* How status names ep and its clients' endpoint: its spec, or unix:PATH for the control
 * socket (without the mode= entropyd adds). */
const char *endpoint_name(const struct endpoint *ep);
/* Close every endpoint (unix socket files that are still ours are removed). */
void endpoints_free(struct endpoints *eps);
/* Once every endpoint is added: close the sockets passed in that none of them took. */
void endpoints_close_unclaimed(struct endpoints *eps);
/* Re-execute entropyd (same argv) keeping every listening socket and pipe open, passed as
 * systemd passes sockets (LISTEN_FDS), and handing connected clients over (handover.h);
 * returns only on failure (errno set). */
int endpoints_reexec(struct endpoints *eps, char *const argv[]);
/* The clients the previous image handed over (before adding endpoints): a connecting
 * endpoint named by one waits for it instead of dialing. */
void endpoints_set_handover(struct endpoints *eps, struct handover *h);
/* Once every endpoint is added: give each client handed over back to the endpoint of its
 * spec; close those whose endpoint is gone, one line each. Frees the handover. */
void endpoints_adopt(struct endpoints *eps);

/* ---- For the endpoint kind modules (listen.c, dial.c) ---- */

/* One configured endpoint; impl is its kind module's state. */
struct endpoint {
	struct inherited *inherited; /* sockets passed in, for the kind module to take */
	struct event_base *base;
	struct clients *cs;
	struct workers *workers; /* listeners' clients are served there (workers.h), or NULL */
	struct stats *stats;	 /* for control and http endpoints */
	struct endpoint_conf conf;
	char *name; /* the control socket: unix:PATH (else NULL: the spec names it) */
	const struct endpoint_ops *ops;
	void *impl;
	bool held; /* a connection of this endpoint was handed over across the reload */
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
	/* Optional: serve fd, a plain stream connection of this endpoint handed over across a
	 * reload as record r (handover_adopt); -1 (fd closed) if it cannot be. NULL: none can. */
	int (*adopt)(struct endpoint *ep, int fd, const struct handover_rec *r);
	/* Optional: serve r, a vhost-user device of this endpoint handed over across a reload
	 * (vu_handover.h); -1 (its descriptors closed) if it cannot be. */
	int (*adopt_vu)(struct endpoint *ep, const struct handover_vu_rec *r);
	/* Optional: "dialing", "connected"…; NULL: "listening". */
	const char *(*state)(const struct endpoint *ep);
};

#endif
