/* bench_health: throughput of the SP 800-90B health tests (health_test) on one core, on
 * random bytes fed in 64 KiB calls, for h=8 and h=4 at alpha 2^-30. Prints GB/s. Built by
 * meson (bench_health), run by make bench, never by the tests. */
#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BUF (64u << 20)
#define CALL (64u << 10)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
	uint8_t *buf = malloc(BUF);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	const double hs[] = {8, 4};

	if (buf == NULL) {
		return 1;
	}
	for (size_t i = 0; i < BUF; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)(x >> 24);
	}
	for (size_t k = 0; k < sizeof(hs) / sizeof(hs[0]); k++) {
		struct health *h = health_new(hs[k], 30);
		double best = 0;

		for (int round = 0; round < 5; round++) {
			double t0 = now_s(), dt;
			size_t fails = 0;

			for (size_t off = 0; off < BUF; off += CALL) {
				size_t at;

				fails += health_test(h, buf + off, CALL, &at) < 0;
			}
			dt = now_s() - t0;
			best = BUF / dt / 1e9 > best ? BUF / dt / 1e9 : best;
			if (fails > 0) {
				fprintf(stderr, "bench_health: %zu failures on random data\n",
					fails);
			}
		}
		printf("health tests, h=%g alpha=2^-30: %.2f GB/s (one core, best of 5 x 64 MiB)\n",
		       hs[k], best);
		health_free(h);
	}
	free(buf);
	return 0;
}
