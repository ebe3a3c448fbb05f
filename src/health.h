/* health: NIST SP 800-90B continuous health tests (Repetition Count and Adaptive
 * Proportion) plus the start-up test, one independent instance per source.
 * Pure: bytes in, verdicts out; no I/O, no global state. */
#ifndef ENTROPYD_HEALTH_H
#define ENTROPYD_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Samples tested (and discarded) after every reset before output may be used. */
#define HEALTH_STARTUP_SAMPLES 1024u
/* APT window for non-binary (byte) samples. */
#define HEALTH_APT_WINDOW 512u

struct health;

/* New tester assuming min_entropy bits per byte (0 < H <= 8) and a false-positive
 * probability of 2^-alpha_log2 (1..64); NULL on bad parameters (errno = EINVAL). */
struct health *health_new(double min_entropy, unsigned alpha_log2);
/* Free a tester. */
void health_free(struct health *h);
/* RCT cutoff: fail when one value repeats this many times in a row. */
unsigned health_rct_cutoff(const struct health *h);
/* APT cutoff: fail when the window's first value occurs this many times in the window. */
unsigned health_apt_cutoff(const struct health *h);
/* Test n samples; returns 0 if all passed, or -1 and sets *failed_at to the index in buf of
 * the sample that failed (the tester is then reset to the start-up state). */
int health_test(struct health *h, const uint8_t *buf, size_t n, size_t *failed_at);
/* True once HEALTH_STARTUP_SAMPLES consecutive samples passed since the last reset. */
bool health_started(const struct health *h);
/* Samples passed since the start-up test completed (0 while starting); windows of the APT
 * start at multiples of HEALTH_APT_WINDOW of this count. */
uint64_t health_samples_since_startup(const struct health *h);
/* Samples passed since the last reset, start-up samples included. */
uint64_t health_samples_since_reset(const struct health *h);
/* Back to the start-up state (after a failure or re-open). */
void health_reset(struct health *h);
/* Number of failures seen so far (RCT and APT); safe to call from any thread. */
uint64_t health_failures_rct(const struct health *h);
uint64_t health_failures_apt(const struct health *h);

#endif
