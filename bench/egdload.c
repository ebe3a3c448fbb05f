/* egdload: a load generator for bench_egd.py (EGD and raw byte streams over TCP).
 *
 * One thread, epoll, non-blocking sockets, so that the client costs little CPU next to
 * the server being measured. Prints one line of key=value results.
 *
 *   egdload tput    HOST PORT CONNS DEPTH SIZE SECS  EGD: DEPTH `02 SIZE` in flight per conn
 *   egdload lat     HOST PORT CONNS SIZE SECS        EGD: one `02 SIZE` in flight per conn;
 *                                                    latency = send -> SIZE-th byte
 *   egdload raw     HOST PORT CONNS SECS             raw stream: read all, count bytes
 *   egdload rawlat  HOST PORT CONNS SIZE SECS        raw stream: connect -> SIZE-th byte,
 *                                                    then reset and reconnect
 *
 * The first WARMUP seconds are not counted. Build: gcc -O2 -o egdload egdload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 0.3
#define BUFSZ (256 * 1024)
#define MAXDEPTH 1024 /* tput: requests in flight per connection at most */

struct conn {
	int fd;
	long owed;      /* tput: bytes requested and not yet arrived */
	long seen;      /* tput: bytes arrived (SIOCINQ) and not yet received */
	long got;       /* lat/rawlat: bytes of the current sample */
	double t0;      /* lat/rawlat: when the current sample started */
};

static struct sockaddr_in addr;
static int ep;
static unsigned char buf[BUFSZ];
static double *lats;
static size_t nlats, caplats;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "egdload: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void add_lat(double v)
{
	if (nlats == caplats) {
		caplats = caplats ? 2 * caplats : 65536;
		lats = realloc(lats, caplats * sizeof *lats);
		if (!lats) {
			die("realloc");
		}
	}
	lats[nlats++] = v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Connect; blocking unless nonblock (then the connect may still be in progress). */
static int dial(int nonblock)
{
	int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
	int one = 1;
	if (fd < 0) {
		die("socket");
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
		die("connect");
	}
	return fd;
}

static void watch(struct conn *c, uint32_t events, int op)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };
	if (epoll_ctl(ep, op, c->fd, &ev) < 0) {
		die("epoll_ctl");
	}
}

static void send_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				continue; /* requests are tiny; the buffer drains quickly */
			}
			die("send");
		}
		p += w;
		n -= (size_t)w;
	}
}

/* tput: n more answer bytes arrived on c; ask again for every request fully answered, in
 * one send, so that DEPTH stay in flight. */
static void refill(struct conn *c, long n, int depth, int size, const unsigned char *reqs)
{
	int more = 0;

	c->owed -= n;
	while (c->owed <= (long)(depth - 1) * size) {
		c->owed += size;
		more++;
	}
	if (more) {
		send_all(c->fd, reqs, 2 * (size_t)more);
	}
}

