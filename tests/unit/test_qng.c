/* Unit tests for qng: the QNG protocol state machine driven against the simulator's device
 * model (qngsim_model) through an in-memory byte pipe, and through the socket backend
 * against the model served by a thread. What they prove: the delimiter is learnt, the
 * first 256 bytes after every start are dropped, nothing is handed out before a status
 * check that came after it passed, every fault makes the read fail without handing out
 * any byte of the failed block, a full reset recovers, instances are independent, the
 * driver logs only through its caller's callback, and device selection never takes a
 * plain FTDI adapter. Linked with libqng alone: the driver needs nothing of the daemon. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qng.h"
#include "qngsim_model.h"

#define BLOCK 4096u
#define TAIL 128u
#define SEED 12345u

/* ---- An in-memory pipe to a model ---- */

struct mem_pipe {
	struct qngsim *m;
	bool open;
	bool absent; /* open() fails: no device */
	unsigned opens;
	int last_timeout;
	size_t chunk; /* at most this much per read, like a USB transfer */
};

static int mem_open(void *ctx, const char *serial, char *err, size_t errlen)
{
	struct mem_pipe *p = ctx;

	(void)serial;
	assert_false(p->open);
	if (p->absent) {
		snprintf(err, errlen, "no device");
		return -1;
	}
	if (qngsim_unplugged(p->m)) {
		qngsim_replug(p->m);
	}
	qngsim_host_reset(p->m);
	qngsim_set_host(p->m, true);
	p->open = true;
	p->opens++;
	return 0;
}

static int mem_write(void *ctx, const uint8_t *b, size_t n)
{
	struct mem_pipe *p = ctx;

	assert_true(p->open);
	if (qngsim_unplugged(p->m)) {
		return -1;
	}
	qngsim_input(p->m, b, n);
	return 0;
}

/* Nothing available now stands for "nothing arrived for timeout_ms". */
static long mem_read(void *ctx, uint8_t *b, size_t n, int timeout_ms)
{
	struct mem_pipe *p = ctx;
	long r;

	assert_true(p->open);
	r = qngsim_output(p->m, b, n < p->chunk ? n : p->chunk);
	if (r == 0) {
		p->last_timeout = timeout_ms;
	}
	return r;
}

static void mem_close(void *ctx)
{
	struct mem_pipe *p = ctx;

	p->open = false;
	qngsim_set_host(p->m, false);
}

static const char *mem_error(void *ctx)
{
	struct mem_pipe *p = ctx;

	return qngsim_unplugged(p->m) ? "the device was unplugged" : NULL;
}

static const struct qng_pipe_ops mem_ops = {
    .open = mem_open,
    .write = mem_write,
    .read = mem_read,
    .close = mem_close,
    .error = mem_error,
};

struct rig {
	struct mem_pipe pipe;
	struct qng *q;
	uint64_t seed;
	char err[256];
};

static void params(struct qng_params *p)
{
	qng_params_default(p);
	p->check_bytes = BLOCK;
	p->check_ms = 0; /* blocks end by size only: deterministic */
}

static void rig_init(struct rig *r, const char *serial, uint64_t seed)
{
	struct qng_params p;

	memset(r, 0, sizeof(*r));
	params(&p);
	r->seed = seed;
	r->pipe.m = qngsim_new(serial, seed, true);
	r->pipe.chunk = 700;
	qngsim_set_tail(r->pipe.m, TAIL);
	r->q = qng_new(&mem_ops, &r->pipe, NULL, &p);
	assert_non_null(r->pipe.m);
	assert_non_null(r->q);
}

static void rig_free(struct rig *r)
{
	qng_free(r->q);
	qngsim_free(r->pipe.m);
}

/* Read exactly one block (several qng_read calls); -1 if a read failed. */
static long read_block(struct rig *r, uint8_t *buf)
{
	size_t got = 0;

	while (got < BLOCK) {
		long n = qng_read(r->q, buf + got, BLOCK - got, r->err, sizeof(r->err));

		if (n < 0) {
			return -1;
		}
		assert_true(n > 0);
		got += (size_t)n;
	}
	return (long)got;
}

