/* qngsim_model: a model of a ComScire QNG's command protocol (facts/qng-device.md): bytes
 * from the host in, bytes to the host out, faults injected on demand or at a given stream
 * position. Pure: no I/O, no clock; the qngsim program and the unit tests drive it.
 *
 * What a test can rely on: every data byte the model streams is the next byte of a known
 * stream (qngsim_stream(seed, QNGSIM_DATA, offset)), so what reaches a client can be
 * located in it; the first 256 bytes after each 0x96 come from a different stream
 * (QNGSIM_HEAD), and so do bytes produced while a bad-statistics fault is active
 * (QNGSIM_BAD, or zeros: a stuck generator); neither may ever reach a client. */
#ifndef ENTROPYD_QNGSIM_MODEL_H
#define ENTROPYD_QNGSIM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum qngsim_stream { QNGSIM_DATA, QNGSIM_HEAD, QNGSIM_BAD };

enum qngsim_fault {
	QNGSIM_F_STALL,		/* emit nothing, ignore commands; arg: ms (for the program) */
	QNGSIM_F_BAD,		/* the next arg stream bytes are bad; sets the statistics flag */
	QNGSIM_F_BAD_FLAG,	/* set the statistics flag only (data unchanged) */
	QNGSIM_F_UNPLUG,	/* the device disappears */
	QNGSIM_F_GARBAGE_DELIM, /* the next arg replies to 0x60 are wrong bytes */
	QNGSIM_F_STATUS_SHORT,	/* the next arg replies to 0xB0 have 3 bytes */
	QNGSIM_F_STATUS_LONG,	/* the next arg replies to 0xB0 have 5 bytes */
};

/* Counters since qngsim_new(). */
struct qngsim_counters {
	uint64_t streamed; /* stream bytes produced, of every kind */
	uint64_t data;	   /* data-stream bytes produced: the next data offset */
	uint64_t head, bad;
	uint64_t starts, stops, delimits, statuses, bad_statuses, clears, host_resets;
};

/* One status reply: the data offset when it was sent, and the word. */
struct qngsim_check {
	uint64_t data_off;
	uint32_t word;
};

struct qngsim;

/* A stopped device with this serial (its delimiter derives from it) and stream seed;
 * bad_zero: bad-statistics bytes are zeros (else the QNGSIM_BAD stream). */
struct qngsim *qngsim_new(const char *serial, uint64_t seed, bool bad_zero);
/* Free. */
void qngsim_free(struct qngsim *m);
/* Stream bytes still sent after 0xE0 (the chip's FIFO); default 128, at most 4096. */
void qngsim_set_tail(struct qngsim *m, size_t tail);
/* Bytes from the host (commands). */
void qngsim_input(struct qngsim *m, const uint8_t *b, size_t n);
/* Up to max bytes to the host: > 0, 0 if nothing now (stopped or stalled), -1 unplugged. */
long qngsim_output(struct qngsim *m, uint8_t *b, size_t max);
/* True if qngsim_output() would return something now. */
bool qngsim_has_output(const struct qngsim *m);
/* Inject a fault when the stream reaches byte `at` (now if at <= streamed). */
void qngsim_fault(struct qngsim *m, enum qngsim_fault f, uint64_t at, uint64_t arg);
/* True while stalled; *ms: the stall's requested duration. */
bool qngsim_stalled(const struct qngsim *m, uint64_t *ms);
/* End a stall. */
void qngsim_unstall(struct qngsim *m);
/* True once unplugged (until qngsim_replug()). */
bool qngsim_unplugged(const struct qngsim *m);
/* Plugged in again: powered up stopped, empty FIFO, flag clear. */
void qngsim_replug(struct qngsim *m);
/* The host closed and re-opened the device: the chip's FIFO is purged, nothing else. */
void qngsim_host_reset(struct qngsim *m);
/* Whether a host has the device open (status bit 0x8). */
void qngsim_set_host(struct qngsim *m, bool open);
/* The 6-byte delimiter. */
void qngsim_delimiter(const struct qngsim *m, uint8_t out[6]);
/* Counters. */
const struct qngsim_counters *qngsim_counters(const struct qngsim *m);
/* Status replies so far (the first 4096), oldest first. */
const struct qngsim_check *qngsim_checks(const struct qngsim *m, size_t *n);
/* Commands received so far (the first 4096). */
const uint8_t *qngsim_commands(const struct qngsim *m, size_t *n);
/* n bytes of stream `which` for seed, from offset off. */
void qngsim_stream(uint64_t seed, enum qngsim_stream which, uint64_t off, uint8_t *out, size_t n);

#endif
