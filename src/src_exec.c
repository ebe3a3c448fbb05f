/* src_exec: the `exec:COMMAND` source kind: the standard output of a command run with
 * /bin/sh -c, e.g. `exec:/usr/bin/rtl_entropy -s` or a vendor tool printing random bytes.
 *
 * The command runs with stdin from /dev/null, in its own process group, holding none of
 * entropyd's descriptors but its output pipes; each line it writes to stderr is logged.
 * A guard process (our child, in a session of its own: src_exec_guard.c) starts the
 * command, reaps it (and, as a subreaper, whatever it leaves behind), reports its exit
 * status, and kills the command's process group (SIGTERM, then SIGKILL after
 * exec_kill_timeout_ms) when the command ends or when its socket to us reaches its end:
 * when this source is closed, and also when entropyd goes away in any other way (a stop,
 * which exits without closing sources; a crash; a re-execution on SIGHUP). A command never
 * outlives the daemon that reads it.
 *
 * When the command exits or closes its output, read() fails with its exit status and src.c
 * restarts it with backoff, re-running the start-up test.
 *
 * Invariants: every process started here is reaped (the command by the guard, the guard by
 * close() or, once entropyd is gone, by init); every byte read() returns was written by the
 * command; the guard and the command run only async-signal-safe code until the exec, since
 * they are forked from a threaded process. */
#include "src_driver.h"

#include "clock.h"
#include "log.h"
#include "src_exec_guard.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXEC_SHELL "/bin/sh"
#define EXEC_LINE_MAX 200u   /* longer stderr lines are cut */
#define EXEC_LINES_PER_S 10u /* stderr lines logged per second; the rest are counted */
#define EXEC_START_TIMEOUT_MS 5000
#define EXEC_GRACE_MS 2000 /* after the output ends: wait this long for the exit status */

/* How long the command's group has after SIGTERM before SIGKILL (a variable for tests). */
static int exec_kill_timeout_ms = 5000;

struct exec_src {
	char *cmd;
	pid_t guard;	   /* our child, which starts, reaps and kills the command */
	pid_t pid;	   /* the command; also its process group */
	int out, err, ctl; /* its stdout and stderr (read ends) and our end of the guard's socket */
	bool out_eof, err_eof, exited, guard_gone;
	int status;		  /* wait status, once exited */
	unsigned long long bytes; /* output read so far */
	char line[EXEC_LINE_MAX + 1];
	size_t linelen;
	bool cut; /* the current stderr line was too long: skip to its end */
	time_t log_second;
	unsigned logged, suppressed;
};

static void describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status)) {
		int code = WEXITSTATUS(status);

		snprintf(buf, len, "exited with status %d%s", code,
			 code == 127   ? " (the shell's code for a command not found)"
			 : code == 126 ? " (the shell's code for a command not executable)"
				       : "");
	} else if (WIFSIGNALED(status)) {
		const char *name = sigabbrev_np(WTERMSIG(status));

		snprintf(buf, len, "was killed by signal %d%s%s", WTERMSIG(status),
			 name ? " SIG" : "", name ? name : "");
	} else {
		snprintf(buf, len, "ended (wait status 0x%x)", (unsigned)status);
	}
}

static void emit_line(struct exec_src *s)
{
	time_t sec = (time_t)(clock_ms() / 1000);

	if (sec != s->log_second) {
		if (s->suppressed > 0) {
			log_warnx("source exec:%s: %u more lines on stderr not logged", s->cmd,
				  s->suppressed);
		}
		s->log_second = sec;
		s->logged = 0;
		s->suppressed = 0;
	}
	s->line[s->linelen] = '\0';
	if (s->logged < EXEC_LINES_PER_S) {
		log_info("source exec:%s: stderr: %s%s", s->cmd, s->line, s->cut ? " [...]" : "");
		s->logged++;
	} else {
		s->suppressed++;
	}
	s->linelen = 0;
}

