/* Unit tests of the config file (conf_args.c): its lines go through the command line's
 * option table, the command line adds to them, and a bad line is named FILE:LINE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

/* Write text to a fresh temporary file; its path in path (PATH_MAX bytes). */
static void write_file(char *path, const char *text)
{
	int fd;
	FILE *f;

	strcpy(path, "/tmp/entropyd-conf-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* conf_parse of "entropyd --config PATH" followed by extra (NULL-terminated). */
static int parse_with(struct conf *c, const char *path, const char *const *extra, char *err,
		      size_t errlen)
{
	char *argv[16] = {"entropyd", "--config", (char *)path};
	int argc = 3;

	for (; extra != NULL && extra[argc - 3] != NULL; argc++) {
		argv[argc] = (char *)extra[argc - 3];
	}
	return conf_parse(c, argc, argv, err, errlen);
}

static void test_file_options_apply_and_the_command_line_adds_to_them(void **state)
{
	static const char *const extra[] = {
	    "--source", "getrandom", "--listen", "tcp:127.0.0.1:7001", "--alpha", "20", NULL};
	char path[64], err[512];
	struct conf c;

	write_file(path, "# a comment\n"
			 "\n"
			 "   source   file:/dev/urandom,h=6  \n"
			 "listen unix:/tmp/x.sock,mode=0600\n"
			 "  # indented comment\n"
			 "foreground\n"
			 "alpha 40\n"
			 "pool-size 8192\n");
	assert_int_equal(parse_with(&c, path, extra, err, sizeof(err)), 0);
	assert_int_equal(c.nsources, 2);
	assert_string_equal(c.sources[0].spec, "file:/dev/urandom,h=6");
	assert_true(c.sources[0].min_entropy == 6.0);
	assert_string_equal(c.sources[1].spec, "getrandom");
	assert_int_equal(c.nendpoints, 2);
	assert_string_equal(c.endpoints[0].path, "/tmp/x.sock");
	assert_int_equal(c.endpoints[0].mode, 0600);
	assert_string_equal(c.endpoints[1].port, "7001");
	assert_true(c.foreground);
	assert_int_equal(c.alpha_log2, 20); /* the command line's value wins */
	assert_int_equal(c.pool_size, 8192);
	conf_free(&c);
	unlink(path);
}

static void test_bad_lines_are_named_by_file_and_line(void **state)
{
	static const struct {
		const char *text;
		const char *want; /* after "PATH:" */
	} cases[] = {
	    {"source getrandom\nbogus 1\n", "2: unknown option 'bogus'"},
	    {"\n\nsource\n", "3: 'source' needs a value"},
	    {"foreground yes\n", "1: 'foreground' takes no value"},
	    {"config /etc/other.conf\n", "1: 'config' is a command-line option only"},
	    {"check\n", "1: 'check' is a command-line option only"},
	    {"help-man\n", "1: unknown option 'help-man'"},
	    {"# ok\nlisten tcp:127.0.0.1:1,frob=1\n",
	     "2: endpoint tcp:127.0.0.1:1,frob=1: unknown"},
	    {"alpha 99\n", "1: --alpha 99: expected 1..64"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[64], err[512], want[600];
		struct conf c;

		write_file(path, cases[i].text);
		snprintf(want, sizeof(want), "%s:%s", path, cases[i].want);
		assert_int_equal(parse_with(&c, path, NULL, err, sizeof(err)), -1);
		if (strncmp(err, want, strlen(want)) != 0) {
			fail_msg("case %zu: got '%s', expected it to start with '%s'", i, err,
				 want);
		}
		conf_free(&c);
		unlink(path);
	}
}

static void test_missing_file_is_an_error_only_when_named(void **state)
{
	static const char *const none[] = {"--config", "none", NULL};
	char err[512];
	struct conf c;
	char *argv[] = {"entropyd", "--config", "none", NULL};

	assert_int_equal(parse_with(&c, "/nonexistent/entropyd.conf", NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/entropyd.conf: cannot open"));
	conf_free(&c);
	/* --config none reads nothing (even when a later --config named a file first). */
	assert_int_equal(parse_with(&c, "/nonexistent/entropyd.conf", none, err, sizeof(err)), 0);
	conf_free(&c);
	assert_int_equal(conf_parse(&c, 3, argv, err, sizeof(err)), 0);
	assert_int_equal(c.nsources, 0);
	conf_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_file_options_apply_and_the_command_line_adds_to_them),
	    cmocka_unit_test(test_bad_lines_are_named_by_file_and_line),
	    cmocka_unit_test(test_missing_file_is_an_error_only_when_named),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
