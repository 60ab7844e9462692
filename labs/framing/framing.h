/* framing.h: length-prefixed framing (4-byte header length, JSON header, body): a pure byte-level codec. */
#ifndef SOCKLAB_FRAMING_H
#define SOCKLAB_FRAMING_H

#include <stddef.h>
#include <stdint.h>

/*
 * One framed message on a byte stream is
 *   [4 bytes: length L of the JSON header][L bytes: JSON header][body]
 * where the JSON header is an object carrying at least "total_size", the
 * body's length in bytes. The 4-byte prefix is written in one of two formats,
 * named by their Python struct codes:
 *   "!I"  unsigned 32-bit, network byte order (big-endian): the right practice;
 *   "i"   signed 32-bit, native order (little-endian on x86 and ARM): what a
 *         program that packs with struct.pack('i', n) really sends.
 *
 * The decoder is a state machine fed any number of bytes at a time (it does
 * no I/O). Every length is checked against its maximum before a byte of what
 * it announces is buffered, so a hostile or mismatched header is an error,
 * never a large allocation.
 */
enum frm_fmt { FRM_NET = 0, FRM_NATIVE = 1 };

#define FRM_PREFIX 4
#define FRM_MAX_HDR_DEFAULT 4096u
#define FRM_MAX_BODY_DEFAULT (1u << 20)

enum frm_state { FRM_S_PREFIX, FRM_S_HEADER, FRM_S_BODY, FRM_S_ERROR };

enum frm_err {
	FRM_E_NONE = 0,
	FRM_E_HDR_TOO_LONG,  /* the prefix announces a header longer than max_hdr */
	FRM_E_HDR_NEGATIVE,  /* format "i": a negative length */
	FRM_E_HDR_EMPTY,     /* a zero-length header */
	FRM_E_HDR_JSON,      /* the header is not a JSON object */
	FRM_E_NO_TOTAL_SIZE, /* no integer "total_size" >= 0 */
	FRM_E_BODY_TOO_LONG, /* total_size above max_body */
	FRM_E_TRUNCATED,     /* the stream ended inside a message */
};

struct frm_msg {
	uint8_t prefix[FRM_PREFIX]; /* the 4 prefix bytes as received */
	uint32_t hdr_len;           /* what they encode */
	char *hdr;                  /* the JSON header, NUL-terminated (hdr_len bytes) */
	uint64_t total_size;        /* from the header */
	long long index;            /* the header's "index", or -1 */
	uint8_t *body;              /* total_size bytes */
};

struct frm_dec {
	enum frm_fmt fmt;
	size_t max_hdr, max_body;
	enum frm_state state;
	size_t got;          /* bytes of the current part */
	struct frm_msg cur;  /* being assembled */
	enum frm_err err;
	int64_t bad_value;   /* the offending length of an error */
	char errmsg[200];
	uint64_t consumed;   /* stream bytes consumed so far */
};

/* Start a decoder (max 0: the defaults). */
void frm_dec_init(struct frm_dec *d, enum frm_fmt fmt, size_t max_hdr, size_t max_body);
/* Free what the decoder holds. */
void frm_dec_free(struct frm_dec *d);
/* Feed up to len bytes. Consumes bytes until one message is complete (returns
 * 1: *out now owns it, free with frm_msg_free), the input is used up (returns
 * 0) or an error (returns -1: d->err and d->errmsg say why; every later call
 * fails too). *used is how many bytes were consumed. */
int frm_dec_feed(struct frm_dec *d, const uint8_t *buf, size_t len, size_t *used,
		 struct frm_msg *out);
/* The stream ended: 0 when at a message boundary, else -1 (FRM_E_TRUNCATED). */
int frm_dec_finish(struct frm_dec *d);
void frm_msg_free(struct frm_msg *m);

/* Encode one message: the prefix in fmt, the header {"total_size":N,"index":I}
 * and the body. Returns the malloc'd frame and its length in *len, and the
 * JSON header's length in *hdr_len; NULL when out of memory. */
uint8_t *frm_encode(enum frm_fmt fmt, long long index, const uint8_t *body, size_t body_len,
		    size_t *len, uint32_t *hdr_len);
/* Write the prefix for n in fmt. */
void frm_put_prefix(enum frm_fmt fmt, uint32_t n, uint8_t out[FRM_PREFIX]);
/* Read a prefix in fmt; returns the value as a signed 64-bit number (format
 * "i" can be negative). */
int64_t frm_get_prefix(enum frm_fmt fmt, const uint8_t in[FRM_PREFIX]);
/* "!I" or "i". */
const char *frm_fmt_name(enum frm_fmt fmt);
/* A stable name for an error ("header_too_long", ...). */
const char *frm_err_name(enum frm_err e);

#endif
