/* src_darn: the POWER9 DARN instruction ("deliver a random number"), in its conditioned
 * 64-bit form (L=1). DARN returns all ones when no random number is available; that value
 * is retried (a real all-ones result is indistinguishable and equally retried, which costs
 * nothing measurable). The instruction exists only on POWER ISA 3.0 (POWER9) and later. */
#include "src.h"

#include <stdio.h>
#include <string.h>

#if defined(__powerpc64__)
#include <sys/auxv.h>

#ifndef PPC_FEATURE2_ARCH_3_00
#define PPC_FEATURE2_ARCH_3_00 0x00800000
#endif
#define DARN_TRIES 1000

bool src_darn_supported(void)
{
	return (getauxval(AT_HWCAP2) & PPC_FEATURE2_ARCH_3_00) != 0;
}

static int darn64(unsigned long long *v)
{
	for (int i = 0; i < DARN_TRIES; i++) {
		unsigned long long r;

		__asm__ volatile("darn %0, 1" : "=r"(r));
		if (r != ~0ULL) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

static long darn_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	return src_read_words(buf, n, darn64, "DARN", err, errlen);
}
#else
bool src_darn_supported(void)
{
	return false;
}

static long darn_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	snprintf(err, errlen, "DARN exists only on POWER9 and later");
	return -1;
}
#endif

static int darn_token;

static void *darn_open(const char *arg, char *err, size_t errlen)
{
	if (!src_darn_supported()) {
		snprintf(err, errlen,
			 "this CPU has no DARN instruction (POWER9 / ISA 3.0 and later "
			 "only); use another source");
		return NULL;
	}
	return &darn_token;
}

static void darn_close(void *st)
{
}

static bool darn_reopenable(void *st)
{
	return true;
}

const struct src_driver src_darn_driver = {
    .kind = "darn",
    .what = "hardware: the POWER CPU's entropy source",
    .needs_arg = false,
    .open = darn_open,
    .read = darn_read,
    .close = darn_close,
    .reopenable = darn_reopenable,
    .stall_ms = SRC_STALL_DEFAULT_MS,
};
