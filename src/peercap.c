/* peercap: see peercap.h. A small hash table of counts; an entry lives while its peer holds
 * a connection. */
#include "peercap.h"

#include "log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEER_BUCKETS 64
#define PEER_KEY_LEN 9

struct peercap_entry {
	struct peercap *pc;
	struct peercap_entry *next;
	unsigned n;
	uint8_t key[PEER_KEY_LEN];
};

struct peercap {
	char spec[128];
	unsigned cap;
	struct peercap_entry *buckets[PEER_BUCKETS];
	struct log_limit refusals;
};

struct peercap *peercap_new(const char *spec, unsigned cap)
{
	struct peercap *pc = calloc(1, sizeof(*pc));

	if (pc != NULL) {
		snprintf(pc->spec, sizeof(pc->spec), "%s", spec);
		pc->cap = cap;
	}
	return pc;
}

/* The key a connection is counted by, and its name for log lines; -1 if unknown. */
static int peer_key(int fd, const struct sockaddr *sa, uint8_t key[PEER_KEY_LEN], char *name,
		    size_t namelen)
{
	memset(key, 0, PEER_KEY_LEN);
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		char host[INET6_ADDRSTRLEN];

		if (!IN6_IS_ADDR_V4MAPPED(a)) {
			struct in6_addr net = *a;

			key[0] = 6;
			memcpy(key + 1, a->s6_addr, 8);
			memset(net.s6_addr + 8, 0, 8);
			inet_ntop(AF_INET6, &net, host, sizeof(host));
			snprintf(name, namelen, "%s/64", host);
			return 0;
		}
		key[0] = 4;
		memcpy(key + 1, a->s6_addr + 12, 4);
	} else if (sa->sa_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else {
		struct ucred cred;
		socklen_t len = sizeof(cred);

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
			return -1;
		}
		key[0] = 'u';
		memcpy(key + 1, &cred.uid, sizeof(cred.uid));
		snprintf(name, namelen, "uid %u", (unsigned)cred.uid);
		return 0;
	}
	inet_ntop(AF_INET, key + 1, name, (socklen_t)namelen);
	return 0;
}

static struct peercap_entry **slot_of(struct peercap *pc, const uint8_t key[PEER_KEY_LEN])
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < PEER_KEY_LEN; i++) {
		h = (h ^ key[i]) * 16777619u;
	}
	return &pc->buckets[h % PEER_BUCKETS];
}

struct peercap_entry *peercap_take(struct peercap *pc, int fd, const struct sockaddr *sa,
				   const char *peer, bool *refused)
{
	uint8_t key[PEER_KEY_LEN];
	char who[INET6_ADDRSTRLEN + 8];
	struct peercap_entry **slot, *e;

	*refused = false;
	if (pc == NULL || pc->cap == 0 || peer_key(fd, sa, key, who, sizeof(who)) < 0) {
		return NULL;
	}
	slot = slot_of(pc, key);
	for (e = *slot; e != NULL && memcmp(e->key, key, PEER_KEY_LEN) != 0; e = e->next) {
	}
	if (e != NULL && e->n >= pc->cap) {
		log_limited(&pc->refusals, LOG_WARNING,
			    "%s: connection %s refused: %s already holds %u (max-per-peer=%u); "
			    "closed",
			    pc->spec, peer, who, e->n, pc->cap);
		*refused = true;
		return NULL;
	}
	if (e == NULL) {
		e = calloc(1, sizeof(*e));
		if (e == NULL) {
			return NULL; /* served uncounted */
		}
		e->pc = pc;
		memcpy(e->key, key, PEER_KEY_LEN);
		e->next = *slot;
		*slot = e;
	}
	e->n++;
	return e;
}

void peercap_put(void *entry)
{
	struct peercap_entry *e = entry;
	struct peercap_entry **p;

	if (e->n > 0) {
		e->n--;
	}
	if (e->n > 0) {
		return;
	}
	for (p = slot_of(e->pc, e->key); *p != NULL; p = &(*p)->next) {
		if (*p == e) {
			*p = e->next;
			break;
		}
	}
	free(e);
}

void peercap_free(struct peercap *pc)
{
	if (pc == NULL) {
		return;
	}
	for (size_t i = 0; i < PEER_BUCKETS; i++) {
		while (pc->buckets[i] != NULL) {
			struct peercap_entry *e = pc->buckets[i];

			pc->buckets[i] = e->next;
			free(e);
		}
	}
	free(pc);
}

struct peercap_entry *peercap_retake(struct peercap *pc, int fd, const char *peer, bool *refused)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	*refused = false;
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
		return NULL;
	}
	return peercap_take(pc, fd, (struct sockaddr *)&ss, peer, refused);
}
