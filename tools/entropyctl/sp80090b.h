/* sp80090b: the non-IID min-entropy estimators of NIST SP 800-90B section 6.3, for a source
 * of 8-bit samples, as `entropyctl test` runs them. Pure functions over a buffer: no I/O.
 *
 * Most common value (6.3.1), t-tuple (6.3.5) and longest repeated substring (6.3.6) run on
 * the bytes. Collision (6.3.2), Markov (6.3.3) and compression (6.3.4) are defined by the
 * standard for binary samples only, so they run on the bit string (each byte, most
 * significant bit first) and their per-bit estimate is scaled by 8, as the standard's
 * reference tool does for non-binary data. Every estimate is in bits per byte; the
 * assessment is their minimum. The predictor estimators (6.3.7-6.3.10) are not run. */
#ifndef ENTROPYCTL_SP80090B_H
#define ENTROPYCTL_SP80090B_H

#include <stddef.h>
#include <stdint.h>

/* An estimator that does not apply to the data (too few samples) reports this. */
#define SP80090B_NA (-1.0)

/* Each estimate in bits per byte (SP80090B_NA when it does not apply) and the minimum. */
struct sp80090b_result {
	double mcv, collision, markov, compression, tuple, lrs;
	double min;
};

/* 6.3.1: most common value over n samples; bits per sample (upper-bounded p). */
double sp80090b_mcv(const uint8_t *s, size_t n);
/* 6.3.2: collision estimate over n bits (each 0 or 1); bits per bit, NA below 3 bits. */
double sp80090b_collision(const uint8_t *bits, size_t n);
/* 6.3.3: Markov estimate over n bits (each 0 or 1); bits per bit, NA below 2 bits. */
double sp80090b_markov(const uint8_t *bits, size_t n);
/* 6.3.4: compression estimate over n bits (each 0 or 1); bits per bit, NA below 6006 bits. */
double sp80090b_compression(const uint8_t *bits, size_t n);
/* 6.3.5 and 6.3.6: t-tuple and LRS estimates over n samples, bits per sample, into *tuple
 * and *lrs (NA where the standard's tuple lengths do not exist); -1 if out of memory. */
int sp80090b_tuple_lrs(const uint8_t *s, size_t n, double *tuple, double *lrs);
/* Expand n bytes into 8n bits, most significant first (bits holds 8n bytes). */
void sp80090b_bits(const uint8_t *bytes, size_t n, uint8_t *bits);
/* Run every estimator over n bytes into r; -1 if out of memory. */
int sp80090b_assess(const uint8_t *s, size_t n, struct sp80090b_result *r);

#endif
