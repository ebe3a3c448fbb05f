/* Unit tests for health: cutoffs against the SP 800-90B numbers, the exact sample at which
 * each test trips, start-up and window alignment, and that good data passes.
 *
 * Sequences are built from a "background" that can trip neither test (0..127 cycling: no
 * two equal neighbours, each value 4 times per APT window) and a marker value V outside it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"

#define V 0xF0u
#define W HEALTH_APT_WINDOW

static uint8_t bg(size_t i)
{
	return (uint8_t)(i % 128);
}

static void fill_bg(uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		buf[i] = bg(i);
	}
}

/* Pass the start-up test with background samples. */
static void start_up(struct health *h)
{
	uint8_t buf[HEALTH_STARTUP_SAMPLES];
	size_t at = 99;

	fill_bg(buf, sizeof(buf));
	assert_int_equal(health_test(h, buf, sizeof(buf), &at), 0);
	assert_true(health_started(h));
	assert_int_equal(health_samples_since_startup(h), 0);
}

/* One APT window whose first sample is V and which holds nv copies of V, in runs short
 * enough for the RCT; returns the index of the last V. */
static size_t apt_window(uint8_t *buf, unsigned rct_cutoff, unsigned nv)
{
	unsigned placed = 0;
	size_t last = 0;

	for (size_t j = 0; j < W; j++) {
		if (placed < nv && j % rct_cutoff != rct_cutoff - 1) {
			buf[j] = V;
			placed++;
			last = j;
		} else {
			buf[j] = bg(j);
		}
	}
	assert_int_equal(placed, nv);
	return last;
}

static struct health *new_or_die(double min_entropy, unsigned alpha_log2)
{
	struct health *h = health_new(min_entropy, alpha_log2);

	assert_non_null(h);
	return h;
}

struct cutoff {
	double h;
	unsigned alpha_log2;
	unsigned cutoff;
};

static const struct cutoff rct_table[] = {
    {0.5, 20, 41}, {1, 20, 21}, {2, 20, 11}, {4, 20, 6},  {7, 20, 4}, {8, 20, 4},
    {0.5, 30, 61}, {1, 30, 31}, {2, 30, 16}, {4, 30, 9},  {7, 30, 6}, {8, 30, 5},
    {0.5, 40, 81}, {1, 40, 41}, {2, 40, 21}, {4, 40, 11}, {7, 40, 7}, {8, 40, 6},
};

/* The facts-page table (first formula), plus values checked with exact rational arithmetic
 * (integer H) or 60-digit arithmetic (H = 0.5, 0.1, 7.5) outside it. */
static const struct cutoff apt_table[] = {
    {1, 20, 311}, {2, 20, 177},	  {4, 20, 62},	  {7, 20, 18},	 {8, 20, 13},
    {1, 30, 325}, {2, 30, 190},	  {4, 30, 71},	  {6, 30, 31},	 {8, 30, 16},
    {1, 64, 358}, {2, 64, 223},	  {4, 64, 93},	  {8, 64, 26},	 {8, 1, 3},
    {1, 1, 257},  {0.5, 20, 410}, {0.1, 20, 502}, {7.5, 40, 22}, {0.5, 64, 449},
};

static void test_rct_cutoff_matches_sp800_90b_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rct_table) / sizeof(rct_table[0]); i++) {
		struct health *h = new_or_die(rct_table[i].h, rct_table[i].alpha_log2);

		assert_int_equal(health_rct_cutoff(h), rct_table[i].cutoff);
		health_free(h);
	}
}

static void test_apt_cutoff_matches_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(apt_table) / sizeof(apt_table[0]); i++) {
		struct health *h = new_or_die(apt_table[i].h, apt_table[i].alpha_log2);

		assert_int_equal(health_apt_cutoff(h), apt_table[i].cutoff);
		health_free(h);
	}
}

static void test_tiny_entropy_gives_unreachable_cutoffs(void **state)
{
	struct health *h = new_or_die(1e-300, 64);

	(void)state;
	assert_int_equal(health_rct_cutoff(h), UINT_MAX);
	assert_int_equal(health_apt_cutoff(h), W + 1);
	health_free(h);
}

