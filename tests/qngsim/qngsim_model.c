/* qngsim_model: the simulated QNG. Commands are processed in order as they arrive; replies
 * go into a FIFO (the FTDI chip's buffer) ahead of any further stream bytes; stream bytes
 * are made on demand when the host reads, so a stopped reader back-pressures the device
 * as the real FIFO does. Invariant: the data stream is consumed in order and never
 * repeated; head and bad bytes come from streams of their own. */
#include "qngsim_model.h"

#include <stdlib.h>
#include <string.h>

#define SIM_QUEUE 8192u
#define SIM_TAIL_MAX 4096u
#define SIM_FAULTS 16u
#define SIM_LOG 4096u
#define SIM_HEAD 256u

struct sim_fault {
	bool armed;
	enum qngsim_fault kind;
	uint64_t at, arg;
};

struct qngsim {
	uint64_t seed;
	bool bad_zero;
	uint8_t delim[6];
	size_t tail;
	bool streaming, sticky, host, stalled, unplugged;
	uint64_t stall_ms;
	uint64_t head_left, bad_left, bad_off;
	uint64_t garbage_delim, status_short, status_long;
	uint8_t q[SIM_QUEUE];
	size_t qhead, qlen;
	struct sim_fault faults[SIM_FAULTS];
	struct qngsim_counters c;
	struct qngsim_check checks[SIM_LOG];
	size_t nchecks;
	uint8_t cmds[SIM_LOG];
	size_t ncmds;
};

static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void qngsim_stream(uint64_t seed, enum qngsim_stream which, uint64_t off, uint8_t *out, size_t n)
{
	uint64_t key = mix64(seed ^ ((uint64_t)which + 1) << 56);

	for (size_t i = 0; i < n; i++) {
		uint64_t o = off + i;

		out[i] = (uint8_t)(mix64(key + (o >> 3)) >> (8 * (o & 7)));
	}
}

struct qngsim *qngsim_new(const char *serial, uint64_t seed, bool bad_zero)
{
	struct qngsim *m = calloc(1, sizeof(*m));
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the serial */

	if (m == NULL) {
		return NULL;
	}
	for (const char *p = serial; *p; p++) {
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	}
	h = mix64(h);
	for (int i = 0; i < 6; i++) {
		m->delim[i] = (uint8_t)(h >> (8 * i));
	}
	m->seed = seed;
	m->bad_zero = bad_zero;
	m->tail = 128;
	return m;
}

void qngsim_free(struct qngsim *m)
{
	free(m);
}

void qngsim_set_tail(struct qngsim *m, size_t tail)
{
	m->tail = tail > SIM_TAIL_MAX ? SIM_TAIL_MAX : tail;
}

static void apply(struct qngsim *m, enum qngsim_fault f, uint64_t arg)
{
	switch (f) {
	case QNGSIM_F_STALL:
		m->stalled = true;
		m->stall_ms = arg;
		break;
	case QNGSIM_F_BAD:
		m->bad_left += arg;
		m->sticky = true;
		break;
	case QNGSIM_F_BAD_FLAG:
		m->sticky = true;
		break;
	case QNGSIM_F_UNPLUG:
		m->unplugged = true;
		break;
	case QNGSIM_F_GARBAGE_DELIM:
		m->garbage_delim += arg;
		break;
	case QNGSIM_F_STATUS_SHORT:
		m->status_short += arg;
		break;
	case QNGSIM_F_STATUS_LONG:
		m->status_long += arg;
		break;
	}
}

void qngsim_fault(struct qngsim *m, enum qngsim_fault f, uint64_t at, uint64_t arg)
{
	if (at <= m->c.streamed) {
		apply(m, f, arg);
		return;
	}
	for (size_t i = 0; i < SIM_FAULTS; i++) {
		if (!m->faults[i].armed) {
			m->faults[i] = (struct sim_fault){true, f, at, arg};
			return;
		}
	}
}

static void apply_due(struct qngsim *m)
{
	for (size_t i = 0; i < SIM_FAULTS; i++) {
		if (m->faults[i].armed && m->faults[i].at <= m->c.streamed) {
			m->faults[i].armed = false;
			apply(m, m->faults[i].kind, m->faults[i].arg);
		}
	}
}

/* The next stream byte; faults due at this position have been applied. */
static uint8_t produce(struct qngsim *m)
{
	bool in_head = m->head_left > 0;
	uint8_t b;

	if (in_head) {
		m->head_left--;
	}
	if (m->bad_left > 0) {
		m->bad_left--;
		m->sticky = true;
		b = 0;
		if (!m->bad_zero) {
			qngsim_stream(m->seed, QNGSIM_BAD, m->bad_off, &b, 1);
		}
		m->bad_off++;
		m->c.bad++;
	} else if (in_head) {
		qngsim_stream(m->seed, QNGSIM_HEAD, SIM_HEAD - 1 - m->head_left, &b, 1);
		m->c.head++;
	} else {
		qngsim_stream(m->seed, QNGSIM_DATA, m->c.data, &b, 1);
		m->c.data++;
	}
	m->c.streamed++;
	return b;
}

static void put(struct qngsim *m, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n && m->qlen < SIM_QUEUE; i++) {
		m->q[(m->qhead + m->qlen++) % SIM_QUEUE] = b[i];
	}
}

