/* transport: see transport.h. The table in transport_for() lists the transports a stream
 * endpoint can use, most specific first; the plain stream serves every endpoint. */
#include "transport.h"

#include "tls.h"

#include <sys/socket.h>
#include <unistd.h>

static ssize_t fd_read(void *ctx, int fd, void *buf, size_t n)
{
	return read(fd, buf, n);
}

static ssize_t fd_writev(void *ctx, int fd, const struct iovec *iov, int cnt)
{
	return writev(fd, iov, cnt);
}

static void fd_close(void *ctx, int fd)
{
	close(fd);
}

const struct transport transport_stream = {
    .name = "stream", .read = fd_read, .writev = fd_writev, .close = fd_close};

const struct transport transport_pipe = {.name = "pipe", .writev = fd_writev, .close = fd_close};

const struct transport *transport_for(const struct endpoint_conf *c)
{
	static const struct transport *const table[] = {&transport_tls, &transport_stream};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (table[i]->wants == NULL || table[i]->wants(c)) {
			return table[i];
		}
	}
	return &transport_stream;
}

bool transport_read_pending(const struct transport *tr, void *ctx)
{
	return tr->read_pending != NULL && tr->read_pending(ctx);
}

bool transport_input_waiting(const struct transport *tr, void *ctx, int fd)
{
	char b;

	if (tr->read == NULL) {
		return false;
	}
	/* A byte, or the end of the stream (0); -1 (EAGAIN, or not a socket): nothing known. */
	return transport_read_pending(tr, ctx) || recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;
}
