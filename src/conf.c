/* conf: command-line options and the `KIND:ADDRESS[,option=value…]` specs of sources and
 * endpoints. Every error is one line that names the offending text. */
#include "conf.h"

#include "netaddr.h"
#include "rate.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: entropyd [OPTION]...\n"
    "Serve randomness from hardware generators to QEMU guests and programs over the EGD\n"
    "protocol (QEMU -object rng-egd), health-testing every byte (SP 800-90B).\n"
    "\n"
    "  -s, --source SPEC    a source, repeatable, in priority order (failover to the next):\n"
    "                         file:PATH   a device (/dev/hwrng, a TRNG's tty), FIFO or file\n"
    "                         rdseed      the x86 CPU's RDSEED instruction\n"
    "                         darn        the POWER9 CPU's DARN instruction\n"
    "                         getrandom   the kernel's generator (not a hardware source)\n"
    "                         qng[:SERIAL] a ComScire QNG on USB (or qng:tty=PATH,\n"
    "                                     qng:sock=PATH; settings joined by +)\n"
    "                         exec:COMMAND the output of COMMAND (/bin/sh -c), restarted\n"
    "                                     when it ends; its stderr is logged\n"
    "                         egd:EP      an upstream EGD server (e.g. another entropyd):\n"
    "                                     egd:tcp:HOST:PORT, egd:tcp:[V6]:PORT, egd:unix:PATH\n"
    "                       options: ,h=BITS assumed min-entropy per byte (default 4),\n"
    "                                ,init=STRING ,baud=N for a TRNG on a tty (init is\n"
    "                                written after each open; escapes \\n \\r \\xHH)\n"
    "                                ,prio=N priority group (default: position; equal\n"
    "                                priorities feed together)\n"
    "                                ,stall=MS a read that gets nothing this long fails\n"
    "                                over to the next source (0 = never; default 5000,\n"
    "                                30000 for qng and qngvendor)\n"
    "                       default: /dev/hwrng if it delivers, else rdseed or darn,\n"
    "                       else getrandom\n"
    "  -l, --listen EP      accept clients on EP, repeatable:\n"
    "                         tcp:HOST:PORT, tcp:[V6ADDR]:PORT, unix:PATH,\n"
    "                         udp:HOST:PORT (,allow=PREFIX+PREFIX; default loopback),\n"
    "                         fifo:PATH (a named pipe for QEMU -object rng-random)\n"
    "                       default: " CONF_DEFAULT_TCP " and unix:" CONF_DEFAULT_UNIX "\n"
    "  -c, --connect EP     dial EP (a QEMU chardev with server=on) and redial forever:\n"
    "                         tcp:HOST:PORT, unix:PATH,\n"
    "                         udp:HOST:PORT[,local=HOST:PORT] (QEMU's chardev udp)\n"
    "                       endpoint options: ,proto=egd|raw ,primer=BYTES (default 128,\n"
    "                       0 = never) ,write=on (accept EGD 0x03)\n"
    "                       ,rate=BYTES/MS pace each client's answers (udp default\n"
    "                       2097152/1000, others none; rate=off: no limit)\n"
    "                       listeners: ,max-per-peer=N connections per address (tcp,\n"
    "                       IPv6 per /64; default 64) or per uid (unix; default 0 =\n"
    "                       no limit); unix listeners: ,mode=0660 ,owner=USER ,group=GROUP\n"
    "                       a command left incomplete for 10 s closes its connection\n"
    "  -f, --foreground     stay in the foreground and log to stderr (else syslog)\n"
    "  -v, --verbose        log debug lines too\n"
    "  -n, --check          check the configuration (open sources, bind endpoints), exit\n"
    "      --list-sources   list the sources this machine offers and why any is unusable\n"
    "      --alpha N        health tests' false-positive rate 2^-N (default 30)\n"
    "      --pool-size N    bytes of tested randomness held ready (default 1048576)\n"
    "  -h, --help           show this help and exit\n"
    "  -V, --version        show the version and exit\n"
    "\n"
    "Each byte is health-tested and, by default, delivered once to one client. A peer that\n"
    "is silent for 100 ms after connecting gets `primer` unrequested bytes: this resumes a\n"
    "QEMU guest whose requests were lost across a reconnect; EGD clients that send their\n"
    "first request at once never see them. SIGHUP re-executes entropyd keeping every\n"
    "listening socket open; systemd socket activation is supported. See entropyd(8).\n";

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
						      ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* True if item (len bytes) reads `key=value` for a key of the source options. */
