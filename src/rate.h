/* rate: a token bucket that paces what one client is sent. Pure: the caller passes the
 * time (milliseconds on any monotonic clock) and the bucket answers how many bytes may go
 * now and when more may; it never sleeps, reads a clock or touches a socket.
 *
 * The bucket holds at most one period's worth of bytes (the burst) and starts full; it
 * refills at `bytes` per `per_ms`, exactly (tokens are kept scaled by per_ms, in integers). */
#ifndef ENTROPYD_RATE_H
#define ENTROPYD_RATE_H

#include <stddef.h>
#include <stdint.h>

#define RATE_MAX_BYTES (1ull << 32) /* largest `bytes` rate_init accepts */
#define RATE_MAX_MS (1ull << 22)    /* largest `per_ms` (about 70 minutes) */

struct rate {
	uint64_t bytes, per_ms; /* refill: bytes per per_ms; also the bucket's size */
	uint64_t scaled;	/* tokens times per_ms */
	uint64_t last_ms;	/* time of the last refill */
};

/* Start a full bucket allowing bytes per per_ms (1..RATE_MAX_BYTES, 1..RATE_MAX_MS) at now_ms;
 * -1 if out of range. */
int rate_init(struct rate *r, uint64_t bytes, uint64_t per_ms, uint64_t now_ms);
/* Take up to want bytes at now_ms; returns how many may be sent now (0..want). */
size_t rate_take(struct rate *r, uint64_t now_ms, size_t want);
/* Give back n bytes taken but not sent (the bucket never grows past its size). */
void rate_return(struct rate *r, size_t n);
/* Milliseconds from now_ms until want bytes (at most the bucket's size) may be taken. */
uint64_t rate_wait_ms(struct rate *r, uint64_t now_ms, size_t want);

#endif
