/* log: one logging API for the whole daemon (stderr in the foreground, syslog otherwise).
 * Callers pick a priority per call; the destination is chosen once by log_init(). */
#ifndef ENTROPYD_LOG_H
#define ENTROPYD_LOG_H

#include <stdbool.h>

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

#endif
