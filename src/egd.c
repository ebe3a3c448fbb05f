/* egd: the EGD protocol codec.
 *
 * A request stream is a sequence of commands, each a byte followed by its arguments; the
 * parser consumes exactly one whole command at a time so that a header split across reads
 * is simply "need more bytes". Nothing here allocates or performs I/O. */
#include "egd.h"

#include <stdio.h>
#include <string.h>

int egd_parse(const uint8_t *buf, size_t n, struct egd_req *req)
{
	memset(req, 0, sizeof(*req));
	if (n == 0) {
		return 0;
	}
	req->cmd = (enum egd_cmd)buf[0];
	switch (buf[0]) {
	case EGD_LEVEL:
	case EGD_PID:
		return 1;
	case EGD_NONBLOCK:
	case EGD_BLOCK:
		if (n < 2) {
			return 0;
		}
		req->len = buf[1];
		return 2;
	case EGD_WRITE:
		if (n < 4) {
			return 0;
		}
		req->bits = (uint16_t)((buf[1] << 8) | buf[2]);
		req->len = buf[3];
		if (n < 4u + req->len) {
			return 0;
		}
		req->data = buf + 4;
		return 4 + req->len;
	default:
		return -1;
	}
}

void egd_encode_level(uint32_t bits, uint8_t out[4])
{
	out[0] = (uint8_t)(bits >> 24);
	out[1] = (uint8_t)(bits >> 16);
	out[2] = (uint8_t)(bits >> 8);
	out[3] = (uint8_t)bits;
}

size_t egd_encode_pid(long pid, uint8_t *out, size_t outlen)
{
	char digits[32];
	int len = snprintf(digits, sizeof(digits), "%ld", pid);

	if (len < 0 || (size_t)len + 1 > outlen || len > 255) {
		return 0;
	}
	out[0] = (uint8_t)len;
	memcpy(out + 1, digits, (size_t)len);
	return (size_t)len + 1;
}
