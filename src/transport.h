/* transport: how a client's bytes travel. One table of operations per kind: a stream
 * socket of its own (tcp, unix), the write end of a named pipe (fifo), a datagram peer on
 * its endpoint's socket (udp.c); later TLS and vhost-user. client.c calls nothing else, so
 * a new transport is one new file and one entry in transport_for()'s table. Every fd is
 * non-blocking. */
#ifndef ENTROPYD_TRANSPORT_H
#define ENTROPYD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct endpoint_conf;

struct transport {
	const char *name;
	/* Optional: does this transport serve the endpoint c (its options select it)? */
	bool (*wants)(const struct endpoint_conf *c);
	/* Optional: state for a connection just accepted (accepted) or connected on fd, for
	 * instance a handshake started; NULL with a message in err on failure. Without it the
	 * state is NULL. */
	void *(*attach)(int fd, bool accepted, const struct endpoint_conf *c, char *err,
			size_t errlen);
	/* Read up to n bytes: > 0, 0 at the end of the stream, -1 with errno (EAGAIN: nothing
	 * now). NULL: input comes whole through client_input() (datagrams), or never (pipes). */
	ssize_t (*read)(void *ctx, int fd, void *buf, size_t n);
	/* Send like writev, -1 with errno (EAGAIN: full); a datagram goes whole or not at all. */
	ssize_t (*writev)(void *ctx, int fd, const struct iovec *iov, int cnt);
	/* Optional: name the peer for log lines into out (for instance with the subject of its
	 * certificate); NULL: the name the endpoint gave (its address) is used. */
	void (*peer)(void *ctx, int fd, const char *given, char *out, size_t outlen);
	/* The client is gone: release ctx, and fd unless the endpoint owns it. */
	void (*close)(void *ctx, int fd);
	/* Largest single send (a datagram), 0 = no limit. */
	size_t max_send;
};

/* A connected socket of its own (tcp, unix), read and written directly. */
extern const struct transport transport_stream;
/* The write end of a pipe: written, never read. */
extern const struct transport transport_pipe;

/* The transport for a connection of the stream endpoint c (accepted or dialed). */
const struct transport *transport_for(const struct endpoint_conf *c);

#endif
