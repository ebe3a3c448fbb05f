/* unixpath: see unixpath.h. */
#include "unixpath.h"

#include "endpoint.h"
#include "log.h"
#include "netaddr.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int unixpath_apply_perms(const struct endpoint_conf *c, char *err, size_t errlen)
{
	if ((c->has_mode && chmod(c->path, c->mode) < 0) ||
	    ((c->has_owner || c->has_group) && chown(c->path, c->has_owner ? c->owner : (uid_t)-1,
						     c->has_group ? c->group : (gid_t)-1) < 0)) {
		snprintf(err, errlen, "%s: %s", c->spec, strerror(errno));
		return -1;
	}
	return 0;
}

/* A socket file left by a previous run is removed; one that another process serves is not. */
static int clear_stale_socket(const char *path, const struct sockaddr_un *sun, char *err,
			      size_t errlen)
{
	struct stat sb;
	int fd;

	if (lstat(path, &sb) < 0) {
		return 0;
	}
	if (!S_ISSOCK(sb.st_mode)) {
		snprintf(err, errlen, "unix:%s: exists and is not a socket", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0) {
		close(fd);
		snprintf(err, errlen, "unix:%s: in use by another process", path);
		return -1;
	}
	if (fd >= 0) {
		close(fd);
	}
	unlink(path);
	return 0;
}

enum unixpath_state unixpath_state(struct unixpath *u, const char *path)
{
	struct sockaddr_un sun;
	struct stat sb;
	char err[160];
	int fd, rc;

	if (lstat(path, &sb) < 0) {
		if (errno == ENOENT) {
			return UNIXPATH_FREE;
		}
		/* Typically a directory the user entropyd dropped to cannot enter. */
		snprintf(u->why, sizeof(u->why),
			 "cannot look at the socket file (%s); it is not bound again if removed",
			 strerror(errno));
		return UNIXPATH_TAKEN;
	}
	if (sb.st_dev == u->dev && sb.st_ino == u->ino) {
		return UNIXPATH_OURS;
	}
	if (u->taken && sb.st_dev == u->taken_dev && sb.st_ino == u->taken_ino) {
		return UNIXPATH_TAKEN; /* already looked at (and logged): no probe every second */
	}
	u->taken_dev = sb.st_dev;
	u->taken_ino = sb.st_ino;
	snprintf(u->why, sizeof(u->why),
		 "the path now names something other than entropyd's socket; leaving it alone");
	if (!S_ISSOCK(sb.st_mode) || netaddr_unix(path, &sun, err, sizeof(err)) < 0) {
		return UNIXPATH_TAKEN;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return UNIXPATH_TAKEN;
	}
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	rc = rc < 0 && errno == ECONNREFUSED ? -1 : 0;
	close(fd);
	return rc < 0 ? UNIXPATH_FREE : UNIXPATH_TAKEN;
}

void unixpath_adopt(struct unixpath *u, const char *path)
{
	struct stat sb;

	u->owned = true;
	if (lstat(path, &sb) == 0) {
		u->dev = sb.st_dev;
		u->ino = sb.st_ino;
	}
}

int unixpath_bind(struct unixpath *u, const struct endpoint_conf *c, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	int fd;

	if (netaddr_unix(c->path, &sun, err, errlen) < 0 ||
	    clear_stale_socket(c->path, &sun, err, errlen) < 0) {
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(err, errlen, "%s: cannot bind: %s", c->spec, strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
		return -1;
	}
	unixpath_adopt(u, c->path);
	u->taken = false;
	if (unixpath_apply_perms(c, err, errlen) < 0) {
		close(fd);
		return -1;
	}
	if (listen(fd, SOMAXCONN) < 0) {
		snprintf(err, errlen, "%s: %s", c->spec, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

void unixpath_remove(struct unixpath *u, const char *path)
{
	if (u->owned && unixpath_state(u, path) == UNIXPATH_OURS) {
		unlink(path);
	}
}

void unixpath_make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) == 0) {
			log_info("created directory %s", dir);
		}
	}
}