static void expect_data(const struct rig *r, const uint8_t *buf, size_t n, uint64_t off)
{
	uint8_t *want = malloc(n);

	qngsim_stream(r->seed, QNGSIM_DATA, off, want, n);
	assert_memory_equal(buf, want, n);
	free(want);
}

/* The data offset of a block's bytes, or -1 if they are not consecutive data bytes. */
static long long locate(const struct rig *r, const uint8_t *buf, size_t n)
{
	const size_t span = 1u << 20;
	uint8_t *d = malloc(span);
	uint8_t *hit;
	long long off = -1;

	qngsim_stream(r->seed, QNGSIM_DATA, 0, d, span);
	hit = memmem(d, span, buf, n);
	if (hit != NULL) {
		off = hit - d;
	}
	free(d);
	return off;
}

static bool contains(const char *s, const char *sub)
{
	return strstr(s, sub) != NULL;
}

/* ---- Tests ---- */

static void test_qng_initialise_learns_the_delimiter_and_clears_the_flag(void **state)
{
	static const uint8_t want[] = {0xE0, 0x60, 0x60, 0xC0, 0xE0, 0x60, 0x96};
	struct rig r;
	uint8_t delim[6];
	const uint8_t *cmds;
	size_t n;

	rig_init(&r, "QWR4TEST0001", SEED);
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
	qngsim_delimiter(r.pipe.m, delim);
	assert_memory_equal(qng_delimiter(r.q), delim, 6);
	cmds = qngsim_commands(r.pipe.m, &n);
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(cmds, want, sizeof(want));
	rig_free(&r);
}

static void test_qng_start_discards_exactly_the_first_256_bytes_of_every_start(void **state)
{
	struct rig r;
	uint8_t buf[BLOCK];

	rig_init(&r, "QWR4TEST0001", SEED);
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
	assert_int_equal(qngsim_counters(r.pipe.m)->head, 256);
	assert_int_equal(read_block(&r, buf), BLOCK);
	/* Had one byte too few been dropped, the block would start with a head byte. */
	expect_data(&r, buf, BLOCK, 0);
	/* The check stopped the stream (its tail is drained); the restart drops 256 again. */
	assert_int_equal(read_block(&r, buf), BLOCK);
	expect_data(&r, buf, BLOCK, BLOCK + TAIL);
	assert_int_equal(qngsim_counters(r.pipe.m)->head, 2 * 256);
	rig_free(&r);
}

static void test_qng_each_block_is_released_only_after_a_later_status_check(void **state)
{
	struct rig r;
	uint8_t buf[BLOCK];
	const struct qngsim_check *ck;
	size_t n;

	rig_init(&r, "QWR4TEST0001", SEED);
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
	assert_int_equal(qngsim_counters(r.pipe.m)->statuses, 0);
	for (unsigned i = 1; i <= 3; i++) {
		/* The first byte of a block is handed out only after its check. */
		long got = qng_read(r.q, buf, 1, r.err, sizeof(r.err));

		assert_int_equal(got, 1);
		ck = qngsim_checks(r.pipe.m, &n);
		assert_int_equal(n, i);
		/* The check came after the whole block (and the stop's tail) was streamed. */
		assert_int_equal(ck[i - 1].data_off, i * (BLOCK + TAIL));
		assert_int_equal(ck[i - 1].word & 0x4, 0);
		assert_int_equal(qng_read(r.q, buf + 1, BLOCK - 1, r.err, sizeof(r.err)),
				 BLOCK - 1);
	}
	assert_int_equal(qng_checks_passed(r.q), 3);
	rig_free(&r);
}

