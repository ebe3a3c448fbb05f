/* netaddr: see netaddr.h. */
#include "netaddr.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
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

/* HOST:PORT after prefix (such as "tcp:"), named with it in messages. */
static int parse_hostport(const char *prefix, const char *s, bool port0, struct netaddr_spec *out,
			  char *err, size_t errlen)
{
	const char *host = s, *hend, *port;
	char *end;
	long pn;

	if (host[0] == '[') {
		host++;
		hend = strchr(host, ']');
		if (hend == NULL || hend[1] != ':') {
			snprintf(err, errlen, "bad IPv6 address: expected %s[V6ADDR]:PORT", prefix);
			return -1;
		}
		port = hend + 2;
	} else {
		hend = strrchr(host, ':');
		if (hend == NULL) {
			snprintf(err, errlen, "expected %sHOST:PORT", prefix);
			return -1;
		}
		if (memchr(host, ':', (size_t)(hend - host)) != NULL) {
			snprintf(err, errlen, "an IPv6 address goes in brackets: %s[V6ADDR]:PORT",
				 prefix);
			return -1;
		}
		port = hend + 1;
	}
	errno = 0;
	pn = strtol(port, &end, 10);
	if (hend == host || (size_t)(hend - host) >= sizeof(out->host)) {
		snprintf(err, errlen, "expected %sHOST:PORT (no host)", prefix);
		return -1;
	}
	if (end == port || *end != '\0' || errno != 0 || pn < (port0 ? 0 : 1) || pn > 65535) {
		snprintf(err, errlen, "bad port '%s' (%d..65535)", port, port0 ? 0 : 1);
		return -1;
	}
	memcpy(out->host, host, (size_t)(hend - host));
	out->host[hend - host] = '\0';
	snprintf(out->port, sizeof(out->port), "%ld", pn);
	return 0;
}

int netaddr_parse_hostport(const char *s, bool port0, struct netaddr_spec *out, char *err,
			   size_t errlen)
{
	return parse_hostport("", s, port0, out, err, errlen);
}

int netaddr_parse(const char *s, const char *const *kinds, bool port0, struct netaddr_spec *out,
		  char *err, size_t errlen)
{
	const char *colon = strchr(s, ':');
	size_t klen = colon != NULL ? (size_t)(colon - s) : 0;
	char expected[160] = "";
	bool known = false;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; kinds[i] != NULL; i++) {
		bool path = strcmp(kinds[i], "unix") == 0 || strcmp(kinds[i], "fifo") == 0 ||
			    strcmp(kinds[i], "vhost-user") == 0;
		size_t used = strlen(expected);

		snprintf(expected + used, sizeof(expected) - used, "%s%s:%s", i > 0 ? ", " : "",
			 kinds[i], path ? "PATH" : "HOST:PORT");
		if (klen > 0 && klen == strlen(kinds[i]) && strncmp(s, kinds[i], klen) == 0) {
			known = true;
			out->is_path = path;
			memcpy(out->kind, s, klen);
		}
	}
	if (!known) {
		snprintf(err, errlen, "expected %s", expected);
		return -1;
	}
	if (!out->is_path) {
		char prefix[sizeof(out->kind) + 1];

		snprintf(prefix, sizeof(prefix), "%s:", out->kind);
		return parse_hostport(prefix, colon + 1, port0, out, err, errlen);
	}
	if (colon[1] == '\0' || strlen(colon + 1) >= sizeof(out->path)) {
		snprintf(err, errlen, "%s: needs a path of 1 to %zu characters", out->kind,
			 sizeof(out->path) - 1);
		return -1;
	}
	memcpy(out->path, colon + 1, strlen(colon + 1) + 1);
	return 0;
}
