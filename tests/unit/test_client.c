/* Unit tests for the client state machine (client.c, clients.c), driven through socketpairs
 * on a real libevent loop: the test writes requests on one end, entropyd's client serves
 * the other end from a pool the test filled with a known pattern, and the test reads what
 * came back. No daemon, no network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "clock.h"
#include "log.h"
#include "pool.h"
#include "transport.h"

struct fixture {
	struct event_base *base;
	struct pool *pool;
	struct clients *cs;
	uint8_t pattern[8192];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	log_init("test_client", true, false);
	f->base = event_base_new();
	f->pool = pool_new(16384);
	assert_non_null(f->base);
	assert_non_null(f->pool);
	f->cs = clients_new(f->base, f->pool, 30);
	assert_non_null(f->cs);
	for (size_t i = 0; i < sizeof(f->pattern); i++) {
		f->pattern[i] = (uint8_t)(i * 7 + i / 251);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	clients_free(f->cs);
	event_base_free(f->base);
	pool_free(f->pool);
	free(f);
	return 0;
}

static void fill(struct fixture *f, size_t n)
{
	assert_int_equal(pool_put(f->pool, f->pattern, n), n);
}

/* A client of the fixture's registry on one end of a socketpair; returns the test's end. */
static int connect_client(struct fixture *f, const struct client_opts *opts)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_non_null(
	    client_new(f->cs, &transport_stream, NULL, sv[0], opts, "test", NULL, NULL));
	return sv[1];
}

static void send_all(int fd, const void *buf, size_t n)
{
	assert_int_equal(write(fd, buf, n), (ssize_t)n);
}

/* Run the loop and read from fd until n bytes came (or the peer closed, or 5 s passed);
 * returns how many arrived. */
static size_t recv_n(struct fixture *f, int fd, uint8_t *buf, size_t n)
{
	size_t got = 0;
	long long end = clock_ms() + 5000;

	while (got < n && clock_ms() < end) {
		ssize_t r;

		event_base_loop(f->base, EVLOOP_NONBLOCK);
		r = read(fd, buf + got, n - got);
		if (r == 0) {
			break;
		}
		if (r > 0) {
			got += (size_t)r;
		} else {
			usleep(1000);
		}
	}
	return got;
}

/* True once the daemon's end of fd is closed (EOF seen) within 5 s. */
static bool closed_by_daemon(struct fixture *f, int fd)
{
	long long end = clock_ms() + 5000;
	uint8_t b[256];

	while (clock_ms() < end) {
		ssize_t r;

		event_base_loop(f->base, EVLOOP_NONBLOCK);
		r = read(fd, b, sizeof(b));
		if (r == 0 || (r < 0 && errno == ECONNRESET)) {
			return true;
		}
		usleep(1000);
	}
	return false;
}

static void test_client_pipelined_requests_are_answered_in_order(void **state)
{
	struct fixture *f = *state;
	struct client_opts opts = {0};
	const uint8_t req[] = {0x00, 0x02, 0x10, 0x04, 0x01, 0x05, 0x02, 0x08};
	uint8_t want[128], got[128];
	char pid[32];
	size_t n = 0, pidlen;
	int fd;

	fill(f, 4096);
	fd = connect_client(f, &opts);
	send_all(fd, req, sizeof(req));
	/* 0x00: 8 x the bytes ready, big-endian */
	want[n++] = 0x00, want[n++] = 0x00, want[n++] = 0x80, want[n++] = 0x00;
	memcpy(want + n, f->pattern, 16); /* 0x02 0x10 */
	n += 16;
	pidlen = (size_t)snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	want[n++] = (uint8_t)pidlen; /* 0x04 */
	memcpy(want + n, pid, pidlen);
	n += pidlen;
	want[n++] = 5; /* 0x01 0x05 */
	memcpy(want + n, f->pattern + 16, 5);
	n += 5;
	memcpy(want + n, f->pattern + 21, 8); /* 0x02 0x08 */
	n += 8;
	assert_int_equal(recv_n(f, fd, got, n), n);
	assert_memory_equal(got, want, n);
	assert_int_equal(pool_avail(f->pool), 4096 - 29);
	close(fd);
}

