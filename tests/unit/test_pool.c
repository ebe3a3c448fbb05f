/* Unit tests for pool: order across wrap-around, each byte handed out once and wiped,
 * back-pressure, the wake-up descriptor, and a two-thread 64 MiB stream seen exactly once
 * and in order. Only the public API is used (the wipe is checked through the addresses
 * pool_peek handed out; a blocked producer is proven asleep by pool_producer_sleeps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

/* The test stream: a 64-bit counter, one little-endian word per 8 bytes, scrambled by an
 * odd multiplier (a bijection) so that every byte of a word varies: a lost, repeated,
 * reordered or wiped piece of any length shows as wrong bytes. */
static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(((i / 8 + 1) * 0x9e3779b97f4a7c15ull) >> (8 * (i % 8)));
}

static void fill_pattern(uint8_t *buf, uint64_t from, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		buf[j] = pattern(from + j);
	}
}

/* Count of mismatches between n bytes at buf and the pattern from index `from`. */
static size_t pattern_errors(const uint8_t *buf, uint64_t from, size_t n)
{
	size_t bad = 0;

	for (size_t j = 0; j < n; j++) {
		bad += buf[j] != pattern(from + j);
	}
	return bad;
}

static struct pool *new_or_die(size_t cap)
{
	struct pool *p = pool_new(cap);

	assert_non_null(p);
	return p;
}

static bool fd_readable(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN) != 0;
}

static void test_new_pool_is_empty(void **state)
{
	struct pool *p = new_or_die(64);
	struct iovec iov[2];
	uint8_t out[8];

	(void)state;
	assert_int_equal(pool_avail(p), 0);
	assert_int_equal(pool_capacity(p), 64);
	assert_int_equal(pool_delivered(p), 0);
	assert_int_equal(pool_peek(p, 8, iov), 0);
	assert_int_equal(pool_take(p, out, sizeof(out)), 0);
	assert_true(pool_wakeup_fd(p) >= 0);
	assert_false(fd_readable(pool_wakeup_fd(p)));
	pool_free(p);
}

/* Peek n bytes and check they continue the pattern from `from`; returns iovcnt. */
static int peek_and_check(struct pool *p, size_t n, uint64_t from)
{
	struct iovec iov[2];
	int cnt = pool_peek(p, n, iov);
	size_t seen = 0;

	assert_true(cnt >= 0 && cnt <= 2);
	for (int i = 0; i < cnt; i++) {
		assert_true(iov[i].iov_len > 0);
		assert_int_equal(pattern_errors(iov[i].iov_base, from + seen, iov[i].iov_len), 0);
		seen += iov[i].iov_len;
	}
	assert_int_equal(seen, n < pool_avail(p) ? n : pool_avail(p));
	return cnt;
}

static void test_put_peek_consume_preserve_order_across_wrap(void **state)
{
	static const size_t sizes[] = {1, 5, 16, 3, 9, 15, 2, 11, 7, 13};
	struct pool *p = new_or_die(16);
	uint8_t buf[16];
	uint64_t in = 0;
	uint64_t out = 0;
	bool wrapped = false;

	(void)state;
	for (size_t round = 0; round < 1000; round++) {
		size_t n = sizes[round % 10];
		size_t want = 16 - (size_t)(in - out);
		size_t put;

		fill_pattern(buf, in, n);
		put = pool_put(p, buf, n);
		assert_int_equal(put, n < want ? n : want);
		in += put;
		assert_int_equal(pool_avail(p), in - out);
		/* A partial peek, then the whole filled region. */
		peek_and_check(p, 1, out);
		if (peek_and_check(p, 16, out) == 2) {
			wrapped = true;
		}
		n = sizes[(round * 3 + 1) % 10];
		if (n > in - out) {
			n = (size_t)(in - out);
		}
		pool_consume(p, n);
		out += n;
		assert_int_equal(pool_delivered(p), out);
	}
	assert_true(wrapped);
	pool_free(p);
}

static void test_consumed_bytes_are_never_handed_out_again(void **state)
{
	struct pool *p = new_or_die(32);
	uint8_t buf[32];
	struct iovec iov[2];
	uint8_t first;

	(void)state;
	fill_pattern(buf, 0, sizeof(buf));
	assert_int_equal(pool_put(p, buf, 20), 20);
	for (uint64_t done = 0; done < 20; done++) {
		assert_int_equal(pool_peek(p, 1, iov), 1);
		first = *(const uint8_t *)iov[0].iov_base;
		assert_int_equal(first, pattern(done));
		pool_consume(p, 1);
		assert_int_equal(pool_avail(p), 19 - done);
	}
	assert_int_equal(pool_peek(p, 32, iov), 0);
	/* New bytes after wrap come out, the old ones do not. */
	fill_pattern(buf, 20, 30);
	assert_int_equal(pool_put(p, buf, 30), 30);
	peek_and_check(p, 32, 20);
	pool_free(p);
}

