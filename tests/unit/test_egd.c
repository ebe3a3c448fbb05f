/* Unit tests for the EGD codec: every command, input split anywhere, pipelined input,
 * unknown commands, the reply encodings, and that no input makes the parser read past the
 * bytes it was given (inputs sit against an unmapped guard page). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "egd.h"

static void test_level_request_is_one_byte(void **state)
{
	const uint8_t in[] = {0x00, 0x02, 0x10};
	struct egd_req req;

	(void)state;
	assert_int_equal(egd_parse(in, sizeof(in), &req), 1);
	assert_int_equal(req.cmd, EGD_LEVEL);
}

static void test_pid_request_is_one_byte(void **state)
{
	const uint8_t in[] = {0x04};
	struct egd_req req;

	(void)state;
	assert_int_equal(egd_parse(in, sizeof(in), &req), 1);
	assert_int_equal(req.cmd, EGD_PID);
}

static void test_nonblocking_read_takes_its_length(void **state)
{
	const uint8_t in[] = {0x01, 0x20, 0x00};
	struct egd_req req;

	(void)state;
	assert_int_equal(egd_parse(in, sizeof(in), &req), 2);
	assert_int_equal(req.cmd, EGD_NONBLOCK);
	assert_int_equal(req.len, 0x20);
}

static void test_blocking_read_takes_its_length(void **state)
{
	const uint8_t in[] = {0x02, 0xff};
	struct egd_req req;

	(void)state;
	assert_int_equal(egd_parse(in, sizeof(in), &req), 2);
	assert_int_equal(req.cmd, EGD_BLOCK);
	assert_int_equal(req.len, 255);
}

static void test_write_carries_bits_and_data(void **state)
{
	const uint8_t in[] = {0x03, 0x01, 0x02, 3, 'a', 'b', 'c', 0x00};
	struct egd_req req;

	(void)state;
	assert_int_equal(egd_parse(in, sizeof(in), &req), 7);
	assert_int_equal(req.cmd, EGD_WRITE);
	assert_int_equal(req.bits, 0x0102);
	assert_int_equal(req.len, 3);
	assert_ptr_equal(req.data, in + 4);
	assert_memory_equal(req.data, "abc", 3);
}

static void test_write_of_zero_bytes(void **state)
{
	const uint8_t in[] = {0x03, 0xff, 0xfe, 0, 0x00};
	struct egd_req req;

	(void)state;
	assert_int_equal(egd_parse(in, sizeof(in), &req), 4);
	assert_int_equal(req.cmd, EGD_WRITE);
	assert_int_equal(req.bits, 0xfffe);
	assert_int_equal(req.len, 0);
}

static void test_empty_input_needs_more(void **state)
{
	struct egd_req req;

	(void)state;
	assert_int_equal(egd_parse(NULL, 0, &req), 0);
}

/* Every proper prefix of a whole request asks for more bytes; the whole one parses. */
static void check_prefixes(const uint8_t *in, size_t whole)
{
	struct egd_req req;

	for (size_t n = 0; n < whole; n++) {
		assert_int_equal(egd_parse(in, n, &req), 0);
	}
	assert_int_equal(egd_parse(in, whole, &req), (int)whole);
}

static void test_split_input_needs_more_until_whole(void **state)
{
	uint8_t in[4 + 255];

	(void)state;
	check_prefixes((const uint8_t[]){0x00}, 1);
	check_prefixes((const uint8_t[]){0x04}, 1);
	check_prefixes((const uint8_t[]){0x01, 7}, 2);
	check_prefixes((const uint8_t[]){0x02, 0}, 2);
	for (unsigned len = 0; len <= 255; len++) {
		in[0] = 0x03;
		in[1] = 0x00;
		in[2] = (uint8_t)(len * 8);
		in[3] = (uint8_t)len;
		memset(in + 4, 0xA5, len);
		check_prefixes(in, 4 + len);
	}
}

/* Request i of a pipelined test stream. */
static size_t encode_request(unsigned i, uint8_t *out, struct egd_req *want)
{
	memset(want, 0, sizeof(*want));
	switch (i % 5) {
	case 0:
		want->cmd = EGD_LEVEL;
		out[0] = 0x00;
		return 1;
	case 1:
		want->cmd = EGD_NONBLOCK;
		want->len = (uint8_t)(i * 7);
		out[0] = 0x01;
		out[1] = want->len;
		return 2;
	case 2:
		want->cmd = EGD_BLOCK;
		want->len = (uint8_t)(255 - i);
		out[0] = 0x02;
		out[1] = want->len;
		return 2;
	case 3:
		want->cmd = EGD_WRITE;
		want->bits = (uint16_t)(i * 1000);
		want->len = (uint8_t)(i % 17);
		out[0] = 0x03;
		out[1] = (uint8_t)(want->bits >> 8);
		out[2] = (uint8_t)want->bits;
		out[3] = want->len;
		memset(out + 4, (int)i, want->len);
		return 4u + want->len;
	default:
		want->cmd = EGD_PID;
		out[0] = 0x04;
		return 1;
	}
}

