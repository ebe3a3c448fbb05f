/* Unit tests for conf: source and endpoint specs parse to the right fields, and every bad
 * one fails with a message that names the offending option. Run under ASan (make asan)
 * these also catch a message formatted from freed memory and leaks on error paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "conf_doc.h"
#include "conf_opts.h"
#include "src_driver.h"

static char err[512];

/* Parse a source spec that must fail; the message must hold each of the NULL-ended needles. */
static void source_fails(const char *spec, ...)
{
	struct source_conf c;
	va_list ap;
	const char *needle;

	err[0] = '\0';
	if (conf_parse_source(spec, 0, &c, err, sizeof(err)) == 0) {
		conf_source_free(&c);
		fail_msg("source spec '%s' was accepted", spec);
	}
	assert_null(c.spec);
	assert_null(c.kind);
	assert_null(c.arg);
	assert_null(c.tty.init);
	va_start(ap, spec);
	while ((needle = va_arg(ap, const char *)) != NULL) {
		if (strstr(err, needle) == NULL) {
			fail_msg("source spec '%s': message '%s' does not name '%s'", spec, err,
				 needle);
		}
	}
	va_end(ap);
}

static void test_unknown_source_option_is_named(void **state)
{
	source_fails("getrandom,bogus=1", "source getrandom,bogus=1:", "unknown option 'bogus'",
		     "(known: h, prio, threads, init, baud, stall, tls, verify-peer)", NULL);
	source_fails("file:/dev/hwrng,h=2,speed=9600", "unknown option 'speed'", NULL);
}

static void test_tls_source_options_go_to_egd_sources_only(void **state)
{
	struct source_conf c;

	assert_int_equal(conf_parse_source("egd:tcp:127.0.0.1:8888,tls=/etc/pki/x,verify-peer=off",
					   0, &c, err, sizeof(err)),
			 0);
	assert_string_equal(c.kind, "egd");
	assert_string_equal(c.arg, "tcp:127.0.0.1:8888,tls=/etc/pki/x,verify-peer=off");
	conf_source_free(&c);
	source_fails("getrandom,tls=/etc/pki/x", "option 'tls=/etc/pki/x'",
		     "applies to egd: sources only", NULL);
	source_fails("egd:tcp:127.0.0.1:8888,verify-peer=maybe", "expected on or off", NULL);
}

static void test_source_option_without_value_is_named(void **state)
{
	source_fails("getrandom,h", "option 'h' needs a value", NULL);
	source_fails("file:/dev/ttyACM0,init=x,baud", "option 'baud' needs a value", NULL);
}

static void test_bad_source_option_values_are_named(void **state)
{
	source_fails("getrandom,h=", "option 'h=':", NULL);
	source_fails("getrandom,h=9", "option 'h=9':", NULL);
	source_fails("getrandom,h=0", "option 'h=0':", NULL);
	source_fails("getrandom,h=4bits", "option 'h=4bits':", NULL);
	source_fails("getrandom,prio=", "option 'prio=':", NULL);
	source_fails("getrandom,prio=-1", "option 'prio=-1':", NULL);
	source_fails("getrandom,prio=first", "option 'prio=first':", NULL);
	source_fails("file:/dev/ttyACM0,baud=0", "option 'baud=0':", NULL);
	source_fails("file:/dev/ttyACM0,baud=fast", "option 'baud=fast':", NULL);
	source_fails("getrandom,stall=-5", "option 'stall=-5':", NULL);
	source_fails("getrandom,stall=1s", "option 'stall=1s':", NULL);
	source_fails("getrandom,stall=", "option 'stall=':", NULL);
}

static void test_error_after_init_frees_everything(void **state)
{
	/* init= allocates before the bad option: ASan's leak check holds this test to it. */
	source_fails("file:/dev/ttyACM0,init=\\x01,init=abc,prio=x", "option 'prio=x':", NULL);
}

