/* test_class.c: classroom building blocks: codes, names, secret comparison, rate buckets, the fan-out ring. */
#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "class.h"

static void test_codes(void **state)
{
	char a[CLASS_CODE_LEN + 1], b[CLASS_CODE_LEN + 1], p[CLASS_CODE_LEN + 1];
	int i, k, differ = 0;

	(void)state;
	for (i = 0; i < 200; i++) {
		assert_int_equal(class_code_new(a), 0);
		assert_int_equal(strlen(a), CLASS_CODE_LEN);
		for (k = 0; k < CLASS_CODE_LEN; k++)
			assert_non_null(strchr(CLASS_CODE_ALPHABET, a[k]));
		/* No look-alikes ever. */
		assert_null(strpbrk(a, "01OIL"));
		assert_int_equal(class_code_parse(a, p), 0);
		assert_string_equal(p, a);
		assert_int_equal(class_code_new(b), 0);
		differ += strcmp(a, b) != 0;
	}
	assert_true(differ > 190);
	assert_int_equal(class_code_parse(" abc-def ", p), 0);
	assert_string_equal(p, "ABCDEF");
	assert_int_equal(class_code_parse("abc def", p), 0);
	assert_string_equal(p, "ABCDEF");
	assert_int_equal(class_code_parse("ABCDE", p), -EINVAL);
	assert_int_equal(class_code_parse("ABCDEFG", p), -EINVAL);
	assert_int_equal(class_code_parse("ABCDE0", p), -EINVAL);
	assert_int_equal(class_code_parse("AB-CDEF", p), -EINVAL);
	assert_int_equal(class_code_parse("ABC--DEF", p), -EINVAL);
	assert_int_equal(class_code_parse("ABC DE F", p), -EINVAL);
	assert_int_equal(class_code_parse("", p), -EINVAL);
}

static void test_names(void **state)
{
	char out[CLASS_NAME_BYTES + 1], err[128];
	char long_ascii[40], cjk[32 * 3 + 1];
	int i;

	(void)state;
	assert_int_equal(class_name_parse("  Ann Lee ", out, err, sizeof err), 0);
	assert_string_equal(out, "Ann Lee");
	for (i = 0; i < 32; i++)
		memcpy(cjk + 3 * i, "\xe5\xbc\xa0", 3); /* 张 */
	cjk[96] = '\0';
	assert_int_equal(class_name_parse(cjk, out, err, sizeof err), 0);
	memset(long_ascii, 'x', 33);
	long_ascii[33] = '\0';
	assert_int_equal(class_name_parse(long_ascii, out, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "1 to 32 characters (got 33)"));
	assert_int_equal(class_name_parse("", out, err, sizeof err), -EINVAL);
	assert_int_equal(class_name_parse("   ", out, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "empty"));
	assert_non_null(strstr(err, "1 to 32"));
	assert_int_equal(class_name_parse("a\tb", out, err, sizeof err), -EINVAL);
	assert_int_equal(class_name_parse("a\x7f", out, err, sizeof err), -EINVAL);
	assert_int_equal(class_name_parse("\xc0\xaf", out, err, sizeof err), -EINVAL); /* overlong */
	assert_int_equal(class_name_parse("\xed\xa0\x80", out, err, sizeof err), -EINVAL); /* surrogate */
	assert_int_equal(class_name_parse("a\xe2\x80\xae" "b", out, err, sizeof err), -EINVAL); /* RLO */
	assert_int_equal(class_name_parse("\xe5\xbc", out, err, sizeof err), -EINVAL); /* torn */
	assert_non_null(strstr(err, "control"));
	assert_non_null(strstr(err, "1 to 32"));
}

static void test_secret(void **state)
{
	(void)state;
	assert_true(class_secret_equal("correct-horse", "correct-horse"));
	assert_false(class_secret_equal("correct-horse", "correct-hors"));
	assert_false(class_secret_equal("correct-horse", "correct-horsee"));
	assert_false(class_secret_equal("correct-horse", "Correct-horse"));
	assert_false(class_secret_equal("correct-horse", ""));
	assert_false(class_secret_equal("", ""));
}

static void test_bucket(void **state)
{
	struct class_bucket b = {0};
	int i, ok = 0;

	(void)state;
	/* Burst of 4 at once, then 2 per second. */
	for (i = 0; i < 10; i++)
		ok += class_bucket_take(&b, 2, 4, 1000000);
	assert_int_equal(ok, 4);
	assert_false(class_bucket_take(&b, 2, 4, 1400000));
	assert_true(class_bucket_take(&b, 2, 4, 1500000));
	assert_false(class_bucket_take(&b, 2, 4, 1500000));
	/* A long pause refills to the burst, no more. */
	ok = 0;
	for (i = 0; i < 10; i++)
		ok += class_bucket_take(&b, 2, 4, 100000000);
	assert_int_equal(ok, 4);
	assert_false(class_bucket_ready(&b, 2, 4, 100000000));
	assert_true(class_bucket_ready(&b, 2, 4, 100500000));
	assert_true(class_bucket_ready(&b, 2, 4, 100500000)); /* ready takes nothing */
}