/* Bad statistics in the second block: the read fails and nothing of it is returned. */
static void bad_statistics_case(bool flag_only, bool zero_fill)
{
	struct rig r;
	static uint8_t buf[2 * BLOCK];
	long n;

	rig_init(&r, "QWR4TEST0001", SEED);
	if (!zero_fill) {
		qngsim_free(r.pipe.m);
		r.pipe.m = qngsim_new("QWR4TEST0001", SEED, false);
		qngsim_set_tail(r.pipe.m, TAIL);
	}
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
	assert_int_equal(read_block(&r, buf), BLOCK);
	/* Strike 1000 bytes into the next block (after its 256-byte head). */
	uint64_t at = qngsim_counters(r.pipe.m)->streamed + TAIL + 256 + 1000;

	if (flag_only) {
		qngsim_fault(r.pipe.m, QNGSIM_F_BAD_FLAG, at, 0);
	} else {
		qngsim_fault(r.pipe.m, QNGSIM_F_BAD, at, 100);
	}
	memset(buf + BLOCK, 0xEE, BLOCK);
	n = qng_read(r.q, buf + BLOCK, BLOCK, r.err, sizeof(r.err));
	assert_int_equal(n, -1);
	assert_true(contains(r.err, "bad statistics"));
	/* Not a byte of the failed block reached the caller's buffer. */
	for (size_t i = 0; i < BLOCK; i++) {
		assert_int_equal(buf[BLOCK + i], 0xEE);
	}
	if (!flag_only) {
		assert_int_equal(qngsim_counters(r.pipe.m)->bad, 100);
	}
	/* Still failed: reads keep failing, without touching the device, until a reset. */
	size_t ncmds, ncmds_after;

	qngsim_commands(r.pipe.m, &ncmds);
	assert_int_equal(qng_read(r.q, buf + BLOCK, BLOCK, r.err, sizeof(r.err)), -1);
	assert_true(contains(r.err, "needs a reset"));
	qngsim_commands(r.pipe.m, &ncmds_after);
	assert_int_equal(ncmds_after, ncmds);
	expect_data(&r, buf, BLOCK, 0);
	rig_free(&r);
}

static void test_qng_bad_statistics_fail_the_read_and_withhold_the_block(void **state)
{
	bad_statistics_case(false, true);
}

static void test_qng_bad_statistics_with_plausible_data_withhold_the_block(void **state)
{
	bad_statistics_case(false, false);
}

static void test_qng_bad_statistics_flag_alone_fails_the_read(void **state)
{
	bad_statistics_case(true, true);
}

static void test_qng_stall_fails_after_the_streaming_timeout(void **state)
{
	struct rig r;
	uint8_t buf[BLOCK];

	rig_init(&r, "QWR4TEST0001", SEED);
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
	qngsim_fault(r.pipe.m, QNGSIM_F_STALL, qngsim_counters(r.pipe.m)->streamed + 2000, 0);
	assert_int_equal(qng_read(r.q, buf, BLOCK, r.err, sizeof(r.err)), -1);
	assert_true(contains(r.err, "stalled"));
	assert_true(contains(r.err, "5000 ms"));
	/* The read that got nothing waited the streaming timeout, not the command one. */
	assert_int_equal(r.pipe.last_timeout, 5000);
	rig_free(&r);
}

static void test_qng_unplug_mid_read_fails(void **state)
{
	struct rig r;
	uint8_t buf[BLOCK];

	rig_init(&r, "QWR4TEST0001", SEED);
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
	qngsim_fault(r.pipe.m, QNGSIM_F_UNPLUG, qngsim_counters(r.pipe.m)->streamed + 1500, 0);
	assert_int_equal(qng_read(r.q, buf, BLOCK, r.err, sizeof(r.err)), -1);
	assert_true(contains(r.err, "unplugged"));
	rig_free(&r);
}

static void test_qng_disagreeing_delimiters_fail_initialisation(void **state)
{
	struct rig r;

	rig_init(&r, "QWR4TEST0001", SEED);
	/* The first answer to 0x60 is garbage, the second is right: they differ. */
	qngsim_fault(r.pipe.m, QNGSIM_F_GARBAGE_DELIM, 0, 1);
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), -1);
	assert_true(contains(r.err, "differ"));
	assert_int_equal(qngsim_counters(r.pipe.m)->starts, 0);
	/* A full reset with a sane device works. */
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
	rig_free(&r);
}

