/* src_impl: the state of the sources that src.c (the threads, the failover) and
 * src_stats.c (snapshots for status, metrics and the shutdown summary) share. Only those
 * two files include it. */
#ifndef ENTROPYD_SRC_IMPL_H
#define ENTROPYD_SRC_IMPL_H

#include "src.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum src_state { SRC_CLOSED, SRC_STARTING, SRC_HEALTHY, SRC_STALLED, SRC_EXHAUSTED };

struct src_inst {
	struct sources *set;
	double h; /* h=: assumed min-entropy per byte */
	char *spec;
	char *arg;
	int prio;
	struct src_tty tty;
	const struct src_driver *drv;
	void *st;
	struct gate *gate;
	pthread_t thread;
	bool thread_started;
	enum src_state state; /* under set->lock */
	bool ever_healthy;    /* under set->lock */
	uint8_t *chunk;
	unsigned consecutive_failures;
	long stall_ms;			 /* read deadline; 0 = never */
	_Atomic long long read_since_ms; /* CLOCK_MONOTONIC ms when read() began; 0 outside */
	char desc[224];			 /* what it is, its cutoffs and deadline, logged at start */
	char note[512];			 /* why it was chosen (the default source), or "" */
	_Atomic uint64_t bytes_read, bytes_served, bytes_discarded, reopens, stalls;
	const char *last_failure;  /* under set->lock: a static phrase, or NULL */
	long long last_failure_at; /* under set->lock: when (seconds since the epoch) */
};

struct sources {
	struct pool *pool;
	unsigned alpha_log2;
	struct src_inst **v;
	size_t n;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_bool stop;
	int active_prio;      /* INT_MAX when no source is healthy */
	long long started_ms; /* clock_ms() at sources_start */
	bool holding;	      /* a fallback waits for a better source's first start-up */
	pthread_t watchdog;   /* marks stalled reads; runs when a source has a deadline */
	bool watchdog_started;
};

#endif
