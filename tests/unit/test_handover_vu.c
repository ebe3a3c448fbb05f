/* Unit tests for the vhost-user device records of a reload (handover_codec.c's device
 * records, vu_handover.c's descriptor checks): what one image writes, the next reads back
 * exactly; a hostile or damaged record (truncated at every length, counts and sizes out of
 * range, descriptors below 3, descriptors of the wrong type) is refused record by record
 * and never read out of bounds (run under ASan in the sanitizer build). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handover_codec.h"
#include "vu_handover.h"

static struct handover_vu_rec sample(int fd)
{
	struct handover_vu_rec r = {
	    .fd = fd,
	    .flags = HANDOVER_VU_ENABLED | HANDOVER_VU_HAVE_ADDR,
	    .served = 987654321,
	    .features = (1ull << 32) | (1ull << 30) | (1ull << 29),
	    .protocol_features = 1ull << 3,
	    .num = 256,
	    .desc_ua = 0x7f1200000000,
	    .avail_ua = 0x7f1200004000,
	    .used_ua = 0x7f1200008000,
	    .last_avail = 65535,
	    .kick_fd = fd + 1,
	    .call_fd = fd + 2,
	    .err_fd = -1,
	    .nregions = 2,
	    .regions = {{fd + 3, 0, 0xa0000, 0x7f1200000000, 0},
			{fd + 4, 0x100000, 0x7ff00000, 0x7f1300000000, 0x100000}},
	    .partlen = 15,
	    .part = {13, 0, 0, 0, 9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0},
	    .npart_fds = 1,
	    .part_fds = {fd + 5}};

	strcpy(r.spec, "vhost-user:/run/vm1.sock");
	strcpy(r.peer, "vhost-user:/run/vm1.sock#7");
	return r;
}

/* a and b hold the same device (field by field: padding aside). */
static void assert_same(const struct handover_vu_rec *a, const struct handover_vu_rec *b)
{
	assert_int_equal(a->fd, b->fd);
	assert_int_equal(a->flags, b->flags);
	assert_true(a->served == b->served && a->features == b->features &&
		    a->protocol_features == b->protocol_features);
	assert_true(a->num == b->num && a->desc_ua == b->desc_ua && a->avail_ua == b->avail_ua &&
		    a->used_ua == b->used_ua && a->last_avail == b->last_avail);
	assert_true(a->kick_fd == b->kick_fd && a->call_fd == b->call_fd &&
		    a->err_fd == b->err_fd);
	assert_int_equal(a->nregions, b->nregions);
	for (unsigned i = 0; i < a->nregions; i++) {
		assert_true(a->regions[i].fd == b->regions[i].fd &&
			    a->regions[i].gpa == b->regions[i].gpa &&
			    a->regions[i].size == b->regions[i].size &&
			    a->regions[i].uaddr == b->regions[i].uaddr &&
			    a->regions[i].offset == b->regions[i].offset);
	}
	assert_string_equal(a->spec, b->spec);
	assert_string_equal(a->peer, b->peer);
	assert_int_equal(a->partlen, b->partlen);
	assert_memory_equal(a->part, b->part, a->partlen);
	assert_int_equal(a->npart_fds, b->npart_fds);
	assert_memory_equal(a->part_fds, b->part_fds, a->npart_fds * sizeof(int));
}

/* count, then the records in recs, into buf; returns the length. */
static size_t encode(uint8_t *buf, size_t cap, const struct handover_vu_rec *recs, size_t n)
{
	size_t off = 0;

	assert_int_equal(handover_put_vu_count((uint32_t)n, buf, cap, &off), 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(handover_put_vu_rec(&recs[i], buf, cap, &off), 0);
	}
	return off;
}

static void test_device_records_read_back_as_written(void **state)
{
	struct handover_vu_rec recs[2] = {sample(10), sample(30)}, got;
	uint8_t buf[2 * HANDOVER_VU_REC_MAX + 16];
	size_t len, off = 0;
	char err[160];

	recs[1].partlen = 0;
	recs[1].npart_fds = 0;
	recs[1].num = 0;
	recs[1].nregions = 0;
	len = encode(buf, sizeof(buf), recs, 2);
	assert_int_equal(handover_get_vu_count(buf, len, &off, err, sizeof(err)), 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(handover_get_vu_rec(buf, len, &off, &got, err, sizeof(err)), 0);
		assert_same(&got, &recs[i]);
	}
	assert_int_equal(off, len);
}