static void test_qng_garbage_delimiter_at_a_status_check_fails(void **state)
{
	struct rig r;
	uint8_t buf[BLOCK];

	rig_init(&r, "QWR4TEST0001", SEED);
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
	qngsim_fault(r.pipe.m, QNGSIM_F_GARBAGE_DELIM, 0, 1);
	assert_int_equal(qng_read(r.q, buf, BLOCK, r.err, sizeof(r.err)), -1);
	assert_true(contains(r.err, "delimiter"));
	rig_free(&r);
}

static void test_qng_status_reply_of_the_wrong_length_fails(void **state)
{
	enum qngsim_fault faults[] = {QNGSIM_F_STATUS_SHORT, QNGSIM_F_STATUS_LONG};
	const char *words[] = {"short", "garbage after the status word"};

	for (size_t i = 0; i < 2; i++) {
		struct rig r;
		uint8_t buf[BLOCK];

		rig_init(&r, "QWR4TEST0001", SEED);
		assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
		qngsim_fault(r.pipe.m, faults[i], 0, 1);
		assert_int_equal(qng_read(r.q, buf, BLOCK, r.err, sizeof(r.err)), -1);
		assert_true(contains(r.err, words[i]));
		rig_free(&r);
	}
}

static void test_qng_recovers_by_full_reset_after_every_fault(void **state)
{
	enum qngsim_fault faults[] = {
	    QNGSIM_F_BAD,	    QNGSIM_F_BAD_FLAG,	   QNGSIM_F_STALL,	QNGSIM_F_UNPLUG,
	    QNGSIM_F_GARBAGE_DELIM, QNGSIM_F_STATUS_SHORT, QNGSIM_F_STATUS_LONG};
	struct rig r;
	uint8_t buf[BLOCK];
	long long last = -1;

	rig_init(&r, "QWR4TEST0001", SEED);
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		long long off;

		assert_int_equal(read_block(&r, buf), BLOCK);
		off = locate(&r, buf, BLOCK);
		assert_true(off > last);
		last = off;
		qngsim_fault(r.pipe.m, faults[i], qngsim_counters(r.pipe.m)->streamed + TAIL + 900,
			     faults[i] == QNGSIM_F_BAD ? 50 : 1);
		assert_int_equal(qng_read(r.q, buf, BLOCK, r.err, sizeof(r.err)), -1);
		if (faults[i] == QNGSIM_F_STALL) {
			/* A device still hung cannot be re-opened... */
			qng_stop(r.q);
			assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), -1);
			qngsim_unstall(r.pipe.m); /* ...until it recovers */
		}
		/* The full reset: close, reopen, initialise, start. */
		assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
		assert_false(qngsim_unplugged(r.pipe.m));
	}
	assert_int_equal(read_block(&r, buf), BLOCK);
	assert_true(locate(&r, buf, BLOCK) > last);
	assert_true(r.pipe.opens >= 8);
	rig_free(&r);
}

static void test_qng_device_left_streaming_is_stopped_before_initialising(void **state)
{
	struct rig r;
	uint8_t buf[BLOCK];
	const uint8_t start = 0x96;

	rig_init(&r, "QWR4TEST0001", SEED);
	qngsim_input(r.pipe.m, &start, 1); /* an earlier session left it streaming */
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
	assert_int_equal(read_block(&r, buf), BLOCK);
	assert_true(locate(&r, buf, BLOCK) >= 0);
	rig_free(&r);
}

static void test_qng_failed_open_is_reported(void **state)
{
	struct rig r;

	rig_init(&r, "QWR4TEST0001", SEED);
	r.pipe.absent = true;
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), -1);
	assert_true(contains(r.err, "no device"));
	r.pipe.absent = false;
	assert_int_equal(qng_start(r.q, r.err, sizeof(r.err)), 0);
	rig_free(&r);
}

