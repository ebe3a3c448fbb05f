/* Unit tests for the handover codec (handover_codec.c): what one image writes, the next
 * reads back exactly; and a hostile or damaged handover (truncated at every length, lengths
 * past the end or above the limit, fields out of range, random garbage) is refused record
 * by record, never read out of bounds (run under ASan in the sanitizer build). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "handover_codec.h"

static struct handover_rec sample(int fd)
{
	struct handover_rec r = {
	    .fd = fd,
	    .flags = HANDOVER_SPOKE | HANDOVER_OTHER,
	    .served = 123456789,
	    .ahead = 0,
	    .blocks = 77,
	    .since = 1700000000,
	    .inlen = 1,
	    .in = {0x02},
	    .outlen = 3,
	    .out = {'4', '2', '1'},
	    .nops = 3,
	    .ops = {{REQQ_BLOCK, 200000}, {REQQ_PID, 0}, {REQQ_NONBLOCK, 255}}};

	strcpy(r.spec, "tcp:127.0.0.1:8888");
	strcpy(r.peer, "127.0.0.1:40000");
	return r;
}

/* Two records in buf; returns the length. */
static size_t encode_two(uint8_t *buf, size_t cap)
{
	struct handover_rec a = sample(10), b = sample(11);
	size_t off = HANDOVER_HEADER;

	b.nops = 0;
	b.inlen = HANDOVER_IN_MAX;
	memset(b.in, 0x02, sizeof(b.in));
	handover_put_header(buf, 2);
	assert_int_equal(handover_put_rec(&a, buf, cap, &off), 0);
	assert_int_equal(handover_put_rec(&b, buf, cap, &off), 0);
	return off;
}

static void test_records_read_back_as_written(void **state)
{
	uint8_t buf[2 * HANDOVER_REC_MAX];
	size_t len = encode_two(buf, sizeof(buf)), off = HANDOVER_HEADER;
	struct handover_rec want = sample(10), got;
	char err[160];

	assert_int_equal(handover_get_header(buf, len, err, sizeof(err)), 2);
	assert_int_equal(handover_get_rec(buf, len, &off, &got, err, sizeof(err)), 0);
	assert_int_equal(got.fd, 10);
	assert_int_equal(got.flags, want.flags);
	assert_true(got.served == want.served && got.blocks == want.blocks);
	assert_true(got.since == want.since && got.ahead == 0);
	assert_string_equal(got.spec, want.spec);
	assert_string_equal(got.peer, want.peer);
	assert_int_equal(got.inlen, 1);
	assert_int_equal(got.outlen, 3);
	assert_memory_equal(got.out, want.out, 3);
	assert_int_equal(got.nops, 3);
	assert_memory_equal(got.ops, want.ops, 3 * sizeof(want.ops[0]));
	assert_int_equal(handover_get_rec(buf, len, &off, &got, err, sizeof(err)), 0);
	assert_int_equal(got.fd, 11);
	assert_int_equal(got.inlen, HANDOVER_IN_MAX);
	assert_int_equal(off, len);
}

static void test_a_truncated_handover_is_refused_at_every_length(void **state)
{
	uint8_t buf[2 * HANDOVER_REC_MAX];
	size_t len = encode_two(buf, sizeof(buf));
	struct handover_rec r;
	char err[160];

	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *copy = malloc(cut > 0 ? cut : 1); /* exactly cut bytes: ASan sees reads */
		size_t off = HANDOVER_HEADER;
		int rc = 0, good = 0;

		memcpy(copy, buf, cut);
		if (handover_get_header(copy, cut, err, sizeof(err)) == 2) {
			while (rc == 0 && good < 2) {
				rc = handover_get_rec(copy, cut, &off, &r, err, sizeof(err));
				good += rc == 0;
			}
			assert_true(good < 2);
			assert_int_equal(rc, -2); /* the cut record's length runs past the end */
			assert_int_equal(r.fd, -1);
		} else {
			assert_true(cut < HANDOVER_HEADER);
		}
		free(copy);
	}
}

static void test_record_lengths_past_the_end_or_above_the_limit_stop_the_read(void **state)
{
	uint8_t buf[2 * HANDOVER_REC_MAX];
	size_t len = encode_two(buf, sizeof(buf)), off = HANDOVER_HEADER;
	struct handover_rec r;
	char err[160];

	buf[HANDOVER_HEADER + 3] = 0x7f; /* body length ~2^31 */
	assert_int_equal(handover_get_rec(buf, len, &off, &r, err, sizeof(err)), -2);
	assert_int_equal(off, HANDOVER_HEADER);
	off = len + 10; /* an offset past the end */
	assert_int_equal(handover_get_rec(buf, len, &off, &r, err, sizeof(err)), -2);
}

static void test_headers_of_other_versions_or_too_many_clients_are_refused(void **state)
{
	uint8_t buf[HANDOVER_HEADER];
	char err[160];

	handover_put_header(buf, HANDOVER_MAX);
	assert_int_equal(handover_get_header(buf, sizeof(buf), err, sizeof(err)), HANDOVER_MAX);
	handover_put_header(buf, HANDOVER_MAX + 1);
	assert_int_equal(handover_get_header(buf, sizeof(buf), err, sizeof(err)), -1);
	handover_put_header(buf, 1);
	buf[4] = HANDOVER_VERSION + 1;
	assert_int_equal(handover_get_header(buf, sizeof(buf), err, sizeof(err)), -1);
	handover_put_header(buf, 1);
	buf[0] = 'X';
	assert_int_equal(handover_get_header(buf, sizeof(buf), err, sizeof(err)), -1);
}

