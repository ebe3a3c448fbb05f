/* conf: the command line, turned into one struct that main() acts on. Parsing only: nothing
 * is opened or printed here, so `-n` can check a configuration without side effects. The
 * command-line options are the table of conf.c; the source and endpoint options, the tables
 * of conf_opts.c; the command line and the config file are read by conf_args.c. Layers, each
 * calling only those below it: conf_opts.c, then conf.c, then conf_args.c, then conf_doc.c
 * (--help and the man page), then main(). */
#ifndef ENTROPYD_CONF_H
#define ENTROPYD_CONF_H

#include "endpoint.h"
#include "src.h"

#include <stdbool.h>
#include <stddef.h>

#define CONF_DEFAULT_TCP "tcp:127.0.0.1:8888"
#define CONF_DEFAULT_UNIX "/run/entropyd/egd.sock"
#define CONF_DEFAULT_CONTROL "/run/entropyd/control.sock"
#define CONF_DEFAULT_PRIMER 128u
#define CONF_DEFAULT_SURPLUS 0u
#define CONF_DEFAULT_H 4.0
#define CONF_DEFAULT_ALPHA 30u
#define CONF_DEFAULT_POOL (1024u * 1024u)
/* --threads: the most event-loop threads. */
#define CONF_MAX_THREADS 64u
/* --threads when not given (0: one per CPU). */
#define CONF_DEFAULT_THREADS 1u
/* Read when it exists and no --config is given (conf_args.c). */
#define CONF_DEFAULT_FILE "/etc/entropyd/entropyd.conf"

/* What the command line asks besides running: main() prints it and exits. */
enum conf_show {
	CONF_RUN = 0,
	CONF_SHOW_HELP,	   /* --help */
	CONF_SHOW_MAN,	   /* --help-man */
	CONF_SHOW_VERSION, /* --version */
};

struct conf {
	struct source_conf *sources;
	size_t nsources;
	struct endpoint_conf *endpoints;
	size_t nendpoints;
	bool foreground, verbose, check, list_sources;
	unsigned alpha_log2;
	size_t pool_size;
	unsigned threads; /* --threads: event-loop threads serving clients; 0: one per CPU */
	char *user;	  /* --user, or NULL: the default (sandbox.c) */
	char *config;	  /* --config, or NULL: CONF_DEFAULT_FILE if it exists */
	char *control;	  /* --control PATH, "none", or NULL: the default */
	enum conf_show show;
};

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
	bool cli_only; /* acted on while the command line is read; not in a config file */
};

/* The command-line table's size bound (checked when it is compiled). */
#define CONF_MAX_CLI_OPTS 32

/* The command-line options, in --help order (conf_doc.c prints them). */
extern const struct conf_cli_opt conf_cli_opts[];
/* The number of entries of conf_cli_opts. */
extern const size_t conf_ncli_opts;

/* Parse argv and the config file into c: the command line's cli_only options first, then the
 * file's lines, then the rest of the command line (which adds to the file's). On an error,
 * -1 with one line in err (`FILE:LINE: message` for the file). --help, --help-man and
 * --version stop the parse there: 0 with c->show set. argv may be reordered (getopt). */
int conf_parse(struct conf *c, int argc, char **argv, char *err, size_t errlen);
/* The command-line option named name (len bytes), or NULL. */
const struct conf_cli_opt *conf_cli_find(const char *name, size_t len);
/* Add the default endpoints (used when none was given). */
void conf_default_endpoints(struct conf *c);
/* Add the control socket's endpoint (--control, or the default) unless it is off; -1 with
 * a message in err. */
int conf_add_control(struct conf *c, char *err, size_t errlen);
/* The default control socket path for this user (root: CONF_DEFAULT_CONTROL, else under
 * $XDG_RUNTIME_DIR when set) into out. */
void conf_default_control(char *out, size_t outlen);
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
