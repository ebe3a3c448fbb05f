/* sandbox: see sandbox.h. The drop uses system calls and prctl only (no libcap):
 * bounding set first (it needs CAP_SETPCAP), then groups, gid, uid (all of real, effective
 * and saved, so nothing is left to switch back to), then the inheritable and ambient sets,
 * then no-new-privs, and a check that root cannot be regained.
 *
 * The allow-list was measured, not guessed: every system test ran with entropyd under
 * `strace -f -c` (the daemon, its re-executed images, the exec: guards and the commands
 * they start), and the calls seen are the lists below; README.md says how to measure again.
 * A list is added only when the configuration needs it (an exec: or qng source). */
#include "sandbox.h"

#include "conf.h"
#include "log.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The user entropyd becomes by default when started as root, if it exists. */
#define SANDBOX_DEFAULT_USER "entropyd"
#define SANDBOX_MAX_DIRS 16
#define SANDBOX_MAX_GROUPS 256
/* Test-only: set to 1, the daemon makes a forbidden call right after the filter is in. */
#define SANDBOX_TEST_FORBIDDEN_ENV "ENTROPYD_TEST_FORBIDDEN_SYSCALL"

struct sandbox {
	bool drop; /* switch to uid/gid (else keep who we are) */
	char user[64];
	uid_t uid;
	gid_t gid;
	bool exec, qng;		      /* what the sources need besides the base list */
	char *dirs[SANDBOX_MAX_DIRS]; /* unix endpoint directories missing before the bind */
	size_t ndirs;
};

/* The event loop, clients, logging, memory, threads, signals, time, the file and tty
 * sources (and their re-open), unix socket repair, and the re-exec on SIGHUP (execve and
 * what a new image does before its own filter: loading, opening, binding; the memfd that
 * carries connected clients' state across it). */
/* clang-format off */
static const char *const base_calls[] = {
	"read", "write", "readv", "writev", "pread64", "pwrite64", "close", "close_range", "openat",
	"open", "fstat", "newfstatat", "stat", "lstat", "statx", "lseek", "fcntl", "dup", "dup2",
	"dup3", "pipe", "pipe2", "ioctl", "poll", "ppoll", "select", "pselect6", "epoll_create",
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd",
	"eventfd2", "timerfd_create", "timerfd_settime", "timerfd_gettime", "socket", "socketpair",
	"bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername",
	"getsockopt", "setsockopt", "sendto", "sendmsg", "sendmmsg", "recvfrom", "recvmsg",
	"recvmmsg", "shutdown", "unlink", "unlinkat", "mkdir", "mkdirat", "chmod", "fchmod",
	"fchmodat", "chown", "fchown", "fchownat", "lchown", "readlink", "readlinkat", "access",
	"faccessat", "faccessat2", "getdents64", "mknodat", "mknod", "mmap", "munmap", "mremap",
	"madvise", "brk", "mprotect", "mlock", "mlock2", "mlockall", "munlock", "munlockall",
	"futex", "set_robust_list", "get_robust_list", "rseq", "clone", "clone3", "set_tid_address",
	"exit", "exit_group", "wait4", "waitid", "kill", "tgkill", "tkill", "rt_sigaction",
	"rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "rt_sigpending", "sigaltstack",
	"clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
	"getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
	"getresgid", "getgroups", "uname", "prlimit64", "getrlimit", "setrlimit", "getrandom",
	"sched_yield", "sched_getaffinity", "prctl", "arch_prctl", "capget", "execve", "umask",
	"sysinfo", "restart_syscall", "getcwd", "fsync", "fdatasync", "ftruncate", "getrusage",
	"membarrier", "setsid", "setpgid", "getpgrp", "getpgid", "fstatfs", "statfs", "rename",
	"renameat", "renameat2", "seccomp", "memfd_create",
};
/* clang-format on */

/* An exec: source: the guard, /bin/sh and the command inherit the filter (a guard forked
 * after start, at a re-open or in a re-executed image, is forked from a filtered process),
 * so the list holds what a shell and common commands do. A command that needs more is
 * killed with SIGSYS and the source reports it. */
