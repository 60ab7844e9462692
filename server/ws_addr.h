/* ws_addr.h: per-client-address bookkeeping for the WebSocket server: sessions open and sign-in attempts, in a bounded table. */
#ifndef SOCKLAB_WS_ADDR_H
#define SOCKLAB_WS_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "class.h"

/* Sign-in attempts one address may make: per second, and the burst allowed
 * (the same as the old server-wide limit, now for each source alone). */
#define WS_ADDR_SIGNIN_RATE 1.0
#define WS_ADDR_SIGNIN_BURST 10.0

/* One client address (IPv4 as v4-mapped IPv6). */
struct ws_addr {
	unsigned char key[16];
	int used;
	int sessions;               /* WebSocket sessions open from it */
	struct class_bucket signin; /* its sign-in attempts */
};

/*
 * An open-addressing hash table of addresses, sized at creation and never
 * grown: at most max entries live at once (the table holds twice that, so
 * probes stay short). An entry with no session and a full sign-in bucket
 * carries no state and is removed; when the table is full, a new address is
 * refused (NULL) rather than anything being forgotten. Owned by the lws
 * service thread; pure otherwise (tests/unit/test_ws_addr.c).
 */
struct ws_addr_table {
	struct ws_addr *e;
	size_t cap; /* a power of two */
	size_t n, max;
};

int ws_addr_init(struct ws_addr_table *t, size_t max);
void ws_addr_cleanup(struct ws_addr_table *t);

/* The key of a peer address (AF_INET or AF_INET6); -EAFNOSUPPORT otherwise. */
int ws_addr_key(const struct sockaddr *sa, socklen_t len, unsigned char key[16]);

/* The entry of key, or NULL. */
struct ws_addr *ws_addr_find(struct ws_addr_table *t, const unsigned char key[16]);

/* The entry of key, created when missing (first dropping entries that carry
 * no state at now_us); NULL when the table is full. */
struct ws_addr *ws_addr_get(struct ws_addr_table *t, const unsigned char key[16], int64_t now_us);

/* Drop e if it carries no state at now_us (no session, sign-in bucket full).
 * e is invalid afterwards either way (entries move on removal). */
void ws_addr_put(struct ws_addr_table *t, struct ws_addr *e, int64_t now_us);

#endif
