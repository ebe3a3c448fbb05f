/* conf_doc: the text generated from the option tables (conf.c's command line, conf_opts.c's
 * source and endpoint options, the source drivers' syntax and help): --help, --version and
 * the roff of the man page's option sections (--help-man, spliced into doc/entropyd.8 by
 * `make man` and compared with it by a test). Nothing here knows a particular option. */
#include "conf_doc.h"

#include "conf_opts.h"
#include "src_driver.h"

#include <ctype.h>
#include <string.h>

#define HELP_COL 23   /* --help: where an option's text starts */
#define HELP_WIDTH 86 /* --help: the widest line */
#define ROFF_WIDTH 90 /* man page source: where lines are broken */

/* Print text word-wrapped from HELP_COL (already reached) to HELP_WIDTH, continuation
 * lines indented to HELP_COL. */
static void help_wrap(FILE *out, const char *text)
{
	const char *p = text;
	size_t col = HELP_COL;

	while (*p != '\0') {
		size_t w = strcspn(p, " ");

		if (col > HELP_COL && col + 1 + w > HELP_WIDTH) {
			fprintf(out, "\n%*s", HELP_COL, "");
			col = HELP_COL;
		} else if (col > HELP_COL) {
			fputc(' ', out);
			col++;
		}
		fprintf(out, "%.*s", (int)w, p);
		col += w;
		p += w;
		p += strspn(p, " ");
	}
	fputc('\n', out);
}

/* Print left (indented by 2) and text from HELP_COL, on the next line if left is too wide. */
static void help_entry(FILE *out, const char *left, const char *text)
{
	size_t col = 2 + strlen(left);

	fprintf(out, "  %s", left);
	if (col >= HELP_COL - 1) {
		fprintf(out, "\n%*s", HELP_COL, "");
	} else {
		fprintf(out, "%*s", (int)(HELP_COL - col), "");
	}
	help_wrap(out, text);
}

/* Print the detail lines of an option, each indented to HELP_COL. */
static void help_detail(FILE *out, const char *detail)
{
	while (detail != NULL && *detail != '\0') {
		size_t n = strcspn(detail, "\n");

		fprintf(out, "%*s%.*s\n", HELP_COL, "", (int)n, detail);
		detail += n + (detail[n] == '\n');
	}
}

static void help_spec_opts(FILE *out, const struct conf_spec_opt *table, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char left[64], text[512], to[128];

		snprintf(left, sizeof(left), ",%s=%s", table[i].name, table[i].value);
		conf_applies_phrase(table[i].applies, to, sizeof(to));
		if (table[i].applies == 0 || strcmp(to, "any endpoint") == 0) {
			snprintf(text, sizeof(text), "%s", table[i].help);
		} else {
			snprintf(text, sizeof(text), "%s; %s only", table[i].help, to);
		}
		help_entry(out, left, text);
	}
}

void conf_print_help(FILE *out)
{
	fputs("Usage: entropyd [OPTION]...\n"
	      "Serve randomness from hardware generators to QEMU guests and programs over the EGD\n"
	      "protocol (QEMU -object rng-egd), health-testing every byte (SP 800-90B).\n"
	      "\n",
	      out);
	for (size_t i = 0; i < conf_ncli_opts; i++) {
		const struct conf_cli_opt *o = &conf_cli_opts[i];
		char left[64];

		if (o->help == NULL) {
			continue;
		}
		snprintf(left, sizeof(left), "%s%c%s--%s%s%s", o->letter ? "-" : " ",
			 o->letter ? o->letter : ' ', o->letter ? ", " : "  ", o->name,
			 o->arg ? " " : "", o->arg ? o->arg : "");
		help_entry(out, left, o->help);
		help_detail(out, o->detail);
	}
	fputs("\nSource kinds, in --source KIND[:ARG]:\n", out);
	for (size_t i = 0; src_drivers[i] != NULL; i++) {
		help_entry(out, src_drivers[i]->syntax, src_drivers[i]->help);
	}
	fputs("\nSource options, after the source: KIND[:ARG][,KEY=VALUE]...\n", out);
	help_spec_opts(out, conf_source_opts, conf_nsource_opts);
	fputs("\nEndpoint options, after the endpoint: EP[,KEY=VALUE]...\n", out);
	help_spec_opts(out, conf_endpoint_opts, conf_nendpoint_opts);
	fputs(
	    "\n"
	    "Each byte is health-tested and, by default, delivered once to one client. A peer "
	    "that\n"
	    "is silent for 100 ms after connecting gets `primer` unrequested bytes: this resumes "
	    "a\n"
	    "QEMU guest whose requests were lost across a reconnect; EGD clients that send their\n"
	    "first request at once never see them. A command left incomplete for 10 s closes its\n"
	    "connection. SIGHUP re-executes entropyd keeping every listening socket open; systemd\n"
	    "socket activation is supported. See entropyd(8).\n",
	    out);
}

/* Print one word of plain text as roff: backslashes and dashes escaped. */
static void roff_word(FILE *out, const char *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (w[i] == '\\') {
			fputs("\\e", out);
		} else if (w[i] == '-') {
			fputs("\\-", out);
		} else {
			fputc(w[i], out);
		}
	}
}

