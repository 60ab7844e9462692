/* test_frame.c: the wire's frame decoder and summaries: golden frames, truncated and invalid ones. */
#include "unit.h"

#include <string.h>

#include "net/frame.h"

static const uint8_t macs[12] = {0x02, 0x73, 0x6c, 0, 1, 2, 0x02, 0x73, 0x6c, 0, 1, 1};

/* Ethernet + IPv4 header (no options) into f; returns the offset after it. */
static size_t ipv4(uint8_t *f, uint8_t proto, uint16_t total, uint16_t id, uint16_t flags_off)
{
	memcpy(f, macs, 12);
	f[12] = 0x08;
	f[13] = 0x00;
	f[14] = 0x45;
	f[15] = 0;
	f[16] = (uint8_t)(total >> 8);
	f[17] = (uint8_t)total;
	f[18] = (uint8_t)(id >> 8);
	f[19] = (uint8_t)id;
	f[20] = (uint8_t)(flags_off >> 8);
	f[21] = (uint8_t)flags_off;
	f[22] = 64;
	f[23] = proto;
	f[24] = f[25] = 0;
	f[26] = 198, f[27] = 18, f[28] = 0, f[29] = 1;
	f[30] = 198, f[31] = 18, f[32] = 0, f[33] = 2;
	return 34;
}

static void udp_probe_is_summarised(void **state)
{
	uint8_t f[128] = {0};
	size_t o = ipv4(f, 17, 20 + 8 + 20, 7, 0x4000);
	struct frame_info fi;
	char s[200];

	f[o] = 0x9c, f[o + 1] = 0x40;     /* 40000 */
	f[o + 2] = 0x13, f[o + 3] = 0x88; /* 5000 */
	f[o + 4] = 0, f[o + 5] = 28;
	memcpy(f + o + 8, "seq=3 abcdefghijklmn", 20);
	assert_int_equal(frame_parse(f, o + 28, &fi), FRAME_OK);
	assert_true(fi.is_ipv4 && fi.has_l4 && fi.dont_frag);
	assert_int_equal(fi.sport, 40000);
	assert_int_equal(fi.dport, 5000);
	assert_int_equal(fi.payload_len, 20);
	assert_memory_equal(fi.payload, "seq=3 ", 6);
	frame_summary(&fi, o + 28, s, sizeof s);
	assert_string_equal(s, "UDP 198.18.0.1:40000 → 198.18.0.2:5000 len 20");
	assert_string_equal(frame_proto_name(&fi), "UDP");
	/* Ethernet pads short frames: bytes past the IP total length are ignored. */
	assert_int_equal(frame_parse(f, 64, &fi), FRAME_OK);
	assert_int_equal(fi.payload_len, 20);
}

static void fragments_are_summarised(void **state)
{
	uint8_t f[128] = {0};
	size_t o = ipv4(f, 17, 20 + 16, 0x1234, 0x2000 | (1480 / 8));
	struct frame_info fi;
	char s[200];

	assert_int_equal(frame_parse(f, o + 16, &fi), FRAME_OK);
	assert_int_equal(fi.frag_off, 1480);
	assert_true(fi.more_frags);
	assert_false(fi.has_l4);
	frame_summary(&fi, o + 16, s, sizeof s);
	assert_string_equal(s, "IPv4 198.18.0.1 → 198.18.0.2 proto 17 len 16, IP fragment id 4660 "
			       "offset 1480 +MF");
	assert_string_equal(frame_proto_name(&fi), "IPv4");
}

static void tcp_syn_ack_is_summarised(void **state)
{
	uint8_t f[128] = {0};
	size_t o = ipv4(f, 6, 20 + 24, 1, 0x4000);
	struct frame_info fi;
	char s[200];

	f[o] = 0x13, f[o + 1] = 0x88;
	f[o + 2] = 0x9c, f[o + 3] = 0x40;
	f[o + 7] = 100; /* seq 100 */
	f[o + 11] = 1;  /* ack 1 */
	f[o + 12] = 6 << 4;
	f[o + 13] = 0x12; /* SYN ACK */
	f[o + 14] = 0xfa, f[o + 15] = 0xf0;
	assert_int_equal(frame_parse(f, o + 24, &fi), FRAME_OK);
	frame_summary(&fi, o + 24, s, sizeof s);
	assert_string_equal(s, "TCP 198.18.0.1:5000 → 198.18.0.2:40000 [S.] seq 100 ack 1 win "
			       "64240 len 0");
}

static void arp_is_summarised(void **state)
{
	uint8_t f[42] = {0};
	struct frame_info fi;
	char s[200];
	static const uint8_t arp[28] = {0, 1, 8, 0, 6, 4, 0, 1, 0x02, 0x73, 0x6c, 0, 1, 1,
					198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2};

	memcpy(f, macs, 12);
	f[12] = 0x08;
	f[13] = 0x06;
	memcpy(f + 14, arp, sizeof arp);
	assert_int_equal(frame_parse(f, sizeof f, &fi), FRAME_OK);
	frame_summary(&fi, sizeof f, s, sizeof s);
	assert_string_equal(s, "ARP who-has 198.18.0.2 tell 198.18.0.1");
	f[21] = 2;
	frame_parse(f, sizeof f, &fi);
	frame_summary(&fi, sizeof f, s, sizeof s);
	assert_string_equal(s, "ARP 198.18.0.1 is-at 02:73:6c:00:01:01");
}

static void bad_frames_are_a_status(void **state)
{
	uint8_t f[128] = {0};
	size_t o = ipv4(f, 17, 20 + 8, 1, 0);
	struct frame_info fi;
	char s[200];

	assert_int_equal(frame_parse(f, 10, &fi), FRAME_TRUNCATED);
	assert_int_equal(frame_parse(f, 20, &fi), FRAME_TRUNCATED); /* half an IP header */
	assert_int_equal(frame_parse(f, o + 4, &fi), FRAME_TRUNCATED); /* total length past the end */
	f[14] = 0x44;                                                  /* IHL 4 */
	assert_int_equal(frame_parse(f, o + 8, &fi), FRAME_INVALID);
	f[14] = 0x45;
	f[17] = 10; /* total length shorter than the header */
	assert_int_equal(frame_parse(f, o + 8, &fi), FRAME_INVALID);
	f[17] = 28;
	f[o + 5] = 4; /* UDP length below its own header */
	assert_int_equal(frame_parse(f, o + 8, &fi), FRAME_INVALID);
	f[12] = 0x86;
	f[13] = 0xdd;
	assert_int_equal(frame_parse(f, o + 8, &fi), FRAME_UNSUPPORTED);
	frame_summary(&fi, o + 8, s, sizeof s);
	assert_string_equal(s, "IPv6 frame, ethertype 0x86dd, 42 bytes");
	/* A tiny output buffer is cut, never overrun. */
	assert_int_equal(frame_summary(&fi, o + 8, s, 5), 4);
	assert_string_equal(s, "IPv6");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(udp_probe_is_summarised),
		cmocka_unit_test(fragments_are_summarised),
		cmocka_unit_test(tcp_syn_ack_is_summarised),
		cmocka_unit_test(arp_is_summarised),
		cmocka_unit_test(bad_frames_are_a_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
