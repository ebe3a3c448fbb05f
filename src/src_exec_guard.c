/* src_exec_guard: the guard process of an exec: source, forked by src_exec.c's open().
 *
 * The guard runs in a session of its own, starts the command (/bin/sh -c …) in a process
 * group of its own with stdin from /dev/null and only its output pipes open, reaps it (and,
 * as a subreaper, whatever it leaves behind), and kills the command's group (SIGTERM, then
 * SIGKILL after kill_timeout_ms) when the command ends, when it is told to (SIGTERM, SIGINT,
 * SIGHUP), or when its socket to entropyd reaches its end: a closed source, or an entropyd
 * that is gone. It reports on that socket: STARTED, or FAILED, then EXITED once the whole
 * group is gone.
 *
 * Invariant: everything here is async-signal-safe, since it runs in a fork of a threaded
 * process; nothing here logs, allocates or takes a lock. */
#include "src_exec_guard.h"

#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t guard_term;

/* A handler only so that SIGCHLD interrupts ppoll(): the loop then looks at the children. */
static void guard_on_chld(int sig)
{
}

static void guard_on_term(int sig)
{
	guard_term = 1;
}

static void guard_send(int ctl, int kind, int value)
{
	struct exec_msg m = {kind, value};

	(void)send(ctl, &m, sizeof(m), MSG_NOSIGNAL);
}

static void reset_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++) {
		(void)sigaction(s, &sa, NULL);
	}
}

/* Close every descriptor from first on. */
static void close_from(int first)
{
	struct rlimit rl;

	if (close_range((unsigned)first, ~0u, 0) == 0) {
		return;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > 65536) {
		rl.rlim_cur = 65536;
	}
	for (int fd = first; fd < (int)rl.rlim_cur; fd++) {
		(void)close(fd);
	}
}

/* Reap the children that ended other than the command (as a subreaper, we inherit what
 * the command leaves behind); true once the command itself has ended. It stays a zombie
 * until reaped by pid, which keeps its pid and group number reserved for kill(). */
static bool guard_reap(pid_t pid)
{
	for (;;) {
		siginfo_t si;

		si.si_pid = 0;
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0) {
			return false;
		}
		if (si.si_pid == pid) {
			return true;
		}
		(void)waitpid(si.si_pid, NULL, 0);
	}
}

/* Wait for a signal, for ctl to be readable (if ctl >= 0) or for ms (if >= 0). */
static int guard_wait(int ctl, long long ms, const sigset_t *during)
{
	struct pollfd p = {.fd = ctl, .events = POLLIN};
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	return ppoll(&p, ctl >= 0 ? 1 : 0, ms >= 0 ? &ts : NULL, during);
}

_Noreturn void src_exec_guard_run(int ctl, int out_w, int err_w, char *const argv[],
				  int kill_timeout_ms)
{
	struct sigaction sa;
	sigset_t block, none;
	long long end;
	pid_t pid;
	int null, status = 0;
	char c;

	(void)setsid();
	/* Our descriptors, whatever their numbers: 0 /dev/null, 1 output, 2 stderr, 3 ctl. */
	ctl = fcntl(ctl, F_DUPFD, 10);
	out_w = fcntl(out_w, F_DUPFD, 10);
	err_w = fcntl(err_w, F_DUPFD, 10);
	null = open("/dev/null", O_RDONLY);
	if (ctl < 0 || out_w < 0 || err_w < 0 || null < 0 || dup2(null, 0) < 0 ||
	    dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0 || dup2(ctl, 3) < 0 ||
	    fcntl(3, F_SETFD, FD_CLOEXEC) < 0) {
		guard_send(ctl, EXEC_MSG_FAILED, errno);
		_exit(1);
	}
	close_from(4);
	ctl = 3;

	reset_signals();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = guard_on_chld;
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = guard_on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&none);
	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_SETMASK, &block, NULL);

	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	pid = fork();
	if (pid == 0) {
		(void)setpgid(0, 0);
		reset_signals();
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(argv[0], argv, environ);
		_exit(127);
	}
	if (pid < 0) {
		guard_send(ctl, EXEC_MSG_FAILED, errno);
		_exit(1);
	}
	(void)setpgid(pid, pid); /* also here, so that the group exists before we report */
	/* Only the command holds the write ends now: its exit is the reader's end of data. */
	close(0);
	close(1);
	close(2);
	guard_send(ctl, EXEC_MSG_STARTED, pid);

	/* Until the command exits, or entropyd closes its end (or is gone), or we are told. */
	while (!guard_reap(pid) && !guard_term) {
		if (guard_wait(ctl, -1, &none) > 0) {
			ssize_t r = recv(ctl, &c, 1, MSG_DONTWAIT);

			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				break;
			}
		}
	}
	/* The whole group goes, also what the command left behind if it exited by itself. */
	kill(-pid, SIGTERM);
	for (end = clock_ms() + kill_timeout_ms; !guard_reap(pid) && clock_ms() < end;) {
		guard_wait(-1, end - clock_ms(), &none);
	}
	kill(-pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	/* Report only once the rest of the group is gone too (reaped here if it was orphaned),
	 * waiting a little for members whose parent is still dying. */
	for (end = clock_ms() + EXEC_GROUP_WAIT_MS; kill(-pid, 0) == 0 && clock_ms() < end;) {
		while (waitpid(-1, NULL, WNOHANG) > 0) {
		}
		guard_wait(-1, 10, &none);
	}
	guard_send(ctl, EXEC_MSG_EXITED, status);
	_exit(0);
}
