/* Unit tests for rate (the token bucket that paces a client's answers) and for the log
 * limiter (struct log_limit), both driven by a clock the test sets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "rate.h"

static void test_rate_starts_with_one_full_period_as_burst(void **state)
{
	struct rate r;

	assert_int_equal(rate_init(&r, 100000, 1000, 5000), 0);
	assert_int_equal(rate_take(&r, 5000, 60000), 60000);
	assert_int_equal(rate_take(&r, 5000, 60000), 40000);
	assert_int_equal(rate_take(&r, 5000, 1), 0);
}

static void test_rate_refills_exactly_at_the_configured_pace(void **state)
{
	struct rate r;
	size_t total = 0;

	/* 3 bytes per 7 ms: not a whole number of bytes per millisecond. */
	assert_int_equal(rate_init(&r, 3, 7, 0), 0);
	assert_int_equal(rate_take(&r, 0, 100), 3);
	for (uint64_t t = 1; t <= 7000; t++) {
		total += rate_take(&r, t, 100);
	}
	assert_int_equal(total, 3000);
}

static void test_rate_never_holds_more_than_one_period(void **state)
{
	struct rate r;

	assert_int_equal(rate_init(&r, 1000, 100, 0), 0);
	assert_int_equal(rate_take(&r, 0, 1000), 1000);
	/* an hour idle refills one burst, not an hour's worth */
	assert_int_equal(rate_take(&r, 3600000, 1u << 30), 1000);
	rate_return(&r, 5000);
	assert_int_equal(rate_take(&r, 3600000, 1u << 30), 1000);
}

static void test_rate_wait_says_when_bytes_are_back(void **state)
{
	struct rate r;

	assert_int_equal(rate_init(&r, 1000, 1000, 0), 0); /* one byte per ms */
	assert_int_equal(rate_take(&r, 0, 1000), 1000);
	assert_int_equal(rate_wait_ms(&r, 0, 256), 256);
	assert_int_equal(rate_wait_ms(&r, 100, 256), 156);
	assert_int_equal(rate_take(&r, 255, 256), 255);
	assert_int_equal(rate_wait_ms(&r, 255, 1), 1);
	/* more than the bucket holds is waited for as a full bucket */
	assert_int_equal(rate_wait_ms(&r, 255, 5000), 1000);
	assert_int_equal(rate_wait_ms(&r, 2000, 10), 0);
}

static void test_rate_returned_bytes_can_be_taken_again(void **state)
{
	struct rate r;

	assert_int_equal(rate_init(&r, 4096, 1000, 0), 0);
	assert_int_equal(rate_take(&r, 0, 4096), 4096);
	rate_return(&r, 100);
	assert_int_equal(rate_take(&r, 0, 4096), 100);
}

static void test_rate_refuses_out_of_range_settings(void **state)
{
	struct rate r;

	assert_int_equal(rate_init(&r, 0, 1000, 0), -1);
	assert_int_equal(rate_init(&r, 1, 0, 0), -1);
	assert_int_equal(rate_init(&r, RATE_MAX_BYTES + 1, 1000, 0), -1);
	assert_int_equal(rate_init(&r, RATE_MAX_BYTES, RATE_MAX_MS, 0), 0);
	/* the largest setting stays exact: a full period refills a full bucket */
	assert_int_equal(rate_take(&r, 0, SIZE_MAX), RATE_MAX_BYTES);
	assert_int_equal(rate_take(&r, RATE_MAX_MS, SIZE_MAX), RATE_MAX_BYTES);
}

static void test_rate_ignores_a_clock_that_goes_back(void **state)
{
	struct rate r;

	assert_int_equal(rate_init(&r, 10, 10, 1000), 0);
	assert_int_equal(rate_take(&r, 1000, 10), 10);
	assert_int_equal(rate_take(&r, 500, 10), 0);
	assert_int_equal(rate_take(&r, 1005, 10), 5);
}

static void test_log_limit_lets_a_burst_pass_then_one_line_a_second(void **state)
{
	struct log_limit l = {0};
	unsigned long held = 99;
	unsigned passed = 0;

	for (int i = 0; i < 100; i++) {
		passed += log_limit_pass(&l, 1000, &held);
	}
	assert_int_equal(passed, LOG_LIMIT_BURST);
	assert_int_equal(held, 0);
	assert_false(log_limit_pass(&l, 1999, &held));
	assert_true(log_limit_pass(&l, 2000, &held));
	assert_int_equal(held, 100 - LOG_LIMIT_BURST + 1);
	assert_false(log_limit_pass(&l, 2500, &held));
	/* 20 quiet seconds refill the burst, no more */
	passed = 0;
	for (int i = 0; i < 100; i++) {
		passed += log_limit_pass(&l, 22500, &held);
	}
	assert_int_equal(passed, LOG_LIMIT_BURST);
}

static uint64_t fake_now;

static uint64_t fake_clock(void)
{
	return fake_now;
}

static void test_log_limited_reports_the_suppressed_count_on_the_next_line(void **state)
{
	struct log_limit l = {0};
	char path[] = "/tmp/entropyd-test-log-XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	char text[8192] = "";
	FILE *f;
	size_t n;
	unsigned lines = 0;

	assert_true(fd >= 0 && saved >= 0);
	log_init("entropyd", true, false);
	log_set_clock(fake_clock);
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	fake_now = 50000;
	for (int i = 0; i < 500; i++) {
		log_limited(&l, LOG_WARNING, "client %d: unknown command", i);
	}
	log_limited(&l, LOG_DEBUG, "a debug line is not shown without --verbose");
	fake_now = 51000;
	log_limited(&l, LOG_WARNING, "client %d: unknown command", 500);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	log_set_clock(NULL);
	f = fdopen(fd, "r");
	rewind(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	unlink(path);
	for (char *p = text; (p = strchr(p, '\n')) != NULL; p++) {
		lines++;
	}
	assert_int_equal(lines, LOG_LIMIT_BURST + 1);
	assert_non_null(strstr(text, "entropyd: client 9: unknown command\n"));
	assert_null(strstr(text, "client 10:"));
	assert_null(strstr(text, "debug line"));
	assert_non_null(
	    strstr(text, "entropyd: client 500: unknown command (490 similar lines suppressed)\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rate_starts_with_one_full_period_as_burst),
	    cmocka_unit_test(test_rate_refills_exactly_at_the_configured_pace),
	    cmocka_unit_test(test_rate_never_holds_more_than_one_period),
	    cmocka_unit_test(test_rate_wait_says_when_bytes_are_back),
	    cmocka_unit_test(test_rate_returned_bytes_can_be_taken_again),
	    cmocka_unit_test(test_rate_refuses_out_of_range_settings),
	    cmocka_unit_test(test_rate_ignores_a_clock_that_goes_back),
	    cmocka_unit_test(test_log_limit_lets_a_burst_pass_then_one_line_a_second),
	    cmocka_unit_test(test_log_limited_reports_the_suppressed_count_on_the_next_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
