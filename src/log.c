/* log: stderr in the foreground, syslog when daemonised. Priority per call, destination
 * chosen once; errno is preserved across every call so callers may log then inspect it. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

static struct {
	const char *ident;
	bool to_stderr;
	bool verbose;
} logcfg = {"entropyd", true, false};

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
