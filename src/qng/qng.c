/* qng: the ComScire QNG protocol over a byte pipe (facts/qng-device.md); commands are
 * single bytes, replies have fixed lengths.
 *
 *   initialise  stop (0xE0) and drain (our addition: a device left streaming by an earlier
 *               session would bury the answers); delimit (0x60) twice: the two 6-byte
 *               answers must agree and are the delimiter; clear the statistics flag (0xC0);
 *               then start.
 *   start       stop and drain; delimit and read until the last 6 bytes read are the
 *               delimiter; 0x96; read and discard the first 256 bytes. Up to start_tries
 *               attempts (the vendor's 40), only at a (re)open.
 *   check       stop and drain; delimit and sync as above; 0xB0 -> 4-byte status word
 *               (little endian); delimit again, and its answer must come next (a status
 *               reply of the wrong length shows up here). The check passes if "enabled"
 *               (0x1) is set and "bad statistics" (0x4) is clear.
 *
 * Hold-back design: streamed bytes are collected into a block of check_bytes (fewer once
 * the block has taken check_ms), then a check runs, and only a passing check releases the
 * block to the caller; the next block starts with 0x96, whose first 256 bytes are dropped.
 * A failed check, a stall (a streaming read that gets nothing for stream_timeout_ms), a
 * pipe error or unplug, a garbage reply or a delimiter mismatch wipes the block, returns -1
 * and leaves the device failed until qng_start() (close, reopen, initialise, start). So no
 * byte is handed out unless a status check made after it was read passed, and no byte read
 * in the call that detects a failure, or since the last passing check, is ever returned. */
#include "qng.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bytes a stopped device may still send (its FIFO, in-flight USB transfers) before it is
 * declared to ignore the stop command. */
#define QNG_DRAIN_MAX (4u * 1024u * 1024u)

/* Return codes of the helpers: -1 the pipe failed or the device does not stream (no
 * retry), -2 a command timed out or got a wrong reply (the start sequence may retry). */
#define QNG_EIO (-1)
#define QNG_EPROTO (-2)

enum qng_state { QNG_CLOSED, QNG_STREAMING, QNG_STOPPED, QNG_FAILED };

struct qng {
	const struct qng_pipe_ops *ops;
	void *ctx;
	char *serial;
	struct qng_params p;
	enum qng_state state;
	bool open;
	uint8_t delim[QNG_DELIM_LEN];
	uint8_t *block; /* p.check_bytes; bytes [ready_off, ready_off + ready_len) passed */
	size_t ready_off, ready_len;
	uint64_t checks_passed;
	qng_log_fn log; /* NULL: log nothing */
	void *log_arg;
	uint8_t scratch[4096];
};

void qng_params_default(struct qng_params *p)
{
	p->cmd_timeout_ms = 100;
	p->drain_ms = 100;
	p->stream_timeout_ms = 5000;
	p->check_bytes = 64u * 1024u;
	p->check_ms = 1000;
	p->start_tries = 40;
}

int qng_generation(const char *serial)
{
	if (serial == NULL || strncmp(serial, "QWR", 3) != 0) {
		return -1;
	}
	switch (serial[3]) {
	case '1':
		return 1;
	case '2':
	case '3':
		return 2;
	case '4':
	case '5':
	case '6':
		return 3;
	case '7':
		return 4;
	case '8':
		return 5;
	default:
		return -1;
	}
}

static bool is_qng_id(const struct qng_usb_id *d)
{
	return d->vid == 0x0403 && (d->pid == 0x6001 || d->pid == 0x6014) &&
	       strncmp(d->serial, "QWR", 3) == 0;
}

int qng_pick_device(const struct qng_usb_id *devs, size_t n, const char *want, char *err,
		    size_t errlen)
{
	size_t len;

	for (size_t i = 0; i < n; i++) {
		if (is_qng_id(&devs[i]) &&
		    (want == NULL || want[0] == '\0' || strcmp(devs[i].serial, want) == 0)) {
			return (int)i;
		}
	}
	if (want != NULL && want[0] != '\0') {
		len = (size_t)snprintf(err, errlen, "no ComScire QNG with serial %s", want);
	} else {
		len = (size_t)snprintf(err, errlen, "no ComScire QNG (FTDI USB serial QWR...)");
	}
	if (n == 0) {
		snprintf(err + (len < errlen ? len : errlen), len < errlen ? errlen - len : 0,
			 ": no FTDI USB device (0403:6001, 0403:6014) is attached");
		return -1;
	}
	for (size_t i = 0; i < n && len < errlen; i++) {
		len += (size_t)snprintf(err + len, errlen - len, "%s%04x:%04x serial %s%s%s%s",
					i == 0 ? "; FTDI devices seen: " : ", ", devs[i].vid,
					devs[i].pid,
					devs[i].serial[0] ? devs[i].serial : "(unreadable)",
					is_qng_id(&devs[i]) ? "" : " (not a QNG)",
					devs[i].note[0] ? " " : "", devs[i].note);
	}
	return -1;
}

