/* conf: the command line, turned into one struct that main() acts on. Parsing only: nothing
 * is opened here, so `-n` can check a configuration without side effects. The options
 * themselves are the tables of conf_opts.c. */
#ifndef ENTROPYD_CONF_H
#define ENTROPYD_CONF_H

#include "endpoint.h"
#include "src.h"

#include <stdbool.h>
#include <stddef.h>

#define CONF_DEFAULT_TCP "tcp:127.0.0.1:8888"
#define CONF_DEFAULT_UNIX "/run/entropyd/egd.sock"
#define CONF_DEFAULT_PRIMER 128u
#define CONF_DEFAULT_H 4.0
#define CONF_DEFAULT_ALPHA 30u
#define CONF_DEFAULT_POOL (1024u * 1024u)

struct conf {
	struct source_conf *sources;
	size_t nsources;
	struct endpoint_conf *endpoints;
	size_t nendpoints;
	bool foreground, verbose, check, list_sources;
	unsigned alpha_log2;
	size_t pool_size;
};

/* Parse argv into c; on a bad argument print one line and return -1. --help, --help-man
 * and --version print and exit(0). */
int conf_parse(struct conf *c, int argc, char **argv);
/* Add the default endpoints (used when none was given). */
void conf_default_endpoints(struct conf *c);
/* Parse one source spec (exposed for tests); -1 with a message in err. */
int conf_parse_source(const char *spec, int position, struct source_conf *out, char *err,
		      size_t errlen);
/* Parse one endpoint spec (exposed for tests); -1 with a message in err. */
int conf_parse_endpoint(const char *spec, bool connect, struct endpoint_conf *out, char *err,
			size_t errlen);
/* Free the strings of one parsed source (also after a failed conf_parse_source). */
void conf_source_free(struct source_conf *c);
/* Free the strings of one parsed endpoint (also after a failed conf_parse_endpoint). */
void conf_endpoint_free(struct endpoint_conf *e);
/* Free what conf_parse allocated. */
void conf_free(struct conf *c);

#endif
