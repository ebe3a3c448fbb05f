/* control: see control.h. */
#include "control.h"

#include "client.h"
#include "endpoint.h"
#include "log.h"
#include "stats.h"
#include "transport.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct conn {
	const struct endpoint *ep;
	struct conn *prev, *next; /* the open connections, for control_close */
	struct bufferevent *bev;
	uint64_t get; /* a get's header is being sent: then serve this many bytes */
	char peer[160];
};

/* Open control connections (a get's becomes a client and leaves them). */
static struct conn *conns;
static unsigned live_conns;
/* The lines saying a connection was refused over CONTROL_MAX_CONNS. */
static struct log_limit over_limit;

static void conn_free(struct conn *c)
{
	if (c->prev != NULL) {
		c->prev->next = c->next;
	} else {
		conns = c->next;
	}
	if (c->next != NULL) {
		c->next->prev = c->prev;
	}
	bufferevent_free(c->bev);
	free(c);
	live_conns--;
}

/* Hostile or broken input: one line, and only this connection ends. */
static void conn_refuse(struct conn *c, const char *why)
{
	log_warnx("control %s: %s; connection closed", c->peer, why);
	conn_free(c);
}

/* Send o (and put it) as one line. */
static void reply(struct conn *c, struct json_object *o)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	evbuffer_add_printf(out, "%s\n",
			    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								  JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static void reply_error(struct conn *c, const char *msg)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "error", json_object_new_string(msg));
	reply(c, o);
}

/* The get's header is out: the connection becomes a client owed c->get bytes. */
static void hand_over(struct conn *c)
{
	const struct endpoint *ep = c->ep;
	struct client_opts opts = {.endpoint = endpoint_name(ep)};
	int fd = bufferevent_getfd(c->bev);
	uint64_t n = c->get;
	struct client *cl;
	char peer[160];

	memcpy(peer, c->peer, sizeof(peer));
	bufferevent_setfd(c->bev, -1);
	conn_free(c);
	cl = client_new(ep->cs, &transport_stream, NULL, fd, &opts, peer, NULL, NULL);
	if (cl != NULL) {
		client_owe(cl, n);
	}
}

/* One request line; returns -1 if c was freed. */
static int request(struct conn *c, const char *line)
{
	struct json_object *req = json_tokener_parse(line), *cmd, *bytes;
	const char *name;

	if (req == NULL || !json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		conn_refuse(c, "request is not a JSON object");
		return -1;
	}
	name = json_object_object_get_ex(req, "cmd", &cmd) ? json_object_get_string(cmd) : "";
	if (strcmp(name, "status") == 0) {
		struct json_object *st = stats_json(c->ep->stats);

		if (st != NULL) {
			reply(c, st);
		} else {
			reply_error(c, "out of memory");
		}
	} else if (strcmp(name, "get") == 0) {
		int64_t n = json_object_object_get_ex(req, "bytes", &bytes) &&
				    json_object_is_type(bytes, json_type_int)
				? json_object_get_int64(bytes)
				: -1;

		if (n < 1 || (uint64_t)n > CONTROL_MAX_GET) {
			reply_error(c, "get needs \"bytes\": 1..4294967296");
		} else {
			struct json_object *h = json_object_new_object();

			json_object_object_add(h, "bytes", json_object_new_int64(n));
			reply(c, h);
			c->get = (uint64_t)n;
			bufferevent_disable(c->bev, EV_READ);
		}
	} else {
		reply_error(c, "unknown command (known: status, get)");
	}
	json_object_put(req);
	return 0;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	while (c->get == 0 && (line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		int rc = len > CONTROL_MAX_REQUEST ? -2 : request(c, line);

		free(line);
		if (rc == -2) {
			conn_refuse(c, "request line too long");
		}
		if (rc < 0) {
			return;
		}
	}
	if (c->get == 0 && evbuffer_get_length(in) > CONTROL_MAX_REQUEST) {
		conn_refuse(c, "request line too long");
	}
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->get > 0) {
		hand_over(c);
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & BEV_EVENT_ERROR) {
		log_debug("control %s: connection error", c->peer);
	}
	conn_free(c);
}

void control_accept(const struct endpoint *ep, int fd, const char *peer)
{
	struct conn *c;

	if (live_conns >= CONTROL_MAX_CONNS) {
		log_limited(&over_limit, LOG_WARNING,
			    "control %s: %u control connections are open already; connection "
			    "closed",
			    peer, live_conns);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL ||
	    (c->bev = bufferevent_socket_new(ep->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		log_warnx("control %s: out of memory; connection closed", peer);
		free(c);
		close(fd);
		return;
	}
	live_conns++;
	c->next = conns;
	if (conns != NULL) {
		conns->prev = c;
	}
	conns = c;
	c->ep = ep;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	/* Read at most one request and its limit at a time: a flood cannot grow the buffer. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, CONTROL_MAX_REQUEST + 2);
	bufferevent_enable(c->bev, EV_READ);
	log_debug("control %s: connected", c->peer);
}

void control_close(const struct endpoint *ep)
{
	struct conn *c = conns, *next;

	for (; c != NULL; c = next) {
		next = c->next;
		if (c->ep == ep) {
			conn_free(c);
		}
	}
}
