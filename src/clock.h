/* clock: the daemon's one monotonic clock. (libqng keeps its own, qng_now_ms, because it
 * includes nothing from the daemon.) */
#ifndef ENTROPYD_CLOCK_H
#define ENTROPYD_CLOCK_H

/* Milliseconds of CLOCK_MONOTONIC. */
long long clock_ms(void);

#endif
