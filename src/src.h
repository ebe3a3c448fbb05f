/* src: the configured randomness sources, each read by its own thread, each with its own
 * health tester. Tested bytes go into the pool in whole passing APT windows.
 *
 * Sources have priorities (default: the order given). Only the best priority group that
 * has a healthy source feeds the pool; lower groups pass their start-up test and then wait
 * as standbys, so failover is immediate. Sources of equal priority feed together. A
 * healthy source whose read blocks past its stall deadline fails over in the same way. */
#ifndef ENTROPYD_SRC_H
#define ENTROPYD_SRC_H

#include "src_driver.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pool;
struct sources;

/* The largest stall= deadline accepted (ms). */
#define SRC_STALL_MAX_MS 86400000

/* A source as configured: `KIND[:ARG][,h=BITS][,prio=N][,init=…][,baud=N][,stall=MS]`. */
struct source_conf {
	char *spec;	    /* as written by the user, for log lines */
	char *kind;	    /* a driver's kind (src_drivers[]) */
	char *arg;	    /* the driver's argument, or NULL */
	double min_entropy; /* assumed min-entropy per byte for the health tests */
	int prio;	    /* lower is preferred */
	struct src_tty tty; /* file: only */
	long stall_ms;	    /* -1: the kind's default; 0: never; else the read deadline */
	int threads;	    /* threads=: readers, each with its own health tests (0 or 1: one) */
	const char *note;   /* why it was chosen, logged at start (the default source), or NULL */
};

/* The set of sources feeding pool; alpha_log2 sets the health tests' false-positive rate. */
struct sources *sources_new(struct pool *pool, unsigned alpha_log2);
/* Open and check one source now (start-up); -1 with a one-line message in err. */
int sources_add(struct sources *s, const struct source_conf *conf, char *err, size_t errlen);
/* conf's driver once its kind, argument and tty settings are checked (as sources_add does),
 * or NULL with a one-line message naming the source in err. */
const struct src_driver *src_conf_driver(const struct source_conf *conf, char *err, size_t errlen);
/* Open a source with drv and apply tty settings where the driver takes them; the state, or
 * NULL with a one-line message in err. */
void *src_open(const struct src_driver *drv, const char *arg, const struct src_tty *tty, char *err,
	       size_t errlen);
/* Start one thread per source. */
int sources_start(struct sources *s);
/* Ask the threads to stop; sources_free then wakes a thread blocked in a read and joins it. */
void sources_stop(struct sources *s);
/* Log a one-line summary per source (bytes read, served, discarded, failures; src_stats.c). */
void sources_log_stats(struct sources *s);
/* The lowest min-entropy per byte (h=) among the sources added (8 when there are none). */
double sources_min_entropy(const struct sources *s);

/* One source's state and counters at one moment (for status and metrics). */
struct src_stat {
	const char *spec, *kind; /* valid while the sources live */
	const char *state;	 /* starting, serving, standby, failed, stalled, exhausted */
	uint64_t bytes_read, bytes_passed, bytes_discarded;
	uint64_t rct_failures, apt_failures, reopens, stalls;
	const char *last_failure;  /* a static phrase, or NULL: none yet */
	long long last_failure_at; /* its time (seconds since the epoch), or 0 */
};

/* Fill out with source i's snapshot (any thread; i < sources_count); -1 if i is too big. */
int sources_snapshot(struct sources *s, size_t i, struct src_stat *out);
/* Number of configured sources. */
size_t sources_count(const struct sources *s);

/* Stop, wake and join every source thread within timeout_ms (one line logged and -1 if one
 * did not end in time). Before a re-exec moves descriptors: a thread still reading could
 * otherwise read from, write to or close a descriptor that has become a socket. */
int sources_join(struct sources *s, unsigned timeout_ms);
/* Stop, wake and join every source thread within timeout_ms, then close and free all; -1
 * (one line logged, nothing freed) if a thread did not end in time. */
int sources_free(struct sources *s, unsigned timeout_ms);

#endif
