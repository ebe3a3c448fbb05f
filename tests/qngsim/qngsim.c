/* qngsim: a simulated ComScire QNG (see qngsim_model.h) reachable over stdin/stdout, a pty
 * (`--pty LINK`: a symlink to the slave, re-created after an unplug) or a unix socket
 * (`--listen PATH`, one host at a time), at a modelled rate (PQ4000KU: ~500 kB/s).
 *
 * Faults: `--fault KIND@BYTE[:ARG]` strikes when the stream reaches BYTE; at run time, a
 * line on the `--control PATH` socket: stall MS | unstall | bad BYTES | badflag | unplug |
 * garbage-delim N | status-short N | status-long N | rate BYTES_PER_S | stats | checks.
 * `--dump-stream N` prints the first N bytes of the data stream for --seed and exits, so
 * that tests can locate what reached a client. A development tool: not installed. */
#include "qngsim_model.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CTL_MAX 4
#define CTL_LINE 256

enum mode { MODE_NONE, MODE_STDIO, MODE_PTY, MODE_LISTEN };

struct ctl {
	int fd;
	char buf[CTL_LINE];
	size_t len;
};

struct sim {
	struct qngsim *m;
	enum mode mode;
	const char *path;  /* socket path or pty link */
	int lfd;	   /* listening socket */
	int in_fd, out_fd; /* the host's side; -1 when none */
	bool pty_idle;	   /* no slave open: poll the master again later */
	ino_t path_ino;	   /* the socket or link we made at path, to remove only ours */
	const char *ctl_path;
	ino_t ctl_ino;
	int ctl_lfd;
	struct ctl ctl[CTL_MAX];
	double rate, tokens;
	long last_ms, stall_until;
	uint64_t connections, unplugs;
	uint8_t out[65536];
	size_t out_len, out_off;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("qngsim: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static ino_t path_ino(const char *path)
{
	struct stat sb;

	return lstat(path, &sb) == 0 ? sb.st_ino : 0;
}

/* Remove path if it is still what we created (another simulator may have replaced it). */
static void unlink_ours(const char *path, ino_t ino)
{
	if (ino != 0 && path_ino(path) == ino) {
		unlink(path);
	}
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		die("socket path too long: %s", path);
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
		die("cannot listen on %s: %s", path, strerror(errno));
	}
	return fd;
}

/* A new pty in raw mode, its slave reachable through the symlink s->path. */
static void pty_create(struct sim *s)
{
	struct termios tio;
	char tmp[4096];
	const char *slave;
	int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (fd < 0 || grantpt(fd) < 0 || unlockpt(fd) < 0 || (slave = ptsname(fd)) == NULL) {
		die("cannot create a pty: %s", strerror(errno));
	}
	/* On a master, termios calls act on the slave: no echo, no line editing. */
	if (tcgetattr(fd, &tio) == 0) {
		cfmakeraw(&tio);
		tcsetattr(fd, TCSANOW, &tio);
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", s->path);
	unlink(tmp);
	if (symlink(slave, tmp) < 0 || rename(tmp, s->path) < 0) {
		die("cannot link %s to %s: %s", s->path, slave, strerror(errno));
	}
	s->path_ino = path_ino(s->path);
	nonblock(fd);
	s->in_fd = s->out_fd = fd;
	s->pty_idle = true;
	fprintf(stderr, "qngsim: pty %s -> %s\n", s->path, slave);
}

static void host_gone(struct sim *s, const char *why)
{
	fprintf(stderr, "qngsim: host %s\n", why);
	qngsim_set_host(s->m, false);
	s->out_len = s->out_off = 0;
	if (s->mode == MODE_STDIO) {
		exit(0);
	}
	if (s->mode == MODE_PTY) {
		s->pty_idle = true; /* the master stays; the next opener of the slave is the host */
		return;
	}
	close(s->in_fd);
	s->in_fd = s->out_fd = -1;
}

static void unplug(struct sim *s)
{
	s->unplugs++;
	fprintf(stderr, "qngsim: unplugged\n");
	qngsim_set_host(s->m, false);
	s->out_len = s->out_off = 0;
	if (s->mode == MODE_STDIO) {
		exit(0);
	}
	if (s->in_fd >= 0) {
		close(s->in_fd);
	}
	s->in_fd = s->out_fd = -1;
	qngsim_replug(s->m); /* and plugged in again at once: the host must re-open */
	if (s->mode == MODE_PTY) {
		pty_create(s);
	}
}

static void ctl_reply(struct ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ctl_reply(struct ctl *c, const char *fmt, ...)
{
	char line[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0) {
		return;
	}
	if ((size_t)n > sizeof(line) - 2) {
		n = (int)sizeof(line) - 2;
	}
	line[n++] = '\n';
	/* Replies are short; the control client reads them at once. */
	if (write(c->fd, line, (size_t)n) < 0) {
		return;
	}
}

static void ctl_command(struct sim *s, struct ctl *c, char *line)
{
	char *arg = strchr(line, ' ');
	unsigned long long v = 0;

	if (arg != NULL) {
		*arg++ = '\0';
		v = strtoull(arg, NULL, 10);
	}
	if (strcmp(line, "stall") == 0) {
		qngsim_fault(s->m, QNGSIM_F_STALL, 0, v);
	} else if (strcmp(line, "unstall") == 0) {
		qngsim_unstall(s->m);
		s->stall_until = 0;
	} else if (strcmp(line, "bad") == 0) {
		qngsim_fault(s->m, QNGSIM_F_BAD, 0, v);
	} else if (strcmp(line, "badflag") == 0) {
		qngsim_fault(s->m, QNGSIM_F_BAD_FLAG, 0, 0);
	} else if (strcmp(line, "unplug") == 0) {
		qngsim_fault(s->m, QNGSIM_F_UNPLUG, 0, 0);
	} else if (strcmp(line, "garbage-delim") == 0) {
		qngsim_fault(s->m, QNGSIM_F_GARBAGE_DELIM, 0, v ? v : 1);
	} else if (strcmp(line, "status-short") == 0) {
		qngsim_fault(s->m, QNGSIM_F_STATUS_SHORT, 0, v ? v : 1);
	} else if (strcmp(line, "status-long") == 0) {
		qngsim_fault(s->m, QNGSIM_F_STATUS_LONG, 0, v ? v : 1);
	} else if (strcmp(line, "rate") == 0) {
		s->rate = (double)v;
	} else if (strcmp(line, "stats") == 0) {
		const struct qngsim_counters *k = qngsim_counters(s->m);

		ctl_reply(c,
			  "ok streamed=%" PRIu64 " data=%" PRIu64 " head=%" PRIu64 " bad=%" PRIu64
			  " starts=%" PRIu64 " stops=%" PRIu64 " delimits=%" PRIu64
			  " statuses=%" PRIu64 " bad_statuses=%" PRIu64 " clears=%" PRIu64
			  " host_resets=%" PRIu64 " connections=%" PRIu64 " unplugs=%" PRIu64,
			  k->streamed, k->data, k->head, k->bad, k->starts, k->stops, k->delimits,
			  k->statuses, k->bad_statuses, k->clears, k->host_resets, s->connections,
			  s->unplugs);
		return;
	} else if (strcmp(line, "checks") == 0) {
		size_t n, len = 0;
		const struct qngsim_check *ck = qngsim_checks(s->m, &n);
		char buf[8000];

		buf[0] = '\0';
		/* The most recent checks that fit: "data_offset:status_word". */
		size_t first = n > 200 ? n - 200 : 0;

		for (size_t i = first; i < n && len < sizeof(buf); i++) {
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, " %" PRIu64 ":%x",
						ck[i].data_off, ck[i].word);
		}
		ctl_reply(c, "ok %zu%s", n, buf);
		return;
	} else {
		ctl_reply(c, "error unknown command '%s'", line);
		return;
	}
	ctl_reply(c, "ok");
}

static void ctl_read(struct sim *s, struct ctl *c)
{
	ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
	char *nl;

	if (r <= 0) {
		close(c->fd);
		c->fd = -1;
		c->len = 0;
		return;
	}
	c->len += (size_t)r;
	c->buf[c->len] = '\0';
	while ((nl = strchr(c->buf, '\n')) != NULL) {
		size_t used = (size_t)(nl - c->buf) + 1;

		*nl = '\0';
		if (nl > c->buf && nl[-1] == '\r') {
			nl[-1] = '\0';
		}
		ctl_command(s, c, c->buf);
		memmove(c->buf, c->buf + used, c->len - used + 1);
		c->len -= used;
	}
	if (c->len == sizeof(c->buf) - 1) {
		c->len = 0; /* an over-long line: drop it */
	}
}

static void host_accept(struct sim *s)
{
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0) {
		return;
	}
	if (s->in_fd >= 0) {
		close(fd); /* busy: one host at a time, as with USB */
		return;
	}
	s->in_fd = s->out_fd = fd;
	s->connections++;
	qngsim_host_reset(s->m);
	qngsim_set_host(s->m, true);
}

static void host_input(struct sim *s)
{
	uint8_t buf[4096];
	ssize_t r = read(s->in_fd, buf, sizeof(buf));

	if (r > 0) {
		if (s->mode == MODE_PTY && s->pty_idle) {
			/* A new opener of the slave: a new host session. */
			s->pty_idle = false;
			s->connections++;
			qngsim_host_reset(s->m);
			qngsim_set_host(s->m, true);
		}
		qngsim_input(s->m, buf, (size_t)r);
	} else if (r == 0) {
		host_gone(s, "closed the device");
	} else if (errno != EAGAIN && errno != EINTR) {
		host_gone(s, s->mode == MODE_PTY ? "closed the pty" : "connection failed");
	}
}

static void host_output(struct sim *s)
{
	ssize_t w = write(s->out_fd, s->out + s->out_off, s->out_len - s->out_off);

	if (w > 0) {
		s->out_off += (size_t)w;
		if (s->out_off == s->out_len) {
			s->out_off = s->out_len = 0;
		}
	} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
		host_gone(s, "stopped reading");
	}
}

