/* stats: the status model of the running daemon: every source (state, counters, rate over
 * the last 10 s, health failures, last failure), every endpoint, every client, the pool and
 * the clients waiting, as one JSON document (json-c). The control socket, `/api/status` and
 * `/metrics` all answer from it, so they never disagree. Source counters are read with
 * atomics or under the sources' lock; everything else belongs to the event loop. A 1 s timer
 * samples the counters for the rates. */
#ifndef ENTROPYD_STATS_H
#define ENTROPYD_STATS_H

struct event_base;
struct sources;
struct clients;
struct endpoints;
struct pool;
struct json_object;
struct stats;
struct workers;

/* The model of srcs, cs, eps and pool, sampled each second on base; NULL on failure. */
struct stats *stats_new(struct event_base *base, struct sources *srcs, struct clients *cs,
			struct endpoints *eps, struct pool *pool);
/* Stop sampling and free. */
void stats_free(struct stats *st);
/* Count the clients of event-loop threads (workers.h) too. */
void stats_set_workers(struct stats *st, struct workers *ws);
/* The status now, as a new JSON object (the caller puts it); NULL when out of memory. */
struct json_object *stats_json(struct stats *st);

#endif
