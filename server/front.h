/* front.h: the one public port: accept, peek each connection's first bytes, and hand it to the WebSocket server (GET /ws) or the HTTP server (everything else). */
#ifndef SOCKLAB_FRONT_H
#define SOCKLAB_FRONT_H

#include <stddef.h>

#include "config.h"
#include "http.h"

/*
 * socklab owns the listening socket of the public port; neither library
 * listens on it. A thread of its own (the front door, one epoll loop) accepts
 * every connection and peeks (MSG_PEEK: nothing is consumed) at most
 * FRONT_PEEK_MAX bytes of its request line, non-blocking, edge-triggered, so
 * a client that sends slowly or nothing holds one slot and never the loop.
 * "GET /ws" followed by a space or '?' goes to libwebsockets
 * (ws_adopt(): lws_adopt_socket_vhost() on the lws thread, which then reads
 * the upgrade request itself); anything else to libmicrohttpd
 * (http_add_connection(): MHD_add_connection()). Each library then applies
 * its own limits exactly as it did on a port of its own.
 *
 * Limits here, before either library sees the connection:
 *   - at most cfg->http_max_conns connections wait for their first bytes;
 *     when that many wait, the one that has waited longest is answered 408
 *     and closed to make room (a real client sends its request line at once);
 *   - at most cfg->max_conns_per_addr of them from one address; more are
 *     answered 503 too_many_connections and closed;
 *   - each has cfg->header_timeout_s to send those bytes; then 408.
 * Every refusal is an HTTP answer with a JSON body, like the API's errors.
 */

/* Bytes of the request line that decide: "GET /ws" and one more. */
#define FRONT_PEEK_MAX 8

enum front_kind {
	FRONT_NEED_MORE, /* too few bytes to tell yet */
	FRONT_HTTP,      /* for libmicrohttpd */
	FRONT_WS,        /* GET /ws: for libwebsockets */
};

/* Where the first n bytes of a connection go. Pure (tests/unit/test_front.c). */
enum front_kind front_classify(const unsigned char *buf, size_t n);

struct front;
struct ws_server;

/* Listen on cfg->listen:cfg->http_port (0: a free port). cfg and counters
 * must outlive f. 0 or -errno with err. */
int front_open(struct front **out, const struct serve_config *cfg,
	       struct http_counters *counters, char *err, size_t errlen);

/* The port it listens on. */
int front_port(const struct front *f);

/* Start the front-door thread, handing connections to http and ws (both
 * must outlive front_close()). 0 or -errno with err. */
int front_start(struct front *f, struct http_server *http, struct ws_server *ws, char *err,
		size_t errlen);

/* Stop the thread, close the listener and every connection still waiting,
 * free f. Call before stopping the HTTP or WebSocket server. NULL is fine. */
void front_close(struct front *f);

#endif
