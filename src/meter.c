/* meter: see meter.h. */
#include "meter.h"

void meter_sample(struct meter *m, uint64_t total)
{
	m->v[m->next] = total;
	m->next = (m->next + 1) % (METER_SECONDS + 1);
	if (m->n < METER_SECONDS + 1) {
		m->n++;
	}
}

double meter_rate(const struct meter *m)
{
	unsigned last = (m->next + METER_SECONDS) % (METER_SECONDS + 1);
	unsigned first = (m->next + METER_SECONDS + 1 - m->n) % (METER_SECONDS + 1);

	if (m->n < 2 || m->v[last] < m->v[first]) {
		return 0.0;
	}
	return (double)(m->v[last] - m->v[first]) / (double)(m->n - 1);
}
