/* Unit tests for tls_authz_match, the pure subject matcher of authz= files: the lines
 * `openssl x509 -noout -subject -nameopt RFC2253` prints are accepted as they are, and
 * nothing but an exact subject on a line of its own matches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdbool.h>

#include "tls.h"

static void test_authz_matches_a_listed_subject_as_openssl_prints_it(void **state)
{
	const char *list = "subject=CN=hv1,O=example\nCN=hv2,O=example\n";

	assert_true(tls_authz_match(list, "CN=hv1,O=example"));
	assert_true(tls_authz_match(list, "CN=hv2,O=example"));
	assert_false(tls_authz_match(list, "CN=hv3,O=example"));
}

static void test_authz_skips_comments_blank_lines_and_surrounding_blanks(void **state)
{
	const char *list = "# hypervisors\n\n   \n\t CN=hv1,O=example \r\n#CN=hv2,O=example\n";

	assert_true(tls_authz_match(list, "CN=hv1,O=example"));
	assert_false(tls_authz_match(list, "CN=hv2,O=example"));
	assert_false(tls_authz_match(list, "# hypervisors"));
}

static void test_authz_never_matches_a_prefix_a_suffix_or_an_empty_subject(void **state)
{
	const char *list = "CN=hv1,O=example\nsubject=\n";

	assert_false(tls_authz_match(list, "CN=hv1"));
	assert_false(tls_authz_match(list, "CN=hv1,O=example,C=DE"));
	assert_false(tls_authz_match(list, "XCN=hv1,O=example"));
	assert_false(tls_authz_match(list, ""));
	assert_false(tls_authz_match(NULL, "CN=hv1,O=example"));
	assert_false(tls_authz_match("", "CN=hv1,O=example"));
	/* The last line needs no newline; case matters (as in the certificate). */
	assert_true(tls_authz_match("CN=a\nCN=hv1,O=example", "CN=hv1,O=example"));
	assert_false(tls_authz_match("cn=hv1,o=example", "CN=hv1,O=example"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_authz_matches_a_listed_subject_as_openssl_prints_it),
	    cmocka_unit_test(test_authz_skips_comments_blank_lines_and_surrounding_blanks),
	    cmocka_unit_test(test_authz_never_matches_a_prefix_a_suffix_or_an_empty_subject),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
