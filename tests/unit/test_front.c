/* test_front.c: where the public port's front door sends a connection by its first bytes. */
#include "unit.h"

#include <string.h>

#include "front.h"

static enum front_kind kind_of(const char *s)
{
	return front_classify((const unsigned char *)s, strlen(s));
}

static void test_websocket_path(void **state)
{
	(void)state;
	assert_int_equal(kind_of("GET /ws HTTP/1.1\r\n"), FRONT_WS);
	assert_int_equal(kind_of("GET /ws "), FRONT_WS);
	assert_int_equal(kind_of("GET /ws?x=1 HTTP/1.1"), FRONT_WS);
}

static void test_everything_else_is_http(void **state)
{
	(void)state;
	assert_int_equal(kind_of("GET / HTTP/1.1"), FRONT_HTTP);
	assert_int_equal(kind_of("GET /wsx HTTP/1.1"), FRONT_HTTP);
	assert_int_equal(kind_of("GET /ws/ HTTP/1.1"), FRONT_HTTP);
	assert_int_equal(kind_of("GET /api/health HTTP/1.1"), FRONT_HTTP);
	assert_int_equal(kind_of("HEAD /ws HTTP/1.1"), FRONT_HTTP);
	assert_int_equal(kind_of("POST /ws HTTP/1.1"), FRONT_HTTP);
	/* Methods are case-sensitive (RFC 9110 9.1). */
	assert_int_equal(kind_of("get /ws HTTP/1.1"), FRONT_HTTP);
	/* Decided at the first byte that differs: no waiting for more. */
	assert_int_equal(kind_of("P"), FRONT_HTTP);
	assert_int_equal(kind_of("GET /a"), FRONT_HTTP);
	assert_int_equal(front_classify((const unsigned char *)"\0\1\2", 3), FRONT_HTTP);
	/* A TLS ClientHello is not ours either: libmicrohttpd answers it. */
	assert_int_equal(front_classify((const unsigned char *)"\x16\x03\x01", 3), FRONT_HTTP);
}

static void test_prefixes_need_more(void **state)
{
	static const char full[] = "GET /ws ";
	size_t n;

	(void)state;
	assert_int_equal(front_classify((const unsigned char *)"", 0), FRONT_NEED_MORE);
	/* Every proper prefix of "GET /ws" + one byte waits; at most
	 * FRONT_PEEK_MAX bytes ever decide. */
	for (n = 1; n < FRONT_PEEK_MAX; n++)
		assert_int_equal(front_classify((const unsigned char *)full, n), FRONT_NEED_MORE);
	assert_int_equal(front_classify((const unsigned char *)full, FRONT_PEEK_MAX), FRONT_WS);
	assert_int_equal(sizeof full - 1, FRONT_PEEK_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_websocket_path),
		cmocka_unit_test(test_everything_else_is_http),
		cmocka_unit_test(test_prefixes_need_more),
	};

	return cmocka_run_group_tests_name("front", tests, NULL, NULL);
}
