/* conf: the command line and the `KIND[:ADDRESS][,key=value…]` specs of sources and
 * endpoints, parsed through the option tables of conf_opts.c. Every error is one line that
 * names the offending text; the lists of known options in it come from the tables. */
#include "conf.h"

#include "conf_opts.h"
#include "netaddr.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
						      ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* True if item (len bytes) reads `key=value`, value not empty, for a source option's key. */
static bool is_source_option(const char *item, size_t len)
{
	const char *eq = memchr(item, '=', len);

	return eq != NULL && (size_t)(eq - item) + 1 < len &&
	       conf_find_opt(conf_source_opts, conf_nsource_opts, item, (size_t)(eq - item)) !=
		   NULL;
}

/* Split "kind:rest,opt,opt" in place: returns the option list (or NULL). An exec: command
 * may hold commas: there, only a tail of `,key=value` items with known keys is options. */
static char *split_options(char *s)
{
	char *comma = NULL;

	if (strncmp(s, "exec:", 5) != 0) {
		comma = strchr(s, ',');
	} else {
		size_t end = strlen(s);

		for (size_t i = end; i-- > 5;) {
			if (s[i] == ',') {
				if (!is_source_option(s + i + 1, end - i - 1)) {
					break;
				}
				comma = s + i;
				end = i;
			}
		}
	}
	if (comma == NULL) {
		return NULL;
	}
	*comma = '\0';
	return comma + 1;
}

/* Apply the comma-separated `key=value` items of opts to target through table. what and
 * spec name the spec in messages; where is the endpoint's CONF_LISTEN/CONF_DIAL bit (0 for
 * a source). The first bad item stops with -1 and a message in err. */
static int apply_options(const struct conf_spec_opt *table, size_t n, void *target, unsigned where,
			 const char *what, const char *spec, char *opts, char *err, size_t errlen)
{
	char *save = NULL;

	for (char *item = opts ? strtok_r(opts, ",", &save) : NULL; item;
	     item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		size_t len = eq ? (size_t)(eq - item) : strlen(item);
		const struct conf_spec_opt *o = conf_find_opt(table, n, item, len);
		size_t at;

		if (o == NULL) {
			char names[256];

			conf_opt_names(table, n, names, sizeof(names));
			return fail(err, errlen, "%s %s: unknown option '%.*s' (known: %s)", what,
				    spec, (int)len, item, names);
		}
		if (eq == NULL) {
			return fail(err, errlen, "%s %s: option '%s' needs a value (%s=%s)", what,
				    spec, item, o->name, o->value);
		}
		if (where != 0 && (o->applies & where) == 0) {
			char to[128], here[64];

			conf_applies_phrase(o->applies, to, sizeof(to));
			conf_applies_phrase(where, here, sizeof(here));
			return fail(err, errlen, "%s %s: %s= applies to %s only (not to %s)", what,
				    spec, o->name, to, here);
		}
		/* The message names the value as written: the parser may cut it up. */
		snprintf(err, errlen, "%s %s: option '%s': ", what, spec, item);
		at = strlen(err);
		if (o->parse(target, eq + 1, err + at, errlen - at) < 0) {
			return -1;
		}
	}
	err[0] = '\0';
	return 0;
}

int conf_parse_source(const char *spec, int position, struct source_conf *out, char *err,
		      size_t errlen)
{
	char *s = strdup(spec);
	char *opts, *colon;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->min_entropy = CONF_DEFAULT_H;
	out->prio = position;
	out->stall_ms = -1;
	out->spec = strdup(spec);
	if (s == NULL || out->spec == NULL) {
		rc = fail(err, errlen, "out of memory");
		goto out;
	}
	opts = split_options(s);
	colon = strchr(s, ':');
	if (colon != NULL) {
		*colon = '\0';
		out->arg = strdup(colon + 1);
		if (out->arg == NULL) {
			rc = fail(err, errlen, "out of memory");
			goto out;
		}
	}
	out->kind = strdup(s);
	if (out->kind == NULL) {
		rc = fail(err, errlen, "out of memory");
		goto out;
	}
	rc = apply_options(conf_source_opts, conf_nsource_opts, out, 0, "source", spec, opts, err,
			   errlen);
out:
	/* The message is formatted by now: s (which opt points into) can go. */
	free(s);
	if (rc < 0) {
		conf_source_free(out);
	}
	return rc;
}

void conf_source_free(struct source_conf *c)
{
	free(c->spec);
	free(c->kind);
	free(c->arg);
	free(c->tty.init);
	c->spec = c->kind = c->arg = c->tty.init = NULL;
}

void conf_endpoint_free(struct endpoint_conf *e)
{
	free(e->spec);
	free(e->host);
	free(e->port);
	free(e->path);
	free(e->local_host);
	free(e->local_port);
	e->spec = e->host = e->port = e->path = e->local_host = e->local_port = NULL;
}