/* clang-format off */
static const char *const exec_calls[] = {
	"execveat", "vfork", "fork", "chdir", "fchdir", "getpriority", "setpriority", "alarm",
	"pause", "times", "sched_getparam", "sched_getscheduler", "sched_setaffinity", "fadvise64",
	"sendfile", "splice", "copy_file_range", "memfd_create", "utimensat", "symlink",
	"symlinkat", "link", "linkat", "rmdir", "truncate", "flock", "sync", "syncfs", "getxattr",
	"lgetxattr", "fgetxattr", "listxattr", "getitimer", "setitimer", "timer_create",
	"timer_settime", "timer_delete", "timer_gettime", "pidfd_open", "pidfd_send_signal",
	"personality", "mincore", "msync",
};
/* clang-format on */

/* A qng source: libusb and libftdi (usbfs ioctls, udev netlink, their event thread). */
/* clang-format off */
static const char *const qng_calls[] = {
	"sched_setscheduler", "sched_getparam", "sched_getscheduler", "timer_create",
	"timer_settime", "timer_delete", "getpriority", "setpriority", "inotify_init1",
	"inotify_add_watch", "inotify_rm_watch",
};
/* clang-format on */

static int fail(char *err, size_t errlen, const char *what, int e)
{
	snprintf(err, errlen, "%s: %s", what, strerror(e));
	return -1;
}

/* Resolve --user (NULL: the default) into sb. */
static int resolve_user(struct sandbox *sb, const char *user, char *err, size_t errlen)
{
	struct passwd *pw;

	if (user == NULL) {
		if (geteuid() != 0 || (pw = getpwnam(SANDBOX_DEFAULT_USER)) == NULL) {
			return 0; /* not root, or no such user: stay as started */
		}
	} else if (strcmp(user, "none") == 0 || strcmp(user, "root") == 0) {
		if (geteuid() == 0) {
			log_warnx("--user %s: running as root (every endpoint's peer talks to a "
				  "process that owns the host)",
				  user);
		}
		return 0;
	} else {
		errno = 0;
		pw = getpwnam(user);
		if (pw == NULL) {
			snprintf(err, errlen, "--user %s: %s", user,
				 errno != 0 ? strerror(errno) : "no such user");
			return -1;
		}
		if (pw->pw_uid == 0) {
			snprintf(err, errlen, "--user %s: has uid 0 (use --user root to stay root)",
				 user);
			return -1;
		}
	}
	sb->drop = true;
	sb->uid = pw->pw_uid;
	sb->gid = pw->pw_gid;
	snprintf(sb->user, sizeof(sb->user), "%s", pw->pw_name);
	return 0;
}

/* The directory of a unix endpoint's path, if it is missing now (entropyd will create it). */
static void note_missing_dir(struct sandbox *sb, const char *path)
{
	const char *slash = strrchr(path, '/');
	struct stat st;
	char *dir;

	if (slash == NULL || slash == path || sb->ndirs == SANDBOX_MAX_DIRS) {
		return;
	}
	dir = strndup(path, (size_t)(slash - path));
	if (dir != NULL && lstat(dir, &st) < 0 && errno == ENOENT) {
		sb->dirs[sb->ndirs++] = dir;
	} else {
		free(dir);
	}
}

struct sandbox *sandbox_new(const struct conf *c, char *err, size_t errlen)
{
	struct sandbox *sb = calloc(1, sizeof(*sb));

