/* src: one thread per source; each tests what it reads with its own health tester and
 * hands over only whole APT windows that passed, after a passing start-up test.
 *
 * Invariant: no byte read before the start-up test passed, or in a window in which a test
 * failed, ever reaches the pool. The thread stages the current window (at most 512 bytes)
 * and wipes it on a failure. Which sources feed is decided by priority groups: the best
 * group with a healthy member feeds, healthy members of worse groups wait as standbys.
 *
 * A healthy source whose driver read() blocks past its stall deadline (a command or a
 * FIFO's writer that went quiet without closing) is marked stalled by a watchdog thread and
 * leaves the feeding group, as on a health failure; only time inside read() counts, never
 * time waiting for pool space or for a standby's turn. Its staged window is discarded and,
 * when it delivers again, it re-runs the start-up test before it feeds. */
#include "src.h"

#include "clock.h"
#include "gate.h"
#include "health.h"
#include "log.h"
#include "pool.h"
#include "src_impl.h"
#include "src_wake.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SRC_CHUNK (64u * 1024u)
#define SRC_FAILURES_BEFORE_REOPEN 3u
#define SRC_BACKOFF_MAX 60u
/* At start, a fallback waits this long for a better source's first start-up test. */
#define SRC_FIRST_START_GRACE_S 10

/* How often the watchdog looks for stalled reads. */
#define SRC_WATCHDOG_MS 250

struct sources *sources_new(struct pool *pool, unsigned alpha_log2)
{
	struct sources *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		return NULL;
	}
	s->pool = pool;
	s->alpha_log2 = alpha_log2;
	s->active_prio = INT_MAX;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	return s;
}

double sources_min_entropy(const struct sources *s)
{
	double h = 8;

	for (size_t i = 0; i < s->n; i++) {
		h = s->v[i]->h < h ? s->v[i]->h : h;
	}
	return h;
}

size_t sources_count(const struct sources *s)
{
	return s->n;
}

void *src_open(const struct src_driver *drv, const char *arg, const struct src_tty *tty, char *err,
	       size_t errlen)
{
	void *st = drv->open(arg, err, errlen);

	if (st != NULL && drv->setup != NULL && drv->setup(st, tty, err, errlen) < 0) {
		src_driver_close(drv, st);
		return NULL;
	}
	return st;
}

const struct src_driver *src_conf_driver(const struct source_conf *conf, char *err, size_t errlen)
{
	const struct src_driver *drv = src_driver_find(conf->kind);
	char derr[256] = "";

	if (drv == NULL) {
		char kinds[256];

		src_driver_kinds(kinds, sizeof(kinds));
		snprintf(err, errlen, "source %s: unknown kind '%s' (known: %s)", conf->spec,
			 conf->kind, kinds);
		return NULL;
	}
	if (drv->needs_arg && (conf->arg == NULL || conf->arg[0] == '\0')) {
		snprintf(err, errlen, "source %s: needs an argument (%s:ARG)", conf->spec,
			 drv->kind);
		return NULL;
	}
	if (!drv->needs_arg && !drv->takes_arg && conf->arg != NULL) {
		snprintf(err, errlen, "source %s: '%s' takes no argument", conf->spec, drv->kind);
		return NULL;
	}
	if ((conf->tty.init != NULL || conf->tty.baud != 0) && drv->setup == NULL) {
		snprintf(err, errlen, "source %s: init= and baud= apply to file: sources only",
			 conf->spec);
		return NULL;
	}
	if (drv->check != NULL && drv->check(conf->arg, derr, sizeof(derr)) < 0) {
		snprintf(err, errlen, "source %s: %s", conf->spec, derr);
		return NULL;
	}
	return drv;
}

