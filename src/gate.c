/* gate: see gate.h. The window in progress is at most HEALTH_APT_WINDOW bytes, held here
 * and wiped whenever it is released or dropped. APT windows start at multiples of the
 * window size counted from the end of the start-up test, so releasing whole windows is
 * releasing exactly what the adaptive proportion test has judged. */
#include "gate.h"

#include "health.h"

#include <stdlib.h>
#include <string.h>

struct gate {
	struct health *h;
	uint8_t window[HEALTH_APT_WINDOW];
	size_t staged;
};

struct gate *gate_new(double min_entropy, unsigned alpha_log2)
{
	struct gate *g = calloc(1, sizeof(*g));

	if (g == NULL) {
		return NULL;
	}
	g->h = health_new(min_entropy, alpha_log2);
	if (g->h == NULL) {
		free(g);
		return NULL;
	}
	return g;
}

void gate_free(struct gate *g)
{
	if (g == NULL) {
		return;
	}
	health_free(g->h);
	explicit_bzero(g, sizeof(*g));
	free(g);
}

const struct health *gate_health(const struct gate *g)
{
	return g->h;
}

bool gate_started(const struct gate *g)
{
	return health_started(g->h);
}

size_t gate_reset(struct gate *g)
{
	size_t dropped = g->staged;

	explicit_bzero(g->window, sizeof(g->window));
	g->staged = 0;
	health_reset(g->h);
	return dropped;
}

/* Append the tested, post-start-up bytes p[0..n) to the window in progress, releasing every
 * window they complete; returns the bytes released. */
static size_t stage(struct gate *g, const uint8_t *p, size_t n, gate_out_fn out, void *arg)
{
	size_t released = 0;

	if (g->staged > 0) {
		size_t take = HEALTH_APT_WINDOW - g->staged;

		take = take < n ? take : n;
		memcpy(g->window + g->staged, p, take);
		g->staged += take;
		p += take;
		n -= take;
		if (g->staged < HEALTH_APT_WINDOW) {
			return 0;
		}
		out(arg, g->window, HEALTH_APT_WINDOW);
		released += HEALTH_APT_WINDOW;
		explicit_bzero(g->window, sizeof(g->window));
		g->staged = 0;
	}
	size_t whole = n - n % HEALTH_APT_WINDOW;
	if (whole > 0) {
		out(arg, p, whole);
		released += whole;
	}
	g->staged = n - whole;
	memcpy(g->window, p + whole, g->staged);
	return released;
}

/* Of `count` samples passed after `before` had passed since the reset, how many lie past
 * the start-up test. */
static size_t past_startup(uint64_t before, size_t count)
{
	uint64_t s = HEALTH_STARTUP_SAMPLES;
	uint64_t from = before > s ? before : s;
	uint64_t to = before + count;

	return to > from ? (size_t)(to - from) : 0;
}

void gate_feed(struct gate *g, const uint8_t *buf, size_t n, gate_out_fn out, void *arg,
	       struct gate_result *res)
{
	bool started_before = health_started(g->h);
	size_t staged_before = g->staged;
	size_t off = 0;

	memset(res, 0, sizeof(*res));
	while (off < n) {
		uint64_t before = health_samples_since_reset(g->h);
		uint64_t rct = health_failures_rct(g->h);
		size_t at, fresh;

		if (health_test(g->h, buf + off, n - off, &at) == 0) {
			fresh = past_startup(before, n - off);
			res->released += stage(g, buf + n - fresh, fresh, out, arg);
			break;
		}
		/* Windows complete before the failing sample passed both tests and are
		 * released; the window the failure falls in is dropped. The samples after
		 * the failure are the next start-up test. */
		fresh = past_startup(before, at);
		res->released += stage(g, buf + off + at - fresh, fresh, out, arg);
		explicit_bzero(g->window, sizeof(g->window));
		g->staged = 0;
		if (!res->failed) {
			res->failed_at = off + at;
			res->failed_rct = health_failures_rct(g->h) != rct;
		}
		res->failed = true;
		res->failures++;
		off += at + 1;
	}
	res->started_now = health_started(g->h) && (!started_before || res->failed);
	res->discarded = n + staged_before - res->released - g->staged;
}
