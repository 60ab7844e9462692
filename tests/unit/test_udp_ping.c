/* test_udp_ping.c: udp-ping's payloads, their parser, RTT statistics, and the network parameters' rules. */
#include "unit.h"

#include <math.h>
#include <string.h>

#include "lab.h"
#include "tcp_echo.h"
#include "udp_ping.h"

static void payload_has_seq_and_exact_size(void **state)
{
	char b[64];

	assert_int_equal(ping_payload(b, 16, 7), 16);
	assert_memory_equal(b, "seq=7 abcdefghij", 16);
	ping_payload(b, 40, 123456);
	assert_memory_equal(b, "seq=123456 abcdefghijklmnopqrstuvwxyzabc", 40);
	assert_int_equal(ping_parse_seq((uint8_t *)b, 40), 123456);
}

static void parser_reads_upper_case_replies(void **state)
{
	char b[32];

	ping_payload(b, 20, 42);
	echo_transform(b, 20, ECHO_UPPER);
	assert_memory_equal(b, "SEQ=42 ABCDEFGHIJKLM", 20);
	assert_int_equal(ping_parse_seq((uint8_t *)b, 20), 42);
	assert_int_equal(ping_parse_seq((uint8_t *)"seq=9", 5), 9);
}

static void parser_rejects_other_bytes(void **state)
{
	assert_int_equal(ping_parse_seq((uint8_t *)"hello world", 11), -1);
	assert_int_equal(ping_parse_seq((uint8_t *)"seq= 1", 6), -1);
	assert_int_equal(ping_parse_seq((uint8_t *)"seq=1x", 6), -1);
	assert_int_equal(ping_parse_seq((uint8_t *)"seq=", 4), -1);
	assert_int_equal(ping_parse_seq((uint8_t *)"seq=12345678901 ", 16), -1);
	assert_int_equal(ping_parse_seq((uint8_t *)"", 0), -1);
}

static void sizes_and_fragments(void **state)
{
	assert_int_equal(ping_max_unfragmented(1500), 1472);
	assert_int_equal(ping_max_unfragmented(65536), PING_UDP_MAX);
	assert_int_equal(ping_fragments(1472, 1500), 1);
	assert_int_equal(ping_fragments(1473, 1500), 2);
	/* 3000 + 8 bytes of IP payload in 1480-byte pieces: 1480 + 1480 + 48. */
	assert_int_equal(ping_fragments(3000, 1500), 3);
	assert_int_equal(ping_fragments(65507, 1500), 45);
}

static void stats_are_pings(void **state)
{
	struct ping_stats s;

	memset(&s, 0, sizeof s);
	assert_true(ping_stats_avg(&s) == 0.0 && ping_stats_mdev(&s) == 0.0);
	ping_stats_add(&s, 100);
	ping_stats_add(&s, 200);
	ping_stats_add(&s, 300);
	ping_stats_add(&s, 400);
	assert_int_equal(s.min_us, 100);
	assert_int_equal(s.max_us, 400);
	assert_true(fabs(ping_stats_avg(&s) - 250.0) < 1e-9);
	/* sqrt(mean(x^2) - mean^2) = sqrt(75000 - 62500) */
	assert_true(fabs(ping_stats_mdev(&s) - sqrt(12500.0)) < 1e-6);
}

/* The error for params set as "k=v" strings, or "" when they are accepted. */
static const char *check(const char *lab, const char *const *kv, const char **param)
{
	static char err[512];
	struct lab_params p;
	int i;

	lab_params_init(&p, lab_find(lab));
	*param = NULL;
	for (i = 0; kv[i]; i++) {
		if (lab_param_set_kv(&p, kv[i], err, sizeof err) < 0)
			return err;
	}
	err[0] = '\0';
	lab_params_check(&p, param, err, sizeof err);
	return err;
}

static void network_rules_name_the_field(void **state)
{
	const char *param;
	const char *ok[] = {"network=two-hosts", "c2s_delay_ms=10", "c2s_jitter_ms=10", NULL};
	const char *jit[] = {"network=two-hosts", "s2c_delay_ms=5", "s2c_jitter_ms=6", NULL};
	const char *sum[] = {"network=two-hosts", "c2s_loss_pct=50", "c2s_dup_pct=30",
			     "c2s_reorder_pct=21", NULL};
	const char *lo[] = {"s2c_loss_pct=5", NULL};
	const char *trace[] = {"wire_trace=true", NULL};
	const char *loss[] = {"c2s_loss_pct=101", NULL};

	assert_string_equal(check("udp-ping", ok, &param), "");
	assert_string_equal(check("tcp-echo", ok, &param), "");
	assert_string_equal(check("udp-ping", jit, &param),
			    "parameter 's2c_jitter_ms': the jitter (6 ms) must not exceed the delay "
			    "s2c_delay_ms (5 ms): a frame cannot arrive before it was sent");
	assert_string_equal(param, "s2c_jitter_ms");
	check("tcp-echo", sum, &param);
	assert_string_equal(param, "c2s_loss_pct");
	assert_non_null(strstr(check("udp-ping", lo, &param), "need network=two-hosts"));
	assert_string_equal(param, "s2c_loss_pct");
	check("udp-ping", trace, &param);
	assert_string_equal(param, "wire_trace");
	assert_string_equal(check("udp-ping", loss, &param),
			    "parameter 'c2s_loss_pct': must be an integer from 0 to 100 % (got \"101\")");
}

static void udp_ping_rules_name_the_field(void **state)
{
	const char *param;
	const char *big[] = {"network=two-hosts", "size=1473", NULL};
	const char *big_ok[] = {"network=two-hosts", "size=1473", "fragment=true", NULL};
	const char *lo_big[] = {"size=65507", NULL};
	const char *frag_lo[] = {"fragment=true", NULL};
	const char *fast[] = {"interval_ms=9", NULL};
	const char *neg[] = {"count=-1", NULL};
	const char *long_run[] = {"count=10000", "interval_ms=1000", NULL};
	const char *byo[] = {"mode=server", "network=two-hosts", NULL};
	const char *bind2[] = {"network=two-hosts", "bind=127.0.0.1", NULL};

	assert_string_equal(check("udp-ping", big, &param),
			    "parameter 'size': at most 1472 bytes fit in one 1500-byte IP packet on "
			    "network=two-hosts (20 bytes of IPv4 header and 8 of UDP header); set "
			    "fragment=true to send 1473 bytes as IP fragments");
	assert_string_equal(param, "size");
	assert_string_equal(check("udp-ping", big_ok, &param), "");
	assert_string_equal(check("udp-ping", lo_big, &param), "");
	check("udp-ping", frag_lo, &param);
	assert_string_equal(param, "fragment");
	assert_string_equal(check("udp-ping", fast, &param),
			    "parameter 'interval_ms': must be an integer from 10 to 10000 ms (got \"9\")");
	assert_non_null(strstr(check("udp-ping", neg, &param), "parameter 'count': must be an integer from 1"));
	check("udp-ping", long_run, &param);
	assert_string_equal(param, "count");
	check("udp-ping", byo, &param);
	assert_string_equal(param, "network");
	check("udp-ping", bind2, &param);
	assert_string_equal(param, "bind");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(payload_has_seq_and_exact_size),
		cmocka_unit_test(parser_reads_upper_case_replies),
		cmocka_unit_test(parser_rejects_other_bytes),
		cmocka_unit_test(sizes_and_fragments),
		cmocka_unit_test(stats_are_pings),
		cmocka_unit_test(network_rules_name_the_field),
		cmocka_unit_test(udp_ping_rules_name_the_field),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
