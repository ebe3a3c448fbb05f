/* meter: the rate of a growing counter over the last METER_SECONDS seconds, from one sample
 * of its total a second. Pure: the caller samples (a 1 s timer) and asks. */
#ifndef ENTROPYD_METER_H
#define ENTROPYD_METER_H

#include <stdint.h>

#define METER_SECONDS 10

/* The last METER_SECONDS + 1 samples of a counter; zero-initialise. */
struct meter {
	uint64_t v[METER_SECONDS + 1];
	unsigned n, next;
};

/* Record the counter's total now (called once a second). */
void meter_sample(struct meter *m, uint64_t total);
/* Units per second over the samples held (up to METER_SECONDS s); 0 with fewer than two. */
double meter_rate(const struct meter *m);

#endif
