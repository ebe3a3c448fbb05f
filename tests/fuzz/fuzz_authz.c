/* libFuzzer target for the TLS subject matcher (authz=): input = a subject, a NUL, then the
 * file's text. The matcher must never crash or read past either string, and must agree
 * with a plain reference: a subject matches when some line, trimmed of blanks (and of a
 * leading "subject=" as openssl prints it), equals it, comment lines ('#') aside. */
#include "tls.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The libFuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The reference: one line at a time, written the slow obvious way. */
static bool reference(const char *list, const char *subject)
{
	const char *p = list;

	if (subject[0] == '\0') {
		return false;
	}
	while (*p != '\0') {
		size_t n = strcspn(p, "\n");
		char *line = strndup(p, n), *a = line, *b;
		bool hit, comment;

		if (line == NULL) {
			abort();
		}
		b = line + strlen(line);
		while (*a != '\0' && blank(*a)) {
			a++;
		}
		while (b > a && (blank(b[-1]) || b[-1] == '\r')) {
			*--b = '\0';
		}
		comment = *a == '#'; /* a comment even if what follows reads like a subject */
		if (strlen(a) > 8 && strncmp(a, "subject=", 8) == 0) {
			a += 8;
			while (*a != '\0' && blank(*a)) {
				a++;
			}
		}
		hit = !comment && *a != '\0' && strcmp(a, subject) == 0;
		free(line);
		if (hit) {
			return true;
		}
		p += n + (p[n] == '\n');
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 2);
	const char *subject, *list;

	if (buf == NULL) {
		return 0;
	}
	memcpy(buf, data, size);
	buf[size] = buf[size + 1] = '\0';
	subject = buf;
	list = buf + strlen(buf) + 1;
	if (list > buf + size) {
		list = buf + size + 1;
	}
	if (tls_authz_match(list, subject) != reference(list, subject)) {
		abort();
	}
	free(buf);
	return 0;
}
