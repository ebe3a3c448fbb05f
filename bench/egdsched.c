/* egdsched: the load generator of bench_scale.py: many EGD connections, each asking for
 * 255 bytes at a time (`02 ff`), in one of two modes. One thread, epoll, non-blocking
 * sockets. Prints one line of key=value results. Built by meson (not run in tests).
 *
 * HOST PORT is a TCP address, or `unix PATH` a unix socket's.
 *
 *   egdsched open   HOST PORT CONNS RATE SECS   open loop: each connection sends one
 *       request RATE times a second on a fixed schedule (the connections staggered evenly),
 *       whether or not earlier answers came; latency runs from a request's scheduled send
 *       time to the last byte of its answer, so queueing cannot hide
 *   egdsched closed HOST PORT CONNS DEPTH SECS  closed loop: each connection keeps DEPTH
 *       requests in flight; requests answered per second at saturation
 *
 * The first WARMUP_S seconds are not counted; in open loop, answers to requests scheduled
 * in the window are awaited up to DRAIN_S after it (those still missing are reported). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define WARMUP_S 0.5
#define DRAIN_S 2.0
#define REQ_BYTES 255
#define RING 256	 /* open loop: requests one connection may have unanswered */
#define HIST_US 1000000u /* latency histogram: 1 us bins up to 1 s, then one overflow bin */

struct conn {
	int fd;
	size_t partial;	    /* bytes of the oldest unanswered request received so far */
	double sched[RING]; /* open loop: scheduled send times, oldest first */
	unsigned head, count;
};

static struct conn *conns;
static int epfd;
static uint32_t *hist;
static uint64_t nlat, done_in_window, missing, dropped;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "egdsched: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* HOST PORT: a TCP address; or "unix" and the socket's path. */
static void connect_all(const char *host, const char *port, unsigned n)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
	struct sockaddr_un su = {.sun_family = AF_UNIX};
	bool unix_path = strcmp(host, "unix") == 0;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (unix_path && strlen(port) >= sizeof(su.sun_path)) {
		fprintf(stderr, "egdsched: unix socket path too long: %s\n", port);
		exit(2);
	}
	strncpy(su.sun_path, port, sizeof(su.sun_path) - 1);
	if (!unix_path && inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "egdsched: bad IPv4 address %s\n", host);
		exit(2);
	}
	conns = calloc(n, sizeof(*conns));
	epfd = epoll_create1(0);
	if (conns == NULL || epfd < 0) {
		die("setup");
	}
	for (unsigned i = 0; i < n; i++) {
		int one = 1, fd = socket(unix_path ? AF_UNIX : AF_INET, SOCK_STREAM, 0);
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
		int rc = fd < 0	     ? -1
			 : unix_path ? connect(fd, (struct sockaddr *)&su, sizeof(su))
				     : connect(fd, (struct sockaddr *)&sa, sizeof(sa));

		if (rc < 0) {
			die("connect");
		}
		if (!unix_path) {
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			die("epoll_ctl");
		}
		conns[i].fd = fd;
	}
}

static void send_reqs(struct conn *c, unsigned k)
{
	static uint8_t req[2 * 64];

	if (req[0] == 0) {
		for (unsigned i = 0; i < sizeof(req); i += 2) {
			req[i] = 0x02;
			req[i + 1] = 0xff;
		}
	}

	while (k > 0) {
		unsigned m = k < 64 ? k : 64;

		if (send(c->fd, req, 2 * m, MSG_NOSIGNAL) != (ssize_t)(2 * m)) {
			die("send (a 2-byte request should never block here)");
		}
		k -= m;
	}
}

/* Read what c has; returns how many requests it completed; open loop: records their
 * latency if scheduled in [t0, t1). */
