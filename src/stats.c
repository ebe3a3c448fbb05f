/* stats: see stats.h. The document's fields are listed in entropyctl(1). */
#include "stats.h"

#include "client.h"
#include "endpoint.h"
#include "meter.h"
#include "netaddr.h"
#include "pool.h"
#include "src.h"
#include "workers.h"

#include <event2/event.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct stats {
	struct sources *srcs;
	struct clients *cs;
	struct workers *ws; /* event-loop threads' clients, or NULL */
	struct endpoints *eps;
	struct pool *pool;
	struct event *tick;
	struct meter *src_read; /* one per source: bytes read */
	struct meter *src_pass; /* one per source: bytes passed to the pool */
	struct meter delivered; /* the pool's bytes delivered to clients */
	long long started;	/* seconds since the epoch */
};

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stats *st = arg;
	struct src_stat s;

	for (size_t i = 0; sources_snapshot(st->srcs, i, &s) == 0; i++) {
		meter_sample(&st->src_read[i], s.bytes_read);
		meter_sample(&st->src_pass[i], s.bytes_passed);
	}
	meter_sample(&st->delivered, pool_delivered(st->pool));
	clients_tick(st->cs);
	workers_tick(st->ws);
}

void stats_set_workers(struct stats *st, struct workers *ws)
{
	st->ws = ws;
}

struct stats *stats_new(struct event_base *base, struct sources *srcs, struct clients *cs,
			struct endpoints *eps, struct pool *pool)
{
	struct stats *st = calloc(1, sizeof(*st));
	size_t n = sources_count(srcs) + 1;
	struct timeval every = {1, 0};

	if (st == NULL) {
		return NULL;
	}
	*st = (struct stats){.srcs = srcs, .cs = cs, .eps = eps, .pool = pool};
	st->src_read = calloc(n, sizeof(struct meter));
	st->src_pass = calloc(n, sizeof(struct meter));
	st->started = (long long)time(NULL);
	st->tick = event_new(base, -1, EV_PERSIST, tick_cb, st);
	if (st->src_read == NULL || st->src_pass == NULL || st->tick == NULL ||
	    event_add(st->tick, &every) < 0) {
		stats_free(st);
		return NULL;
	}
	return st;
}

void stats_free(struct stats *st)
{
	if (st == NULL) {
		return;
	}
	if (st->tick != NULL) {
		event_free(st->tick);
	}
	free(st->src_read);
	free(st->src_pass);
	free(st);
}

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static void add_str(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v != NULL ? json_object_new_string(v) : NULL);
}

static struct json_object *source_json(struct stats *st, size_t i, const struct src_stat *s)
{
	struct json_object *o = json_object_new_object();

	add_str(o, "spec", s->spec);
	add_str(o, "kind", s->kind);
	add_str(o, "state", s->state);
	add_u64(o, "bytes_read", s->bytes_read);
	add_u64(o, "bytes_passed", s->bytes_passed);
	add_u64(o, "bytes_discarded", s->bytes_discarded);
	json_object_object_add(o, "rate", json_object_new_double(meter_rate(&st->src_read[i])));
	json_object_object_add(o, "rate_passed",
			       json_object_new_double(meter_rate(&st->src_pass[i])));
	add_u64(o, "rct_failures", s->rct_failures);
	add_u64(o, "apt_failures", s->apt_failures);
	add_u64(o, "reopens", s->reopens);
	add_u64(o, "stalls", s->stalls);
	add_str(o, "last_failure", s->last_failure);
	json_object_object_add(o, "last_failure_at",
			       s->last_failure_at != 0 ? json_object_new_int64(s->last_failure_at)
						       : NULL);
	return o;
}

struct each_ctx {
	struct stats *st;
	struct json_object *arr;
};

/* Where ep can be reached: the addresses its sockets are bound to (a port given as 0 is
 * the one the kernel chose), its path, or for a connecting endpoint what it dials. */
