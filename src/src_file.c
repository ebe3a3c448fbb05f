/* src_file: a source read from a path: a character device (/dev/hwrng, a TRNG's tty, put in
 * raw mode), a named pipe (re-opened for the next writer when one closes), or a regular file
 * (its end exhausts the source; it is never re-opened, which would repeat its bytes). */
#include "src_driver.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

/* Devices such as /dev/hwrng fill a read completely before returning: keep reads small so
 * that a slow device hands over its bytes in good time. */
#define FILE_DEVICE_READ 512u

struct file_src {
	int fd;
	mode_t type;
	char *path;
};

static void *file_open(const char *path, char *err, size_t errlen)
{
	struct file_src *f;
	struct stat sb;
	/* O_NONBLOCK so that opening a FIFO does not wait for a writer; cleared below. */
	int fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &sb) < 0 || S_ISDIR(sb.st_mode) || S_ISSOCK(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a device, pipe or regular file", path);
		close(fd);
		return NULL;
	}
	if (fcntl(fd, F_SETFL, 0) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (isatty(fd)) {
		struct termios tio;

		if (tcgetattr(fd, &tio) == 0) {
			cfmakeraw(&tio);
			tio.c_cc[VMIN] = 1;
			tio.c_cc[VTIME] = 0;
			tcsetattr(fd, TCSANOW, &tio);
		}
	}
	f = calloc(1, sizeof(*f));
	if (f == NULL || (f->path = strdup(path)) == NULL) {
		free(f);
		close(fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	f->fd = fd;
	f->type = sb.st_mode & S_IFMT;
	return f;
}

/* Decode \n, \r, \t, \\ and \xHH in s into out; returns the length, -1 if malformed. */
static long decode_escapes(const char *s, uint8_t *out, size_t outlen)
{
	size_t n = 0;

	while (*s != '\0') {
		unsigned v;

		if (n == outlen) {
			return -1;
		}
		if (*s != '\\') {
			out[n++] = (uint8_t)*s++;
			continue;
		}
		s++;
		switch (*s) {
		case 'n':
			out[n++] = '\n';
			break;
		case 'r':
			out[n++] = '\r';
			break;
		case 't':
			out[n++] = '\t';
			break;
		case '\\':
			out[n++] = '\\';
			break;
		case 'x':
			if (sscanf(s + 1, "%2x", &v) != 1 || !isxdigit((unsigned char)s[1]) ||
			    !isxdigit((unsigned char)s[2])) {
				return -1;
			}
			out[n++] = (uint8_t)v;
			s += 2;
			break;
		default:
			return -1;
		}
		s++;
	}
	return (long)n;
}

static speed_t baud_constant(long baud)
{
	static const struct {
		long baud;
		speed_t c;
	} table[] = {{9600, B9600},	  {19200, B19200},    {38400, B38400},	 {57600, B57600},
		     {115200, B115200},	  {230400, B230400},  {460800, B460800}, {921600, B921600},
		     {1000000, B1000000}, {3000000, B3000000}};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (table[i].baud == baud) {
			return table[i].c;
		}
	}
	return 0;
}

/* A TRNG on a tty may need a line speed and commands (OneRNG: "cmdO\n" to start output). */
static int file_setup(void *st, const struct src_tty *tty, char *err, size_t errlen)
{
	struct file_src *f = st;
	uint8_t cmd[256];
	long n;

	if (tty->init == NULL && tty->baud == 0) {
		return 0;
	}
	if (!isatty(f->fd)) {
		snprintf(err, errlen, "%s: init= and baud= need a tty", f->path);
		return -1;
	}
	if (tty->baud != 0) {
		struct termios tio;
		speed_t sp = baud_constant(tty->baud);

		if (sp == 0 || tcgetattr(f->fd, &tio) < 0 || cfsetspeed(&tio, sp) < 0 ||
		    tcsetattr(f->fd, TCSANOW, &tio) < 0) {
			snprintf(err, errlen, "%s: cannot set baud=%ld", f->path, tty->baud);
			return -1;
		}
	}
	if (tty->init != NULL) {
		n = decode_escapes(tty->init, cmd, sizeof(cmd));
		if (n < 0) {
			snprintf(err, errlen,
				 "%s: bad init= string (escapes: \\n \\r \\t \\\\ \\xHH)", f->path);
			return -1;
		}
		/* The source reads only: the command goes through a write descriptor of its own. */
		int wfd = open(f->path, O_WRONLY | O_NOCTTY | O_CLOEXEC);

		if (wfd < 0 || write(wfd, cmd, (size_t)n) != n) {
			snprintf(err, errlen, "%s: writing init= failed: %s", f->path,
				 strerror(errno));
			if (wfd >= 0) {
				close(wfd);
			}
			return -1;
		}
		tcdrain(wfd);
		close(wfd);
		tcflush(f->fd, TCIFLUSH); /* what the device sent before the command is not used */
	}
	return 0;
}

static long file_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	struct file_src *f = st;
	ssize_t r;

	if (f->type == S_IFCHR && n > FILE_DEVICE_READ) {
		n = FILE_DEVICE_READ;
	}
	do {
		r = read(f->fd, buf, n);
	} while (r < 0 && errno == EINTR && !src_stopping());
	if (r < 0) {
		snprintf(err, errlen, "read from %s: %s", f->path, strerror(errno));
		return -1;
	}
	if (r == 0 && f->type != S_IFREG) {
		/* A pipe's writer went away or a device signalled its end: re-open later. */
		snprintf(err, errlen, "%s: end of data", f->path);
		return -1;
	}
	return (long)r;
}

static void file_close(void *st)
{
	struct file_src *f = st;

	close(f->fd);
	free(f->path);
	free(f);
}

static bool file_reopenable(void *st)
{
	const struct file_src *f = st;

	return f->type != S_IFREG;
}

const struct src_driver src_file_driver = {
    .kind = "file",
    .syntax = "file:PATH",
    .help = "a device (/dev/hwrng, a TRNG's tty, put in raw mode), a FIFO re-opened for each "
	    "writer, or a regular file whose end exhausts the source",
    .what = "a device, pipe or file",
    .needs_arg = true,
    .takes_arg = true,
    .open = file_open,
    .read = file_read,
    .close = file_close,
    .setup = file_setup,
    .reopenable = file_reopenable,
    .stall_ms = SRC_STALL_DEFAULT_MS,
};
