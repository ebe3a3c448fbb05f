/* Differential test of health_test (whose fast path scans whole chunks with vector
 * compares) against a byte-at-a-time reference of SP 800-90B's RCT and APT written here
 * from the definitions: on random data and on adversarial data (runs of cutoff - 2,
 * cutoff - 1 and cutoff samples, APT windows holding cutoff - 1 and cutoff copies of their
 * first value, all placed across 16-byte, window and call boundaries), fed in calls of
 * random sizes, both must fail at the same sample, with the same test, every time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "health.h"

#define W HEALTH_APT_WINDOW
#define LEN (256 * 1024)

struct ref {
	unsigned rct_c, apt_c;
	uint8_t last, aref;
	unsigned run, count, pos;
};

static void ref_reset(struct ref *r)
{
	r->last = r->aref = 0;
	r->run = r->count = r->pos = 0;
}

/* 0: passed; 1: RCT failed at *at; 2: APT failed at *at (RCT wins a tie). */
static int ref_test(struct ref *r, const uint8_t *buf, size_t n, size_t *at)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t b = buf[i];

		r->run = b == r->last ? r->run + 1 : 1;
		r->last = b;
		if (r->pos == 0) {
			r->aref = b;
			r->count = 0;
		}
		r->count += b == r->aref;
		r->pos = (r->pos + 1) % W;
		if (r->run >= r->rct_c || r->count >= r->apt_c) {
			int which = r->run >= r->rct_c ? 1 : 2;

			ref_reset(r);
			*at = i;
			return which;
		}
	}
	return 0;
}

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Random bytes, then (adversarial) runs and APT-heavy windows near the cutoffs. */
static void make_input(uint8_t *buf, size_t n, unsigned rct_c, unsigned apt_c, bool adversarial)
{
	for (size_t i = 0; i < n; i++) {
		buf[i] = (uint8_t)rnd();
	}
	if (!adversarial) {
		return;
	}
	for (int k = 0; k < 200; k++) {
		size_t at = (size_t)(rnd() % (n - 3 * W));
		unsigned kind = (unsigned)(rnd() % 4);

		if (kind < 3) {
			/* a run of rct_c - 2 + kind samples, often at a 16-byte or window edge */
			size_t len = rct_c - 2 + kind > 0 ? rct_c - 2 + kind : 1;
			uint8_t v = (uint8_t)rnd();

			size_t edge = at & ~(size_t)(rnd() % 2 ? 15 : W - 1);

			if (rnd() % 2 && edge >= len) {
				at = edge - (size_t)(rnd() % len); /* across the edge */
			}
			memset(buf + at, v, len);
		} else {
			/* one value at a density of about apt_c - 2 .. apt_c per window over two
			 * windows: windows that start on it hold about the cutoff */
			unsigned copies = 2 * (apt_c - 2 + (unsigned)(rnd() % 3));
			uint8_t v = (uint8_t)rnd();

			for (unsigned c = 0; c < copies; c++) {
				buf[at + (size_t)(rnd() % (2 * W))] = v;
			}
		}
	}
}

static void differential(double h_bits, unsigned alpha_log2, bool adversarial, int rounds)
{
	uint8_t *buf = malloc(LEN);
	unsigned fails = 0;

	assert_non_null(buf);
	for (int round = 0; round < rounds; round++) {
		struct health *h = health_new(h_bits, alpha_log2);
		struct ref r = {0};
		size_t off = 0;

		assert_non_null(h);
		r.rct_c = health_rct_cutoff(h);
		r.apt_c = health_apt_cutoff(h);
		ref_reset(&r);
		make_input(buf, LEN, r.rct_c, r.apt_c, adversarial);
		while (off < LEN) {
			size_t n = (size_t)(rnd() % 4 == 0 ? 1 + rnd() % 3 : 1 + rnd() % 3000);
			size_t at_ref = 0, at = 0;
			uint64_t rct0 = health_failures_rct(h), apt0 = health_failures_apt(h);
			int want, got;

			n = n > LEN - off ? LEN - off : n;
			want = ref_test(&r, buf + off, n, &at_ref);
			got = health_test(h, buf + off, n, &at);
			if (want == 0) {
				assert_int_equal(got, 0);
				off += n;
				continue;
			}
			fails++;
			assert_int_equal(got, -1);
			assert_int_equal(at, at_ref);
			assert_int_equal(health_failures_rct(h) - rct0, want == 1);
			assert_int_equal(health_failures_apt(h) - apt0, want == 2);
			off += at + 1; /* both were reset: go on after the failing sample */
		}
		health_free(h);
	}
	if (adversarial) {
		assert_true(fails > 0); /* the adversarial data did reach the cutoffs */
	}
	free(buf);
}

static void test_random_data_h8_alpha20(void **state)
{
	differential(8, 20, false, 4);
}

static void test_adversarial_h8_alpha20(void **state)
{
	differential(8, 20, true, 8);
}

static void test_adversarial_h4_alpha30(void **state)
{
	differential(4, 30, true, 8);
}

static void test_adversarial_h7_alpha40(void **state)
{
	differential(7, 40, true, 8);
}

static void test_adversarial_small_rct_cutoff_takes_the_slow_path(void **state)
{
	differential(8, 8, true, 4);  /* RCT cutoff 2 */
	differential(8, 16, true, 4); /* RCT cutoff 3 */
}

static void test_adversarial_low_entropy(void **state)
{
	differential(1, 30, true, 4);
	differential(0.5, 20, true, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_random_data_h8_alpha20),
	    cmocka_unit_test(test_adversarial_h8_alpha20),
	    cmocka_unit_test(test_adversarial_h4_alpha30),
	    cmocka_unit_test(test_adversarial_h7_alpha40),
	    cmocka_unit_test(test_adversarial_small_rct_cutoff_takes_the_slow_path),
	    cmocka_unit_test(test_adversarial_low_entropy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