static bool is_source_option(const char *item, size_t len)
{
	static const char *const keys[] = {"h=", "prio=", "init=", "baud=", "stall="};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t k = strlen(keys[i]);

		if (len > k && strncmp(item, keys[i], k) == 0) {
			return true;
		}
	}
	return false;
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

static int parse_long(const char *v, long min, long max, int base, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(v, &end, base);
	return (errno != 0 || end == v || *end != '\0' || *out < min || *out > max) ? -1 : 0;
}

/* One source option, `key=value` split at eq; -1 with a message naming the option. */
static int parse_source_option(struct source_conf *out, const char *spec, const char *opt,
			       const char *val, char *err, size_t errlen)
{
	long v;

	if (strcmp(opt, "h") == 0) {
		char *end;
		double h = strtod(val, &end);

		if (end == val || *end != '\0' || !(h > 0 && h <= 8)) {
			return fail(err, errlen, "source %s: option 'h=%s': not a number in (0, 8]",
				    spec, val);
		}
		out->min_entropy = h;
	} else if (strcmp(opt, "init") == 0) {
		free(out->tty.init);
		out->tty.init = strdup(val);
		if (out->tty.init == NULL) {
			return fail(err, errlen, "out of memory");
		}
	} else if (strcmp(opt, "baud") == 0) {
		if (parse_long(val, 1, 4000000, 10, &v) < 0) {
			return fail(err, errlen, "source %s: option 'baud=%s': not in 1..4000000",
				    spec, val);
		}
		out->tty.baud = v;
	} else if (strcmp(opt, "prio") == 0) {
		if (parse_long(val, 0, 1000000, 10, &v) < 0) {
			return fail(err, errlen, "source %s: option 'prio=%s': not in 0..1000000",
				    spec, val);
		}
		out->prio = (int)v;
	} else if (strcmp(opt, "stall") == 0) {
		if (parse_long(val, 0, SRC_STALL_MAX_MS, 10, &v) < 0) {
			return fail(err, errlen,
				    "source %s: option 'stall=%s': not in 0..%d ms (0 = never)",
				    spec, val, SRC_STALL_MAX_MS);
		}
		out->stall_ms = v;
	} else {
		return fail(err, errlen,
			    "source %s: unknown option '%s' (h, prio, init, baud, stall)", spec,
			    opt);
	}
	return 0;
}

