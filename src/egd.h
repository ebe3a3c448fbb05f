/* egd: the EGD protocol codec. Pure: turns request bytes into request records and knows
 * the wire format of replies; never touches a socket. */
#ifndef ENTROPYD_EGD_H
#define ENTROPYD_EGD_H

#include <stddef.h>
#include <stdint.h>

enum egd_cmd {
	EGD_LEVEL = 0x00,    /* 00            -> 4 bytes big-endian: bits available */
	EGD_NONBLOCK = 0x01, /* 01 NN         -> MM then MM bytes (MM <= NN) */
	EGD_BLOCK = 0x02,    /* 02 NN         -> exactly NN bytes */
	EGD_WRITE = 0x03,    /* 03 HI LO NN + NN bytes -> nothing */
	EGD_PID = 0x04,	     /* 04            -> LL then LL ASCII characters */
};

struct egd_req {
	enum egd_cmd cmd;
	uint8_t len;	     /* NN for 01, 02, 03 */
	uint16_t bits;	     /* HI:LO for 03 */
	const uint8_t *data; /* the NN bytes of 03, pointing into the parsed input */
};

/* Parse one request from buf[0..n). Returns the number of bytes it takes (> 0) and fills
 * *req; 0 if more bytes are needed; -1 for an unknown command (*req->cmd holds the byte). */
int egd_parse(const uint8_t *buf, size_t n, struct egd_req *req);
/* Encode the reply to 00 into out[4]. */
void egd_encode_level(uint32_t bits, uint8_t out[4]);
/* Encode the reply to 04 (LL then digits) into out (at least 12 bytes); returns its length. */
size_t egd_encode_pid(long pid, uint8_t *out, size_t outlen);

#endif