static void test_source_defaults(void **state)
{
	struct source_conf c;

	assert_int_equal(conf_parse_source("getrandom", 3, &c, err, sizeof(err)), 0);
	assert_string_equal(c.spec, "getrandom");
	assert_string_equal(c.kind, "getrandom");
	assert_null(c.arg);
	assert_true(c.min_entropy == CONF_DEFAULT_H);
	assert_int_equal(c.prio, 3);
	assert_int_equal(c.stall_ms, -1);
	assert_null(c.tty.init);
	assert_int_equal(c.tty.baud, 0);
	conf_source_free(&c);
}

static void test_source_options_parse(void **state)
{
	struct source_conf c;

	assert_int_equal(conf_parse_source("file:/dev/ttyACM0,h=7.5,prio=2,init=cmd\\n,baud=115200,"
					   "stall=1000",
					   0, &c, err, sizeof(err)),
			 0);
	assert_string_equal(c.kind, "file");
	assert_string_equal(c.arg, "/dev/ttyACM0");
	assert_true(c.min_entropy == 7.5);
	assert_int_equal(c.prio, 2);
	assert_string_equal(c.tty.init, "cmd\\n");
	assert_int_equal(c.tty.baud, 115200);
	assert_int_equal(c.stall_ms, 1000);
	conf_source_free(&c);

	assert_int_equal(
	    conf_parse_source("qng:tty=/dev/ttyUSB0+check=4k,stall=0", 1, &c, err, sizeof(err)), 0);
	assert_string_equal(c.kind, "qng");
	assert_string_equal(c.arg, "tty=/dev/ttyUSB0+check=4k");
	assert_int_equal(c.stall_ms, 0);
	conf_source_free(&c);

	assert_int_equal(conf_parse_source("egd:tcp:[::1]:8888", 0, &c, err, sizeof(err)), 0);
	assert_string_equal(c.kind, "egd");
	assert_string_equal(c.arg, "tcp:[::1]:8888");
	conf_source_free(&c);
}

static void test_exec_command_keeps_its_commas(void **state)
{
	struct source_conf c;

	assert_int_equal(conf_parse_source("exec:printf 'a,b,c' | cat,x=1,h=6,stall=2500", 0, &c,
					   err, sizeof(err)),
			 0);
	assert_string_equal(c.kind, "exec");
	assert_string_equal(c.arg, "printf 'a,b,c' | cat,x=1");
	assert_true(c.min_entropy == 6.0);
	assert_int_equal(c.stall_ms, 2500);
	conf_source_free(&c);

	assert_int_equal(
	    conf_parse_source("exec:head -c 9,10 /dev/urandom", 0, &c, err, sizeof(err)), 0);
	assert_string_equal(c.arg, "head -c 9,10 /dev/urandom");
	assert_int_equal(c.stall_ms, -1);
	conf_source_free(&c);
}

/* Parse an endpoint spec that must fail, naming the needle. */
static void endpoint_fails(const char *spec, bool connect, const char *needle)
{
	struct endpoint_conf e;

	err[0] = '\0';
	if (conf_parse_endpoint(spec, connect, &e, err, sizeof(err)) == 0) {
		conf_endpoint_free(&e);
		fail_msg("endpoint spec '%s' was accepted", spec);
	}
	conf_endpoint_free(&e);
	if (strstr(err, needle) == NULL) {
		fail_msg("endpoint spec '%s': message '%s' does not name '%s'", spec, err, needle);
	}
}