	if (sb == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (resolve_user(sb, c->user, err, errlen) < 0) {
		sandbox_free(sb);
		return NULL;
	}
	for (size_t i = 0; i < c->nsources; i++) {
		sb->exec |= strcmp(c->sources[i].kind, "exec") == 0;
		sb->qng |= strcmp(c->sources[i].kind, "qng") == 0;
	}
	for (size_t i = 0; sb->drop && i < c->nendpoints; i++) {
		if (!c->endpoints[i].connect &&
		    (c->endpoints[i].kind == EP_UNIX || c->endpoints[i].kind == EP_VHOST)) {
			note_missing_dir(sb, c->endpoints[i].path);
		}
	}
	return sb;
}

bool sandbox_drops(const struct sandbox *sb)
{
	return sb->drop && geteuid() == 0;
}

/* Clear the inheritable set (the uid change clears the effective and permitted ones). */
static int clear_capabilities(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capset, &h, d) < 0) {
		return -1;
	}
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) < 0) {
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		if (d[i].effective != 0 || d[i].permitted != 0 || d[i].inheritable != 0) {
			errno = EPERM;
			return -1;
		}
	}
	return 0;
}

/* Empty the bounding set, so that nothing executed later can regain a capability; without
 * CAP_SETPCAP (a unit that withholds it) the set is whatever the service manager left. */
static void drop_bounding_set(void)
{
	for (int cap = 0; cap <= 63; cap++) {
		if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) {
			break; /* past the kernel's last capability */
		}
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
			log_debug("cannot drop capability %d from the bounding set: %s", cap,
				  strerror(errno));
			return;
		}
	}
}

/* Hand the directories entropyd created for unix sockets to the user: as the user it must
 * be able to bind a removed socket file again. */
