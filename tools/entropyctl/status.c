/* status: `entropyctl status`: the daemon's status document, as it is (--json) or as three
 * aligned tables (sources, endpoints, clients) in the manner of `chronyc sources`. */
#include "ctl.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_STATUS (16u * 1024u * 1024u)
#define COLS 10
#define CELL 80

/* A table built row by row, printed with every column as wide as its widest cell. */
struct table {
	size_t ncols, nrows;
	const char *head[COLS];
	bool right[COLS];
	char (*cells)[COLS][CELL];
};

static void row(struct table *t, ...)
{
	va_list ap;
	void *grown = realloc(t->cells, (t->nrows + 1) * sizeof(*t->cells));

	if (grown == NULL) {
		return;
	}
	t->cells = grown;
	va_start(ap, t);
	for (size_t c = 0; c < t->ncols; c++) {
		snprintf(t->cells[t->nrows][c], CELL, "%s", va_arg(ap, const char *));
	}
	va_end(ap);
	t->nrows++;
}

static void print_table(struct table *t, const char *empty)
{
	size_t w[COLS], total = 0;

	for (size_t c = 0; c < t->ncols; c++) {
		w[c] = strlen(t->head[c]);
		for (size_t r = 0; r < t->nrows; r++) {
			size_t l = strlen(t->cells[r][c]);

			w[c] = l > w[c] ? l : w[c];
		}
		total += w[c] + (c > 0 ? 2 : 0);
	}
	for (size_t c = 0; c < t->ncols; c++) {
		printf("%s%*s", c > 0 ? "  " : "", t->right[c] ? (int)w[c] : -(int)w[c],
		       t->head[c]);
	}
	printf("\n");
	for (size_t i = 0; i < total; i++) {
		putchar('=');
	}
	printf("\n");
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			bool last = c + 1 == t->ncols && !t->right[c];

			printf("%s%*s", c > 0 ? "  " : "",
			       t->right[c] ? (int)w[c] : (last ? 0 : -(int)w[c]), t->cells[r][c]);
		}
		printf("\n");
	}
	if (t->nrows == 0) {
		printf("(%s)\n", empty);
	}
	free(t->cells);
}

/* Field key of o as text: a number as bytes (1.5M), a rate (1.5M/s), or a string. */
static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL) {
		return "-";
	}
	return json_object_get_string(v);
}

static double num(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0.0;
}

/* A byte count the way people read it: 512, 1.5K, 12.0M (powers of 1024). */
static const char *human(char *buf, double v)
{
	static const char units[] = "KMGTP";
	int u = -1;

	while (v >= 1024.0 && u < 4) {
		v /= 1024.0;
		u++;
	}
	if (u < 0) {
		snprintf(buf, CELL, "%.0f", v);
	} else {
		snprintf(buf, CELL, "%.1f%c", v, units[u]);
	}
	return buf;
}

static const char *ago(char *buf, long long now, long long then)
{
	long long d = now - then;

	if (then == 0) {
		return "-";
	}
	if (d < 120) {
		snprintf(buf, CELL, "%llds ago", d);
	} else if (d < 7200) {
		snprintf(buf, CELL, "%lldm ago", d / 60);
	} else {
		snprintf(buf, CELL, "%lldh ago", d / 3600);
	}
	return buf;
}

static void print_plain(struct json_object *st)
{
	struct json_object *pool = NULL, *arr = NULL;
	long long now = (long long)num(st, "time");
	char a[CELL], b[CELL], c[CELL], d[CELL], e[CELL], f[CELL];

	json_object_object_get_ex(st, "pool", &pool);
	printf("entropyd %s, started %s; pool %s of %s; %s delivered; %s client(s) waiting\n\n",
	       str(st, "version"), ago(a, now, (long long)num(st, "started")),
	       human(b, num(pool, "level")), human(c, num(pool, "capacity")),
	       human(d, num(pool, "delivered")), str(st, "clients_waiting"));

	struct table ts = {9,
			   0,
			   {"Source", "State", "Read", "Passed", "Discarded", "Rate/s", "RCT",
			    "APT", "Last failure"},
			   {false, false, true, true, true, true, true, true, false},
			   NULL};
	json_object_object_get_ex(st, "sources", &arr);
	for (size_t i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
		struct json_object *s = json_object_array_get_idx(arr, i);
		char last[CELL], when[CELL];

		snprintf(last, sizeof(last), "%s%s%s", str(s, "last_failure"),
			 num(s, "last_failure_at") != 0 ? ", " : "",
			 num(s, "last_failure_at") != 0
			     ? ago(when, now, (long long)num(s, "last_failure_at"))
			     : "");
		row(&ts, str(s, "spec"), str(s, "state"), human(a, num(s, "bytes_read")),
		    human(b, num(s, "bytes_passed")), human(c, num(s, "bytes_discarded")),
		    human(d, num(s, "rate")), str(s, "rct_failures"), str(s, "apt_failures"), last);
	}
	print_table(&ts, "no source");
	printf("\n");

	struct table te = {6,
			   0,
			   {"Endpoint", "Kind", "Direction", "Address", "State", "Clients"},
			   {false, false, false, false, false, true},
			   NULL};
	json_object_object_get_ex(st, "endpoints", &arr);
	for (size_t i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
		struct json_object *s = json_object_array_get_idx(arr, i);
		struct json_object *tls = NULL;

		json_object_object_get_ex(s, "tls", &tls);
		snprintf(a, sizeof(a), "%s%s", str(s, "kind"),
			 json_object_get_boolean(tls) ? "+tls" : "");
		row(&te, str(s, "spec"), a, str(s, "direction"), str(s, "address"), str(s, "state"),
		    str(s, "clients"));
	}
	print_table(&te, "no endpoint");
	printf("\n");

	struct table tc = {
	    8,
	    0,
	    {"Client", "Endpoint", "Served", "Owed", "Rate/s", "Throttled", "Connected", "State"},
	    {false, false, true, true, true, true, false, false},
	    NULL};
	json_object_object_get_ex(st, "clients", &arr);
	for (size_t i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
		struct json_object *s = json_object_array_get_idx(arr, i);

		row(&tc, str(s, "peer"), str(s, "endpoint"), human(a, num(s, "bytes_served")),
		    human(b, num(s, "bytes_owed")), human(c, num(s, "rate")),
		    human(e, num(s, "throttled_bytes")),
		    ago(f, now, (long long)num(s, "connected_since")), str(s, "state"));
	}
	print_table(&tc, "no client");
}

int ctl_status_main(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
	struct json_object *req, *st;
	bool json = false;
	int ch, fd;

	while ((ch = getopt_long(argc, argv, "j", opts, NULL)) != -1) {
		if (ch != 'j') {
			fprintf(stderr, "usage: entropyctl status [--json]\n");
			return 2;
		}
		json = true;
	}
	if ((fd = ctl_connect()) < 0) {
		return 1;
	}
	req = json_object_new_object();
	json_object_object_add(req, "cmd", json_object_new_string("status"));
	st = ctl_send(fd, req) == 0 ? ctl_reply(fd, MAX_STATUS) : NULL;
	json_object_put(req);
	close(fd);
	if (st == NULL) {
		return 1;
	}
	if (json) {
		printf("%s\n", json_object_to_json_string_ext(
				   st, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
					   JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		print_plain(st);
	}
	json_object_put(st);
	return 0;
}