/* Produce what the device sends next, within the rate budget; returns ms to wait for the
 * budget to allow more, or -1 if not waiting on it. */
static int produce(struct sim *s, long now)
{
	double burst = s->rate / 20 > 512 ? s->rate / 20 : 512;
	size_t max = sizeof(s->out);
	long r;

	if (s->rate > 0) {
		s->tokens += s->rate * (double)(now - s->last_ms) / 1000.0;
		if (s->tokens > burst) {
			s->tokens = burst;
		}
	}
	s->last_ms = now;
	if (s->in_fd < 0 || (s->mode == MODE_PTY && s->pty_idle) || s->out_len > 0 ||
	    !qngsim_has_output(s->m)) {
		return -1;
	}
	if (s->rate > 0) {
		if (s->tokens < 1) {
			return 2;
		}
		if ((double)max > s->tokens) {
			max = (size_t)s->tokens;
		}
	}
	r = qngsim_output(s->m, s->out, max);
	if (r > 0) {
		s->out_len = (size_t)r;
		s->out_off = 0;
		s->tokens -= (double)r;
	}
	return -1;
}

static void run(struct sim *s)
{
	while (!stop_flag) {
		struct pollfd p[3 + CTL_MAX];
		int np = 0, timeout = 1000, wait;
		int i_listen = -1, i_host = -1, i_ctl = -1, i_c[CTL_MAX];
		long now = mono_ms();
		uint64_t stall_ms;

		if (qngsim_unplugged(s->m)) {
			unplug(s);
		}
		if (qngsim_stalled(s->m, &stall_ms)) {
			if (s->stall_until == 0) {
				s->stall_until = now + (stall_ms ? (long)stall_ms : 1000L * 86400);
				fprintf(stderr, "qngsim: stalled for %" PRIu64 " ms\n", stall_ms);
			} else if (now >= s->stall_until) {
				qngsim_unstall(s->m);
				s->stall_until = 0;
				fprintf(stderr, "qngsim: stall over\n");
			} else {
				timeout = (int)(s->stall_until - now);
			}
		}
		wait = produce(s, now);
		if (wait >= 0 && wait < timeout) {
			timeout = wait;
		}
		if (s->lfd >= 0) {
			i_listen = np;
			p[np++] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
		}
		if (s->in_fd >= 0 && s->mode == MODE_PTY && s->pty_idle) {
			/* No slave open: the master reports POLLHUP at once; look again soon. */
			if (timeout > 20) {
				timeout = 20;
			}
			i_host = np;
			p[np++] = (struct pollfd){.fd = s->in_fd, .events = POLLIN};
		} else if (s->in_fd >= 0) {
			i_host = np;
			p[np++] = (struct pollfd){.fd = s->in_fd, .events = POLLIN};
			if (s->out_len > 0) {
				if (s->out_fd == s->in_fd) {
					p[i_host].events |= POLLOUT;
				} else {
					p[np++] =
					    (struct pollfd){.fd = s->out_fd, .events = POLLOUT};
				}
			}
		}
		if (s->ctl_lfd >= 0) {
			i_ctl = np;
			p[np++] = (struct pollfd){.fd = s->ctl_lfd, .events = POLLIN};
		}
		for (int k = 0; k < CTL_MAX; k++) {
			i_c[k] = -1;
			if (s->ctl[k].fd >= 0) {
				i_c[k] = np;
				p[np++] = (struct pollfd){.fd = s->ctl[k].fd, .events = POLLIN};
			}
		}
		bool idle = s->mode == MODE_PTY && s->pty_idle;

		if (idle) {
			/* Only look at the master for data; its POLLHUP would spin. */
			int n = poll(p, (nfds_t)np, timeout);

			if (n < 0 && errno != EINTR) {
				die("poll: %s", strerror(errno));
			}
			if (i_host >= 0 && (p[i_host].revents & POLLIN)) {
				host_input(s);
			} else if (i_host >= 0 && (p[i_host].revents & POLLHUP)) {
				usleep(20000);
			}
		} else {
			int n = poll(p, (nfds_t)np, timeout);

			if (n < 0 && errno != EINTR) {
				die("poll: %s", strerror(errno));
			}
			if (i_host >= 0 && (p[i_host].revents & (POLLIN | POLLHUP | POLLERR))) {
				host_input(s);
			}
			if (s->out_len > 0 && s->out_fd >= 0) {
				for (int k = 0; k < np; k++) {
					if (p[k].fd == s->out_fd && (p[k].revents & POLLOUT)) {
						host_output(s);
						break;
					}
				}
			}
		}
		if (i_listen >= 0 && (p[i_listen].revents & POLLIN)) {
			host_accept(s);
		}
		if (i_ctl >= 0 && (p[i_ctl].revents & POLLIN)) {
			int fd = accept4(s->ctl_lfd, NULL, NULL, SOCK_CLOEXEC);

			for (int k = 0; fd >= 0 && k < CTL_MAX; k++) {
				if (s->ctl[k].fd < 0) {
					s->ctl[k].fd = fd;
					s->ctl[k].len = 0;
					fd = -1;
				}
			}
			if (fd >= 0) {
				close(fd);
			}
		}
		for (int k = 0; k < CTL_MAX; k++) {
			if (i_c[k] >= 0 && (p[i_c[k]].revents & (POLLIN | POLLHUP | POLLERR))) {
				ctl_read(s, &s->ctl[k]);
			}
		}
	}
}