static void test_qng_two_instances_are_independent(void **state)
{
	struct rig a, b;
	uint8_t ba[BLOCK], bb[BLOCK];

	rig_init(&a, "QWR4AAAA0001", 1);
	rig_init(&b, "QWR4BBBB0002", 2);
	assert_int_equal(qng_start(a.q, a.err, sizeof(a.err)), 0);
	assert_int_equal(qng_start(b.q, b.err, sizeof(b.err)), 0);
	assert_memory_not_equal(qng_delimiter(a.q), qng_delimiter(b.q), 6);
	assert_int_equal(read_block(&a, ba), BLOCK);
	assert_int_equal(read_block(&b, bb), BLOCK);
	expect_data(&a, ba, BLOCK, 0);
	expect_data(&b, bb, BLOCK, 0);
	/* a fails; b is untouched. */
	qngsim_fault(a.pipe.m, QNGSIM_F_BAD, 0, 10);
	assert_int_equal(qng_read(a.q, ba, BLOCK, a.err, sizeof(a.err)), -1);
	assert_int_equal(read_block(&b, bb), BLOCK);
	expect_data(&b, bb, BLOCK, BLOCK + TAIL);
	assert_int_equal(qngsim_counters(b.pipe.m)->bad, 0);
	rig_free(&a);
	rig_free(&b);
}

/* What a qng_log_fn received. */
struct log_seen {
	unsigned info, debug, streaming, status;
};

static void log_count(void *arg, enum qng_log_level level, const char *msg)
{
	struct log_seen *seen = arg;

	if (level == QNG_LOG_INFO) {
		seen->info++;
	} else {
		seen->debug++;
	}
	seen->streaming += contains(msg, ": streaming (delimiter ");
	seen->status += contains(msg, ": status 0x");
}

static void test_qng_logs_only_through_the_callback_its_caller_set(void **state)
{
	struct rig a, b;
	struct log_seen seen = {0};
	uint8_t buf[BLOCK];

	rig_init(&a, "QWR4AAAA0001", 1);
	rig_init(&b, "QWR4BBBB0002", 2);
	qng_set_log(a.q, log_count, &seen);
	assert_int_equal(qng_start(a.q, a.err, sizeof(a.err)), 0);
	assert_int_equal(seen.info, 1);
	assert_int_equal(seen.streaming, 1);
	assert_int_equal(read_block(&a, buf), BLOCK);
	assert_int_equal(seen.status, 1);
	assert_int_equal(seen.debug, 1);
	/* b has no callback: it logs nothing, and a's callback hears nothing of b. */
	assert_int_equal(qng_start(b.q, b.err, sizeof(b.err)), 0);
	assert_int_equal(read_block(&b, buf), BLOCK);
	assert_int_equal(seen.info + seen.debug, 2);
	/* A callback can be removed. */
	qng_set_log(a.q, NULL, NULL);
	assert_int_equal(read_block(&a, buf), BLOCK);
	assert_int_equal(seen.info + seen.debug, 2);
	rig_free(&a);
	rig_free(&b);
}

/* Each backend frees its own contexts through its ops (ASan proves nothing leaks). */
static void test_qng_library_pipes_free_their_own_contexts(void **state)
{
	void *ftdi = qng_ftdi_new(2);
	void *tty = qng_tty_new("/nonexistent/qng", false);
	char err[256];

	assert_non_null(ftdi);
	assert_non_null(tty);
	assert_non_null(qng_ftdi_ops.free);
	assert_non_null(qng_tty_ops.free);
	/* A context that failed to open, and one never opened. */
	assert_int_equal(qng_tty_ops.open(tty, NULL, err, sizeof(err)), -1);
	qng_tty_ops.free(tty);
	qng_ftdi_ops.free(ftdi);
}

/* ---- The socket backend against a model served by a thread ---- */

struct server {
	struct qngsim *m;
	int lfd;
	volatile bool stop;
};

