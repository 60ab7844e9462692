/* test_ws_mask.c: following WebSocket client frames to notice unmasked ones (RFC 6455 5.1). */
#include "unit.h"

#include <string.h>

#include "ws_mask.h"

static const char upgrade[] = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";

/* A client frame: FIN + text, the given payload length, masked or not. */
static size_t frame(unsigned char *out, size_t len, int masked)
{
	size_t n = 0, i;

	out[n++] = 0x81;
	if (len < 126) {
		out[n++] = (unsigned char)((masked ? 0x80 : 0) | len);
	} else if (len < 65536) {
		out[n++] = (unsigned char)((masked ? 0x80 : 0) | 126);
		out[n++] = (unsigned char)(len >> 8);
		out[n++] = (unsigned char)len;
	} else {
		out[n++] = (unsigned char)((masked ? 0x80 : 0) | 127);
		for (i = 0; i < 8; i++)
			out[n++] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	}
	if (masked)
		for (i = 0; i < 4; i++)
			out[n++] = 0x80; /* a key whose bytes look like a masked header */
	/* A payload that looks like unmasked frame headers must be skipped. */
	memset(out + n, 0x01, len);
	return n + len;
}

static void feed_bytewise(struct ws_mask_parser *p, const unsigned char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		ws_mask_feed(p, b + i, 1);
}

static void test_masked_frames_pass(void **state)
{
	static unsigned char buf[3 * 70000 + 64];
	struct ws_mask_parser whole, bytes;
	size_t n = 0;

	(void)state;
	n += frame(buf + n, 5, 1);
	n += frame(buf + n, 300, 1);
	n += frame(buf + n, 70000, 1);
	n += frame(buf + n, 0, 1);
	ws_mask_parser_init(&whole);
	ws_mask_feed(&whole, (const unsigned char *)upgrade, sizeof upgrade - 1);
	ws_mask_feed(&whole, buf, n);
	assert_int_equal(whole.unmasked, 0);
	ws_mask_parser_init(&bytes);
	feed_bytewise(&bytes, (const unsigned char *)upgrade, sizeof upgrade - 1);
	feed_bytewise(&bytes, buf, n);
	assert_int_equal(bytes.unmasked, 0);
}

static void test_unmasked_frame_is_noticed(void **state)
{
	static unsigned char buf[70000 + 64];
	struct ws_mask_parser p;
	size_t n = 0;

	(void)state;
	n += frame(buf + n, 300, 1);
	n += frame(buf + n, 4, 0);
	ws_mask_parser_init(&p);
	ws_mask_feed(&p, (const unsigned char *)upgrade, sizeof upgrade - 1);
	ws_mask_feed(&p, buf, frame(buf, 300, 1));
	assert_int_equal(p.unmasked, 0);
	ws_mask_feed(&p, buf, n);
	assert_int_equal(p.unmasked, 1);
	/* Pipelined right behind the upgrade request, in the same read. */
	ws_mask_parser_init(&p);
	memcpy(buf, upgrade, sizeof upgrade - 1);
	n = sizeof upgrade - 1 + frame(buf + sizeof upgrade - 1, 70000, 0);
	ws_mask_feed(&p, buf, n);
	assert_int_equal(p.unmasked, 1);
}

static void test_request_bytes_are_not_frames(void **state)
{
	struct ws_mask_parser p;
	static const char partial[] = "GET / HTTP/1.1\r\nX: \r\r\n\n\r\nY: 1\r\n";

	(void)state;
	ws_mask_parser_init(&p);
	feed_bytewise(&p, (const unsigned char *)partial, sizeof partial - 1);
	assert_int_equal(p.unmasked, 0);
	assert_int_equal(p.state, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_masked_frames_pass),
		cmocka_unit_test(test_unmasked_frame_is_noticed),
		cmocka_unit_test(test_request_bytes_are_not_frames),
	};

	return cmocka_run_group_tests_name("ws_mask", tests, NULL, NULL);
}