/* Start-up, then a run of `len` V's followed by a background byte; returns the verdict. */
static int run_after_startup(struct health *h, unsigned len, size_t *at)
{
	uint8_t buf[128];

	assert_true(len < sizeof(buf));
	memset(buf, V, len);
	buf[len] = 0;
	start_up(h);
	return health_test(h, buf, len + 1, at);
}

static void test_run_of_cutoff_minus_one_passes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rct_table) / sizeof(rct_table[0]); i++) {
		struct health *h = new_or_die(rct_table[i].h, rct_table[i].alpha_log2);
		size_t at = 12345;

		assert_int_equal(run_after_startup(h, rct_table[i].cutoff - 1, &at), 0);
		assert_int_equal(at, 12345);
		assert_int_equal(health_failures_rct(h), 0);
		assert_int_equal(health_samples_since_startup(h), rct_table[i].cutoff);
		health_free(h);
	}
}

static void test_run_of_cutoff_fails_at_exact_index(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rct_table) / sizeof(rct_table[0]); i++) {
		struct health *h = new_or_die(rct_table[i].h, rct_table[i].alpha_log2);
		size_t at = 12345;

		assert_int_equal(run_after_startup(h, rct_table[i].cutoff, &at), -1);
		assert_int_equal(at, rct_table[i].cutoff - 1);
		assert_int_equal(health_failures_rct(h), 1);
		assert_int_equal(health_failures_apt(h), 0);
		assert_false(health_started(h));
		health_free(h);
	}
}

static void test_run_split_across_calls_fails_at_exact_index(void **state)
{
	struct health *h = new_or_die(2, 20); /* RCT cutoff 11 */
	uint8_t buf[16];
	size_t at = 12345;

	(void)state;
	start_up(h);
	memset(buf, V, sizeof(buf));
	for (int i = 0; i < 10; i++) {
		assert_int_equal(health_test(h, buf, 1, &at), 0);
	}
	assert_int_equal(health_test(h, buf, 5, &at), -1);
	assert_int_equal(at, 0);
	assert_int_equal(health_failures_rct(h), 1);
	health_free(h);
}

static void test_stuck_source_fails_from_first_sample(void **state)
{
	struct health *h = new_or_die(8, 20); /* RCT 4 trips before APT 13 */
	uint8_t zeros[4096] = {0};
	size_t at = 12345;

	(void)state;
	assert_int_equal(health_test(h, zeros, sizeof(zeros), &at), -1);
	assert_int_equal(at, 3);
	assert_int_equal(health_failures_rct(h), 1);
	health_free(h);
}

static void test_apt_fails_exactly_when_count_reaches_cutoff(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(apt_table) / sizeof(apt_table[0]); i++) {
		struct health *h = new_or_die(apt_table[i].h, apt_table[i].alpha_log2);
		unsigned rc = health_rct_cutoff(h);
		unsigned c = health_apt_cutoff(h);
		uint8_t win[W];
		size_t last;
		size_t at = 12345;

		/* Skip cutoffs that are unreachable, that the background itself trips, or that
		 * the RCT must trip first (alpha = 2^-1). */
		if (c > W || c <= 4 || c > W - W / rc) {
			health_free(h);
			continue;
		}
		start_up(h);
		/* c - 1 occurrences: the whole window passes. */
		apt_window(win, rc, c - 1);
		assert_int_equal(health_test(h, win, W, &at), 0);
		assert_int_equal(health_failures_apt(h), 0);
		/* c occurrences: fails at the c-th, not before. */
		last = apt_window(win, rc, c);
		assert_int_equal(health_test(h, win, W, &at), -1);
		assert_int_equal(at, last);
		assert_int_equal(health_failures_apt(h), 1);
		assert_int_equal(health_failures_rct(h), 0);
		assert_false(health_started(h));
		health_free(h);
	}
}

static void test_apt_count_restarts_each_window(void **state)
{
	struct health *h = new_or_die(8, 20);
	uint8_t win[W];

	(void)state;
	start_up(h);
	apt_window(win, health_rct_cutoff(h), health_apt_cutoff(h) - 1);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(health_test(h, win, W, NULL), 0);
	}
	assert_int_equal(health_samples_since_startup(h), 8 * W);
	health_free(h);
}