static void hard_close(int fd)
{
	struct linger lg = { 1, 0 }; /* reset: no TIME_WAIT pile-up over many samples */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: see the comment at the top of egdload.c\n");
		return 2;
	}
	const char *mode = argv[1];
	int tput = !strcmp(mode, "tput"), lat = !strcmp(mode, "lat");
	int raw = !strcmp(mode, "raw"), rawlat = !strcmp(mode, "rawlat");
	int conns = atoi(argv[4]);
	int depth = tput ? atoi(argv[5]) : 1;
	int size = tput ? atoi(argv[6]) : (lat || rawlat) ? atoi(argv[5]) : 0;
	double secs = atof(argv[argc - 1]);
	if (!(tput || lat || raw || rawlat) || conns < 1 || (tput && argc != 8) ||
	    ((lat || rawlat) && argc != 7) || (raw && argc != 6) || size < 0 || size > 255 ||
	    depth < 1 || depth > MAXDEPTH) {
		fprintf(stderr, "egdload: bad arguments\n");
		return 2;
	}
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)atoi(argv[3]));
	if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
		fprintf(stderr, "egdload: bad IPv4 address\n");
		return 2;
	}
	ep = epoll_create1(0);
	if (ep < 0) {
		die("epoll_create1");
	}

	unsigned char reqs[2 * MAXDEPTH];
	for (int i = 0; i < MAXDEPTH; i++) {
		reqs[2 * i] = 0x02;
		reqs[2 * i + 1] = (unsigned char)size;
	}
	struct conn *cs = calloc((size_t)conns, sizeof *cs);
	double start = now();
	for (int i = 0; i < conns; i++) {
		struct conn *c = &cs[i];
		c->fd = dial(rawlat);
		c->t0 = now();
		if (tput) {
			/* The first requests go out at once: strict EGD, no primer. */
			send_all(c->fd, reqs, 2 * (size_t)depth);
			c->owed = (long)depth * size;
		} else if (lat) {
			send_all(c->fd, reqs, 2);
		}
		if (!rawlat && fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0) {
			die("fcntl");
		}
		watch(c, EPOLLIN, EPOLL_CTL_ADD);
	}

	start = now(); /* connecting many clients to a forking server takes a while */
	double counting_from = start + WARMUP, end = counting_from + secs;
	long long bytes = 0;
	struct rusage ru0, ru1;
	int counting = 0;
	struct epoll_event evs[256];
	for (;;) {
		double t = now();
		if (!counting && t >= counting_from) {
			counting = 1;
			bytes = 0;
			nlats = 0;
			getrusage(RUSAGE_SELF, &ru0);
			counting_from = t;
		}
		if (t >= end) {
			break;
		}
		int n = epoll_wait(ep, evs, 256, 50);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			die("epoll_wait");
		}
		for (int k = 0; k < n; k++) {
			struct conn *c = evs[k].data.ptr;
			int queued = 0;
			if (tput && ioctl(c->fd, SIOCINQ, &queued) == 0 && queued > c->seen) {
				/* Ask for more before copying these out: the server
				 * works on the next answers while we read. */
				refill(c, queued - c->seen, depth, size, reqs);
				c->seen = queued;
			}
			ssize_t r = recv(c->fd, buf, rawlat || lat ? (size_t)(size - c->got) : BUFSZ,
					 0);
			if (r < 0) {
				if (errno == EAGAIN || errno == EINTR || errno == EINPROGRESS) {
					continue;
				}
				die("recv");
			}
			if (r == 0) {
				fprintf(stderr, "egdload: the server closed a connection\n");
				return 1;
			}
			bytes += r;
			if (tput) {
				long fresh = r > c->seen ? r - c->seen : 0; /* arrived after SIOCINQ */
				c->seen = r > c->seen ? 0 : c->seen - r;
				if (fresh) {
					refill(c, fresh, depth, size, reqs);
				}
			} else if (lat || rawlat) {
				c->got += r;
				if (c->got == size) {
					double t1 = now();
					if (counting) {
						add_lat(t1 - c->t0);
					}
					c->got = 0;
					if (lat) {
						c->t0 = now();
						send_all(c->fd, reqs, 2);
					} else {
						epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
						hard_close(c->fd);
						c->t0 = now();
						c->fd = dial(1);
						watch(c, EPOLLIN, EPOLL_CTL_ADD);
					}
				}
			}
		}
	}
	double elapsed = now() - counting_from;
	getrusage(RUSAGE_SELF, &ru1);
	double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
		     (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
		     (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		     (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	printf("mode=%s conns=%d depth=%d size=%d secs=%.3f bytes=%lld cpu=%.3f", mode, conns,
	       depth, size, elapsed, bytes, cpu);
	if (lat || rawlat) {
		qsort(lats, nlats, sizeof *lats, cmp_double);
		double p50 = nlats ? lats[nlats / 2] : 0, p99 = nlats ? lats[nlats * 99 / 100] : 0;
		printf(" samples=%zu p50_us=%.1f p99_us=%.1f", nlats, p50 * 1e6, p99 * 1e6);
	}
	printf("\n");
	for (int i = 0; i < conns; i++) {
		hard_close(cs[i].fd);
	}
	return 0;
}
