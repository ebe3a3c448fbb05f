/* ctl_tools: the entropyctl commands that need no control socket: `test` (ctl_test.c: an
 * SP 800-90B assessment of a source) and `feed-kernel` (ctl_feed.c: feeding the host's
 * kernel from an entropyd over EGD). entropyctl.c's dispatch table calls them. */
#ifndef ENTROPYCTL_CTL_TOOLS_H
#define ENTROPYCTL_CTL_TOOLS_H

/* `entropyctl test SOURCE [--bytes N]`; argv[0] is "test". Returns the exit status. */
int ctl_test_main(int argc, char **argv);
/* `entropyctl feed-kernel [...]`; argv[0] is "feed-kernel". Returns the exit status. */
int ctl_feed_kernel_main(int argc, char **argv);

#endif
