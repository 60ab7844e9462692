/* test_echo.c: the tcp-echo lab's transform and message generator. */
#include "unit.h"

#include <string.h>

#include "tcp_echo.h"

static void upper_changes_only_ascii_letters(void **state)
{
	char buf[] = "hello, World 123 \xe4\xbd\xa0\xe5\xa5\xbd z";

	echo_transform(buf, strlen(buf), ECHO_UPPER);
	assert_string_equal(buf, "HELLO, WORLD 123 \xe4\xbd\xa0\xe5\xa5\xbd Z");
}

static void plain_echo_keeps_bytes(void **state)
{
	char buf[] = "MiXeD";

	echo_transform(buf, 5, ECHO_PLAIN);
	assert_string_equal(buf, "MiXeD");
}

static void transform_respects_length(void **state)
{
	char buf[] = "abcdef";

	echo_transform(buf, 3, ECHO_UPPER);
	assert_string_equal(buf, "ABCdef");
}

static void message_is_text_when_size_zero(void **state)
{
	char out[64];
	size_t n = echo_message(out, sizeof out, 1, 0, "hi there");

	assert_int_equal(n, 8);
	assert_memory_equal(out, "hi there", 8);
}

static void message_fills_exact_size(void **state)
{
	char out[64];
	size_t n = echo_message(out, sizeof out, 12, 20, "abc");

	assert_int_equal(n, 20);
	assert_memory_equal(out, "[12] abc abc abc abc", 20);
	n = echo_message(out, sizeof out, 3, 2, "abc");
	assert_int_equal(n, 2);
	assert_memory_equal(out, "[3", 2);
}

static void message_never_overflows(void **state)
{
	char out[8];

	assert_int_equal(echo_message(out, sizeof out, 1, 100, "abc"), 8);
	assert_int_equal(echo_message(out, sizeof out, 1, 0, "a long text"), 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(upper_changes_only_ascii_letters),
		cmocka_unit_test(plain_echo_keeps_bytes),
		cmocka_unit_test(transform_respects_length),
		cmocka_unit_test(message_is_text_when_size_zero),
		cmocka_unit_test(message_fills_exact_size),
		cmocka_unit_test(message_never_overflows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