/* One reader of conf (drv checked), logged and listed as spec. */
static int add_one(struct sources *s, const struct source_conf *conf, const struct src_driver *drv,
		   const char *spec, char *err, size_t errlen)
{
	struct src_inst *si;
	struct src_inst **v;
	char derr[256] = "";

	si = calloc(1, sizeof(*si));
	v = realloc(s->v, (s->n + 1) * sizeof(*v));
	if (si == NULL || v == NULL) {
		free(si);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->v = v;
	si->gate = gate_new(conf->min_entropy, s->alpha_log2);
	si->h = conf->min_entropy;
	if (si->gate == NULL) {
		snprintf(err, errlen, "source %s: h=%g must be in (0, 8]", spec, conf->min_entropy);
		free(si);
		return -1;
	}
	si->st = src_open(drv, conf->arg, &conf->tty, derr, sizeof(derr));
	if (si->st == NULL && drv->retry_at_start) {
		log_warnx("source %s: cannot open it now: %s; starting without it and retrying "
			  "in the background",
			  spec, derr);
	} else if (si->st == NULL) {
		snprintf(err, errlen, "source %s: %s", spec, derr);
		gate_free(si->gate);
		free(si);
		return -1;
	}
	si->set = s;
	si->drv = drv;
	si->spec = strdup(spec);
	si->arg = conf->arg ? strdup(conf->arg) : NULL;
	snprintf(si->note, sizeof(si->note), "%s", conf->note ? conf->note : "");
	si->prio = conf->prio;
	si->tty.init = conf->tty.init ? strdup(conf->tty.init) : NULL;
	si->tty.baud = conf->tty.baud;
	si->stall_ms = conf->stall_ms >= 0 ? conf->stall_ms : (long)drv->stall_ms;
	si->state = si->st != NULL ? SRC_STARTING : SRC_CLOSED;
	si->chunk = malloc(SRC_CHUNK);
	if (si->spec == NULL || si->chunk == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->v[s->n++] = si;
	snprintf(si->desc, sizeof(si->desc),
		 "%s; h=%g bits/byte, RCT cutoff %u, APT cutoff %u/%u; stall deadline %ld ms%s",
		 drv->what, conf->min_entropy, health_rct_cutoff(gate_health(si->gate)),
		 health_apt_cutoff(gate_health(si->gate)), HEALTH_APT_WINDOW, si->stall_ms,
		 si->stall_ms == 0 ? " (never)" : "");
	return 0;
}

int sources_add(struct sources *s, const struct source_conf *conf, char *err, size_t errlen)
{
	const struct src_driver *drv = src_conf_driver(conf, err, errlen);
	unsigned n = conf->threads > 1 ? (unsigned)conf->threads : 1;

	if (drv == NULL) {
		return -1;
	}
	if (n > 1 && !drv->parallel) {
		snprintf(err, errlen, "source %s: threads= is for getrandom, rdseed and darn only",
			 conf->spec);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		char spec[512];

		if (n == 1) {
			snprintf(spec, sizeof(spec), "%s", conf->spec);
		} else {
			snprintf(spec, sizeof(spec), "%s (%u of %u)", conf->spec, i + 1, n);
		}
		if (add_one(s, conf, drv, spec, err, errlen) < 0) {
			return -1;
		}
	}
	return 0;
}

/* Under s->lock: recompute the feeding group and log when it changes. At start, a
 * fallback does not feed while a better source is still in its first start-up test (for
 * at most SRC_FIRST_START_GRACE_S): otherwise the fallback, often the faster one, would
 * fill the pool before the preferred source had a chance. */
static void update_active_locked(struct sources *s)
{
	int best = INT_MAX;
	const char *awaited = NULL;

	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i]->state == SRC_HEALTHY && s->v[i]->prio < best) {
			best = s->v[i]->prio;
		}
	}
	for (size_t i = 0; i < s->n && best != INT_MAX; i++) {
		const struct src_inst *si = s->v[i];

		if (si->prio < best && !si->ever_healthy && si->state == SRC_STARTING &&
		    clock_ms() - s->started_ms < SRC_FIRST_START_GRACE_S * 1000LL) {
			awaited = si->spec;
			best = INT_MAX;
		}
	}
	if (awaited != NULL && !s->holding) {
		log_info("waiting up to %d s for source %s to pass its first start-up test before "
			 "using a fallback",
			 SRC_FIRST_START_GRACE_S, awaited);
	}
	s->holding = awaited != NULL;
	if (best != s->active_prio) {
		if (best == INT_MAX && !s->holding) {
			log_warnx("no healthy source left: clients wait until one recovers");
		} else {
			for (size_t i = 0; i < s->n; i++) {
				if (s->v[i]->state == SRC_HEALTHY && s->v[i]->prio == best) {
					log_info("serving from source %s", s->v[i]->spec);
				}
			}
		}
		s->active_prio = best;
	}
	pthread_cond_broadcast(&s->cond);
}

/* Under set->lock: remember the last failure for the status (why: a static phrase). */
static void note_failure_locked(struct src_inst *si, const char *why)
{
	si->last_failure = why;
	si->last_failure_at = (long long)time(NULL);
}

/* Set si's state; why, if not NULL, is the failure that caused it. */
static void set_state(struct src_inst *si, enum src_state st, const char *why)
{
	pthread_mutex_lock(&si->set->lock);
	enum src_state was = si->state;
	int active = si->set->active_prio;

	if (why != NULL) {
		note_failure_locked(si, why);
	}
	si->state = st;
	si->ever_healthy |= st == SRC_HEALTHY;
	update_active_locked(si->set);
	/* A source that joins the group already feeding (equal prio=) says so too. */
	if (st == SRC_HEALTHY && was != SRC_HEALTHY && active == si->prio &&
	    si->set->active_prio == si->prio) {
		log_info("serving from source %s", si->spec);
	}
	pthread_mutex_unlock(&si->set->lock);
}

