/* libFuzzer target for EGD over UDP: the input is a run of datagrams (a length byte, or
 * 0xFF and two bytes of length up to 2048, then the payload), each handed to one client of
 * the shared state machine with client_input(), as udp.c does for a peer, on a transport
 * like udp.c's (no read, answers leave as whole datagrams of at most UDP_MAX_REPLY bytes),
 * with a real event_base and pool as in tests/unit/test_client.c. The pool always holds
 * enough, so a datagram of whole known commands must be answered in full, and one that ends
 * inside a command (or does not fit the client's buffer) not at all: a datagram is never
 * joined to the next. A client closed for a bad command is replaced. Optionally a send
 * fails with EAGAIN now and then, and the loop runs until the client has caught up. Memory
 * must come back to where it started once the client is gone.
 *
 * The first byte holds flags: write=on, sends that block, a pacer that never runs dry,
 * and (0x80) instead of datagrams the allow= list: an ADDR[/BITS] text, a NUL, then 16
 * bytes of an address; a prefix that parses must allow its own address. */
#include "client.h"
#include "egd.h"
#include "log.h"
#include "pool.h"
#include "transport.h"
#include "udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sanitizer/allocator_interface.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define F_WRITE 0x01u
#define F_BLOCK 0x02u
#define F_RATE 0x04u
#define F_PREFIX 0x80u
#define POOL_BYTES (256u * 1024u)

/* The libFuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_udp: %s\n", what);
	abort();
}

/* What the fake peer saw. */
struct peer {
	size_t answered;      /* bytes sent to it since the last datagram */
	unsigned sends;	      /* writev calls */
	unsigned block_every; /* every block_every-th send fails with EAGAIN (0: never) */
	bool closed;
};

static struct event_base *base;
static struct pool *pool;
static struct clients *cs;
static int sock = -1; /* the endpoint's socket: only ever written-armed, never used */
static uint8_t pattern[4096];

static ssize_t peer_writev(void *ctx, int fd, const struct iovec *iov, int cnt)
{
	struct peer *p = ctx;
	size_t n = 0;

	for (int i = 0; i < cnt; i++) {
		n += iov[i].iov_len;
	}
	if (n > UDP_MAX_REPLY) {
		fail("an answer larger than one UDP datagram may be");
	}
	if (n == 0) {
		fail("an empty datagram sent");
	}
	p->sends++;
	if (p->block_every > 0 && p->sends % p->block_every == 0) {
		errno = EAGAIN;
		return -1;
	}
	p->answered += n;
	return (ssize_t)n;
}

static void peer_close(void *ctx, int fd)
{
}

/* Like udp.c's: input arrives whole through client_input(), sends are datagrams. */
static const struct transport fuzz_udp_transport = {
    .name = "udp", .writev = peer_writev, .close = peer_close, .max_send = UDP_MAX_REPLY};

static void peer_gone(void *arg)
{
	((struct peer *)arg)->closed = true;
}

static void setup(void)
{
	log_init("fuzz_udp", true, false);
	base = event_base_new();
	pool = pool_new(POOL_BYTES);
	cs = base != NULL && pool != NULL ? clients_new(base, pool, 30) : NULL;
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (cs == NULL || sock < 0) {
		fail("cannot set up the event base, pool and socket");
	}
	for (size_t i = 0; i < sizeof(pattern); i++) {
		pattern[i] = (uint8_t)(i * 7 + 3);
	}
	/* Let libevent grow its tables for the socket and for timers once, here, so that the
	 * per-input memory check sees only what a client keeps. */
	struct event *w = event_new(base, sock, EV_WRITE, NULL, NULL);
	struct event *t[8];
	struct timeval tv = {60, 0};

	if (w == NULL || event_add(w, NULL) < 0) {
		fail("cannot arm a write event");
	}
	for (size_t i = 0; i < 8; i++) {
		t[i] = evtimer_new(base, NULL, NULL);
		if (t[i] == NULL || evtimer_add(t[i], &tv) < 0) {
			fail("cannot arm a timer");
		}
	}
	for (size_t i = 0; i < 8; i++) {
		event_free(t[i]);
	}
	event_free(w);
	event_base_loop(base, EVLOOP_NONBLOCK);
}

/* What a datagram must be answered with, if whole: bytes in *answer, pool bytes in *pool_need.
 * Returns 1 if it ends inside a command, -1 if a command closes the client, else 0. */
static int expect(const uint8_t *d, size_t n, bool allow_write, size_t *answer, size_t *pool_need)
{
	size_t off = 0;
	uint8_t pid[16];
	size_t pidlen = egd_encode_pid((long)getpid(), pid, sizeof(pid));

	*answer = 0;
	*pool_need = 0;
	while (off < n) {
		struct egd_req req;
		int used = egd_parse(d + off, n - off, &req);

		if (used == 0) {
			return 1;
		}
		if (used < 0) {
			return -1; /* client_input stops here and the client is closed */
		}
		if (req.cmd == EGD_WRITE && !allow_write) {
			/* The client is closed here, unless the datagram is dropped first for
			 * ending inside a later command. */
			for (off += (size_t)used; off < n; off += (size_t)used) {
				used = egd_parse(d + off, n - off, &req);
				if (used <= 0) {
					break;
				}
			}
			return off < n && used == 0 ? 1 : -1;
		}
		switch (req.cmd) {
		case EGD_LEVEL:
			*answer += 4;
			break;
		case EGD_PID:
			*answer += pidlen;
			break;
		case EGD_NONBLOCK:
			*answer += 1u + req.len;
			*pool_need += req.len;
			break;
		case EGD_BLOCK:
			*answer += req.len;
			*pool_need += req.len;
			break;
		case EGD_WRITE:
			break;
		}
		off += (size_t)used;
	}
	return 0;
}

