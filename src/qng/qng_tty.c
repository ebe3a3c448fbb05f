/* qng_tty: the QNG byte pipe over a tty (a QNG behind ftdi_sio, e.g. /dev/ttyUSB0 in a
 * guest whose QEMU has a usb-serial device) or over a unix stream socket (the qngsim
 * simulator). The line is put in raw mode; nothing else about it is assumed. One context
 * per device, no global state. */
#include "qng.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* A write that cannot proceed for this long fails (a device that takes no commands). */
#define TTY_WRITE_TIMEOUT_MS 2000

struct qng_tty {
	char *path;
	bool is_socket;
	int fd;
	char name[128];
	char error[160];
};

void *qng_tty_new(const char *path, bool is_socket)
{
	struct qng_tty *t = calloc(1, sizeof(*t));

	if (t == NULL || (t->path = strdup(path)) == NULL) {
		free(t);
		return NULL;
	}
	t->is_socket = is_socket;
	t->fd = -1;
	snprintf(t->name, sizeof(t->name), "%s %s", is_socket ? "sock" : "tty", path);
	return t;
}

static void tty_free(void *ctx)
{
	struct qng_tty *t = ctx;

	if (t == NULL) {
		return;
	}
	if (t->fd >= 0) {
		close(t->fd);
	}
	free(t->path);
	free(t);
}

static int open_socket(struct qng_tty *t, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(t->path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path %s is too long", t->path);
		return -1;
	}
	memcpy(sa.sun_path, t->path, strlen(t->path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", t->path, strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
		return -1;
	}
	return fd;
}

static int open_tty(struct qng_tty *t, char *err, size_t errlen)
{
	struct termios tio;
	int fd = open(t->path, O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s%s", t->path, strerror(errno),
			 errno == EACCES ? " (add the user to the tty's group, e.g. dialout)" : "");
		return -1;
	}
	if (!isatty(fd)) {
		snprintf(err, errlen, "%s is not a tty (use sock= for a unix socket)", t->path);
		close(fd);
		return -1;
	}
	if (tcgetattr(fd, &tio) < 0) {
		snprintf(err, errlen, "%s: %s", t->path, strerror(errno));
		close(fd);
		return -1;
	}
	cfmakeraw(&tio);
	tio.c_cflag |= CLOCAL | CREAD;
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;
	if (tcsetattr(fd, TCSANOW, &tio) < 0) {
		snprintf(err, errlen, "%s: cannot set raw mode: %s", t->path, strerror(errno));
		close(fd);
		return -1;
	}
	tcflush(fd, TCIOFLUSH);
	return fd;
}

static int tty_open(void *ctx, const char *serial, char *err, size_t errlen)
{
	struct qng_tty *t = ctx;
	int fd;

	(void)serial; /* a tty does not tell which QNG is behind it */
	if (t->fd >= 0) {
		close(t->fd);
		t->fd = -1;
	}
	fd = t->is_socket ? open_socket(t, err, errlen) : open_tty(t, err, errlen);
	if (fd < 0) {
		return -1;
	}
	/* Non-blocking, so that a read returns what has arrived and poll() bounds the wait. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "%s: %s", t->path, strerror(errno));
		close(fd);
		return -1;
	}
	t->fd = fd;
	t->error[0] = '\0';
	return 0;
}

static int tty_write(void *ctx, const uint8_t *b, size_t n)
{
	struct qng_tty *t = ctx;
	long deadline = qng_now_ms() + TTY_WRITE_TIMEOUT_MS;

	while (n > 0) {
		ssize_t w = t->is_socket ? send(t->fd, b, n, MSG_NOSIGNAL) : write(t->fd, b, n);

		if (w > 0) {
			b += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			/* An unplug seen while sending a command reads like one seen reading. */
			snprintf(t->error, sizeof(t->error), "%swrite: %s%s",
				 errno == EPIPE || errno == ECONNRESET ? "the device went away ("
								       : "",
				 strerror(errno), errno == EPIPE || errno == ECONNRESET ? ")" : "");
			return -1;
		}
		long left = deadline - qng_now_ms();
		struct pollfd p = {.fd = t->fd, .events = POLLOUT};

		if (left <= 0) {
			snprintf(t->error, sizeof(t->error), "write blocked for %d ms",
				 TTY_WRITE_TIMEOUT_MS);
			return -1;
		}
		poll(&p, 1, (int)left);
	}
	return 0;
}

static long tty_read(void *ctx, uint8_t *b, size_t n, int timeout_ms)
{
	struct qng_tty *t = ctx;
	long deadline = qng_now_ms() + timeout_ms;

	for (;;) {
		ssize_t r = read(t->fd, b, n);
		long left;

		if (r > 0) {
			return (long)r;
		}
		if (r == 0) {
			snprintf(t->error, sizeof(t->error), "the device went away (end of file)");
			return -1;
		}
		if (errno != EAGAIN && errno != EINTR) {
			/* EIO: the tty's device was unplugged (or a pty's other end closed). */
			snprintf(t->error, sizeof(t->error), "read: %s", strerror(errno));
			return -1;
		}
		left = deadline - qng_now_ms();
		if (left <= 0) {
			return 0;
		}
		struct pollfd p = {.fd = t->fd, .events = POLLIN};
		int pr = poll(&p, 1, (int)left);

		if (pr < 0 && errno != EINTR) {
			snprintf(t->error, sizeof(t->error), "poll: %s", strerror(errno));
			return -1;
		}
	}
}

static void tty_close(void *ctx)
{
	struct qng_tty *t = ctx;

	if (t->fd >= 0) {
		close(t->fd);
		t->fd = -1;
	}
}

static const char *tty_name(void *ctx)
{
	return ((struct qng_tty *)ctx)->name;
}

static const char *tty_error(void *ctx)
{
	struct qng_tty *t = ctx;

	return t->error[0] ? t->error : NULL;
}

const struct qng_pipe_ops qng_tty_ops = {
    .open = tty_open,
    .write = tty_write,
    .read = tty_read,
    .close = tty_close,
    .name = tty_name,
    .error = tty_error,
    .free = tty_free,
};