static void *serve(void *arg)
{
	struct server *s = arg;
	int fd = accept(s->lfd, NULL, NULL);
	uint8_t buf[4096];

	assert_true(fd >= 0);
	while (!s->stop) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long n;

		if (poll(&p, 1, 5) > 0) {
			n = read(fd, buf, sizeof(buf));
			if (n <= 0) {
				break;
			}
			qngsim_input(s->m, buf, (size_t)n);
		}
		n = qngsim_output(s->m, buf, sizeof(buf));
		if (n < 0) {
			break;
		}
		if (n > 0 && write(fd, buf, (size_t)n) != n) {
			break;
		}
	}
	close(fd);
	return NULL;
}

static double seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_qng_socket_backend_detects_a_stall_after_the_timeout(void **state)
{
	struct server s = {.m = qngsim_new("QWR4SOCK0001", 7, true)};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct qng_params p;
	pthread_t th;
	uint8_t buf[BLOCK];
	char err[256];
	double t0;
	void *ctx;
	struct qng *q;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/test_qng.%d.sock", (int)getpid());
	unlink(sa.sun_path);
	s.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(s.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s.lfd, 1), 0);
	assert_int_equal(pthread_create(&th, NULL, serve, &s), 0);

	params(&p);
	p.stream_timeout_ms = 300;
	ctx = qng_tty_new(sa.sun_path, true);
	q = qng_new(&qng_tty_ops, ctx, NULL, &p);
	assert_int_equal(qng_start(q, err, sizeof(err)), 0);
	assert_true(qng_read(q, buf, BLOCK, err, sizeof(err)) > 0);
	qngsim_fault(s.m, QNGSIM_F_STALL, 0, 0);
	t0 = seconds();
	assert_int_equal(qng_read(q, buf, BLOCK, err, sizeof(err)), -1);
	assert_true(seconds() - t0 >= 0.29);
	assert_true(seconds() - t0 < 3.0);
	assert_true(contains(err, "stalled") || contains(err, "300 ms"));
	qng_free(q);
	qng_tty_ops.free(ctx);
	s.stop = true;
	pthread_join(th, NULL);
	close(s.lfd);
	unlink(sa.sun_path);
	qngsim_free(s.m);
}

/* A device unplugged while the driver sends a command (the socket's peer closed): the
 * error says the device went away, as a read would have. */
