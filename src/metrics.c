/* metrics: see metrics.h. One table row per metric family: which array of the status
 * document it reads, the field, and the labels (the fields that name a row). */
#include "metrics.h"

#include <json-c/json.h>
#include <string.h>

struct family {
	const char *name, *type, *help;
	const char *array; /* "sources", "endpoints", "clients", or NULL: the document's root */
	const char *field; /* a number; "pool.level" style for a nested object */
	const char *labels[2][2]; /* {label, field} pairs, up to two */
};

static const struct family families[] = {
    {"entropyd_source_bytes_read_total",
     "counter",
     "Bytes read from the source.",
     "sources",
     "bytes_read",
     {{"source", "spec"}, {"kind", "kind"}}},
    {"entropyd_source_bytes_passed_total",
     "counter",
     "Bytes that passed the health tests and went to the pool.",
     "sources",
     "bytes_passed",
     {{"source", "spec"}, {"kind", "kind"}}},
    {"entropyd_source_bytes_discarded_total",
     "counter",
     "Bytes discarded (a failed or unfinished health test window).",
     "sources",
     "bytes_discarded",
     {{"source", "spec"}, {"kind", "kind"}}},
    {"entropyd_source_rct_failures_total",
     "counter",
     "Repetition count test failures.",
     "sources",
     "rct_failures",
     {{"source", "spec"}, {"kind", "kind"}}},
    {"entropyd_source_apt_failures_total",
     "counter",
     "Adaptive proportion test failures.",
     "sources",
     "apt_failures",
     {{"source", "spec"}, {"kind", "kind"}}},
    {"entropyd_source_stalls_total",
     "counter",
     "Reads that outlived the stall deadline.",
     "sources",
     "stalls",
     {{"source", "spec"}, {"kind", "kind"}}},
    {"entropyd_source_reopens_total",
     "counter",
     "Times the source was re-opened.",
     "sources",
     "reopens",
     {{"source", "spec"}, {"kind", "kind"}}},
    {"entropyd_source_read_rate_bytes",
     "gauge",
     "Bytes per second read over the last 10 seconds.",
     "sources",
     "rate",
     {{"source", "spec"}, {"kind", "kind"}}},
    {"entropyd_endpoint_clients",
     "gauge",
     "Clients connected through the endpoint.",
     "endpoints",
     "clients",
     {{"endpoint", "spec"}, {"kind", "kind"}}},
    {"entropyd_client_bytes_served_total",
     "counter",
     "Bytes sent to the client.",
     "clients",
     "bytes_served",
     {{"peer", "peer"}, {"endpoint", "endpoint"}}},
    {"entropyd_client_bytes_owed",
     "gauge",
     "Bytes the client asked for and was not sent yet.",
     "clients",
     "bytes_owed",
     {{"peer", "peer"}, {"endpoint", "endpoint"}}},
    {"entropyd_client_throttled_bytes_total",
     "counter",
     "Bytes held back by a throttle.",
     "clients",
     "throttled_bytes",
     {{"peer", "peer"}, {"endpoint", "endpoint"}}},
    {"entropyd_pool_level_bytes",
     "gauge",
     "Tested bytes ready in the pool.",
     NULL,
     "pool.level",
     {{NULL, NULL}}},
    {"entropyd_pool_capacity_bytes",
     "gauge",
     "The pool's size.",
     NULL,
     "pool.capacity",
     {{NULL, NULL}}},
    {"entropyd_delivered_bytes_total",
     "counter",
     "Bytes delivered to all clients.",
     NULL,
     "pool.delivered",
     {{NULL, NULL}}},
    {"entropyd_clients_waiting",
     "gauge",
     "Clients owed bytes that wait for the pool.",
     NULL,
     "clients_waiting",
     {{NULL, NULL}}},
    {"entropyd_start_time_seconds",
     "gauge",
     "When entropyd started (seconds since the epoch).",
     NULL,
     "started",
     {{NULL, NULL}}},
};

/* A label value with \, " and newlines escaped. */
static void write_escaped(FILE *out, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"') {
			fputc('\\', out);
			fputc(*s, out);
		} else if (*s == '\n') {
			fputs("\\n", out);
		} else {
			fputc(*s, out);
		}
	}
}

/* The number at path ("a" or "a.b") in o, or NULL. */
static struct json_object *field(struct json_object *o, const char *path)
{
	const char *dot = strchr(path, '.');
	struct json_object *v = NULL;
	char head[32];

	if (dot == NULL) {
		return json_object_object_get_ex(o, path, &v) ? v : NULL;
	}
	snprintf(head, sizeof(head), "%.*s", (int)(dot - path), path);
	return json_object_object_get_ex(o, head, &v) ? field(v, dot + 1) : NULL;
}

static void sample(FILE *out, const struct family *f, struct json_object *row)
{
	struct json_object *v = field(row, f->field);
	const char *sep = "{";

	if (v == NULL) {
		return;
	}
	fputs(f->name, out);
	for (size_t i = 0; i < 2 && f->labels[i][0] != NULL; i++) {
		struct json_object *l = field(row, f->labels[i][1]);

		fprintf(out, "%s%s=\"", sep, f->labels[i][0]);
		write_escaped(out, l != NULL ? json_object_get_string(l) : "");
		fputc('"', out);
		sep = ",";
	}
	fputs(sep[0] == ',' ? "} " : " ", out);
	if (json_object_is_type(v, json_type_double)) {
		fprintf(out, "%.3f\n", json_object_get_double(v));
	} else {
		fprintf(out, "%s\n", json_object_get_string(v));
	}
}

void metrics_write(struct json_object *st, FILE *out)
{
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		const struct family *f = &families[i];
		struct json_object *arr = NULL;

		fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
		if (f->array == NULL) {
			sample(out, f, st);
		} else if (json_object_object_get_ex(st, f->array, &arr)) {
			for (size_t j = 0; j < json_object_array_length(arr); j++) {
				sample(out, f, json_object_array_get_idx(arr, j));
			}
		}
	}
}