int conf_parse_endpoint(const char *spec, bool connect, struct endpoint_conf *e, char *err,
			size_t errlen)
{
	static const char *const listen_kinds[] = {"tcp", "udp", "unix", "fifo", NULL};
	static const char *const dial_kinds[] = {"tcp", "udp", "unix", NULL};
	char *s = strdup(spec);
	char *opts;
	struct netaddr_spec a;
	char why[200];
	int rc = 0;

	memset(e, 0, sizeof(*e));
	if (s == NULL) {
		return fail(err, errlen, "out of memory");
	}
	e->spec = strdup(spec);
	e->connect = connect;
	e->opts.primer = CONF_DEFAULT_PRIMER;
	opts = split_options(s);
	if (netaddr_parse(s, connect ? dial_kinds : listen_kinds, !connect, &a, why, sizeof(why)) <
	    0) {
		rc = fail(err, errlen, "endpoint %s: %s%s", spec, why,
			  connect && strncmp(s, "fifo:", 5) == 0 ? " (fifo: listens only)" : "");
		goto out;
	}
	if (a.is_path) {
		e->kind = a.kind[0] == 'u' ? EP_UNIX : EP_FIFO;
		e->path = strdup(a.path);
	} else {
		e->kind = a.kind[0] == 't' ? EP_TCP : EP_UDP;
		e->host = strdup(a.host);
		e->port = strdup(a.port);
	}
	if (e->kind == EP_FIFO) {
		e->opts.raw = true;
		e->opts.primer = 0;
	}
	if (e->kind == EP_UDP) {
		e->opts.primer = 0;
		if (!connect) {
			(void)udp_parse_prefix("127.0.0.0/8", &e->allow[0]);
			(void)udp_parse_prefix("::1", &e->allow[1]);
			e->nallow = 2;
		}
	}
	rc = apply_options(conf_endpoint_opts, conf_nendpoint_opts, e,
			   connect ? CONF_DIAL(e->kind) : CONF_LISTEN(e->kind), "endpoint", spec,
			   opts, err, errlen);
out:
	free(s);
	return rc;
}

int conf_add_endpoint(struct conf *c, const char *spec, bool connect, char *err, size_t errlen)
{
	struct endpoint_conf *v = realloc(c->endpoints, (c->nendpoints + 1) * sizeof(*v));

	if (v == NULL) {
		return fail(err, errlen, "out of memory");
	}
	c->endpoints = v;
	if (conf_parse_endpoint(spec, connect, &v[c->nendpoints], err, errlen) < 0) {
		conf_endpoint_free(&v[c->nendpoints]);
		return -1;
	}
	c->nendpoints++;
	return 0;
}

void conf_default_endpoints(struct conf *c)
{
	char path[256], err[512];
	const char *run = getenv("XDG_RUNTIME_DIR");

	if (geteuid() == 0 || run == NULL) {
		snprintf(path, sizeof(path), "unix:%s", CONF_DEFAULT_UNIX);
	} else {
		snprintf(path, sizeof(path), "unix:%s/entropyd/egd.sock", run);
	}
	(void)conf_add_endpoint(c, CONF_DEFAULT_TCP, false, err, sizeof(err));
	(void)conf_add_endpoint(c, path, false, err, sizeof(err));
}

/* The command-line option of getopt's answer ch (a letter, or 256 + the table index). */
static const struct conf_cli_opt *cli_opt(int ch)
{
	if (ch >= 256 && (size_t)(ch - 256) < conf_ncli_opts) {
		return &conf_cli_opts[ch - 256];
	}
	for (size_t i = 0; i < conf_ncli_opts; i++) {
		if (conf_cli_opts[i].letter != 0 && conf_cli_opts[i].letter == ch) {
			return &conf_cli_opts[i];
		}
	}
	return NULL;
}

int conf_parse(struct conf *c, int argc, char **argv)
{
	struct option longopts[CONF_MAX_CLI_OPTS + 1];
	char optstring[2 * CONF_MAX_CLI_OPTS + 2] = ":";
	size_t nshort = 1;
	int ch;
	char err[512];

	/* getopt's view of the table: long-only options answer 256 + their index. */
	for (size_t i = 0; i < conf_ncli_opts; i++) {
		const struct conf_cli_opt *o = &conf_cli_opts[i];

		longopts[i] = (struct option){o->name, o->arg ? required_argument : no_argument,
					      NULL, o->letter ? o->letter : 256 + (int)i};
		if (o->letter != 0) {
			optstring[nshort++] = o->letter;
			if (o->arg != NULL) {
				optstring[nshort++] = ':';
			}
		}
	}
	longopts[conf_ncli_opts] = (struct option){NULL, 0, NULL, 0};
	optstring[nshort] = '\0';

	memset(c, 0, sizeof(*c));
	c->alpha_log2 = CONF_DEFAULT_ALPHA;
	c->pool_size = CONF_DEFAULT_POOL;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
		const struct conf_cli_opt *o = cli_opt(ch);

		if (ch == ':') {
			fprintf(stderr, "entropyd: option %s needs an argument (see --help)\n",
				argv[optind - 1]);
			return -1;
		}
		if (ch == '?' || o == NULL) {
			fprintf(stderr, "entropyd: unknown option %s (see --help)\n",
				argv[optind - 1]);
			return -1;
		}
		err[0] = '\0';
		if (o->handle(c, optarg, err, sizeof(err)) < 0) {
			fprintf(stderr, "entropyd: %s\n", err);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "entropyd: unexpected argument '%s' (see --help)\n", argv[optind]);
		return -1;
	}
	return 0;
}

void conf_free(struct conf *c)
{
	for (size_t i = 0; i < c->nsources; i++) {
		conf_source_free(&c->sources[i]);
	}
	for (size_t i = 0; i < c->nendpoints; i++) {
		conf_endpoint_free(&c->endpoints[i]);
	}
	free(c->sources);
	free(c->endpoints);
}