static void test_apt_counts_only_the_window_reference(void **state)
{
	struct health *h = new_or_die(8, 20);
	uint8_t win[W];

	(void)state;
	start_up(h);
	/* Far more than the cutoff of V, but the window starts with a background byte. */
	apt_window(win, health_rct_cutoff(h), 100);
	win[0] = 1;
	assert_int_equal(health_test(h, win, W, NULL), 0);
	health_free(h);
}

static void test_startup_needs_1024_samples(void **state)
{
	struct health *h = new_or_die(8, 20);
	uint8_t buf[HEALTH_STARTUP_SAMPLES + 1];
	size_t at;

	(void)state;
	fill_bg(buf, sizeof(buf));
	assert_false(health_started(h));
	assert_int_equal(health_test(h, buf, HEALTH_STARTUP_SAMPLES - 1, &at), 0);
	assert_false(health_started(h));
	assert_int_equal(health_samples_since_startup(h), 0);
	assert_int_equal(health_test(h, buf + HEALTH_STARTUP_SAMPLES - 1, 1, &at), 0);
	assert_true(health_started(h));
	assert_int_equal(health_samples_since_startup(h), 0);
	assert_int_equal(health_test(h, buf + HEALTH_STARTUP_SAMPLES, 1, &at), 0);
	assert_int_equal(health_samples_since_startup(h), 1);
	health_free(h);
}

static void test_startup_samples_are_tested(void **state)
{
	struct health *h = new_or_die(8, 20);
	uint8_t buf[HEALTH_STARTUP_SAMPLES];
	size_t at = 0;

	(void)state;
	fill_bg(buf, sizeof(buf));
	memset(buf + 700, V, 4);
	assert_int_equal(health_test(h, buf, sizeof(buf), &at), -1);
	assert_int_equal(at, 703);
	assert_false(health_started(h));
	health_free(h);
}

static void test_failure_resets_to_startup(void **state)
{
	struct health *h = new_or_die(8, 20); /* RCT 4 */
	uint8_t buf[HEALTH_STARTUP_SAMPLES];
	uint8_t run[8];
	size_t at;

	(void)state;
	start_up(h);
	fill_bg(buf, 100);
	assert_int_equal(health_test(h, buf, 100, &at), 0);
	assert_int_equal(health_samples_since_startup(h), 100);
	memset(run, V, sizeof(run));
	assert_int_equal(health_test(h, run, sizeof(run), &at), -1);
	assert_int_equal(at, 3);
	assert_false(health_started(h));
	assert_int_equal(health_samples_since_startup(h), 0);
	/* The run state went too: three more V's start a new run and pass. */
	assert_int_equal(health_test(h, run, 3, &at), 0);
	fill_bg(buf, sizeof(buf));
	assert_int_equal(health_test(h, buf, HEALTH_STARTUP_SAMPLES - 4, &at), 0);
	assert_false(health_started(h));
	assert_int_equal(health_test(h, buf, 1, &at), 0);
	assert_true(health_started(h));
	health_free(h);
}

static void test_reset_returns_to_startup(void **state)
{
	struct health *h = new_or_die(8, 20);
	uint8_t run[3];

	(void)state;
	start_up(h);
	memset(run, V, sizeof(run));
	assert_int_equal(health_test(h, run, sizeof(run), NULL), 0);
	health_reset(h);
	assert_false(health_started(h));
	assert_int_equal(health_samples_since_startup(h), 0);
	/* The pending run of 3 was forgotten, so 3 more do not trip the cutoff of 4. */
	assert_int_equal(health_test(h, run, sizeof(run), NULL), 0);
	assert_int_equal(health_failures_rct(h) + health_failures_apt(h), 0);
	health_free(h);
}

static void test_failure_counters_accumulate(void **state)
{
	struct health *h = new_or_die(8, 20);
	uint8_t run[4];
	uint8_t win[W];

	(void)state;
	memset(run, V, sizeof(run));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(health_test(h, run, sizeof(run), NULL), -1);
	}
	apt_window(win, health_rct_cutoff(h), health_apt_cutoff(h));
	assert_int_equal(health_test(h, win, W, NULL), -1);
	assert_int_equal(health_failures_rct(h), 3);
	assert_int_equal(health_failures_apt(h), 1);
	health_free(h);
}