static void check_request(const struct egd_req *got, const struct egd_req *want, unsigned i)
{
	assert_int_equal(got->cmd, want->cmd);
	assert_int_equal(got->len, want->len);
	if (want->cmd == EGD_WRITE) {
		assert_int_equal(got->bits, want->bits);
		for (unsigned j = 0; j < got->len; j++) {
			assert_int_equal(got->data[j], (uint8_t)i);
		}
	}
}

static void test_pipelined_requests_are_parsed_in_order(void **state)
{
	uint8_t buf[64 * 32];
	struct egd_req want[64];
	struct egd_req req;
	size_t len = 0;
	size_t off = 0;

	(void)state;
	for (unsigned i = 0; i < 64; i++) {
		len += encode_request(i, buf + len, &want[i]);
	}
	for (unsigned i = 0; i < 64; i++) {
		int r = egd_parse(buf + off, len - off, &req);

		assert_true(r > 0);
		check_request(&req, &want[i], i);
		off += (size_t)r;
	}
	assert_int_equal(off, len);
	assert_int_equal(egd_parse(buf + off, 0, &req), 0);
}

/* The same stream arriving one byte at a time, the way a reader accumulates it. */
static void test_stream_fed_byte_by_byte_yields_same_requests(void **state)
{
	uint8_t buf[64 * 32];
	struct egd_req want[64];
	struct egd_req req;
	size_t len = 0;
	size_t start = 0;
	unsigned parsed = 0;

	(void)state;
	for (unsigned i = 0; i < 64; i++) {
		len += encode_request(i, buf + len, &want[i]);
	}
	for (size_t have = 1; have <= len; have++) {
		int r = egd_parse(buf + start, have - start, &req);

		assert_true(r >= 0);
		if (r > 0) {
			/* A request is complete exactly when its last byte arrives. */
			assert_int_equal(start + (size_t)r, have);
			check_request(&req, &want[parsed], parsed);
			parsed++;
			start = have;
		}
	}
	assert_int_equal(parsed, 64);
}

static void test_unknown_command_is_rejected(void **state)
{
	(void)state;
	for (unsigned c = 0x05; c <= 0xff; c++) {
		const uint8_t in[] = {(uint8_t)c, 0x00, 0x00, 0x00};
		struct egd_req req;

		assert_int_equal(egd_parse(in, sizeof(in), &req), -1);
		assert_int_equal(req.cmd, c);
		assert_int_equal(egd_parse(in, 1, &req), -1);
	}
}

static void test_unknown_command_after_good_ones_is_found_in_place(void **state)
{
	const uint8_t in[] = {0x00, 0x01, 0x10, 0x7f, 0x00};
	struct egd_req req;

	(void)state;
	assert_int_equal(egd_parse(in, sizeof(in), &req), 1);
	assert_int_equal(egd_parse(in + 1, sizeof(in) - 1, &req), 2);
	assert_int_equal(egd_parse(in + 3, sizeof(in) - 3, &req), -1);
	assert_int_equal(req.cmd, 0x7f);
}

static void test_level_encoding_is_big_endian(void **state)
{
	uint8_t out[4];

	(void)state;
	egd_encode_level(0x01020304u, out);
	assert_memory_equal(out, ((const uint8_t[]){1, 2, 3, 4}), 4);
	egd_encode_level(0, out);
	assert_memory_equal(out, ((const uint8_t[]){0, 0, 0, 0}), 4);
	egd_encode_level(UINT32_MAX, out);
	assert_memory_equal(out, ((const uint8_t[]){0xff, 0xff, 0xff, 0xff}), 4);
	egd_encode_level(4096 * 8, out);
	assert_memory_equal(out, ((const uint8_t[]){0, 0, 0x80, 0}), 4);
}

static void test_pid_encoding_is_length_then_digits(void **state)
{
	uint8_t out[32];

	(void)state;
	assert_int_equal(egd_encode_pid(1234, out, sizeof(out)), 5);
	assert_memory_equal(out,
			    "\x04"
			    "1234",
			    5);
	assert_int_equal(egd_encode_pid(0, out, sizeof(out)), 2);
	assert_memory_equal(out,
			    "\x01"
			    "0",
			    2);
	/* The largest Linux pid (2^22) fits in the documented 12 bytes. */
	assert_int_equal(egd_encode_pid(4194304, out, 12), 8);
	assert_memory_equal(out,
			    "\x07"
			    "4194304",
			    8);
	assert_int_equal(egd_encode_pid(LONG_MAX, out, sizeof(out)), 20);
	assert_int_equal(out[0], 19);
}

