/* qng_conf: the argument of a `qng[:ARG]` source, parsed into a backend, a device and the
 * driver's parameters. Pure: no I/O.
 *
 *   (empty)                      the first QNG on USB (libftdi1)
 *   QWR4M004                     the QNG with this USB serial
 *   tty=/dev/ttyUSB0             a QNG behind a serial line (ftdi_sio, QEMU usb-serial)
 *   sock=/run/qngsim.sock        a unix socket (the qngsim simulator)
 * followed by ';'- or '+'-separated settings, e.g. `QWR4M004+check=131072+timeout=2000`:
 *   check=BYTES    bytes held back per status check (default 65536; k/M suffixes)
 *   checkms=MS     ... or fewer once a block has taken this long (default 1000; 0: never)
 *   timeout=MS     a streaming read that gets nothing this long is a stall (default 5000)
 *   cmdtimeout=MS  wait for a command's reply (default 100 on USB, the vendor's value;
 *                  500 on a tty or socket, whose path through QEMU or a pty adds latency)
 *   drain=MS       quiet time that ends the drain after the stop command (default 100)
 *   latency=MS     FTDI latency timer, USB only (default 2)
 *   tries=N        attempts of the start-streaming sequence (default 40) */
#include "qng.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QNG_DEFAULT_LATENCY_MS 2
#define QNG_LINE_CMD_TIMEOUT_MS 500

static int parse_num(const char *key, const char *v, long min, long max, long *out, char *err,
		     size_t errlen)
{
	char *end;
	long mult = 1;

	errno = 0;
	*out = strtol(v, &end, 10);
	if (end != v && (*end == 'k' || *end == 'K')) {
		mult = 1024;
		end++;
	} else if (end != v && *end == 'M') {
		mult = 1024 * 1024;
		end++;
	}
	/* Compare before multiplying: a huge negative value times mult would overflow. */
	if (errno != 0 || end == v || *end != '\0' || *out > max / mult || *out < min / mult ||
	    *out * mult < min) {
		snprintf(err, errlen, "qng: %s=%s: expected a number in %ld..%ld", key, v, min,
			 max);
		return -1;
	}
	*out *= mult;
	return 0;
}

static int set_string(char *dst, size_t dstlen, const char *key, const char *v, char *err,
		      size_t errlen)
{
	if (v[0] == '\0' || strlen(v) >= dstlen) {
		snprintf(err, errlen, "qng: %s= needs a value of at most %zu characters", key,
			 dstlen - 1);
		return -1;
	}
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

/* One `key=value` item (or a bare serial as the first item). */
static int parse_item(struct qng_conf *c, char *item, bool first, char *err, size_t errlen)
{
	char *eq = strchr(item, '=');
	long v;

	if (eq == NULL) {
		if (!first) {
			snprintf(err, errlen, "qng: '%s' is not key=value (a serial comes first)",
				 item);
			return -1;
		}
		return set_string(c->serial, sizeof(c->serial), "serial", item, err, errlen);
	}
	*eq++ = '\0';
	if (strcmp(item, "serial") == 0) {
		return set_string(c->serial, sizeof(c->serial), item, eq, err, errlen);
	}
	if (strcmp(item, "tty") == 0 || strcmp(item, "sock") == 0) {
		if (c->backend != QNG_BACKEND_FTDI) {
			snprintf(err, errlen, "qng: give one of tty= and sock=");
			return -1;
		}
		c->backend = item[0] == 't' ? QNG_BACKEND_TTY : QNG_BACKEND_SOCK;
		return set_string(c->path, sizeof(c->path), item, eq, err, errlen);
	}
	if (strcmp(item, "check") == 0) {
		if (parse_num(item, eq, 512, 16L * 1024 * 1024, &v, err, errlen) < 0) {
			return -1;
		}
		c->params.check_bytes = (size_t)v;
	} else if (strcmp(item, "checkms") == 0) {
		if (parse_num(item, eq, 0, 3600000, &v, err, errlen) < 0) {
			return -1;
		}
		c->params.check_ms = (int)v;
	} else if (strcmp(item, "timeout") == 0) {
		if (parse_num(item, eq, 10, 600000, &v, err, errlen) < 0) {
			return -1;
		}
		c->params.stream_timeout_ms = (int)v;
	} else if (strcmp(item, "cmdtimeout") == 0) {
		if (parse_num(item, eq, 5, 60000, &v, err, errlen) < 0) {
			return -1;
		}
		c->params.cmd_timeout_ms = (int)v;
	} else if (strcmp(item, "drain") == 0) {
		if (parse_num(item, eq, 1, 60000, &v, err, errlen) < 0) {
			return -1;
		}
		c->params.drain_ms = (int)v;
	} else if (strcmp(item, "latency") == 0) {
		if (parse_num(item, eq, 1, 255, &v, err, errlen) < 0) {
			return -1;
		}
		c->latency_ms = (int)v;
	} else if (strcmp(item, "tries") == 0) {
		if (parse_num(item, eq, 1, 1000, &v, err, errlen) < 0) {
			return -1;
		}
		c->params.start_tries = (unsigned)v;
	} else {
		snprintf(err, errlen,
			 "qng: unknown setting '%s' (serial, tty, sock, check, checkms, "
			 "timeout, cmdtimeout, drain, latency, tries)",
			 item);
		return -1;
	}
	return 0;
}

int qng_conf_parse(const char *arg, struct qng_conf *c, char *err, size_t errlen)
{
	char *s, *item, *save = NULL;
	bool first = true, cmd_timeout_set = false;
	int rc = 0;

	memset(c, 0, sizeof(*c));
	c->backend = QNG_BACKEND_FTDI;
	c->latency_ms = QNG_DEFAULT_LATENCY_MS;
	qng_params_default(&c->params);
	if (arg == NULL || arg[0] == '\0') {
		return 0;
	}
	s = strdup(arg);
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (item = strtok_r(s, ";+", &save); item != NULL && rc == 0;
	     item = strtok_r(NULL, ";+", &save)) {
		cmd_timeout_set |= strncmp(item, "cmdtimeout=", 11) == 0;
		rc = parse_item(c, item, first, err, errlen);
		first = false;
	}
	free(s);
	if (rc == 0 && c->backend != QNG_BACKEND_FTDI && !cmd_timeout_set) {
		c->params.cmd_timeout_ms = QNG_LINE_CMD_TIMEOUT_MS;
	}
	if (rc == 0 && c->serial[0] != '\0') {
		if (c->backend != QNG_BACKEND_FTDI) {
			snprintf(err, errlen,
				 "qng: a serial selects a USB device; with tty= or sock= "
				 "the device is the one on that line");
			return -1;
		}
		if (qng_generation(c->serial) < 0) {
			snprintf(err, errlen, "qng: serial %s is not a QNG's (QWR1... to QWR8...)",
				 c->serial);
			return -1;
		}
	}
	return rc;
}