static void test_a_truncated_device_record_is_refused_at_every_length(void **state)
{
	struct handover_vu_rec rec = sample(10), got;
	uint8_t buf[HANDOVER_VU_REC_MAX + 16];
	size_t len = encode(buf, sizeof(buf), &rec, 1);
	char err[160];

	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *copy = malloc(cut + 1);
		size_t off = 0;
		long n;

		memcpy(copy, buf, cut);
		n = handover_get_vu_count(copy, cut, &off, err, sizeof(err));
		if (n == 1) {
			assert_int_equal(handover_get_vu_rec(copy, cut, &off, &got, err, sizeof(err)),
					 -2);
		} else {
			assert_true(cut < 4 && (n == -1 || (cut == 0 && n == 0)));
		}
		free(copy);
	}
}

/* Encode a, with one field broken by spoil, between two good records: the bad one is
 * refused (-1), the records around it read. */
static void refused_between_good(void (*spoil)(struct handover_vu_rec *r, uint8_t *body),
				 const char *what)
{
	struct handover_vu_rec recs[3] = {sample(10), sample(30), sample(50)}, got;
	uint8_t buf[3 * HANDOVER_VU_REC_MAX + 16];
	size_t len, off = 0, at;
	char err[160];

	len = encode(buf, sizeof(buf), recs, 3);
	at = 4 + 4 + (size_t)(buf[4] | buf[5] << 8) + 4; /* the second record's body */
	spoil(&recs[1], buf + at);
	assert_int_equal(handover_get_vu_count(buf, len, &off, err, sizeof(err)), 3);
	assert_int_equal(handover_get_vu_rec(buf, len, &off, &got, err, sizeof(err)), 0);
	if (handover_get_vu_rec(buf, len, &off, &got, err, sizeof(err)) != -1) {
		fail_msg("a record with %s was read as valid", what);
	}
	assert_int_equal(handover_get_vu_rec(buf, len, &off, &got, err, sizeof(err)), 0);
	assert_int_equal(got.fd, 50);
	assert_int_equal(off, len);
}

/* Offsets in a device record's body (handover_codec.h). */
enum { B_FD = 0, B_FLAGS = 4, B_NUM = 29, B_KICK = 59, B_NREG = 71, B_REG0 = 72 };

static void fd_below_3(struct handover_vu_rec *r, uint8_t *b)
{
	b[B_FD] = 2;
}
static void kick_minus_2(struct handover_vu_rec *r, uint8_t *b)
{
	memset(b + B_KICK, 0xfe, 1);
	memset(b + B_KICK + 1, 0xff, 3);
}
static void unknown_flag(struct handover_vu_rec *r, uint8_t *b)
{
	b[B_FLAGS] |= 0x80;
}
static void queue_not_power_of_two(struct handover_vu_rec *r, uint8_t *b)
{
	b[B_NUM] = 3;
}
static void queue_too_large(struct handover_vu_rec *r, uint8_t *b)
{
	b[B_NUM] = 0;
	b[B_NUM + 2] = 1; /* 65536 */
}
static void region_of_size_0(struct handover_vu_rec *r, uint8_t *b)
{
	memset(b + B_REG0 + 12, 0, 8);
}
static void region_wraps(struct handover_vu_rec *r, uint8_t *b)
{
	memset(b + B_REG0 + 4, 0xff, 8); /* gpa near 2^64 */
}
static void nine_regions(struct handover_vu_rec *r, uint8_t *b)
{
	b[B_NREG] = 9;
}
static void region_fd_below_3(struct handover_vu_rec *r, uint8_t *b)
{
	memset(b + B_REG0, 0, 4);
}

static void test_device_fields_out_of_range_make_a_bad_record_and_the_next_is_read(void **state)
{
	refused_between_good(fd_below_3, "a connection descriptor below 3");
	refused_between_good(kick_minus_2, "a kick descriptor of -2");
	refused_between_good(unknown_flag, "an unknown flag");
	refused_between_good(queue_not_power_of_two, "a queue size of 3");
	refused_between_good(queue_too_large, "a queue size of 65536");
	refused_between_good(region_of_size_0, "a region of size 0");
	refused_between_good(region_wraps, "a region past the end of the address space");
	refused_between_good(nine_regions, "nine regions");
	refused_between_good(region_fd_below_3, "a region descriptor below 3");
}

