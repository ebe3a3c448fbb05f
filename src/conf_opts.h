/* conf_opts: the option tables of source and endpoint specs (`,key=value` after a source or
 * an endpoint), one entry per option with its name, value syntax, help text and parse
 * function, and the phrases that describe them. Everything a user reads about these options
 * (--help, the man page's option lists, the parser's "unknown option" and "applies to"
 * messages) is generated from these tables, so the four cannot drift apart. The bottom layer
 * of conf: it calls nothing in conf.c or conf_doc.c. Internal to conf: main() sees conf.h
 * and conf_doc.h only. */
#ifndef ENTROPYD_CONF_OPTS_H
#define ENTROPYD_CONF_OPTS_H

#include "endpoint.h"
#include "src.h"

#include <stddef.h>

/* Which endpoints an endpoint option applies to: one bit per kind and direction. */
#define CONF_LISTEN(kind) (1u << (unsigned)(kind))
#define CONF_DIAL(kind) (1u << (8u + (unsigned)(kind)))
/* The endpoints that speak EGD (or stream raw bytes). */
#define CONF_EGD_ENDPOINTS                                                                         \
	(CONF_LISTEN(EP_TCP) | CONF_LISTEN(EP_UNIX) | CONF_LISTEN(EP_UDP) | CONF_LISTEN(EP_FIFO) | \
	 CONF_DIAL(EP_TCP) | CONF_DIAL(EP_UNIX) | CONF_DIAL(EP_UDP))
#define CONF_VHOST_ENDPOINTS (CONF_LISTEN(EP_VHOST) | CONF_DIAL(EP_VHOST))
#define CONF_ANY_ENDPOINT (CONF_EGD_ENDPOINTS | CONF_VHOST_ENDPOINTS)

/* One `,key=value` option of a source or an endpoint spec. */
struct conf_spec_opt {
	const char *name;  /* the key */
	const char *value; /* syntax of the value, e.g. "BYTES/MS" */
	unsigned applies;  /* endpoint options: CONF_LISTEN/CONF_DIAL bits; 0 for sources */
	const char *help;  /* one line, in --help and the man page */
	const char *man;   /* man page only: further sentences, or NULL */
	/* Apply val to the target (struct source_conf or struct endpoint_conf); -1 with the
	 * reason in why (the caller names the spec and the option). */
	int (*parse)(void *target, char *val, char *why, size_t whylen);
};

/* The options of a source spec (target: struct source_conf). */
extern const struct conf_spec_opt conf_source_opts[];
/* The number of entries of conf_source_opts. */
extern const size_t conf_nsource_opts;
/* The options of an endpoint spec (target: struct endpoint_conf). */
extern const struct conf_spec_opt conf_endpoint_opts[];
/* The number of entries of conf_endpoint_opts. */
extern const size_t conf_nendpoint_opts;

/* The entry of table (n entries) named name (len bytes), or NULL. */
const struct conf_spec_opt *conf_find_opt(const struct conf_spec_opt *table, size_t n,
					  const char *name, size_t len);
/* Parse an integer in [min, max] written in base; -1 if v is not exactly that. */
int conf_parse_long(const char *v, long min, long max, int base, long *out);
/* Write the comma-separated names of table into buf ("h, prio, init, ..."). */
void conf_opt_names(const struct conf_spec_opt *table, size_t n, char *buf, size_t len);
/* Write the endpoints an applies mask names ("tcp and unix listeners") into buf. */
void conf_applies_phrase(unsigned applies, char *buf, size_t len);

#endif