static int chown_created_dirs(const struct sandbox *sb, char *err, size_t errlen)
{
	for (size_t i = 0; i < sb->ndirs; i++) {
		struct stat st;

		if (lstat(sb->dirs[i], &st) < 0 || !S_ISDIR(st.st_mode)) {
			continue; /* not created after all (the bind failed) */
		}
		if (chown(sb->dirs[i], sb->uid, sb->gid) < 0) {
			snprintf(err, errlen, "cannot hand %s to user %s: %s", sb->dirs[i],
				 sb->user, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* The switch itself: groups, gid, uid, each for real, effective and saved ids. */
static int switch_user(const struct sandbox *sb, char *err, size_t errlen)
{
	gid_t groups[SANDBOX_MAX_GROUPS];
	int ngroups = SANDBOX_MAX_GROUPS;
	uid_t r, e, s;

	if (getgrouplist(sb->user, sb->gid, groups, &ngroups) < 0) {
		snprintf(err, errlen, "user %s is in more than %d groups", sb->user,
			 SANDBOX_MAX_GROUPS);
		return -1;
	}
	if (setgroups((size_t)ngroups, groups) < 0) {
		return fail(err, errlen, "setgroups", errno);
	}
	if (setresgid(sb->gid, sb->gid, sb->gid) < 0) {
		return fail(err, errlen, "setresgid", errno);
	}
	if (setresuid(sb->uid, sb->uid, sb->uid) < 0) {
		return fail(err, errlen, "setresuid", errno);
	}
	/* Verify: every uid is the user's, and root cannot be had back. */
	if (getresuid(&r, &e, &s) < 0 || r != sb->uid || e != sb->uid || s != sb->uid ||
	    setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0) {
		snprintf(err, errlen, "the switch to user %s did not hold", sb->user);
		return -1;
	}
	return 0;
}

int sandbox_drop(struct sandbox *sb, char *err, size_t errlen)
{
	if (sb->drop && geteuid() != 0) {
		/* A re-executed image (SIGHUP) runs as the user from its start: nothing to drop,
		 * and it could not; anybody else cannot switch users. */
		if (getuid() != sb->uid || geteuid() != sb->uid) {
			snprintf(err, errlen, "--user %s: only root can switch users", sb->user);
			return -1;
		}
		sb->drop = false;
		log_debug("already running as user %s", sb->user);
	}
	if (sb->drop) {
		if (chown_created_dirs(sb, err, errlen) < 0) {
			return -1;
		}
		drop_bounding_set();
		if (switch_user(sb, err, errlen) < 0) {
			return -1;
		}
		if (clear_capabilities() < 0) {
			return fail(err, errlen, "cannot clear the capabilities", errno);
		}
		/* A re-executed image must read /run/entropyd as the root image did. */
		unsetenv("XDG_RUNTIME_DIR");
		log_info("running as user %s (uid %u, gid %u), no capabilities", sb->user,
			 (unsigned)sb->uid, (unsigned)sb->gid);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		return fail(err, errlen, "cannot set no-new-privs", errno);
	}
	return 0;
}

/* Allow the calls named in list; names this architecture lacks are skipped. 0, or
 * libseccomp's negative errno with the name in err. */
static int allow(scmp_filter_ctx ctx, const char *const *list, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(list[i]);
		int rc;

		if (nr == __NR_SCMP_ERROR) {
			continue;
		}
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (rc < 0) {
			snprintf(err, errlen, "system-call filter: cannot allow %s: %s", list[i],
				 strerror(-rc));
			return rc;
		}
	}
	return 0;
}

#define ALLOW(ctx, list) allow(ctx, list, sizeof(list) / sizeof(list[0]), err, errlen)

#if defined(__SANITIZE_ADDRESS__)
/* Test builds only (AddressSanitizer): LeakSanitizer stops the world at exit from a tracer
 * thread it clones, which ptraces every thread and reads the task list. A release build
 * never has these. */
static const char *const sanitizer_calls[] = {
    /* clang-format off */
    "clone", "clone3", "ptrace", "wait4", "waitid", "prctl", "sigaltstack", "sched_yield",
    "getdents", "getdents64", "open", "openat", "readlink", "readlinkat", "process_vm_readv",
    "getpid", "getppid", "gettid", "tgkill", "kill", "exit", "exit_group", "rt_sigaction",
    "rt_sigprocmask", "lseek", "fstat", "newfstatat", "read", "pread64", "close", "mmap",
    "munmap", "mprotect", "madvise", "write", "sched_getaffinity", "futex", "nanosleep",
    "clock_nanosleep", "getrlimit", "prlimit64", "sysinfo", "uname",
    /* clang-format on */
};
#endif

int sandbox_filter(struct sandbox *sb, char *err, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	int rc;

	if (ctx == NULL) {
		snprintf(err, errlen, "cannot build the system-call filter");
		return -1;
	}
	/* Every thread (a qng source's libusb thread runs already), and no-new-privs too. */
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (rc < 0) {
		fail(err, errlen, "system-call filter: cannot apply it to every thread", -rc);
	}
	if (rc == 0) {
		rc = ALLOW(ctx, base_calls);
	}
	if (rc == 0 && sb->exec) {
		rc = ALLOW(ctx, exec_calls);
	}
	if (rc == 0 && sb->qng) {
		rc = ALLOW(ctx, qng_calls);
	}
#if defined(__SANITIZE_ADDRESS__)
	if (rc == 0) {
		rc = ALLOW(ctx, sanitizer_calls);
	}
#endif
	if (rc == 0) {
		rc = seccomp_load(ctx);
		if (rc < 0) {
			fail(err, errlen, "cannot install the system-call filter", -rc);
		}
	}
	seccomp_release(ctx);
	if (rc < 0) {
		return -1;
	}
	log_info("system-call filter in place (%s%s%s)", "base", sb->exec ? " + exec" : "",
		 sb->qng ? " + qng" : "");
	/* TEST ONLY (tests/system/test_sandbox.py): a call that is not on the list, to show
	 * that it kills the process with SIGSYS: pivot_root with no paths, harmless (EFAULT)
	 * if it returned. On no list, not even a sanitizer build's. */
	if (getenv(SANDBOX_TEST_FORBIDDEN_ENV) != NULL &&
	    strcmp(getenv(SANDBOX_TEST_FORBIDDEN_ENV), "1") == 0) {
		log_warnx("%s=1: making a forbidden system call (pivot_root)",
			  SANDBOX_TEST_FORBIDDEN_ENV);
		(void)syscall(SYS_pivot_root, NULL, NULL);
	}
	return 0;
}

void sandbox_free(struct sandbox *sb)
{
	if (sb == NULL) {
		return;
	}
	for (size_t i = 0; i < sb->ndirs; i++) {
		free(sb->dirs[i]);
	}
	free(sb);
}
