/* libFuzzer target for libqng (src/qng): the driver's start/read state machine against a
 * device whose every byte is hostile, and the pure helpers around it. The first byte picks:
 *
 *   0, 1  the driver (qng_start, qng_read) over a fake pipe: the rest of the input is a
 *         script of reads (a control byte, then the bytes that read returns; 0xFF: nothing
 *         arrived in the timeout, 0xFE: the pipe failed; past the end: always nothing), so
 *         no real time passes. The fake remembers what the device streamed and what status
 *         word it answered, and the target aborts if qng_read hands out a byte that is not
 *         from a block whose status check (enabled set, bad statistics clear) passed after
 *         it, in order, or more than asked;
 *   2     qng_ftdi_strip_status on packets of a size from the input, against a reference;
 *   3     qng_conf_parse on the text, whose accepted values must be in their ranges, and
 *         qng_generation / qng_pick_device on a device list taken from the input. */
#include "qng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The libFuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_qng: %s\n", what);
	abort();
}

struct fake {
	const uint8_t *p;
	size_t n, off;
	bool open_fails;
	unsigned writes, fail_write; /* the fail_write-th write fails (0: none) */
	uint8_t last_cmd;
	/* Status word: the 4 bytes read after 0xB0. */
	uint8_t status[4];
	size_t status_got;
	/* Streaming (after 0x96 until the next command): the first 256 bytes are dropped by the
	 * driver, the rest are the block being collected. */
	bool streaming;
	size_t head;
	uint8_t *cur, *last_block; /* size n */
	size_t cur_len, last_len;
};

static int fake_open(void *ctx, const char *serial, char *err, size_t errlen)
{
	struct fake *f = ctx;

	if (f->open_fails) {
		snprintf(err, errlen, "fake: open refused");
		return -1;
	}
	return 0;
}

static int fake_write(void *ctx, const uint8_t *b, size_t n)
{
	struct fake *f = ctx;

	if (n != 1) {
		fail("a command is one byte");
	}
	if (++f->writes == f->fail_write) {
		return -1;
	}
	if (f->streaming) {
		/* The block ends here: a stop before the status check. */
		memcpy(f->last_block, f->cur, f->cur_len);
		f->last_len = f->cur_len;
		f->streaming = false;
	}
	f->last_cmd = b[0];
	if (b[0] == QNG_CMD_STATUS) {
		f->status_got = 0;
	}
	if (b[0] == QNG_CMD_START) {
		f->streaming = true;
		f->head = 0;
		f->cur_len = 0;
	}
	return 0;
}

static long fake_read(void *ctx, uint8_t *b, size_t n, int timeout_ms)
{
	struct fake *f = ctx;
	size_t k;
	uint8_t c;

	if (n == 0) {
		fail("read of 0 bytes");
	}
	if (f->off >= f->n) {
		return 0;
	}
	c = f->p[f->off++];
	if (c == 0xFF) {
		return 0;
	}
	if (c == 0xFE) {
		return -1;
	}
	k = (size_t)c + 1;
	k = k < n ? k : n;
	k = k < f->n - f->off ? k : f->n - f->off;
	if (k == 0) {
		return 0;
	}
	memcpy(b, f->p + f->off, k);
	for (size_t i = 0; i < k; i++) {
		uint8_t byte = f->p[f->off + i];

		if (f->last_cmd == QNG_CMD_STATUS && f->status_got < 4) {
			f->status[f->status_got++] = byte;
		}
		if (f->streaming) {
			if (f->head < QNG_HEAD_DISCARD) {
				f->head++;
			} else {
				f->cur[f->cur_len++] = byte;
			}
		}
	}
	f->off += k;
	return (long)k;
}

static void fake_close(void *ctx)
{
	struct fake *f = ctx;

	f->streaming = false;
}

static const char *fake_name(void *ctx)
{
	return "fake";
}

static const char *fake_error(void *ctx)
{
	return "fake pipe error";
}

static const struct qng_pipe_ops fake_ops = {
    .open = fake_open,
    .write = fake_write,
    .read = fake_read,
    .close = fake_close,
    .name = fake_name,
    .error = fake_error,
    .free = NULL,
};

static void quiet(void *arg, enum qng_log_level level, const char *msg)
{
	(void)arg;
	(void)level;
	(void)msg;
}

