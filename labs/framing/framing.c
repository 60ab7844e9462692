/* framing.c: the length-prefixed framing codec (see framing.h). */
#include "framing/framing.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

void frm_put_prefix(enum frm_fmt fmt, uint32_t n, uint8_t out[FRM_PREFIX])
{
	if (fmt == FRM_NET) {
		out[0] = (uint8_t)(n >> 24);
		out[1] = (uint8_t)(n >> 16);
		out[2] = (uint8_t)(n >> 8);
		out[3] = (uint8_t)n;
	} else {
		out[0] = (uint8_t)n;
		out[1] = (uint8_t)(n >> 8);
		out[2] = (uint8_t)(n >> 16);
		out[3] = (uint8_t)(n >> 24);
	}
}

int64_t frm_get_prefix(enum frm_fmt fmt, const uint8_t in[FRM_PREFIX])
{
	uint32_t v;

	if (fmt == FRM_NET)
		return (int64_t)((uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 |
				 (uint32_t)in[2] << 8 | in[3]);
	v = (uint32_t)in[3] << 24 | (uint32_t)in[2] << 16 | (uint32_t)in[1] << 8 | in[0];
	return (int64_t)(int32_t)v;
}

const char *frm_fmt_name(enum frm_fmt fmt)
{
	return fmt == FRM_NET ? "!I" : "i";
}

const char *frm_err_name(enum frm_err e)
{
	switch (e) {
	case FRM_E_NONE: return "none";
	case FRM_E_HDR_TOO_LONG: return "header_too_long";
	case FRM_E_HDR_NEGATIVE: return "header_negative";
	case FRM_E_HDR_EMPTY: return "header_empty";
	case FRM_E_HDR_JSON: return "header_not_json";
	case FRM_E_NO_TOTAL_SIZE: return "no_total_size";
	case FRM_E_BODY_TOO_LONG: return "body_too_long";
	case FRM_E_TRUNCATED: return "truncated";
	}
	return "unknown";
}

void frm_dec_init(struct frm_dec *d, enum frm_fmt fmt, size_t max_hdr, size_t max_body)
{
	memset(d, 0, sizeof *d);
	d->fmt = fmt;
	d->max_hdr = max_hdr ? max_hdr : FRM_MAX_HDR_DEFAULT;
	d->max_body = max_body ? max_body : FRM_MAX_BODY_DEFAULT;
	d->state = FRM_S_PREFIX;
	d->cur.index = -1;
}

void frm_msg_free(struct frm_msg *m)
{
	free(m->hdr);
	free(m->body);
	m->hdr = NULL;
	m->body = NULL;
}

void frm_dec_free(struct frm_dec *d)
{
	frm_msg_free(&d->cur);
}

static int fail(struct frm_dec *d, enum frm_err e, int64_t value, const char *msg)
{
	d->state = FRM_S_ERROR;
	d->err = e;
	d->bad_value = value;
	snprintf(d->errmsg, sizeof d->errmsg, "%s", msg);
	frm_msg_free(&d->cur);
	return -1;
}

/* The header is complete: parse it and size the body. */
static int parse_header(struct frm_dec *d)
{
	json_error_t je;
	json_t *h = json_loadb(d->cur.hdr, d->cur.hdr_len, JSON_REJECT_DUPLICATES, &je);
	json_t *ts, *ix;
	char m[200];

	if (!h || !json_is_object(h)) {
		json_decref(h);
		return fail(d, FRM_E_HDR_JSON, d->cur.hdr_len, "the header is not a JSON object");
	}
	ts = json_object_get(h, "total_size");
	if (!json_is_integer(ts) || json_integer_value(ts) < 0) {
		json_decref(h);
		return fail(d, FRM_E_NO_TOTAL_SIZE, 0,
			    "the JSON header has no \"total_size\" (an integer >= 0)");
	}
	if ((uint64_t)json_integer_value(ts) > d->max_body) {
		int64_t v = json_integer_value(ts);
		json_decref(h);
		snprintf(m, sizeof m, "total_size %" PRId64 " is above the maximum body of %zu bytes",
			 v, d->max_body);
		return fail(d, FRM_E_BODY_TOO_LONG, v, m);
	}
	d->cur.total_size = (uint64_t)json_integer_value(ts);
	ix = json_object_get(h, "index");
	d->cur.index = json_is_integer(ix) ? json_integer_value(ix) : -1;
	json_decref(h);
	d->cur.body = malloc(d->cur.total_size ? d->cur.total_size : 1);
	if (!d->cur.body)
		return fail(d, FRM_E_BODY_TOO_LONG, (int64_t)d->cur.total_size, "out of memory");
	d->state = FRM_S_BODY;
	d->got = 0;
	return 0;
}

int frm_dec_feed(struct frm_dec *d, const uint8_t *buf, size_t len, size_t *used,
		 struct frm_msg *out)
{
	size_t i = 0;

	*used = 0;
	while (d->state != FRM_S_ERROR) {
		if (d->state == FRM_S_BODY && d->got == d->cur.total_size) {
			*out = d->cur;
			memset(&d->cur, 0, sizeof d->cur);
			d->cur.index = -1;
			d->state = FRM_S_PREFIX;
			d->got = 0;
			*used = i;
			d->consumed += i;
			return 1;
		}
		if (i == len)
			break;
		if (d->state == FRM_S_PREFIX) {
			int64_t v;
			char m[200];

			d->cur.prefix[d->got++] = buf[i++];
			if (d->got < FRM_PREFIX)
				continue;
			v = frm_get_prefix(d->fmt, d->cur.prefix);
			d->consumed += i;
			*used = i;
			if (v < 0) {
				snprintf(m, sizeof m, "the header length %" PRId64 " is negative", v);
				return fail(d, FRM_E_HDR_NEGATIVE, v, m);
			}
			if (v == 0)
				return fail(d, FRM_E_HDR_EMPTY, 0, "the header length is 0");
			if ((uint64_t)v > d->max_hdr) {
				snprintf(m, sizeof m,
					 "the header length %" PRId64 " is above the maximum of %zu bytes",
					 v, d->max_hdr);
				return fail(d, FRM_E_HDR_TOO_LONG, v, m);
			}
			d->consumed -= i;
			*used = 0;
			d->cur.hdr_len = (uint32_t)v;
			d->cur.hdr = malloc((size_t)v + 1);
			if (!d->cur.hdr)
				return fail(d, FRM_E_HDR_TOO_LONG, v, "out of memory");
			d->state = FRM_S_HEADER;
			d->got = 0;
		} else if (d->state == FRM_S_HEADER) {
			size_t n = d->cur.hdr_len - d->got;
			if (n > len - i)
				n = len - i;
			memcpy(d->cur.hdr + d->got, buf + i, n);
			d->got += n;
			i += n;
			if (d->got == d->cur.hdr_len) {
				d->cur.hdr[d->cur.hdr_len] = '\0';
				if (parse_header(d) < 0) {
					d->consumed += i;
					*used = i;
					return -1;
				}
			}
		} else {
			size_t n = (size_t)d->cur.total_size - d->got;
			if (n > len - i)
				n = len - i;
			memcpy(d->cur.body + d->got, buf + i, n);
			d->got += n;
			i += n;
		}
	}
	if (d->state == FRM_S_ERROR)
		return -1;
	*used = i;
	d->consumed += i;
	return 0;
}

int frm_dec_finish(struct frm_dec *d)
{
	char m[200];

	if (d->state == FRM_S_ERROR)
		return -1;
	if (d->state == FRM_S_PREFIX && d->got == 0)
		return 0;
	snprintf(m, sizeof m, "the stream ended inside a message (%s, %zu bytes of it received)",
		 d->state == FRM_S_PREFIX ? "in the 4-byte prefix"
		 : d->state == FRM_S_HEADER ? "in the JSON header" : "in the body", d->got);
	return fail(d, FRM_E_TRUNCATED, (int64_t)d->got, m);
}

uint8_t *frm_encode(enum frm_fmt fmt, long long index, const uint8_t *body, size_t body_len,
		    size_t *len, uint32_t *hdr_len)
{
	char hdr[96];
	int n = snprintf(hdr, sizeof hdr, "{\"total_size\":%zu,\"index\":%lld}", body_len, index);
	uint8_t *out;

	if (n < 0 || (size_t)n >= sizeof hdr)
		return NULL;
	out = malloc(FRM_PREFIX + (size_t)n + body_len);
	if (!out)
		return NULL;
	frm_put_prefix(fmt, (uint32_t)n, out);
	memcpy(out + FRM_PREFIX, hdr, (size_t)n);
	if (body_len)
		memcpy(out + FRM_PREFIX + n, body, body_len);
	*len = FRM_PREFIX + (size_t)n + body_len;
	*hdr_len = (uint32_t)n;
	return out;
}