/* Read what the command wrote to stderr and log its complete lines; at EOF (or when
 * closing, flush), also the incomplete one. */
static void read_stderr(struct exec_src *s, bool flush)
{
	char buf[1024];
	ssize_t r;

	while (!s->err_eof) {
		r = read(s->err, buf, sizeof(buf));
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r <= 0) {
			s->err_eof = r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
			break;
		}
		for (ssize_t i = 0; i < r; i++) {
			unsigned char ch = (unsigned char)buf[i];

			if (ch == '\n') {
				if (s->linelen > 0) {
					emit_line(s);
				}
				s->cut = false;
			} else if (s->linelen == EXEC_LINE_MAX) {
				if (!s->cut) {
					s->cut = true;
					emit_line(s);
				}
			} else if (!s->cut) {
				s->line[s->linelen++] =
				    (ch < 0x20 && ch != '\t') || ch == 0x7f ? '?' : (char)ch;
			}
		}
	}
	if ((flush || s->err_eof) && s->linelen > 0) {
		emit_line(s);
	}
}

/* Take the guard's message if one is waiting (or the guard's end). */
static void read_ctl(struct exec_src *s)
{
	struct exec_msg m;
	ssize_t r = recv(s->ctl, &m, sizeof(m), MSG_DONTWAIT);

	if (r == (ssize_t)sizeof(m) && m.kind == EXEC_MSG_EXITED) {
		s->exited = true;
		s->status = m.value;
	} else if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		s->guard_gone = true;
	}
}

/* Reap the guard, giving it wait_ms to end by itself; a guard that is still there then is
 * killed, and so is its command's group (the command is its child, not reaped, so that
 * group number is still reserved and safe to kill). */
static void end_guard(struct exec_src *s, long long wait_ms)
{
	long long end = clock_ms() + wait_ms;
	pid_t r;

	if (s->guard <= 0) {
		return;
	}
	while ((r = waitpid(s->guard, NULL, WNOHANG)) == 0 && clock_ms() < end) {
		usleep(10000);
	}
	if (r == 0) {
		log_warnx("source exec:%s: the guard of pid %d does not end; killing both", s->cmd,
			  (int)s->pid);
		if (s->pid > 0) {
			kill(-s->pid, SIGKILL);
		}
		kill(s->guard, SIGKILL);
		while (waitpid(s->guard, NULL, 0) < 0 && errno == EINTR) {
		}
	}
	s->guard = 0;
}

static void exec_free(struct exec_src *s)
{
	if (s->out >= 0) {
		close(s->out);
	}
	if (s->err >= 0) {
		close(s->err);
	}
	if (s->ctl >= 0) {
		close(s->ctl);
	}
	free(s->cmd);
	free(s);
}

static void close_pair(int p[2])
{
	if (p[0] >= 0) {
		close(p[0]);
	}
	if (p[1] >= 0) {
		close(p[1]);
	}
}

/* Guards of a previous image: after a re-execution on SIGHUP they are our children, unknown
 * to us, and each ends once it has stopped its command. The first open (at start-up, in
 * the main thread, before any guard of this image exists) waits for them, bounded: the new
 * command then never overlaps the old one (which may hold a device). entropyd starts no
 * children other than guards, and a guard's exit status carries nothing (the command's
 * comes through its socket), so reaping any child here is safe. (A child inherited from
 * whoever exec'd entropyd would only delay this first open, by a few seconds at most.) */
static bool exec_strays_awaited; /* process-wide: set by the first open, in the main thread */

static void reap_strays(void)
{
	long long end = clock_ms() + exec_kill_timeout_ms + EXEC_GROUP_WAIT_MS + 1000;
	unsigned n = 0;
	pid_t p;

	if (exec_strays_awaited) {
		return;
	}
	while ((p = waitpid(-1, NULL, WNOHANG)) >= 0 && clock_ms() < end) {
		if (p > 0) {
			n++;
		} else {
			usleep(10000);
		}
	}
	if (n > 0) {
		log_info("exec: reaped %u process(es) left by the previous image (the guards of "
			 "its commands)",
			 n);
	}
	exec_strays_awaited = true;
}

