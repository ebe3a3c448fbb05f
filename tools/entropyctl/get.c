/* get: `entropyctl get N`: N bytes from the daemon, written to a file or stdout. Through
 * the control socket ({"cmd":"get"}, then the bytes; also feed-kernel's way in), or with --from
 * through any EGD endpoint: blocking requests (0x02, at most 255 bytes each, several in flight),
 * over TLS with tls=DIR (QEMU's x509 directory layout, client-cert.pem and client-key.pem, as
 * entropyd's own connecting side; src/tls.c). */
#include "ctl.h"

#include "netaddr.h"
#include "tls.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define GET_INFLIGHT 64 /* EGD requests in flight */
#define GET_TIMEOUT_MS 30000

/* A connection: a plain socket, or TLS over it. */
struct conn {
	int fd;
	struct tls_conn *tls;
};

/* Wait until fd is ready for dir (POLLIN or POLLOUT); -1 on a timeout. */
static int wait_fd(int fd, short dir)
{
	struct pollfd p = {fd, dir, 0};

	if (poll(&p, 1, GET_TIMEOUT_MS) <= 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	return 0;
}

static short poll_dir(const struct conn *c, short dir)
{
	return tls_waits(c->tls, dir) == EV_READ ? POLLIN : POLLOUT;
}

static int conn_write(struct conn *c, const void *buf, size_t n)
{
	while (n > 0) {
		struct iovec iov = {(void *)buf, n};
		ssize_t w = c->tls != NULL ? tls_writev(c->tls, &iov, 1) : write(c->fd, buf, n);

		if (w < 0 && errno != EAGAIN) {
			return -1;
		}
		if (w < 0 && wait_fd(c->fd, c->tls ? poll_dir(c, EV_WRITE) : POLLOUT) < 0) {
			return -1;
		}
		if (w > 0) {
			buf = (const char *)buf + w;
			n -= (size_t)w;
		}
	}
	while (c->tls != NULL && tls_write_pending(c->tls)) {
		if (tls_flush(c->tls) < 0 &&
		    (errno != EAGAIN || wait_fd(c->fd, poll_dir(c, EV_WRITE)) < 0)) {
			return -1;
		}
	}
	return 0;
}

/* Read up to n bytes (> 0), 0 at the end, -1 on an error. */
static ssize_t conn_read(struct conn *c, void *buf, size_t n)
{
	for (;;) {
		ssize_t r = c->tls != NULL ? tls_read(c->tls, buf, n) : read(c->fd, buf, n);

		if (r >= 0 || errno != EAGAIN) {
			return r;
		}
		if (wait_fd(c->fd, c->tls ? poll_dir(c, EV_READ) : POLLIN) < 0) {
			return -1;
		}
	}
}

/* Connect to a tcp:HOST:PORT[,tls=DIR] or unix:PATH EGD endpoint; -1 after printing why. */
static int egd_connect(const char *spec, struct conn *c)
{
	static const char *const kinds[] = {"tcp", "unix", NULL};
	char addr[512], err[512];
	const char *tls = strstr(spec, ",tls=");
	struct netaddr_spec a;

	snprintf(addr, sizeof(addr), "%.*s", tls ? (int)(tls - spec) : (int)strlen(spec), spec);
	if (netaddr_parse(addr, kinds, false, &a, err, sizeof(err)) < 0) {
		fprintf(stderr, "entropyctl: --from %s: %s\n", spec, err);
		return -1;
	}
	if (a.is_path) {
		struct sockaddr_un sun;

		c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (netaddr_unix(a.path, &sun, err, sizeof(err)) < 0 || c->fd < 0 ||
		    connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			fprintf(stderr, "entropyctl: cannot connect to %s: %m\n", spec);
			return -1;
		}
		return 0;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
	int rc = getaddrinfo(a.host, a.port, &hints, &res);

	if (rc != 0) {
		fprintf(stderr, "entropyctl: %s: %s\n", spec, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->fd >= 0 && connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			break;
		}
		if (c->fd >= 0) {
			close(c->fd);
		}
		c->fd = -1;
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		fprintf(stderr, "entropyctl: cannot connect to %s: %m\n", spec);
		return -1;
	}
	if (tls != NULL) {
		struct tls_conf *t = tls_conf_new(tls + 5, false, true, NULL, err, sizeof(err));

		fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
		c->tls = t != NULL ? tls_conn_new(t, c->fd, false, a.host, err, sizeof(err)) : NULL;
		tls_conf_free(t);
		while (c->tls != NULL && (rc = tls_handshake(c->tls)) < 0 && errno == EAGAIN) {
			if (wait_fd(c->fd, poll_dir(c, EV_READ)) < 0) {
				break;
			}
		}
		if (c->tls == NULL || rc < 0) {
			fprintf(stderr, "entropyctl: %s: TLS: %s\n", spec,
				c->tls != NULL && tls_error(c->tls) ? tls_error(c->tls) : err);
			return -1;
		}
	}
	return 0;
}

/* Read n bytes from c to out; -1 after printing why. */
static int copy_out(struct conn *c, uint64_t n, FILE *out, bool egd)
{
	uint8_t buf[65536];
	uint64_t to_ask = egd ? n : 0, inflight = 0;

	while (n > 0) {
		size_t want = sizeof(buf);
		ssize_t r;

		/* EGD: keep up to GET_INFLIGHT blocking requests of 255 bytes in flight. */
		while (to_ask > 0 && inflight < GET_INFLIGHT * 255u) {
			uint8_t req[2] = {0x02, (uint8_t)(to_ask < 255 ? to_ask : 255)};

			if (conn_write(c, req, sizeof(req)) < 0) {
				fprintf(stderr, "entropyctl: cannot send a request: %m\n");
				return -1;
			}
			to_ask -= req[1];
			inflight += req[1];
		}
		if ((egd ? inflight : n) < want) {
			want = (size_t)(egd ? inflight : n);
		}
		r = conn_read(c, buf, want);
		if (r <= 0) {
			fprintf(stderr, "entropyctl: %s with %llu byte(s) still to come\n",
				r == 0 ? "the connection ended" : "cannot read",
				(unsigned long long)n);
			return -1;
		}
		if (fwrite(buf, 1, (size_t)r, out) != (size_t)r) {
			fprintf(stderr, "entropyctl: cannot write the output: %m\n");
			return -1;
		}
		n -= (uint64_t)r;
		inflight -= egd ? (uint64_t)r : 0;
	}
	return 0;
}

int ctl_get_start(uint64_t n)
{
	int fd = ctl_connect();
	struct json_object *req, *h;

	if (fd < 0) {
		return -1;
	}
	req = json_object_new_object();
	json_object_object_add(req, "cmd", json_object_new_string("get"));
	json_object_object_add(req, "bytes", json_object_new_int64((int64_t)n));
	h = ctl_send(fd, req) == 0 ? ctl_reply(fd, 4096) : NULL;
	json_object_put(req);
	if (h == NULL) {
		close(fd);
		return -1;
	}
	json_object_put(h);
	return fd;
}

int ctl_read_full(int fd, void *buf, size_t n)
{
	struct conn c = {fd, NULL};
	size_t got = 0;

	while (got < n) {
		ssize_t r = conn_read(&c, (uint8_t *)buf + got, n - got);

		if (r <= 0) {
			errno = r == 0 ? 0 : errno;
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

int ctl_get_main(int argc, char **argv)
{
	static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
					     {"from", required_argument, NULL, 'f'},
					     {NULL, 0, NULL, 0}};
	const char *outfile = NULL, *from = NULL;
	struct conn c = {-1, NULL};
	FILE *out = stdout;
	char *end;
	unsigned long long n;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		if (ch == 'o') {
			outfile = optarg;
		} else if (ch == 'f') {
			from = optarg;
		} else {
			fprintf(stderr, "usage: entropyctl get N [-o FILE] [--from EP]\n");
			return 2;
		}
	}
	errno = 0;
	n = optind < argc ? strtoull(argv[optind], &end, 10) : 0;
	if (optind + 1 != argc || errno != 0 || *end != '\0' || n == 0) {
		fprintf(stderr, "entropyctl: get needs a byte count N > 0\n");
		return 2;
	}
	if (from != NULL) {
		rc = egd_connect(from, &c);
	} else {
		rc = (c.fd = ctl_get_start(n)) < 0 ? -1 : 0;
	}
	if (rc == 0 && outfile != NULL && (out = fopen(outfile, "wb")) == NULL) {
		fprintf(stderr, "entropyctl: cannot write %s: %m\n", outfile);
		rc = -1;
	}
	if (rc == 0) {
		rc = copy_out(&c, n, out, from != NULL);
	}
	if (out != stdout && out != NULL && fclose(out) != 0) {
		rc = -1;
	}
	if (c.tls != NULL) {
		tls_conn_free(c.tls);
	}
	if (c.fd >= 0) {
		close(c.fd);
	}
	return rc == 0 ? 0 : 1;
}