static void test_pid_encoding_never_writes_past_outlen(void **state)
{
	uint8_t out[32];

	(void)state;
	for (size_t outlen = 0; outlen <= 21; outlen++) {
		size_t r;

		memset(out, 0xEE, sizeof(out));
		r = egd_encode_pid(LONG_MAX, out, outlen);
		assert_true(r == 0 || r == 20);
		assert_true(r <= outlen);
		for (size_t j = outlen; j < sizeof(out); j++) {
			assert_int_equal(out[j], 0xEE);
		}
	}
}

/* Buffer whose end abuts a PROT_NONE page: any read past the input faults. */
struct guarded {
	uint8_t *page;
	size_t pagesz;
};

static void guarded_init(struct guarded *g)
{
	long sz = sysconf(_SC_PAGESIZE);

	assert_true(sz > 0);
	g->pagesz = (size_t)sz;
	g->page =
	    mmap(NULL, 2 * g->pagesz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->page != MAP_FAILED);
	assert_int_equal(mprotect(g->page + g->pagesz, g->pagesz, PROT_NONE), 0);
}

static void guarded_fini(struct guarded *g)
{
	munmap(g->page, 2 * g->pagesz);
}

/* Parse n bytes placed against the guard page and check the result is self-consistent. */
static void parse_guarded(const struct guarded *g, const uint8_t *in, size_t n)
{
	uint8_t *at = g->page + g->pagesz - n;
	struct egd_req req;
	int r;

	memcpy(at, in, n);
	r = egd_parse(at, n, &req);
	if (r < 0) {
		assert_int_equal(r, -1);
		assert_true(in[0] > EGD_PID);
		return;
	}
	assert_true((size_t)r <= n);
	if (r > 0 && req.cmd == EGD_WRITE) {
		assert_ptr_equal(req.data, at + 4);
		assert_int_equal(4u + req.len, (size_t)r);
	}
}

static void test_garbage_never_reads_out_of_bounds(void **state)
{
	struct guarded g;
	uint8_t in[4 + 255];

	(void)state;
	guarded_init(&g);
	/* Every input of 1 to 3 bytes. */
	for (uint32_t v = 0; v < (1u << 24); v++) {
		in[0] = (uint8_t)v;
		in[1] = (uint8_t)(v >> 8);
		in[2] = (uint8_t)(v >> 16);
		if (v < (1u << 8)) {
			parse_guarded(&g, in, 1);
		}
		if (v < (1u << 16)) {
			parse_guarded(&g, in, 2);
		}
		parse_guarded(&g, in, 3);
	}
	/* 4 bytes: every command byte with every length byte (the bits do not steer). */
	for (uint32_t v = 0; v < (1u << 16); v++) {
		in[0] = (uint8_t)v;
		in[1] = 0xff;
		in[2] = 0x00;
		in[3] = (uint8_t)(v >> 8);
		parse_guarded(&g, in, 4);
	}
	/* Writes of every length, cut short by one byte and whole. */
	for (unsigned len = 0; len <= 255; len++) {
		in[0] = 0x03;
		in[1] = 0;
		in[2] = 0;
		in[3] = (uint8_t)len;
		memset(in + 4, 0x5A, len);
		parse_guarded(&g, in, 3 + len);
		parse_guarded(&g, in, 4 + len);
	}
	guarded_fini(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_level_request_is_one_byte),
	    cmocka_unit_test(test_pid_request_is_one_byte),
	    cmocka_unit_test(test_nonblocking_read_takes_its_length),
	    cmocka_unit_test(test_blocking_read_takes_its_length),
	    cmocka_unit_test(test_write_carries_bits_and_data),
	    cmocka_unit_test(test_write_of_zero_bytes),
	    cmocka_unit_test(test_empty_input_needs_more),
	    cmocka_unit_test(test_split_input_needs_more_until_whole),
	    cmocka_unit_test(test_pipelined_requests_are_parsed_in_order),
	    cmocka_unit_test(test_stream_fed_byte_by_byte_yields_same_requests),
	    cmocka_unit_test(test_unknown_command_is_rejected),
	    cmocka_unit_test(test_unknown_command_after_good_ones_is_found_in_place),
	    cmocka_unit_test(test_level_encoding_is_big_endian),
	    cmocka_unit_test(test_pid_encoding_is_length_then_digits),
	    cmocka_unit_test(test_pid_encoding_never_writes_past_outlen),
	    cmocka_unit_test(test_garbage_never_reads_out_of_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
