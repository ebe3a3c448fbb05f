/* endpoint: see endpoint.h. */
#include "endpoint.h"

#include "dial.h"
#include "inherit.h"
#include "listen.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct endpoints {
	struct event_base *base;
	struct clients *cs;
	struct endpoint *head;
	struct inherited *inherited;
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
	ep->inherited = eps->inherited;
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
		free(ep->conf.host);
		free(ep->conf.port);
		free(ep->conf.path);
		free(ep->conf.local_host);
		free(ep->conf.local_port);
		free(ep);
	}
	inherit_free(eps->inherited);
	free(eps);
}

int endpoints_reexec(struct endpoints *eps, char *const argv[])
{
	struct inherit_kept kept[INHERIT_MAX];
	size_t n = 0;

	for (struct endpoint *ep = eps->head; ep != NULL; ep = ep->next) {
		n += ep->ops->keep(ep, kept + n, INHERIT_MAX - n);
	}
	return inherit_reexec(kept, n, argv);
}
