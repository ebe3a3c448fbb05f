/* health: NIST SP 800-90B (section 4.4) continuous health tests on byte samples.
 *
 * A noise source is assumed to deliver at least H bits of min-entropy per byte, i.e. no
 * byte value has probability above p = 2^-H. The tests are tuned so that a source that
 * meets that claim fails only with probability alpha = 2^-alpha_log2 per opportunity;
 * a source that is much worse than claimed fails quickly.
 *
 * - Repetition Count Test (RCT) catches a source that gets stuck: the chance of C
 *   identical samples in a row is at most p^(C-1) = 2^-H(C-1), so C = 1 + ceil(alpha_log2 /
 *   H) keeps that below alpha. Fails when the run length reaches C.
 * - Adaptive Proportion Test (APT) catches a large loss of entropy that is not a stuck
 *   value (one value becoming much too likely). The samples are cut into windows of
 *   W = HEALTH_APT_WINDOW; the first sample of a window is the reference, and the number of
 *   its occurrences in the window (the reference itself counts 1) is compared with
 *   C = 1 + CRITBINOM(W, p, 1 - alpha), CRITBINOM(n, p, q) being the smallest k with
 *   P[Binomial(n, p) <= k] >= q (spreadsheet semantics). This is the formula of SP 800-90B
 *   as published; the "corrected" form 2 + CRITBINOM(W - 1, p, 1 - alpha) is sometimes one
 *   higher. We use the first one (slightly stricter). Fails when the count reaches C.
 * - Start-up: after creation, after every reset and after every failure (which resets),
 *   HEALTH_STARTUP_SAMPLES samples must pass before the source's output may be used. The
 *   APT window phase restarts at the reset; the start-up length is a whole number of
 *   windows, so windows then start at multiples of W of health_samples_since_startup().
 *
 * The cutoff needs P[X > k] <= alpha for alpha down to 2^-64, which is far below what
 * summing the CDF to 1 - alpha can resolve; the upper tail is summed in log space from the
 * top instead. Everything lives in the instance: one tester per source. */
#include "health.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct health {
	unsigned rct_cutoff;
	unsigned apt_cutoff;
	/* RCT state: the last value and how many times in a row it was seen (0 = none). */
	uint8_t rct_last;
	unsigned rct_count;
	/* APT state: reference value, its count, position in the window (0 = next starts). */
	uint8_t apt_ref;
	unsigned apt_count;
	unsigned apt_pos;
	/* Samples passed since the last reset (start-up included). */
	uint64_t passed;
	/* written by the source's thread, read by the event loop's status snapshots */
	_Atomic uint64_t failures_rct;
	_Atomic uint64_t failures_apt;
};

/* log(exp(a) + exp(b)) without overflow; a may be -INFINITY. */
static long double log_add(long double a, long double b)
{
	long double hi = a > b ? a : b;
	long double lo = a > b ? b : a;

	if (hi == -INFINITY) {
		return hi;
	}
	return hi + log1pl(expl(lo - hi));
}

/* 1 + CRITBINOM(n, 2^-H, 1 - 2^-alpha_log2): the smallest k with P[X > k] <= alpha, plus 1. */
static unsigned apt_cutoff(unsigned n, double min_entropy, unsigned alpha_log2)
{
	const long double ln2 = 0.693147180559945309417232121458176568L;
	/* log p and log (1 - p); expm1 keeps the latter exact for a tiny H too. */
	long double lp = -(long double)min_entropy * ln2;
	long double lq = logl(-expm1l(lp));
	long double lalpha = -(long double)alpha_log2 * ln2;
	/* log P[X = k] and log P[X > k], starting at k = n. */
	long double lpmf = (long double)n * lp;
	long double ltail = -INFINITY;
	unsigned k = n;

	/* Walk k down while P[X > k - 1] = P[X > k] + P[X = k] still stays within alpha. */
	while (k > 0) {
		long double next = log_add(ltail, lpmf);

		if (next > lalpha) {
			break;
		}
		ltail = next;
		/* P[X = k-1] = P[X = k] * k / (n - k + 1) * (1 - p) / p */
		lpmf += logl((long double)k / (long double)(n - k + 1)) + lq - lp;
		k--;
	}
	return k + 1;
}

static unsigned rct_cutoff(double min_entropy, unsigned alpha_log2)
{
	double c = ceil((double)alpha_log2 / min_entropy);

	/* A tiny H gives a cutoff no real run reaches; keep it representable. */
	if (!(c < (double)UINT_MAX - 1)) {
		return UINT_MAX;
	}
	return 1 + (unsigned)c;
}

struct health *health_new(double min_entropy, unsigned alpha_log2)
{
	struct health *h;

	if (!(min_entropy > 0 && min_entropy <= 8) || alpha_log2 < 1 || alpha_log2 > 64) {
		errno = EINVAL;
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		return NULL;
	}
	h->rct_cutoff = rct_cutoff(min_entropy, alpha_log2);
	h->apt_cutoff = apt_cutoff(HEALTH_APT_WINDOW, min_entropy, alpha_log2);
	health_reset(h);
	return h;
}

void health_free(struct health *h)
{
	free(h);
}

unsigned health_rct_cutoff(const struct health *h)
{
	return h->rct_cutoff;
}

unsigned health_apt_cutoff(const struct health *h)
{
	return h->apt_cutoff;
}

void health_reset(struct health *h)
{
	h->rct_last = 0;
	h->rct_count = 0;
	h->apt_ref = 0;
	h->apt_count = 0;
	h->apt_pos = 0;
	h->passed = 0;
}

