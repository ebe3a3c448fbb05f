/* log: one logging API for the whole daemon (stderr in the foreground, syslog otherwise).
 * Callers pick a priority per call; the destination is chosen once by log_init(). */
#ifndef ENTROPYD_LOG_H
#define ENTROPYD_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Choose the destination (stderr or syslog) and whether debug lines are shown. */
void log_init(const char *ident, bool to_stderr, bool verbose);
/* Warning with ": strerror(errno)" appended; errno is preserved. */
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
/* Warning without errno. */
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
/* Informational line. */
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
/* Debug line, shown only with --verbose. */
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
/* Start-up only: log with strerror(errno) and exit(1). */
_Noreturn void fatal(const char *fmt, ...) LOG_PRINTF(1, 2);
/* Start-up only: log and exit(1). */
_Noreturn void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2);

/* Lines a struct log_limit lets through at once, then one per LOG_LIMIT_PERIOD_MS. */
#define LOG_LIMIT_BURST 10u
#define LOG_LIMIT_PERIOD_MS 1000u

/* One category of lines a peer can cause (zero-initialise it): a burst, then one a second;
 * the next line that passes carries the count of those held back. */
struct log_limit {
	bool started;
	unsigned tokens;
	uint64_t last_ms;
	unsigned long suppressed;
};

/* Pure: may a line of l pass at now_ms? If so *suppressed is set to the number held back
 * since the last that passed; if not, that count grows. */
bool log_limit_pass(struct log_limit *l, uint64_t now_ms, unsigned long *suppressed);
/* Log at prio (LOG_WARNING, LOG_INFO, LOG_DEBUG) through limit l, appending
 * " (N similar lines suppressed)" when some were. */
void log_limited(struct log_limit *l, int prio, const char *fmt, ...) LOG_PRINTF(3, 4);
/* Tests only: the millisecond clock log_limited reads (NULL: the monotonic clock). */
void log_set_clock(uint64_t (*now_ms)(void));

#endif