static void assert_zero(const struct iovec *iov, int cnt)
{
	for (int i = 0; i < cnt; i++) {
		const uint8_t *b = iov[i].iov_base;

		for (size_t j = 0; j < iov[i].iov_len; j++) {
			assert_int_equal(b[j], 0);
		}
	}
}

static void test_consumed_region_is_wiped(void **state)
{
	struct pool *p = new_or_die(16);
	uint8_t buf[16];
	uint8_t out[16];
	struct iovec iov[2];
	int cnt;

	(void)state;
	memset(buf, 0xA5, sizeof(buf));
	/* Consume: the memory pool_peek pointed at is zero afterwards. */
	assert_int_equal(pool_put(p, buf, 10), 10);
	cnt = pool_peek(p, 6, iov);
	assert_int_equal(cnt, 1);
	pool_consume(p, 6);
	assert_zero(iov, cnt);
	/* Take, across the wrap: both pieces are zero afterwards, and the copy is right. */
	assert_int_equal(pool_put(p, buf, 12), 12);
	cnt = pool_peek(p, 16, iov);
	assert_int_equal(cnt, 2);
	assert_int_equal(pool_take(p, out, 16), 16);
	assert_zero(iov, cnt);
	for (size_t j = 0; j < 16; j++) {
		assert_int_equal(out[j], 0xA5);
	}
	/* The wiped slots take new bytes normally. */
	fill_pattern(buf, 0, 16);
	assert_int_equal(pool_put(p, buf, 16), 16);
	peek_and_check(p, 16, 0);
	pool_free(p);
}

static void test_put_returns_short_count_when_full(void **state)
{
	struct pool *p = new_or_die(100);
	uint8_t buf[100];

	(void)state;
	fill_pattern(buf, 0, sizeof(buf));
	assert_int_equal(pool_put(p, buf, 70), 70);
	assert_int_equal(pool_put(p, buf + 70, 70), 30);
	assert_int_equal(pool_put(p, buf, 1), 0);
	assert_int_equal(pool_avail(p), 100);
	pool_consume(p, 10);
	fill_pattern(buf, 100, 20);
	assert_int_equal(pool_put(p, buf, 20), 10);
	assert_int_equal(pool_avail(p), 100);
	peek_and_check(p, 100, 10);
	pool_free(p);
}

static void test_take_copies_and_consumes(void **state)
{
	struct pool *p = new_or_die(64);
	uint8_t buf[50];
	uint8_t out[100];

	(void)state;
	fill_pattern(buf, 0, sizeof(buf));
	assert_int_equal(pool_put(p, buf, 50), 50);
	assert_int_equal(pool_take(p, out, 20), 20);
	assert_int_equal(pattern_errors(out, 0, 20), 0);
	assert_int_equal(pool_avail(p), 30);
	assert_int_equal(pool_take(p, out, sizeof(out)), 30);
	assert_int_equal(pattern_errors(out, 20, 30), 0);
	assert_int_equal(pool_avail(p), 0);
	assert_int_equal(pool_take(p, out, sizeof(out)), 0);
	pool_free(p);
}

static void test_delivered_counts_consumed_bytes(void **state)
{
	struct pool *p = new_or_die(64);
	uint8_t buf[64] = {1};
	uint8_t out[64];

	(void)state;
	assert_int_equal(pool_put(p, buf, 64), 64);
	assert_int_equal(pool_delivered(p), 0);
	pool_consume(p, 10);
	assert_int_equal(pool_delivered(p), 10);
	assert_int_equal(pool_take(p, out, 5), 5);
	assert_int_equal(pool_delivered(p), 15);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(pool_put(p, buf, 15), 15);
		assert_int_equal(pool_take(p, out, 15), 15);
	}
	assert_int_equal(pool_delivered(p), 15 + 100 * 15);
	assert_int_equal(pool_take(p, out, 64), 49);
	assert_int_equal(pool_delivered(p), 64 + 100 * 15);
	pool_free(p);
}

static void test_wakeup_fd_fires_only_when_asked(void **state)
{
	struct pool *p = new_or_die(64);
	int fd = pool_wakeup_fd(p);
	uint8_t b = 1;

	(void)state;
	/* Not asked: a put does not wake the consumer. */
	assert_int_equal(pool_put(p, &b, 1), 1);
	assert_false(fd_readable(fd));
	pool_consume(p, 1);
	/* Asked while empty: the next put wakes it, and the ack clears it. */
	pool_want(p);
	assert_false(fd_readable(fd));
	assert_int_equal(pool_put(p, &b, 1), 1);
	assert_true(fd_readable(fd));
	pool_ack_wakeup(p);
	assert_false(fd_readable(fd));
	/* One request, one wake-up. */
	assert_int_equal(pool_put(p, &b, 1), 1);
	assert_false(fd_readable(fd));
	/* Asked while bytes are already there (a put raced the empty check): fires now. */
	pool_want(p);
	assert_true(fd_readable(fd));
	pool_ack_wakeup(p);
	pool_free(p);
}