static void test_ring(void **state)
{
	struct class_ring r;
	const struct class_msg *m;
	char buf[32];
	uint64_t i;

	(void)state;
	assert_int_equal(class_ring_init(&r, 4, 1000, 16), 0);
	assert_null(class_ring_get(&r, 0));
	for (i = 0; i < 3; i++) {
		int n = snprintf(buf, sizeof buf, "m%llu", (unsigned long long)i);
		assert_int_equal(class_ring_push(&r, buf, (size_t)n), 0);
	}
	m = class_ring_get(&r, 1);
	assert_non_null(m);
	assert_int_equal(m->len, 2);
	assert_memory_equal(m->buf + 16, "m1", 2);
	assert_null(class_ring_get(&r, 3)); /* not there yet */
	/* Past the capacity the oldest go: a reader at 0 or 1 has lost them. */
	for (i = 3; i < 6; i++) {
		int n = snprintf(buf, sizeof buf, "m%llu", (unsigned long long)i);
		assert_int_equal(class_ring_push(&r, buf, (size_t)n), 0);
	}
	assert_int_equal(r.tail, 2);
	assert_int_equal(r.head, 6);
	assert_null(class_ring_get(&r, 1));
	assert_memory_equal(class_ring_get(&r, 5)->buf + 16, "m5", 2);
	/* The byte bound also drops the oldest. */
	{
		char big[600];
		memset(big, 'b', sizeof big);
		assert_int_equal(class_ring_push(&r, big, sizeof big), 0);
		assert_int_equal(class_ring_push(&r, big, sizeof big), 0);
		assert_int_equal(r.head - r.tail, 1);
		assert_true(r.bytes <= 1000);
		assert_int_equal(class_ring_push(&r, big, 1001), -E2BIG);
	}
	class_ring_clear(&r);
	assert_int_equal(r.tail, r.head);
	assert_int_equal(r.bytes, 0);
	class_ring_cleanup(&r);
}

/* An event line of a run is told from every other class message, and its
 * seq read; anything else (another run, a notice, a damaged line) is not. */
static void test_msg_event(void **state)
{
	static const char run[] = "0123456789abcdef";
	static const struct {
		const char *msg;
		int want;
		long long seq;
	} cases[] = {
		{"{\"v\":1,\"run\":\"0123456789abcdef\",\"seq\":0,\"t_us\":1}", 1, 0},
		{"{\"v\":1,\"run\":\"0123456789abcdef\",\"seq\":1234567,\"type\":\"x\"}", 1, 1234567},
		{"{\"v\":1,\"run\":\"0123456789abcdef\",\"seq\":42}", 1, 42},
		{"{\"v\":1,\"run\":\"0123456789abcdee\",\"seq\":1,\"t_us\":1}", 0, 0},
		{"{\"type\":\"class.run\",\"run\":\"0123456789abcdef\"}", 0, 0},
		{"{\"v\":1,\"run\":\"0123456789abcdef\",\"seq\":,\"t_us\":1}", 0, 0},
		{"{\"v\":1,\"run\":\"0123456789abcdef\",\"seq\":-1,\"t_us\":1}", 0, 0},
		{"{\"v\":1,\"run\":\"0123456789abcdef\",\"seq\":12", 0, 0}, /* cut short */
		{"{\"v\":1,\"run\":\"0123456789abcdef\",\"seq\":1234567890123456,\"t\":1}", 0, 0},
		{"{\"v\":1,\"run\":\"0123456789abcdef", 0, 0},
		{"", 0, 0},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		long long seq = -7;
		int got = class_msg_event((const unsigned char *)cases[i].msg, strlen(cases[i].msg),
					  run, &seq);
		if (got != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i, cases[i].msg, got, cases[i].want);
		assert_int_equal(seq, cases[i].want ? cases[i].seq : -7);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codes),   cmocka_unit_test(test_names),
		cmocka_unit_test(test_secret),  cmocka_unit_test(test_bucket),
		cmocka_unit_test(test_ring),    cmocka_unit_test(test_msg_event),
	};

	return cmocka_run_group_tests_name("class", tests, NULL, NULL);
}
