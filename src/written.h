/* written: bytes a client writes with EGD's 0x03 on an endpoint with write=on. They pass
 * health tests of their own (a gate per client, as a source has) before they join the
 * pool; a failure is logged and its window dropped. Written entropy is a bonus: when the
 * pool is full it is dropped, never waited for. */
#ifndef ENTROPYD_WRITTEN_H
#define ENTROPYD_WRITTEN_H

/* Min-entropy per byte assumed for bytes clients write with 0x03. */
#define WRITTEN_H 4.0

#include <stddef.h>
#include <stdint.h>

struct gate;
struct log_limit;
struct pool;

/* Test p[0..n) written by peer through *g (created at first use with false-positive rate
 * 2^-alpha_log2) and put the windows that pass into pool; a failure is logged through lim. */
void written_feed(struct gate **g, unsigned alpha_log2, struct pool *pool, const uint8_t *p,
		  size_t n, const char *peer, struct log_limit *lim);

#endif
