/* Unit tests for drbg: the seed size for h bits per byte, no output before a seed, a seed
 * that takes exactly its bytes from the pool (and waits, taking nothing, when the pool is
 * short), the reseed accounting by bytes and by time, the output limit per seed, and the
 * seed source (the DRBG's parent) as the only entropy input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "drbg.h"
#include "pool.h"

static void fill(struct pool *p, size_t n, uint8_t start)
{
	uint8_t buf[4096];

	for (size_t i = 0; i < n && i < sizeof(buf); i++) {
		buf[i] = (uint8_t)(start + i * 7);
	}
	assert_int_equal(pool_put(p, buf, n), n);
}

static void test_seed_size_is_384_bits_of_assessed_entropy(void **state)
{
	assert_int_equal(drbg_seed_bytes(8), 48);
	assert_int_equal(drbg_seed_bytes(4), 96);
	assert_int_equal(drbg_seed_bytes(3), 128);
	assert_int_equal(drbg_seed_bytes(7), 55); /* 384 / 7 = 54.86 */
	assert_int_equal(drbg_seed_bytes(0.5), 768);
}

static void test_no_output_before_the_first_seed(void **state)
{
	struct pool *p = pool_new(4096);
	struct drbg *d = drbg_new(p, 8);
	const uint8_t *out = NULL;

	assert_non_null(d);
	assert_false(drbg_seeded(d));
	assert_true(drbg_due(d, UINT64_MAX, UINT64_MAX, 0));
	assert_int_equal(drbg_peek(d, 255, UINT64_MAX, &out), 0);
	drbg_free(d);
	pool_free(p);
}

static void test_seed_waits_for_enough_pool_bytes_and_takes_exactly_them(void **state)
{
	struct pool *p = pool_new(4096);
	struct drbg *d = drbg_new(p, 8);
	const uint8_t *out = NULL;

	fill(p, 47, 1);
	assert_int_equal(drbg_reseed(d, 0), 0); /* one byte short: nothing taken */
	assert_int_equal(pool_avail(p), 47);
	assert_false(drbg_seeded(d));
	fill(p, 10, 2);
	assert_int_equal(drbg_reseed(d, 0), 1);
	assert_int_equal(pool_avail(p), 57 - 48);
	assert_int_equal(pool_delivered(p), 48);
	assert_true(drbg_seeded(d));
	assert_int_equal(drbg_peek(d, 255, UINT64_MAX, &out), 255);
	assert_non_null(out);
	assert_int_equal(drbg_seeds(d), 1);
	assert_int_equal(drbg_parent_handed(d), 1);
	drbg_free(d);
	pool_free(p);
}

static void test_reseed_accounting_by_bytes_and_by_time(void **state)
{
	struct pool *p = pool_new(4096);
	struct drbg *d = drbg_new(p, 4);
	const uint8_t *out = NULL;
	uint8_t first[32];
	size_t n;

	fill(p, 2 * 96, 3);
	assert_int_equal(drbg_reseed(d, 1000), 1);
	assert_false(drbg_due(d, 1000, 500, 1000));
	/* Output stops at the limit, whatever is asked. */
	n = drbg_peek(d, 4000, 1000, &out);
	assert_int_equal(n, 1000);
	memcpy(first, out, sizeof(first));
	assert_int_equal(drbg_generated(d), 1000);
	drbg_consume(d, n);
	assert_int_equal(drbg_peek(d, 10, 1000, &out), 0);
	assert_true(drbg_due(d, 1000, 500, 1000));
	assert_false(drbg_due(d, 2000, 500, 1499));
	assert_true(drbg_due(d, 2000, 500, 1500)); /* reseed-ms elapsed */
	/* A reseed takes the next 96 bytes, restarts the count, and changes the output. */
	assert_int_equal(drbg_reseed(d, 1600), 1);
	assert_int_equal(pool_avail(p), 0);
	assert_int_equal(drbg_generated(d), 0);
	assert_false(drbg_due(d, 1000, 500, 1600));
	n = drbg_peek(d, 32, 1000, &out);
	assert_int_equal(n, 32);
	assert_memory_not_equal(out, first, sizeof(first));
	/* The pool is empty: the next reseed waits and the DRBG stays due. */
	drbg_consume(d, n);
	assert_int_equal(drbg_reseed(d, 2200), 0);
	assert_true(drbg_due(d, 1000, 500, 2200));
	assert_int_equal(drbg_seeds(d), 2);
	assert_int_equal(drbg_parent_handed(d), 2);
	drbg_free(d);
	pool_free(p);
}

static void test_reseed_wipes_buffered_output(void **state)
{
	struct pool *p = pool_new(4096);
	struct drbg *d = drbg_new(p, 8);
	const uint8_t *out = NULL;
	uint8_t before[64];

	fill(p, 96, 9);
	assert_int_equal(drbg_reseed(d, 0), 1);
	assert_int_equal(drbg_peek(d, 64, UINT64_MAX, &out), 64);
	memcpy(before, out, sizeof(before));
	assert_int_equal(drbg_generated(d), DRBG_BLOCK);
	assert_int_equal(drbg_reseed(d, 0), 1);
	assert_int_equal(drbg_generated(d), 0);
	assert_int_equal(drbg_peek(d, 64, UINT64_MAX, &out), 64);
	assert_memory_not_equal(out, before, sizeof(before));
	drbg_free(d);
	pool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_seed_size_is_384_bits_of_assessed_entropy),
	    cmocka_unit_test(test_no_output_before_the_first_seed),
	    cmocka_unit_test(test_seed_waits_for_enough_pool_bytes_and_takes_exactly_them),
	    cmocka_unit_test(test_reseed_accounting_by_bytes_and_by_time),
	    cmocka_unit_test(test_reseed_wipes_buffered_output),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