static void test_client_owed_bytes_wait_for_the_pool_and_are_never_short(void **state)
{
	struct fixture *f = *state;
	struct client_opts opts = {0};
	const uint8_t req[] = {0x02, 0xff, 0x02, 0xff};
	uint8_t got[600];
	int fd = connect_client(f, &opts);

	send_all(fd, req, sizeof(req));
	fill(f, 100);
	assert_int_equal(recv_n(f, fd, got, 100), 100);
	fill(f, 600);
	/* 510 owed in all: exactly 410 more, then nothing although the pool holds more */
	assert_int_equal(recv_n(f, fd, got + 100, 500), 410);
	assert_memory_equal(got + 100, f->pattern, 410);
	assert_int_equal(pool_avail(f->pool), 190);
	close(fd);
}

static void test_client_unknown_command_closes_that_client_only(void **state)
{
	struct fixture *f = *state;
	struct client_opts opts = {0};
	const uint8_t bad[] = {0x7f}, good[] = {0x02, 0x20};
	uint8_t got[32];
	int a, b;

	fill(f, 4096);
	a = connect_client(f, &opts);
	b = connect_client(f, &opts);
	send_all(a, bad, sizeof(bad));
	assert_true(closed_by_daemon(f, a));
	send_all(b, good, sizeof(good));
	assert_int_equal(recv_n(f, b, got, 32), 32);
	close(a);
	close(b);
}

static void test_client_write_command_is_refused_unless_enabled(void **state)
{
	struct fixture *f = *state;
	struct client_opts off = {0}, on = {.allow_write = true};
	uint8_t req[4 + 16] = {0x03, 0x00, 0x40, 16};
	uint8_t got[4];
	int a, b;

	a = connect_client(f, &off);
	send_all(a, req, sizeof(req));
	assert_true(closed_by_daemon(f, a));
	b = connect_client(f, &on);
	send_all(b, req, sizeof(req));
	send_all(b, "\x04", 1);
	assert_true(recv_n(f, b, got, 1) == 1); /* still open: it answered 0x04 */
	close(a);
	close(b);
}

static void test_client_that_stops_sending_gets_what_it_is_owed_then_is_closed(void **state)
{
	struct fixture *f = *state;
	struct client_opts opts = {0};
	const uint8_t req[] = {0x02, 0x40, 0x02, 0x40};
	uint8_t got[200];
	int fd = connect_client(f, &opts);

	send_all(fd, req, sizeof(req));
	shutdown(fd, SHUT_WR);
	fill(f, 4096);
	assert_int_equal(recv_n(f, fd, got, sizeof(got)), 128);
	assert_memory_equal(got, f->pattern, 128);
	close(fd);
}

static void test_client_queue_full_pushes_back_and_every_request_is_answered(void **state)
{
	struct fixture *f = *state;
	struct client_opts opts = {0};
	uint8_t req[300], got[300 * 4];
	int fd = connect_client(f, &opts);

	memset(req, 0x00, sizeof(req)); /* 300 x 0x00: more than the queue's 64 slots */
	send_all(fd, req, sizeof(req));
	assert_int_equal(recv_n(f, fd, got, sizeof(got)), sizeof(got));
	for (size_t i = 0; i < 300; i++) {
		assert_int_equal(got[4 * i], 0); /* an empty pool: level 0 */
		assert_int_equal(got[4 * i + 3], 0);
	}
	close(fd);
}

static int cmp_byte(const void *x, const void *y)
{
	return (int)*(const uint8_t *)x - (int)*(const uint8_t *)y;
}

/* Read from both ends until the loop has sent nothing more for 300 ms. */
static void recv_both(struct fixture *f, int a, uint8_t *abuf, size_t *na, int b, uint8_t *bbuf,
		      size_t *nb, size_t room)
{
	long long quiet = clock_ms() + 300;

	*na = *nb = 0;
	while (clock_ms() < quiet) {
		ssize_t r;

		event_base_loop(f->base, EVLOOP_NONBLOCK);
		if ((r = read(a, abuf + *na, room - *na)) > 0) {
			*na += (size_t)r;
			quiet = clock_ms() + 300;
		}
		if ((r = read(b, bbuf + *nb, room - *nb)) > 0) {
			*nb += (size_t)r;
			quiet = clock_ms() + 300;
		}
		usleep(1000);
	}
}