static void put_word(struct qngsim *m, uint32_t w, size_t len)
{
	uint8_t b[5] = {(uint8_t)w, (uint8_t)(w >> 8), (uint8_t)(w >> 16), (uint8_t)(w >> 24), 0};

	put(m, b, len);
}

static void command(struct qngsim *m, uint8_t c)
{
	static const uint8_t zeros[1024];

	if (m->ncmds < SIM_LOG) {
		m->cmds[m->ncmds++] = c;
	}
	if (c == 0x96) {
		m->streaming = true;
		m->head_left = SIM_HEAD;
		m->c.starts++;
	} else if (c == 0xE0) {
		m->c.stops++;
		for (size_t i = 0; m->streaming && i < m->tail && m->qlen < SIM_QUEUE; i++) {
			apply_due(m);
			if (m->stalled || m->unplugged) {
				break;
			}
			uint8_t b = produce(m);

			put(m, &b, 1);
		}
		m->streaming = false;
	} else if (c == 0x60) {
		m->c.delimits++;
		if (m->garbage_delim > 0) {
			uint8_t g[6];

			m->garbage_delim--;
			for (int i = 0; i < 6; i++) {
				g[i] = m->delim[i] ^ 0xA5;
			}
			put(m, g, 6);
		} else {
			put(m, m->delim, 6);
		}
	} else if (c == 0xB0) {
		uint32_t w = 0x1 | (m->streaming ? 0x2 : 0) |
			     (m->sticky || m->bad_left > 0 ? 0x4 : 0) | (m->host ? 0x8 : 0);

		m->c.statuses++;
		if (w & 0x4) {
			m->c.bad_statuses++;
		}
		if (m->nchecks < SIM_LOG) {
			m->checks[m->nchecks++] = (struct qngsim_check){m->c.data, w};
		}
		if (m->status_short > 0) {
			m->status_short--;
			put_word(m, w, 3);
		} else if (m->status_long > 0) {
			m->status_long--;
			put_word(m, w, 5);
		} else {
			put_word(m, w, 4);
		}
	} else if (c == 0xC0) {
		m->c.clears++;
		m->sticky = false;
	} else if ((c >= 0xA1 && c <= 0xA3) || (c >= 0x71 && c <= 0x73) ||
		   (c >= 0x81 && c <= 0x83) || (c >= 0x91 && c <= 0x93)) {
		/* Statistics: a plausible fixed point value (mean 127.5 -> 127500). */
		put_word(m, 127500u + (uint32_t)(c & 0x0F), 4);
	} else if (c >= 0x01 && c <= 0x0F) {
		put(m, zeros, 1024);
	} else if (c >= 0x10 && c <= 0x3F) {
		put(m, zeros, 128);
	} else if (c >= 0x40 && c <= 0x5F) {
		put(m, zeros, 1);
	} else if (c >= 0x61 && c <= 0xBF) {
		put(m, zeros, 4);
	}
}

void qngsim_input(struct qngsim *m, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n && !m->stalled && !m->unplugged; i++) {
		command(m, b[i]);
	}
}

long qngsim_output(struct qngsim *m, uint8_t *b, size_t max)
{
	size_t n = 0;

	if (m->unplugged) {
		return -1;
	}
	if (m->stalled) {
		return 0;
	}
	while (n < max && m->qlen > 0) {
		b[n++] = m->q[m->qhead];
		m->qhead = (m->qhead + 1) % SIM_QUEUE;
		m->qlen--;
	}
	while (n < max && m->streaming) {
		apply_due(m);
		if (m->stalled || m->unplugged) {
			break;
		}
		b[n++] = produce(m);
	}
	if (n == 0 && m->unplugged) {
		return -1;
	}
	return (long)n;
}

bool qngsim_has_output(const struct qngsim *m)
{
	return !m->unplugged && !m->stalled && (m->qlen > 0 || m->streaming);
}

bool qngsim_stalled(const struct qngsim *m, uint64_t *ms)
{
	if (ms != NULL) {
		*ms = m->stall_ms;
	}
	return m->stalled;
}

void qngsim_unstall(struct qngsim *m)
{
	m->stalled = false;
}

bool qngsim_unplugged(const struct qngsim *m)
{
	return m->unplugged;
}

void qngsim_replug(struct qngsim *m)
{
	m->streaming = false;
	m->sticky = false;
	m->stalled = false;
	m->unplugged = false;
	m->head_left = 0;
	m->bad_left = 0;
	m->qhead = m->qlen = 0;
}

void qngsim_host_reset(struct qngsim *m)
{
	m->qhead = m->qlen = 0;
	m->c.host_resets++;
}

void qngsim_set_host(struct qngsim *m, bool open)
{
	m->host = open;
}

void qngsim_delimiter(const struct qngsim *m, uint8_t out[6])
{
	memcpy(out, m->delim, 6);
}

const struct qngsim_counters *qngsim_counters(const struct qngsim *m)
{
	return &m->c;
}

const struct qngsim_check *qngsim_checks(const struct qngsim *m, size_t *n)
{
	*n = m->nchecks;
	return m->checks;
}

const uint8_t *qngsim_commands(const struct qngsim *m, size_t *n)
{
	*n = m->ncmds;
	return m->cmds;
}
