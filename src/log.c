/* log: stderr in the foreground, syslog when daemonised. Priority per call, destination
 * chosen once; errno is preserved across every call so callers may log then inspect it.
 * Lines a peer can cause go through a struct log_limit, so that no peer can flood the log. */
#include "log.h"

#include "clock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static struct {
	const char *ident;
	bool to_stderr;
	bool verbose;
	uint64_t (*now_ms)(void);
} logcfg = {"entropyd", true, false, NULL};

void log_init(const char *ident, bool to_stderr, bool verbose)
{
	logcfg.ident = ident;
	logcfg.to_stderr = to_stderr;
	logcfg.verbose = verbose;
	if (!to_stderr) {
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	}
}

static void vlog(int pri, const char *errstr, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (logcfg.to_stderr) {
		if (errstr != NULL) {
			fprintf(stderr, "%s: %s: %s\n", logcfg.ident, msg, errstr);
		} else {
			fprintf(stderr, "%s: %s\n", logcfg.ident, msg);
		}
	} else if (errstr != NULL) {
		syslog(pri, "%s: %s", msg, errstr);
	} else {
		syslog(pri, "%s", msg);
	}
}

/* vlog with arguments in place. */
LOG_PRINTF(2, 3) static void vlog_args(int pri, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(pri, NULL, fmt, ap);
	va_end(ap);
}

#define LOG_BODY(pri, with_errno)                                                                  \
	do {                                                                                       \
		int saved = errno;                                                                 \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		vlog(pri, (with_errno) ? strerror(saved) : NULL, fmt, ap);                         \
		va_end(ap);                                                                        \
		errno = saved;                                                                     \
	} while (0)

void log_warn(const char *fmt, ...)
{
	LOG_BODY(LOG_WARNING, true);
}

void log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_WARNING, false);
}

void log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_INFO, false);
}

void log_debug(const char *fmt, ...)
{
	if (logcfg.verbose) {
		LOG_BODY(LOG_DEBUG, false);
	}
}

void fatal(const char *fmt, ...)
{
	LOG_BODY(LOG_ERR, true);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_ERR, false);
	exit(1);
}

bool log_limit_pass(struct log_limit *l, uint64_t now_ms, unsigned long *suppressed)
{
	if (!l->started || now_ms < l->last_ms) {
		l->started = true;
		l->tokens = LOG_LIMIT_BURST;
		l->last_ms = now_ms;
	}
	uint64_t add = (now_ms - l->last_ms) / LOG_LIMIT_PERIOD_MS;

	if (add > 0) {
		l->tokens = add >= LOG_LIMIT_BURST - l->tokens ? LOG_LIMIT_BURST
							       : l->tokens + (unsigned)add;
		l->last_ms += add * LOG_LIMIT_PERIOD_MS;
	}
	if (l->tokens == LOG_LIMIT_BURST) {
		l->last_ms = now_ms; /* a full bucket stores no progress towards the next token */
	}
	if (l->tokens == 0) {
		l->suppressed++;
		return false;
	}
	l->tokens--;
	*suppressed = l->suppressed;
	l->suppressed = 0;
	return true;
}

void log_set_clock(uint64_t (*now_ms)(void))
{
	logcfg.now_ms = now_ms;
}

void log_limited(struct log_limit *l, int prio, const char *fmt, ...)
{
	int saved = errno;
	unsigned long held = 0;
	char msg[900];
	va_list ap;

	if ((prio == LOG_DEBUG && !logcfg.verbose) ||
	    !log_limit_pass(l, logcfg.now_ms != NULL ? logcfg.now_ms() : (uint64_t)clock_ms(),
			    &held)) {
		errno = saved;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (held > 0) {
		vlog_args(prio, "%s (%lu similar lines suppressed)", msg, held);
	} else {
		vlog_args(prio, "%s", msg);
	}
	errno = saved;
}
