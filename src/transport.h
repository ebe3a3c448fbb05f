/* transport: how a client's bytes travel. One table of operations per kind: a stream
 * socket of its own (tcp, unix), the write end of a named pipe (fifo), a datagram peer on
 * its endpoint's socket (udp.c), TLS over a tcp socket (tls.c); later vhost-user. client.c calls
 * nothing else, so a new transport is one new file and one entry in transport_for()'s table. Every
 * fd is non-blocking. */
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

	/* The hooks below let a transport that keeps state of its own between the socket and
	 * the client (TLS records, a handshake) be driven by the same state machine. Each is
	 * optional; without it the transport is a plain socket. */

	/* The readiness of fd (EV_READ or EV_WRITE) that the last read (dir EV_READ) or
	 * writev (dir EV_WRITE) that returned EAGAIN, or took less, waits for: a handshake may
	 * need to write while the client reads. NULL: dir itself. */
	short (*waits)(void *ctx, short dir);
	/* True if read has bytes to return now without fd being readable (decrypted bytes
	 * held by the transport): the client reads again at once. */
	bool (*read_pending)(void *ctx);
	/* True while bytes writev counted as sent are still held by the transport (a record
	 * OpenSSL must finish): the client keeps waiting to write and calls flush. */
	bool (*write_pending)(void *ctx);
	/* Send what write_pending says is held: 0 when nothing is left, -1 with errno (EAGAIN:
	 * wait again for waits(ctx, EV_WRITE)). */
	int (*flush)(void *ctx, int fd);
	/* Why the last read, writev or flush failed, when errno alone does not say (a refused
	 * TLS handshake: which check refused the peer); NULL: strerror(errno). */
	const char *(*error)(void *ctx);
	/* False while the connection cannot carry requests yet (a TLS handshake under way):
	 * one not ready CLIENT_PARTIAL_TIMEOUT_MS after it was accepted or connected is
	 * closed. NULL: ready at once. */
	bool (*ready)(void *ctx);
};

/* A connected socket of its own (tcp, unix), read and written directly. */
extern const struct transport transport_stream;
/* The write end of a pipe: written, never read. */
extern const struct transport transport_pipe;

/* True if tr holds input it already read from its fd (decrypted TLS records). */
bool transport_read_pending(const struct transport *tr, void *ctx);
/* True if the peer of a readable transport has sent something (or closed) that the client
 * has not read yet: bytes held by tr, or waiting on fd. */
bool transport_input_waiting(const struct transport *tr, void *ctx, int fd);

/* The transport for a connection of the stream endpoint c (accepted or dialed). */
const struct transport *transport_for(const struct endpoint_conf *c);

#endif
