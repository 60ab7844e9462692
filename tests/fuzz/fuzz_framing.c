/* fuzz_framing.c: libFuzzer target for the framing codec (labs/framing): any bytes, any chunking, round trips. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "framing/framing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small limits so that bodies and headers near them are reachable. */
#define MAX_HDR 256
#define MAX_BODY 4096

struct outcome {
	int msgs;
	int rc;              /* 0, or -1 after an error */
	enum frm_err err;
	uint64_t consumed;
	uint64_t body_sum;   /* a digest of every body and index, to compare runs */
};

/* Abort (a finding) when a decoded message breaks the codec's promises. */
static void check_msg(const struct frm_msg *m)
{
	uint8_t *frame, *again;
	size_t flen, used = 0;
	uint32_t hlen;
	struct frm_dec d;
	struct frm_msg back;
	int rc;

	if (m->hdr_len == 0 || m->hdr_len > MAX_HDR || m->total_size > MAX_BODY)
		abort();
	if (!m->hdr || strlen(m->hdr) > m->hdr_len)
		abort();
	if (m->total_size > 0 && !m->body)
		abort();
	/* What we encode, we decode to the same body and index. */
	frame = frm_encode(FRM_NET, m->index, m->body, (size_t)m->total_size, &flen, &hlen);
	if (!frame)
		return;
	frm_dec_init(&d, FRM_NET, 0, 0);
	rc = frm_dec_feed(&d, frame, flen, &used, &back);
	if (rc != 1 || used != flen || back.total_size != m->total_size ||
	    back.index != m->index || back.hdr_len != hlen ||
	    (m->total_size && memcmp(back.body, m->body, (size_t)m->total_size)))
		abort();
	again = frame;
	frm_msg_free(&back);
	frm_dec_free(&d);
	free(again);
}

/* Decode data[0..size) fed in pieces of chunk bytes (0: all at once). */
static void decode(enum frm_fmt fmt, const uint8_t *data, size_t size, size_t chunk,
		   struct outcome *o)
{
	struct frm_dec d;
	size_t off = 0;

	memset(o, 0, sizeof *o);
	frm_dec_init(&d, fmt, MAX_HDR, MAX_BODY);
	while (off < size) {
		size_t n = chunk && size - off > chunk ? chunk : size - off;
		size_t used = 0;
		struct frm_msg m;
		int rc = frm_dec_feed(&d, data + off, n, &used, &m);

		if (used > n)
			abort();
		off += used;
		if (rc < 0) {
			o->rc = -1;
			o->err = d.err;
			if (d.err == FRM_E_NONE || d.state != FRM_S_ERROR)
				abort();
			break;
		}
		if (rc == 1) {
			size_t i;
			o->msgs++;
			check_msg(&m);
			o->body_sum = o->body_sum * 31 + (uint64_t)m.index;
			for (i = 0; i < m.total_size; i++)
				o->body_sum = o->body_sum * 131 + m.body[i];
			frm_msg_free(&m);
		} else if (used == 0) {
			abort(); /* no progress and no message: the caller would spin */
		}
	}
	o->consumed = d.consumed;
	if (o->rc == 0)
		(void)frm_dec_finish(&d);
	frm_dec_free(&d);
}

/* The first byte: the prefix format (bit 0) and the piece size (the rest,
 * 0 meaning everything at once); the rest is the stream. The same stream fed
 * whole, in those pieces and one byte at a time must decode the same way. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole, pieces, bytes;
	enum frm_fmt fmt;

	if (size < 1)
		return 0;
	fmt = (data[0] & 1) ? FRM_NATIVE : FRM_NET;
	decode(fmt, data + 1, size - 1, 0, &whole);
	decode(fmt, data + 1, size - 1, data[0] >> 1, &pieces);
	decode(fmt, data + 1, size - 1, 1, &bytes);
	if (memcmp(&whole, &pieces, sizeof whole) || memcmp(&whole, &bytes, sizeof whole))
		abort();
	return 0;
}
