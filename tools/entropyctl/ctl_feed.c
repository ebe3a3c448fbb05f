/* ctl_feed: `entropyctl feed-kernel`: feed the host's own kernel from an entropyd, as rngd
 * and ekeyd-egd-linux do. Bytes come through the control socket (without --from: a
 * {"cmd":"get"} per round, get.c's client) or with --from over EGD (blocking 02 requests,
 * through the daemon's own egd: source driver, so TLS and reconnect-free dialing are the
 * daemon's code) and go into the kernel with ioctl(RNDADDENTROPY), credited at h bits per
 * byte, never more.
 *
 * When to add: a round adds a pool's worth (poolsize bits of credit, ceil(poolsize/h)
 * bytes) at start, whenever poll() on /dev/random reports POLLOUT (the kernel asks: before
 * its CRNG is seeded, and on kernels before 5.18 whenever entropy_avail falls below
 * write_wakeup_threshold), and every --interval seconds otherwise, because kernels since
 * 5.18 keep entropy_avail at the pool size and never ask once seeded.
 *
 * The default credit: bytes from a plain tcp: upstream can be read and forged by anyone on
 * the path, so they are mixed in uncredited (h=0) unless --h says otherwise; from the
 * control socket (local, and only root or the entropyd group may use it), a unix socket or
 * over mutual TLS they are credited at 4 bits per byte, entropyd's own default
 * assumption for a source (raw mode serves source bytes unchanged: a byte holds only the
 * min-entropy its source was assessed at). Pass --h with the h= of the server's sources
 * (`entropyctl test` measures it); --h 8 only for a drbg-mode server or h=8 sources. */
#include "ctl.h"

#include "conf.h"
#include "conf_opts.h"
#include "src_driver.h"
#include "src_wake.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define FEED_DEFAULT_H 4.0
#define FEED_DEFAULT_INTERVAL_MS 60000L
#define FEED_MIN_GAP_MS 100
#define FEED_MAX_ROUND 4096

struct feed_opts {
	const char *from; /* an EGD endpoint, or NULL: the control socket */
	double h;
	bool h_given, once;
	long bytes; /* stop after this many bytes; 0 = run until killed */
	long interval_ms;
};

static volatile sig_atomic_t feed_stop;

static void on_term(int sig)
{
	feed_stop = 1;
	/* Wake the egd driver's read, which retries EINTR unless src_stopping() says so. */
	(void)raise(SIGUSR2);
}

static int usage(void)
{
	fprintf(stderr, "usage: entropyctl [--socket CONTROL] feed-kernel [--from "
			"tcp:HOST:PORT[,tls=DIR] | unix:PATH] [--h BITS] [--interval SECONDS] "
			"[--once | --bytes N]\n");
	return 2;
}

static int parse_args(int argc, char **argv, struct feed_opts *o)
{
	*o = (struct feed_opts){.interval_ms = FEED_DEFAULT_INTERVAL_MS};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end = NULL;

		if (strcmp(a, "--once") == 0) {
			o->once = true;
			continue;
		}
		if (v == NULL) {
			return usage();
		}
		i++;
		if (strcmp(a, "--from") == 0) {
			o->from = v;
		} else if (strcmp(a, "--h") == 0) {
			o->h = strtod(v, &end);
			o->h_given = true;
			if (end == v || *end != '\0' || !(o->h >= 0 && o->h <= 8)) {
				fprintf(stderr, "entropyctl feed-kernel: --h %s: not in 0..8\n", v);
				return 2;
			}
		} else if (strcmp(a, "--bytes") == 0) {
			if (conf_parse_long(v, 1, 1L << 40, 10, &o->bytes) < 0) {
				fprintf(stderr, "entropyctl feed-kernel: --bytes %s: not a count\n",
					v);
				return 2;
			}
		} else if (strcmp(a, "--interval") == 0) {
			double s = strtod(v, &end);

			if (end == v || *end != '\0' || !(s >= 0.1 && s <= 86400)) {
				fprintf(stderr,
					"entropyctl feed-kernel: --interval %s: not in "
					"0.1..86400 s\n",
					v);
				return 2;
			}
			o->interval_ms = (long)(s * 1000);
		} else {
			return usage();
		}
	}
	if (!o->h_given) {
		bool plain_tcp = o->from != NULL && strncmp(o->from, "tcp:", 4) == 0 &&
				 strstr(o->from, ",tls=") == NULL;

		o->h = plain_tcp ? 0.0 : FEED_DEFAULT_H;
	}
	return 0;
}

static long read_proc_long(const char *path, long dflt)
{
	FILE *f = fopen(path, "r");
	long v = dflt;

	if (f != NULL) {
		if (fscanf(f, "%ld", &v) != 1) {
			v = dflt;
		}
		fclose(f);
	}
	return v;
}

/* Add n bytes crediting bits; -1 with errno. */
static int add_entropy(int fd, const uint8_t *buf, size_t n, int bits)
{
	struct rand_pool_info *info = malloc(sizeof(*info) + n);
	int rc;

	if (info == NULL) {
		return -1;
	}
	info->entropy_count = bits;
	info->buf_size = (int)n;
	memcpy(info->buf, buf, n);
	rc = ioctl(fd, RNDADDENTROPY, info);
	explicit_bzero(info, sizeof(*info) + n);
	free(info);
	return rc;
}

/* Where the bytes come from: the egd driver's connection, or (up NULL) the control socket. */
struct feed_src {
	const struct src_driver *drv;
	void *up;
	char name[300];
};

