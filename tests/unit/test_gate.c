/* Unit tests for gate: what the health gate releases, and what it never releases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "gate.h"
#include "health.h"

#define STREAM (64u * 1024u)

struct sink {
	uint8_t buf[2 * STREAM];
	size_t len;
	unsigned calls;
};

static void sink_out(void *arg, const uint8_t *p, size_t n)
{
	struct sink *s = arg;

	assert_true(s->len + n <= sizeof(s->buf));
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->calls++;
}

/* A fixed-seed stream that passes the tests: splitmix64 bytes. */
static void fill_random(uint8_t *b, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t z = (seed += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		b[i] = (uint8_t)(z ^ (z >> 31));
	}
}

static void test_startup_bytes_are_never_released(void **state)
{
	static uint8_t in[HEALTH_STARTUP_SAMPLES];
	static struct sink s;
	struct gate *g = gate_new(4.0, 30);
	struct gate_result r;

	fill_random(in, sizeof(in), 1);
	gate_feed(g, in, sizeof(in), sink_out, &s, &r);
	assert_int_equal(s.len, 0);
	assert_int_equal(r.discarded, HEALTH_STARTUP_SAMPLES);
	assert_true(r.started_now);
	assert_true(gate_started(g));
	gate_free(g);
}

static void test_releases_whole_windows_in_order_after_startup(void **state)
{
	static uint8_t in[STREAM];
	static struct sink s;
	struct gate *g = gate_new(4.0, 30);
	struct gate_result r;
	size_t total_released = 0;

	memset(&s, 0, sizeof(s));
	fill_random(in, sizeof(in), 2);
	/* Odd-sized chunks so that windows straddle chunk boundaries. */
	for (size_t off = 0; off < sizeof(in);) {
		size_t n = sizeof(in) - off < 777 ? sizeof(in) - off : 777;

		gate_feed(g, in + off, n, sink_out, &s, &r);
		assert_false(r.failed);
		assert_int_equal(r.released % HEALTH_APT_WINDOW, 0);
		total_released += r.released;
		off += n;
	}
	size_t expect = (STREAM - HEALTH_STARTUP_SAMPLES) / HEALTH_APT_WINDOW * HEALTH_APT_WINDOW;
	assert_int_equal(total_released, expect);
	assert_int_equal(s.len, expect);
	assert_memory_equal(s.buf, in + HEALTH_STARTUP_SAMPLES, expect);
	gate_free(g);
}

static void test_failure_discards_the_window_in_progress(void **state)
{
	static uint8_t in[4096];
	static struct sink s;
	struct gate *g = gate_new(4.0, 30);
	struct gate_result r;

	memset(&s, 0, sizeof(s));
	fill_random(in, sizeof(in), 3);
	/* start-up (1024) + one full window (512) + 300 bytes staged */
	gate_feed(g, in, HEALTH_STARTUP_SAMPLES + HEALTH_APT_WINDOW + 300, sink_out, &s, &r);
	assert_int_equal(s.len, HEALTH_APT_WINDOW);
	/* a stuck source: RCT cutoff (9 for h=4, alpha 2^-30) equal bytes */
	/* a stuck source: exactly RCT-cutoff (9 for h=4, alpha 2^-30) equal bytes, so that no
	 * sample follows the failure in this chunk */
	size_t cutoff = health_rct_cutoff(gate_health(g));
	uint8_t stuck[64];
	memset(stuck, 0x5a, sizeof(stuck));
	gate_feed(g, stuck, cutoff, sink_out, &s, &r);
	assert_true(r.failed);
	assert_true(r.failed_rct);
	assert_int_equal(r.failures, 1);
	assert_int_equal(r.failed_at, cutoff - 1);
	assert_int_equal(r.discarded, 300 + cutoff);
	assert_false(gate_started(g));
	/* The 300 staged bytes are gone: after a new start-up, output resumes with new bytes. */
	gate_feed(g, in, sizeof(in), sink_out, &s, &r);
	assert_false(r.failed);
	assert_int_equal(s.len, HEALTH_APT_WINDOW + (sizeof(in) - HEALTH_STARTUP_SAMPLES) /
							HEALTH_APT_WINDOW * HEALTH_APT_WINDOW);
	assert_memory_equal(s.buf + HEALTH_APT_WINDOW, in + HEALTH_STARTUP_SAMPLES,
			    s.len - HEALTH_APT_WINDOW);
	gate_free(g);
}

