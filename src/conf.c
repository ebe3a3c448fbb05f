/* conf: the command line (its option table and getopt loop) and the
 * `KIND[:ADDRESS][,key=value…]` specs of sources and endpoints, parsed through the option
 * tables of conf_opts.c. Every error is one line that names the offending text; the lists of
 * known options in it come from the tables. Calls conf_opts.c, never conf_doc.c: --help and
 * --version are only recorded (conf.show) for main() to print. */
#include "conf.h"

#include "conf_opts.h"
#include "netaddr.h"
#include "tls.h"

#include <grp.h>
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
	free(e->tls_dir);
	free(e->authz);
	tls_conf_free(e->tls);
	e->tls = NULL;
	e->spec = e->host = e->port = e->path = e->local_host = e->local_port = NULL;
	e->tls_dir = e->authz = NULL;
}

/* tls=, verify-peer= and authz= together: load the credentials now (start-up, as the user
 * that can read them); -1 with a message. */
static int load_tls(struct endpoint_conf *e, const char *spec, char *err, size_t errlen)
{
	char why[400];

	if (e->tls_dir == NULL) {
		if (e->authz != NULL || e->tls_no_verify) {
			return fail(err, errlen, "endpoint %s: %s= needs tls=DIR", spec,
				    e->authz != NULL ? "authz" : "verify-peer");
		}
		return 0;
	}
	if (e->authz != NULL && e->tls_no_verify) {
		return fail(err, errlen,
			    "endpoint %s: authz= needs client certificates (not verify-peer=off)",
			    spec);
	}
	e->tls =
	    tls_conf_new(e->tls_dir, !e->connect, !e->tls_no_verify, e->authz, why, sizeof(why));
	if (e->tls == NULL) {
		return fail(err, errlen, "endpoint %s: %s", spec, why);
	}
	return 0;
}

int conf_parse_endpoint(const char *spec, bool connect, struct endpoint_conf *e, char *err,
			size_t errlen)
{
	static const char *const listen_kinds[] = {"tcp",  "udp",	 "unix", "fifo",
						   "http", "vhost-user", NULL};
	static const char *const dial_kinds[] = {"tcp", "udp", "unix", "vhost-user", NULL};
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
	e->opts.surplus = CONF_DEFAULT_SURPLUS;
	opts = split_options(s);
	if (netaddr_parse(s, connect ? dial_kinds : listen_kinds, !connect, &a, why, sizeof(why)) <
	    0) {
		rc = fail(err, errlen, "endpoint %s: %s%s", spec, why,
			  connect && strncmp(s, "fifo:", 5) == 0 ? " (fifo: listens only)" : "");
		goto out;
	}
	if (a.is_path) {
		e->kind = a.kind[0] == 'u' ? EP_UNIX : a.kind[0] == 'f' ? EP_FIFO : EP_VHOST;
		e->path = strdup(a.path);
	} else {
		e->kind = a.kind[0] == 't' ? EP_TCP : a.kind[0] == 'h' ? EP_HTTP : EP_UDP;
		e->host = strdup(a.host);
		e->port = strdup(a.port);
	}
	if (e->kind == EP_FIFO || e->kind == EP_VHOST) {
		e->opts.raw = true;
		e->opts.primer = 0;
		e->opts.surplus = 0;
	}
	if (e->kind == EP_UDP) {
		e->opts.primer = 0;
		e->opts.surplus = 0;
		if (!connect) {
			(void)udp_parse_prefix("127.0.0.0/8", &e->allow[0]);
			(void)udp_parse_prefix("::1", &e->allow[1]);
			e->nallow = 2;
		}
	}
	rc = apply_options(conf_endpoint_opts, conf_nendpoint_opts, e,
			   connect ? CONF_DIAL(e->kind) : CONF_LISTEN(e->kind), "endpoint", spec,
			   opts, err, errlen);
	if (rc == 0) {
		rc = load_tls(e, spec, err, errlen);
	}
out:
	free(s);
	return rc;
}

