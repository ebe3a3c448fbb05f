/* Unit tests for listen: an endpoint's life leaves no descriptor behind. The daemon frees
 * its endpoints only at exit today, so a leak there is invisible from outside; here
 * endpoints of every kind that holds a descriptor of its own (udp listen, udp connect,
 * fifo) are created and freed, and /proc/self/fd is compared before and after. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "conf.h"
#include "endpoint.h"
#include "pool.h"

/* The open descriptors of this process, as a sorted list of numbers in one string. */
static void fd_list(char *out, size_t outlen)
{
	DIR *d = opendir("/proc/self/fd");
	int fds[1024];
	size_t n = 0, used = 0;
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL && n < 1024) {
		if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d)) {
			fds[n++] = atoi(e->d_name);
		}
	}
	closedir(d);
	for (size_t i = 1; i < n; i++) {
		for (size_t j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
			int t = fds[j];

			fds[j] = fds[j - 1];
			fds[j - 1] = t;
		}
	}
	out[0] = '\0';
	for (size_t i = 0; i < n && used < outlen; i++) {
		used += (size_t)snprintf(out + used, outlen - used, "%d ", fds[i]);
	}
}

static void add(struct endpoints *eps, const char *spec, bool connect)
{
	struct endpoint_conf c;
	char err[256];

	assert_int_equal(conf_parse_endpoint(spec, connect, &c, err, sizeof(err)), 0);
	if (endpoints_add(eps, &c, err, sizeof(err)) < 0) {
		fail_msg("%s", err);
	}
	free(c.spec);
	free(c.host);
	free(c.port);
	free(c.path);
	free(c.local_host);
	free(c.local_port);
}

/* A free UDP port on 127.0.0.1, for the peer of a connecting udp endpoint. */
static int free_udp_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static void test_freeing_endpoints_closes_every_descriptor_they_opened(void **state)
{
	char dir[] = "/tmp/entropyd-test-XXXXXX";
	char spec[320], fifo[64], before[4096], during[4096], after[4096];
	struct event_base *base = event_base_new();
	struct pool *pool = pool_new(4096);
	struct clients *cs;
	struct endpoints *eps;

	assert_non_null(base);
	assert_non_null(pool);
	assert_non_null(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/rng.fifo", dir);
	unsetenv("LISTEN_FDS");
	fd_list(before, sizeof(before));

	cs = clients_new(base, pool, 30);
	eps = endpoints_new(base, cs);
	assert_non_null(cs);
	assert_non_null(eps);
	add(eps, "udp:127.0.0.1:0", false);
	snprintf(spec, sizeof(spec), "fifo:%s", fifo);
	add(eps, spec, false);
	snprintf(spec, sizeof(spec), "udp:127.0.0.1:%d,local=127.0.0.1:0", free_udp_port());
	add(eps, spec, true);
	fd_list(during, sizeof(during));
	assert_string_not_equal(before, during);
	endpoints_free(eps);
	clients_free(cs);
	fd_list(after, sizeof(after));

	unlink(fifo);
	rmdir(dir);
	pool_free(pool);
	event_base_free(base);
	assert_string_equal(before, after);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_freeing_endpoints_closes_every_descriptor_they_opened),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
