/* src: the configured randomness sources, each read by its own thread, each with its own
 * health tester. Tested bytes go into the pool in whole passing APT windows.
 *
 * Sources have priorities (default: the order given). Only the best priority group that
 * has a healthy source feeds the pool; lower groups pass their start-up test and then wait
 * as standbys, so failover is immediate. Sources of equal priority feed together. A
 * healthy source whose read blocks past its stall deadline fails over in the same way. */
#ifndef ENTROPYD_SRC_H
#define ENTROPYD_SRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct pool;
struct sources;

/* Settings for a tty generator (file: sources), applied after every open. */
struct src_tty {
	char *init; /* bytes written after opening (escapes \n \r \xHH decoded), or NULL */
	long baud;  /* 0 = leave the line speed as it is */
};

/* The largest stall= deadline accepted (ms), and the usual default of a driver. */
#define SRC_STALL_MAX_MS 86400000
#define SRC_STALL_DEFAULT_MS 5000u

/* A source as configured: `KIND[:ARG][,h=BITS][,prio=N][,init=…][,baud=N][,stall=MS]`. */
struct source_conf {
	char *spec;	    /* as written by the user, for log lines */
	char *kind;	    /* "file", "rdseed", "getrandom" */
	char *arg;	    /* path for file, NULL otherwise */
	double min_entropy; /* assumed min-entropy per byte for the health tests */
	int prio;	    /* lower is preferred */
	struct src_tty tty; /* file: only */
	long stall_ms;	    /* -1: the kind's default; 0: never; else the read deadline */
};

/* The set of sources feeding pool; alpha_log2 sets the health tests' false-positive rate. */
struct sources *sources_new(struct pool *pool, unsigned alpha_log2);
/* Open and check one source now (start-up); -1 with a one-line message in err. */
int sources_add(struct sources *s, const struct source_conf *conf, char *err, size_t errlen);
/* Pick the best source on this machine (/dev/hwrng, rdseed, getrandom) and add it; logs why. */
int sources_add_default(struct sources *s, char *err, size_t errlen);
/* Start one thread per source. */
int sources_start(struct sources *s);
/* Ask the threads to stop; sources_free then wakes a thread blocked in a read and joins it. */
void sources_stop(struct sources *s);
/* Log a one-line summary per source (bytes read, served, discarded, failures). */
void sources_log_stats(struct sources *s);
/* Print every source this machine offers and why each is or is not usable (--list-sources). */
void sources_list_detected(FILE *out);
/* Number of configured sources. */
size_t sources_count(const struct sources *s);

/* Driver of one kind of source; the instance's blocking reads run in its thread. */
struct src_driver {
	const char *kind;
	const char *what; /* how log lines describe it */
	bool needs_arg;	  /* the argument is required */
	bool takes_arg;	  /* an argument is allowed (optional unless needs_arg) */
	/* Open; returns driver state, or NULL with a one-line message in err. */
	void *(*open)(const char *arg, char *err, size_t errlen);
	/* Read up to n bytes, blocking. > 0 bytes, 0 when exhausted for good (end of a regular
	 * file), -1 on an error (message in err: the source is re-opened later). */
	long (*read)(void *st, uint8_t *buf, size_t n, char *err, size_t errlen);
	/* Close and free the state. */
	void (*close)(void *st);
	/* Optional: check the argument without opening; a driver with retry_at_start must
	 * have it, so that a malformed argument still stops the start. */
	int (*check)(const char *arg, char *err, size_t errlen);
	/* An open that fails at start-up does not stop the daemon: the source's thread
	 * retries it with backoff (an upstream host may come up later). */
	bool retry_at_start;
	/* Optional: apply tty settings after each open; -1 with a message in err. */
	int (*setup)(void *st, const struct src_tty *tty, char *err, size_t errlen);
	/* True if re-opening may continue the stream (devices); false for regular files,
	 * whose re-opening would serve the same bytes twice. */
	bool (*reopenable)(void *st);
	/* Default stall deadline (ms): a healthy source whose read() blocks this long fails
	 * over (source option stall=; 0 = never). */
	unsigned stall_ms;
};

extern const struct src_driver src_file_driver;
extern const struct src_driver src_rdseed_driver;
extern const struct src_driver src_getrandom_driver;
extern const struct src_driver src_qng_driver;
extern const struct src_driver src_darn_driver;
extern const struct src_driver src_exec_driver;
extern const struct src_driver src_egd_driver;
extern const struct src_driver src_qngvendor_driver;

/* Fill buf[0..n) (at most 4096) with 64-bit words from next(), which returns 0 or -1 when
 * the CPU gave no number after its own retries; shared by the CPU instruction sources. */
long src_read_words(uint8_t *buf, size_t n, int (*next)(unsigned long long *v), const char *insn,
		    char *err, size_t errlen);
/* True if the CPU has RDSEED. */
bool src_rdseed_supported(void);
/* True if the CPU has DARN (POWER9). */
bool src_darn_supported(void);

/* Stop, wake and join every source thread within timeout_ms, then close and free all; -1
 * (one line logged, nothing freed) if a thread did not end in time. */
int sources_free(struct sources *s, unsigned timeout_ms);
/* In a source thread: true once it was woken to stop; a driver's read that fails with EINTR
 * returns -1 then instead of retrying. */
bool src_stopping(void);

#endif
