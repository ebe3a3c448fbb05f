/* udp: EGD over UDP, as QEMU's `-chardev udp` speaks it: every request is a datagram, every
 * answer a datagram of at most what was asked (and at most 4096 bytes, QEMU's read size).
 *
 * A listening endpoint answers each allowed peer from one socket; peers outside the allow
 * list (default: loopback) are ignored, so entropyd cannot be used to reflect traffic at a
 * third party. A connecting endpoint serves one fixed peer (QEMU's localaddr:localport). */
#ifndef ENTROPYD_UDP_H
#define ENTROPYD_UDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct client_opts;
struct clients;
struct event_base;
struct udp_ep;

#define UDP_MAX_REPLY 4096u
#define UDP_MAX_ALLOW 16

/* One allowed prefix. */
struct udp_prefix {
	int family;
	uint8_t addr[16];
	unsigned bits;
};

/* Parse "ADDR[/BITS]" into p; -1 if malformed. */
int udp_parse_prefix(const char *s, struct udp_prefix *p);
/* True if sa is inside one of the n prefixes. */
bool udp_allowed(const struct sockaddr *sa, const struct udp_prefix *allow, size_t n);

/* Serve EGD on the bound datagram socket fd (listening endpoint). */
struct udp_ep *udp_listen(struct event_base *base, struct clients *cs, int fd, const char *name,
			  const struct client_opts *opts, const struct udp_prefix *allow,
			  size_t nallow);
/* Stop serving; the socket itself is the caller's. */
void udp_free(struct udp_ep *u);

#endif
