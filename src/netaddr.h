/* netaddr: socket addresses. The one parser of the address grammar shared by endpoints
 * and the egd: source (KIND:HOST:PORT, KIND:[V6ADDR]:PORT, KIND:PATH), how an address is
 * written in log lines, whether two addresses are the same, which port a socket is bound
 * to. */
#ifndef ENTROPYD_NETADDR_H
#define ENTROPYD_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

/* An address as written by the user. */
struct netaddr_spec {
	char kind[16]; /* "tcp", "udp" (host and port) or "unix", "fifo", "vhost-user" (path) */
	bool is_path;
	char host[256]; /* without brackets */
	char port[8];	/* decimal, 0..65535 */
	char path[108];
};

/* Parse KIND:HOST:PORT, KIND:[V6ADDR]:PORT or KIND:PATH for one of kinds (NULL-terminated);
 * port 0 only if port0; -1 with a message (naming what is wrong) in err. */
int netaddr_parse(const char *s, const char *const *kinds, bool port0, struct netaddr_spec *out,
		  char *err, size_t errlen);
/* Parse HOST:PORT or [V6ADDR]:PORT into out->host and out->port (same rules). */
int netaddr_parse_hostport(const char *s, bool port0, struct netaddr_spec *out, char *err,
			   size_t errlen);
/* Same family and address, and same port unless want's port is 0? */
bool netaddr_same_inet(const struct sockaddr *have, const struct sockaddr *want);
/* "tcp:127.0.0.1:8888", "tcp:[::1]:8888" or "unix:PATH" for an address. */
void netaddr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen);
/* Set TCP_NODELAY on a connected TCP socket. */
void netaddr_no_delay(int fd);
/* netaddr_format of a bound socket, with its first three letters replaced by kind. */
void netaddr_sock_name(int fd, const char *kind, char *out, size_t outlen);
/* The port a socket is bound to (0 if unbound). */
int netaddr_port(int fd);
/* Fill sun for a unix socket path; -1 with a message in err if the path is too long. */
int netaddr_unix(const char *path, struct sockaddr_un *sun, char *err, size_t errlen);

#endif
