/* Unit tests for meter (the rate of a growing counter over the last 10 s that status shows
 * for sources, the pool and clients): known samples, one a second, give known rates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "meter.h"

static void test_meter_is_zero_with_fewer_than_two_samples(void **state)
{
	struct meter m = {0};

	assert_true(meter_rate(&m) == 0.0);
	meter_sample(&m, 5000);
	assert_true(meter_rate(&m) == 0.0);
}

static void test_meter_averages_over_the_samples_held_before_the_window_fills(void **state)
{
	struct meter m = {0};

	meter_sample(&m, 0);
	meter_sample(&m, 1000);
	assert_true(meter_rate(&m) == 1000.0);
	meter_sample(&m, 1000);
	meter_sample(&m, 4000);
	/* 4000 units over 3 s. */
	assert_true(meter_rate(&m) == 4000.0 / 3.0);
}

static void test_meter_steady_counter_gives_its_rate(void **state)
{
	struct meter m = {0};

	for (uint64_t s = 0; s <= 100; s++) {
		meter_sample(&m, 1000000 + 512 * s);
	}
	assert_true(meter_rate(&m) == 512.0);
}

static void test_meter_counts_only_the_last_ten_seconds(void **state)
{
	struct meter m = {0};
	uint64_t total = 0;

	/* 20 s at 10000/s, then 10 s idle: the burst has left the window. */
	for (int s = 0; s < 20; s++) {
		meter_sample(&m, total += 10000);
	}
	for (int s = 0; s < METER_SECONDS; s++) {
		meter_sample(&m, total);
	}
	assert_true(meter_rate(&m) == 0.0);
	/* Then 4 s at 250/s: 1000 units over the 10 s window. */
	for (int s = 0; s < 4; s++) {
		meter_sample(&m, total += 250);
	}
	assert_true(meter_rate(&m) == 100.0);
	/* One idle second more: the 1000 units are still inside the window. */
	meter_sample(&m, total);
	assert_true(meter_rate(&m) == 100.0);
}

static void test_meter_counter_that_went_back_reads_zero(void **state)
{
	struct meter m = {0};

	meter_sample(&m, 9000);
	meter_sample(&m, 10000);
	meter_sample(&m, 100);
	assert_true(meter_rate(&m) == 0.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_meter_is_zero_with_fewer_than_two_samples),
	    cmocka_unit_test(test_meter_averages_over_the_samples_held_before_the_window_fills),
	    cmocka_unit_test(test_meter_steady_counter_gives_its_rate),
	    cmocka_unit_test(test_meter_counts_only_the_last_ten_seconds),
	    cmocka_unit_test(test_meter_counter_that_went_back_reads_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