static void test_clients_share_scarce_bytes_and_never_the_same_byte(void **state)
{
	struct fixture *f = *state;
	struct client_opts opts = {0};
	const uint8_t req[] = {0x02, 0xff, 0x02, 0xff, 0x02, 0xff, 0x02, 0xff};
	uint8_t a_got[2048], b_got[1024];
	int a = connect_client(f, &opts), b = connect_client(f, &opts);
	size_t na, nb;

	send_all(a, req, sizeof(req));
	send_all(b, req, sizeof(req));
	recv_both(f, a, a_got, &na, b, b_got, &nb, sizeof(b_got));
	assert_int_equal(na + nb, 0);
	fill(f, 1024);
	recv_both(f, a, a_got, &na, b, b_got, &nb, sizeof(b_got));
	/* Both were served (round-robin shares), together they got all 1024 bytes, and no
	 * byte went to both: what they hold together is exactly what the pool held. */
	assert_true(na >= 256 && nb >= 256);
	assert_int_equal(na + nb, 1024);
	assert_int_equal(pool_avail(f->pool), 0);
	memcpy(a_got + na, b_got, nb); /* the union, as a multiset, is the pool's 1024 bytes */
	qsort(a_got, 1024, 1, cmp_byte);
	memcpy(b_got, f->pattern, 1024);
	qsort(b_got, 1024, 1, cmp_byte);
	assert_memory_equal(a_got, b_got, 1024);
	close(a);
	close(b);
}

/* A transport that records what the client asks of it: client.c must reach the peer only
 * through its table, and respect max_send. */
static struct {
	int reads, writes, closes;
	size_t largest;
	char named[64];
} seen;

static ssize_t rec_read(void *ctx, int fd, void *buf, size_t n)
{
	seen.reads++;
	return read(fd, buf, n);
}

static ssize_t rec_writev(void *ctx, int fd, const struct iovec *iov, int cnt)
{
	size_t len = 0;

	for (int i = 0; i < cnt; i++) {
		len += iov[i].iov_len;
	}
	seen.writes++;
	seen.largest = len > seen.largest ? len : seen.largest;
	return writev(fd, iov, cnt);
}

static void rec_close(void *ctx, int fd)
{
	seen.closes++;
	close(fd);
}

static void rec_peer(void *ctx, int fd, const char *given, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s+named", given);
	snprintf(seen.named, sizeof(seen.named), "%s", out);
}

static const struct transport recording = {.name = "recording",
					   .read = rec_read,
					   .writev = rec_writev,
					   .close = rec_close,
					   .peer = rec_peer,
					   .max_send = 100};

static void test_client_speaks_only_through_its_transport(void **state)
{
	struct fixture *f = *state;
	struct client_opts opts = {0};
	const uint8_t req[] = {0x02, 0xff};
	uint8_t got[255];
	int sv[2];

	memset(&seen, 0, sizeof(seen));
	fill(f, 4096);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_non_null(client_new(f->cs, &recording, NULL, sv[0], &opts, "t", NULL, NULL));
	assert_string_equal(seen.named, "t+named");
	send_all(sv[1], req, sizeof(req));
	assert_int_equal(recv_n(f, sv[1], got, sizeof(got)), sizeof(got));
	assert_memory_equal(got, f->pattern, sizeof(got));
	assert_true(seen.reads >= 1);
	assert_true(seen.writes >= 3); /* 255 bytes in sends of at most max_send */
	assert_true(seen.largest <= 100);
	close(sv[1]); /* the peer leaves: the client closes through the transport, once */
	for (int i = 0; i < 2000 && seen.closes == 0; i++) {
		event_base_loop(f->base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	assert_int_equal(seen.closes, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_client_pipelined_requests_are_answered_in_order,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_client_owed_bytes_wait_for_the_pool_and_are_never_short, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_client_unknown_command_closes_that_client_only,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_client_write_command_is_refused_unless_enabled,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_client_that_stops_sending_gets_what_it_is_owed_then_is_closed, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_client_queue_full_pushes_back_and_every_request_is_answered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_clients_share_scarce_bytes_and_never_the_same_byte,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_client_speaks_only_through_its_transport, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
