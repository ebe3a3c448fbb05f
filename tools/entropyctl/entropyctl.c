/* entropyctl: the command-line client of entropyd.
 *
 * TEMPORARY (branch wt-ctltools): a dispatch table with `test` and `feed-kernel` only, so
 * that those two commands can be built and tested before the real entropyctl main (status,
 * get, the control socket: branch wt-ctl) exists. TO BE MERGED: keep wt-ctl's main and
 * add the two entries of commands[] below to its table. */
#include "ctl_tools.h"

#include <stdio.h>
#include <string.h>

struct ctl_command {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *usage;
};

static const struct ctl_command commands[] = {
    {"test", ctl_test_main, "test SOURCE [--bytes N]"},
    {"feed-kernel", ctl_feed_kernel_main,
     "feed-kernel [--from tcp:HOST:PORT[,tls=DIR] | unix:PATH] [--h BITS] [--interval S] "
     "[--once | --bytes N]"},
};

static int usage(FILE *to, int rc)
{
	fprintf(to, "usage:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		fprintf(to, "  entropyctl %s\n", commands[i].usage);
	}
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		return usage(stderr, 2);
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		return usage(stdout, 0);
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) == 0) {
			return commands[i].main(argc - 1, argv + 1);
		}
	}
	fprintf(stderr, "entropyctl: unknown command '%s'\n", argv[1]);
	return usage(stderr, 2);
}