struct qng *qng_new(const struct qng_pipe_ops *ops, void *ctx, const char *serial,
		    const struct qng_params *p)
{
	struct qng *q = calloc(1, sizeof(*q));

	if (q == NULL) {
		return NULL;
	}
	q->ops = ops;
	q->ctx = ctx;
	q->p = *p;
	q->state = QNG_CLOSED;
	q->block = malloc(p->check_bytes);
	q->serial = serial != NULL && serial[0] != '\0' ? strdup(serial) : NULL;
	if (q->block == NULL || p->check_bytes == 0 ||
	    (serial != NULL && serial[0] != '\0' && q->serial == NULL)) {
		free(q->block);
		free(q->serial);
		free(q);
		return NULL;
	}
	return q;
}

void qng_set_log(struct qng *q, qng_log_fn fn, void *arg)
{
	q->log = fn;
	q->log_arg = arg;
}

/* One log line through the caller's callback, if any. */
__attribute__((format(printf, 3, 4))) static void
qlog(const struct qng *q, enum qng_log_level level, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (q->log == NULL) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	q->log(q->log_arg, level, line);
}

static const char *qname(const struct qng *q)
{
	const char *n = q->ops->name != NULL && q->open ? q->ops->name(q->ctx) : NULL;

	return n != NULL ? n : q->serial != NULL ? q->serial : "QNG";
}

static const char *pipe_error(const struct qng *q)
{
	const char *e = q->ops->error != NULL ? q->ops->error(q->ctx) : NULL;

	return e != NULL ? e : "I/O error";
}

long qng_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmd(struct qng *q, uint8_t c, char *err, size_t errlen)
{
	if (q->ops->write(q->ctx, &c, 1) < 0) {
		snprintf(err, errlen, "%s: sending command 0x%02X: %s", qname(q), c, pipe_error(q));
		return QNG_EIO;
	}
	return 0;
}

/* Read exactly n bytes of a reply to command c. */
static int reply(struct qng *q, uint8_t c, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	size_t got = 0;

	while (got < n) {
		long r = q->ops->read(q->ctx, buf + got, n - got, q->p.cmd_timeout_ms);

		if (r < 0) {
			snprintf(err, errlen, "%s: reading the reply to 0x%02X: %s", qname(q), c,
				 pipe_error(q));
			return QNG_EIO;
		}
		if (r == 0) {
			snprintf(err, errlen,
				 "%s: reply to 0x%02X short: %zu of %zu bytes within %d ms",
				 qname(q), c, got, n, q->p.cmd_timeout_ms);
			return QNG_EPROTO;
		}
		got += (size_t)r;
	}
	return 0;
}

/* Read and drop whatever arrives until the device is quiet for drain_ms. Ending early on a
 * slow line is harmless: the delimiter sync that follows skips stream bytes. */
static int drain(struct qng *q, char *err, size_t errlen)
{
	size_t total = 0;

	for (;;) {
		long r = q->ops->read(q->ctx, q->scratch, sizeof(q->scratch), q->p.drain_ms);

		if (r < 0) {
			snprintf(err, errlen, "%s: draining after 0xE0: %s", qname(q),
				 pipe_error(q));
			return QNG_EIO;
		}
		if (r == 0) {
			return 0;
		}
		explicit_bzero(q->scratch, (size_t)r);
		total += (size_t)r;
		if (total > QNG_DRAIN_MAX) {
			snprintf(err, errlen,
				 "%s: still sending after the stop command (%zu bytes)", qname(q),
				 total);
			return QNG_EPROTO;
		}
	}
}

/* Delimit, then read until the last 6 bytes read are the delimiter. */
static int sync_delim(struct qng *q, char *err, size_t errlen)
{
	uint8_t tail[QNG_DELIM_LEN];
	size_t total = 0;
	int rc = cmd(q, QNG_CMD_DELIMIT, err, errlen);

	if (rc < 0) {
		return rc;
	}
	for (;;) {
		long r = q->ops->read(q->ctx, q->scratch, sizeof(q->scratch), q->p.cmd_timeout_ms);
		size_t k = (size_t)r;

		if (r < 0) {
			snprintf(err, errlen, "%s: waiting for the delimiter: %s", qname(q),
				 pipe_error(q));
			return QNG_EIO;
		}
		if (r == 0) {
			snprintf(err, errlen,
				 "%s: delimiter not received within %d ms (%zu other bytes)",
				 qname(q), q->p.cmd_timeout_ms, total);
			return QNG_EPROTO;
		}
		if (k >= QNG_DELIM_LEN) {
			memcpy(tail, q->scratch + k - QNG_DELIM_LEN, QNG_DELIM_LEN);
		} else {
			memmove(tail, tail + k, QNG_DELIM_LEN - k);
			memcpy(tail + QNG_DELIM_LEN - k, q->scratch, k);
		}
		explicit_bzero(q->scratch, k);
		total += k;
		if (total >= QNG_DELIM_LEN && memcmp(tail, q->delim, QNG_DELIM_LEN) == 0) {
			return 0;
		}
		if (total > QNG_DRAIN_MAX) {
			snprintf(err, errlen, "%s: no delimiter in %zu bytes", qname(q), total);
			return QNG_EPROTO;
		}
	}
}

