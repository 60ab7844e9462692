/* test_framing.c: the framing codec: every split of an encoded stream, both header formats, bad headers. */
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#include "framing/framing.h"

#define N_MSG 4

static const size_t sizes[N_MSG] = {0, 1, 300, 17};

/* Encode N_MSG messages (body k is filled with 'a' + k) into one stream. */
static uint8_t *stream(enum frm_fmt fmt, size_t *len)
{
	uint8_t *s = NULL;
	size_t n = 0, k;

	for (k = 0; k < N_MSG; k++) {
		uint8_t body[300];
		size_t fl;
		uint32_t hl;
		uint8_t *f;

		memset(body, 'a' + (int)k, sizeof body);
		f = frm_encode(fmt, (long long)k, body, sizes[k], &fl, &hl);
		assert_non_null(f);
		s = realloc(s, n + fl);
		assert_non_null(s);
		memcpy(s + n, f, fl);
		n += fl;
		free(f);
	}
	*len = n;
	return s;
}

/* Feed s in pieces: [0, cut1), [cut1, cut2), [cut2, len); step 1 feeds byte by byte. */
static void decode_all(enum frm_fmt fmt, const uint8_t *s, size_t len, size_t cut1, size_t cut2,
		       int bytewise)
{
	struct frm_dec d;
	size_t bounds[4] = {0, cut1, cut2, len}, seen = 0, p;
	int part;

	frm_dec_init(&d, fmt, 0, 0);
	for (part = 0; part < 3; part++) {
		size_t a = bounds[part], b = bounds[part + 1];

		for (p = a; p < b;) {
			size_t end = bytewise ? p + 1 : b, used;
			struct frm_msg m;
			int rc = frm_dec_feed(&d, s + p, end - p, &used, &m);

			assert_true(rc >= 0);
			p += used;
			if (rc == 1) {
				size_t i;

				assert_true(seen < N_MSG);
				assert_int_equal(m.index, (long long)seen);
				assert_int_equal(m.total_size, sizes[seen]);
				for (i = 0; i < sizes[seen]; i++)
					assert_int_equal(m.body[i], 'a' + (int)seen);
				seen++;
				frm_msg_free(&m);
			} else {
				assert_int_equal(p, end);
			}
		}
	}
	assert_int_equal(seen, N_MSG);
	assert_int_equal(frm_dec_finish(&d), 0);
	assert_int_equal(d.consumed, len);
	frm_dec_free(&d);
}

static void every_split_decodes(void **state)
{
	enum frm_fmt fmt;

	for (fmt = FRM_NET; fmt <= FRM_NATIVE; fmt++) {
		size_t len, a, b;
		uint8_t *s = stream(fmt, &len);

		decode_all(fmt, s, len, len, len, 1); /* byte at a time */
		decode_all(fmt, s, len, len, len, 0); /* all at once */
		for (a = 0; a <= len; a++)
			decode_all(fmt, s, len, a, len, 0);
		for (a = 0; a <= len; a += 7)
			for (b = a; b <= len; b += 5)
				decode_all(fmt, s, len, a, b, 0);
		free(s);
	}
}

static void prefix_formats(void **state)
{
	uint8_t p[4];

	frm_put_prefix(FRM_NET, 30, p);
	assert_memory_equal(p, "\x00\x00\x00\x1e", 4);
	assert_int_equal(frm_get_prefix(FRM_NET, p), 30);
	frm_put_prefix(FRM_NATIVE, 30, p);
	assert_memory_equal(p, "\x1e\x00\x00\x00", 4);
	assert_int_equal(frm_get_prefix(FRM_NATIVE, p), 30);
	/* What "!I" reads from the bytes "i" wrote. */
	assert_int_equal(frm_get_prefix(FRM_NET, p), 0x1e000000);
	assert_int_equal(frm_get_prefix(FRM_NATIVE, (const uint8_t *)"\xff\xff\xff\xff"), -1);
	assert_string_equal(frm_fmt_name(FRM_NET), "!I");
	assert_string_equal(frm_fmt_name(FRM_NATIVE), "i");
}