/* Sleep for secs unless asked to stop; returns false when stopping. */
static bool nap(struct sources *s, unsigned secs)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += secs;
	pthread_mutex_lock(&s->lock);
	while (!atomic_load(&s->stop)) {
		if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT) {
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return !atomic_load(&s->stop);
}

/* Wait while this source is a healthy standby; returns false when stopping. */
static bool wait_turn(struct src_inst *si)
{
	struct sources *s = si->set;

	pthread_mutex_lock(&s->lock);
	while (!atomic_load(&s->stop) && si->state == SRC_HEALTHY && si->prio != s->active_prio) {
		struct timespec until;

		/* Timed, so that the end of a start-up grace period is noticed. */
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT) {
			update_active_locked(s);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return !atomic_load(&s->stop);
}

static void close_source(struct src_inst *si)
{
	if (si->st != NULL) {
		src_driver_close(si->drv, si->st);
		si->st = NULL;
	}
}

static void release(void *arg, const uint8_t *p, size_t n)
{
	struct src_inst *si = arg;
	struct sources *s = si->set;

	/* The gate releases only after a passing start-up test: this source is healthy, and
	 * feeds only when its group is the active one. */
	if (si->state != SRC_HEALTHY) {
		set_state(si, SRC_HEALTHY, NULL);
	}
	if (!wait_turn(si)) {
		return;
	}
	si->consecutive_failures = 0;
	while (n > 0 && !atomic_load(&s->stop)) {
		size_t put = pool_put(s->pool, p, n);

		p += put;
		n -= put;
		atomic_fetch_add(&si->bytes_served, put);
		if (n > 0) {
			pool_wait_space(s->pool, &s->stop);
		}
	}
}

/* Test a chunk of n bytes and pass on the windows it completes. */
static void feed(struct src_inst *si, size_t n)
{
	struct gate_result r;

	gate_feed(si->gate, si->chunk, n, release, si, &r);
	explicit_bzero(si->chunk, n);
	atomic_fetch_add(&si->bytes_discarded, r.discarded);
	if (r.failed) {
		log_warnx("source %s: health test failed (%s) at byte %llu of its stream%s; "
			  "re-running the start-up test",
			  si->spec, r.failed_rct ? "repetition count" : "adaptive proportion",
			  (unsigned long long)(atomic_load(&si->bytes_read) - n + r.failed_at),
			  r.failures > 1 ? " and more after it" : "");
		set_state(si, SRC_STARTING,
			  r.failed_rct ? "repetition count test" : "adaptive proportion test");
		si->consecutive_failures += r.failures;
	}
	if (r.started_now) {
		log_info("source %s: start-up test passed (%u samples)", si->spec,
			 HEALTH_STARTUP_SAMPLES);
		set_state(si, SRC_HEALTHY, NULL);
		return;
	}
	if (r.failed && si->consecutive_failures >= SRC_FAILURES_BEFORE_REOPEN &&
	    src_driver_reopenable(si->drv, si->st)) {
		log_warnx("source %s: %u failures in a row; closing and re-opening it", si->spec,
			  si->consecutive_failures);
		close_source(si);
		set_state(si, SRC_CLOSED, NULL);
	}
}

/* After a read delivered: a source the watchdog marked stalled starts over, its window
 * staged before the stall dropped, and feeds again once the start-up test passes. */
static void resume_after_stall(struct src_inst *si)
{
	struct sources *s = si->set;
	bool stalled;

	pthread_mutex_lock(&s->lock);
	stalled = si->state == SRC_STALLED;
	if (stalled) {
		si->state = SRC_STARTING;
		update_active_locked(s);
	}
	pthread_mutex_unlock(&s->lock);
	if (stalled) {
		log_info("source %s: delivering again after a stall; running the start-up test",
			 si->spec);
		atomic_fetch_add(&si->bytes_discarded, gate_reset(si->gate));
	}
}

/* Under s->lock: mark every healthy source whose read() has outlived its deadline as
 * stalled, so that the next group feeds. Returns true if one was marked. */
static bool mark_stalls_locked(struct sources *s)
{
	long long now = clock_ms();
	bool marked = false;

	for (size_t i = 0; i < s->n; i++) {
		struct src_inst *si = s->v[i];
		long long since = atomic_load(&si->read_since_ms);

		if (si->stall_ms == 0 || since == 0 || si->state != SRC_HEALTHY ||
		    now - since < si->stall_ms) {
			continue;
		}
		si->state = SRC_STALLED;
		note_failure_locked(si, "stalled read");
		atomic_fetch_add(&si->stalls, 1);
		log_warnx("source %s: stalled: no bytes for %lld ms; failing over", si->spec,
			  now - since);
		marked = true;
	}
	if (marked) {
		update_active_locked(s);
	}
	return marked;
}

/* The watchdog: looks for stalled reads every SRC_WATCHDOG_MS until the sources stop. */
static void *watchdog_thread(void *arg)
{
	struct sources *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!atomic_load(&s->stop)) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += SRC_WATCHDOG_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&s->cond, &s->lock, &until);
		(void)mark_stalls_locked(s);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void *src_thread(void *arg)
{
	struct src_inst *si = arg;
	struct sources *s = si->set;
	unsigned backoff = 1;
	char err[256];

	while (!atomic_load(&s->stop)) {
		if (si->st == NULL) {
			if (!nap(s, backoff)) {
				break;
			}
			backoff = backoff * 2 > SRC_BACKOFF_MAX ? SRC_BACKOFF_MAX : backoff * 2;
			si->st = src_open(si->drv, si->arg, &si->tty, err, sizeof(err));
			if (si->st == NULL) {
				log_warnx("source %s: cannot re-open: %s (next try in %u s)",
					  si->spec, err, backoff);
				continue;
			}
			atomic_fetch_add(&si->reopens, 1);
			log_info("source %s: re-opened; running the start-up test", si->spec);
			atomic_fetch_add(&si->bytes_discarded, gate_reset(si->gate));
			set_state(si, SRC_STARTING, NULL);
		}
		if (!wait_turn(si)) {
			break;
		}
		atomic_store(&si->read_since_ms, clock_ms());
		long n = si->drv->read(si->st, si->chunk, SRC_CHUNK, err, sizeof(err));
		atomic_store(&si->read_since_ms, 0);
		if (atomic_load(&s->stop)) {
			break;
		}
		if (n > 0) {
			atomic_fetch_add(&si->bytes_read, (uint64_t)n);
			resume_after_stall(si);
			feed(si, (size_t)n);
			backoff = 1;
			continue;
		}
		atomic_fetch_add(&si->bytes_discarded, gate_reset(si->gate));
		if (n == 0 || !src_driver_reopenable(si->drv, si->st)) {
			if (n == 0) {
				log_info("source %s: end of data, source exhausted", si->spec);
			} else {
				log_warnx("source %s: %s; source exhausted", si->spec, err);
			}
			close_source(si);
			set_state(si, SRC_EXHAUSTED, n == 0 ? "end of data" : "read error");
			break;
		}
		log_warnx("source %s: %s; closing it, re-opening in %u s", si->spec, err, backoff);
		close_source(si);
		set_state(si, SRC_CLOSED, "read error");
	}
	return NULL;
}

