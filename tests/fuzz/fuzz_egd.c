/* libFuzzer target for the EGD codec (egd.c). The input is a request stream; it is parsed
 * three ways: whole in one buffer, fed one byte at a time, and fed in two pieces split at a
 * point taken from the first byte. A stream reader that keeps what egd_parse() did not use
 * must see the same requests (command, length, bits, written bytes) whichever way the bytes
 * arrived, or the target aborts: a header split across reads must be "need more", never a
 * different request. The reply encoders are checked by decoding what they wrote. */
#include "egd.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REQS 4096

/* One parsed request, with its written bytes copied (the parser points into its input). */
struct rec {
	int cmd; /* -1 - byte: an unknown command, which ends the stream */
	uint8_t len;
	uint16_t bits;
	uint8_t data[255];
};

struct seq {
	struct rec r[MAX_REQS];
	size_t n;
	bool stopped; /* an unknown command was seen */
};

/* The stream reader: bytes arrive in pieces and are buffered until whole requests are there. */
struct reader {
	uint8_t buf[1024]; /* a whole 0x03 request is at most 259 bytes */
	size_t len;
};

/* The libFuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_egd: %s\n", what);
	abort();
}

static void record(struct seq *s, const struct egd_req *req, int used, const uint8_t *base,
		   size_t n)
{
	struct rec *r;

	if (used < 0) {
		s->stopped = true;
		return;
	}
	if ((size_t)used > n) {
		fail("egd_parse used more bytes than it was given");
	}
	if (s->n == MAX_REQS) {
		return;
	}
	r = &s->r[s->n++];
	memset(r, 0, sizeof(*r));
	r->cmd = (int)req->cmd;
	r->len = req->len;
	r->bits = req->bits;
	if (req->cmd == EGD_WRITE) {
		if (req->data != base + 4 || (size_t)used != 4u + req->len) {
			fail("0x03: data or length inconsistent with the bytes used");
		}
		memcpy(r->data, req->data, req->len);
	} else if (req->data != NULL) {
		fail("data set on a request other than 0x03");
	}
}

/* Parse the whole input at once. */
static void parse_whole(const uint8_t *data, size_t size, struct seq *s)
{
	size_t off = 0;

	while (off < size && !s->stopped) {
		struct egd_req req;
		int used = egd_parse(data + off, size - off, &req);

		if (used == 0) {
			break;
		}
		record(s, &req, used, data + off, size - off);
		if (used > 0) {
			off += (size_t)used;
		}
	}
}

/* Append a piece to the reader and take out every whole request, as a stream reader does
 * with what one read() returned (in parts, if it is larger than the reader's buffer). */
static void feed(struct reader *rd, const uint8_t *p, size_t n, struct seq *s)
{
	while (n > 0 && !s->stopped) {
		size_t k = n < sizeof(rd->buf) - rd->len ? n : sizeof(rd->buf) - rd->len;
		size_t off = 0;

		if (k == 0) {
			fail("reader full: a partial request longer than any request");
		}
		memcpy(rd->buf + rd->len, p, k);
		rd->len += k;
		p += k;
		n -= k;
		while (off < rd->len && !s->stopped) {
			struct egd_req req;
			int used = egd_parse(rd->buf + off, rd->len - off, &req);

			if (used == 0) {
				break;
			}
			record(s, &req, used, rd->buf + off, rd->len - off);
			if (used > 0) {
				off += (size_t)used;
			}
		}
		memmove(rd->buf, rd->buf + off, rd->len - off);
		rd->len -= off;
	}
}

static void compare(const struct seq *a, const struct seq *b, const char *how)
{
	if (a->n != b->n || a->stopped != b->stopped) {
		fprintf(stderr, "fuzz_egd: %s: %zu requests%s, whole: %zu%s\n", how, b->n,
			b->stopped ? " then unknown" : "", a->n, a->stopped ? " then unknown" : "");
		abort();
	}
	for (size_t i = 0; i < a->n; i++) {
		const struct rec *x = &a->r[i], *y = &b->r[i];

		if (x->cmd != y->cmd || x->len != y->len || x->bits != y->bits ||
		    memcmp(x->data, y->data, sizeof(x->data)) != 0) {
			fprintf(stderr, "fuzz_egd: %s: request %zu differs\n", how, i);
			abort();
		}
	}
}

/* egd_encode_level and egd_encode_pid decode back to what was encoded. */
static void check_encoders(const uint8_t *data, size_t size)
{
	uint8_t in[8] = {0}, out[300];
	uint32_t bits;
	long pid;
	size_t outlen, len;

	memcpy(in, data, size < sizeof(in) ? size : sizeof(in));
	bits = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
	egd_encode_level(bits, out);
	if (((uint32_t)out[0] << 24 | (uint32_t)out[1] << 16 | (uint32_t)out[2] << 8 | out[3]) !=
	    bits) {
		fail("egd_encode_level does not round-trip");
	}
	memcpy(&pid, in, sizeof(pid) < sizeof(in) ? sizeof(pid) : sizeof(in));
	outlen = size > 8 ? data[8] % 32 : 12;
	memset(out, 0xAA, sizeof(out));
	len = egd_encode_pid(pid, out, outlen);
	if (len == 0) {
		char digits[32];
		int d = snprintf(digits, sizeof(digits), "%ld", pid);

		if ((size_t)d + 1 <= outlen) {
			fail("egd_encode_pid refused a pid that fits");
		}
	} else {
		char digits[32];
		char *end;

		if (len > outlen || out[0] != len - 1 || len - 1 >= sizeof(digits)) {
			fail("egd_encode_pid: bad length byte");
		}
		memcpy(digits, out + 1, len - 1);
		digits[len - 1] = '\0';
		if (strtol(digits, &end, 10) != pid || *end != '\0') {
			fail("egd_encode_pid does not round-trip");
		}
	}
	for (size_t i = len; i < sizeof(out); i++) {
		if (out[i] != 0xAA) {
			fail("egd_encode_pid wrote past its reply");
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seq whole, bytewise, split;
	static struct reader rd;
	/* An exact-size copy, so that a read past the end is seen by ASan. */
	uint8_t *copy = malloc(size > 0 ? size : 1);
	size_t cut;

	if (copy == NULL) {
		return 0;
	}
	memcpy(copy, data, size);
	whole.n = 0;
	whole.stopped = false;
	parse_whole(copy, size, &whole);

	bytewise.n = 0;
	bytewise.stopped = false;
	rd.len = 0;
	for (size_t i = 0; i < size; i++) {
		feed(&rd, copy + i, 1, &bytewise);
	}
	compare(&whole, &bytewise, "byte by byte");

	cut = size > 0 ? copy[0] % (size + 1) : 0;
	split.n = 0;
	split.stopped = false;
	rd.len = 0;
	feed(&rd, copy, cut, &split);
	feed(&rd, copy + cut, size - cut, &split);
	compare(&whole, &split, "split in two");

	check_encoders(copy, size);
	free(copy);
	return 0;
}
