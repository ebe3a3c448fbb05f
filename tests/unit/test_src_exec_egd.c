/* Unit tests for the exec: and egd: source drivers, against real processes and a fake
 * upstream on a unix socket driven step by step from the test (no threads): what the
 * command sees (stdin, process group, descriptors), how its end is reported, that closing
 * kills its whole group and leaves no process behind; how the EGD driver parses endpoints,
 * pipelines its requests at once, and returns exactly the bytes the upstream sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/src_egd.c"
#include "../../src/src_exec.c"

#include <sys/stat.h>

#define ERRLEN 256

/* ---------------------------------------------------------------------------------------
 * exec: */

/* Read until the driver fails; returns the bytes read, the message in err. */
static size_t read_to_end(const struct src_driver *d, void *st, uint8_t *buf, size_t cap, char *err)
{
	size_t got = 0;
	long r;

	while ((r = d->read(st, buf + got, cap - got, err, ERRLEN)) > 0) {
		got += (size_t)r;
		assert_true(got < cap);
	}
	assert_int_equal(r, -1);
	buf[got] = '\0';
	return got;
}

static void no_children_left(void)
{
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static void test_exec_output_then_exit_status_is_reported(void **state)
{
	char err[ERRLEN];
	uint8_t buf[256];
	void *st = src_exec_driver.open("printf abc; exit 3", err, ERRLEN);

	assert_non_null(st);
	assert_int_equal(read_to_end(&src_exec_driver, st, buf, sizeof(buf), err), 3);
	assert_memory_equal(buf, "abc", 3);
	assert_non_null(strstr(err, "exited with status 3 after 3 bytes"));
	src_exec_driver.close(st);
	no_children_left();
}

static void test_exec_death_by_signal_is_reported(void **state)
{
	char err[ERRLEN];
	uint8_t buf[64];
	void *st = src_exec_driver.open("kill -9 $$", err, ERRLEN);

	assert_non_null(st);
	assert_int_equal(read_to_end(&src_exec_driver, st, buf, sizeof(buf), err), 0);
	assert_non_null(strstr(err, "killed by signal 9 SIGKILL"));
	src_exec_driver.close(st);
	no_children_left();
}

static void test_exec_missing_command_is_reported_as_such(void **state)
{
	char err[ERRLEN];
	uint8_t buf[64];
	void *st = src_exec_driver.open("/nonexistent/rng-tool 2>/dev/null", err, ERRLEN);

	assert_non_null(st);
	read_to_end(&src_exec_driver, st, buf, sizeof(buf), err);
	assert_non_null(strstr(err, "status 127 (the shell's code for a command not found)"));
	src_exec_driver.close(st);
}

/* stdin is /dev/null, the shell leads its own process group, and it holds fds 0-2 only
 * (not even a descriptor the daemon left inheritable). */
static void test_exec_command_gets_dev_null_its_own_group_and_no_other_descriptor(void **state)
{
	char err[ERRLEN], want[128];
	uint8_t buf[512];
	int leak = open("/dev/null", O_RDONLY); /* without O_CLOEXEC on purpose */
	void *st = src_exec_driver.open(
	    "read -r pid comm st ppid pgrp rest < /proc/$$/stat; echo $$ $pgrp; "
	    "readlink /proc/$$/fd/0; ls /proc/$$/fd",
	    err, ERRLEN);
	struct exec_src *s = st;

	assert_true(leak >= 0);
	assert_non_null(st);
	read_to_end(&src_exec_driver, st, buf, sizeof(buf), err);
	snprintf(want, sizeof(want), "%d %d\n/dev/null\n0\n1\n2\n", (int)s->pid, (int)s->pid);
	assert_string_equal((char *)buf, want);
	src_exec_driver.close(st);
	close(leak);
}

static bool gone(pid_t pid)
{
	return kill(pid, 0) < 0 && errno == ESRCH;
}

/* close() ends the whole group, SIGKILL for what ignores SIGTERM, and reaps everything
 * before it returns. */
static void test_exec_close_kills_the_group_even_when_it_ignores_sigterm(void **state)
{
	char err[ERRLEN];
	uint8_t buf[128];
	size_t got = 0;
	long r;
	int sh, bg;
	long long t0;
	void *st;

	exec_kill_timeout_ms = 300;
	st = src_exec_driver.open("trap '' TERM; (exec sleep 100) & echo $$ $!; "
				  "while :; do sleep 1; done",
				  err, ERRLEN);
	assert_non_null(st);
	while (memchr(buf, '\n', got) == NULL) {
		r = src_exec_driver.read(st, buf + got, sizeof(buf) - 1 - got, err, ERRLEN);
		assert_true(r > 0);
		got += (size_t)r;
	}
	buf[got] = '\0';
	assert_int_equal(sscanf((char *)buf, "%d %d", &sh, &bg), 2);
	assert_false(gone(sh));
	assert_false(gone(bg));
	t0 = clock_ms();
	src_exec_driver.close(st);
	assert_true(clock_ms() - t0 >= 300);
	assert_true(clock_ms() - t0 < 3000);
	assert_true(gone(sh));
	assert_true(gone(bg));
	no_children_left();
	exec_kill_timeout_ms = 5000;
}

static void test_exec_output_closed_by_a_running_command_fails_the_read(void **state)
{
	char err[ERRLEN];
	uint8_t buf[64];
	void *st = src_exec_driver.open("exec >&-; sleep 30", err, ERRLEN);

	assert_non_null(st);
	read_to_end(&src_exec_driver, st, buf, sizeof(buf), err);
	assert_non_null(strstr(err, "closed its output after 0 bytes but did not exit"));
	src_exec_driver.close(st);
	no_children_left();
}

/* A command outlives neither its source nor the process that opened it. */
static void test_exec_command_dies_with_the_process_that_started_it(void **state)
{
	int p[2];
	pid_t helper, cmd = 0;
	long long t0;

	assert_int_equal(pipe(p), 0);
	helper = fork();
	if (helper == 0) {
		char err[ERRLEN];
		struct exec_src *s = src_exec_driver.open("exec sleep 100", err, ERRLEN);

		if (s == NULL || write(p[1], &s->pid, sizeof(s->pid)) != sizeof(s->pid)) {
			_exit(1);
		}
		_exit(0); /* as entropyd does: no close() */
	}
	close(p[1]);
	assert_int_equal(read(p[0], &cmd, sizeof(cmd)), sizeof(cmd));
	close(p[0]);
	assert_int_equal(waitpid(helper, NULL, 0), helper);
	for (t0 = clock_ms(); !gone(cmd) && clock_ms() - t0 < 3000;) {
		usleep(10000);
	}
	assert_true(gone(cmd));
}

/* ---------------------------------------------------------------------------------------
 * egd: */

static void test_egd_endpoint_forms_are_parsed(void **state)
{
	struct egd_where w;
	char err[ERRLEN];

	assert_int_equal(upstream_parse("tcp:127.0.0.1:8888", &w, err, ERRLEN), 0);
	assert_false(w.unix_path);
	assert_string_equal(w.host, "127.0.0.1");
	assert_string_equal(w.port, "8888");
	assert_int_equal(upstream_parse("tcp:[::1]:1", &w, err, ERRLEN), 0);
	assert_string_equal(w.host, "::1");
	assert_string_equal(w.port, "1");
	assert_int_equal(upstream_parse("tcp:rng-host:65535", &w, err, ERRLEN), 0);
	assert_string_equal(w.host, "rng-host");
	assert_int_equal(upstream_parse("unix:/run/entropyd/egd.sock", &w, err, ERRLEN), 0);
	assert_true(w.unix_path);
	assert_string_equal(w.path, "/run/entropyd/egd.sock");
}

static void test_egd_bad_endpoints_are_refused_with_a_message(void **state)
{
	static const char *const bad[] = {
	    "tcp:rng-host", "tcp:::1:80", "tcp:[::1]80", "tcp:[::1:80", "tcp:h:0", "tcp:h:65536",
	    "tcp:h:8x",	    "tcp::80",	  "tcp:h:",	 "udp:h:1",	"unix:",   "rng-host:1",
	};
	char err[ERRLEN], longpath[200];
	struct egd_where w;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(upstream_parse(bad[i], &w, err, ERRLEN), -1);
		assert_true(strncmp(err, "egd: ", 5) == 0);
	}
	memset(longpath, 'a', sizeof(longpath));
	memcpy(longpath, "unix:/", 6);
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(upstream_parse(longpath, &w, err, ERRLEN), -1);
	assert_null(src_egd_driver.open("tcp:rng-host", err, ERRLEN));
}

