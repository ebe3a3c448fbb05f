/* Unit tests for drbg: the seed size for h bits per byte, no output before a seed, a seed
 * that takes exactly its bytes from the pool (and waits, taking nothing, when the pool is
 * short), the reseed accounting by bytes and by time, the output limit per seed, and the
 * seed source (the DRBG's parent) as the only entropy input, answers that cross a block's
 * end in one peek, and output generated ahead never past the limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include <sys/uio.h>

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
	struct iovec iov[2];

	assert_non_null(d);
	assert_false(drbg_seeded(d));
	assert_true(drbg_due(d, UINT64_MAX, UINT64_MAX, 0));
	assert_int_equal(drbg_peek(d, 255, UINT64_MAX, iov), 0);
	drbg_free(d);
	pool_free(p);
}

static void test_seed_waits_for_enough_pool_bytes_and_takes_exactly_them(void **state)
{
	struct pool *p = pool_new(4096);
	struct drbg *d = drbg_new(p, 8);
	struct iovec iov[2];

	fill(p, 47, 1);
	assert_int_equal(drbg_reseed(d, 0), 0); /* one byte short: nothing taken */
	assert_int_equal(pool_avail(p), 47);
	assert_false(drbg_seeded(d));
	fill(p, 10, 2);
	assert_int_equal(drbg_reseed(d, 0), 1);
	assert_int_equal(pool_avail(p), 57 - 48);
	assert_int_equal(pool_delivered(p), 48);
	assert_true(drbg_seeded(d));
	assert_int_equal(drbg_peek(d, 255, UINT64_MAX, iov), 1);
	assert_int_equal(iov[0].iov_len, 255);
	assert_non_null(iov[0].iov_base);
	assert_int_equal(drbg_seeds(d), 1);
	assert_int_equal(drbg_parent_handed(d), 1);
	drbg_free(d);
	pool_free(p);
}

static void test_reseed_accounting_by_bytes_and_by_time(void **state)
{
	struct pool *p = pool_new(4096);
	struct drbg *d = drbg_new(p, 4);
	struct iovec iov[2];
	uint8_t first[32];
	size_t n;

	fill(p, 2 * 96, 3);
	assert_int_equal(drbg_reseed(d, 1000), 1);
	assert_false(drbg_due(d, 1000, 500, 1000));
	/* Output stops at the limit, whatever is asked. */
	assert_int_equal(drbg_peek(d, 4000, 1000, iov), 1);
	n = iov[0].iov_len;
	assert_int_equal(n, 1000);
	memcpy(first, iov[0].iov_base, sizeof(first));
	assert_int_equal(drbg_generated(d), 1000);
	drbg_consume(d, n);
	assert_int_equal(drbg_peek(d, 10, 1000, iov), 0);
	assert_true(drbg_due(d, 1000, 500, 1000));
	assert_false(drbg_due(d, 2000, 500, 1499));
	assert_true(drbg_due(d, 2000, 500, 1500)); /* reseed-ms elapsed */
	/* A reseed takes the next 96 bytes, restarts the count, and changes the output. */
	assert_int_equal(drbg_reseed(d, 1600), 1);
	assert_int_equal(pool_avail(p), 0);
	assert_int_equal(drbg_generated(d), 0);
	assert_false(drbg_due(d, 1000, 500, 1600));
	assert_int_equal(drbg_peek(d, 32, 1000, iov), 1);
	n = iov[0].iov_len;
	assert_int_equal(n, 32);
	assert_memory_not_equal(iov[0].iov_base, first, sizeof(first));
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
	struct iovec iov[2];
	uint8_t before[64];

	fill(p, 96, 9);
	assert_int_equal(drbg_reseed(d, 0), 1);
	assert_int_equal(drbg_peek(d, 64, UINT64_MAX, iov), 1);
	assert_int_equal(iov[0].iov_len, 64);
	memcpy(before, iov[0].iov_base, sizeof(before));
	assert_int_equal(drbg_generated(d), DRBG_BLOCK);
	assert_int_equal(drbg_reseed(d, 0), 1);
	assert_int_equal(drbg_generated(d), 0);
	assert_int_equal(drbg_peek(d, 64, UINT64_MAX, iov), 1);
	assert_int_equal(iov[0].iov_len, 64);
	assert_memory_not_equal(iov[0].iov_base, before, sizeof(before));
	drbg_free(d);
	pool_free(p);
}

static void test_an_answer_across_a_block_end_is_whole_in_one_peek(void **state)
{
	struct pool *p = pool_new(4096);
	struct drbg *d = drbg_new(p, 8);
	struct iovec iov[2];

	fill(p, 48, 5);
	assert_int_equal(drbg_reseed(d, 0), 1);
	assert_int_equal(drbg_peek(d, 255, UINT64_MAX, iov), 1);
	drbg_consume(d, 255);
	/* A whole block asked for with 255 bytes of it gone: all of it, in one peek. */
	assert_int_equal(drbg_peek(d, DRBG_BLOCK, UINT64_MAX, iov), 1);
	assert_int_equal(iov[0].iov_len, DRBG_BLOCK);
	assert_int_equal(drbg_generated(d), 2 * DRBG_BLOCK);
	drbg_consume(d, DRBG_BLOCK);
	/* Where the ring wraps: two pieces, the second at the ring's start. */
	assert_int_equal(drbg_peek(d, DRBG_BLOCK, UINT64_MAX, iov), 2);
	assert_int_equal(iov[0].iov_len, DRBG_BLOCK - 255);
	assert_int_equal(iov[1].iov_len, 255);
	assert_ptr_equal((uint8_t *)iov[0].iov_base + iov[0].iov_len,
			 (uint8_t *)iov[1].iov_base + DRBG_RING);
	assert_int_equal(drbg_generated(d), 3 * DRBG_BLOCK);
	drbg_free(d);
	pool_free(p);
}

static void test_prefill_generates_ahead_within_the_limit(void **state)
{
	struct pool *p = pool_new(4096);
	struct drbg *d = drbg_new(p, 8);
	struct iovec iov[2];

	fill(p, 48, 6);
	drbg_prefill(d, UINT64_MAX); /* unseeded: nothing */
	assert_int_equal(drbg_generated(d), 0);
	assert_int_equal(drbg_reseed(d, 0), 1);
	assert_int_equal(drbg_peek(d, 100, DRBG_BLOCK + 5000, iov), 1);
	drbg_consume(d, 100);
	drbg_prefill(d, DRBG_BLOCK + 5000); /* a block minus 100 buffered: the next, to the limit */
	assert_int_equal(drbg_generated(d), DRBG_BLOCK + 5000);
	drbg_prefill(d, DRBG_BLOCK + 5000);
	assert_int_equal(drbg_generated(d), DRBG_BLOCK + 5000);
	assert_true(drbg_due(d, DRBG_BLOCK + 5000, UINT64_MAX, 0));
	/* Everything generated is handed out, and no more. */
	assert_int_equal(drbg_peek(d, DRBG_RING, DRBG_BLOCK + 5000, iov), 1);
	assert_int_equal(iov[0].iov_len, DRBG_BLOCK + 5000 - 100);
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
	    cmocka_unit_test(test_an_answer_across_a_block_end_is_whole_in_one_peek),
	    cmocka_unit_test(test_prefill_generates_ahead_within_the_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