static void test_invalid_device_records_are_not_written_and_counts_are_bounded(void **state)
{
	uint8_t buf[HANDOVER_VU_REC_MAX];
	struct handover_vu_rec r = sample(10);
	size_t off = 0;
	char err[160];

	r.npart_fds = VU_MAX_FDS + 1;
	assert_int_equal(handover_put_vu_rec(&r, buf, sizeof(buf), &off), -1);
	r = sample(10);
	r.partlen = HANDOVER_VU_PART_MAX + 1;
	assert_int_equal(handover_put_vu_rec(&r, buf, sizeof(buf), &off), -1);
	r = sample(10);
	strcpy(r.peer, "vm\n1");
	assert_int_equal(handover_put_vu_rec(&r, buf, sizeof(buf), &off), -1);
	r = sample(10);
	assert_int_equal(handover_put_vu_rec(&r, buf, 40, &off), -1); /* does not fit */
	assert_int_equal(off, 0);
	assert_int_equal(handover_put_vu_count(HANDOVER_VU_MAX + 1, buf, sizeof(buf), &off), 0);
	off = 0;
	assert_int_equal(handover_get_vu_count(buf, 4, &off, err, sizeof(err)), -1);
}

static void test_random_garbage_in_device_records_is_refused_without_reading_out_of_bounds(
    void **state)
{
	struct handover_vu_rec recs[2] = {sample(10), sample(30)}, r;
	uint8_t valid[2 * HANDOVER_VU_REC_MAX + 16];
	size_t vlen = encode(valid, sizeof(valid), recs, 2);
	char err[160];

	srand(17);
	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)rand() % vlen + 1, off = 0;
		uint8_t *buf = malloc(len);
		long n;

		memcpy(buf, valid, len);
		for (int k = 0; k < 1 + rand() % 8; k++) {
			buf[(size_t)rand() % len] = (uint8_t)rand();
		}
		n = handover_get_vu_count(buf, len, &off, err, sizeof(err));
		for (long i = 0; i < n && i < 4; i++) {
			int rc = handover_get_vu_rec(buf, len, &off, &r, err, sizeof(err));

			if (rc == 0) {
				assert_true(r.fd >= 3 && r.nregions <= VRING_MAX_REGIONS &&
					    r.npart_fds <= VU_MAX_FDS &&
					    r.partlen <= HANDOVER_VU_PART_MAX && r.num <= 32768);
			}
			if (rc == -2) {
				break;
			}
			assert_true(off <= len);
		}
		free(buf);
	}
}

/* A record naming real descriptors: sv[0] the connection, two eventfds, a memfd. */
static struct handover_vu_rec real(int conn, int kick, int call, int mem)
{
	struct handover_vu_rec r = sample(10);

	r.fd = conn;
	r.kick_fd = kick;
	r.call_fd = call;
	r.nregions = 1;
	r.regions[0].fd = mem;
	r.npart_fds = 1;
	r.part_fds[0] = kick;
	return r;
}

static void test_descriptors_of_the_wrong_type_are_refused(void **state)
{
	int sv[2], kick = eventfd(0, 0), call = eventfd(0, 0), mem = memfd_create("guest", 0);
	int dgram = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct handover_vu_rec r;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	r = real(sv[0], kick, call, mem);
	assert_null(vu_handover_check_fds(&r));
	r = real(dgram, kick, call, mem);
	assert_non_null(vu_handover_check_fds(&r)); /* not a stream socket */
	r = real(mem, kick, call, mem);
	assert_non_null(vu_handover_check_fds(&r)); /* not a socket */
	r = real(sv[0], mem, call, mem);
	assert_non_null(vu_handover_check_fds(&r)); /* the kick is a file */
	r = real(sv[0], kick, sv[1], mem);
	assert_non_null(vu_handover_check_fds(&r)); /* the call is a socket */
	r = real(sv[0], kick, call, call);
	assert_non_null(vu_handover_check_fds(&r)); /* memory that is an eventfd */
	r = real(sv[0], kick, call, mem);
	r.part_fds[0] = sv[1];
	assert_non_null(vu_handover_check_fds(&r)); /* a socket came with the message */
	close(sv[0]);
	close(sv[1]);
	close(kick);
	close(call);
	close(mem);
	close(dgram);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_device_records_read_back_as_written),
	    cmocka_unit_test(test_a_truncated_device_record_is_refused_at_every_length),
	    cmocka_unit_test(
		test_device_fields_out_of_range_make_a_bad_record_and_the_next_is_read),
	    cmocka_unit_test(test_invalid_device_records_are_not_written_and_counts_are_bounded),
	    cmocka_unit_test(
		test_random_garbage_in_device_records_is_refused_without_reading_out_of_bounds),
	    cmocka_unit_test(test_descriptors_of_the_wrong_type_are_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