static void *exec_open(const char *cmd, char *err, size_t errlen)
{
	struct exec_src *s = calloc(1, sizeof(*s));
	int out[2] = {-1, -1}, errp[2] = {-1, -1}, ctl[2] = {-1, -1};
	struct exec_msg m = {0, 0};
	struct pollfd p;
	char *argv[4];
	ssize_t r = -1;

	if (s == NULL || (s->cmd = strdup(cmd)) == NULL) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->out = s->err = s->ctl = -1;
	argv[0] = (char *)EXEC_SHELL;
	argv[1] = (char *)"-c";
	argv[2] = s->cmd;
	argv[3] = NULL;
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0) {
		snprintf(err, errlen, "exec: %s", strerror(errno));
		goto fail;
	}
	reap_strays();
	s->guard = fork();
	if (s->guard == 0) {
		src_exec_guard_run(ctl[1], out[1], errp[1], argv, exec_kill_timeout_ms);
	}
	if (s->guard < 0) {
		snprintf(err, errlen, "exec: fork: %s", strerror(errno));
		goto fail;
	}
	close(out[1]);
	close(errp[1]);
	close(ctl[1]);
	out[1] = errp[1] = ctl[1] = -1;
	s->out = out[0];
	s->err = errp[0];
	s->ctl = ctl[0];
	out[0] = errp[0] = ctl[0] = -1;
	if (fcntl(s->out, F_SETFL, O_NONBLOCK) < 0 || fcntl(s->err, F_SETFL, O_NONBLOCK) < 0) {
		snprintf(err, errlen, "exec: %s", strerror(errno));
		goto fail;
	}
	p = (struct pollfd){.fd = s->ctl, .events = POLLIN};
	if (poll(&p, 1, EXEC_START_TIMEOUT_MS) == 1) {
		r = recv(s->ctl, &m, sizeof(m), 0);
	}
	if (r != (ssize_t)sizeof(m) || m.kind != EXEC_MSG_STARTED) {
		snprintf(err, errlen, "exec: cannot start %s: %s", EXEC_SHELL,
			 r == (ssize_t)sizeof(m) && m.kind == EXEC_MSG_FAILED
			     ? strerror(m.value)
			     : "no word from the guard process");
		goto fail;
	}
	s->pid = m.value;
	log_info("source exec:%s: started as pid %d (its own process group)", s->cmd, (int)s->pid);
	return s;
fail:
	close_pair(out);
	close_pair(errp);
	close_pair(ctl);
	if (s->guard > 0) {
		/* Our end closed: the guard stops whatever it started, then exits. */
		close(s->ctl);
		s->ctl = -1;
		end_guard(s, exec_kill_timeout_ms + EXEC_GROUP_WAIT_MS + 1000);
	}
	exec_free(s);
	return NULL;
}

