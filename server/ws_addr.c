/* ws_addr.c: the bounded per-address table of the WebSocket server (sessions, sign-in buckets). */
#include "ws_addr.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int ws_addr_init(struct ws_addr_table *t, size_t max)
{
	size_t cap = 16;

	memset(t, 0, sizeof *t);
	while (cap < 2 * max)
		cap *= 2;
	t->e = calloc(cap, sizeof *t->e);
	if (!t->e)
		return -ENOMEM;
	t->cap = cap;
	t->max = max;
	return 0;
}

void ws_addr_cleanup(struct ws_addr_table *t)
{
	free(t->e);
	memset(t, 0, sizeof *t);
}

int ws_addr_key(const struct sockaddr *sa, socklen_t len, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		key[10] = 0xff;
		key[11] = 0xff;
		memcpy(key + 12, &a->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		memcpy(key, &a->sin6_addr, 16);
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* FNV-1a over the 16 bytes. */
static size_t home(const struct ws_addr_table *t, const unsigned char key[16])
{
	uint64_t h = 1469598103934665603ULL;
	int i;

	for (i = 0; i < 16; i++) {
		h ^= key[i];
		h *= 1099511628211ULL;
	}
	return (size_t)h & (t->cap - 1);
}

struct ws_addr *ws_addr_find(struct ws_addr_table *t, const unsigned char key[16])
{
	size_t i = home(t, key);

	while (t->e[i].used) {
		if (!memcmp(t->e[i].key, key, 16))
			return &t->e[i];
		i = (i + 1) & (t->cap - 1);
	}
	return NULL;
}

static int idle(struct ws_addr *e, int64_t now_us)
{
	class_bucket_ready(&e->signin, WS_ADDR_SIGNIN_RATE, WS_ADDR_SIGNIN_BURST, now_us);
	return e->sessions == 0 && e->signin.tokens >= WS_ADDR_SIGNIN_BURST;
}

/* Remove slot i, moving later entries of its probe run back (no tombstones). */
static void remove_at(struct ws_addr_table *t, size_t i)
{
	size_t mask = t->cap - 1, j = i;

	for (;;) {
		size_t k;
		j = (j + 1) & mask;
		if (!t->e[j].used)
			break;
		k = home(t, t->e[j].key);
		/* Move e[j] into the hole unless its home lies cyclically in (i, j]. */
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			t->e[i] = t->e[j];
			i = j;
		}
	}
	memset(&t->e[i], 0, sizeof t->e[i]);
	t->n--;
}

struct ws_addr *ws_addr_get(struct ws_addr_table *t, const unsigned char key[16], int64_t now_us)
{
	struct ws_addr *e = ws_addr_find(t, key);
	size_t i;

	if (e)
		return e;
	if (t->n >= t->max) {
		/* Full: forget the addresses that carry no state. */
		for (i = 0; i < t->cap;) {
			if (t->e[i].used && idle(&t->e[i], now_us))
				remove_at(t, i); /* slot i now holds another entry: look again */
			else
				i++;
		}
		if (t->n >= t->max)
			return NULL;
	}
	i = home(t, key);
	while (t->e[i].used)
		i = (i + 1) & (t->cap - 1);
	memset(&t->e[i], 0, sizeof t->e[i]);
	t->e[i].used = 1;
	memcpy(t->e[i].key, key, 16);
	t->n++;
	return &t->e[i];
}

void ws_addr_put(struct ws_addr_table *t, struct ws_addr *e, int64_t now_us)
{
	if (e && idle(e, now_us))
		remove_at(t, (size_t)(e - t->e));
}