int conf_parse_source(const char *spec, int position, struct source_conf *out, char *err,
		      size_t errlen)
{
	char *s = strdup(spec);
	char *opts, *colon, *opt, *save = NULL;
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
	for (opt = opts ? strtok_r(opts, ",", &save) : NULL; opt && rc == 0;
	     opt = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(opt, '=');

		if (eq == NULL) {
			rc = fail(err, errlen, "source %s: option '%s' needs a value (%s=...)",
				  spec, opt, opt);
			break;
		}
		*eq = '\0';
		rc = parse_source_option(out, spec, opt, eq + 1, err, errlen);
	}
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

static int parse_endpoint_option(struct endpoint_conf *e, const char *spec, char *opt, char *err,
				 size_t errlen)
{
	char *v = strchr(opt, '=');
	long n;

	if (v == NULL) {
		return fail(err, errlen, "endpoint %s: option '%s' needs a value", spec, opt);
	}
	*v++ = '\0';
	if (strcmp(opt, "proto") == 0) {
		if (strcmp(v, "raw") != 0 && strcmp(v, "egd") != 0) {
			return fail(err, errlen, "endpoint %s: proto=%s (egd or raw)", spec, v);
		}
		e->opts.raw = strcmp(v, "raw") == 0;
	} else if (strcmp(opt, "primer") == 0) {
		if (parse_long(v, 0, 1 << 20, 10, &n) < 0) {
			return fail(err, errlen, "endpoint %s: bad primer=%s (0..1048576)", spec,
				    v);
		}
		e->opts.primer = (unsigned)n;
	} else if (strcmp(opt, "write") == 0) {
		if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
			return fail(err, errlen, "endpoint %s: write=%s (on or off)", spec, v);
		}
		e->opts.allow_write = strcmp(v, "on") == 0;
	} else if (strcmp(opt, "rate") == 0) {
		char *slash = strchr(v, '/');
		long ms;

		e->opts.has_rate = true;
		e->opts.rate_bytes = e->opts.rate_ms = 0;
		if (strcmp(v, "off") == 0) {
			return 0;
		}
		if (slash != NULL) {
			*slash = '\0';
		}
		if (slash == NULL || parse_long(v, 1, (long)RATE_MAX_BYTES, 10, &n) < 0 ||
		    parse_long(slash + 1, 1, (long)RATE_MAX_MS, 10, &ms) < 0) {
			return fail(err, errlen,
				    "endpoint %s: bad rate= (BYTES/MS, e.g. 2097152/1000, or off)",
				    spec);
		}
		e->opts.rate_bytes = (uint64_t)n;
		e->opts.rate_ms = (uint64_t)ms;
	} else if (strcmp(opt, "max-per-peer") == 0) {
		if ((e->kind != EP_TCP && e->kind != EP_UNIX) || e->connect) {
			return fail(err, errlen,
				    "endpoint %s: max-per-peer= applies to tcp and unix listeners",
				    spec);
		}
		if (parse_long(v, 0, 1000000, 10, &n) < 0) {
			return fail(err, errlen,
				    "endpoint %s: bad max-per-peer=%s (0..1000000, 0 = no limit)",
				    spec, v);
		}
		e->opts.max_per_peer = (unsigned)n;
		e->opts.has_max_per_peer = true;
	} else if (strcmp(opt, "allow") == 0) {
		char *save = NULL;

		if (e->kind != EP_UDP || e->connect) {
			return fail(err, errlen, "endpoint %s: allow= applies to udp listeners",
				    spec);
		}
		e->nallow = 0;
		for (char *p = strtok_r(v, "+", &save); p; p = strtok_r(NULL, "+", &save)) {
			if (e->nallow == UDP_MAX_ALLOW ||
			    udp_parse_prefix(p, &e->allow[e->nallow]) < 0) {
				return fail(err, errlen,
					    "endpoint %s: bad allow= entry '%s' (ADDR[/BITS], "
					    "joined by +, at most %d)",
					    spec, p, UDP_MAX_ALLOW);
			}
			e->nallow++;
		}
	} else if (strcmp(opt, "local") == 0) {
		struct netaddr_spec a;
		char why[128];

		if (e->kind != EP_UDP || !e->connect) {
			return fail(err, errlen,
				    "endpoint %s: local=HOST:PORT applies to udp --connect", spec);
		}
		if (netaddr_parse_hostport(v, true, &a, why, sizeof(why)) < 0) {
			return fail(err, errlen, "endpoint %s: local=%s: %s", spec, v, why);
		}
		free(e->local_host);
		free(e->local_port);
		e->local_host = strdup(a.host);
		e->local_port = strdup(a.port);
	} else if (strcmp(opt, "mode") == 0 || strcmp(opt, "owner") == 0 ||
		   strcmp(opt, "group") == 0) {
		if ((e->kind != EP_UNIX && e->kind != EP_FIFO) || e->connect) {
			return fail(err, errlen,
				    "endpoint %s: %s= applies to unix and fifo listeners only",
				    spec, opt);
		}
		if (opt[0] == 'm') {
			if (parse_long(v, 0, 07777, 8, &n) < 0) {
				return fail(err, errlen, "endpoint %s: bad mode=%s", spec, v);
			}
			e->mode = (mode_t)n;
			e->has_mode = true;
		} else if (opt[0] == 'o') {
			struct passwd *pw = getpwnam(v);

			if (pw == NULL && parse_long(v, 0, INT_MAX, 10, &n) < 0) {
				return fail(err, errlen, "endpoint %s: no such user '%s'", spec, v);
			}
			e->owner = pw ? pw->pw_uid : (uid_t)n;
			e->has_owner = true;
		} else {
			struct group *gr = getgrnam(v);

			if (gr == NULL && parse_long(v, 0, INT_MAX, 10, &n) < 0) {
				return fail(err, errlen, "endpoint %s: no such group '%s'", spec,
					    v);
			}
			e->group = gr ? gr->gr_gid : (gid_t)n;
			e->has_group = true;
		}
	} else {
		return fail(err, errlen,
			    "endpoint %s: unknown option '%s' (proto, primer, write, rate, "
			    "max-per-peer, allow, local, mode, owner, group)",
			    spec, opt);
	}
	return 0;
}