static int stop_and_sync(struct qng *q, char *err, size_t errlen)
{
	int rc = cmd(q, QNG_CMD_STOP, err, errlen);

	if (rc == 0) {
		rc = drain(q, err, errlen);
	}
	return rc == 0 ? sync_delim(q, err, errlen) : rc;
}

/* 0x96, then drop the first 256 bytes of the stream. */
static int stream_on(struct qng *q, char *err, size_t errlen)
{
	size_t got = 0;
	int rc = cmd(q, QNG_CMD_START, err, errlen);

	while (rc == 0 && got < QNG_HEAD_DISCARD) {
		long r = q->ops->read(q->ctx, q->scratch, QNG_HEAD_DISCARD - got,
				      q->p.stream_timeout_ms);

		if (r < 0) {
			snprintf(err, errlen, "%s: reading the stream: %s", qname(q),
				 pipe_error(q));
			return QNG_EIO;
		}
		if (r == 0) {
			/* Not worth a retry: a full reset is the remedy. */
			snprintf(err, errlen,
				 "%s: stalled: no data for %d ms after the start command", qname(q),
				 q->p.stream_timeout_ms);
			return QNG_EIO;
		}
		explicit_bzero(q->scratch, (size_t)r);
		got += (size_t)r;
	}
	if (rc == 0) {
		q->state = QNG_STREAMING;
	}
	return rc;
}

static int initialise(struct qng *q, char *err, size_t errlen)
{
	uint8_t d1[QNG_DELIM_LEN], d2[QNG_DELIM_LEN];
	int rc = cmd(q, QNG_CMD_STOP, err, errlen);

	if (rc == 0) {
		rc = drain(q, err, errlen);
	}
	if (rc == 0 && (rc = cmd(q, QNG_CMD_DELIMIT, err, errlen)) == 0) {
		rc = reply(q, QNG_CMD_DELIMIT, d1, sizeof(d1), err, errlen);
	}
	if (rc == 0 && (rc = cmd(q, QNG_CMD_DELIMIT, err, errlen)) == 0) {
		rc = reply(q, QNG_CMD_DELIMIT, d2, sizeof(d2), err, errlen);
	}
	if (rc == 0 && memcmp(d1, d2, sizeof(d1)) != 0) {
		snprintf(err, errlen,
			 "%s: the two answers to 0x60 differ (%02x%02x%02x%02x%02x%02x, "
			 "%02x%02x%02x%02x%02x%02x): not a QNG, or a garbled line",
			 qname(q), d1[0], d1[1], d1[2], d1[3], d1[4], d1[5], d2[0], d2[1], d2[2],
			 d2[3], d2[4], d2[5]);
		rc = QNG_EPROTO;
	}
	if (rc == 0) {
		memcpy(q->delim, d1, sizeof(d1));
		rc = cmd(q, QNG_CMD_CLEAR, err, errlen);
	}
	return rc;
}

static void wipe_block(struct qng *q)
{
	explicit_bzero(q->block, q->p.check_bytes);
	q->ready_off = 0;
	q->ready_len = 0;
}

static int fail(struct qng *q)
{
	wipe_block(q);
	q->state = QNG_FAILED;
	return -1;
}

void qng_stop(struct qng *q)
{
	if (q->open) {
		q->ops->close(q->ctx);
		q->open = false;
	}
	wipe_block(q);
	q->state = QNG_CLOSED;
}

