/* Unit tests for the UDP allow list (udp_parse_prefix, udp_allowed): prefixes of 0, 8, 12,
 * 24 and 32 bits for IPv4 and 0, 64 and 128 for IPv6, checked at their edges (the first and
 * last address inside, the first outside on each side); IPv4-mapped IPv6 peers against IPv4
 * prefixes; several prefixes at once; and malformed prefixes, which must be refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "udp.h"

static struct udp_prefix prefix(const char *s)
{
	struct udp_prefix p;

	if (udp_parse_prefix(s, &p) != 0) {
		fail_msg("udp_parse_prefix refused the valid prefix '%s'", s);
	}
	return p;
}

/* Is the peer addr (IPv4 or IPv6 text, as its socket family) in the n prefixes? */
static bool allowed_n(const char *addr, const struct udp_prefix *allow, size_t n)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(1234)};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(1234)};

	if (inet_pton(AF_INET, addr, &sin.sin_addr) == 1) {
		return udp_allowed((const struct sockaddr *)&sin, allow, n);
	}
	if (inet_pton(AF_INET6, addr, &sin6.sin6_addr) == 1) {
		return udp_allowed((const struct sockaddr *)&sin6, allow, n);
	}
	fail_msg("test bug: '%s' is not an address", addr);
	return false;
}

/* Is the peer addr allowed by the single prefix pfx? */
static bool allowed(const char *addr, const char *pfx)
{
	struct udp_prefix p = prefix(pfx);

	return allowed_n(addr, &p, 1);
}

/* pfx admits first and last and nothing just outside them (below, above). */
static void assert_edges(const char *pfx, const char *below, const char *first, const char *last,
			 const char *above)
{
	assert_true(allowed(first, pfx));
	assert_true(allowed(last, pfx));
	if (below != NULL) {
		assert_false(allowed(below, pfx));
	}
	if (above != NULL) {
		assert_false(allowed(above, pfx));
	}
}

static void test_parse_prefix_reads_family_address_and_bits(void **state)
{
	struct udp_prefix p;
	const uint8_t ten[4] = {10, 0, 0, 0};
	const uint8_t loop6[16] = {[15] = 1};

	(void)state;
	assert_int_equal(udp_parse_prefix("10.0.0.0/8", &p), 0);
	assert_int_equal(p.family, AF_INET);
	assert_int_equal(p.bits, 8);
	assert_memory_equal(p.addr, ten, 4);
	assert_int_equal(udp_parse_prefix("127.0.0.1", &p), 0);
	assert_int_equal(p.family, AF_INET);
	assert_int_equal(p.bits, 32);
	assert_int_equal(udp_parse_prefix("::1", &p), 0);
	assert_int_equal(p.family, AF_INET6);
	assert_int_equal(p.bits, 128);
	assert_memory_equal(p.addr, loop6, 16);
	assert_int_equal(udp_parse_prefix("fd00::/64", &p), 0);
	assert_int_equal(p.family, AF_INET6);
	assert_int_equal(p.bits, 64);
	assert_int_equal(udp_parse_prefix("0.0.0.0/0", &p), 0);
	assert_int_equal(p.bits, 0);
	assert_int_equal(udp_parse_prefix("1.2.3.4/32", &p), 0);
	assert_int_equal(p.bits, 32);
	assert_int_equal(udp_parse_prefix("::/128", &p), 0);
	assert_int_equal(p.bits, 128);
	/* The longest text form of an IPv6 prefix fits. */
	assert_int_equal(udp_parse_prefix("0000:0000:0000:0000:0000:ffff:255.255.255.255/128", &p),
			 0);
}

static void test_ipv4_slash_8_admits_its_whole_range_only(void **state)
{
	(void)state;
	assert_edges("10.0.0.0/8", "9.255.255.255", "10.0.0.0", "10.255.255.255", "11.0.0.0");
	assert_edges("127.0.0.0/8", "126.255.255.255", "127.0.0.0", "127.255.255.255", "128.0.0.0");
}

static void test_ipv4_slash_24_admits_its_whole_range_only(void **state)
{
	(void)state;
	assert_edges("192.168.1.0/24", "192.168.0.255", "192.168.1.0", "192.168.1.255",
		     "192.168.2.0");
	/* Host bits set in the prefix are ignored, as in routing tables. */
	assert_edges("127.0.0.77/24", "126.255.255.255", "127.0.0.0", "127.0.0.255", "127.0.1.0");
}

static void test_ipv4_prefix_not_on_a_byte_boundary(void **state)
{
	(void)state;
	assert_edges("172.16.0.0/12", "172.15.255.255", "172.16.0.0", "172.31.255.255",
		     "172.32.0.0");
	assert_edges("127.0.0.8/30", "127.0.0.7", "127.0.0.8", "127.0.0.11", "127.0.0.12");
}

static void test_ipv4_slash_32_and_bare_address_admit_one_host(void **state)
{
	(void)state;
	assert_edges("127.0.0.2/32", "127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.3");
	assert_edges("127.0.0.2", "127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.3");
	assert_false(allowed("127.0.1.2", "127.0.0.2"));
}

static void test_ipv4_slash_0_admits_every_ipv4_peer(void **state)
{
	(void)state;
	assert_edges("0.0.0.0/0", NULL, "0.0.0.0", "255.255.255.255", NULL);
	assert_true(allowed("203.0.113.9", "0.0.0.0/0"));
	/* Including IPv4 peers on an IPv6 socket, but no native IPv6 peer. */
	assert_true(allowed("::ffff:203.0.113.9", "0.0.0.0/0"));
	assert_false(allowed("::1", "0.0.0.0/0"));
	assert_false(allowed("2001:db8::1", "0.0.0.0/0"));
}

