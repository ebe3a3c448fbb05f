/* src_stats: the summary line per source logged at shutdown, from sources_snapshot (the
 * same counters the status and the metrics show). */
#include "src.h"

#include "gate.h"
#include "health.h"
#include "log.h"
#include "src_impl.h"

#include <pthread.h>

int sources_snapshot(struct sources *s, size_t i, struct src_stat *out)
{
	static const char *const names[] = {[SRC_CLOSED] = "failed",
					    [SRC_STARTING] = "starting",
					    [SRC_HEALTHY] = "serving",
					    [SRC_STALLED] = "stalled",
					    [SRC_EXHAUSTED] = "exhausted"};
	struct src_inst *si = i < s->n ? s->v[i] : NULL;

	if (si == NULL) {
		return -1;
	}
	*out = (struct src_stat){.spec = si->spec,
				 .kind = si->drv->kind,
				 .bytes_read = atomic_load(&si->bytes_read),
				 .bytes_passed = atomic_load(&si->bytes_served),
				 .bytes_discarded = atomic_load(&si->bytes_discarded),
				 .rct_failures = health_failures_rct(gate_health(si->gate)),
				 .apt_failures = health_failures_apt(gate_health(si->gate)),
				 .reopens = atomic_load(&si->reopens),
				 .stalls = atomic_load(&si->stalls)};
	pthread_mutex_lock(&s->lock);
	out->state = names[si->state];
	if (si->state == SRC_HEALTHY && si->prio != s->active_prio) {
		out->state = "standby";
	}
	out->last_failure = si->last_failure;
	out->last_failure_at = si->last_failure_at;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void sources_log_stats(struct sources *s)
{
	struct src_stat st;

	for (size_t i = 0; sources_snapshot(s, i, &st) == 0; i++) {
		log_info("source %s: %llu bytes read, %llu passed to the pool, %llu discarded, "
			 "%llu repetition-count and %llu adaptive-proportion failures, %llu "
			 "re-opens, %llu stalls",
			 st.spec, (unsigned long long)st.bytes_read,
			 (unsigned long long)st.bytes_passed,
			 (unsigned long long)st.bytes_discarded,
			 (unsigned long long)st.rct_failures, (unsigned long long)st.apt_failures,
			 (unsigned long long)st.reopens, (unsigned long long)st.stalls);
	}
}