/* Parse one endpoint spec and append it to c; -1 with a message in err. */
static int add_endpoint(struct conf *c, const char *spec, bool connect, char *err, size_t errlen)
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
	(void)add_endpoint(c, CONF_DEFAULT_TCP, false, err, sizeof(err));
	(void)add_endpoint(c, path, false, err, sizeof(err));
}

void conf_default_control(char *out, size_t outlen)
{
	const char *run = getenv("XDG_RUNTIME_DIR");

	if (geteuid() == 0 || run == NULL) {
		snprintf(out, outlen, "%s", CONF_DEFAULT_CONTROL);
	} else {
		snprintf(out, outlen, "%s/entropyd/control.sock", run);
	}
}

int conf_add_control(struct conf *c, char *err, size_t errlen)
{
	char path[256], spec[300];

	if (c->control != NULL && strcmp(c->control, "none") == 0) {
		return 0;
	}
	if (c->control != NULL) {
		snprintf(path, sizeof(path), "%s", c->control);
	} else {
		conf_default_control(path, sizeof(path));
	}
	snprintf(spec, sizeof(spec), "unix:%s,mode=0660%s", path,
		 geteuid() == 0 && getgrnam("entropyd") != NULL ? ",group=entropyd" : "");
	if (add_endpoint(c, spec, false, err, errlen) < 0) {
		return -1;
	}
	c->endpoints[c->nendpoints - 1].control = true;
	return 0;
}

/* ---- Command-line options ---- */

static int cli_source(struct conf *c, const char *arg, char *err, size_t errlen)
{
	struct source_conf *s = realloc(c->sources, (c->nsources + 1) * sizeof(*s));

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->sources = s;
	if (conf_parse_source(arg, (int)c->nsources, &s[c->nsources], err, errlen) < 0) {
		return -1;
	}
	c->nsources++;
	return 0;
}

static int cli_listen(struct conf *c, const char *arg, char *err, size_t errlen)
{
	return add_endpoint(c, arg, false, err, errlen);
}

static int cli_connect(struct conf *c, const char *arg, char *err, size_t errlen)
{
	return add_endpoint(c, arg, true, err, errlen);
}

static int cli_foreground(struct conf *c, const char *arg, char *err, size_t errlen)
{
	c->foreground = true;
	return 0;
}

static int cli_verbose(struct conf *c, const char *arg, char *err, size_t errlen)
{
	c->verbose = true;
	return 0;
}

static int cli_check(struct conf *c, const char *arg, char *err, size_t errlen)
{
	c->check = true;
	return 0;
}

static int cli_list_sources(struct conf *c, const char *arg, char *err, size_t errlen)
{
	c->list_sources = true;
	return 0;
}

static int cli_alpha(struct conf *c, const char *arg, char *err, size_t errlen)
{
	long v;

	if (conf_parse_long(arg, 1, 64, 10, &v) < 0) {
		snprintf(err, errlen, "--alpha %s: expected 1..64", arg);
		return -1;
	}
	c->alpha_log2 = (unsigned)v;
	return 0;
}

static int cli_pool_size(struct conf *c, const char *arg, char *err, size_t errlen)
{
	long v;

	if (conf_parse_long(arg, 4096, 1L << 30, 10, &v) < 0) {
		snprintf(err, errlen, "--pool-size %s: expected 4096..2^30", arg);
		return -1;
	}
	c->pool_size = (size_t)v;
	return 0;
}

static int cli_threads(struct conf *c, const char *arg, char *err, size_t errlen)
{
	long v;

	if (conf_parse_long(arg, 0, CONF_MAX_THREADS, 10, &v) < 0) {
		snprintf(err, errlen, "--threads %s: expected 0..%u (0: one per CPU)", arg,
			 CONF_MAX_THREADS);
		return -1;
	}
	c->threads = (unsigned)v;
	return 0;
}

