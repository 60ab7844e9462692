/* ws_mask.h: RFC 6455 5.1 for the WebSocket server: notice client frames that are not masked (libwebsockets 4.1.6 accepts them). */
#ifndef SOCKLAB_WS_MASK_H
#define SOCKLAB_WS_MASK_H

#include <stddef.h>
#include <stdint.h>

/*
 * RFC 6455 5.1: "a client MUST mask all frames that it sends to the server
 * ... The server MUST close the connection upon receiving a frame that is not
 * masked" (status 1002). libwebsockets 4.1.6 parses the mask bit and then
 * ignores it, and offers no hook that sees frame headers. So the bytes it
 * reads from a WebSocket connection are followed here too: a byte state
 * machine over the connection's stream (the HTTP upgrade request up to its
 * empty line, then frame headers, skipping payloads) that only records
 * whether an unmasked frame was seen; the session then closes with 1002.
 */
struct ws_mask_parser {
	uint8_t state;
	uint8_t crlf;    /* how much of "\r\n\r\n" ends the bytes so far */
	uint8_t need;    /* bytes of extended length or masking key still due */
	uint8_t masked;  /* the current frame's mask bit */
	uint64_t len;    /* payload length being read, then payload bytes left */
	int unmasked;    /* an unmasked frame was seen */
};

void ws_mask_parser_init(struct ws_mask_parser *p);

/* Follow n more bytes of the client's stream. Pure (tests/unit/test_ws_mask.c). */
void ws_mask_feed(struct ws_mask_parser *p, const unsigned char *buf, size_t n);

/*
 * The connections followed, by fd, on the lws service thread only: the
 * process's recv() (which libwebsockets calls for every read) is defined in
 * ws_mask.c; it is the system call, plus, on the service thread and for a
 * followed fd, ws_mask_feed() over what was read. Every other thread and
 * every other fd get the plain system call.
 */

/* The calling thread is the lws service thread. */
void ws_mask_service_thread(void);

/* A connection was accepted on fd: follow it from its first byte. */
void ws_mask_watch(int fd);

/* 1 when an unmasked frame came in on fd. */
int ws_mask_unmasked(int fd);

/* Free every parser (the service thread, at the end). */
void ws_mask_cleanup(void);

#endif
