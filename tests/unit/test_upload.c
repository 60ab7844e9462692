/* test_upload.c: the base64 decoder for captures uploaded with a run (runs_base64_decode). */
#include "unit.h"

#include <errno.h>
#include <string.h>

#include "runs.h"

static void decodes_with_and_without_padding(void **state)
{
	uint8_t out[16];

	assert_int_equal(runs_base64_decode("", out, sizeof out), 0);
	assert_int_equal(runs_base64_decode("aGk=", out, sizeof out), 2);
	assert_memory_equal(out, "hi", 2);
	assert_int_equal(runs_base64_decode("aGV5", out, sizeof out), 3);
	assert_memory_equal(out, "hey", 3);
	assert_int_equal(runs_base64_decode("YQ==", out, sizeof out), 1);
	assert_int_equal(out[0], 'a');
	/* Every byte value survives (a pcap is binary). */
	assert_int_equal(runs_base64_decode("AP+A", out, sizeof out), 3);
	assert_int_equal(out[0], 0x00);
	assert_int_equal(out[1], 0xff);
	assert_int_equal(out[2], 0x80);
}

static void refuses_bad_input(void **state)
{
	uint8_t out[16];

	assert_int_equal(runs_base64_decode("abc", out, sizeof out), -EINVAL);    /* length */
	assert_int_equal(runs_base64_decode("ab!d", out, sizeof out), -EINVAL);   /* alphabet */
	assert_int_equal(runs_base64_decode("a=bc", out, sizeof out), -EINVAL);   /* padding inside */
	assert_int_equal(runs_base64_decode("a===", out, sizeof out), -EINVAL);   /* three pads */
	assert_int_equal(runs_base64_decode("ab=c", out, sizeof out), -EINVAL);
	assert_int_equal(runs_base64_decode("aGk=aGk=", out, sizeof out), -EINVAL);
}

static void stops_at_capacity(void **state)
{
	uint8_t out[2];

	assert_int_equal(runs_base64_decode("aGV5", out, sizeof out), -E2BIG);
	assert_int_equal(runs_base64_decode("aGk=", out, sizeof out), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(decodes_with_and_without_padding),
		cmocka_unit_test(refuses_bad_input),
		cmocka_unit_test(stops_at_capacity),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
