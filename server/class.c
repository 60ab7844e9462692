/* class.c: classroom mode building blocks: class codes, display names, secrets, rate buckets, the fan-out ring. */
#include "class.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

int class_code_new(char *out)
{
	static const char alphabet[] = CLASS_CODE_ALPHABET;
	const unsigned n = sizeof alphabet - 1;
	size_t i = 0;

	while (i < CLASS_CODE_LEN) {
		unsigned char b[16];
		ssize_t got = getrandom(b, sizeof b, 0);
		ssize_t k;
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* Rejection sampling keeps every symbol equally likely. */
		for (k = 0; k < got && i < CLASS_CODE_LEN; k++)
			if (b[k] < 256 / n * n)
				out[i++] = alphabet[b[k] % n];
	}
	out[CLASS_CODE_LEN] = '\0';
	return 0;
}

int class_code_parse(const char *in, char *out)
{
	size_t n = 0, seps = 0;
	const char *p = in;

	while (*p == ' ')
		p++;
	for (; *p; p++) {
		char ch = *p;
		if (ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		if ((ch == '-' || ch == ' ') && n == CLASS_CODE_LEN / 2 && seps == 0) {
			seps++;
			continue;
		}
		if (ch == ' ') {
			const char *q = p;
			while (*q == ' ')
				q++;
			if (*q)
				return -EINVAL;
			break;
		}
		if (n >= CLASS_CODE_LEN || !strchr(CLASS_CODE_ALPHABET, ch) || ch == '\0')
			return -EINVAL;
		out[n++] = ch;
	}
	if (n != CLASS_CODE_LEN)
		return -EINVAL;
	out[n] = '\0';
	return 0;
}

/* Length of the UTF-8 sequence starting at s (1..4), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n, i;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and beyond U+10FFFF are invalid. */
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	/* C1 controls, line and paragraph separators, bidi overrides. */
	if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
	    (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
		return 0;
	return n;
}

int class_name_parse(const char *in, char *out, char *err, size_t errlen)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t len, chars = 0, i = 0;

	while (*s == ' ')
		s++;
	len = strlen((const char *)s);
	while (len > 0 && s[len - 1] == ' ')
		len--;
	if (len == 0) {
		snprintf(err, errlen, "'name' must be 1 to %d characters (it is empty)",
			 CLASS_NAME_MAX);
		return -EINVAL;
	}
	if (len > CLASS_NAME_BYTES) {
		snprintf(err, errlen, "'name' must be 1 to %d characters", CLASS_NAME_MAX);
		return -EINVAL;
	}
	while (i < len) {
		size_t n = s[i] < 0x20 || s[i] == 0x7f ? 0 : utf8_len(s + i);
		if (n == 0 || i + n > len) {
			snprintf(err, errlen,
				 "'name' must be 1 to %d characters of text without control "
				 "characters",
				 CLASS_NAME_MAX);
			return -EINVAL;
		}
		i += n;
		chars++;
	}
	if (chars > CLASS_NAME_MAX) {
		snprintf(err, errlen, "'name' must be 1 to %d characters (got %zu)",
			 CLASS_NAME_MAX, chars);
		return -EINVAL;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

int class_secret_equal(const char *secret, const char *candidate)
{
	/* Walk a fixed number of bytes whatever the inputs; a length
	 * difference is folded into the result rather than returned early. */
	size_t ls = strlen(secret), lc = strnlen(candidate, 4096), i;
	volatile unsigned char diff = (unsigned char)(ls != lc) | (unsigned char)(ls == 0);

	for (i = 0; i < 256; i++) {
		unsigned char a = i < ls ? (unsigned char)secret[i] : 0;
		unsigned char b = i < lc ? (unsigned char)candidate[i] : 0;
		diff |= (unsigned char)(a ^ b);
	}
	return lc <= 256 && diff == 0;
}

int class_bucket_ready(struct class_bucket *b, double rate, double burst, int64_t now_us)
{
	if (!b->started) {
		b->started = 1;
		b->tokens = burst;
		b->last_us = now_us;
	}
	if (now_us > b->last_us) {
		b->tokens += (double)(now_us - b->last_us) * rate / 1e6;
		if (b->tokens > burst)
			b->tokens = burst;
		b->last_us = now_us;
	}
	return b->tokens >= 1.0;
}

int class_bucket_take(struct class_bucket *b, double rate, double burst, int64_t now_us)
{
	if (!class_bucket_ready(b, rate, burst, now_us))
		return 0;
	b->tokens -= 1.0;
	return 1;
}

int class_ring_init(struct class_ring *r, size_t cap, size_t max_bytes, size_t pre)
{
	memset(r, 0, sizeof *r);
	r->slot = calloc(cap, sizeof *r->slot);
	if (!r->slot)
		return -ENOMEM;
	r->cap = cap;
	r->max_bytes = max_bytes;
	r->pre = pre;
	return 0;
}

static void drop_oldest(struct class_ring *r)
{
	struct class_msg **m = &r->slot[r->tail % r->cap];

	r->bytes -= (*m)->len;
	free(*m);
	*m = NULL;
	r->tail++;
}

void class_ring_clear(struct class_ring *r)
{
	while (r->tail < r->head)
		drop_oldest(r);
}

void class_ring_cleanup(struct class_ring *r)
{
	if (!r->slot)
		return;
	class_ring_clear(r);
	free(r->slot);
	memset(r, 0, sizeof *r);
}

int class_ring_push(struct class_ring *r, const void *data, size_t len)
{
	struct class_msg *m;

	if (len > r->max_bytes)
		return -E2BIG;
	m = malloc(sizeof *m + r->pre + len);
	if (!m)
		return -ENOMEM;
	m->len = len;
	memcpy(m->buf + r->pre, data, len);
	while (r->head - r->tail >= r->cap || r->bytes + len > r->max_bytes)
		drop_oldest(r);
	r->slot[r->head % r->cap] = m;
	r->head++;
	r->bytes += len;
	return 0;
}

const struct class_msg *class_ring_get(const struct class_ring *r, uint64_t pos)
{
	if (pos < r->tail || pos >= r->head)
		return NULL;
	return r->slot[pos % r->cap];
}

int class_msg_event(const unsigned char *msg, size_t len, const char *run, long long *seq)
{
	static const char head[] = "{\"v\":1,\"run\":\"", mid[] = "\",\"seq\":";
	size_t rl = strlen(run), at = sizeof head - 1, n = 0;
	long long v = 0;

	if (len < at + rl + sizeof mid || memcmp(msg, head, at) || memcmp(msg + at, run, rl) ||
	    memcmp(msg + at + rl, mid, sizeof mid - 1))
		return 0;
	for (at += rl + sizeof mid - 1; at < len && msg[at] >= '0' && msg[at] <= '9'; at++) {
		if (++n > 15)
			return 0;
		v = v * 10 + (msg[at] - '0');
	}
	if (!n || at >= len || (msg[at] != ',' && msg[at] != '}'))
		return 0;
	*seq = v;
	return 1;
}
