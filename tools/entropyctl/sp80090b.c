/* sp80090b: NIST SP 800-90B (January 2018) section 6.3 non-IID estimators; see sp80090b.h.
 *
 * Each estimator bounds the probability p of the most likely outcome from above at 99 %
 * confidence where the standard says so (Z = 2.576: MCV, collision, compression, t-tuple,
 * LRS; Markov has no bound) and returns -log2(p) per sample. Written from the standard's
 * text; numbers were cross-checked against brute-force versions in the unit tests.
 *
 * t-tuple and LRS need, for every length W, the count of the most common W-tuple and the
 * number of pairs of equal W-tuples. Both come from one suffix array with its LCP array:
 * the suffixes that start with one W-tuple are a run of the array whose neighbouring LCPs
 * are all >= W, and a pair of suffixes shares a W-prefix iff the minimum LCP between them
 * is >= W. One stack pass over the LCPs gives, for each LCP value, the widest run it
 * bounds and the number of pairs whose minimum it is. */
#include "sp80090b.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define Z_99 2.5758293035489008

/* p plus its one-sided 99 % bound over n samples, at most 1. */
static double upper_bound(double p, size_t n)
{
	double pu = p + Z_99 * sqrt(p * (1.0 - p) / ((double)n - 1.0));

	return pu < 1.0 ? pu : 1.0;
}

static double entropy_of(double p)
{
	return p >= 1.0 ? 0.0 : -log2(p);
}

double sp80090b_mcv(const uint8_t *s, size_t n)
{
	size_t count[256] = {0}, most = 0;

	if (n < 2) {
		return SP80090B_NA;
	}
	for (size_t i = 0; i < n; i++) {
		count[s[i]]++;
	}
	for (int v = 0; v < 256; v++) {
		most = count[v] > most ? count[v] : most;
	}
	return entropy_of(upper_bound((double)most / (double)n, n));
}

double sp80090b_collision(const uint8_t *bits, size_t n)
{
	double sum = 0, sumsq = 0, mean, sd, xbar, p;
	size_t v = 0, i = 0;

	/* A run ends at its first repeat: two equal bits (t = 2), otherwise the third (t = 3). */
	while (i + 1 < n) {
		unsigned t = bits[i] == bits[i + 1] ? 2 : 3;

		if (t == 3 && i + 2 >= n) {
			break;
		}
		sum += t;
		sumsq += (double)t * t;
		v++;
		i += t;
	}
	if (v < 2) {
		return SP80090B_NA;
	}
	mean = sum / (double)v;
	sd = sqrt(fmax(0.0, (sumsq - (double)v * mean * mean) / ((double)v - 1.0)));
	xbar = mean - Z_99 * sd / sqrt((double)v);
	/* E[t] = 2 + 2p(1-p) for a bit that is 1 with probability p. */
	if (xbar >= 2.5) {
		return 1.0;
	}
	p = 0.5 + sqrt(1.25 - 0.5 * xbar);
	return entropy_of(p);
}

double sp80090b_markov(const uint8_t *bits, size_t n)
{
	size_t c0 = 0, c00 = 0, c10 = 0, c1;
	double p0, p1, p00, p01, p10, p11, h = 128.0;

	if (n < 2) {
		return SP80090B_NA;
	}
	for (size_t i = 0; i + 1 < n; i++) {
		if (bits[i] == 0) {
			c0++;
			c00 += bits[i + 1] == 0;
		} else {
			c10 += bits[i + 1] == 0;
		}
	}
	c1 = n - 1 - c0;
	p00 = c0 ? (double)c00 / (double)c0 : 0.0;
	p01 = c0 ? 1.0 - p00 : 0.0;
	p10 = c1 ? (double)c10 / (double)c1 : 0.0;
	p11 = c1 ? 1.0 - p10 : 0.0;
	p0 = (double)(c0 + (bits[n - 1] == 0)) / (double)n;
	p1 = 1.0 - p0;
	/* The most likely 128-bit sequence is one of these six (the standard's list). */
	if (p00 > 0) {
		h = fmin(h, -log2(p0) - 127 * log2(p00));
	}
	if (p01 > 0 && p10 > 0) {
		h = fmin(h, -log2(p0) - 64 * log2(p01) - 63 * log2(p10));
		h = fmin(h, -log2(p1) - 64 * log2(p10) - 63 * log2(p01));
	}
	if (p01 > 0 && p11 > 0) {
		h = fmin(h, -log2(p0) - log2(p01) - 126 * log2(p11));
	}
	if (p10 > 0 && p00 > 0) {
		h = fmin(h, -log2(p1) - log2(p10) - 126 * log2(p00));
	}
	if (p11 > 0) {
		h = fmin(h, -log2(p1) - 127 * log2(p11));
	}
	return fmin(h / 128.0, 1.0);
}

