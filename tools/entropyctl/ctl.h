/* ctl: what the parts of entropyctl share: the commands' entry points (main.c's table
 * dispatches to them) and the control socket's client side. */
#ifndef ENTROPYCTL_CTL_H
#define ENTROPYCTL_CTL_H

#include <stddef.h>
#include <stdint.h>

struct json_object;

/* The control socket chosen with --socket, or the default. */
const char *ctl_socket(void);
/* Connect to the control socket; the descriptor, or -1 after printing why. */
int ctl_connect(void);
/* Send one request line; -1 after printing why. */
int ctl_send(int fd, struct json_object *req);
/* Read one reply line (at most max bytes) and parse it; NULL after printing why. */
struct json_object *ctl_reply(int fd, size_t max);

/* Ask the control socket for n bytes (get.c): the descriptor they follow on, or -1 after
 * printing why. */
int ctl_get_start(uint64_t n);
/* Read exactly n bytes from fd (get.c; a non-blocking fd waits at most 30 s for each piece);
 * -1 at an error (errno set) or at the end (errno 0). */
int ctl_read_full(int fd, void *buf, size_t n);

/* entropyctl status [--json] */
int ctl_status_main(int argc, char **argv);
/* entropyctl get N [-o FILE] [--from EP] */
int ctl_get_main(int argc, char **argv);
/* entropyctl test SOURCE --bytes N (ctl_test.c) */
int ctl_test_main(int argc, char **argv);
/* entropyctl feed-kernel (ctl_feed.c) */
int ctl_feed_kernel_main(int argc, char **argv);

#endif