static void test_failure_releases_windows_that_passed_before_it_in_the_same_chunk(void **state)
{
	static uint8_t in[HEALTH_STARTUP_SAMPLES + 3 * HEALTH_APT_WINDOW];
	static struct sink s;
	struct gate *g = gate_new(4.0, 30);
	struct gate_result r;
	size_t zeros_at = HEALTH_STARTUP_SAMPLES + 2 * HEALTH_APT_WINDOW + 100;

	memset(&s, 0, sizeof(s));
	fill_random(in, sizeof(in), 5);
	memset(in + zeros_at, 0, 64); /* fails the RCT inside the third window */
	in[zeros_at - 1] = 1;
	gate_feed(g, in, sizeof(in), sink_out, &s, &r);
	assert_true(r.failed);
	assert_int_equal(r.failed_at, zeros_at + health_rct_cutoff(gate_health(g)) - 1);
	assert_int_equal(r.released, 2 * HEALTH_APT_WINDOW);
	assert_int_equal(s.len, 2 * HEALTH_APT_WINDOW);
	assert_memory_equal(s.buf, in + HEALTH_STARTUP_SAMPLES, 2 * HEALTH_APT_WINDOW);
	assert_int_equal(r.discarded, sizeof(in) - 2 * HEALTH_APT_WINDOW);
	gate_free(g);
}

static void test_samples_after_a_failure_are_the_next_startup_test(void **state)
{
	static uint8_t in[4 * HEALTH_STARTUP_SAMPLES];
	static struct sink s;
	struct gate *g = gate_new(4.0, 30);
	struct gate_result r;
	size_t cutoff = health_rct_cutoff(gate_health(g));

	memset(&s, 0, sizeof(s));
	fill_random(in, sizeof(in), 6);
	memset(in + 100, 0, 3 * cutoff); /* three failures in a row during the first start-up */
	in[99] = 1;
	in[100 + 3 * cutoff] = 1;
	gate_feed(g, in, sizeof(in), sink_out, &s, &r);
	assert_true(r.failed);
	assert_int_equal(r.failures, 3);
	assert_int_equal(r.failed_at, 100 + cutoff - 1);
	assert_true(r.started_now);
	/* A new start-up test began after the last failing sample. */
	size_t start = 100 + 3 * cutoff + HEALTH_STARTUP_SAMPLES;
	size_t expect = (sizeof(in) - start) / HEALTH_APT_WINDOW * HEALTH_APT_WINDOW;
	assert_int_equal(s.len, expect);
	assert_memory_equal(s.buf, in + start, expect);
	assert_int_equal(r.released + r.discarded + (sizeof(in) - start - expect), sizeof(in));
	gate_free(g);
}

static void test_reset_drops_staged_bytes_and_restarts(void **state)
{
	static uint8_t in[2048];
	static struct sink s;
	struct gate *g = gate_new(4.0, 30);
	struct gate_result r;

	memset(&s, 0, sizeof(s));
	fill_random(in, sizeof(in), 4);
	gate_feed(g, in, HEALTH_STARTUP_SAMPLES + 100, sink_out, &s, &r);
	assert_int_equal(gate_reset(g), 100);
	assert_false(gate_started(g));
	assert_int_equal(s.len, 0);
	gate_free(g);
}

static void test_bad_min_entropy_is_rejected(void **state)
{
	assert_null(gate_new(0.0, 30));
	assert_null(gate_new(8.5, 30));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_startup_bytes_are_never_released),
	    cmocka_unit_test(test_releases_whole_windows_in_order_after_startup),
	    cmocka_unit_test(test_failure_discards_the_window_in_progress),
	    cmocka_unit_test(test_failure_releases_windows_that_passed_before_it_in_the_same_chunk),
	    cmocka_unit_test(test_samples_after_a_failure_are_the_next_startup_test),
	    cmocka_unit_test(test_reset_drops_staged_bytes_and_restarts),
	    cmocka_unit_test(test_bad_min_entropy_is_rejected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