static unsigned on_readable(struct conn *c, int open, double t0, double t1)
{
	static uint8_t buf[1 << 16];
	unsigned completed = 0;
	ssize_t r;

	while ((r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		size_t n = (size_t)r;
		double t = now_s();

		while (n > 0) {
			size_t take = REQ_BYTES - c->partial < n ? REQ_BYTES - c->partial : n;

			c->partial += take;
			n -= take;
			if (c->partial < REQ_BYTES) {
				break;
			}
			c->partial = 0;
			completed++;
			if (open && c->count > 0) {
				double s = c->sched[c->head];

				c->head = (c->head + 1) % RING;
				c->count--;
				if (s >= t0 && s < t1) {
					double us = (t - s) * 1e6;

					hist[us < HIST_US ? (unsigned)us : HIST_US]++;
					nlat++;
				}
			}
		}
		if ((size_t)r < sizeof(buf)) {
			break;
		}
	}
	if (r == 0 || (r < 0 && errno != EAGAIN)) {
		die("recv (entropyd closed a connection)");
	}
	return completed;
}

static double pct(double p)
{
	uint64_t want = (uint64_t)(p * (double)nlat), seen = 0;

	for (unsigned i = 0; i <= HIST_US; i++) {
		seen += hist[i];
		if (seen > want) {
			return i;
		}
	}
	return HIST_US;
}

static void wait_events(double timeout_s, int open, double t0, double t1, double w0, double w1)
{
	struct epoll_event evs[512];
	struct timespec ts = {.tv_sec = (time_t)timeout_s,
			      .tv_nsec = (long)((timeout_s - (double)(time_t)timeout_s) * 1e9)};
	int n = epoll_pwait2(epfd, evs, 512, &ts, NULL);

	if (n < 0 && errno != EINTR) {
		die("epoll_pwait2");
	}
	for (int i = 0; i < n; i++) {
		struct conn *c = &conns[evs[i].data.u32];
		unsigned k = on_readable(c, open, t0, t1);
		double t = now_s();

		if (!open && k > 0) {
			if (t >= w0 && t < w1) {
				done_in_window += k;
			}
			send_reqs(c, k); /* keep depth in flight */
		}
	}
}

static void run_open(unsigned n, double rate, double secs)
{
	double start = now_s() + 0.05, t0 = start + WARMUP_S, t1 = t0 + secs;
	double step = 1.0 / (rate * n), end;
	uint64_t j = 0, sent = 0;

	while (now_s() < t1) {
		double t = now_s(), next;

		for (;;) {
			double s = start + (double)j * step;
			struct conn *c = &conns[j % n];

			if (s > t) {
				next = s;
				break;
			}
			if (c->count == RING) {
				dropped++; /* the server is hopelessly behind: not sent, counted */
			} else {
				c->sched[(c->head + c->count) % RING] = s;
				c->count++;
				send_reqs(c, 1);
				sent += s >= t0 && s < t1;
			}
			j++;
		}
		next -= now_s(); /* once: a second reading may be later still */
		wait_events(next > 0 ? next : 0, 1, t0, t1, 0, 0);
	}
	end = now_s() + DRAIN_S;
	while (now_s() < end && nlat < sent) {
		wait_events(0.01, 1, t0, t1, 0, 0);
	}
	missing = sent - nlat;
	printf("mode=open conns=%u rate_each=%.0f secs=%.1f sent=%llu answered=%llu "
	       "missing=%llu dropped=%llu reqps=%.0f p50_us=%.0f p99_us=%.0f p999_us=%.0f "
	       "max_us=%.0f\n",
	       n, rate, secs, (unsigned long long)sent, (unsigned long long)nlat,
	       (unsigned long long)missing, (unsigned long long)dropped, (double)nlat / secs,
	       pct(0.50), pct(0.99), pct(0.999), pct(1.0 - 1e-12));
}

static void run_closed(unsigned n, unsigned depth, double secs)
{
	double w0 = now_s() + WARMUP_S, w1 = w0 + secs;

	for (unsigned i = 0; i < n; i++) {
		send_reqs(&conns[i], depth);
	}
	while (now_s() < w1) {
		wait_events(0.01, 0, 0, 0, w0, w1);
	}
	printf("mode=closed conns=%u depth=%u secs=%.1f answered=%llu reqps=%.0f\n", n, depth, secs,
	       (unsigned long long)done_in_window, (double)done_in_window / secs);
}

int main(int argc, char **argv)
{
	if (argc != 7 || (strcmp(argv[1], "open") != 0 && strcmp(argv[1], "closed") != 0)) {
		fprintf(stderr, "usage: egdsched open HOST PORT CONNS RATE SECS\n"
				"       egdsched closed HOST PORT CONNS DEPTH SECS\n");
		return 2;
	}
	unsigned n = (unsigned)atoi(argv[4]);
	double arg = atof(argv[5]), secs = atof(argv[6]);

	hist = calloc(HIST_US + 1, sizeof(*hist));
	if (hist == NULL || n == 0 || arg <= 0 || secs <= 0) {
		fprintf(stderr, "egdsched: bad arguments\n");
		return 2;
	}
	prctl(PR_SET_TIMERSLACK, 1UL);			   /* wake on schedule, not 50 us late */
	alarm((unsigned)(secs + WARMUP_S + DRAIN_S) + 30); /* never hang a bench run */
	connect_all(argv[2], argv[3], n);
	if (strcmp(argv[1], "open") == 0) {
		run_open(n, arg, secs);
	} else {
		run_closed(n, (unsigned)arg, secs);
	}
	fflush(stdout);
	return 0;
}
