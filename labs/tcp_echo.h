/* tcp_echo.h: pure helpers of the tcp-echo lab, exposed for unit tests. */
#ifndef SOCKLAB_TCP_ECHO_H
#define SOCKLAB_TCP_ECHO_H

#include <stddef.h>

enum echo_transform {
	ECHO_UPPER, /* answer in upper case, as the course's server does */
	ECHO_PLAIN, /* answer the same bytes */
};

/* Apply the server's transform to n bytes in place (ASCII only: bytes outside
 * a-z are never changed, so UTF-8 text stays valid). */
void echo_transform(char *buf, size_t n, enum echo_transform t);

/* Write message index (1-based) of a run into out (capacity cap) and return
 * its length. With size 0 the message is text itself; otherwise it is
 * "[index] " followed by text repeated, cut to exactly size bytes. */
size_t echo_message(char *out, size_t cap, int index, size_t size, const char *text);

#endif