/* Put n bytes into p and check whether that woke the consumer (then clear the wake-up). */
static void put_and_check_wake(struct pool *p, size_t n, bool wakes)
{
	static const uint8_t buf[64];

	assert_int_equal(pool_put(p, buf, n), n);
	assert_int_equal(fd_readable(pool_wakeup_fd(p)), wakes);
	if (wakes) {
		pool_ack_wakeup(p);
	}
}

static void test_want_at_wakes_only_once_n_bytes_are_there(void **state)
{
	struct pool *p = new_or_die(64);

	(void)state;
	/* The rotation waits for a batch: puts below the mark do not wake it. */
	pool_want_at(p, 40);
	put_and_check_wake(p, 16, false);
	put_and_check_wake(p, 16, false);
	put_and_check_wake(p, 8, true);
	pool_consume(p, 40);
	/* A mark above the capacity is a full pool, not a wait that never ends. */
	pool_want_at(p, 1000);
	put_and_check_wake(p, 63, false);
	put_and_check_wake(p, 1, true);
	pool_consume(p, 64);
	/* An earlier, smaller wish still pending stands against a larger one. */
	pool_want_at(p, 4);
	pool_want_at(p, 32);
	put_and_check_wake(p, 4, true);
	pool_free(p);
}

static void test_wait_space_returns_free_space_at_once(void **state)
{
	struct pool *p = new_or_die(64);
	atomic_bool stop = false;
	uint8_t buf[40] = {0};

	(void)state;
	assert_int_equal(pool_wait_space(p, &stop), 64);
	assert_int_equal(pool_put(p, buf, 40), 40);
	assert_int_equal(pool_wait_space(p, &stop), 24);
	pool_free(p);
}

static void test_wait_space_on_full_pool_returns_if_already_stopped(void **state)
{
	struct pool *p = new_or_die(16);
	atomic_bool stop = true;
	uint8_t buf[16] = {0};

	(void)state;
	assert_int_equal(pool_put(p, buf, 16), 16);
	assert_int_equal(pool_wait_space(p, &stop), 0);
	pool_free(p);
}

struct waiter {
	struct pool *p;
	atomic_bool stop;
	atomic_bool done;
	size_t got;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;