/* Feed 3 windows of background in awkward pieces, then a window with the cutoff count of
 * V: it must fail exactly at the last V, because windows start at multiples of 512. */
static void check_window_alignment(struct health *h, size_t shift)
{
	static const size_t pieces[] = {1, 7, 333, 2, 511, 513, 100, 69};
	uint8_t stream[4 * W + 1];
	size_t len = 3 * W + shift;
	size_t off = 0;
	size_t last;
	size_t at = 12345;
	int rc = 0;

	fill_bg(stream, len);
	last = len + apt_window(stream + len, health_rct_cutoff(h), health_apt_cutoff(h));
	len += W;
	for (size_t i = 0; off < len && rc == 0; i++) {
		size_t n = pieces[i % (sizeof(pieces) / sizeof(pieces[0]))];

		if (n > len - off) {
			n = len - off;
		}
		rc = health_test(h, stream + off, n, &at);
		if (rc != 0) {
			at += off;
		}
		off += n;
	}
	if (shift == 0) {
		assert_int_equal(rc, -1);
		assert_int_equal(at, last);
	} else {
		/* The same bytes one sample later straddle two windows with other references. */
		assert_int_equal(rc, 0);
	}
}

static void test_windows_aligned_after_startup(void **state)
{
	struct health *h = new_or_die(8, 20);
	uint8_t buf[W];

	(void)state;
	start_up(h);
	check_window_alignment(h, 0);
	assert_int_equal(health_failures_apt(h), 1);

	start_up(h);
	check_window_alignment(h, 1);

	/* A failure in mid-window restarts the window phase at the reset. */
	fill_bg(buf, 100);
	memset(buf + 90, V, 4);
	assert_int_equal(health_test(h, buf, 100, NULL), -1);
	start_up(h);
	check_window_alignment(h, 0);
	assert_int_equal(health_failures_apt(h), 2);
	health_free(h);
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill_random(uint8_t *buf, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t r = splitmix64(&seed);

		for (size_t j = 0; j < 8 && i + j < n; j++) {
			buf[i + j] = (uint8_t)(r >> (8 * j));
		}
	}
}

/* alpha is a per-sample rate: at H = 8, alpha = 2^-20 the RCT (cutoff 4) trips about once
 * in 2^24 good samples, i.e. about once in 16 MiB, so the configurations below keep the
 * expected number of false positives well under 1 (and the seed is fixed anyway). */
static void test_random_data_passes(void **state)
{
	static const struct {
		double h;
		unsigned alpha_log2;
	} cfg[] = {{8, 30}, {8, 40}, {7, 30}, {4, 20}, {1, 20}, {0.5, 40}};
	const size_t n = 16u << 20;
	uint8_t *buf = malloc(n);

	(void)state;
	assert_non_null(buf);
	fill_random(buf, n, 0x5eed);
	for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
		struct health *h = new_or_die(cfg[c].h, cfg[c].alpha_log2);
		size_t at = 12345;

		/* Odd-sized pieces so that windows straddle calls. */
		for (size_t off = 0; off < n; off += 65521) {
			size_t len = n - off < 65521 ? n - off : 65521;

			assert_int_equal(health_test(h, buf + off, len, &at), 0);
		}
		assert_true(health_started(h));
		assert_int_equal(health_samples_since_startup(h), n - HEALTH_STARTUP_SAMPLES);
		health_free(h);
	}
	free(buf);
}

static void test_low_entropy_data_fails(void **state)
{
	const size_t n = 1u << 20;
	uint8_t *buf = malloc(n);
	struct health *h = new_or_die(8, 20);
	size_t at = 0;

	(void)state;
	assert_non_null(buf);
	fill_random(buf, n, 7);
	/* Under two bits per byte and never a repeat, so only the APT can see it: the
	 * reference turns up ~170 times in 512 where 12 are allowed. */
	buf[0] &= 3;
	for (size_t i = 1; i < n; i++) {
		buf[i] &= 3;
		if (buf[i] == buf[i - 1]) {
			buf[i] = (uint8_t)((buf[i] + 1) & 3);
		}
	}
	assert_int_equal(health_test(h, buf, n, &at), -1);
	assert_true(at < W);
	assert_int_equal(health_failures_apt(h), 1);
	assert_int_equal(health_failures_rct(h), 0);
	health_free(h);
	free(buf);
}