static int cli_user(struct conf *c, const char *arg, char *err, size_t errlen)
{
	if (arg[0] == '\0') {
		snprintf(err, errlen, "--user: expected a user name, root or none");
		return -1;
	}
	free(c->user);
	c->user = strdup(arg);
	if (c->user == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int cli_config(struct conf *c, const char *arg, char *err, size_t errlen)
{
	free(c->config);
	c->config = strdup(arg);
	if (c->config == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int cli_control(struct conf *c, const char *arg, char *err, size_t errlen)
{
	free(c->control);
	c->control = strdup(arg);
	return c->control != NULL ? 0 : fail(err, errlen, "out of memory");
}

/* --help, --help-man, --version: recorded, and the parse stops there; main() prints. */
static int cli_help(struct conf *c, const char *arg, char *err, size_t errlen)
{
	c->show = CONF_SHOW_HELP;
	return 0;
}

static int cli_help_man(struct conf *c, const char *arg, char *err, size_t errlen)
{
	c->show = CONF_SHOW_MAN;
	return 0;
}

static int cli_version(struct conf *c, const char *arg, char *err, size_t errlen)
{
	c->show = CONF_SHOW_VERSION;
	return 0;
}

const struct conf_cli_opt conf_cli_opts[] = {
    {"source", 's', "SPEC", "a source, repeatable, in priority order (failover to the next)",
     "KIND[:ARG]: one of the source kinds (below)\n"
     "followed by source options (below)\n"
     "default: /dev/hwrng if it delivers, else rdseed or darn,\n"
     "else getrandom",
     "The kinds of source are described under SOURCES, their options under SOURCE OPTIONS. "
     "Only the best-priority healthy sources feed; the others pass their start-up test and "
     "wait as standbys. At start, a fallback waits up to 10 s for a better source's first "
     "start-up test. Without --source: /dev/hwrng if it delivers, else rdseed or darn, else "
     "getrandom, with one log line saying which and why.",
     cli_source, false},
    {"listen", 'l', "EP", "accept clients on EP, repeatable",
     "EP: tcp:HOST:PORT, tcp:[V6ADDR]:PORT, unix:PATH,\n"
     "    udp:HOST:PORT, fifo:PATH (a named pipe for QEMU's rng-random),\n"
     "    http:HOST:PORT (status page, /metrics, /api/status)\n"
     "    vhost-user:PATH (QEMU's vhost-user-rng-pci connects)\n"
     "followed by endpoint options (below)\n"
     "default: " CONF_DEFAULT_TCP " and unix:" CONF_DEFAULT_UNIX,
     "The kinds of endpoint are described under ENDPOINTS, their options under ENDPOINT "
     "OPTIONS. Default (no --listen nor --connect): " CONF_DEFAULT_TCP
     " and unix:" CONF_DEFAULT_UNIX ".",
     cli_listen, false},
    {"connect", 'c', "EP", "dial EP (a QEMU chardev with server=on) and redial forever",
     "EP: tcp:HOST:PORT, tcp:[V6ADDR]:PORT, unix:PATH,\n"
     "    udp:HOST:PORT (QEMU's chardev udp),\n"
     "    vhost-user:PATH (QEMU's vhost-user-rng-pci chardev, server=on)\n"
     "followed by endpoint options (below)",
     "Redials after a failure or a drop with exponential backoff from 0.1 s to 5 s; see "
     "ENDPOINTS.",
     cli_connect, false},
    {"foreground", 'f', NULL, "stay in the foreground and log to stderr (else syslog)", NULL, NULL,
     cli_foreground, false},
    {"verbose", 'v', NULL, "log debug lines too (every connection)", NULL, NULL, cli_verbose,
     false},
    {"config", 'C', "FILE",
     "read options from FILE (default " CONF_DEFAULT_FILE " if it exists; none: no file)",
     "one option per line: its long name, then its value;\n"
     "the command line adds to the file's options",
     "Each line of FILE is an option of this list by its long name, a blank, and its value "
     "(source qng:QWR4M004,h=6), or a flag's name alone; # starts a comment line. The "
     "sources and endpoints of the command line are added after the file's; a single-value "
     "option given in both places takes the command line's value. A SIGHUP reads FILE again; "
     "see entropyd.conf(5).",
     cli_config, true},
    {"check", 'n', NULL, "check the configuration (open sources, bind endpoints), exit", NULL, NULL,
     cli_check, true},
    {"list-sources", 0, NULL, "list the sources this machine offers and why any is unusable", NULL,
     NULL, cli_list_sources, true},
    {"alpha", 0, "N", "health tests' false-positive rate 2^-N (default 30)", NULL, NULL, cli_alpha,
     false},
    {"pool-size", 0, "N", "bytes of tested randomness held ready (default 1048576)", NULL,
     "They are locked in memory.", cli_pool_size, false},
    {"threads", 0, "N", "event-loop threads serving clients (default 1; 0: one per CPU)",
     "1: one loop serves everything;\n"
     "N > 1: N threads serve the clients of tcp and unix listeners",
     "Each client of a tcp or unix listener (one without endpoint-rate=) is served by one of N "
     "threads for its life: the one with the fewest clients when it connects, or when a "
     "reload hands it over. Each thread "
     "serves from a cache of its own, which the main thread fills on demand from the pool "
     "(a byte still goes to one client once; scarce bytes are split among the threads by "
     "their waiting clients), and, for mode=drbg, has its own DRBG. The main thread accepts, "
     "dials, and serves the connections of connecting endpoints, udp, fifo and vhost-user "
     "endpoints, the control socket and http.",
     cli_threads, false},
    {"user", 'u', "USER",
     "after opening sources and binding endpoints, run as USER (default: entropyd)",
     "with no capability, no-new-privs and a system-call filter;\n"
     "default: the entropyd user if it exists and entropyd starts as root;\n"
     "root or none: keep the user entropyd was started as",
     "entropyd opens its sources, binds its endpoints and creates the directory of a unix "
     "socket as root, then takes USER's groups, gid and uid, drops every capability (the "
     "bounding set too), sets no-new-privs and installs a seccomp allow-list of the system "
     "calls the configuration needs; a call outside it kills the process (SIGSYS). Without "
     "--user, a daemon started as root becomes the user entropyd if that user exists, and "
     "otherwise stays root. --user root or --user none keeps the user entropyd was started "
     "as (with a warning if that is root); the filter is installed in every case. A source "
     "that re-opens its device after a fault (a tty, the QNG) does so as USER: give USER's "
     "group access to the device (see SECURITY and the README). A SIGHUP reload re-executes "
     "entropyd as USER, which adopts the open sockets.",
     cli_user, false},
    {"control", 0, "PATH",
     "control socket for entropyctl (default " CONF_DEFAULT_CONTROL "); none: no socket",
     "mode 0660, group entropyd if that group exists;\n"
     "not root: $XDG_RUNTIME_DIR/entropyd/control.sock",
     "entropyctl(1) asks it for the status and for bytes. Group entropyd applies when "
     "entropyd starts as root; its directory is created if missing. Kept across a reload.",
     cli_control, false},
    {"help", 'h', NULL, "show this help and exit", NULL, NULL, cli_help, true},
    {"version", 'V', NULL, "show the version and exit", NULL, NULL, cli_version, true},
    /* Hidden: prints the man page's option sections (make man). */
    {"help-man", 0, NULL, NULL, NULL, NULL, cli_help_man, true},
};
const size_t conf_ncli_opts = sizeof(conf_cli_opts) / sizeof(conf_cli_opts[0]);
_Static_assert(sizeof(conf_cli_opts) / sizeof(conf_cli_opts[0]) <= CONF_MAX_CLI_OPTS,
	       "raise CONF_MAX_CLI_OPTS");

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
	free(c->user);
	free(c->config);
	free(c->control);
}