int sources_start(struct sources *s)
{
	/* Logged only now, so that a start-up error is the only line a failed start prints. */
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i]->note[0] != '\0') {
			log_info("%s", s->v[i]->note);
		}
		log_info("source %s: %s", s->v[i]->spec, s->v[i]->desc);
	}
	s->started_ms = clock_ms();
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i]->stall_ms > 0) {
			int rc = pthread_create(&s->watchdog, NULL, watchdog_thread, s);

			if (rc != 0) {
				errno = rc;
				return -1;
			}
			s->watchdog_started = true;
			break;
		}
	}
	for (size_t i = 0; i < s->n; i++) {
		int rc = pthread_create(&s->v[i]->thread, NULL, src_thread, s->v[i]);

		if (rc != 0) {
			errno = rc;
			return -1;
		}
		s->v[i]->thread_started = true;
	}
	return 0;
}

void sources_stop(struct sources *s)
{
	atomic_store(&s->stop, true);
	pthread_mutex_lock(&s->lock);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pool_wake_producers(s->pool);
}

int sources_join(struct sources *s, unsigned timeout_ms)
{
	long long deadline = clock_ms() + timeout_ms;

	sources_stop(s);
	src_wake_install();
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i]->thread_started && src_wake_join(s->v[i]->thread, deadline) < 0) {
			log_warnx("source %s: its thread did not stop within %u ms (a read that "
				  "cannot be interrupted); going on without waiting for it",
				  s->v[i]->spec, timeout_ms);
			return -1;
		}
		s->v[i]->thread_started = false;
	}
	if (s->watchdog_started) {
		(void)pthread_join(s->watchdog, NULL); /* it waits on s->cond: stop woke it */
		s->watchdog_started = false;
	}
	return 0;
}

int sources_free(struct sources *s, unsigned timeout_ms)
{
	if (s == NULL) {
		return 0;
	}
	if (sources_join(s, timeout_ms) < 0) {
		return -1;
	}
	for (size_t i = 0; i < s->n; i++) {
		struct src_inst *si = s->v[i];

		close_source(si);
		gate_free(si->gate);
		explicit_bzero(si->chunk, SRC_CHUNK);
		free(si->chunk);
		free(si->spec);
		free(si->arg);
		free(si->tty.init);
		free(si);
	}
	free(s->v);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return 0;
}
