/* src_driver: the table of source kinds and the defaults of a driver's optional callbacks.
 * A new kind is one new src_*.c file and one entry here. */
#include "src_driver.h"

#include <stdio.h>
#include <string.h>

/* --list-sources lists the kinds that need no argument in this order, which is also the
 * order of preference of the default source among those src_detect.c considers. */
const struct src_driver *const src_drivers[] = {
    &src_file_driver,	   &src_rdseed_driver, &src_darn_driver,
    &src_getrandom_driver, &src_qng_driver,    &src_qngvendor_driver,
    &src_exec_driver,	   &src_egd_driver,    NULL,
};

const struct src_driver *src_driver_find(const char *kind)
{
	for (size_t i = 0; src_drivers[i] != NULL; i++) {
		if (strcmp(src_drivers[i]->kind, kind) == 0) {
			return src_drivers[i];
		}
	}
	return NULL;
}

void src_driver_kinds(char *buf, size_t len)
{
	size_t used = 0;

	if (len > 0) {
		buf[0] = '\0';
	}
	for (size_t i = 0; src_drivers[i] != NULL && used < len; i++) {
		int w = snprintf(buf + used, len - used, "%s%s", i > 0 ? ", " : "",
				 src_drivers[i]->kind);

		if (w < 0) {
			break;
		}
		used += (size_t)w;
	}
}

void src_driver_close(const struct src_driver *drv, void *st)
{
	if (drv->close != NULL) {
		drv->close(st);
	}
}

bool src_driver_reopenable(const struct src_driver *drv, void *st)
{
	return drv->reopenable == NULL || drv->reopenable(st);
}
