/* test_ws_addr.c: the WebSocket server's bounded per-address table (sessions, sign-in buckets). */
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "ws_addr.h"

static void key4(unsigned char key[16], unsigned a, unsigned b)
{
	struct sockaddr_in sa;

	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(0x7f000000u | (a << 8) | b);
	assert_int_equal(ws_addr_key((struct sockaddr *)&sa, sizeof sa, key), 0);
}

static void test_keys(void **state)
{
	struct sockaddr_in6 s6;
	struct sockaddr_un_like {
		sa_family_t family;
	} other = {AF_UNIX};
	unsigned char k[16], k2[16];

	(void)state;
	key4(k, 0, 1);
	memset(&s6, 0, sizeof s6);
	s6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &s6.sin6_addr);
	assert_int_equal(ws_addr_key((struct sockaddr *)&s6, sizeof s6, k2), 0);
	/* 127.0.0.1 over IPv4 and as a v4-mapped IPv6 address: one client. */
	assert_memory_equal(k, k2, 16);
	assert_int_equal(ws_addr_key((struct sockaddr *)&other, sizeof other, k), -EAFNOSUPPORT);
}

static void test_sessions_and_removal(void **state)
{
	struct ws_addr_table t;
	unsigned char k[16];
	struct ws_addr *e;
	unsigned i;

	(void)state;
	assert_int_equal(ws_addr_init(&t, 100), 0);
	for (i = 0; i < 100; i++) {
		key4(k, i / 256, i % 256);
		e = ws_addr_get(&t, k, 0);
		assert_non_null(e);
		e->sessions = (int)i + 1;
	}
	assert_int_equal(t.n, 100);
	/* Full, and every entry holds sessions: a new address is refused. */
	key4(k, 9, 9);
	assert_null(ws_addr_get(&t, k, 0));
	/* Every entry is still found with its own count after removals
	 * shuffle the probe runs. */
	for (i = 0; i < 100; i += 2) {
		key4(k, i / 256, i % 256);
		e = ws_addr_find(&t, k);
		assert_non_null(e);
		e->sessions = 0;
		ws_addr_put(&t, e, 0);
	}
	assert_int_equal(t.n, 50);
	for (i = 0; i < 100; i++) {
		key4(k, i / 256, i % 256);
		e = ws_addr_find(&t, k);
		if (i % 2 == 0) {
			assert_null(e);
		} else {
			assert_non_null(e);
			assert_int_equal(e->sessions, (int)i + 1);
		}
	}
	ws_addr_cleanup(&t);
}

static void test_signin_state_is_kept_until_refilled(void **state)
{
	struct ws_addr_table t;
	unsigned char k[16], k2[16];
	struct ws_addr *e;
	int i;

	(void)state;
	assert_int_equal(ws_addr_init(&t, 1), 0);
	key4(k, 0, 2);
	e = ws_addr_get(&t, k, 0);
	for (i = 0; i < 10; i++)
		assert_true(class_bucket_take(&e->signin, WS_ADDR_SIGNIN_RATE, WS_ADDR_SIGNIN_BURST,
					      0));
	assert_false(class_bucket_take(&e->signin, WS_ADDR_SIGNIN_RATE, WS_ADDR_SIGNIN_BURST, 0));
	/* An attacker's empty bucket is not forgotten by closing connections
	 * or by another address arriving while it refills. */
	ws_addr_put(&t, e, 1000000);
	assert_non_null(ws_addr_find(&t, k));
	key4(k2, 0, 3);
	assert_null(ws_addr_get(&t, k2, 5000000));
	/* Once refilled it carries no state, and its slot is reused. */
	assert_non_null(ws_addr_get(&t, k2, 10000000));
	assert_null(ws_addr_find(&t, k));
	ws_addr_cleanup(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_sessions_and_removal),
		cmocka_unit_test(test_signin_state_is_kept_until_refilled),
	};

	return cmocka_run_group_tests_name("ws_addr", tests, NULL, NULL);
}
