/* src_wake: see src_wake.h. */
#include "src_wake.h"

#include "clock.h"
#include "src_driver.h"

#include <signal.h>
#include <time.h>

#define SRC_WAKE_SIGNAL SIGUSR2
#define SRC_WAKE_EVERY_MS 20

static _Thread_local volatile sig_atomic_t src_woken;

static void src_on_wake(int sig)
{
	src_woken = 1;
}

bool src_stopping(void)
{
	return src_woken != 0;
}

void src_wake_install(void)
{
	struct sigaction sa = {.sa_handler = src_on_wake}; /* sa_flags 0: no SA_RESTART */

	sigemptyset(&sa.sa_mask);
	(void)sigaction(SRC_WAKE_SIGNAL, &sa, NULL);
}

int src_wake_join(pthread_t t, long long deadline_ms)
{
	for (;;) {
		struct timespec until;

		(void)pthread_kill(t, SRC_WAKE_SIGNAL);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += SRC_WAKE_EVERY_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		if (pthread_timedjoin_np(t, NULL, &until) == 0) {
			return 0;
		}
		if (clock_ms() >= deadline_ms) {
			return -1;
		}
	}
}
