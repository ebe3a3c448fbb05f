/* src_exec_guard: the guard process that starts, reaps and kills an exec: source's command
 * (src_exec_guard.c), and the messages it sends to entropyd's side (src_exec.c). */
#ifndef ENTROPYD_SRC_EXEC_GUARD_H
#define ENTROPYD_SRC_EXEC_GUARD_H

/* After SIGKILL, the guard waits this long for the command's group to be gone (ms). */
#define EXEC_GROUP_WAIT_MS 1000

/* Guard -> entropyd messages (a SOCK_SEQPACKET socket pair). entropyd never writes: its end
 * reaching EOF (close, exit, crash, exec) is the guard's order to stop the command. */
enum { EXEC_MSG_STARTED = 1, EXEC_MSG_FAILED, EXEC_MSG_EXITED };
struct exec_msg {
	int kind;
	int value; /* STARTED: the command's pid; FAILED: errno; EXITED: wait status */
};

/* In the child of a fork: run argv with its stdout on out_w and stderr on err_w, report on
 * ctl, stop it as described above (SIGKILL kill_timeout_ms after SIGTERM); never returns. */
_Noreturn void src_exec_guard_run(int ctl, int out_w, int err_w, char *const argv[],
				  int kill_timeout_ms);

#endif