int conf_parse_endpoint(const char *spec, bool connect, struct endpoint_conf *e, char *err,
			size_t errlen)
{
	static const char *const listen_kinds[] = {"tcp", "udp", "unix", "fifo", NULL};
	static const char *const dial_kinds[] = {"tcp", "udp", "unix", NULL};
	char *s = strdup(spec);
	char *opts, *opt, *save = NULL;
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
	for (opt = opts ? strtok_r(opts, ",", &save) : NULL; opt && rc == 0;
	     opt = strtok_r(NULL, ",", &save)) {
		rc = parse_endpoint_option(e, spec, opt, err, errlen);
	}
out:
	free(s);
	return rc;
}

static int add_endpoint(struct conf *c, const char *spec, bool connect)
{
	char err[512];
	struct endpoint_conf *v = realloc(c->endpoints, (c->nendpoints + 1) * sizeof(*v));

	if (v == NULL) {
		fprintf(stderr, "entropyd: out of memory\n");
		return -1;
	}
	c->endpoints = v;
	if (conf_parse_endpoint(spec, connect, &v[c->nendpoints], err, sizeof(err)) < 0) {
		fprintf(stderr, "entropyd: %s\n", err);
		conf_endpoint_free(&v[c->nendpoints]);
		return -1;
	}
	c->nendpoints++;
	return 0;
}

void conf_default_endpoints(struct conf *c)
{
	char path[256];
	const char *run = getenv("XDG_RUNTIME_DIR");

	if (geteuid() == 0 || run == NULL) {
		snprintf(path, sizeof(path), "unix:%s", CONF_DEFAULT_UNIX);
	} else {
		snprintf(path, sizeof(path), "unix:%s/entropyd/egd.sock", run);
	}
	(void)add_endpoint(c, CONF_DEFAULT_TCP, false);
	(void)add_endpoint(c, path, false);
}

int conf_parse(struct conf *c, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"source", required_argument, NULL, 's'},  {"listen", required_argument, NULL, 'l'},
	    {"connect", required_argument, NULL, 'c'}, {"foreground", no_argument, NULL, 'f'},
	    {"verbose", no_argument, NULL, 'v'},       {"check", no_argument, NULL, 'n'},
	    {"alpha", required_argument, NULL, 'A'},   {"pool-size", required_argument, NULL, 'P'},
	    {"list-sources", no_argument, NULL, 'L'},  {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0},
	};
	int ch;
	long v;
	char err[512];

	memset(c, 0, sizeof(*c));
	c->alpha_log2 = CONF_DEFAULT_ALPHA;
	c->pool_size = CONF_DEFAULT_POOL;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":s:l:c:fvnhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': {
			struct source_conf *s = realloc(c->sources, (c->nsources + 1) * sizeof(*s));

			if (s == NULL) {
				return -1;
			}
			c->sources = s;
			if (conf_parse_source(optarg, (int)c->nsources, &s[c->nsources], err,
					      sizeof(err)) < 0) {
				fprintf(stderr, "entropyd: %s\n", err);
				conf_source_free(&s[c->nsources]);
				return -1;
			}
			c->nsources++;
			break;
		}
		case 'l':
		case 'c':
			if (add_endpoint(c, optarg, ch == 'c') < 0) {
				return -1;
			}
			break;
		case 'f':
			c->foreground = true;
			break;
		case 'v':
			c->verbose = true;
			break;
		case 'n':
			c->check = true;
			break;
		case 'A':
			if (parse_long(optarg, 1, 64, 10, &v) < 0) {
				fprintf(stderr, "entropyd: --alpha %s: expected 1..64\n", optarg);
				return -1;
			}
			c->alpha_log2 = (unsigned)v;
			break;
		case 'P':
			if (parse_long(optarg, 4096, 1L << 30, 10, &v) < 0) {
				fprintf(stderr, "entropyd: --pool-size %s: expected 4096..2^30\n",
					optarg);
				return -1;
			}
			c->pool_size = (size_t)v;
			break;
		case 'L':
			c->list_sources = true;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		case 'V':
			printf("entropyd %s\n", ENTROPYD_VERSION);
			exit(0);
		case ':':
			fprintf(stderr, "entropyd: option %s needs an argument (see --help)\n",
				argv[optind - 1]);
			return -1;
		default:
			fprintf(stderr, "entropyd: unknown option %s (see --help)\n",
				argv[optind - 1]);
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
