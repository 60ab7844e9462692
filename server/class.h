/* class.h: classroom mode building blocks: class codes, display names, secrets, rate buckets, the fan-out ring. */
#ifndef SOCKLAB_CLASS_H
#define SOCKLAB_CLASS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Pure helpers (no I/O except getrandom), unit-tested in tests/unit/test_class.c.
 * The classes themselves (members, view state, ops) live in ws.c, which owns
 * the sessions; everything here is owned by the lws service thread.
 */

/* A class code: CLASS_CODE_LEN symbols from an alphabet with no look-alikes
 * (no 0/O, 1/I/L), case-insensitive when typed. */
#define CLASS_CODE_LEN 6
#define CLASS_CODE_ALPHABET "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

/* Display names: 1..CLASS_NAME_MAX characters (code points), at most
 * CLASS_NAME_BYTES bytes of UTF-8, no control characters. */
#define CLASS_NAME_MAX 32
#define CLASS_NAME_BYTES 128

/* A fresh random code into out (CLASS_CODE_LEN + 1 bytes). 0 or -errno. */
int class_code_new(char *out);

/* Normalise a typed code (upper case, surrounding spaces and one '-' or ' '
 * in the middle ignored) into out (CLASS_CODE_LEN + 1). 0, or -EINVAL when it
 * is not a code. */
int class_code_parse(const char *in, char *out);

/* Check and trim a display name into out (CLASS_NAME_BYTES + 1 bytes). 0, or
 * -EINVAL with the reason in err. */
int class_name_parse(const char *in, char *out, char *err, size_t errlen);

/* Compare a candidate with the secret in time that depends only on the
 * secret's maximum length, not on where they differ. 1 when equal. */
int class_secret_equal(const char *secret, const char *candidate);

/* A token bucket: rate tokens per second, at most burst, starting full. */
struct class_bucket {
	double tokens;
	int64_t last_us;
	int started;
};

/* Refill for time now_us; 1 when a token is there (none is taken). */
int class_bucket_ready(struct class_bucket *b, double rate, double burst, int64_t now_us);

/* Take one token at time now_us; 1 when allowed, 0 when the bucket is empty. */
int class_bucket_take(struct class_bucket *b, double rate, double burst, int64_t now_us);

/*
 * The fan-out ring: the serialised messages of one class (its runs' events
 * and class notices), each stored once with LWS_PRE bytes of headroom and
 * shared by every viewer, which keeps only its read position (an absolute
 * index). At most cap entries and max_bytes bytes are kept; pushing past
 * either drops the oldest. A viewer whose position has fallen below
 * ring_tail() has lost messages and must resync.
 */
struct class_msg {
	size_t len;
	unsigned char buf[]; /* pre bytes of headroom, then the message */
};

struct class_ring {
	struct class_msg **slot;
	size_t cap, pre;
	size_t max_bytes, bytes;
	uint64_t tail, head; /* absolute indices: [tail, head) are kept */
};

/* cap entries, max_bytes bytes, pre bytes of headroom per entry. 0 or -ENOMEM. */
int class_ring_init(struct class_ring *r, size_t cap, size_t max_bytes, size_t pre);
void class_ring_cleanup(struct class_ring *r);

/* Append a copy of data; drops the oldest entries to make room. 0 or -ENOMEM
 * (or -E2BIG for a message larger than max_bytes). */
int class_ring_push(struct class_ring *r, const void *data, size_t len);

/* The entry at absolute index pos, or NULL when pos < tail (lost) or
 * pos >= head (not there yet). */
const struct class_msg *class_ring_get(const struct class_ring *r, uint64_t pos);

/* Drop every entry (a new class run starts); indices keep counting up. */
void class_ring_clear(struct class_ring *r);

/* Whether the message (len bytes, not NUL-terminated) is an event line of
 * run (EV_RUN_ID_LEN hex digits): our emitter starts every line with
 * {"v":1,"run":"ID","seq":N (labs/event.h). 1 with its seq in *seq, else 0.
 * The class ring holds a class run's events as those lines. */
int class_msg_event(const unsigned char *msg, size_t len, const char *run, long long *seq);

#endif
