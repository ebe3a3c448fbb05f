/* conf_opts: the three option tables of entropyd (command line, source options, endpoint
 * options), one entry per option with its name, value syntax, help text and parse function.
 * Everything a user reads about options (--help, the man page's option lists, the parser's
 * "unknown option" and "applies to" messages) is generated from these tables by conf_doc.c,
 * so the four cannot drift apart. Internal to conf: main() only sees conf.h. */
#ifndef ENTROPYD_CONF_OPTS_H
#define ENTROPYD_CONF_OPTS_H

#include "conf.h"

#include <stdio.h>

/* Which endpoints an endpoint option applies to: one bit per kind and direction. */
#define CONF_LISTEN(kind) (1u << (unsigned)(kind))
#define CONF_DIAL(kind) (1u << (8u + (unsigned)(kind)))
#define CONF_ANY_ENDPOINT                                                                          \
	(CONF_LISTEN(EP_TCP) | CONF_LISTEN(EP_UNIX) | CONF_LISTEN(EP_UDP) | CONF_LISTEN(EP_FIFO) | \
	 CONF_DIAL(EP_TCP) | CONF_DIAL(EP_UNIX) | CONF_DIAL(EP_UDP))

/* One command-line option. */
struct conf_cli_opt {
	const char *name;   /* long name, without the dashes */
	char letter;	    /* short option letter, or 0 */
	const char *arg;    /* argument name, or NULL for a flag */
	const char *help;   /* one line, in --help and the man page; NULL: hidden */
	const char *detail; /* --help only: further lines (\n-separated), or NULL */
	const char *man;    /* man page only: further sentences, or NULL */
	/* Act on the option (arg is NULL for a flag); -1 with a message in err. */
	int (*handle)(struct conf *c, const char *arg, char *err, size_t errlen);
};

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

/* The command-line table's size bound (checked when it is compiled). */
#define CONF_MAX_CLI_OPTS 32

extern const struct conf_cli_opt conf_cli_opts[];
extern const size_t conf_ncli_opts;
extern const struct conf_spec_opt conf_source_opts[];
extern const size_t conf_nsource_opts;
extern const struct conf_spec_opt conf_endpoint_opts[];
extern const size_t conf_nendpoint_opts;

/* The entry of table (n entries) named name (len bytes), or NULL. */
const struct conf_spec_opt *conf_find_opt(const struct conf_spec_opt *table, size_t n,
					  const char *name, size_t len);
/* Parse one endpoint spec and append it to c; -1 with a message in err. */
int conf_add_endpoint(struct conf *c, const char *spec, bool connect, char *err, size_t errlen);
/* Parse an integer in [min, max] written in base; -1 if v is not exactly that. */
int conf_parse_long(const char *v, long min, long max, int base, long *out);

/* Write the comma-separated names of table into buf ("h, prio, init, ..."). */
void conf_opt_names(const struct conf_spec_opt *table, size_t n, char *buf, size_t len);
/* Write the endpoints an applies mask names ("tcp and unix listeners") into buf. */
void conf_applies_phrase(unsigned applies, char *buf, size_t len);
/* Print the --help text. */
void conf_print_help(FILE *out);
/* Print the roff of the man page's OPTIONS, SOURCE OPTIONS and ENDPOINT OPTIONS sections. */
void conf_print_man(FILE *out);

#endif