static void test_ipv6_slash_64_admits_its_whole_range_only(void **state)
{
	(void)state;
	assert_edges("2001:db8:1:2::/64", "2001:db8:1:1:ffff:ffff:ffff:ffff",
		     "2001:db8:1:2::", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:3::");
	/* An IPv4 peer is never in an IPv6 prefix other than the mapped range. */
	assert_false(allowed("127.0.0.1", "2001:db8:1:2::/64"));
}

static void test_ipv6_slash_128_admits_one_host(void **state)
{
	(void)state;
	assert_edges("::1/128", "::", "::1", "::1", "::2");
	assert_edges("::1", "::", "::1", "::1", "::2");
	assert_false(allowed("::1:1", "::1"));
	assert_edges("2001:db8::ff/128", "2001:db8::fe", "2001:db8::ff", "2001:db8::ff",
		     "2001:db8::100");
}

static void test_ipv6_slash_0_admits_every_ipv6_peer(void **state)
{
	(void)state;
	assert_edges("::/0", NULL, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL);
}

static void test_ipv4_mapped_ipv6_peer_is_matched_by_ipv4_prefix(void **state)
{
	(void)state;
	/* A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d. */
	assert_true(allowed("::ffff:127.0.0.1", "127.0.0.0/8"));
	assert_true(allowed("::ffff:127.0.0.1", "127.0.0.1"));
	assert_edges("127.0.0.0/24", "::ffff:126.255.255.255", "::ffff:127.0.0.0",
		     "::ffff:127.0.0.255", "::ffff:127.0.1.0");
	assert_false(allowed("::ffff:10.0.0.1", "127.0.0.0/8"));
	/* Only the mapped form: the same low 32 bits in another IPv6 address do not count. */
	assert_false(allowed("::127.0.0.1", "127.0.0.0/8"));
	assert_false(allowed("64:ff9b::127.0.0.1", "127.0.0.0/8"));
	assert_false(allowed("::fffe:127.0.0.1", "127.0.0.0/8"));
	/* The mapped range can also be named as an IPv6 prefix. */
	assert_true(allowed("::ffff:127.0.0.1", "::ffff:0:0/96"));
	assert_false(allowed("::1", "::ffff:0:0/96"));
}

static void test_peer_in_any_of_several_prefixes_is_allowed(void **state)
{
	struct udp_prefix list[3];

	(void)state;
	list[0] = prefix("10.0.0.0/8");
	list[1] = prefix("::1");
	list[2] = prefix("192.168.7.0/24");
	assert_true(allowed_n("10.1.2.3", list, 3));
	assert_true(allowed_n("::1", list, 3));
	assert_true(allowed_n("192.168.7.200", list, 3));
	assert_true(allowed_n("::ffff:192.168.7.1", list, 3));
	assert_false(allowed_n("192.168.8.1", list, 3));
	assert_false(allowed_n("::2", list, 3));
	/* Only the first n entries count; an empty list allows nobody. */
	assert_false(allowed_n("192.168.7.200", list, 2));
	assert_false(allowed_n("10.1.2.3", list, 0));
}

static void test_peer_of_another_family_is_refused(void **state)
{
	struct udp_prefix all[2];
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	(void)state;
	all[0] = prefix("0.0.0.0/0");
	all[1] = prefix("::/0");
	assert_false(udp_allowed((const struct sockaddr *)&sun, all, 2));
}

static void test_malformed_prefix_is_refused(void **state)
{
	static const char *const bad[] = {
	    "",
	    "/8",
	    "127.0.0.1/",
	    "127.0.0.1/33",
	    "127.0.0.1/100",
	    "127.0.0.1/-1",
	    "127.0.0.1/8x",
	    "127.0.0.1/8/8",
	    "127.0.0.1x/8",
	    "127.0.0.1 ",
	    "127.0.0.256",
	    "127.0.0/8",
	    "localhost",
	    "::1/129",
	    "::1/-1",
	    "::1/64junk",
	    "fd00::/",
	    "[::1]/128",
	    ":::1",
	    /* Too long for any address: refused, even though it ends in a valid "/8" ... */
	    "127.0.0.1/00000000000000000000000000000000000000000000000000000000000000000000000008",
	    /* ... and a long run of junk (parenthesised: one string written on two lines). */
	    ("11111111111111111111111111111111111111111111111111111111111111111111111111111111111"
	     "111111111111111111111111111111111111111111111111111111111111111111111111111111111"),
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct udp_prefix p;

		if (udp_parse_prefix(bad[i], &p) != -1) {
			fail_msg("udp_parse_prefix accepted the malformed prefix '%s'", bad[i]);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_prefix_reads_family_address_and_bits),
	    cmocka_unit_test(test_ipv4_slash_8_admits_its_whole_range_only),
	    cmocka_unit_test(test_ipv4_slash_24_admits_its_whole_range_only),
	    cmocka_unit_test(test_ipv4_prefix_not_on_a_byte_boundary),
	    cmocka_unit_test(test_ipv4_slash_32_and_bare_address_admit_one_host),
	    cmocka_unit_test(test_ipv4_slash_0_admits_every_ipv4_peer),
	    cmocka_unit_test(test_ipv6_slash_64_admits_its_whole_range_only),
	    cmocka_unit_test(test_ipv6_slash_128_admits_one_host),
	    cmocka_unit_test(test_ipv6_slash_0_admits_every_ipv6_peer),
	    cmocka_unit_test(test_ipv4_mapped_ipv6_peer_is_matched_by_ipv4_prefix),
	    cmocka_unit_test(test_peer_in_any_of_several_prefixes_is_allowed),
	    cmocka_unit_test(test_peer_of_another_family_is_refused),
	    cmocka_unit_test(test_malformed_prefix_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
