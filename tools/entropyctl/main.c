/* entropyctl: watch and use a running entropyd through its control socket (and any EGD
 * endpoint). Global options, then a command; each command is one entry of the table below
 * and one file. */
#include "ctl.h"

#include "conf.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct command {
	const char *name, *usage, *help;
	int (*run)(int argc, char **argv); /* argv[0] is the command's name */
};

static const struct command commands[] = {
    {"status", "status [--json]", "sources, endpoints and clients of the daemon", ctl_status_main},
    {"get", "get N [-o FILE] [--from tcp:HOST:PORT[,tls=DIR] | unix:PATH]",
     "N bytes from the daemon (control socket, or an EGD endpoint)", ctl_get_main},
    {"test", "test SOURCE [--bytes N]", "assess a source's min-entropy (SP 800-90B)",
     ctl_test_main},
    {"feed-kernel",
     "feed-kernel [--from tcp:HOST:PORT[,tls=DIR] | unix:PATH] [--h BITS] [--interval S] "
     "[--once | --bytes N]",
     "feed this host's kernel from an entropyd (control socket, or an EGD endpoint)",
     ctl_feed_kernel_main},
};

static char socket_path[256];

const char *ctl_socket(void)
{
	return socket_path;
}

int ctl_connect(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (strlen(socket_path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "entropyctl: socket path too long: %s\n", socket_path);
		return -1;
	}
	memcpy(sun.sun_path, socket_path, strlen(socket_path) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr,
			"entropyctl: cannot connect to %s: %m (is entropyd running? "
			"--socket PATH names another control socket)\n",
			socket_path);
		if (fd >= 0) {
			close(fd);
		}
		return -1;
	}
	return fd;
}

int ctl_send(int fd, struct json_object *req)
{
	const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
								JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t n = strlen(s), off = 0;

	while (off <= n) {
		ssize_t w = off < n ? write(fd, s + off, n - off) : write(fd, "\n", 1);

		if (w <= 0) {
			fprintf(stderr, "entropyctl: cannot send the request: %m\n");
			return -1;
		}
		off += (size_t)w;
	}
	return 0;
}

struct json_object *ctl_reply(int fd, size_t max)
{
	char *buf = malloc(max + 1);
	size_t len = 0;
	struct json_object *o = NULL, *err;

	/* One byte at a time: the bytes of a get follow the header line on the same socket. */
	while (buf != NULL && len < max) {
		ssize_t r = read(fd, buf + len, 1);

		if (r <= 0) {
			fprintf(stderr, "entropyctl: %s\n",
				r == 0 ? "entropyd closed the connection"
				       : "cannot read the reply");
			free(buf);
			return NULL;
		}
		if (buf[len++] == '\n') {
			break;
		}
	}
	if (buf != NULL) {
		buf[len] = '\0';
		o = json_tokener_parse(buf);
	}
	free(buf);
	if (o == NULL) {
		fprintf(stderr, "entropyctl: the reply is not JSON\n");
	} else if (json_object_object_get_ex(o, "error", &err)) {
		fprintf(stderr, "entropyctl: entropyd says: %s\n", json_object_get_string(err));
		json_object_put(o);
		o = NULL;
	}
	return o;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: entropyctl [--socket PATH] COMMAND [ARGS]\n\n"
		"  --socket PATH  the control socket (default %s)\n\ncommands:\n",
		socket_path);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		fprintf(out, "  %-62s %s\n", commands[i].usage, commands[i].help);
	}
	fprintf(out, "\nSee entropyctl(1).\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"socket", required_argument, NULL, 'S'},
					     {"help", no_argument, NULL, 'h'},
					     {"version", no_argument, NULL, 'V'},
					     {NULL, 0, NULL, 0}};
	int ch;

	conf_default_control(socket_path, sizeof(socket_path));
	/* "+": stop at the command; its own options are its own. */
	while ((ch = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'S':
			snprintf(socket_path, sizeof(socket_path), "%s", optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("entropyctl %s\n", ENTROPYD_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			int at = optind;

			optind = 0; /* the command runs getopt afresh over its own arguments */
			return commands[i].run(argc - at, argv + at);
		}
	}
	fprintf(stderr, "entropyctl: unknown command '%s'\n", argv[optind]);
	usage(stderr);
	return 2;
}
