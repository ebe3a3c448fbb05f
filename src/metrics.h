/* metrics: the status document (stats.h) in the Prometheus text exposition format, for
 * `/metrics`: counters end in _total, sizes in _bytes, label values are escaped. Pure: JSON
 * in, text out. */
#ifndef ENTROPYD_METRICS_H
#define ENTROPYD_METRICS_H

#include <stdio.h>

struct json_object;

/* Write the metrics of the status document st to out. */
void metrics_write(struct json_object *st, FILE *out);

#endif
