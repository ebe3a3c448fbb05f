/* src_darn: the POWER9 DARN instruction ("deliver a random number"), in its conditioned
 * 64-bit form (L=1). DARN returns all ones when no random number is available; that value
 * is retried (a real all-ones result is indistinguishable and equally retried, which costs
 * nothing measurable). The instruction exists only on POWER ISA 3.0 (POWER9) and later. */
#include "src.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Test hook, not a feature: ENTROPYD_TEST_HIDE_CPU_RNG=rdseed,darn (a comma-separated
 * list of kinds) makes entropyd behave as if the CPU lacked the instruction, so that the
 * system tests can check the refusal on the CPUs that have it. Read once. */
static bool darn_hidden_for_test(void)
{
	static atomic_int hidden = -1;
	int h = atomic_load(&hidden);

	if (h < 0) {
		const char *v = getenv("ENTROPYD_TEST_HIDE_CPU_RNG");
		size_t n = strlen("darn");

		h = 0;
		for (const char *t = v; t != NULL; t = strchr(t, ',') ? strchr(t, ',') + 1 : NULL) {
			if (strncmp(t, "darn", n) == 0 && (t[n] == ',' || t[n] == '\0')) {
				h = 1;
			}
		}
		atomic_store(&hidden, h);
	}
	return h == 1;
}

#if defined(__powerpc64__)
#include <sys/auxv.h>

#ifndef PPC_FEATURE2_ARCH_3_00
#define PPC_FEATURE2_ARCH_3_00 0x00800000
#endif
#define DARN_TRIES 1000

static bool darn_in_cpu(void)
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
static bool darn_in_cpu(void)
{
	return false;
}

static long darn_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	snprintf(err, errlen, "DARN exists only on POWER9 and later");
	return -1;
}
#endif

bool src_darn_supported(void)
{
	return !darn_hidden_for_test() && darn_in_cpu();
}

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
