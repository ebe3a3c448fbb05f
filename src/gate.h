/* gate: health-gated release of bytes. Bytes pass the start-up test, then are released
 * only in whole APT windows that passed; a failure discards the window in progress and the
 * chunk being tested, and the tester starts over. Pure: the caller decides where released
 * bytes go (a callback) and the gate never blocks. */
#ifndef ENTROPYD_GATE_H
#define ENTROPYD_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gate;
struct health;

/* What one gate_feed() did. After a failure the rest of the chunk is tested as the next
 * start-up test, so one chunk may hold several failures and a new start. */
struct gate_result {
	size_t released;   /* bytes handed to the callback */
	size_t discarded;  /* bytes dropped: start-up samples and windows that failed */
	bool started_now;  /* a start-up test completed in this call (and no failure after) */
	bool failed;	   /* a test failed */
	bool failed_rct;   /* ... the first failure was the repetition count test */
	size_t failed_at;  /* index in the chunk of the first failing sample */
	unsigned failures; /* failures in this chunk */
};

typedef void (*gate_out_fn)(void *arg, const uint8_t *p, size_t n);

/* New gate with its own tester (see health_new); NULL on bad parameters. */
struct gate *gate_new(double min_entropy, unsigned alpha_log2);
/* Wipe and free. */
void gate_free(struct gate *g);
/* Its tester, for cutoffs and counters. */
const struct health *gate_health(const struct gate *g);
/* Test buf[0..n) and release every window it completes through out(arg, …). */
void gate_feed(struct gate *g, const uint8_t *buf, size_t n, gate_out_fn out, void *arg,
	       struct gate_result *res);
/* Drop the window in progress and restart the start-up test; returns bytes dropped. */
size_t gate_reset(struct gate *g);
/* True once the start-up test passed (and no failure since). */
bool gate_started(const struct gate *g);

#endif
