/* conf_phrase: the phrases that describe the option tables of conf_opts.c, in --help, the
 * man page and the parser's error messages: the list of a table's names, and where an
 * endpoint option applies ("tcp and unix listeners", ...). */
#include "conf_opts.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void conf_opt_names(const struct conf_spec_opt *table, size_t n, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && at < len; i++) {
		int w = snprintf(buf + at, len - at, "%s%s", i ? ", " : "", table[i].name);

		at += w > 0 ? (size_t)w : 0;
	}
}

/* Append "a, b and c KIND_WORD" for the kinds whose bit is set in mask (bit(kind)). */
static size_t kinds_phrase(unsigned mask, bool dial, const char *word, char *buf, size_t len)
{
	/* Display order, not the enum's. */
	static const enum endpoint_kind kinds[] = {EP_TCP,  EP_UDP,  EP_UNIX,
						   EP_FIFO, EP_HTTP, EP_VHOST};
	size_t total = 0, seen = 0, at = 0;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		total += (mask & (dial ? CONF_DIAL(kinds[i]) : CONF_LISTEN(kinds[i]))) != 0;
	}
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]) && at < len; i++) {
		if ((mask & (dial ? CONF_DIAL(kinds[i]) : CONF_LISTEN(kinds[i]))) == 0) {
			continue;
		}
		seen++;
		int w = snprintf(buf + at, len - at, "%s%s",
				 seen == 1 ? "" : (seen == total ? " and " : ", "),
				 endpoint_kind_name(kinds[i]));
		at += w > 0 ? (size_t)w : 0;
	}
	if (total > 0 && at < len) {
		int w = snprintf(buf + at, len - at, " %s", word);
		at += w > 0 ? (size_t)w : 0;
	}
	return at;
}

void conf_applies_phrase(unsigned applies, char *buf, size_t len)
{
	size_t at;

	buf[0] = '\0';
	if ((applies & CONF_ANY_ENDPOINT) == CONF_ANY_ENDPOINT) {
		snprintf(buf, len, "any endpoint");
		return;
	}
	at = kinds_phrase(applies, false, "listeners", buf, len);
	if (at > 0 && at < len && (applies & (CONF_ANY_ENDPOINT & ~0xffu)) != 0) {
		at += (size_t)snprintf(buf + at, len - at, " and ");
	}
	if (at < len) {
		(void)kinds_phrase(applies, true, "--connect endpoints", buf + at, len - at);
	}
}