	w->got = pool_wait_space(w->p, &w->stop);
	atomic_store(&w->done, true);
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait up to `secs` for the flag. */
static bool wait_flag(atomic_bool *flag, double secs)
{
	double end = now() + secs;

	while (!atomic_load(flag)) {
		if (now() > end) {
			return false;
		}
		usleep(1000);
	}
	return true;
}

/* Wait up to `secs` until producers have gone to sleep in pool_wait_space at least n times
 * in all. The count is taken under the pool's lock just before pthread_cond_wait, which
 * releases that lock only once the thread waits: after seeing it, any wake-up (which takes
 * the lock) reaches the thread. This is the proof that a thread is blocked; a sleep of
 * the test thread would only be a guess that the other thread has run. */
static bool wait_sleeps(struct pool *p, uint64_t n, double secs)
{
	double end = now() + secs;

	while (pool_producer_sleeps(p) < n) {
		if (now() > end) {
			return false;
		}
		usleep(1000);
	}
	return true;
}

static void start_waiter(struct waiter *w, pthread_t *t)
{
	uint8_t buf[32] = {0};

	w->p = new_or_die(32);
	atomic_init(&w->stop, false);
	atomic_init(&w->done, false);
	w->got = 12345;
	assert_int_equal(pool_put(w->p, buf, 32), 32);
	assert_int_equal(pool_producer_sleeps(w->p), 0);
	assert_int_equal(pthread_create(t, NULL, wait_thread, w), 0);
	/* The pool is full: the producer must go to sleep in the call, not return from it. */
	assert_true(wait_sleeps(w->p, 1, 5));
	assert_false(atomic_load(&w->done));
}

static void test_wait_space_returns_promptly_when_stop_set(void **state)
{
	struct waiter w;
	pthread_t t;

	(void)state;
	start_waiter(&w, &t);
	atomic_store(&w.stop, true);
	pool_wake_producers(w.p);
	assert_true(wait_flag(&w.done, 2));
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(w.got, 0);
	pool_free(w.p);
}

static void test_wait_space_wakes_when_a_quarter_is_free(void **state)
{
	struct waiter w;
	pthread_t t;

	(void)state;
	start_waiter(&w, &t);
	/* Hysteresis: 5 of 32 bytes free is below the low-water mark (a quarter, 8 bytes).
	 * Force the sleeping producer to look again: it must go back to sleep (a second sleep
	 * counted), not return with 5 bytes of room. */
	pool_consume(w.p, 5);
	pool_wake_producers(w.p);
	assert_true(wait_sleeps(w.p, 2, 5));
	assert_false(atomic_load(&w.done));
	/* A quarter free: the consumer itself wakes the producer, which returns. */
	pool_consume(w.p, 3);
	assert_true(wait_flag(&w.done, 5));
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(w.got, 8);
	pool_free(w.p);
}

#define STREAM_BYTES (64u << 20)

struct producer {
	struct pool *p;
	atomic_bool stop;
	uint64_t sent;
};

static void *producer_thread(void *arg)
{
	static const size_t sizes[] = {1, 4093, 17, 65536, 300, 8191, 5, 777};
	struct producer *pr = arg;
	uint8_t buf[65536];
	size_t k = 0;

	while (pr->sent < STREAM_BYTES && !atomic_load(&pr->stop)) {
		size_t n = sizes[k++ % (sizeof(sizes) / sizeof(sizes[0]))];
		size_t off = 0;

		if (n > STREAM_BYTES - pr->sent) {
			n = (size_t)(STREAM_BYTES - pr->sent);
		}
		fill_pattern(buf, pr->sent, n);
		while (off < n && !atomic_load(&pr->stop)) {
			off += pool_put(pr->p, buf + off, n - off);
			if (off < n) {
				pool_wait_space(pr->p, &pr->stop);
			}
		}
		pr->sent += off;
	}
	return NULL;
}

static void test_stream_between_threads_arrives_once_in_order(void **state)
{
	static const size_t takes[] = {4096, 1, 100000, 333, 65536, 12};
	struct producer pr;
	pthread_t t;
	struct iovec iov[2];
	uint64_t got = 0;
	size_t errors = 0;
	size_t k = 0;
	int fd;

	(void)state;
	/* Not a power of two, so wrap points move around. */
	pr.p = new_or_die(100003);
	atomic_init(&pr.stop, false);
	pr.sent = 0;
	fd = pool_wakeup_fd(pr.p);
	assert_int_equal(pthread_create(&t, NULL, producer_thread, &pr), 0);
	while (got < STREAM_BYTES && errors == 0) {
		size_t want = takes[k++ % (sizeof(takes) / sizeof(takes[0]))];
		int cnt = pool_peek(pr.p, want, iov);
		size_t n = 0;

		if (cnt == 0) {
			/* Empty: sleep on the wake-up descriptor like the event loop does. */
			struct pollfd pfd = {.fd = fd, .events = POLLIN};

			pool_want(pr.p);
			if (poll(&pfd, 1, 5000) != 1) {
				errors++; /* lost wake-up */
			}
			pool_ack_wakeup(pr.p);
			continue;
		}
		for (int i = 0; i < cnt; i++) {
			errors += pattern_errors(iov[i].iov_base, got + n, iov[i].iov_len);
			n += iov[i].iov_len;
		}
		pool_consume(pr.p, n);
		got += n;
	}
	/* Stop the producer before asserting, so a failure does not leave it blocked. */
	atomic_store(&pr.stop, true);
	pool_wake_producers(pr.p);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(errors, 0);
	assert_int_equal(got, STREAM_BYTES);
	assert_int_equal(pr.sent, STREAM_BYTES);
	assert_int_equal(pool_avail(pr.p), 0);
	assert_int_equal(pool_delivered(pr.p), STREAM_BYTES);
	pool_free(pr.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_pool_is_empty),
	    cmocka_unit_test(test_put_peek_consume_preserve_order_across_wrap),
	    cmocka_unit_test(test_consumed_bytes_are_never_handed_out_again),
	    cmocka_unit_test(test_consumed_region_is_wiped),
	    cmocka_unit_test(test_put_returns_short_count_when_full),
	    cmocka_unit_test(test_take_copies_and_consumes),
	    cmocka_unit_test(test_delivered_counts_consumed_bytes),
	    cmocka_unit_test(test_wakeup_fd_fires_only_when_asked),
	    cmocka_unit_test(test_want_at_wakes_only_once_n_bytes_are_there),
	    cmocka_unit_test(test_wait_space_returns_free_space_at_once),
	    cmocka_unit_test(test_wait_space_on_full_pool_returns_if_already_stopped),
	    cmocka_unit_test(test_wait_space_returns_promptly_when_stop_set),
	    cmocka_unit_test(test_wait_space_wakes_when_a_quarter_is_free),
	    cmocka_unit_test(test_stream_between_threads_arrives_once_in_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