static void top_up(size_t need)
{
	size_t avail = pool_avail(pool);

	while (avail < need) {
		size_t k = need - avail < sizeof(pattern) ? need - avail : sizeof(pattern);

		if (pool_put(pool, pattern, k) != k) {
			fail("pool full");
		}
		avail += k;
	}
}

static void run_prefix(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	char text[100];
	struct udp_prefix pre;
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
	struct sockaddr_in s4 = {.sin_family = AF_INET};

	if (nul == NULL || (size_t)(nul - data) >= sizeof(text)) {
		return;
	}
	memcpy(text, data, (size_t)(nul - data) + 1);
	if (udp_parse_prefix(text, &pre) < 0) {
		return;
	}
	if ((pre.family == AF_INET && pre.bits > 32) ||
	    (pre.family == AF_INET6 && pre.bits > 128)) {
		fail("a prefix longer than its address");
	}
	memcpy(&s4.sin_addr, pre.addr, 4);
	memcpy(&s6.sin6_addr, pre.addr, 16);
	if (!udp_allowed(pre.family == AF_INET ? (struct sockaddr *)&s4 : (struct sockaddr *)&s6,
			 &pre, 1)) {
		fail("a prefix does not allow its own address");
	}
	if ((size_t)(nul - data) + 1 + 16 <= size) {
		memcpy(&s6.sin6_addr, nul + 1, 16);
		(void)udp_allowed((struct sockaddr *)&s6, &pre, 1);
		memcpy(&s4.sin_addr, nul + 1, 4);
		(void)udp_allowed((struct sockaddr *)&s4, &pre, 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct client_opts opts = {0};
	struct peer peer;
	struct client *c = NULL;
	size_t off = 1, before;
	uint8_t flags;

	if (base == NULL) {
		setup();
	}
	if (size == 0) {
		return 0;
	}
	flags = data[0];
	if (flags & F_PREFIX) {
		run_prefix(data + 1, size - 1);
		return 0;
	}
	before = __sanitizer_get_current_allocated_bytes();
	opts.allow_write = (flags & F_WRITE) != 0;
	if (flags & F_RATE) {
		opts.has_rate = true;
		opts.rate_bytes = 1u << 30; /* paced, but never out of tokens here */
		opts.rate_ms = 1;
	}
	memset(&peer, 0, sizeof(peer));
	peer.block_every = (flags & F_BLOCK) ? 2u + (flags >> 3) % 4 : 0;
	while (off < size) {
		size_t len = data[off++], answer, need;
		const uint8_t *d;
		int kind, rc;

		if (len == 0xFF && off + 2 <= size) {
			len = ((size_t)data[off] << 8 | data[off + 1]) % 2049;
			off += 2;
		}
		len = len < size - off ? len : size - off;
		d = data + off;
		off += len;
		if (c == NULL || peer.closed) {
			peer.closed = false;
			c = client_new(cs, &fuzz_udp_transport, &peer, sock, &opts, "udp:fuzz",
				       peer_gone, &peer);
			if (c == NULL) {
				fail("client_new failed");
			}
		}
		/* An exact-size copy, so that a read past the datagram is seen by ASan. */
		uint8_t *dgram = malloc(len > 0 ? len : 1);

		if (dgram == NULL) {
			fail("out of memory");
		}
		memcpy(dgram, d, len);
		kind = expect(dgram, len, opts.allow_write, &answer, &need);
		top_up(need);
		peer.answered = 0;
		rc = client_input(c, dgram, len);
		free(dgram);
		if (kind == 1 && (rc != 1 || peer.answered != 0)) {
			fail("a datagram that ends inside a command was not dropped whole");
		}
		/* Sends that blocked: run the loop until the client caught up. */
		for (int spin = 0; spin < 100000 && !peer.closed && !client_idle(c); spin++) {
			event_base_loop(base, EVLOOP_NONBLOCK);
		}
		if (!peer.closed && !client_idle(c)) {
			fail("a client owes bytes while the pool is full and its peer writable");
		}
		if (kind == 0 && len <= 1024 && peer.answered != answer) {
			fprintf(stderr,
				"fuzz_udp: datagram of %zu bytes: %zu bytes answered, %zu asked\n",
				len, peer.answered, answer);
			abort();
		}
		if (kind == 0 && len > 1024 && peer.answered != 0) {
			fail("a datagram too large for the buffer was answered");
		}
		if (kind != 0 && peer.answered > answer) {
			fail("more answered than the datagram's whole commands asked");
		}
		if (__sanitizer_get_current_allocated_bytes() > before + 256 * 1024) {
			fail("memory grows with the datagrams of one peer");
		}
	}
	if (c != NULL && !peer.closed) {
		client_drop(c, "shutting down");
	}
	if (__sanitizer_get_current_allocated_bytes() > before) {
		fprintf(stderr, "fuzz_udp: %zu bytes still allocated after the client closed\n",
			__sanitizer_get_current_allocated_bytes() - before);
		abort();
	}
	return 0;
}
