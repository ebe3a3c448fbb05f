/* src_detect: what this machine offers as a source: the default choice when no --source
 * is given, and the --list-sources report. */
#ifndef ENTROPYD_SRC_DETECT_H
#define ENTROPYD_SRC_DETECT_H

#include <stddef.h>
#include <stdio.h>

struct sources;

/* Pick the best source on this machine (/dev/hwrng if it delivers, else a CPU instruction,
 * else the kernel's generator) and add it to s; why is logged at start. -1 with err. */
int src_detect_add_default(struct sources *s, char *err, size_t errlen);
/* Print every source this machine offers and why each is or is not usable (--list-sources). */
void src_detect_list(FILE *out);

#endif