int qng_start(struct qng *q, char *err, size_t errlen)
{
	char why[256] = "";
	int rc;

	qng_stop(q);
	if (q->ops->open(q->ctx, q->serial, err, errlen) < 0) {
		return fail(q);
	}
	q->open = true;
	if (initialise(q, err, errlen) < 0) {
		return fail(q);
	}
	rc = QNG_EPROTO;
	for (unsigned i = 0; i < q->p.start_tries && rc == QNG_EPROTO; i++) {
		rc = stop_and_sync(q, why, sizeof(why));
		if (rc == 0) {
			rc = stream_on(q, why, sizeof(why));
		}
		if (rc == QNG_EPROTO) {
			qlog(q, QNG_LOG_DEBUG, "qng %s: start attempt %u failed: %s", qname(q),
			     i + 1, why);
		}
	}
	if (rc == QNG_EIO) {
		snprintf(err, errlen, "%s", why);
		return fail(q);
	}
	if (rc != 0) {
		snprintf(err, errlen, "could not start streaming in %u attempts (last: %s)",
			 q->p.start_tries, why);
		return fail(q);
	}
	qlog(q, QNG_LOG_INFO,
	     "qng %s: streaming (delimiter %02x%02x%02x%02x%02x%02x; status check every "
	     "%zu bytes)",
	     qname(q), q->delim[0], q->delim[1], q->delim[2], q->delim[3], q->delim[4], q->delim[5],
	     q->p.check_bytes);
	return 0;
}

/* Stream a block into q->block; its length in *len. */
static int fill_block(struct qng *q, size_t *len, char *err, size_t errlen)
{
	size_t filled = 0;
	long t0;

	if (q->state == QNG_STOPPED && stream_on(q, err, errlen) < 0) {
		return -1;
	}
	t0 = qng_now_ms();
	while (filled < q->p.check_bytes) {
		long r = q->ops->read(q->ctx, q->block + filled, q->p.check_bytes - filled,
				      q->p.stream_timeout_ms);

		if (r < 0) {
			snprintf(err, errlen, "%s: reading the stream: %s", qname(q),
				 pipe_error(q));
			return -1;
		}
		if (r == 0) {
			snprintf(err, errlen, "%s: stalled: no data for %d ms while streaming",
				 qname(q), q->p.stream_timeout_ms);
			return -1;
		}
		filled += (size_t)r;
		if (q->p.check_ms > 0 && qng_now_ms() - t0 >= q->p.check_ms) {
			break;
		}
	}
	*len = filled;
	return 0;
}

/* Stop, ask for the status word, and pass only if it is good and nothing is garbled. */
static int check_status(struct qng *q, char *err, size_t errlen)
{
	uint8_t st[4], d[QNG_DELIM_LEN];
	uint32_t word;

	if (stop_and_sync(q, err, errlen) < 0 || cmd(q, QNG_CMD_STATUS, err, errlen) < 0 ||
	    reply(q, QNG_CMD_STATUS, st, sizeof(st), err, errlen) < 0) {
		return -1;
	}
	q->state = QNG_STOPPED;
	if (cmd(q, QNG_CMD_DELIMIT, err, errlen) < 0 ||
	    reply(q, QNG_CMD_DELIMIT, d, sizeof(d), err, errlen) < 0) {
		return -1;
	}
	if (memcmp(d, q->delim, sizeof(d)) != 0) {
		snprintf(err, errlen,
			 "%s: garbage after the status word (the next reply is not the "
			 "delimiter): a reply of the wrong length",
			 qname(q));
		return -1;
	}
	word =
	    (uint32_t)st[0] | (uint32_t)st[1] << 8 | (uint32_t)st[2] << 16 | (uint32_t)st[3] << 24;
	if (word & QNG_ST_BADSTATS) {
		snprintf(err, errlen,
			 "%s: the device reports bad statistics (status 0x%08x): its "
			 "own online tests failed",
			 qname(q), word);
		return -1;
	}
	if (!(word & QNG_ST_ENABLED)) {
		snprintf(err, errlen, "%s: status 0x%08x: RNG output not enabled", qname(q), word);
		return -1;
	}
	qlog(q, QNG_LOG_DEBUG, "qng %s: status 0x%08x", qname(q), word);
	q->checks_passed++;
	return 0;
}

long qng_read(struct qng *q, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	size_t m;

	if (q->state != QNG_STREAMING && q->state != QNG_STOPPED) {
		snprintf(err, errlen, "%s: not streaming (failed or closed; needs a reset)",
			 qname(q));
		return -1;
	}
	if (q->ready_len == 0) {
		size_t len = 0;

		if (fill_block(q, &len, err, errlen) < 0 || check_status(q, err, errlen) < 0) {
			return fail(q);
		}
		q->ready_off = 0;
		q->ready_len = len;
	}
	m = n < q->ready_len ? n : q->ready_len;
	memcpy(buf, q->block + q->ready_off, m);
	explicit_bzero(q->block + q->ready_off, m);
	q->ready_off += m;
	q->ready_len -= m;
	return (long)m;
}

void qng_free(struct qng *q)
{
	if (q == NULL) {
		return;
	}
	qng_stop(q);
	free(q->block);
	free(q->serial);
	free(q);
}

const uint8_t *qng_delimiter(const struct qng *q)
{
	return q->delim;
}

uint64_t qng_checks_passed(const struct qng *q)
{
	return q->checks_passed;
}
