/* src_qng: the `qng` source kind, a ComScire QNG (PQ4000KU and family) driven natively.
 *
 *   qng                          the first QNG on USB (libftdi1)
 *   qng:QWR4M004                 the QNG with this USB serial
 *   qng:tty=/dev/ttyUSB0         a QNG behind a serial line (ftdi_sio, QEMU usb-serial)
 *   qng:sock=/run/qngsim.sock    a unix socket (the qngsim simulator)
 * followed by ';'- or '+'-separated settings, e.g. `qng:QWR4M004+check=131072+timeout=2000`
 * (all of them in qng_conf.c, which parses the argument).
 *
 * The driver itself is libqng (qng.c, qng_conf.c, qng_ftdi.c, qng_tty.c), which includes
 * nothing from the daemon: this adapter is the only qng file that does. It hands the
 * driver entropyd's logger through qng_set_log().
 *
 * Every failure is reported as a failed read: src.c then closes the source, re-opens it
 * (a full reset of the device) with backoff, and re-runs the start-up test. */
#include "../log.h"
#include "../src_driver.h"
#include "qng.h"

#include <stdio.h>
#include <stdlib.h>

struct qng_src {
	struct qng_conf conf;
	const struct qng_pipe_ops *ops;
	void *ctx;
	struct qng *q;
};

/* Close the device and free the state (also the driver's close). */
static void qng_src_free(void *st)
{
	struct qng_src *s = st;

	if (s == NULL) {
		return;
	}
	qng_free(s->q);
	if (s->ctx != NULL && s->ops->free != NULL) {
		s->ops->free(s->ctx);
	}
	free(s);
}

/* The driver's log lines, into entropyd's log. */
static void qng_src_log(void *arg, enum qng_log_level level, const char *msg)
{
	(void)arg;
	if (level == QNG_LOG_INFO) {
		log_info("%s", msg);
	} else {
		log_debug("%s", msg);
	}
}

static void *qng_src_open(const char *arg, char *err, size_t errlen)
{
	struct qng_src *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (qng_conf_parse(arg, &s->conf, err, errlen) < 0) {
		free(s);
		return NULL;
	}
	if (s->conf.backend == QNG_BACKEND_FTDI) {
		s->ops = &qng_ftdi_ops;
		s->ctx = qng_ftdi_new(s->conf.latency_ms);
	} else {
		s->ops = &qng_tty_ops;
		s->ctx = qng_tty_new(s->conf.path, s->conf.backend == QNG_BACKEND_SOCK);
	}
	if (s->ctx != NULL) {
		s->q = qng_new(s->ops, s->ctx, s->conf.serial, &s->conf.params);
	}
	if (s->q == NULL) {
		snprintf(err, errlen, "out of memory");
		qng_src_free(s);
		return NULL;
	}
	qng_set_log(s->q, qng_src_log, NULL);
	if (qng_start(s->q, err, errlen) < 0) {
		qng_src_free(s);
		return NULL;
	}
	return s;
}

static long qng_src_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	struct qng_src *s = st;

	return qng_read(s->q, buf, n, err, errlen);
}

const struct src_driver src_qng_driver = {
    .kind = "qng",
    .syntax = "qng[:SERIAL]",
    .help = "a ComScire QNG on USB through libftdi1, chosen by its QWR serial (or qng:tty=PATH, "
	    "qng:sock=PATH; settings joined by +)",
    .what = "hardware: ComScire QNG",
    .needs_arg = false,
    .takes_arg = true,
    .open = qng_src_open,
    .read = qng_src_read,
    .close = qng_src_free,
    /* A status check holds bytes back for a while: longer than the usual deadline. */
    .stall_ms = 30000,
};
