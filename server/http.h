/* http.h: the HTTP half of `socklab serve`: dashboard assets and the REST API (libmicrohttpd). */
#ifndef SOCKLAB_HTTP_H
#define SOCKLAB_HTTP_H

#include <pthread.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

/*
 * Counters shown by GET /api/health. Written by the lws thread (runs and
 * WebSocket sessions), read by the HTTP thread; every field is guarded by
 * lock. Use http_count() and http_counters_get() rather than the fields.
 */
enum http_counter {
	HTTP_C_RUNS_ACTIVE,      /* runs whose process has not finished */
	HTTP_C_RUNS_STARTED,     /* runs started since the server started */
	HTTP_C_SESSIONS,         /* WebSocket connections open now */
	HTTP_C_QUEUE_OVERFLOWS,  /* connections closed because they read too slowly */
	HTTP_C_MESSAGES_DROPPED, /* messages not delivered because of those */
	HTTP_C_BAD_OUTPUT,       /* runs killed for malformed or oversized output */
	HTTP_C_BUNDLE_ERRORS,    /* failed writes to run bundles */
	HTTP_C_CLASSES,          /* classes open now */
	HTTP_C_CLASS_VIEWERS,    /* students in classes now */
	HTTP_C_CLASS_RESYNCS,    /* viewers that fell behind a class ring and resynced */
	HTTP_C_SIGNIN_FAILURES,  /* refused instructor sign-ins */
	HTTP_C_RATE_LIMITED,     /* messages refused for exceeding --msg-rate */
	HTTP_C_HEADER_TIMEOUTS,  /* HTTP connections closed by --header-timeout (408) */
	HTTP_C_BAD_HOST,         /* HTTP requests and WebSocket upgrades refused for their Host */
	HTTP_C_TOO_MANY_ARGS,    /* HTTP requests refused for too many query arguments */
	HTTP_C_WS_REFUSED,       /* WebSocket upgrades refused (server or address full, Origin) */
	HTTP_C_QUEUED_BYTES,     /* bytes queued for all WebSocket connections now */
	HTTP_C_MEMORY_CLOSES,    /* connections closed because --queue-total was reached */
	HTTP_C_RUNS_THROTTLED,   /* runs whose output is paused for a lagging owner now */
	HTTP_C_RUN_PAUSES,       /* times a run's output was paused that way */
	HTTP_C_RUNS_QUEUED,      /* runs waiting in the admission queue now */
	HTTP_C_QUEUE_ADMITTED,   /* runs started after waiting in it */
	HTTP_C_QUEUE_EXPIRED,    /* runs refused when their --queue-wait passed */
	HTTP_C_QUEUE_FULL,       /* runs refused because the queue was full */
	HTTP_C_QUEUE_WAIT_MS,    /* milliseconds the admitted runs waited, in total */
	HTTP_C_QUEUE_WAIT_MS_MAX,/* the longest wait of an admitted run */
	HTTP_C_FRONT_REFUSED,    /* connections refused before their first bytes: too many from one address */
	HTTP_C_FRONT_EVICTED,    /* connections closed before their first bytes to make room (408) */
	HTTP_C_FANOUT_MODE,      /* how class messages are written now: enum config_fanout, never auto */
	HTTP_C_CLASS_FRAMES_DIRECT,   /* class frames the fan-out sweep wrote (ws_fanout.c) */
	HTTP_C_CLASS_FRAMES_DEFERRED, /* ... it left to the viewer's writeable callback */
	HTTP_C_COUNT
};

struct http_counters {
	pthread_mutex_t lock;
	long v[HTTP_C_COUNT]; /* guarded by lock */
};

void http_counters_init(struct http_counters *c);
void http_counters_cleanup(struct http_counters *c);
void http_count(struct http_counters *c, enum http_counter which, long delta);
long http_counters_get(struct http_counters *c, enum http_counter which);

struct http_server;

/* Start the HTTP server with its own polling thread and no listening socket:
 * connections come from http_add_connection() (front.c owns the public port,
 * which is port). ws_port is the WebSocket port the pages connect to (port
 * itself unless --ws-port). Runs are listed from store. cfg, counters and
 * store must outlive the server. 0 or -errno with err. */
struct bundle_store;
int http_start(struct http_server **out, const struct serve_config *cfg, int port, int ws_port,
	       struct http_counters *counters, struct bundle_store *store, char *err,
	       size_t errlen);

/* Hand an accepted connection (nothing of it read yet; the caller may have
 * peeked) to the HTTP server; any thread. The server owns fd from here, even
 * on failure: 0, or -errno when it refused it (its connection limit,
 * --http-max-conns, or the per-address one, --max-conns-per-addr) and closed it. */
int http_add_connection(struct http_server *h, int fd, const struct sockaddr *addr,
			socklen_t addrlen);

/* The public port. */
int http_port(const struct http_server *h);

/* --nats: /api/health reports b (bus.h); before connections arrive. */
struct bus;
void http_set_bus(struct http_server *h, struct bus *b);
/* --nats: /api/health reports classes across replicas (bus_class.h). */
struct bus_class;
void http_set_bus_class(struct http_server *h, struct bus_class *bc);

/* Stop the thread, close the socket and free h. NULL is fine. */
void http_stop(struct http_server *h);

/* ---- pure helpers, exposed for tests ---- */

/* Content-Type for a path by its extension (application/octet-stream when unknown). */
const char *http_content_type(const char *path);

/* The host part of a Host header ("example.org:8080" -> "example.org",
 * "[::1]:80" -> "[::1]") when it is a well-formed name or address. 0, or
 * -EINVAL when it is not (the caller then uses the listen address). */
int http_host_from_header(const char *host, char *out, size_t outlen);

#endif