static long exec_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	struct exec_src *s = st;
	long long grace_end = -1;
	char what[96];

	for (;;) {
		struct pollfd p[3];
		nfds_t np = 0;
		int io = -1, ie = -1, ic = -1, timeout = -1;

		if ((s->out_eof || s->exited || s->guard_gone) && grace_end < 0) {
			grace_end = clock_ms() + EXEC_GRACE_MS;
		}
		if (grace_end >= 0) {
			long long left = grace_end - clock_ms();

			if ((s->out_eof && (s->exited || s->guard_gone)) || left <= 0) {
				break;
			}
			timeout = (int)left;
		}
		if (!s->out_eof) {
			io = (int)np;
			p[np++] = (struct pollfd){.fd = s->out, .events = POLLIN};
		}
		if (!s->err_eof) {
			ie = (int)np;
			p[np++] = (struct pollfd){.fd = s->err, .events = POLLIN};
		}
		if (!s->exited && !s->guard_gone) {
			ic = (int)np;
			p[np++] = (struct pollfd){.fd = s->ctl, .events = POLLIN};
		}
		if (poll(p, np, timeout) < 0) {
			if (errno == EINTR && !src_stopping()) {
				continue;
			}
			snprintf(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		if (ie >= 0 && p[ie].revents != 0) {
			read_stderr(s, false);
		}
		if (ic >= 0 && p[ic].revents != 0) {
			read_ctl(s);
		}
		if (io >= 0 && p[io].revents != 0) {
			ssize_t r = read(s->out, buf, n);

			if (r > 0) {
				s->bytes += (unsigned long long)r;
				return (long)r;
			}
			if (r == 0) {
				s->out_eof = true;
			} else if (errno != EAGAIN && errno != EINTR) {
				snprintf(err, errlen, "reading the command's output: %s",
					 strerror(errno));
				return -1;
			}
		}
	}
	read_stderr(s, true);
	if (s->exited) {
		describe_status(s->status, what, sizeof(what));
		snprintf(err, errlen, "command (pid %d) %s after %llu bytes of output%s",
			 (int)s->pid, what, s->bytes,
			 s->out_eof ? "" : ", but something it started still holds its output");
	} else if (s->guard_gone) {
		snprintf(err, errlen, "the guard process of the command (pid %d) is gone",
			 (int)s->pid);
	} else {
		snprintf(err, errlen,
			 "command (pid %d) closed its output after %llu bytes but "
			 "did not exit",
			 (int)s->pid, s->bytes);
	}
	return -1;
}

/* Stop the command (through its guard) and wait for its end, logging its last words. */
static void exec_close(void *st)
{
	struct exec_src *s = st;
	long long end = clock_ms() + exec_kill_timeout_ms + EXEC_GRACE_MS;
	char what[96];

	/* Its further writes fail at once (SIGPIPE): nothing more is wanted from it. */
	close(s->out);
	s->out = -1;
	if (!s->exited && !s->guard_gone) {
		shutdown(s->ctl, SHUT_WR);
	}
	while (!s->exited && !s->guard_gone) {
		struct pollfd p[2] = {{.fd = s->ctl, .events = POLLIN},
				      {.fd = s->err, .events = POLLIN}};
		long long left = end - clock_ms();

		if (left <= 0) {
			break;
		}
		if (poll(p, s->err_eof ? 1 : 2, (int)left) < 0 && errno != EINTR) {
			break;
		}
		if (p[1].revents != 0 && !s->err_eof) {
			read_stderr(s, false);
		}
		if (p[0].revents != 0) {
			read_ctl(s);
		}
	}
	read_stderr(s, true);
	if (s->suppressed > 0) {
		log_warnx("source exec:%s: %u more lines on stderr not logged", s->cmd,
			  s->suppressed);
	}
	if (s->exited) {
		describe_status(s->status, what, sizeof(what));
		log_debug("source exec:%s: command (pid %d) %s", s->cmd, (int)s->pid, what);
	} else if (s->guard_gone) {
		log_warnx("source exec:%s: the guard of pid %d ended without a word; the command "
			  "may still run",
			  s->cmd, (int)s->pid);
	}
	/* Once it reported (or closed its end), the guard is at its exit. */
	end_guard(s, s->exited || s->guard_gone ? 1000 : 0);
	exec_free(s);
}

const struct src_driver src_exec_driver = {
    .kind = "exec",
    .syntax = "exec:COMMAND",
    .help = "the standard output of COMMAND (/bin/sh -c), restarted with backoff when it ends; its "
	    "stderr is logged",
    .what = "the output of a command (restarted when it ends)",
    .needs_arg = true,
    .takes_arg = true,
    .open = exec_open,
    .read = exec_read,
    .close = exec_close,
    .stall_ms = SRC_STALL_DEFAULT_MS,
};
