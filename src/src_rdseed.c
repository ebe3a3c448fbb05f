/* src_rdseed: the x86 RDSEED instruction, which returns conditioned output of the CPU's
 * entropy source (unlike RDRAND, which is a DRBG's output). RDSEED may fail transiently when
 * the source is drained; we retry with a pause and report an error only after many tries. */
#include "src.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Test hook, not a feature: ENTROPYD_TEST_HIDE_CPU_RNG=rdseed,darn (a comma-separated
 * list of kinds) makes entropyd behave as if the CPU lacked the instruction, so that the
 * system tests can check the refusal on the CPUs that have it. Read once. */
static bool rdseed_hidden_for_test(void)
{
	static atomic_int hidden = -1;
	int h = atomic_load(&hidden);

	if (h < 0) {
		const char *v = getenv("ENTROPYD_TEST_HIDE_CPU_RNG");
		size_t n = strlen("rdseed");

		h = 0;
		for (const char *t = v; t != NULL; t = strchr(t, ',') ? strchr(t, ',') + 1 : NULL) {
			if (strncmp(t, "rdseed", n) == 0 && (t[n] == ',' || t[n] == '\0')) {
				h = 1;
			}
		}
		atomic_store(&hidden, h);
	}
	return h == 1;
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

#define RDSEED_TRIES 1000

static bool rdseed_in_cpu(void)
{
	unsigned a, b, c, d;

	if (__get_cpuid_max(0, NULL) < 7) {
		return false;
	}
	__cpuid_count(7, 0, a, b, c, d);
	return (b & (1u << 18)) != 0;
}

__attribute__((target("rdseed"))) static int rdseed64(unsigned long long *v)
{
	for (int i = 0; i < RDSEED_TRIES; i++) {
		if (_rdseed64_step(v)) {
			return 0;
		}
		_mm_pause();
	}
	return -1;
}

static long rdseed_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	return src_read_words(buf, n, rdseed64, "RDSEED", err, errlen);
}
#else
static bool rdseed_in_cpu(void)
{
	return false;
}

static long rdseed_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	snprintf(err, errlen, "RDSEED exists only on x86");
	return -1;
}
#endif

bool src_rdseed_supported(void)
{
	return !rdseed_hidden_for_test() && rdseed_in_cpu();
}

static int rdseed_token;

static void *rdseed_open(const char *arg, char *err, size_t errlen)
{
	if (!src_rdseed_supported()) {
		snprintf(err, errlen,
			 "this CPU has no RDSEED instruction (see the rdseed flag in "
			 "/proc/cpuinfo); use another source");
		return NULL;
	}
	return &rdseed_token;
}

static void rdseed_close(void *st)
{
}

static bool rdseed_reopenable(void *st)
{
	return true;
}

const struct src_driver src_rdseed_driver = {
    .kind = "rdseed",
    .what = "hardware: the CPU's entropy source",
    .needs_arg = false,
    .open = rdseed_open,
    .read = rdseed_read,
    .close = rdseed_close,
    .reopenable = rdseed_reopenable,
    .stall_ms = SRC_STALL_DEFAULT_MS,
};