/* Feed bytes one at a time; return the decoder's error (or NONE). */
static enum frm_err feed_err(enum frm_fmt fmt, const void *bytes, size_t len, size_t max_body,
			     size_t *fed)
{
	struct frm_dec d;
	const uint8_t *b = bytes;
	enum frm_err e = FRM_E_NONE;
	size_t i;

	frm_dec_init(&d, fmt, 64, max_body);
	for (i = 0; i < len; i++) {
		size_t used;
		struct frm_msg m;
		int rc = frm_dec_feed(&d, b + i, 1, &used, &m);

		if (rc < 0) {
			e = d.err;
			assert_true(d.errmsg[0] != '\0');
			/* Every later call fails too. */
			assert_int_equal(frm_dec_feed(&d, b, 1, &used, &m), -1);
			break;
		}
		if (rc == 1)
			frm_msg_free(&m);
	}
	if (e == FRM_E_NONE && frm_dec_finish(&d) < 0)
		e = d.err;
	*fed = i;
	frm_dec_free(&d);
	return e;
}

static void bad_headers_are_errors(void **state)
{
	size_t fed, len;
	uint32_t hl;
	uint8_t *f;

	/* Mismatch: "i" on the wire, "!I" in the reader: 0x1e000000 is refused
	 * right after the 4th byte, before anything is buffered. */
	f = frm_encode(FRM_NATIVE, 0, (const uint8_t *)"hello", 5, &len, &hl);
	assert_int_equal(feed_err(FRM_NET, f, len, 0, &fed), FRM_E_HDR_TOO_LONG);
	assert_int_equal(fed, 3);
	free(f);
	/* The other mismatch: "!I" read as "i" is 0x1e000000 too. */
	f = frm_encode(FRM_NET, 0, (const uint8_t *)"hello", 5, &len, &hl);
	assert_int_equal(feed_err(FRM_NATIVE, f, len, 0, &fed), FRM_E_HDR_TOO_LONG);
	/* Truncated: every proper prefix of a message. */
	{
		size_t cut;
		for (cut = 1; cut < len; cut++)
			assert_int_equal(feed_err(FRM_NET, f, cut, 0, &fed), FRM_E_TRUNCATED);
		assert_int_equal(feed_err(FRM_NET, f, len, 0, &fed), FRM_E_NONE);
	}
	/* A body above the maximum is refused at the header. */
	assert_int_equal(feed_err(FRM_NET, f, len, 4, &fed), FRM_E_BODY_TOO_LONG);
	free(f);
	assert_int_equal(feed_err(FRM_NATIVE, "\xfe\xff\xff\xff", 4, 0, &fed), FRM_E_HDR_NEGATIVE);
	assert_int_equal(feed_err(FRM_NET, "\0\0\0\0", 4, 0, &fed), FRM_E_HDR_EMPTY);
	assert_int_equal(feed_err(FRM_NET, "\0\0\0\x03[1]", 7, 0, &fed), FRM_E_HDR_JSON);
	assert_int_equal(feed_err(FRM_NET, "\0\0\0\x03{x}", 7, 0, &fed), FRM_E_HDR_JSON);
	assert_int_equal(feed_err(FRM_NET, "\0\0\0\x02{}", 6, 0, &fed), FRM_E_NO_TOTAL_SIZE);
	assert_int_equal(feed_err(FRM_NET, "\0\0\0\x11{\"total_size\":-1}", 21, 0, &fed),
			 FRM_E_NO_TOTAL_SIZE);
	assert_int_equal(feed_err(FRM_NET, "\0\0\0\x10{\"total_size\":2}ab", 22, 0, &fed),
			 FRM_E_NONE);
	assert_string_equal(frm_err_name(FRM_E_HDR_TOO_LONG), "header_too_long");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_split_decodes),
		cmocka_unit_test(prefix_formats),
		cmocka_unit_test(bad_headers_are_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
