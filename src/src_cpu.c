/* src_cpu: the CPU instruction sources, which share their word reader and their test hook.
 *
 * rdseed: the x86 RDSEED instruction, which returns conditioned output of the CPU's entropy
 * source (unlike RDRAND, which is a DRBG's output). RDSEED may fail transiently when the
 * source is drained; we retry with a pause and report an error only after many tries.
 *
 * darn: the POWER9 DARN instruction ("deliver a random number"), in its conditioned 64-bit
 * form (L=1). DARN returns all ones when no random number is available; that value is
 * retried (a real all-ones result is indistinguishable and equally retried, which costs
 * nothing measurable). The instruction exists only on POWER ISA 3.0 (POWER9) and later.
 *
 * Both hold no state: open() checks the CPU and returns a token. */
#include "src_driver.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Retries of one instruction before a read reports that the CPU gave no number. */
#define CPU_TRIES 1000

enum cpu_insn { CPU_RDSEED, CPU_DARN };

static int cpu_token;

/* Test hook, not a feature: ENTROPYD_TEST_HIDE_CPU_RNG=rdseed,darn (a comma-separated
 * list of kinds) makes entropyd behave as if the CPU lacked the instruction, so that the
 * system tests can check the refusal on the CPUs that have it. Read once. */
static bool cpu_hidden_for_test(enum cpu_insn insn)
{
	static const char *const kinds[] = {[CPU_RDSEED] = "rdseed", [CPU_DARN] = "darn"};
	static atomic_int hidden = -1; /* bit i: kinds[i] is hidden */
	int h = atomic_load(&hidden);

	if (h < 0) {
		const char *v = getenv("ENTROPYD_TEST_HIDE_CPU_RNG");

		h = 0;
		for (const char *t = v; t != NULL; t = strchr(t, ',') ? strchr(t, ',') + 1 : NULL) {
			for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
				size_t n = strlen(kinds[i]);

				if (strncmp(t, kinds[i], n) == 0 && (t[n] == ',' || t[n] == '\0')) {
					h |= 1 << i;
				}
			}
		}
		atomic_store(&hidden, h);
	}
	return (h & (1 << insn)) != 0;
}

#if defined(__x86_64__) || defined(__i386__) || defined(__powerpc64__)
/* Fill buf[0..n) (at most 4096) with 64-bit words from next(), which returns 0, or -1 when
 * the CPU gave no number after its own retries. */
static long cpu_read_words(uint8_t *buf, size_t n, int (*next)(unsigned long long *v),
			   const char *insn, char *err, size_t errlen)
{
	size_t got = 0;

	n = n > 4096 ? 4096 : n;
	while (got < n) {
		unsigned long long v;
		size_t take = n - got < sizeof(v) ? n - got : sizeof(v);

		if (next(&v) < 0) {
			if (got > 0) {
				break;
			}
			snprintf(err, errlen, "%s gave no number after many tries", insn);
			return -1;
		}
		memcpy(buf + got, &v, take);
		got += take;
	}
	return (long)got;
}
#endif

/* ------------------------------------------------------------------------------------------
 * RDSEED (x86) */

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

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
	for (int i = 0; i < CPU_TRIES; i++) {
		if (_rdseed64_step(v)) {
			return 0;
		}
		_mm_pause();
	}
	return -1;
}

static long rdseed_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	return cpu_read_words(buf, n, rdseed64, "RDSEED", err, errlen);
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

static void *rdseed_open(const char *arg, char *err, size_t errlen)
{
	if (cpu_hidden_for_test(CPU_RDSEED) || !rdseed_in_cpu()) {
		snprintf(err, errlen,
			 "this CPU has no RDSEED instruction (see the rdseed flag in "
			 "/proc/cpuinfo); use another source");
		return NULL;
	}
	return &cpu_token;
}

const struct src_driver src_rdseed_driver = {
    .kind = "rdseed",
    .syntax = "rdseed",
    .help = "the x86 CPU's RDSEED instruction",
    .what = "hardware: the CPU's entropy source",
    .needs_arg = false,
    .open = rdseed_open,
    .read = rdseed_read,
    .parallel = true,
    .stall_ms = SRC_STALL_DEFAULT_MS,
};

/* ------------------------------------------------------------------------------------------
 * DARN (POWER9) */

#if defined(__powerpc64__)
#include <sys/auxv.h>

#ifndef PPC_FEATURE2_ARCH_3_00
#define PPC_FEATURE2_ARCH_3_00 0x00800000
#endif

static bool darn_in_cpu(void)
{
	return (getauxval(AT_HWCAP2) & PPC_FEATURE2_ARCH_3_00) != 0;
}

static int darn64(unsigned long long *v)
{
	for (int i = 0; i < CPU_TRIES; i++) {
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
	return cpu_read_words(buf, n, darn64, "DARN", err, errlen);
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

static void *darn_open(const char *arg, char *err, size_t errlen)
{
	if (cpu_hidden_for_test(CPU_DARN) || !darn_in_cpu()) {
		snprintf(err, errlen,
			 "this CPU has no DARN instruction (POWER9 / ISA 3.0 and later "
			 "only); use another source");
		return NULL;
	}
	return &cpu_token;
}

const struct src_driver src_darn_driver = {
    .kind = "darn",
    .syntax = "darn",
    .help = "the POWER9 CPU's DARN instruction (conditioned form)",
    .what = "hardware: the POWER CPU's entropy source",
    .needs_arg = false,
    .open = darn_open,
    .read = darn_read,
    .parallel = true,
    .stall_ms = SRC_STALL_DEFAULT_MS,
};