static void test_endpoints_parse(void **state)
{
	struct endpoint_conf e;

	assert_int_equal(conf_parse_endpoint("tcp:127.0.0.1:8888", false, &e, err, sizeof(err)), 0);
	assert_int_equal(e.kind, EP_TCP);
	assert_string_equal(e.host, "127.0.0.1");
	assert_string_equal(e.port, "8888");
	assert_int_equal(e.opts.primer, CONF_DEFAULT_PRIMER);
	conf_endpoint_free(&e);

	assert_int_equal(
	    conf_parse_endpoint("tcp:[::1]:0,proto=raw,primer=0", false, &e, err, sizeof(err)), 0);
	assert_string_equal(e.host, "::1");
	assert_string_equal(e.port, "0");
	assert_true(e.opts.raw);
	assert_int_equal(e.opts.primer, 0);
	conf_endpoint_free(&e);

	assert_int_equal(
	    conf_parse_endpoint("unix:/run/x.sock,mode=0600", false, &e, err, sizeof(err)), 0);
	assert_int_equal(e.kind, EP_UNIX);
	assert_string_equal(e.path, "/run/x.sock");
	assert_true(e.has_mode);
	assert_int_equal(e.mode, 0600);
	conf_endpoint_free(&e);

	assert_int_equal(conf_parse_endpoint("fifo:/tmp/q.fifo", false, &e, err, sizeof(err)), 0);
	assert_int_equal(e.kind, EP_FIFO);
	assert_true(e.opts.raw);
	conf_endpoint_free(&e);

	assert_int_equal(conf_parse_endpoint("vhost-user:/run/v.sock,rate=4096/1000,mode=0660",
					     false, &e, err, sizeof(err)),
			 0);
	assert_int_equal(e.kind, EP_VHOST);
	assert_string_equal(e.path, "/run/v.sock");
	assert_int_equal(e.opts.rate_bytes, 4096);
	conf_endpoint_free(&e);
	assert_int_equal(conf_parse_endpoint("vhost-user:/run/v.sock,rate=4096/1000", true, &e, err,
					     sizeof(err)),
			 0);
	assert_int_equal(e.kind, EP_VHOST);
	conf_endpoint_free(&e);

	assert_int_equal(conf_parse_endpoint("udp:127.0.0.1:4000,allow=127.0.0.1+::1/128", false,
					     &e, err, sizeof(err)),
			 0);
	assert_int_equal(e.kind, EP_UDP);
	assert_int_equal(e.nallow, 2);
	conf_endpoint_free(&e);
}

static void test_repeated_local_keeps_the_last(void **state)
{
	struct endpoint_conf e;

	/* The first local= must be freed (ASan's leak check), the last one wins. */
	assert_int_equal(conf_parse_endpoint("udp:127.0.0.1:4000,local=127.0.0.1:5000,"
					     "local=[::1]:5001",
					     true, &e, err, sizeof(err)),
			 0);
	assert_string_equal(e.local_host, "::1");
	assert_string_equal(e.local_port, "5001");
	conf_endpoint_free(&e);
}

static void test_bad_endpoints_are_named(void **state)
{
	endpoint_fails("tcp:127.0.0.1:65536", false, "bad port '65536'");
	endpoint_fails("tcp:127.0.0.1:http", false, "bad port 'http'");
	endpoint_fails("tcp:127.0.0.1:0", true, "bad port '0'");
	endpoint_fails("tcp:127.0.0.1", false, "expected tcp:HOST:PORT");
	endpoint_fails("tcp:[::1:80", false, "bad IPv6 address");
	endpoint_fails("fifo:/tmp/q", true, "(fifo: listens only)");
	endpoint_fails("tcp:::1:80", false, "an IPv6 address goes in brackets");
	endpoint_fails("tcp:127.0.0.1:80,bogus=1", false, "unknown option 'bogus'");
	endpoint_fails("tcp:127.0.0.1:80,primer", false, "option 'primer' needs a value");
	endpoint_fails("tcp:127.0.0.1:80,local=127.0.0.1:5", true,
		       "local= applies to udp --connect endpoints only (not to tcp --connect");
	endpoint_fails("udp:127.0.0.1:80,local=127.0.0.1", true, "option 'local=127.0.0.1':");
	endpoint_fails("fifo:/tmp/q,max-per-peer=2", false,
		       "max-per-peer= applies to tcp, unix and vhost-user listeners only (not to "
		       "fifo");
	endpoint_fails("vhost-user:/tmp/v.sock,proto=raw", false,
		       "proto= applies to tcp, udp, unix and fifo listeners and tcp, udp and unix "
		       "--connect endpoints only (not to vhost-user listeners)");
	endpoint_fails("vhost-user:/tmp/v.sock,write=on", true, "(not to vhost-user --connect");
	endpoint_fails("udp:127.0.0.1:80,local=127.0.0.1:5,proto=x", true, "proto=x");
}

