/* netaddr: see netaddr.h. */
#include "netaddr.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

/* Same address (and port, unless want's port is 0)? */
bool netaddr_same_inet(const struct sockaddr *have, const struct sockaddr *want)
{
	if (have->sa_family != want->sa_family) {
		return false;
	}
	if (want->sa_family == AF_INET) {
		const struct sockaddr_in *h = (const void *)have, *w = (const void *)want;

		return h->sin_addr.s_addr == w->sin_addr.s_addr &&
		       (w->sin_port == 0 || w->sin_port == h->sin_port);
	}
	if (want->sa_family == AF_INET6) {
		const struct sockaddr_in6 *h = (const void *)have, *w = (const void *)want;

		return memcmp(&h->sin6_addr, &w->sin6_addr, sizeof(w->sin6_addr)) == 0 &&
		       (w->sin6_port == 0 || w->sin6_port == h->sin6_port);
	}
	return false;
}

/* "tcp:127.0.0.1:8888", "tcp:[::1]:8888" or "unix:PATH" for a socket address. */
void netaddr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN], serv[16];

	if (sa->sa_family == AF_UNIX) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;

		snprintf(out, outlen, "unix:%s", len > sizeof(sa_family_t) ? sun->sun_path : "");
		return;
	}
	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(out, outlen, "tcp:?");
		return;
	}
	snprintf(out, outlen, sa->sa_family == AF_INET6 ? "tcp:[%s]:%s" : "tcp:%s:%s", host, serv);
}

/* Replies are small (64 bytes for a guest's virtio-rng buffer): send each at once rather
 * than letting Nagle's algorithm hold it until the peer's (delayed) acknowledgement. */
void netaddr_no_delay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* "tcp:127.0.0.1:PORT" (kind = "tcp" or "udp") for a bound socket. */
void netaddr_sock_name(int fd, const char *kind, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);

	getsockname(fd, (struct sockaddr *)&ss, &sslen);
	netaddr_format((struct sockaddr *)&ss, sslen, out, outlen);
	memcpy(out, kind, 3);
}

/* The port a socket is bound to (0 if unbound). */
int netaddr_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		return 0;
	}
	if (ss.ss_family == AF_INET) {
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : 0;
}

int netaddr_unix(const char *path, struct sockaddr_un *sun, char *err, size_t errlen)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		snprintf(err, errlen, "unix:%s: path longer than %zu bytes", path,
			 sizeof(sun->sun_path) - 1);
		return -1;
	}
	memcpy(sun->sun_path, path, strlen(path) + 1);
	return 0;
}
