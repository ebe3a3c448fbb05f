/* http: see http.h. */
#include "http.h"

#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "stats.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <json-c/json.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HTTP_MAX_ADDRS 4
#define HTTP_TIMEOUT_S 10
#define HTTP_MAX_HEADERS 8192
#define HTTP_CHART_MAX (4u * 1024u * 1024u)

/* Built in from www/ (scripts/embed.py). */
extern const unsigned char http_index_html[], http_status_js[];
extern const size_t http_index_html_len, http_status_js_len;

struct httpd {
	struct evhttp *http;
	int fd[HTTP_MAX_ADDRS];
	size_t nfd;
	char *chart; /* Chart.js, or NULL if it could not be read */
	size_t chart_len;
	struct stats *stats;
};

static void send_bytes(struct evhttp_request *req, const char *type, const void *p, size_t n)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add(b, p, n);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

static void page_cb(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);

	if (strcmp(uri, "/") != 0 && strcmp(uri, "/index.html") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
		return;
	}
	send_bytes(req, "text/html; charset=utf-8", http_index_html, http_index_html_len);
}

static void js_cb(struct evhttp_request *req, void *arg)
{
	send_bytes(req, "text/javascript; charset=utf-8", http_status_js, http_status_js_len);
}

static void chart_cb(struct evhttp_request *req, void *arg)
{
	struct httpd *h = arg;

	if (h->chart == NULL) {
		evhttp_send_error(req, HTTP_NOTFOUND, "Chart.js (libjs-chart.js) is not installed");
		return;
	}
	send_bytes(req, "text/javascript; charset=utf-8", h->chart, h->chart_len);
}

static void status_cb(struct evhttp_request *req, void *arg)
{
	struct httpd *h = arg;
	struct json_object *st = stats_json(h->stats);
	const char *s;

	if (st == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	s = json_object_to_json_string_ext(st,
					   JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	send_bytes(req, "application/json", s, strlen(s));
	json_object_put(st);
}

static void metrics_cb(struct evhttp_request *req, void *arg)
{
	struct httpd *h = arg;
	struct json_object *st = stats_json(h->stats);
	char *text = NULL;
	size_t len = 0;
	FILE *f = st != NULL ? open_memstream(&text, &len) : NULL;

	if (f == NULL) {
		json_object_put(st);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	metrics_write(st, f);
	fclose(f);
	send_bytes(req, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
	json_object_put(st);
}

/* Read Chart.js now, before the sandbox: a page without it still shows its tables. */
static void load_chart(struct httpd *h, const char *spec)
{
	FILE *f = fopen(HTTP_CHART_JS, "rb");
	size_t n = 0;

	h->chart = f != NULL ? malloc(HTTP_CHART_MAX) : NULL;
	if (h->chart != NULL) {
		n = fread(h->chart, 1, HTTP_CHART_MAX, f);
	}
	if (f != NULL) {
		fclose(f);
	}
	if (h->chart == NULL || n == 0 || n == HTTP_CHART_MAX) {
		log_warnx("%s: cannot read %s (install libjs-chart.js): the status page shows no "
			  "graphs",
			  spec, HTTP_CHART_JS);
		free(h->chart);
		h->chart = NULL;
		return;
	}
	h->chart_len = n;
}

static int open_http(struct endpoint *ep, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct httpd *h = calloc(1, sizeof(*h));
	struct addrinfo *res, *ai;
	int rc;

	if (h == NULL || (h->http = evhttp_new(ep->base)) == NULL) {
		free(h);
		snprintf(err, errlen, "%s: out of memory", ep->conf.spec);
		return -1;
	}
	ep->impl = h;
	h->stats = ep->stats;
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(h->http, HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(h->http, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(h->http, 0);
	evhttp_set_gencb(h->http, page_cb, h);
	evhttp_set_cb(h->http, "/status.js", js_cb, h);
	evhttp_set_cb(h->http, "/chart.js", chart_cb, h);
	evhttp_set_cb(h->http, "/api/status", status_cb, h);
	evhttp_set_cb(h->http, "/metrics", metrics_cb, h);
	load_chart(h, ep->conf.spec);
	rc = getaddrinfo(ep->conf.host, ep->conf.port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", ep->conf.spec, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && h->nfd < HTTP_MAX_ADDRS; ai = ai->ai_next) {
		int fd = listen_bind_inet(ep, ai, err, errlen);
		char name[160];

		if (fd < 0) {
			freeaddrinfo(res);
			return -1;
		}
		if (evhttp_accept_socket_with_handle(h->http, fd) == NULL) {
			snprintf(err, errlen, "%s: cannot watch the socket", ep->conf.spec);
			close(fd);
			freeaddrinfo(res);
			return -1;
		}
		h->fd[h->nfd++] = fd;
		netaddr_sock_name(fd, "tcp", name, sizeof(name));
		log_info("listening on http%s (status page, /metrics, /api/status)", name + 3);
	}
	freeaddrinfo(res);
	return 0;
}

static size_t keep_http(const struct endpoint *ep, struct inherit_kept *out, size_t room)
{
	const struct httpd *h = ep->impl;
	size_t n = 0;

	for (size_t i = 0; h != NULL && i < h->nfd && n < room; i++) {
		out[n++] = (struct inherit_kept){.fd = h->fd[i]};
	}
	return n;
}

static void close_http(struct endpoint *ep)
{
	struct httpd *h = ep->impl;

	if (h == NULL) {
		return;
	}
	evhttp_free(h->http); /* closes the bound sockets */
	free(h->chart);
	free(h);
	ep->impl = NULL;
}

const struct endpoint_ops http_ops = {.open = open_http, .keep = keep_http, .close = close_http};
