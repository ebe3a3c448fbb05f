/* unixpath: the file a unix listener is bound to. It records which file it bound (device
 * and inode), tells whether the path still names it, nothing (or a dead socket), or
 * something else, and binds a fresh socket there: a socket file left by a previous run is
 * removed, one another process serves is never touched. Also the mode/owner/group of a
 * socket file or a named pipe. */
#ifndef ENTROPYD_UNIXPATH_H
#define ENTROPYD_UNIXPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct endpoint_conf;

enum unixpath_state { UNIXPATH_OURS, UNIXPATH_FREE, UNIXPATH_TAKEN };

/* The socket file as bound; zero-initialise. */
struct unixpath {
	bool owned; /* we bound (or adopted) the file */
	dev_t dev;
	ino_t ino;
	/* a path that names something else, looked at once (and logged once by the caller) */
	bool taken;
	dev_t taken_dev;
	ino_t taken_ino;
	char why[120]; /* what unixpath_state found when it said UNIXPATH_TAKEN */
};

/* What path names now, compared with the file u recorded. */
enum unixpath_state unixpath_state(struct unixpath *u, const char *path);
/* Record what path names now as ours (an adopted socket). */
void unixpath_adopt(struct unixpath *u, const char *path);
/* Bind and listen on a fresh socket at c->path (mode, owner, group applied), recording the
 * file; the listening descriptor, or -1 with a message in err. */
int unixpath_bind(struct unixpath *u, const struct endpoint_conf *c, char *err, size_t errlen);
/* Remove the file if it is still ours (never another process's). */
void unixpath_remove(struct unixpath *u, const char *path);
/* Create the directory of path if it is missing (one level, as /run/entropyd). */
void unixpath_make_parent(const char *path);
/* Apply mode=, owner=, group= of c to c->path; -1 with a message in err. */
int unixpath_apply_perms(const struct endpoint_conf *c, char *err, size_t errlen);

#endif