/* Bytes as one SIMD register where the compiler has them (GCC and clang vector extensions;
 * elsewhere they are lowered to scalar code). */
typedef uint8_t v16u __attribute__((vector_size(16)));
typedef int8_t v16s __attribute__((vector_size(16)));

/* Occurrences of ref in buf[start..end) (at most HEALTH_APT_WINDOW bytes), and in *triple
 * whether three equal samples in a row end at a position j in [max(start, 2), end): the
 * vectorised scan of the fast path. */
static unsigned scan(const uint8_t *buf, size_t start, size_t end, uint8_t ref, bool *triple)
{
	v16u refv = (v16u){0} + ref;
	v16s acc = {0}, tri = {0};
	size_t j = start;
	unsigned count = 0;
	bool t = false;

	for (; j < end && j < 2; j++) {
		count += buf[j] == ref;
	}
	/* Lanes of acc count to at most HEALTH_APT_WINDOW / 16 = 32: no overflow. */
	for (; j + 16 <= end; j += 16) {
		v16u a, a1, a2;

		memcpy(&a, buf + j, sizeof(a));
		memcpy(&a1, buf + j - 1, sizeof(a1));
		memcpy(&a2, buf + j - 2, sizeof(a2));
		acc -= (v16s)(a == refv);
		tri |= (v16s)((a == a1) & (a1 == a2));
	}
	for (int k = 0; k < 16; k++) {
		count += (unsigned)(uint8_t)acc[k];
		t |= tri[k] != 0;
	}
	for (; j < end; j++) {
		count += buf[j] == ref;
		t |= buf[j] == buf[j - 1] && buf[j - 1] == buf[j - 2];
	}
	*triple = t;
	return count;
}

/* The length of the run that ends at buf[end - 1], continuing the run of run0 samples of
 * last0 that preceded buf[0]. */
static unsigned trailing_run(const uint8_t *buf, size_t end, uint8_t last0, unsigned run0)
{
	size_t k = end - 1;
	unsigned run = 1;

	while (k > 0 && buf[k - 1] == buf[k]) {
		run++;
		k--;
	}
	return k == 0 && buf[0] == last0 ? run + run0 : run;
}

int health_test(struct health *h, const uint8_t *buf, size_t n, size_t *failed_at)
{
	/* Work on locals so the inner loop stays in registers. */
	const unsigned rct_c = h->rct_cutoff;
	const unsigned apt_c = h->apt_cutoff;
	const uint8_t last0 = h->rct_last;
	const unsigned run0 = h->rct_count;
	uint8_t last = last0;
	unsigned run = run0;
	uint8_t ref = h->apt_ref;
	unsigned count = h->apt_count;
	unsigned pos = h->apt_pos;
	size_t i = 0;
	/* The fast path (a whole chunk scanned at once) is exact when no run can reach the
	 * cutoff unseen: runs of 3 are found by the scan, so it needs a cutoff of 4 or more
	 * and the run carried in (plus the buffer's leading samples equal to it) below it. */
	unsigned lead = (n > 0 && buf[0] == last0) + (n > 1 && buf[0] == last0 && buf[1] == last0);
	bool fast = rct_c >= 4 && run0 + lead < rct_c;

	while (i < n) {
		/* One pass per (part of a) window, so the inner loop has no window check. */
		size_t chunk = HEALTH_APT_WINDOW - pos;
		size_t end;
		bool triple = true;

		if (chunk > n - i) {
			chunk = n - i;
		}
		end = i + chunk;
		if (pos == 0) {
			ref = buf[i];
			count = 0; /* the loop counts the reference itself */
		}
		if (fast) {
			unsigned c = count + scan(buf, i, end, ref, &triple);

			if (!triple && c < apt_c) {
				/* Nothing can fail in this chunk: take its end state at once. */
				count = c;
				last = buf[end - 1];
				run = trailing_run(buf, end, last0, run0);
				i = end;
			}
		}
		/* The byte-at-a-time test: the reference, and what finds the failing sample. */
		for (; i < end; i++) {
			uint8_t b = buf[i];

			run = b == last ? run + 1 : 1;
			last = b;
			count += b == ref;
			if (__builtin_expect(run >= rct_c || count >= apt_c, 0)) {
				/* Both may trip on one sample; it is one failure, filed as RCT. */
				if (run >= rct_c) {
					h->failures_rct++;
				} else {
					h->failures_apt++;
				}
				health_reset(h);
				if (failed_at != NULL) {
					*failed_at = i;
				}
				return -1;
			}
		}
		pos = (unsigned)((pos + chunk) % HEALTH_APT_WINDOW);
	}
	h->rct_last = last;
	h->rct_count = run;
	h->apt_ref = ref;
	h->apt_count = count;
	h->apt_pos = pos;
	h->passed += n;
	return 0;
}

bool health_started(const struct health *h)
{
	return h->passed >= HEALTH_STARTUP_SAMPLES;
}

uint64_t health_samples_since_reset(const struct health *h)
{
	return h->passed;
}

uint64_t health_samples_since_startup(const struct health *h)
{
	return h->passed >= HEALTH_STARTUP_SAMPLES ? h->passed - HEALTH_STARTUP_SAMPLES : 0;
}

uint64_t health_failures_rct(const struct health *h)
{
	return atomic_load(&h->failures_rct);
}

uint64_t health_failures_apt(const struct health *h)
{
	return atomic_load(&h->failures_apt);
}
