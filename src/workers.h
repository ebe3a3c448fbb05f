/* workers: --threads N event-loop threads that serve the clients of tcp and unix listeners.
 * Each thread owns a registry of clients (client.h) on an event loop of its own, with its
 * own rotation, its own DRBG (mode=drbg) and its own cache of the shared pool, which the
 * main thread fills as the thread's clients need bytes (share.h). A client belongs to one
 * thread for its life.
 *
 * The main thread keeps the listeners (it accepts; a TLS handshake then runs on the
 * worker), the dialed connections, udp, fifo and vhost-user endpoints, listeners with
 * endpoint-rate= (their shared bucket lives on its loop), the control socket and http:
 * those serve from the main thread's registry, through a cache of its own too. An accepted
 * connection, or a listener's client a reload handed over, goes to the worker with the
 * fewest clients through that worker's mailbox; when the client ends, its endpoint's
 * callback (the per-peer count of max-per-peer=) runs back on the main thread. Status asks each
 * worker in turn and waits for its answer, so no client is read while its thread writes it; a
 * reload stops and joins the threads before it walks their registries. */
#ifndef ENTROPYD_WORKERS_H
#define ENTROPYD_WORKERS_H

#include "client.h"

#include <stddef.h>

struct event_base;
struct share;
struct workers;

/* The most event-loop threads (--threads). */
#define WORKERS_MAX 64u

/* Called once with a client just made (NULL if it could not be), on the thread that owns it,
 * before the client reads anything. */
typedef void (*client_made_fn)(struct client *c, void *arg);

/* n (>= 1) event-loop threads serving from caches 1..n of sh (0 is the main thread's), not
 * started; main is the main thread's loop. NULL on failure. */
struct workers *workers_new(struct event_base *main, struct share *sh, unsigned alpha_log2,
			    unsigned n);
/* Create each thread's DRBG for mode=drbg (clients_drbg); -1 on failure. */
int workers_drbg(struct workers *ws, double h);
/* After fork() (daemon): re-initialise each thread's event loop. */
int workers_reinit(struct workers *ws);
/* Start the threads (nothing if running); -1 on failure (errno set). */
int workers_start(struct workers *ws);
/* Stop each thread's loop and join it; its clients stay open (nothing if not running). Then
 * run the calls the threads sent the main thread (ends of clients). */
void workers_stop(struct workers *ws);
/* Stop, close every client and free (nothing if ws is NULL). */
void workers_free(struct workers *ws);
/* Serve an accepted connection (or one a reload handed over) as client_new does: on the
 * thread with the fewest clients, or on cs (the main thread's registry) if ws is NULL or
 * opts has an endpoint-rate= bucket. -1 on failure (tr closed fd and ctx; on_closed is not
 * called). If made is not NULL, made(c, made_arg) runs once in every case (with NULL on
 * failure), so that the caller restores a handed-over client's state on its thread
 * (handover_adopt) or frees what it passed. */
int workers_client_new(struct workers *ws, struct clients *cs, const struct transport *tr,
		       void *ctx, int fd, const struct client_opts *opts, const char *peer,
		       client_closed_fn on_closed, void *arg, client_made_fn made, void *made_arg);
/* Stopped threads: fill regs with up to max registries, one per thread; returns how many. */
size_t workers_registries(struct workers *ws, struct clients **regs, size_t max);
/* Call fn with each client snapshot of every thread (nothing if ws is NULL). */
void workers_each(struct workers *ws, void (*fn)(void *arg, const struct client_stat *st),
		  void *arg);
/* clients_tick on every thread. */
void workers_tick(struct workers *ws);
/* clients_waiting summed over the threads. */
size_t workers_waiting(struct workers *ws);
/* clients_on summed over the threads. */
size_t workers_on(struct workers *ws, const char *spec);

#endif
