/* src_getrandom: the kernel's generator through getrandom(2). Not a hardware source: it is
 * the fallback when the machine has none, and is logged as such. */
#include "src_driver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static int getrandom_token;

static void *getrandom_open(const char *arg, char *err, size_t errlen)
{
	uint8_t probe;

	if (getrandom(&probe, 1, GRND_NONBLOCK) < 0 && errno != EAGAIN) {
		snprintf(err, errlen, "getrandom: %s", strerror(errno));
		return NULL;
	}
	return &getrandom_token;
}

static long getrandom_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	ssize_t r;

	do {
		r = getrandom(buf, n, 0);
	} while (r < 0 && errno == EINTR);
	if (r < 0) {
		snprintf(err, errlen, "getrandom: %s", strerror(errno));
		return -1;
	}
	return (long)r;
}

const struct src_driver src_getrandom_driver = {
    .kind = "getrandom",
    .syntax = "getrandom",
    .help = "the kernel's generator (not a hardware source)",
    .what = "not a hardware source: the kernel's generator",
    .needs_arg = false,
    .open = getrandom_open,
    .read = getrandom_read,
    .parallel = true,
    .stall_ms = SRC_STALL_DEFAULT_MS,
};