struct upstream {
	char dir[40], path[80], arg[90];
	int lfd, fd;
};

static void upstream_listen(struct upstream *u)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	snprintf(u->dir, sizeof(u->dir), "/tmp/test_src_egd.XXXXXX");
	assert_non_null(mkdtemp(u->dir));
	snprintf(u->path, sizeof(u->path), "%s/up.sock", u->dir);
	snprintf(u->arg, sizeof(u->arg), "unix:%s", u->path);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", u->path);
	u->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(u->lfd >= 0);
	assert_int_equal(bind(u->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(u->lfd, 4), 0);
	u->fd = -1;
}

static void upstream_accept(struct upstream *u)
{
	struct timeval tv = {.tv_sec = 2};

	u->fd = accept4(u->lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(u->fd >= 0);
	setsockopt(u->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static void upstream_free(struct upstream *u)
{
	if (u->fd >= 0) {
		close(u->fd);
	}
	close(u->lfd);
	unlink(u->path);
	rmdir(u->dir);
}

/* The requests that reached the upstream so far (each must be 02 FF); waits up to 2 s for
 * at least `min` of them. */
static unsigned upstream_requests(struct upstream *u, unsigned min)
{
	uint8_t b[512];
	unsigned n = 0;
	ssize_t r;

	for (;;) {
		r = recv(u->fd, b, sizeof(b), n >= min ? MSG_DONTWAIT : 0);
		if (r <= 0) {
			break;
		}
		assert_int_equal(r % 2, 0);
		for (ssize_t i = 0; i < r; i += 2) {
			assert_int_equal(b[i], 0x02);
			assert_int_equal(b[i + 1], 0xff);
		}
		n += (unsigned)r / 2;
	}
	assert_true(n >= min);
	return n;
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		b[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 8));
	}
}

static void test_egd_open_sends_its_pipelined_requests_at_once(void **state)
{
	struct upstream u;
	char err[ERRLEN];
	void *st;

	upstream_listen(&u);
	st = src_egd_driver.open(u.arg, err, ERRLEN);
	assert_non_null(st);
	upstream_accept(&u);
	/* All of them, before the upstream sent anything: no primer is ever needed. */
	assert_int_equal(upstream_requests(&u, EGD_DEPTH), EGD_DEPTH);
	src_egd_driver.close(st);
	upstream_free(&u);
}

/* Partial replies come back as they are, never more than was sent; every request is
 * counted: owed + received is always 255 times the requests sent. */
static void test_egd_read_returns_exactly_what_arrived_and_counts_owed_bytes(void **state)
{
	static uint8_t sent[64 * 1024], got[64 * 1024];
	struct upstream u;
	char err[ERRLEN];
	struct egd_src *s;
	unsigned reqs;
	size_t nsent = 0, ngot = 0;
	long r;

	upstream_listen(&u);
	s = src_egd_driver.open(u.arg, err, ERRLEN);
	assert_non_null(s);
	upstream_accept(&u);
	reqs = upstream_requests(&u, EGD_DEPTH);
	fill(sent, sizeof(sent), 1);

	/* 7 bytes: read() returns 7, 4073 still owed, no new request yet. */
	assert_int_equal(send(u.fd, sent, 7, 0), 7);
	nsent = 7;
	r = src_egd_driver.read(s, got, sizeof(got), err, ERRLEN);
	assert_int_equal(r, 7);
	ngot = 7;
	assert_memory_equal(got, sent, 7);
	assert_int_equal(s->owed, EGD_DEPTH * EGD_REQ - 7);

	/* Serve requests in pieces of odd sizes until 40000 bytes went through. */
	while (nsent < 40000) {
		size_t piece = 1 + (nsent * 7919u) % 700u;
		unsigned long long may = 255ull * reqs - nsent;

		if (piece > may) {
			piece = (size_t)may;
		}
		if (piece > 0) {
			assert_int_equal(send(u.fd, sent + nsent, piece, 0), (ssize_t)piece);
			nsent += piece;
		}
		while (ngot < nsent) {
			r = src_egd_driver.read(s, got + ngot, sizeof(got) - ngot, err, ERRLEN);
			assert_true(r > 0);
			ngot += (size_t)r;
			assert_true(ngot <= nsent);
		}
		reqs += upstream_requests(&u, 0);
		assert_int_equal(s->owed + s->received, 255ull * reqs);
	}
	assert_memory_equal(got, sent, ngot);
	src_egd_driver.close(s);
	upstream_free(&u);
}

/* Unrequested bytes (an upstream's primer, say) are still bytes it sent: delivered, and
 * owed never goes below 0. */
static void test_egd_unrequested_bytes_are_delivered_and_owed_stays_at_zero(void **state)
{
	static uint8_t sent[10000], got[10000];
	struct upstream u;
	char err[ERRLEN];
	struct egd_src *s;
	size_t ngot = 0;
	long r;

	upstream_listen(&u);
	s = src_egd_driver.open(u.arg, err, ERRLEN);
	assert_non_null(s);
	upstream_accept(&u);
	fill(sent, sizeof(sent), 2);
	assert_int_equal(send(u.fd, sent, sizeof(sent), 0), (ssize_t)sizeof(sent));
	while (ngot < sizeof(sent)) {
		r = src_egd_driver.read(s, got + ngot, sizeof(got) - ngot, err, ERRLEN);
		assert_true(r > 0);
		ngot += (size_t)r;
		assert_true(s->owed <= EGD_DEPTH * EGD_REQ);
	}
	assert_memory_equal(got, sent, sizeof(sent));
	assert_int_equal(s->received, sizeof(sent));
	src_egd_driver.close(s);
	upstream_free(&u);
}

static void test_egd_closed_connection_fails_the_read(void **state)
{
	struct upstream u;
	char err[ERRLEN];
	uint8_t buf[64];
	void *st;

	upstream_listen(&u);
	st = src_egd_driver.open(u.arg, err, ERRLEN);
	assert_non_null(st);
	upstream_accept(&u);
	upstream_requests(&u, EGD_DEPTH); /* (unread data would make the close a reset) */
	assert_int_equal(send(u.fd, "abc", 3, 0), 3);
	close(u.fd);
	u.fd = -1;
	assert_int_equal(src_egd_driver.read(st, buf, sizeof(buf), err, ERRLEN), 3);
	assert_int_equal(src_egd_driver.read(st, buf, sizeof(buf), err, ERRLEN), -1);
	assert_non_null(strstr(err, "closed the connection after 3 bytes (4077 owed)"));
	src_egd_driver.close(st);
	upstream_free(&u);
}

static void test_egd_silent_upstream_is_a_stall(void **state)
{
	struct upstream u;
	char err[ERRLEN];
	uint8_t buf[64];
	long long t0;
	void *st;

	egd_stall_ms = 300;
	upstream_listen(&u);
	st = src_egd_driver.open(u.arg, err, ERRLEN);
	assert_non_null(st);
	upstream_accept(&u);
	t0 = clock_ms();
	assert_int_equal(src_egd_driver.read(st, buf, sizeof(buf), err, ERRLEN), -1);
	assert_true(clock_ms() - t0 >= 300);
	assert_non_null(strstr(err, "while 4080 bytes were owed"));
	src_egd_driver.close(st);
	upstream_free(&u);
	egd_stall_ms = 30000;
}

static void test_egd_unreachable_upstream_fails_open_with_the_reason(void **state)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	char err[ERRLEN], arg[64];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_null(src_egd_driver.open("unix:/nonexistent/egd.sock", err, ERRLEN));
	assert_string_equal(err,
			    "connect to unix:/nonexistent/egd.sock: No such file or directory");
	/* A port that was free a moment ago (bound, never listening). */
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	snprintf(arg, sizeof(arg), "tcp:127.0.0.1:%d", ntohs(sin.sin_port));
	assert_null(src_egd_driver.open(arg, err, ERRLEN));
	assert_non_null(strstr(err, "Connection refused"));
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_exec_output_then_exit_status_is_reported),
	    cmocka_unit_test(test_exec_death_by_signal_is_reported),
	    cmocka_unit_test(test_exec_missing_command_is_reported_as_such),
	    cmocka_unit_test(test_exec_command_gets_dev_null_its_own_group_and_no_other_descriptor),
	    cmocka_unit_test(test_exec_close_kills_the_group_even_when_it_ignores_sigterm),
	    cmocka_unit_test(test_exec_output_closed_by_a_running_command_fails_the_read),
	    cmocka_unit_test(test_exec_command_dies_with_the_process_that_started_it),
	    cmocka_unit_test(test_egd_endpoint_forms_are_parsed),
	    cmocka_unit_test(test_egd_bad_endpoints_are_refused_with_a_message),
	    cmocka_unit_test(test_egd_open_sends_its_pipelined_requests_at_once),
	    cmocka_unit_test(test_egd_read_returns_exactly_what_arrived_and_counts_owed_bytes),
	    cmocka_unit_test(test_egd_unrequested_bytes_are_delivered_and_owed_stays_at_zero),
	    cmocka_unit_test(test_egd_closed_connection_fails_the_read),
	    cmocka_unit_test(test_egd_silent_upstream_is_a_stall),
	    cmocka_unit_test(test_egd_unreachable_upstream_fails_open_with_the_reason),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
