/* test_privs.c: file-capability parsing, the kernel's exec rules as socklab predicts them, names. */
#include "unit.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "privs.h"

#define LAB_CAPS (PRIVS_CAP(CAP_SYS_ADMIN) | PRIVS_CAP(CAP_NET_ADMIN) | PRIVS_CAP(CAP_NET_RAW))

/* Attribute values written by setcap(8) on this machine (revision 2). */
static const unsigned char lab_p[20] = {0x00, 0x00, 0x00, 0x02, 0x00, 0x30, 0x20, 0x00, 0x00, 0x00,
					0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
static const unsigned char raw_ep[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00,
					 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
/* cap_bpf (39) lives in the second word. */
static const unsigned char bpf_raw_ep[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00,
					     0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
					     0x00, 0x00, 0x00, 0x00};
/* Revision 3 (a namespaced file capability): revision 2 plus the root uid. */
static const unsigned char rev3_p[24] = {0x00, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00,
					 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
					 0x00, 0x00, 0x00, 0x00, 0xe8, 0x03, 0x00, 0x00};
/* Revision 1: one 32-bit word. */
static const unsigned char rev1_ep[12] = {0x01, 0x00, 0x00, 0x01, 0x00, 0x20, 0x00,
					  0x00, 0x00, 0x00, 0x00, 0x00};

static void parses_what_setcap_writes(void **state)
{
	uint64_t p = 0;
	int e = -1;

	(void)state;
	assert_int_equal(privs_parse_fcaps(lab_p, sizeof lab_p, &p, &e), 0);
	assert_int_equal(p, LAB_CAPS);
	assert_int_equal(e, 0);
	assert_int_equal(privs_parse_fcaps(raw_ep, sizeof raw_ep, &p, &e), 0);
	assert_int_equal(p, PRIVS_CAP(CAP_NET_RAW));
	assert_int_equal(e, 1);
	assert_int_equal(privs_parse_fcaps(bpf_raw_ep, sizeof bpf_raw_ep, &p, &e), 0);
	assert_int_equal(p, PRIVS_CAP(CAP_NET_RAW) | PRIVS_CAP(39));
	assert_int_equal(privs_parse_fcaps(rev3_p, sizeof rev3_p, &p, &e), 0);
	assert_int_equal(p, PRIVS_CAP(CAP_NET_RAW));
	assert_int_equal(e, 0);
	assert_int_equal(privs_parse_fcaps(rev1_ep, sizeof rev1_ep, &p, &e), 0);
	assert_int_equal(p, PRIVS_CAP(CAP_NET_RAW));
	assert_int_equal(e, 1);
}

static void rejects_malformed_values(void **state)
{
	unsigned char bad[24];
	uint64_t p;
	int e;

	(void)state;
	/* Too short, a length that does not match the revision, an unknown
	 * revision, unknown flag bits. */
	assert_int_equal(privs_parse_fcaps(lab_p, 3, &p, &e), -EINVAL);
	assert_int_equal(privs_parse_fcaps(lab_p, 12, &p, &e), -EINVAL);
	assert_int_equal(privs_parse_fcaps(rev3_p, 20, &p, &e), -EINVAL);
	memcpy(bad, lab_p, sizeof lab_p);
	bad[3] = 0x04;
	assert_int_equal(privs_parse_fcaps(bad, 20, &p, &e), -EINVAL);
	memcpy(bad, lab_p, sizeof lab_p);
	bad[0] = 0x02;
	assert_int_equal(privs_parse_fcaps(bad, 20, &p, &e), -EINVAL);
}

static void predicts_the_kernel(void **state)
{
	const uint64_t all = (PRIVS_CAP(41) - 1), no_raw = LAB_CAPS & ~PRIVS_CAP(CAP_NET_RAW);
	uint64_t g = 99;

	(void)state;
	/* Permitted-only file capabilities: whatever the bounding set allows. */
	assert_int_equal(privs_predict(LAB_CAPS, 0, LAB_CAPS, 0, 0, &g), 0);
	assert_int_equal(g, LAB_CAPS);
	assert_int_equal(privs_predict(LAB_CAPS, 0, no_raw, 0, 0, &g), 0);
	assert_int_equal(g, no_raw);
	assert_int_equal(privs_predict(LAB_CAPS, 0, 0, 0, 0, &g), 0);
	assert_int_equal(g, 0);
	/* With the effective bit, a missing one makes exec fail. */
	assert_int_equal(privs_predict(LAB_CAPS, 1, LAB_CAPS, 0, 0, &g), 0);
	assert_int_equal(g, LAB_CAPS);
	assert_int_equal(privs_predict(LAB_CAPS, 1, no_raw, 0, 0, &g), -EPERM);
	assert_int_equal(g, 0);
	/* no_new_privs ignores file capabilities; root receives the bounding set;
	 * the EPERM rule comes first for both. */
	assert_int_equal(privs_predict(LAB_CAPS, 0, no_raw, 1, 0, &g), 0);
	assert_int_equal(g, 0);
	assert_int_equal(privs_predict(0, 0, all, 0, 1, &g), 0);
	assert_int_equal(g, all);
	assert_int_equal(privs_predict(LAB_CAPS, 1, no_raw, 0, 1, &g), -EPERM);
	assert_int_equal(privs_predict(LAB_CAPS, 1, no_raw, 1, 0, &g), -EPERM);
	/* No file capabilities, not root: nothing. */
	assert_int_equal(privs_predict(0, 0, all, 0, 0, &g), 0);
	assert_int_equal(g, 0);
}

static void names_capabilities(void **state)
{
	char out[256];

	(void)state;
	privs_names(LAB_CAPS, out, sizeof out);
	assert_string_equal(out, "CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN");
	privs_names(0, out, sizeof out);
	assert_string_equal(out, "none");
	privs_names(PRIVS_CAP(40) | PRIVS_CAP(50), out, sizeof out);
	assert_string_equal(out, "CAP_CHECKPOINT_RESTORE, capability 50");
	/* Truncation stays a terminated string. */
	privs_names(LAB_CAPS, out, 10);
	assert_int_equal(strlen(out), 9);
	assert_string_equal(privs_cap_name(CAP_NET_RAW), "CAP_NET_RAW");
	assert_null(privs_cap_name(63));
	assert_int_equal(privs_lab_caps, LAB_CAPS);
}

/* A "CapXxx:" line of /proc/self/status, as the kernel prints it. */
static uint64_t status_caps(const char *field)
{
	char line[256];
	uint64_t v = 0;
	size_t n = strlen(field);
	FILE *f = fopen("/proc/self/status", "r");

	assert_non_null(f);
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, field, n) && line[n] == ':')
			v = strtoull(line + n + 1, NULL, 16);
	fclose(f);
	return v;
}

static void reads_this_process(void **state)
{
	char out[1024];

	(void)state;
	/* The sets socklab reads agree with what the kernel reports. */
	assert_int_equal(privs_bounding(), status_caps("CapBnd"));
	assert_int_equal(privs_effective(), status_caps("CapEff"));
	/* A binary without file capabilities: the description names it. */
	assert_int_equal(privs_describe_exe("/bin/sh", out, sizeof out), 0);
	assert_non_null(strstr(out, "lab runs: /bin/sh with "));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parses_what_setcap_writes),
		cmocka_unit_test(rejects_malformed_values),
		cmocka_unit_test(predicts_the_kernel),
		cmocka_unit_test(names_capabilities),
		cmocka_unit_test(reads_this_process),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
