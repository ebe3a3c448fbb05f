/* control: the control socket's connections (entropyctl). One JSON request per line, at
 * most CONTROL_MAX_REQUEST bytes: {"cmd":"status"} is answered with the status document
 * (stats.h) on one line; {"cmd":"get","bytes":N} with the line {"bytes":N}, then N bytes
 * from the pool, served as a client owed N bytes (the connection then is that client: the
 * same rotation shares the pool). A line that is not a JSON object, or an oversized one,
 * closes that connection with one log line; beyond CONTROL_MAX_CONNS open connections a
 * new one is closed at once (one rate-limited log line). The socket itself is a unix endpoint
 * (listen.c) marked control, so it is bound, repaired and kept across a reload like any. */
#ifndef ENTROPYD_CONTROL_H
#define ENTROPYD_CONTROL_H

struct endpoint;

/* The longest request line accepted. */
#define CONTROL_MAX_REQUEST 4096
/* The most control connections open at once; more are closed at once, with a log line. */
#define CONTROL_MAX_CONNS 16
/* The most bytes one get may ask for. */
#define CONTROL_MAX_GET (1ull << 32)

/* Serve the connection fd accepted on the control endpoint ep (peer names it in logs). */
void control_accept(const struct endpoint *ep, int fd, const char *peer);
/* Close the connections still open on ep (it is closing). */
void control_close(const struct endpoint *ep);

#endif
