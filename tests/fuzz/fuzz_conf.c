/* libFuzzer target for the configuration file (entropyd.conf(5)): any text read through
 * --config must be applied or refused with a `PATH:LINE: message`, never crash, read freed
 * memory or leak. The input is the file, given by its /proc/self/fd path (a memfd). */
#include "conf.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

/* The libFuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-conf", MFD_CLOEXEC);
	char path[64], err[512];
	char arg0[] = "entropyd", arg1[] = "--config";
	char *argv[] = {arg0, arg1, path, NULL};
	struct conf c;

	if (fd < 0) {
		return 0;
	}
	if (write(fd, data, size) == (ssize_t)size) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		(void)conf_parse(&c, 3, argv, err, sizeof(err));
		conf_free(&c);
	}
	close(fd);
	return 0;
}