static void endpoint_address(const struct endpoint *ep, char *out, size_t outlen)
{
	static const char *const inet[] = {[EP_TCP] = "tcp", [EP_UDP] = "udp", [EP_HTTP] = "http"};
	struct inherit_kept kept[8];
	size_t n = 0, at = 0;

	out[0] = '\0';
	if (ep->conf.path != NULL) {
		snprintf(out, outlen, "%s", ep->conf.path);
		return;
	}
	if (ep->conf.connect || ep->ops->keep == NULL ||
	    (size_t)ep->conf.kind >= sizeof(inet) / sizeof(inet[0]) ||
	    inet[ep->conf.kind] == NULL) {
		snprintf(out, outlen, "%s:%s", ep->conf.host ? ep->conf.host : "",
			 ep->conf.port ? ep->conf.port : "");
		return;
	}
	n = ep->ops->keep(ep, kept, sizeof(kept) / sizeof(kept[0]));
	for (size_t i = 0; i < n && at < outlen; i++) {
		char name[160];

		netaddr_sock_name(kept[i].fd, "tcp", name, sizeof(name));
		/* without its "tcp:": 127.0.0.1:8888, [::1]:8888 */
		at += (size_t)snprintf(out + at, outlen - at, "%s%s", i ? " " : "", name + 4);
	}
}

static void endpoint_json(void *arg, const struct endpoint *ep)
{
	char address[256];

	struct each_ctx *x = arg;
	struct json_object *o = json_object_new_object();

	add_str(o, "spec", endpoint_name(ep));
	add_str(o, "kind", ep->conf.control ? "control" : endpoint_kind_name(ep->conf.kind));
	add_str(o, "direction", ep->conf.connect ? "connect" : "listen");
	endpoint_address(ep, address, sizeof(address));
	add_str(o, "address", address);
	json_object_object_add(o, "tls", json_object_new_boolean(ep->conf.tls_dir != NULL));
	add_str(o, "state", ep->ops->state != NULL ? ep->ops->state(ep) : "listening");
	add_u64(o, "clients",
		clients_on(x->st->cs, endpoint_name(ep)) +
		    workers_on(x->st->ws, endpoint_name(ep)));
	json_object_array_add(x->arr, o);
}

static void client_json(void *arg, const struct client_stat *c)
{
	struct each_ctx *x = arg;
	struct json_object *o = json_object_new_object();

	add_str(o, "peer", c->peer);
	add_str(o, "endpoint", c->endpoint);
	add_str(o, "kind", c->kind);
	add_str(o, "state", c->state);
	add_u64(o, "bytes_served", c->served);
	add_u64(o, "bytes_owed", c->owed);
	json_object_object_add(o, "rate", json_object_new_double(c->rate));
	add_u64(o, "throttled_bytes", c->throttled);
	json_object_object_add(o, "connected_since", json_object_new_int64(c->since));
	json_object_object_add(o, "thread", json_object_new_int(c->thread));
	json_object_array_add(x->arr, o);
}

struct json_object *stats_json(struct stats *st)
{
	struct json_object *o = json_object_new_object(), *pool = json_object_new_object();
	struct each_ctx x = {st, json_object_new_array()};
	struct src_stat s;

	if (o == NULL || pool == NULL || x.arr == NULL) {
		json_object_put(o);
		json_object_put(pool);
		json_object_put(x.arr);
		return NULL;
	}
	add_str(o, "version", ENTROPYD_VERSION);
	json_object_object_add(o, "time", json_object_new_int64((long long)time(NULL)));
	json_object_object_add(o, "started", json_object_new_int64(st->started));
	json_object_object_add(o, "pool", pool); /* filled last (below) */
	add_u64(o, "clients_waiting", clients_waiting(st->cs) + workers_waiting(st->ws));
	for (size_t i = 0; sources_snapshot(st->srcs, i, &s) == 0; i++) {
		json_object_array_add(x.arr, source_json(st, i, &s));
	}
	json_object_object_add(o, "sources", x.arr);
	x.arr = json_object_new_array();
	endpoints_each(st->eps, endpoint_json, &x);
	json_object_object_add(o, "endpoints", x.arr);
	x.arr = json_object_new_array();
	clients_each(st->cs, client_json, &x);
	workers_each(st->ws, client_json, &x);
	json_object_object_add(o, "clients", x.arr);
	/* After the clients: event-loop threads serve on meanwhile, and what the pool delivered
	 * must cover what the clients were seen to be served. */
	add_u64(pool, "level", pool_avail(st->pool));
	add_u64(pool, "capacity", pool_capacity(st->pool));
	add_u64(pool, "delivered", pool_delivered(st->pool));
	json_object_object_add(pool, "rate", json_object_new_double(meter_rate(&st->delivered)));
	return o;
}
