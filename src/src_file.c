/* src_file: a source read from a path: a character device (/dev/hwrng, a TRNG's tty, put in
 * raw mode), a named pipe (re-opened for the next writer when one closes), or a regular file
 * (its end exhausts the source; it is never re-opened, which would repeat its bytes). */
#include "src.h"

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

static long file_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	struct file_src *f = st;
	ssize_t r;

	if (f->type == S_IFCHR && n > FILE_DEVICE_READ) {
		n = FILE_DEVICE_READ;
	}
	do {
		r = read(f->fd, buf, n);
	} while (r < 0 && errno == EINTR);
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
	.what = "a device, pipe or file",
	.needs_arg = true,
	.takes_arg = true,
	.open = file_open,
	.read = file_read,
	.close = file_close,
	.reopenable = file_reopenable,
};
