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

void gate_feed(struct gate *g, const uint8_t *buf, size_t n, gate_out_fn out, void *arg,
	       struct gate_result *res)
{
	bool was_started = health_started(g->h);
	uint64_t before = health_samples_since_startup(g->h);
	uint64_t rct = health_failures_rct(g->h);

	memset(res, 0, sizeof(*res));
	if (health_test(g->h, buf, n, &res->failed_at) < 0) {
		res->failed = true;
		res->failed_rct = health_failures_rct(g->h) != rct;
		res->discarded = n + g->staged;
		explicit_bzero(g->window, sizeof(g->window));
		g->staged = 0;
		return;
	}

	size_t fresh = (size_t)(health_samples_since_startup(g->h) - before);
	const uint8_t *p = buf + n - fresh;

	res->discarded = n - fresh;
	res->started_now = !was_started && health_started(g->h);
	if (g->staged > 0) {
		size_t take = HEALTH_APT_WINDOW - g->staged;

		take = take < fresh ? take : fresh;
		memcpy(g->window + g->staged, p, take);
		g->staged += take;
		p += take;
		fresh -= take;
		if (g->staged < HEALTH_APT_WINDOW) {
			return;
		}
		out(arg, g->window, HEALTH_APT_WINDOW);
		res->released += HEALTH_APT_WINDOW;
		explicit_bzero(g->window, sizeof(g->window));
		g->staged = 0;
	}
	size_t whole = fresh - fresh % HEALTH_APT_WINDOW;
	if (whole > 0) {
		out(arg, p, whole);
		res->released += whole;
	}
	g->staged = fresh - whole;
	memcpy(g->window, p + whole, g->staged);
}