static void test_qng_socket_backend_says_went_away_when_a_write_finds_it_unplugged(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char err[256];
	uint8_t c = 0x00;
	void *ctx;
	int lfd, afd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/test_qng_unplug.%d.sock", (int)getpid());
	unlink(sa.sun_path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	ctx = qng_tty_new(sa.sun_path, true);
	assert_int_equal(qng_tty_ops.open(ctx, NULL, err, sizeof(err)), 0);
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	close(afd); /* unplugged */
	assert_int_equal(qng_tty_ops.write(ctx, &c, 1), -1);
	assert_non_null(qng_tty_ops.error(ctx));
	assert_true(contains(qng_tty_ops.error(ctx), "went away"));
	qng_tty_ops.close(ctx);
	qng_tty_ops.free(ctx);
	close(lfd);
	unlink(sa.sun_path);
}

/* ---- Pure helpers ---- */

static void test_qng_pick_never_chooses_a_plain_ftdi_adapter(void **state)
{
	struct qng_usb_id adapters[] = {
	    {0x0403, 0x6001, "A50285BI", ""},
	    {0x0403, 0x6001, "", "(cannot open /dev/bus/usb/001/004: Permission denied)"},
	};
	struct qng_usb_id mixed[] = {
	    {0x0403, 0x6001, "A50285BI", ""},
	    {0x0403, 0x6015, "QWR4FAKE0001", ""}, /* not a QNG's VID:PID */
	    {0x0403, 0x6001, "QWR4M004", ""},
	    {0x0403, 0x6014, "QWR7X0001", ""},
	};
	char err[512];

	assert_int_equal(qng_pick_device(adapters, 2, NULL, err, sizeof(err)), -1);
	assert_true(contains(err, "0403:6001 serial A50285BI (not a QNG)"));
	assert_true(contains(err, "Permission denied"));
	/* Asking for the adapter's serial does not make it a QNG. */
	assert_int_equal(qng_pick_device(adapters, 2, "A50285BI", err, sizeof(err)), -1);
	assert_int_equal(qng_pick_device(mixed, 4, NULL, err, sizeof(err)), 2);
	assert_int_equal(qng_pick_device(mixed, 4, "", err, sizeof(err)), 2);
	assert_int_equal(qng_pick_device(mixed, 4, "QWR7X0001", err, sizeof(err)), 3);
	assert_int_equal(qng_pick_device(mixed, 4, "QWR4FAKE0001", err, sizeof(err)), -1);
	assert_int_equal(qng_pick_device(mixed, 4, "QWR4M005", err, sizeof(err)), -1);
	assert_true(contains(err, "no ComScire QNG with serial QWR4M005"));
	assert_int_equal(qng_pick_device(NULL, 0, NULL, err, sizeof(err)), -1);
	assert_true(contains(err, "no FTDI USB device"));
}

static void test_qng_ftdi_status_bytes_are_removed_from_every_packet(void **state)
{
	uint8_t p[200], want[200];
	size_t n = 0;

	/* Three full 64-byte packets and a short one: 2 status bytes each. */
	for (size_t i = 0; i < sizeof(p); i++) {
		p[i] = (uint8_t)i;
		if (i % 64 >= 2) {
			want[n++] = (uint8_t)i;
		}
	}
	assert_int_equal(qng_ftdi_strip_status(p, sizeof(p), 64), n);
	assert_int_equal(n, 200 - 4 * 2);
	assert_memory_equal(p, want, n);
	/* A status-only packet carries nothing. */
	assert_int_equal(qng_ftdi_strip_status(p, 2, 64), 0);
	assert_int_equal(qng_ftdi_strip_status(p, 0, 64), 0);
	/* High-speed chips: 512-byte packets. */
	for (size_t i = 0; i < sizeof(p); i++) {
		p[i] = (uint8_t)i;
	}
	assert_int_equal(qng_ftdi_strip_status(p, 100, 512), 98);
	assert_int_equal(p[0], 2);
}

static void test_qng_generation_comes_from_the_fourth_serial_character(void **state)
{
	assert_int_equal(qng_generation("QWR1A"), 1);
	assert_int_equal(qng_generation("QWR2A"), 2);
	assert_int_equal(qng_generation("QWR3A"), 2);
	assert_int_equal(qng_generation("QWR4M004"), 3);
	assert_int_equal(qng_generation("QWR6A"), 3);
	assert_int_equal(qng_generation("QWR7A"), 4);
	assert_int_equal(qng_generation("QWR8A"), 5);
	assert_int_equal(qng_generation("QWR9A"), -1);
	assert_int_equal(qng_generation("FT4M004"), -1);
	assert_int_equal(qng_generation(NULL), -1);
}

static void test_qng_source_argument_syntax(void **state)
{
	struct qng_conf c;
	char err[256];

	assert_int_equal(qng_conf_parse(NULL, &c, err, sizeof(err)), 0);
	assert_int_equal(c.backend, QNG_BACKEND_FTDI);
	assert_string_equal(c.serial, "");
	assert_int_equal(c.params.check_bytes, 65536);
	assert_int_equal(c.params.stream_timeout_ms, 5000);
	assert_int_equal(c.params.cmd_timeout_ms, 100);
	assert_int_equal(c.params.drain_ms, 100);
	assert_int_equal(c.params.start_tries, 40);

	assert_int_equal(qng_conf_parse("QWR4M004+check=128k;timeout=2000", &c, err, sizeof(err)),
			 0);
	assert_string_equal(c.serial, "QWR4M004");
	assert_int_equal(c.params.check_bytes, 131072);
	assert_int_equal(c.params.stream_timeout_ms, 2000);

	assert_int_equal(qng_conf_parse("sock=/tmp/a.sock;cmdtimeout=50;checkms=0;tries=3", &c, err,
					sizeof(err)),
			 0);
	assert_int_equal(c.backend, QNG_BACKEND_SOCK);
	assert_string_equal(c.path, "/tmp/a.sock");
	assert_int_equal(c.params.cmd_timeout_ms, 50);
	assert_int_equal(c.params.check_ms, 0);
	assert_int_equal(c.params.start_tries, 3);

	assert_int_equal(qng_conf_parse("tty=/dev/ttyUSB0+drain=20", &c, err, sizeof(err)), 0);
	assert_int_equal(c.backend, QNG_BACKEND_TTY);
	assert_int_equal(c.params.cmd_timeout_ms, 500); /* a serial line's default */
	assert_int_equal(c.params.drain_ms, 20);
	assert_int_equal(qng_conf_parse("serial=QWR7A+latency=16", &c, err, sizeof(err)), 0);
	assert_int_equal(c.latency_ms, 16);

	assert_int_equal(qng_conf_parse("A50285BI", &c, err, sizeof(err)), -1);
	assert_true(contains(err, "not a QNG"));
	assert_int_equal(qng_conf_parse("tty=/a;sock=/b", &c, err, sizeof(err)), -1);
	assert_int_equal(qng_conf_parse("QWR4M004;tty=/dev/ttyUSB0", &c, err, sizeof(err)), -1);
	assert_int_equal(qng_conf_parse("check=1", &c, err, sizeof(err)), -1);
	assert_int_equal(qng_conf_parse("bogus=1", &c, err, sizeof(err)), -1);
	assert_true(contains(err, "unknown setting"));
	assert_int_equal(qng_conf_parse("QWR4M004;QWR4M005", &c, err, sizeof(err)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_qng_initialise_learns_the_delimiter_and_clears_the_flag),
	    cmocka_unit_test(test_qng_start_discards_exactly_the_first_256_bytes_of_every_start),
	    cmocka_unit_test(test_qng_each_block_is_released_only_after_a_later_status_check),
	    cmocka_unit_test(test_qng_bad_statistics_fail_the_read_and_withhold_the_block),
	    cmocka_unit_test(test_qng_bad_statistics_with_plausible_data_withhold_the_block),
	    cmocka_unit_test(test_qng_bad_statistics_flag_alone_fails_the_read),
	    cmocka_unit_test(test_qng_stall_fails_after_the_streaming_timeout),
	    cmocka_unit_test(test_qng_unplug_mid_read_fails),
	    cmocka_unit_test(test_qng_disagreeing_delimiters_fail_initialisation),
	    cmocka_unit_test(test_qng_garbage_delimiter_at_a_status_check_fails),
	    cmocka_unit_test(test_qng_status_reply_of_the_wrong_length_fails),
	    cmocka_unit_test(test_qng_recovers_by_full_reset_after_every_fault),
	    cmocka_unit_test(test_qng_device_left_streaming_is_stopped_before_initialising),
	    cmocka_unit_test(test_qng_failed_open_is_reported),
	    cmocka_unit_test(test_qng_two_instances_are_independent),
	    cmocka_unit_test(test_qng_logs_only_through_the_callback_its_caller_set),
	    cmocka_unit_test(test_qng_library_pipes_free_their_own_contexts),
	    cmocka_unit_test(test_qng_socket_backend_detects_a_stall_after_the_timeout),
	    cmocka_unit_test(
		test_qng_socket_backend_says_went_away_when_a_write_finds_it_unplugged),
	    cmocka_unit_test(test_qng_pick_never_chooses_a_plain_ftdi_adapter),
	    cmocka_unit_test(test_qng_ftdi_status_bytes_are_removed_from_every_packet),
	    cmocka_unit_test(test_qng_generation_comes_from_the_fourth_serial_character),
	    cmocka_unit_test(test_qng_source_argument_syntax),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