/* Print sentences of plain text as roff lines of at most ROFF_WIDTH characters; a line
 * never starts with a control character. Each text is one sentence (or several): the first
 * letter is capitalised and a final full stop added if missing. */
static void roff_text(FILE *out, const char *text, bool sentence)
{
	size_t col = 0;
	bool first = true;

	for (const char *p = text + strspn(text, " "); *p != '\0'; p += strspn(p, " ")) {
		size_t w = strcspn(p, " ");

		if (col > 0 && col + 1 + w > ROFF_WIDTH) {
			fputc('\n', out);
			col = 0;
		} else if (col > 0) {
			fputc(' ', out);
			col++;
		}
		if (col == 0 && (*p == '.' || *p == '\'')) {
			fputs("\\&", out);
		}
		if (first && sentence && islower((unsigned char)*p)) {
			fputc(toupper((unsigned char)*p), out);
			roff_word(out, p + 1, w - 1);
		} else {
			roff_word(out, p, w);
		}
		first = false;
		col += w;
		p += w;
	}
	if (sentence && text[0] != '\0' && text[strlen(text) - 1] != '.') {
		fputc('.', out);
	}
	fputc('\n', out);
}

static void man_spec_opts(FILE *out, const struct conf_spec_opt *table, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char to[128];

		fputs(".TP\n.BI ,", out);
		roff_word(out, table[i].name, strlen(table[i].name));
		fputs("= ", out);
		roff_word(out, table[i].value, strlen(table[i].value));
		fputc('\n', out);
		roff_text(out, table[i].help, true);
		if (table[i].man != NULL) {
			roff_text(out, table[i].man, true);
		}
		conf_applies_phrase(table[i].applies, to, sizeof(to));
		if (table[i].applies != 0 && strcmp(to, "any endpoint") != 0) {
			char line[160];

			snprintf(line, sizeof(line), "Only on %s.", to);
			roff_text(out, line, false);
		}
	}
}

void conf_print_man(FILE *out)
{
	fputs(".\\\" Generated by `entropyd --help-man` (make man) from the tables in src/conf.c,\n"
	      ".\\\" src/conf_opts.c and src/src_driver.c: edit those, not the lines down to\n"
	      ".\\\" END GENERATED OPTIONS.\n"
	      ".SH OPTIONS\n",
	      out);
	for (size_t i = 0; i < conf_ncli_opts; i++) {
		const struct conf_cli_opt *o = &conf_cli_opts[i];

		if (o->help == NULL) {
			continue;
		}
		fputs(".TP\n", out);
		if (o->letter != 0 && o->arg != NULL) {
			fprintf(out, ".BI \\-%c \" %s\" \"\\fR, \\fP\\-\\-", o->letter, o->arg);
			roff_word(out, o->name, strlen(o->name));
			fprintf(out, " \" %s\n", o->arg);
		} else if (o->letter != 0) {
			fprintf(out, ".BR \\-%c \", \" \\-\\-", o->letter);
			roff_word(out, o->name, strlen(o->name));
			fputc('\n', out);
		} else {
			fputs(o->arg ? ".BI \\-\\-" : ".B \\-\\-", out);
			roff_word(out, o->name, strlen(o->name));
			if (o->arg != NULL) {
				fprintf(out, " \" %s\"", o->arg);
			}
			fputc('\n', out);
		}
		roff_text(out, o->help, true);
		if (o->man != NULL) {
			roff_text(out, o->man, true);
		}
	}
	fputs(".SH SOURCE KINDS\n"
	      "Each\n.B \\-\\-source\nnames one kind (more under SOURCES):\n",
	      out);
	for (size_t i = 0; src_drivers[i] != NULL; i++) {
		fputs(".TP\n.B ", out);
		roff_word(out, src_drivers[i]->syntax, strlen(src_drivers[i]->syntax));
		fputc('\n', out);
		roff_text(out, src_drivers[i]->help, true);
	}
	fputs(".SH SOURCE OPTIONS\n"
	      "Written after a source's kind and argument, each after a comma:\n"
	      ".IR KIND [: ARG ][, KEY = VALUE ]...\n",
	      out);
	man_spec_opts(out, conf_source_opts, conf_nsource_opts);
	fputs(".SH ENDPOINT OPTIONS\n"
	      "Written after an endpoint, each after a comma:\n"
	      ".IR EP [, KEY = VALUE ]...\n"
	      "An option given to an endpoint it does not apply to is an error.\n",
	      out);
	man_spec_opts(out, conf_endpoint_opts, conf_nendpoint_opts);
}

void conf_doc_show(enum conf_show show, FILE *out)
{
	switch (show) {
	case CONF_SHOW_HELP:
		conf_print_help(out);
		break;
	case CONF_SHOW_MAN:
		conf_print_man(out);
		break;
	case CONF_SHOW_VERSION:
		fprintf(out, "entropyd %s\n", ENTROPYD_VERSION);
		break;
	case CONF_RUN:
		break;
	}
}