/* Encode a valid record, damage the field at body offset at (a byte to value v), read. */
static int read_damaged(size_t at, uint8_t v, struct handover_rec *r)
{
	uint8_t buf[HANDOVER_REC_MAX];
	struct handover_rec s = sample(10);
	size_t off = 0, len = 0;
	char err[160];

	assert_int_equal(handover_put_rec(&s, buf, sizeof(buf), &len), 0);
	buf[4 + at] = v;
	return handover_get_rec(buf, len, &off, r, err, sizeof(err));
}

static void test_fields_out_of_range_make_a_bad_record_and_the_next_is_read(void **state)
{
	/* Body: fd 0..3, flags 4, served 5..12, since 13..20, ahead 21..28, blocks 29..36, spec
	 * length 37..38 and 18 bytes (39..56), peer length 57..58 and 15 bytes (59..73), in
	 * 74..75 + 1, out 77..78 + 3, nops 82, ops from 83 (kind, n). */
	struct handover_rec r;

	assert_int_equal(read_damaged(0, 2, &r), -1);		/* fd 2 */
	assert_int_equal(read_damaged(4, 0x80, &r), -1);	/* unknown flag */
	assert_int_equal(r.fd, 10);				/* the caller may close it */
	assert_int_equal(read_damaged(28, 0x10, &r), -1);	/* ahead above the bound */
	assert_int_equal(read_damaged(39, 0x01, &r), -1);	/* spec not printable */
	assert_int_equal(read_damaged(38, 0x10, &r), -1);	/* spec longer than the record */
	assert_int_equal(read_damaged(75, 0x10, &r), -1);	/* in: 4097 bytes */
	assert_int_equal(read_damaged(82, 65, &r), -1);		/* 65 requests queued */
	assert_int_equal(read_damaged(82, 2, &r), -1);		/* fewer than written: bytes left */
	assert_int_equal(read_damaged(83, 7, &r), -1);		/* unknown kind */
	assert_int_equal(read_damaged(83 + 9, 0, &r), -1);	/* 0x04 made a 0x02 of 0 bytes */
	assert_int_equal(read_damaged(83 + 18 + 1, 0, &r), 0);	/* 0x01 of 0 bytes: valid */
	assert_int_equal(read_damaged(83 + 18 + 2, 1, &r), -1); /* 0x01 of 511 bytes */
	assert_int_equal(read_damaged(83 + 8, 0x01, &r), -1);	/* 0x02 of 2^56 bytes */

	/* A bad first record is skipped whole: the second is read. */
	uint8_t buf[2 * HANDOVER_REC_MAX];
	size_t len = encode_two(buf, sizeof(buf)), off = HANDOVER_HEADER;
	char err[160];

	buf[HANDOVER_HEADER + 4 + 4] = 0xff;
	assert_int_equal(handover_get_rec(buf, len, &off, &r, err, sizeof(err)), -1);
	assert_int_equal(handover_get_rec(buf, len, &off, &r, err, sizeof(err)), 0);
	assert_int_equal(r.fd, 11);
}

static void test_invalid_records_are_not_written(void **state)
{
	uint8_t buf[HANDOVER_REC_MAX];
	struct handover_rec r = sample(10);
	size_t off = 0;

	r.nops = REQQ_SLOTS + 1;
	assert_int_equal(handover_put_rec(&r, buf, sizeof(buf), &off), -1);
	r = sample(10);
	assert_int_equal(handover_put_rec(&r, buf, 20, &off), -1); /* does not fit */
	assert_int_equal(off, 0);
}

static void test_random_garbage_is_refused_without_reading_out_of_bounds(void **state)
{
	uint8_t valid[2 * HANDOVER_REC_MAX];
	size_t vlen = encode_two(valid, sizeof(valid));
	struct handover_rec r;
	char err[160];

	srand(11);
	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)rand() % vlen + 1, off = HANDOVER_HEADER;
		uint8_t *buf = malloc(len);

		memcpy(buf, valid, len);
		for (int k = 0; k < 1 + rand() % 8; k++) {
			buf[(size_t)rand() % len] = (uint8_t)rand();
		}
		if (handover_get_header(buf, len, err, sizeof(err)) >= 0) {
			for (int i = 0; i < 4; i++) {
				int rc = handover_get_rec(buf, len, &off, &r, err, sizeof(err));

				if (rc == 0) {
					assert_true(r.fd >= 3 && r.inlen <= HANDOVER_IN_MAX &&
						    r.outlen <= HANDOVER_OUT_MAX &&
						    r.nops <= REQQ_SLOTS);
				}
				if (rc == -2) {
					break;
				}
				assert_true(off <= len);
			}
		}
		free(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_records_read_back_as_written),
	    cmocka_unit_test(test_a_truncated_handover_is_refused_at_every_length),
	    cmocka_unit_test(test_record_lengths_past_the_end_or_above_the_limit_stop_the_read),
	    cmocka_unit_test(test_headers_of_other_versions_or_too_many_clients_are_refused),
	    cmocka_unit_test(test_fields_out_of_range_make_a_bad_record_and_the_next_is_read),
	    cmocka_unit_test(test_invalid_records_are_not_written),
	    cmocka_unit_test(test_random_garbage_is_refused_without_reading_out_of_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
