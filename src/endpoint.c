/* endpoint: see endpoint.h. */
#include "endpoint.h"

#include "dial.h"
#include "handover.h"
#include "http.h"
#include "inherit.h"
#include "listen.h"
#include "log.h"
#include "workers.h"

#include "transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

struct endpoints {
	struct event_base *base;
	struct clients *cs;
	struct workers *workers;
	struct stats *stats;
	struct endpoint *head;
	struct inherited *inherited;
	struct handover *handover;
};

struct endpoints *endpoints_new(struct event_base *base, struct clients *cs)
{
	struct endpoints *eps = calloc(1, sizeof(*eps));

	if (eps == NULL) {
		return NULL;
	}
	eps->base = base;
	eps->cs = cs;
	eps->inherited = inherit_new();
	if (eps->inherited == NULL) {
		free(eps);
		return NULL;
	}
	return eps;
}

static const struct endpoint_ops *ops_for(const struct endpoint_conf *c)
{
	static const struct endpoint_ops *const listeners[] = {
	    [EP_TCP] = &listen_tcp_ops, [EP_UNIX] = &listen_unix_ops,
	    [EP_UDP] = &listen_udp_ops, [EP_FIFO] = &listen_fifo_ops,
	    [EP_HTTP] = &http_ops,	[EP_VHOST] = &listen_unix_ops,
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
	ep->inherited = eps->inherited;
	ep->base = eps->base;
	ep->cs = eps->cs;
	ep->workers = eps->workers;
	ep->stats = eps->stats;
	ep->conf = *conf;
	ep->conf.spec = dup_or_null(conf->spec);
	ep->conf.opts.endpoint = ep->conf.spec;
	/* The control socket's spec carries the mode= (and group=) entropyd added. */
	if (conf->control && conf->path != NULL && asprintf(&ep->name, "unix:%s", conf->path) < 0) {
		ep->name = NULL;
	}
	ep->conf.host = dup_or_null(conf->host);
	ep->conf.port = dup_or_null(conf->port);
	ep->conf.path = dup_or_null(conf->path);
	ep->conf.local_host = dup_or_null(conf->local_host);
	ep->conf.local_port = dup_or_null(conf->local_port);
	ep->ops = ops_for(conf);
	ep->held = ep->ops->adopt != NULL && handover_names(eps->handover, conf->spec);
	/* At the tail: endpoints_each lists them in the order given. */
	for (struct endpoint **at = &eps->head;; at = &(*at)->next) {
		if (*at == NULL) {
			*at = ep;
			break;
		}
	}
	if (conf->opts.eprate_bytes > 0) {
		ep->rate =
		    pacer_shared_new(eps->base, conf->opts.eprate_bytes, conf->opts.eprate_ms);
		if (ep->rate == NULL) {
			snprintf(err, errlen, "endpoint-rate=: cannot create its bucket");
			return -1;
		}
	}
	ep->conf.opts.endpoint_rate = ep->rate;
	return ep->ops->open(ep, err, errlen);
}

void endpoints_set_stats(struct endpoints *eps, struct stats *st)
{
	eps->stats = st;
}

void endpoints_each(struct endpoints *eps, void (*fn)(void *arg, const struct endpoint *ep),
		    void *arg)
{
	for (const struct endpoint *ep = eps->head; ep != NULL; ep = ep->next) {
		fn(arg, ep);
	}
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
		pacer_shared_unref(ep->rate); /* its clients may hold it a while longer */
		free(ep->conf.spec);
		free(ep->name);
		free(ep->conf.host);
		free(ep->conf.port);
		free(ep->conf.path);
		free(ep->conf.local_host);
		free(ep->conf.local_port);
		free(ep);
	}
	inherit_free(eps->inherited);
	handover_free(eps->handover);
	free(eps);
}

int endpoints_reexec(struct endpoints *eps, char *const argv[])
{
	struct inherit_kept kept[INHERIT_MAX];
	struct clients *regs[1 + WORKERS_MAX];
	size_t n = 0, nregs;

	for (struct endpoint *ep = eps->head; ep != NULL; ep = ep->next) {
		n += ep->ops->keep(ep, kept + n, INHERIT_MAX - n);
	}
	/* The threads end first: their clients are handed over with the main thread's. */
	regs[0] = eps->cs;
	workers_stop(eps->workers);
	nregs = 1 + workers_registries(eps->workers, regs + 1, WORKERS_MAX);
	/* Clients above the listeners' range, which inherit_reexec overwrites. */
	(void)handover_save(regs, nregs, SD_LISTEN_FDS_START + (int)n);
	return inherit_reexec(kept, n, argv);
}

void endpoints_set_workers(struct endpoints *eps, struct workers *ws)
{
	eps->workers = ws;
}

void endpoints_set_handover(struct endpoints *eps, struct handover *h)
{
	eps->handover = h;
}

/* The endpoint that can take a client of spec back on the socket fd; NULL if none. */
static struct endpoint *adopter(struct endpoints *eps, const char *spec, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		return NULL;
	}
	for (struct endpoint *ep = eps->head; ep != NULL; ep = ep->next) {
		if (ep->ops->adopt != NULL && strcmp(ep->conf.spec, spec) == 0 &&
		    transport_for(&ep->conf) == &transport_stream &&
		    (ss.ss_family == AF_UNIX) == (ep->conf.kind == EP_UNIX)) {
			return ep;
		}
	}
	return NULL;
}

/* The vhost-user devices handed over, each back to the endpoint of its spec. */
static void adopt_vus(struct endpoints *eps)
{
	struct handover *h = eps->handover;
	size_t kept = 0;

	for (size_t i = 0; i < handover_vu_count(h); i++) {
		const struct handover_vu_rec *r = handover_vu_get(h, i);
		struct endpoint *ep = r != NULL ? eps->head : NULL;

		while (ep != NULL && (ep->ops->adopt_vu == NULL || ep->conf.kind != EP_VHOST ||
				      strcmp(ep->conf.spec, r->spec) != 0)) {
			ep = ep->next;
		}
		if (ep == NULL) {
			continue; /* handover_free closes it with its line */
		}
		handover_vu_take(h, i);
		kept += ep->ops->adopt_vu(ep, r) == 0;
	}
	if (handover_vu_count(h) > 0) {
		log_info("reload: %zu vhost-user device(s) resumed", kept);
	}
}

void endpoints_adopt(struct endpoints *eps)
{
	struct handover *h = eps->handover;
	size_t kept = 0;

	for (size_t i = 0; i < handover_count(h); i++) {
		const struct handover_rec *r = handover_get(h, i);
		struct endpoint *ep = r != NULL ? adopter(eps, r->spec, r->fd) : NULL;

		if (ep == NULL) {
			continue; /* handover_free closes it with its line */
		}
		if (ep->ops->adopt(ep, handover_take(h, i), r) < 0) {
			log_warnx("client %s: cannot be resumed on %s; connection closed", r->peer,
				  r->spec);
			continue;
		}
		kept++;
	}
	if (handover_count(h) > 0) {
		log_info("reload: %zu connected client(s) resumed", kept);
	}
	adopt_vus(eps);
	handover_free(h);
	eps->handover = NULL;
}

void endpoints_close_unclaimed(struct endpoints *eps)
{
	inherit_close_unclaimed(eps->inherited);
}

const char *endpoint_name(const struct endpoint *ep)
{
	return ep->name != NULL ? ep->name : ep->conf.spec;
}