static void test_instances_are_independent(void **state)
{
	struct health *a = new_or_die(8, 20);
	struct health *b = new_or_die(8, 20);
	uint8_t v = V;
	size_t at = 12345;

	(void)state;
	start_up(a);
	/* Interleaved runs: each instance sees only its own 3 V's. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(health_test(a, &v, 1, &at), 0);
		assert_int_equal(health_test(b, &v, 1, &at), 0);
	}
	assert_int_equal(health_test(a, &v, 1, &at), -1);
	assert_int_equal(health_failures_rct(a), 1);
	assert_int_equal(health_failures_rct(b), 0);
	assert_false(health_started(a));
	assert_false(health_started(b));
	assert_int_equal(health_test(b, &v, 1, &at), -1);
	start_up(b);
	assert_false(health_started(a));
	health_free(a);
	health_free(b);
}

static void test_empty_input_passes(void **state)
{
	struct health *h = new_or_die(8, 20);
	size_t at = 12345;

	(void)state;
	assert_int_equal(health_test(h, NULL, 0, &at), 0);
	assert_int_equal(at, 12345);
	assert_false(health_started(h));
	health_free(h);
}

static void test_bad_parameters_rejected(void **state)
{
	static const double bad_h[] = {0, -1, -0.0, 8.000001, 9, NAN, INFINITY, -INFINITY};

	(void)state;
	for (size_t i = 0; i < sizeof(bad_h) / sizeof(bad_h[0]); i++) {
		errno = 0;
		assert_null(health_new(bad_h[i], 20));
		assert_int_equal(errno, EINVAL);
	}
	errno = 0;
	assert_null(health_new(8, 0));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(health_new(8, 65));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(health_new(1, UINT_MAX));
	assert_int_equal(errno, EINVAL);
}

static void test_boundary_parameters_accepted(void **state)
{
	static const struct {
		double h;
		unsigned alpha_log2;
	} ok[] = {{8, 1}, {8, 64}, {1e-9, 1}, {1e-9, 64}, {0.001, 30}};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct health *h = health_new(ok[i].h, ok[i].alpha_log2);

		assert_non_null(h);
		assert_true(health_rct_cutoff(h) >= 2);
		assert_true(health_apt_cutoff(h) >= 2);
		assert_true(health_apt_cutoff(h) <= W + 1);
		health_free(h);
	}
	health_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rct_cutoff_matches_sp800_90b_table),
	    cmocka_unit_test(test_apt_cutoff_matches_table),
	    cmocka_unit_test(test_tiny_entropy_gives_unreachable_cutoffs),
	    cmocka_unit_test(test_run_of_cutoff_minus_one_passes),
	    cmocka_unit_test(test_run_of_cutoff_fails_at_exact_index),
	    cmocka_unit_test(test_run_split_across_calls_fails_at_exact_index),
	    cmocka_unit_test(test_stuck_source_fails_from_first_sample),
	    cmocka_unit_test(test_apt_fails_exactly_when_count_reaches_cutoff),
	    cmocka_unit_test(test_apt_count_restarts_each_window),
	    cmocka_unit_test(test_apt_counts_only_the_window_reference),
	    cmocka_unit_test(test_startup_needs_1024_samples),
	    cmocka_unit_test(test_startup_samples_are_tested),
	    cmocka_unit_test(test_failure_resets_to_startup),
	    cmocka_unit_test(test_reset_returns_to_startup),
	    cmocka_unit_test(test_failure_counters_accumulate),
	    cmocka_unit_test(test_windows_aligned_after_startup),
	    cmocka_unit_test(test_random_data_passes),
	    cmocka_unit_test(test_low_entropy_data_fails),
	    cmocka_unit_test(test_instances_are_independent),
	    cmocka_unit_test(test_empty_input_passes),
	    cmocka_unit_test(test_bad_parameters_rejected),
	    cmocka_unit_test(test_boundary_parameters_accepted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