/* n bytes into buf; 0, or -1 (a line printed unless we are stopping). */
static int draw(const struct feed_src *s, uint8_t *buf, size_t n)
{
	char err[256] = "closed";
	size_t got = 0;

	if (s->up == NULL) {
		int fd = ctl_get_start(n);
		int rc = -1;

		if (fd >= 0) {
			/* Non-blocking: ctl_read_full then gives up after 30 s of silence. */
			(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
			rc = ctl_read_full(fd, buf, n);
			snprintf(err, sizeof(err), "%s", errno != 0 ? strerror(errno) : "closed");
			close(fd);
		}
		if (rc < 0 && fd >= 0 && !feed_stop) {
			fprintf(stderr, "entropyctl feed-kernel: %s: %s\n", s->name, err);
		}
		return rc;
	}
	while (got < n) {
		long r = s->drv->read(s->up, buf + got, n - got, err, sizeof(err));

		if (r <= 0) {
			if (!feed_stop) {
				fprintf(stderr, "entropyctl feed-kernel: %s: %s\n", s->name,
					r == 0 ? "closed" : err);
			}
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

/* One round: draw the bytes, add them; 0, or -1 with a line printed. */
static int feed_round(const struct feed_src *s, int fd, const struct feed_opts *o, long poolsize,
		      long *total)
{
	uint8_t buf[FEED_MAX_ROUND];
	size_t want = o->h > 0 ? (size_t)ceil((double)poolsize / o->h) : (size_t)poolsize / 8;
	size_t got;
	int before = -1, after = -1, bits;

	want = want > FEED_MAX_ROUND ? FEED_MAX_ROUND : (want < 1 ? 1 : want);
	if (o->bytes > 0 && (long)want > o->bytes - *total) {
		want = (size_t)(o->bytes - *total);
	}
	if (draw(s, buf, want) < 0) {
		return -1;
	}
	got = want;
	bits = (int)floor((double)got * o->h);
	(void)ioctl(fd, RNDGETENTCNT, &before);
	if (add_entropy(fd, buf, got, bits) < 0) {
		fprintf(stderr, "entropyctl feed-kernel: RNDADDENTROPY: %s\n", strerror(errno));
		explicit_bzero(buf, sizeof(buf));
		return -1;
	}
	explicit_bzero(buf, sizeof(buf));
	(void)ioctl(fd, RNDGETENTCNT, &after);
	*total += (long)got;
	printf("fed %zu bytes, credited %d bits (entropy_avail %d -> %d)\n", got, bits, before,
	       after);
	fflush(stdout);
	return 0;
}

/* Open /dev/random and prove we may credit: RNDADDENTROPY needs CAP_SYS_ADMIN. */
static int open_kernel(void)
{
	struct rand_pool_info probe = {.entropy_count = 0, .buf_size = 0};
	int fd = open("/dev/random", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "entropyctl feed-kernel: /dev/random: %s\n", strerror(errno));
		return -1;
	}
	if (ioctl(fd, RNDADDENTROPY, &probe) < 0) {
		fprintf(stderr,
			"entropyctl feed-kernel: %s: adding entropy to the kernel needs "
			"root (CAP_SYS_ADMIN)\n",
			strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void install_signals(void)
{
	struct sigaction sa = {.sa_handler = on_term}; /* no SA_RESTART: poll() returns */

	sigemptyset(&sa.sa_mask);
	src_wake_install();
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)signal(SIGPIPE, SIG_IGN);
}

int ctl_feed_kernel_main(int argc, char **argv)
{
	struct feed_src s = {.drv = &src_egd_driver};
	struct feed_opts o;
	long poolsize, total = 0;
	int fd, rc = 0;
	char err[256] = "";

	if (parse_args(argc, argv, &o) != 0) {
		return 2;
	}
	fd = open_kernel();
	if (fd < 0) {
		return 1;
	}
	install_signals();
	if (o.from == NULL) {
		snprintf(s.name, sizeof(s.name), "control socket %s", ctl_socket());
	} else {
		snprintf(s.name, sizeof(s.name), "%s", o.from);
		s.up = (s.drv->check == NULL || s.drv->check(o.from, err, sizeof(err)) == 0)
			   ? s.drv->open(o.from, err, sizeof(err))
			   : NULL;
		if (s.up == NULL) {
			fprintf(stderr, "entropyctl feed-kernel: --from %s: %s\n", o.from, err);
			close(fd);
			return 1;
		}
	}
	poolsize = read_proc_long("/proc/sys/kernel/random/poolsize", 256);
	printf("feeding the kernel from %s, crediting %g bits per byte%s; pool %ld bits, write "
	       "wake-up threshold %ld bits\n",
	       s.name, o.h, o.h == 0 ? " (mixed in, not credited)" : "", poolsize,
	       read_proc_long("/proc/sys/kernel/random/write_wakeup_threshold", -1));
	fflush(stdout);
	while (!feed_stop) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};

		if (feed_round(&s, fd, &o, poolsize, &total) < 0) {
			rc = feed_stop ? 0 : 1;
			break;
		}
		if (o.once || (o.bytes > 0 && total >= o.bytes)) {
			break;
		}
		/* At most one round per FEED_MIN_GAP_MS, even when the kernel keeps asking. */
		(void)poll(NULL, 0, FEED_MIN_GAP_MS);
		if (!feed_stop) {
			(void)poll(&p, 1, (int)(o.interval_ms - FEED_MIN_GAP_MS));
		}
	}
	if (s.up != NULL) {
		src_driver_close(s.drv, s.up);
	}
	close(fd);
	return rc;
}
