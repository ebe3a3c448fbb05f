/* conf_args: where options come from, the command line (getopt) and the configuration file
 * (/etc/entropyd/entropyd.conf, --config FILE), both read through conf.c's option table, so
 * the two cannot differ. A line of the file is blank, a comment (its first non-blank
 * character is #), or `NAME [VALUE]`: NAME a long option of the command line (without the
 * dashes), VALUE the rest of the line, leading and trailing blanks removed. Options that
 * only make sense on a command line (config, check, help...) are refused in the file. */
#include "conf.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Apply one line (modified in place); -1 with the message (without the position) in err. */
static int apply_line(struct conf *c, char *line, char *err, size_t errlen)
{
	char *name = line + strspn(line, " \t");
	size_t len = strcspn(name, " \t");
	char *value = name + len;
	char *end;
	const struct conf_cli_opt *o;

	value += strspn(value, " \t");
	end = value + strlen(value);
	while (end > value && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) {
		*--end = '\0';
	}
	if (*name == '\0' || *name == '#') {
		return 0;
	}
	o = conf_cli_find(name, len);
	if (o == NULL || o->help == NULL) {
		snprintf(err, errlen, "unknown option '%.*s' (see entropyd.conf(5))", (int)len,
			 name);
		return -1;
	}
	if (o->cli_only) {
		snprintf(err, errlen, "'%s' is a command-line option only", o->name);
		return -1;
	}
	if (o->arg != NULL && *value == '\0') {
		snprintf(err, errlen, "'%s' needs a value (%s %s)", o->name, o->name, o->arg);
		return -1;
	}
	if (o->arg == NULL && *value != '\0') {
		snprintf(err, errlen, "'%s' takes no value (found '%s')", o->name, value);
		return -1;
	}
	err[0] = '\0';
	return o->handle(c, o->arg != NULL ? value : NULL, err, errlen);
}

/* Apply the lines of the file at path to c. optional: a missing file is no error. -1 with
 * `PATH:LINE: message` (or `PATH: message`) in err. */
static int file_read(struct conf *c, const char *path, bool optional, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *line = NULL, why[512];
	size_t cap = 0;
	unsigned lineno = 0;
	int rc = 0;

	if (f == NULL) {
		if (optional && errno == ENOENT) {
			return 0;
		}
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		line[strcspn(line, "\n")] = '\0';
		if (apply_line(c, line, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			rc = -1;
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		rc = -1;
	}
	free(line);
	fclose(f);
	return rc;
}

/* ---- The getopt loop ---- */

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

const struct conf_cli_opt *conf_cli_find(const char *name, size_t len)
{
	for (size_t i = 0; i < conf_ncli_opts; i++) {
		if (strlen(conf_cli_opts[i].name) == len &&
		    strncmp(conf_cli_opts[i].name, name, len) == 0) {
			return &conf_cli_opts[i];
		}
	}
	return NULL;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
						      ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* One command-line option whose action waits until the file is read. */
struct later {
	const struct conf_cli_opt *o;
	const char *arg;
};

/* The getopt loop: cli_only options act now, the others are recorded in later (*nlater).
 * -1 with a message in err. */
static int read_argv(struct conf *c, int argc, char **argv, struct later *later, size_t *nlater,
		     char *err, size_t errlen)
{
	struct option longopts[CONF_MAX_CLI_OPTS + 1];
	char optstring[2 * CONF_MAX_CLI_OPTS + 2] = ":";
	size_t nshort = 1;
	int ch;

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
	opterr = 0;
	optind = 0; /* a fresh scan (a reload checks the command line again) */
	while ((ch = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
		const struct conf_cli_opt *o = cli_opt(ch);

		if (ch == ':') {
			return fail(err, errlen, "option %s needs an argument (see --help)",
				    argv[optind - 1]);
		}
		if (ch == '?' || o == NULL) {
			return fail(err, errlen, "unknown option %s (see --help)",
				    argv[optind - 1]);
		}
		if (!o->cli_only) {
			later[(*nlater)++] = (struct later){o, optarg};
			continue;
		}
		err[0] = '\0';
		if (o->handle(c, optarg, err, errlen) < 0) {
			return -1;
		}
		if (c->show != CONF_RUN) {
			return 0;
		}
	}
	if (optind < argc) {
		return fail(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
	}
	return 0;
}

int conf_parse(struct conf *c, int argc, char **argv, char *err, size_t errlen)
{
	struct later *later = calloc((size_t)argc + 1, sizeof(*later));
	size_t nlater = 0;
	int rc;

	memset(c, 0, sizeof(*c));
	c->alpha_log2 = CONF_DEFAULT_ALPHA;
	c->pool_size = CONF_DEFAULT_POOL;
	c->threads = CONF_DEFAULT_THREADS;
	if (later == NULL) {
		return fail(err, errlen, "out of memory");
	}
	rc = read_argv(c, argc, argv, later, &nlater, err, errlen);
	if (rc == 0 && c->show == CONF_RUN &&
	    (c->config == NULL || strcmp(c->config, "none") != 0)) {
		rc = file_read(c, c->config ? c->config : CONF_DEFAULT_FILE, c->config == NULL, err,
			       errlen);
	}
	for (size_t i = 0; rc == 0 && c->show == CONF_RUN && i < nlater; i++) {
		err[0] = '\0';
		rc = later[i].o->handle(c, later[i].arg, err, errlen);
	}
	free(later);
	return rc;
}
