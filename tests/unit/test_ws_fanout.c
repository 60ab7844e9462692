/* test_ws_fanout.c: the class fan-out's frame header (RFC 6455 5.2) and the frame a reader at a ring position is sent (one entry, or a JSON array when behind). */
#include "unit.h"

#include <string.h>

#include "ws_int.h"
#include "ws_mask.h"

static void test_header_lengths(void **state)
{
	static const struct {
		uint64_t len;
		size_t n;
		unsigned char bytes[10];
	} cases[] = {
		{0, 2, {0x81, 0x00}},
		{125, 2, {0x81, 125}},
		{126, 4, {0x81, 126, 0x00, 126}},
		{200, 4, {0x81, 126, 0x00, 200}},
		{65535, 4, {0x81, 126, 0xff, 0xff}},
		{65536, 10, {0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
		{0x0102030405ULL, 10, {0x81, 127, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05}},
	};
	unsigned char out[WS_FRAME_HEADER_MAX];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(out, 0xee, sizeof out);
		n = ws_frame_header(out, cases[i].len);
		assert_int_equal(n, cases[i].n);
		assert_memory_equal(out, cases[i].bytes, n);
	}
}

/* An independent reader of frame headers (the client-frame follower of
 * ws_mask.c) takes each header and its payload as exactly one frame: after
 * it, a masked frame is read as a frame of its own. */
static void test_header_read_back(void **state)
{
	static unsigned char buf[70000 + 64];
	static const uint64_t lens[] = {0, 1, 125, 126, 65535, 65536};
	static const unsigned char masked[] = {0x81, 0x81, 1, 2, 3, 4, 'x' ^ 1};
	static const char upgrade[] = "GET / HTTP/1.1\r\n\r\n";
	struct ws_mask_parser p;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		n = ws_frame_header(buf, lens[i]);
		/* Payload bytes that look like headers must be skipped. */
		memset(buf + n, 0x81, (size_t)lens[i]);
		memcpy(buf + n + lens[i], masked, sizeof masked);
		ws_mask_parser_init(&p);
		ws_mask_feed(&p, (const unsigned char *)upgrade, sizeof upgrade - 1);
		ws_mask_feed(&p, buf, n + (size_t)lens[i]);
		assert_int_equal(p.state, 1); /* WSM_OPCODE: at a frame boundary */
		p.unmasked = 0;               /* ours is unmasked, as a server's must be */
		ws_mask_feed(&p, masked, sizeof masked);
		assert_int_equal(p.state, 1);
		assert_int_equal(p.unmasked, 0);
	}
}

static void push(struct ws_class *c, const char *text)
{
	assert_int_equal(class_ring_push(&c->ring, text, strlen(text)), 0);
}

static void test_next_single_and_batch(void **state)
{
	static struct ws_class c;
	static unsigned char batch[WS_BATCH_BYTES];
	const unsigned char *p;
	size_t len;
	uint64_t end;

	(void)state;
	memset(&c, 0, sizeof c);
	/* Two entries at most: a third drops the first. */
	assert_int_equal(class_ring_init(&c.ring, 2, 1 << 20, LWS_PRE), 0);
	assert_null(ws_class_next(&c, 0, batch, &len, &end));
	push(&c, "{\"seq\":0}");
	/* One entry: the ring's own copy, with LWS_PRE bytes of headroom. */
	p = ws_class_next(&c, 0, batch, &len, &end);
	assert_non_null(p);
	assert_ptr_not_equal(p, batch);
	assert_int_equal(len, 9);
	assert_memory_equal(p, "{\"seq\":0}", 9);
	assert_int_equal(end, 1);
	assert_null(ws_class_next(&c, 1, batch, &len, &end));
	/* A reader two behind is sent both as one JSON array. */
	push(&c, "{\"seq\":1}");
	p = ws_class_next(&c, 0, batch, &len, &end);
	assert_ptr_equal(p, batch);
	assert_int_equal(len, 21);
	assert_memory_equal(p, "[{\"seq\":0},{\"seq\":1}]", 21);
	assert_int_equal(end, 2);
	/* Below the tail: nothing (the reader must resync). */
	push(&c, "{\"seq\":2}");
	assert_int_equal(c.ring.tail, 1);
	assert_null(ws_class_next(&c, 0, batch, &len, &end));
	p = ws_class_next(&c, 1, batch, &len, &end);
	assert_int_equal(len, 21);
	assert_memory_equal(p, "[{\"seq\":1},{\"seq\":2}]", 21);
	assert_int_equal(end, 3);
	class_ring_cleanup(&c.ring);
}

/* A batch stops before the entry that would pass WS_BATCH_BYTES; an entry
 * too large to share a batch goes alone. */
static void test_next_batch_limit(void **state)
{
	static struct ws_class c;
	static unsigned char batch[WS_BATCH_BYTES];
	static char big[WS_BATCH_BYTES];
	const unsigned char *p;
	size_t len, each = WS_BATCH_BYTES / 4;
	uint64_t end;
	int i;

	(void)state;
	memset(&c, 0, sizeof c);
	assert_int_equal(class_ring_init(&c.ring, 16, 1 << 20, LWS_PRE), 0);
	/* Entries of each - 1 bytes: three fit with '[', two ',' and ']',
	 * four do not (4 * (each - 1) + 5 > WS_BATCH_BYTES). */
	memset(big, 'x', each - 1);
	big[each - 1] = '\0';
	for (i = 0; i < 5; i++)
		push(&c, big);
	p = ws_class_next(&c, 0, batch, &len, &end);
	assert_ptr_equal(p, batch);
	assert_int_equal(end, 3);
	assert_int_equal(len, 3 * (each - 1) + 4);
	assert_true(len <= WS_BATCH_BYTES);
	assert_int_equal(batch[0], '[');
	assert_int_equal(batch[len - 1], ']');
	/* The last two: 2 * (each - 1) + 3 fits. */
	p = ws_class_next(&c, 3, batch, &len, &end);
	assert_ptr_equal(p, batch);
	assert_int_equal(end, 5);
	/* One that cannot share a batch with the next goes alone. */
	memset(big, 'y', WS_BATCH_BYTES - 10);
	big[WS_BATCH_BYTES - 10] = '\0';
	push(&c, big);
	p = ws_class_next(&c, 4, batch, &len, &end);
	assert_ptr_not_equal(p, batch);
	assert_int_equal(len, each - 1);
	assert_int_equal(end, 5);
	class_ring_cleanup(&c.ring);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_lengths),
		cmocka_unit_test(test_header_read_back),
		cmocka_unit_test(test_next_single_and_batch),
		cmocka_unit_test(test_next_batch_limit),
	};

	return cmocka_run_group_tests_name("ws_fanout", tests, NULL, NULL);
}
