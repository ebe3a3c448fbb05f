/* sandbox: what entropyd gives up once its sources are open and its endpoints bound: the
 * user it runs as (--user), its supplementary groups, every capability, the right to gain
 * privileges (no-new-privs), and every system call that the configuration does not need
 * (a seccomp allow-list; any other call kills the process with SIGSYS).
 *
 * Invariant: the drop is all or nothing. Either every step succeeded and the process cannot
 * become root again, or start-up stops with one line; a half-dropped daemon never serves. */
#ifndef ENTROPYD_SANDBOX_H
#define ENTROPYD_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

struct conf;
struct sandbox;

/* Decide, from c (--user, the sources), who to become and which calls to allow, and note
 * which directories of unix endpoints are missing (entropyd creates them as root and hands
 * them to the user). Call before the endpoints are bound; NULL with a message in err. */
struct sandbox *sandbox_new(const struct conf *c, char *err, size_t errlen);
/* True if sandbox_drop will switch users (memory locked later will count against the
 * lock limit). */
bool sandbox_drops(const struct sandbox *sb);
/* Drop to the user and its groups, drop every capability, set no-new-privs; a re-executed
 * image that already runs as the user only checks. -1 with a message in err. */
int sandbox_drop(struct sandbox *sb, char *err, size_t errlen);
/* Install the seccomp allow-list (every thread); -1 with a message in err. */
int sandbox_filter(struct sandbox *sb, char *err, size_t errlen);
/* Free sb (NULL is fine). */
void sandbox_free(struct sandbox *sb);

#endif