static enum qngsim_fault fault_kind(const char *name)
{
	static const struct {
		const char *name;
		enum qngsim_fault f;
	} kinds[] = {
	    {"stall", QNGSIM_F_STALL},
	    {"bad", QNGSIM_F_BAD},
	    {"badflag", QNGSIM_F_BAD_FLAG},
	    {"unplug", QNGSIM_F_UNPLUG},
	    {"garbage-delim", QNGSIM_F_GARBAGE_DELIM},
	    {"status-short", QNGSIM_F_STATUS_SHORT},
	    {"status-long", QNGSIM_F_STATUS_LONG},
	};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (strcmp(kinds[i].name, name) == 0) {
			return kinds[i].f;
		}
	}
	die("unknown fault '%s' (stall, bad, badflag, unplug, garbage-delim, status-short, "
	    "status-long)",
	    name);
}

static void usage(void)
{
	fputs("usage: qngsim [--serial S] [--seed N] [--rate BYTES_PER_S] [--tail N]\n"
	      "              [--bad-fill zero|random] [--fault KIND@BYTE[:ARG]]...\n"
	      "              [--control PATH] (--stdio | --pty LINK | --listen PATH)\n"
	      "       qngsim --dump-stream N [--seed N] [--stream data|head|bad]\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"serial", required_argument, NULL, 'S'},
	    {"seed", required_argument, NULL, 's'},
	    {"rate", required_argument, NULL, 'r'},
	    {"tail", required_argument, NULL, 't'},
	    {"bad-fill", required_argument, NULL, 'b'},
	    {"fault", required_argument, NULL, 'f'},
	    {"control", required_argument, NULL, 'c'},
	    {"stdio", no_argument, NULL, 'i'},
	    {"pty", required_argument, NULL, 'p'},
	    {"listen", required_argument, NULL, 'l'},
	    {"dump-stream", required_argument, NULL, 'd'},
	    {"stream", required_argument, NULL, 'w'},
	    {NULL, 0, NULL, 0},
	};
	struct {
		enum qngsim_fault f;
		uint64_t at, arg;
	} faults[16];
	size_t nfaults = 0, tail = 128;
	const char *serial = "QWR4SIM00001";
	uint64_t seed = 0;
	bool have_seed = false, bad_zero = true;
	long long dump = -1;
	enum qngsim_stream which = QNGSIM_DATA;
	static struct sim s;
	uint8_t delim[6];
	int ch;

	s.lfd = s.ctl_lfd = s.in_fd = s.out_fd = -1;
	s.rate = 500000;
	for (int k = 0; k < CTL_MAX; k++) {
		s.ctl[k].fd = -1;
	}
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'S':
			serial = optarg;
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			have_seed = true;
			break;
		case 'r':
			s.rate = strtod(optarg, NULL);
			break;
		case 't':
			tail = strtoul(optarg, NULL, 10);
			break;
		case 'b':
			bad_zero = strcmp(optarg, "random") != 0;
			break;
		case 'f': {
			char name[32], *at = strchr(optarg, '@');

			if (at == NULL || (size_t)(at - optarg) >= sizeof(name) || nfaults == 16) {
				usage();
			}
			memcpy(name, optarg, (size_t)(at - optarg));
			name[at - optarg] = '\0';
			faults[nfaults].f = fault_kind(name);
			faults[nfaults].at = strtoull(at + 1, &at, 10);
			faults[nfaults].arg = *at == ':' ? strtoull(at + 1, NULL, 10) : 1;
			nfaults++;
			break;
		}
		case 'c':
			s.ctl_path = optarg;
			break;
		case 'i':
			s.mode = MODE_STDIO;
			break;
		case 'p':
			s.mode = MODE_PTY;
			s.path = optarg;
			break;
		case 'l':
			s.mode = MODE_LISTEN;
			s.path = optarg;
			break;
		case 'd':
			dump = strtoll(optarg, NULL, 10);
			break;
		case 'w':
			which = strcmp(optarg, "head") == 0  ? QNGSIM_HEAD
				: strcmp(optarg, "bad") == 0 ? QNGSIM_BAD
							     : QNGSIM_DATA;
			break;
		default:
			usage();
		}
	}
	if (optind != argc) {
		usage();
	}
	if (dump >= 0) {
		uint8_t buf[65536];

		for (long long off = 0; off < dump; off += (long long)sizeof(buf)) {
			size_t n = dump - off < (long long)sizeof(buf) ? (size_t)(dump - off)
								       : sizeof(buf);

			qngsim_stream(seed, which, (uint64_t)off, buf, n);
			if (fwrite(buf, 1, n, stdout) != n) {
				die("write: %s", strerror(errno));
			}
		}
		return 0;
	}
	if (s.mode == MODE_NONE) {
		usage();
	}
	if (!have_seed && getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) {
		die("getrandom: %s", strerror(errno));
	}
	s.m = qngsim_new(serial, seed, bad_zero);
	if (s.m == NULL) {
		die("out of memory");
	}
	qngsim_set_tail(s.m, tail);
	for (size_t i = 0; i < nfaults; i++) {
		qngsim_fault(s.m, faults[i].f, faults[i].at, faults[i].arg);
	}
	struct sigaction sa = {.sa_handler = on_signal};

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (s.ctl_path != NULL) {
		s.ctl_lfd = listen_unix(s.ctl_path);
		s.ctl_ino = path_ino(s.ctl_path);
	}
	if (s.mode == MODE_LISTEN) {
		s.lfd = listen_unix(s.path);
		s.path_ino = path_ino(s.path);
	} else if (s.mode == MODE_PTY) {
		pty_create(&s);
	} else {
		s.in_fd = 0;
		s.out_fd = 1;
		nonblock(0);
		nonblock(1);
		s.connections = 1;
		qngsim_set_host(s.m, true);
	}
	s.last_ms = mono_ms();
	qngsim_delimiter(s.m, delim);
	fprintf(stderr,
		"qngsim: ready serial=%s seed=%" PRIu64 " delimiter=%02x%02x%02x%02x%02x%02x"
		" rate=%.0f\n",
		serial, seed, delim[0], delim[1], delim[2], delim[3], delim[4], delim[5], s.rate);
	run(&s);
	if (s.mode == MODE_LISTEN || s.mode == MODE_PTY) {
		unlink_ours(s.path, s.path_ino);
	}
	if (s.ctl_path != NULL) {
		unlink_ours(s.ctl_path, s.ctl_ino);
	}
	qngsim_free(s.m);
	return 0;
}
