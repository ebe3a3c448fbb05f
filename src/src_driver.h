/* src_driver: the interface between the source runner (src.c) and the drivers, one per
 * kind of source (src_file.c, src_cpu.c, …), and the table of kinds (src_driver.c).
 *
 * A driver knows how to open, read and close one kind of source; it knows nothing of
 * threads, health tests or the pool. src_drivers[] is the only list of the kinds: messages
 * and listings that name them are generated from it. */
#ifndef ENTROPYD_SRC_DRIVER_H
#define ENTROPYD_SRC_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Settings for a tty generator (file: sources), applied after every open. */
struct src_tty {
	char *init; /* bytes written after opening (escapes \n \r \xHH decoded), or NULL */
	long baud;  /* 0 = leave the line speed as it is */
};

/* The usual default stall deadline of a driver (ms). */
#define SRC_STALL_DEFAULT_MS 5000u

/* Driver of one kind of source; the instance's blocking reads run in its thread. */
struct src_driver {
	/* The kind, as written in --source KIND[:ARG]. */
	const char *kind;
	/* How --help and the man page write it (KIND, KIND:ARG or KIND[:ARG]). */
	const char *syntax;
	/* What it is, for --help and the man page (one sentence, no final period). */
	const char *help;
	/* How log lines and --list-sources describe it. */
	const char *what;
	/* The argument is required. */
	bool needs_arg;
	/* An argument is allowed (optional unless needs_arg). */
	bool takes_arg;
	/* Open; returns driver state (never NULL), or NULL with a one-line message in err. */
	void *(*open)(const char *arg, char *err, size_t errlen);
	/* Read up to n bytes, blocking. > 0 bytes, 0 when exhausted for good (end of a regular
	 * file), -1 on an error (message in err: the source is re-opened later). */
	long (*read)(void *st, uint8_t *buf, size_t n, char *err, size_t errlen);
	/* Close and free the state. NULL: the state holds nothing to release (a token). */
	void (*close)(void *st);
	/* Check the argument without opening, or NULL; a driver with retry_at_start must have
	 * it, so that a malformed argument still stops the start. */
	int (*check)(const char *arg, char *err, size_t errlen);
	/* An open that fails at start-up does not stop the daemon: the source's thread
	 * retries it with backoff (an upstream host may come up later). */
	bool retry_at_start;
	/* Apply tty settings after each open (-1 with a message in err), or NULL: the kind
	 * takes no init= or baud=. */
	int (*setup)(void *st, const struct src_tty *tty, char *err, size_t errlen);
	/* True if re-opening may continue the stream (devices); false for regular files,
	 * whose re-opening would serve the same bytes twice. NULL: always true. */
	bool (*reopenable)(void *st);
	/* Several threads may read it at once (source option threads=), each with its own state
	 * and health tests: a generator without one stream to keep in order. */
	bool parallel;
	/* Default stall deadline (ms): a healthy source whose read() blocks this long fails
	 * over (source option stall=; 0 = never). */
	unsigned stall_ms;
};

extern const struct src_driver src_file_driver;
extern const struct src_driver src_rdseed_driver;
extern const struct src_driver src_darn_driver;
extern const struct src_driver src_getrandom_driver;
extern const struct src_driver src_qng_driver;
extern const struct src_driver src_qngvendor_driver;
extern const struct src_driver src_exec_driver;
extern const struct src_driver src_egd_driver;

/* Every kind, NULL-terminated, in the order --list-sources shows those without argument. */
extern const struct src_driver *const src_drivers[];

/* The driver of kind, or NULL. */
const struct src_driver *src_driver_find(const char *kind);
/* Write the kinds into buf, comma-separated in table order (cut to len). */
void src_driver_kinds(char *buf, size_t len);
/* Close st with drv's close, or do nothing when it has none. */
void src_driver_close(const struct src_driver *drv, void *st);
/* Whether st may be re-opened: drv's reopenable, true when it has none. */
bool src_driver_reopenable(const struct src_driver *drv, void *st);

/* In a source thread: true once it was woken to stop; a driver's read that fails with EINTR
 * returns -1 then instead of retrying. */
bool src_stopping(void);

#endif