#define COMP_B 6
#define COMP_D 1000

/* The standard's G(z) over blocks d+1..nb: (1/v) sum_t sum_u log2(u) F(z, t, u), summed in
 * one pass: with a_u = log2(u) (1-z)^(u-1), sum_t [z^2 sum_{u<t} a_u + z a_t]. */
static double comp_g(double z, long nb)
{
	long double pw = 1.0L, a, pairs = 0, tail = 0;
	long v = nb - COMP_D;

	for (long u = 1; u <= nb; u++) {
		a = log2l((long double)u) * pw;
		if (u <= COMP_D) {
			pairs += (long double)v * a;
		} else {
			tail += a;
			if (u < nb) {
				pairs += (long double)(nb - u) * a;
			}
		}
		pw *= 1.0L - (long double)z;
		if (pw < 1e-40L) {
			break;
		}
	}
	return (double)((z * (long double)z * pairs + z * tail) / v);
}

static double comp_expect(double p, long nb)
{
	const double k = 1 << COMP_B;

	return comp_g(p, nb) + (k - 1) * comp_g((1.0 - p) / (k - 1), nb);
}

double sp80090b_compression(const uint8_t *bits, size_t n)
{
	long nb = (long)(n / COMP_B), last[1 << COMP_B] = {0};
	double sum = 0, sumsq = 0, mean, sd, xbar, lo, hi;
	long v = nb - COMP_D;

	if (nb <= COMP_D + 1) {
		return SP80090B_NA;
	}
	for (long i = 0; i < nb; i++) {
		unsigned blk = 0;

		for (int j = 0; j < COMP_B; j++) {
			blk = (blk << 1) | (bits[i * COMP_B + j] & 1u);
		}
		/* Blocks are numbered from 1; the first d only fill the dictionary. */
		if (i >= COMP_D) {
			double d = log2((double)(i + 1 - last[blk]));

			sum += d;
			sumsq += d * d;
		}
		last[blk] = i + 1;
	}
	mean = sum / (double)v;
	sd = 0.5907 * sqrt(fmax(0.0, sumsq / ((double)v - 1.0) - mean * mean));
	xbar = mean - Z_99 * sd / sqrt((double)v);
	lo = 1.0 / (1 << COMP_B);
	if (comp_expect(lo, nb) <= xbar) {
		return 1.0;
	}
	/* The expectation falls as p rises: bisect for comp_expect(p) = xbar. */
	hi = 1.0;
	for (int it = 0; it < 60; it++) {
		double mid = (lo + hi) / 2;

		if (comp_expect(mid, nb) > xbar) {
			lo = mid;
		} else {
			hi = mid;
		}
	}
	return fmin(1.0, entropy_of((lo + hi) / 2) / COMP_B);
}

/* Stable counting sort of the positions in from by rank, into to. */
static void rank_sort(const int32_t *from, int32_t *to, const int32_t *rank, int32_t n,
		      int32_t *cnt, int32_t m)
{
	memset(cnt, 0, sizeof(int32_t) * ((size_t)m + 1));
	for (int32_t i = 0; i < n; i++) {
		cnt[rank[i] + 1]++;
	}
	for (int32_t c = 1; c <= m; c++) {
		cnt[c] += cnt[c - 1];
	}
	for (int32_t j = 0; j < n; j++) {
		to[cnt[rank[from[j]]]++] = from[j];
	}
}

