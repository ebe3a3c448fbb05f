/* qng: the ComScire QNG command protocol (PQ4000KU and family) as a state machine over a
 * "byte pipe", plus the pipes that reach a device: libftdi1 (USB), a tty or a unix socket.
 * A library on its own (libqng): it includes nothing from the daemon, reports errors as
 * -1 plus a message and logs only through the callback its caller sets (qng_set_log()).
 *
 * Invariant: qng_read() hands out only bytes of a block that a status check (command 0xB0,
 * bit 0x4 clear) passed after the last of them was read; any failure wipes the block and
 * makes every later read fail until the next qng_start() (a full reset). See qng.c. */
#ifndef ENTROPYD_QNG_H
#define ENTROPYD_QNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QNG_DELIM_LEN 6u
#define QNG_HEAD_DISCARD 256u

/* Command bytes (facts/qng-device.md). */
#define QNG_CMD_START 0x96u
#define QNG_CMD_STOP 0xE0u
#define QNG_CMD_DELIMIT 0x60u
#define QNG_CMD_STATUS 0xB0u
#define QNG_CMD_CLEAR 0xC0u

/* Status word bits. */
#define QNG_ST_ENABLED 0x1u
#define QNG_ST_STREAMING 0x2u
#define QNG_ST_BADSTATS 0x4u
#define QNG_ST_CLIENT 0x8u

/* A byte pipe to one device. ctx is the backend's own state; several pipes may be open at
 * once. Optional members may be NULL. The owner of ctx frees it with ops->free (qng_free()
 * does not), so no caller needs to know which backend a pipe is. */
struct qng_pipe_ops {
	/* Open the device (serial: wanted USB serial or NULL); -1 with a one-line message. */
	int (*open)(void *ctx, const char *serial, char *err, size_t errlen);
	/* Write all n bytes: 0, or -1 on an error or an unplugged device. */
	int (*write)(void *ctx, const uint8_t *b, size_t n);
	/* Read what arrives: > 0 bytes, 0 when nothing arrived for timeout_ms, -1 error/unplug. */
	long (*read)(void *ctx, uint8_t *b, size_t n, int timeout_ms);
	/* Close the device (the pipe can be opened again). */
	void (*close)(void *ctx);
	/* Optional: the open device (serial or path), for messages. */
	const char *(*name)(void *ctx);
	/* Optional: why the last write or read failed. */
	const char *(*error)(void *ctx);
	/* Optional: free ctx (closed or not); NULL if the caller owns ctx some other way. */
	void (*free)(void *ctx);
};

/* Priority of a line the driver logs; the caller maps it onto its own logger. */
enum qng_log_level { QNG_LOG_INFO, QNG_LOG_DEBUG };
/* Receives one log line (no trailing newline); arg as given to qng_set_log(). */
typedef void (*qng_log_fn)(void *arg, enum qng_log_level level, const char *msg);

/* Timeouts and the status-check period of one device. */
struct qng_params {
	int cmd_timeout_ms;    /* wait for a command's reply */
	int drain_ms;	       /* quiet time that ends a drain after the stop command */
	int stream_timeout_ms; /* a streaming read that gets nothing this long is a stall */
	size_t check_bytes;    /* bytes held back per status check (the block) */
	int check_ms;	       /* ... or fewer, once a block has taken this long (0: no limit) */
	unsigned start_tries;  /* attempts of the start-streaming sequence */
};

struct qng;

/* The vendor's values: 100 ms commands and drains, 5000 ms streaming, 40 tries; blocks of
 * 64 KiB or 1 s. */
void qng_params_default(struct qng_params *p);
/* A device reached through ops/ctx (not opened yet); serial may be NULL (first device). */
struct qng *qng_new(const struct qng_pipe_ops *ops, void *ctx, const char *serial,
		    const struct qng_params *p);
/* Send this device's log lines to fn(arg, ...); fn NULL (the default): log nothing. Errors
 * are never logged, only returned with a message. */
void qng_set_log(struct qng *q, qng_log_fn fn, void *arg);
/* Full reset: close if open, open, initialise, start streaming; -1 with a message. */
int qng_start(struct qng *q, char *err, size_t errlen);
/* Up to n status-checked bytes; -1 with a message on any failure (nothing of the failed
 * block is returned, now or later; call qng_start() to recover). */
long qng_read(struct qng *q, uint8_t *buf, size_t n, char *err, size_t errlen);
/* Close the pipe and wipe held bytes; qng_start() may follow. */
void qng_stop(struct qng *q);
/* qng_stop() and free (not the pipe's ctx). */
void qng_free(struct qng *q);
/* The delimiter learnt by the last successful initialisation. */
const uint8_t *qng_delimiter(const struct qng *q);
/* Status checks passed since qng_new(). */
uint64_t qng_checks_passed(const struct qng *q);

/* Monotonic milliseconds: the library's one clock (it includes nothing from the daemon). */
long qng_now_ms(void);
/* Device generation from a serial's fourth character (QWR4... -> 3), or -1. */
int qng_generation(const char *serial);

/* One FTDI USB device as enumerated: its ids, serial ("" if unreadable), and a note for
 * messages (why it could not be read; may be ""). */
struct qng_usb_id {
	uint16_t vid, pid;
	char serial[64];
	char note[96];
};
/* Index of the device to use: the one with serial want (or the first QNG if want is NULL
 * or empty), only among 0403:6001/0403:6014 devices whose serial starts "QWR"; -1 with a
 * message naming what was seen. */
int qng_pick_device(const struct qng_usb_id *devs, size_t n, const char *want, char *err,
		    size_t errlen);

/* The libftdi1 USB backend (its free frees a qng_ftdi_new() context). */
extern const struct qng_pipe_ops qng_ftdi_ops;
/* A context for qng_ftdi_ops; latency_ms: the FTDI latency timer (1..255). */
void *qng_ftdi_new(int latency_ms);
/* Remove the two modem-status bytes that start each USB packet of an FTDI bulk transfer
 * (len bytes, packets of `packet` bytes) in place; the payload length. */
size_t qng_ftdi_strip_status(uint8_t *p, size_t len, size_t packet);

/* The tty / unix-socket backend: a serial line (QEMU usb-serial, ftdi_sio) or qngsim (its
 * free frees a qng_tty_new() context). */
extern const struct qng_pipe_ops qng_tty_ops;
/* A context for qng_tty_ops: path of a tty, or of a unix socket if is_socket. */
void *qng_tty_new(const char *path, bool is_socket);

/* A parsed `qng[:ARG]` source argument. */
enum qng_backend { QNG_BACKEND_FTDI, QNG_BACKEND_TTY, QNG_BACKEND_SOCK };
struct qng_conf {
	enum qng_backend backend;
	char serial[64]; /* "" = the first QNG found */
	char path[108];	 /* tty or socket path */
	int latency_ms;	 /* FTDI latency timer */
	struct qng_params params;
};
/* Parse ARG (NULL or "" = the first QNG on USB): `[SERIAL][;key=value]...`, ';' or '+'
 * between items; keys serial, tty, sock, check, checkms, timeout, cmdtimeout, drain,
 * latency, tries. -1 with a message. */
int qng_conf_parse(const char *arg, struct qng_conf *c, char *err, size_t errlen);

#endif
