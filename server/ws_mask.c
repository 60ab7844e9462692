/* ws_mask.c: follow WebSocket clients' frame headers to refuse unmasked frames (RFC 6455 5.1), which libwebsockets 4.1.6 accepts. */
#include "ws_mask.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

enum {
	WSM_HTTP,    /* the upgrade request, up to its empty line */
	WSM_OPCODE,  /* first header byte: FIN, RSV, opcode */
	WSM_LEN7,    /* second: MASK bit and 7-bit length */
	WSM_LENX,    /* 16- or 64-bit extended length */
	WSM_KEY,     /* 4-byte masking key */
	WSM_PAYLOAD, /* payload bytes, skipped */
};

void ws_mask_parser_init(struct ws_mask_parser *p)
{
	memset(p, 0, sizeof *p);
	p->state = WSM_HTTP;
}

/* The header's length is known: on to the key, the payload or the next frame. */
static void after_length(struct ws_mask_parser *p)
{
	if (p->masked) {
		p->need = 4;
		p->state = WSM_KEY;
	} else {
		p->state = p->len ? WSM_PAYLOAD : WSM_OPCODE;
	}
}

void ws_mask_feed(struct ws_mask_parser *p, const unsigned char *buf, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = buf[i];
		switch (p->state) {
		case WSM_HTTP:
			if (c == '\r' && (p->crlf == 0 || p->crlf == 2))
				p->crlf++;
			else if (c == '\n' && (p->crlf == 1 || p->crlf == 3))
				p->crlf++;
			else
				p->crlf = c == '\r';
			if (p->crlf == 4)
				p->state = WSM_OPCODE;
			i++;
			break;
		case WSM_OPCODE:
			p->state = WSM_LEN7;
			i++;
			break;
		case WSM_LEN7:
			p->masked = (c & 0x80) != 0;
			if (!p->masked)
				p->unmasked = 1;
			p->len = 0;
			if ((c & 0x7f) >= 126) {
				p->need = (c & 0x7f) == 126 ? 2 : 8;
				p->state = WSM_LENX;
			} else {
				p->len = c & 0x7f;
				after_length(p);
			}
			i++;
			break;
		case WSM_LENX:
			p->len = (p->len << 8) | c;
			if (--p->need == 0)
				after_length(p);
			i++;
			break;
		case WSM_KEY:
			if (--p->need == 0)
				p->state = p->len ? WSM_PAYLOAD : WSM_OPCODE;
			i++;
			break;
		default: { /* WSM_PAYLOAD */
			size_t take = n - i;
			if ((uint64_t)take > p->len)
				take = (size_t)p->len;
			p->len -= take;
			i += take;
			if (p->len == 0)
				p->state = WSM_OPCODE;
			break;
		}
		}
	}
}

/* Connections followed, indexed by fd; touched only on the service thread. */
#define WS_MASK_FDS 65536
static struct ws_mask_parser *parsers[WS_MASK_FDS];
static int parsers_end; /* one past the highest fd ever watched */
static __thread int service_thread;

void ws_mask_service_thread(void)
{
	service_thread = 1;
}

void ws_mask_watch(int fd)
{
	if (!service_thread || fd < 0 || fd >= WS_MASK_FDS)
		return;
	/* An fd number is reused: a new connection starts afresh. */
	if (!parsers[fd])
		parsers[fd] = malloc(sizeof *parsers[fd]);
	if (fd >= parsers_end)
		parsers_end = fd + 1;
	if (parsers[fd])
		ws_mask_parser_init(parsers[fd]);
}

int ws_mask_unmasked(int fd)
{
	return service_thread && fd >= 0 && fd < WS_MASK_FDS && parsers[fd] &&
	       parsers[fd]->unmasked;
}

void ws_mask_cleanup(void)
{
	int i;

	/* Only the fds ever watched: walking and freeing all 65,536 slots
	 * (free(NULL) unwinds the stack under a sanitizer) made each fuzz_ws
	 * input, which builds and frees a whole server, cost 1.7 ms. */
	for (i = 0; i < parsers_end; i++) {
		free(parsers[i]);
		parsers[i] = NULL;
	}
	parsers_end = 0;
}

/* The process's recv(): the system call (as glibc's is), then the follower. */
ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	ssize_t n = (ssize_t)syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);

	if (n > 0 && service_thread && !(flags & MSG_PEEK) && fd >= 0 && fd < WS_MASK_FDS &&
	    parsers[fd])
		ws_mask_feed(parsers[fd], buf, (size_t)n);
	return n;
}