/* The --help text with every run of blanks and newlines squeezed into one space (so that
 * wrapped text is found whole), in a buffer the caller frees. */
static char *help_text(void)
{
	char *buf = NULL;
	size_t len = 0, at = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	conf_print_help(f);
	assert_int_equal(fclose(f), 0);
	for (size_t i = 0; i < len; i++) {
		bool blank = buf[i] == ' ' || buf[i] == '\n';

		if (!blank || at == 0 || buf[at - 1] != ' ') {
			buf[at++] = blank ? ' ' : buf[i];
		}
	}
	buf[at] = '\0';
	return buf;
}

static void test_every_source_kind_is_in_help_with_its_text(void **state)
{
	char *help = help_text();
	char want[64];

	for (size_t i = 0; src_drivers[i] != NULL; i++) {
		const struct src_driver *d = src_drivers[i];

		if (d->syntax == NULL || d->help == NULL ||
		    strncmp(d->syntax, d->kind, strlen(d->kind)) != 0) {
			fail_msg(
			    "source kind %s has no syntax/help, or a syntax not starting with it",
			    d->kind);
		}
		snprintf(want, sizeof(want), " %s ", d->syntax);
		if (strstr(help, want) == NULL || strstr(help, d->help) == NULL) {
			fail_msg("--help lacks the source kind '%s':\n%s", d->syntax, help);
		}
	}
	free(help);
}

static void test_every_table_option_is_in_help(void **state)
{
	char *help = help_text();
	char want[128];

	for (size_t i = 0; i < conf_ncli_opts; i++) {
		const struct conf_cli_opt *o = &conf_cli_opts[i];

		if (o->letter != 0) {
			snprintf(want, sizeof(want), "-%c, --%s%s%s ", o->letter, o->name,
				 o->arg ? " " : "", o->arg ? o->arg : "");
		} else {
			snprintf(want, sizeof(want), " --%s%s%s ", o->name, o->arg ? " " : "",
				 o->arg ? o->arg : "");
		}
		if (o->help == NULL) {
			/* Hidden (--help-man): only make man knows it. */
			snprintf(want, sizeof(want), "--%s", o->name);
			if (strstr(help, want) != NULL) {
				fail_msg("hidden option --%s is in --help", o->name);
			}
			continue;
		}
		if (strstr(help, want) == NULL || strstr(help, o->help) == NULL) {
			fail_msg("--help lacks '%s' or its text:\n%s", want, help);
		}
	}
	for (size_t i = 0; i < conf_nsource_opts; i++) {
		snprintf(want, sizeof(want), " ,%s=%s ", conf_source_opts[i].name,
			 conf_source_opts[i].value);
		if (strstr(help, want) == NULL || strstr(help, conf_source_opts[i].help) == NULL) {
			fail_msg("--help lacks source option '%s' or its text", want);
		}
	}
	for (size_t i = 0; i < conf_nendpoint_opts; i++) {
		snprintf(want, sizeof(want), " ,%s=%s ", conf_endpoint_opts[i].name,
			 conf_endpoint_opts[i].value);
		if (strstr(help, want) == NULL ||
		    strstr(help, conf_endpoint_opts[i].help) == NULL) {
			fail_msg("--help lacks endpoint option '%s' or its text", want);
		}
	}
	free(help);
}

static void test_cli_table_names_and_letters_are_unique(void **state)
{
	for (size_t i = 0; i < conf_ncli_opts; i++) {
		for (size_t j = i + 1; j < conf_ncli_opts; j++) {
			assert_string_not_equal(conf_cli_opts[i].name, conf_cli_opts[j].name);
			if (conf_cli_opts[i].letter != 0) {
				assert_int_not_equal(conf_cli_opts[i].letter,
						     conf_cli_opts[j].letter);
			}
		}
	}
}