static void run_driver(const uint8_t *data, size_t size)
{
	struct fake f;
	struct qng_params p;
	struct qng *q;
	char err[512];
	uint8_t out[300];
	uint64_t checks = 0;
	size_t given = 0; /* bytes of f.last_block handed out */
	unsigned starts = 0;

	if (size < 3) {
		return;
	}
	memset(&f, 0, sizeof(f));
	f.open_fails = data[0] == 0xFF;
	f.fail_write = data[1];
	f.cur = malloc(size);
	f.last_block = malloc(size);
	qng_params_default(&p);
	p.cmd_timeout_ms = 1;
	p.drain_ms = 1;
	p.stream_timeout_ms = 1;
	p.check_bytes = 1 + data[2] % 200;
	p.check_ms = 0; /* time must not decide anything here */
	p.start_tries = 1 + data[0] % 4;
	f.p = data + 3;
	f.n = size - 3;
	q = qng_new(&fake_ops, &f, (data[0] & 0x10) ? "QWR4FUZZ" : NULL, &p);
	if (q == NULL || f.cur == NULL || f.last_block == NULL) {
		fail("out of memory");
	}
	qng_set_log(q, (data[0] & 0x20) ? quiet : NULL, NULL);
	/* Restart after each failure while the device has bytes left (a bounded number of
	 * times: a start on an exhausted script fails at once). */
	while (starts++ < 8) {
		if (qng_start(q, err, sizeof(err)) < 0) {
			if (err[0] == '\0') {
				fail("qng_start failed without a message");
			}
			if (f.off >= f.n) {
				break;
			}
			continue;
		}
		for (;;) {
			size_t want = 1 + (f.off < f.n ? f.p[f.off] : 0) % sizeof(out);
			long r = qng_read(q, out, want, err, sizeof(err));
			uint64_t now = qng_checks_passed(q);

			if (r < 0) {
				break;
			}
			if (r == 0 || (size_t)r > want) {
				fail("qng_read returned 0 or more than asked");
			}
			if (now != checks) {
				/* A new block was released: its check must have passed. */
				uint32_t w = (uint32_t)f.status[0] | (uint32_t)f.status[1] << 8 |
					     (uint32_t)f.status[2] << 16 |
					     (uint32_t)f.status[3] << 24;

				if (now != checks + 1 || f.status_got != 4 ||
				    !(w & QNG_ST_ENABLED) || (w & QNG_ST_BADSTATS)) {
					fail("a block was released without a passing status");
				}
				checks = now;
				given = 0;
			}
			if (checks == 0 || given + (size_t)r > f.last_len ||
			    memcmp(out, f.last_block + given, (size_t)r) != 0) {
				fail("qng_read handed out bytes that are not the checked block's");
			}
			given += (size_t)r;
		}
		if (f.off >= f.n) {
			break;
		}
	}
	qng_stop(q);
	if (qng_read(q, out, 1, err, sizeof(err)) != -1) {
		fail("qng_read after qng_stop did not fail");
	}
	qng_free(q);
	free(f.cur);
	free(f.last_block);
}

static void run_strip(const uint8_t *data, size_t size)
{
	size_t packet, len, got, want = 0;
	uint8_t *buf, *ref;

	if (size < 2) {
		return;
	}
	packet = data[0] == 0 ? 512 : data[0] == 1 ? 64 : data[0];
	len = size - 1;
	buf = malloc(len + 1);
	ref = malloc(len + 1);
	if (buf == NULL || ref == NULL) {
		fail("out of memory");
	}
	memcpy(buf, data + 1, len);
	for (size_t off = 0; off < len; off += packet) {
		for (size_t i = off + 2; i < off + packet && i < len; i++) {
			ref[want++] = data[1 + i];
		}
	}
	got = qng_ftdi_strip_status(buf, len, packet);
	if (got != want || memcmp(buf, ref, want) != 0) {
		fail("qng_ftdi_strip_status differs from the reference");
	}
	free(buf);
	free(ref);
}

static void run_conf(const uint8_t *data, size_t size)
{
	char *arg = malloc(size + 1);
	char err[512];
	struct qng_conf c;
	struct qng_usb_id devs[8];
	size_t ndev = 0;

	if (arg == NULL) {
		fail("out of memory");
	}
	memcpy(arg, data, size);
	arg[size] = '\0';
	if (qng_conf_parse(arg, &c, err, sizeof(err)) == 0) {
		if (c.params.check_bytes == 0 || c.latency_ms < 1 || c.latency_ms > 255 ||
		    c.params.start_tries < 1 || c.params.cmd_timeout_ms < 1 ||
		    c.params.stream_timeout_ms < 1 || c.params.check_ms < 0 ||
		    memchr(c.serial, '\0', sizeof(c.serial)) == NULL ||
		    memchr(c.path, '\0', sizeof(c.path)) == NULL) {
			fail("qng_conf_parse accepted out-of-range values");
		}
		if (c.serial[0] != '\0' && qng_generation(c.serial) < 0) {
			fail("qng_conf_parse accepted a serial that is not a QNG's");
		}
	}
	(void)qng_generation(arg);
	/* The same bytes as a list of USB devices: 4 bytes of ids and 12 of serial each. */
	for (size_t off = 0; off + 16 <= size && ndev < 8; off += 16, ndev++) {
		struct qng_usb_id *d = &devs[ndev];

		memset(d, 0, sizeof(*d));
		d->vid = (uint16_t)(data[off] << 8 | data[off + 1]);
		d->pid = (uint16_t)(data[off + 2] << 8 | data[off + 3]);
		memcpy(d->serial, data + off + 4, 12);
		memcpy(d->note, data + off + 4, 6);
	}
	{
		const char *want = size > 0 && (data[0] & 1) ? devs[0].serial : NULL;
		int i = qng_pick_device(devs, ndev, ndev > 0 ? want : NULL, err, sizeof(err));

		if (i >= 0 && ((size_t)i >= ndev || devs[i].vid != 0x0403 ||
			       strncmp(devs[i].serial, "QWR", 3) != 0)) {
			fail("qng_pick_device picked a device that is not a QNG");
		}
		if (i < 0 && strlen(err) == 0) {
			fail("qng_pick_device failed without a message");
		}
	}
	free(arg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0) {
		return 0;
	}
	switch (data[0] % 4) {
	case 0:
	case 1:
		run_driver(data + 1, size - 1);
		break;
	case 2:
		run_strip(data + 1, size - 1);
		break;
	default:
		run_conf(data + 1, size - 1);
		break;
	}
	return 0;
}