/* Suffix array of s by prefix doubling (ranks of the first 2k bytes from those of k). */
static int32_t *suffix_array(const uint8_t *s, int32_t n)
{
	int32_t *sa = malloc(sizeof(int32_t) * n), *rank = malloc(sizeof(int32_t) * n);
	int32_t *tmp = malloc(sizeof(int32_t) * n);
	int32_t m = n > 256 ? n : 256, *cnt = malloc(sizeof(int32_t) * ((size_t)m + 1));

	if (sa == NULL || rank == NULL || tmp == NULL || cnt == NULL) {
		free(sa);
		sa = NULL;
		goto out;
	}
	for (int32_t i = 0; i < n; i++) {
		rank[i] = s[i];
		tmp[i] = i;
	}
	rank_sort(tmp, sa, rank, n, cnt, m);
	for (int32_t k = 1; k < n; k <<= 1) {
		int32_t p = 0, classes = 1;

		/* Order by the second key (rank at i + k; none sorts first), then stably by the
		 * first. */
		for (int32_t i = n - k; i < n; i++) {
			tmp[p++] = i;
		}
		for (int32_t j = 0; j < n; j++) {
			if (sa[j] >= k) {
				tmp[p++] = sa[j] - k;
			}
		}
		rank_sort(tmp, sa, rank, n, cnt, m);
		tmp[sa[0]] = 0;
		for (int32_t j = 1; j < n; j++) {
			int32_t a = sa[j - 1], b = sa[j];
			bool same = rank[a] == rank[b] && (a + k < n ? rank[a + k] : -1) ==
							      (b + k < n ? rank[b + k] : -1);

			classes += !same;
			tmp[b] = classes - 1;
		}
		memcpy(rank, tmp, sizeof(int32_t) * n);
		if (classes == n) {
			break;
		}
	}
out:
	free(rank);
	free(tmp);
	free(cnt);
	return sa;
}

/* lcp[j] = common prefix of the suffixes sa[j-1] and sa[j] (lcp[0] = 0), Kasai's method. */
static int32_t *lcp_array(const uint8_t *s, const int32_t *sa, int32_t n)
{
	int32_t *lcp = malloc(sizeof(int32_t) * n), *inv = malloc(sizeof(int32_t) * n);
	int32_t h = 0;

	if (lcp == NULL || inv == NULL) {
		free(lcp);
		free(inv);
		return NULL;
	}
	for (int32_t j = 0; j < n; j++) {
		inv[sa[j]] = j;
	}
	lcp[0] = 0;
	for (int32_t i = 0; i < n; i++) {
		if (inv[i] == 0) {
			h = 0;
			continue;
		}
		int32_t o = sa[inv[i] - 1];

		while (i + h < n && o + h < n && s[i + h] == s[o + h]) {
			h++;
		}
		lcp[inv[i]] = h;
		h = h > 0 ? h - 1 : 0;
	}
	free(inv);
	return lcp;
}

/* From the LCPs: most[w] = count of the most common w-tuple, pairs[w] = pairs of equal
 * w-tuples, for w in 1..n (arrays of n + 2). lcp[1..n-1] entries bound runs of suffixes. */
static int tuple_counts(const int32_t *lcp, int32_t n, int64_t *most, double *pairs)
{
	int32_t *left = malloc(sizeof(int32_t) * n), *stack = malloc(sizeof(int32_t) * n);
	int32_t top = 0;

	if (left == NULL || stack == NULL) {
		free(left);
		free(stack);
		return -1;
	}
	for (int32_t w = 0; w <= n + 1; w++) {
		most[w] = 1;
		pairs[w] = 0;
	}
	/* left[j]: first index of the run of entries >= lcp[j] ending at j (strictly less
	 * stops it); the right end is found when a smaller-or-equal entry pops j. */
	for (int32_t j = 1; j <= n; j++) {
		int32_t cur = j < n ? lcp[j] : -1;

		while (top > 0 && lcp[stack[top - 1]] >= cur) {
			int32_t k = stack[--top], l = left[k], r = j - 1;
			int64_t width = (int64_t)r - l + 2;

			/* Entries lcp[l..r] are >= lcp[k]: width suffixes share lcp[k] bytes, and
			 * lcp[k] is the minimum for (k - l + 1) * (r - k + 1) pairs, ties going
			 * to the rightmost. */
			if (width > most[lcp[k]]) {
				most[lcp[k]] = width;
			}
			pairs[lcp[k]] += (double)(k - l + 1) * (double)(r - k + 1);
		}
		if (j < n) {
			left[j] = top > 0 ? stack[top - 1] + 1 : 1;
			stack[top++] = j;
		}
	}
	/* A run with minimum m also holds for every shorter length. */
	for (int32_t w = n; w >= 1; w--) {
		most[w] = most[w + 1] > most[w] ? most[w + 1] : most[w];
		pairs[w] += pairs[w + 1];
	}
	free(left);
	free(stack);
	return 0;
}