/* True if list ("a, b, c") holds name as a whole item. */
static bool list_has(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; (p = strstr(p, name)) != NULL; p++) {
		if ((p == list || p[-1] == ' ') && (p[n] == ',' || p[n] == ')')) {
			return true;
		}
	}
	return false;
}

static void test_unknown_option_messages_name_every_option(void **state)
{
	struct source_conf c;
	struct endpoint_conf e;
	const char *list;

	assert_int_equal(conf_parse_source("getrandom,nosuch=1", 0, &c, err, sizeof(err)), -1);
	list = strstr(err, "(known: ");
	assert_non_null(list);
	for (size_t i = 0; i < conf_nsource_opts; i++) {
		if (!list_has(list, conf_source_opts[i].name)) {
			fail_msg("'%s' does not name source option %s", err,
				 conf_source_opts[i].name);
		}
	}
	assert_int_equal(
	    conf_parse_endpoint("tcp:127.0.0.1:1,nosuch=1", false, &e, err, sizeof(err)), -1);
	conf_endpoint_free(&e);
	list = strstr(err, "(known: ");
	assert_non_null(list);
	for (size_t i = 0; i < conf_nendpoint_opts; i++) {
		if (!list_has(list, conf_endpoint_opts[i].name)) {
			fail_msg("'%s' does not name endpoint option %s", err,
				 conf_endpoint_opts[i].name);
		}
	}
}

static void test_endpoint_options_are_refused_where_they_do_not_apply(void **state)
{
	static const struct {
		const char *ep;
		bool connect;
		unsigned bit;
		const char *name;
	} eps[] = {
	    {"tcp:127.0.0.1:1", false, CONF_LISTEN(EP_TCP), "tcp listeners"},
	    {"udp:127.0.0.1:1", false, CONF_LISTEN(EP_UDP), "udp listeners"},
	    {"unix:/tmp/entropyd-test.sock", false, CONF_LISTEN(EP_UNIX), "unix listeners"},
	    {"fifo:/tmp/entropyd-test.fifo", false, CONF_LISTEN(EP_FIFO), "fifo listeners"},
	    {"tcp:127.0.0.1:1", true, CONF_DIAL(EP_TCP), "tcp --connect endpoints"},
	    {"udp:127.0.0.1:1", true, CONF_DIAL(EP_UDP), "udp --connect endpoints"},
	    {"unix:/tmp/entropyd-test.sock", true, CONF_DIAL(EP_UNIX), "unix --connect endpoints"},
	    {"vhost-user:/tmp/v.sock", false, CONF_LISTEN(EP_VHOST), "vhost-user listeners"},
	    {"vhost-user:/tmp/v.sock", true, CONF_DIAL(EP_VHOST), "vhost-user --connect endpoints"},
	};
	char spec[128], want[256], to[128];
	size_t refused = 0;

	for (size_t i = 0; i < conf_nendpoint_opts; i++) {
		const struct conf_spec_opt *o = &conf_endpoint_opts[i];

		conf_applies_phrase(o->applies, to, sizeof(to));
		for (size_t k = 0; k < sizeof(eps) / sizeof(eps[0]); k++) {
			struct endpoint_conf e;
			int rc;

			snprintf(spec, sizeof(spec), "%s,%s=x", eps[k].ep, o->name);
			rc = conf_parse_endpoint(spec, eps[k].connect, &e, err, sizeof(err));
			conf_endpoint_free(&e);
			snprintf(want, sizeof(want), "%s= applies to %s only (not to %s)", o->name,
				 to, eps[k].name);
			if ((o->applies & eps[k].bit) != 0) {
				/* It applies: any refusal is about the value x. */
				if (strstr(err, "applies to") != NULL) {
					fail_msg("%s: %s", spec, err);
				}
			} else if (rc == 0 || strstr(err, want) == NULL) {
				fail_msg("%s: '%s' does not say '%s'", spec, err, want);
			} else {
				refused++;
			}
		}
	}
	/* max-per-peer, allow, local, mode, owner and group are restricted. */
	assert_true(refused >= 6);
}