#define TUPLE_CUTOFF 35

/* 6.3.5 from most[]: t is the largest length whose most common tuple occurs >= 35 times. */
static double tuple_estimate(const int64_t *most, int32_t n, int32_t *t_out)
{
	double pmax = 0;
	int32_t t = 0;

	while (t + 1 <= n && most[t + 1] >= TUPLE_CUTOFF) {
		t++;
	}
	*t_out = t;
	if (t == 0) {
		return SP80090B_NA;
	}
	for (int32_t i = 1; i <= t; i++) {
		double p = (double)most[i] / (double)(n - i + 1);

		pmax = fmax(pmax, pow(p, 1.0 / i));
	}
	return entropy_of(upper_bound(pmax, (size_t)n));
}

/* 6.3.6 from pairs[]: lengths u = t + 1 up to v, the longest that repeats. */
static double lrs_estimate(const double *pairs, int32_t n, int32_t t)
{
	int32_t u = t + 1, v = 0;
	double pmax = 0;

	for (int32_t w = n; w >= 1 && v == 0; w--) {
		v = pairs[w] > 0 ? w : 0;
	}
	if (v < u) {
		return SP80090B_NA;
	}
	for (int32_t w = u; w <= v; w++) {
		double m = (double)(n - w + 1), p = pairs[w] / (m * (m - 1) / 2);

		pmax = fmax(pmax, pow(p, 1.0 / w));
	}
	return entropy_of(upper_bound(pmax, (size_t)n));
}

int sp80090b_tuple_lrs(const uint8_t *s, size_t len, double *tuple, double *lrs)
{
	int32_t n = (int32_t)len, t, *sa, *lcp = NULL;
	int64_t *most = NULL;
	double *pairs = NULL;
	int rc = -1;

	*tuple = *lrs = SP80090B_NA;
	if (len < 2 || len > INT32_MAX / 2) {
		return len < 2 ? 0 : -1;
	}
	sa = suffix_array(s, n);
	if (sa != NULL) {
		lcp = lcp_array(s, sa, n);
	}
	most = malloc(sizeof(int64_t) * ((size_t)n + 2));
	pairs = malloc(sizeof(double) * ((size_t)n + 2));
	if (lcp != NULL && most != NULL && pairs != NULL &&
	    tuple_counts(lcp, n, most, pairs) == 0) {
		*tuple = tuple_estimate(most, n, &t);
		*lrs = lrs_estimate(pairs, n, t);
		rc = 0;
	}
	free(sa);
	free(lcp);
	free(most);
	free(pairs);
	return rc;
}

void sp80090b_bits(const uint8_t *bytes, size_t n, uint8_t *bits)
{
	for (size_t i = 0; i < n; i++) {
		for (int j = 0; j < 8; j++) {
			bits[i * 8 + (size_t)j] = (bytes[i] >> (7 - j)) & 1u;
		}
	}
}

/* A per-bit estimate as bits per byte (NA stays NA). */
static double per_byte(double per_bit)
{
	return per_bit < 0 ? SP80090B_NA : 8.0 * per_bit;
}

int sp80090b_assess(const uint8_t *s, size_t n, struct sp80090b_result *r)
{
	uint8_t *bits = calloc(n * 8 + 1, 1);
	const double *all[] = {&r->mcv,		&r->collision, &r->markov,
			       &r->compression, &r->tuple,     &r->lrs};

	if (bits == NULL) {
		return -1;
	}
	sp80090b_bits(s, n, bits);
	r->mcv = sp80090b_mcv(s, n);
	r->collision = per_byte(sp80090b_collision(bits, n * 8));
	r->markov = per_byte(sp80090b_markov(bits, n * 8));
	r->compression = per_byte(sp80090b_compression(bits, n * 8));
	free(bits);
	if (sp80090b_tuple_lrs(s, n, &r->tuple, &r->lrs) < 0) {
		return -1;
	}
	r->min = 8.0;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (*all[i] >= 0) {
			r->min = fmin(r->min, *all[i]);
		}
	}
	return 0;
}