/* conf_parse on argv (NULL-terminated, without the program name) from a fresh getopt. */
static int parse_argv(struct conf *c, const char *const *args)
{
	char *argv[16] = {"entropyd"};
	int argc = 1, rc;

	for (; args[argc - 1] != NULL; argc++) {
		assert_true(argc < 15);
		argv[argc] = strdup(args[argc - 1]);
		assert_non_null(argv[argc]);
	}
	rc = conf_parse(c, argc, argv, err, sizeof(err));
	for (int i = 1; i < argc; i++) {
		free(argv[i]);
	}
	return rc;
}

static void test_help_and_version_stop_the_parse_and_are_left_to_main(void **state)
{
	static const struct {
		const char *args[6];
		int rc;
		enum conf_show show;
	} cases[] = {
	    {{"--help", "--bogus", "extra", NULL}, 0, CONF_SHOW_HELP},
	    {{"-h", NULL}, 0, CONF_SHOW_HELP},
	    {{"--help-man", "--help", NULL}, 0, CONF_SHOW_MAN},
	    {{"--source", "getrandom", "-V", "--help", NULL}, 0, CONF_SHOW_VERSION},
	    /* The other options act after the config file is read: --help comes first. */
	    {{"--alpha", "0", "--help", NULL}, 0, CONF_SHOW_HELP},
	    {{"--config", "none", "--alpha", "0", NULL}, -1, CONF_RUN},
	    {{"--foreground", NULL}, 0, CONF_RUN},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf c;
		int rc = parse_argv(&c, cases[i].args);

		if (rc != cases[i].rc || (rc == 0 && c.show != cases[i].show)) {
			fail_msg("%s...: rc %d show %d, expected rc %d show %d", cases[i].args[0],
				 rc, (int)c.show, cases[i].rc, (int)cases[i].show);
		}
		conf_free(&c);
	}
}

static void test_show_prints_help_man_page_and_version(void **state)
{
	char *got = NULL, *want = NULL;
	size_t got_len = 0, want_len = 0;
	FILE *g = open_memstream(&got, &got_len);
	FILE *w = open_memstream(&want, &want_len);

	assert_non_null(g);
	assert_non_null(w);
	conf_doc_show(CONF_RUN, g);
	conf_doc_show(CONF_SHOW_VERSION, g);
	conf_doc_show(CONF_SHOW_HELP, g);
	conf_doc_show(CONF_SHOW_MAN, g);
	fprintf(w, "entropyd %s\n", ENTROPYD_VERSION);
	conf_print_help(w);
	conf_print_man(w);
	assert_int_equal(fclose(g), 0);
	assert_int_equal(fclose(w), 0);
	assert_true(want_len > 1000);
	assert_string_equal(got, want);
	free(got);
	free(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unknown_source_option_is_named),
	    cmocka_unit_test(test_tls_source_options_go_to_egd_sources_only),
	    cmocka_unit_test(test_source_option_without_value_is_named),
	    cmocka_unit_test(test_bad_source_option_values_are_named),
	    cmocka_unit_test(test_error_after_init_frees_everything),
	    cmocka_unit_test(test_source_defaults),
	    cmocka_unit_test(test_source_options_parse),
	    cmocka_unit_test(test_exec_command_keeps_its_commas),
	    cmocka_unit_test(test_endpoints_parse),
	    cmocka_unit_test(test_repeated_local_keeps_the_last),
	    cmocka_unit_test(test_bad_endpoints_are_named),
	    cmocka_unit_test(test_every_table_option_is_in_help),
	    cmocka_unit_test(test_every_source_kind_is_in_help_with_its_text),
	    cmocka_unit_test(test_cli_table_names_and_letters_are_unique),
	    cmocka_unit_test(test_unknown_option_messages_name_every_option),
	    cmocka_unit_test(test_endpoint_options_are_refused_where_they_do_not_apply),
	    cmocka_unit_test(test_help_and_version_stop_the_parse_and_are_left_to_main),
	    cmocka_unit_test(test_show_prints_help_man_page_and_version),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
