/* http.c: the dashboard assets and the REST API over libmicrohttpd (its own polling thread). */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "assets.h"
#include "bus.h"
#include "bus_class.h"
#include "event.h"
#include "lab.h"
#include "quiz/quiz.h"
#include "runs.h"
#include "version.h"
#include "ws.h"

/* Longest request path served; a longer one is answered with 414. */
#define HTTP_PATH_MAX 512
/* Runs listed by GET /api/runs. */
#define HTTP_RUNS_LIST_MAX 100
/* Most query arguments a request may carry (the API takes none). */
#define HTTP_ARGS_MAX 100
/* How often the watchdog looks for requests past their deadline (ms). */
#define HTTP_WATCHDOG_MS 200

/* ---- counters ---- */

void http_counters_init(struct http_counters *c)
{
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
}

void http_counters_cleanup(struct http_counters *c)
{
	pthread_mutex_destroy(&c->lock);
}

void http_count(struct http_counters *c, enum http_counter which, long delta)
{
	pthread_mutex_lock(&c->lock);
	c->v[which] += delta;
	pthread_mutex_unlock(&c->lock);
}

long http_counters_get(struct http_counters *c, enum http_counter which)
{
	long v;

	pthread_mutex_lock(&c->lock);
	v = c->v[which];
	pthread_mutex_unlock(&c->lock);
	return v;
}

/* ---- pure helpers ---- */

static const struct {
	const char *ext;
	const char *type;
} content_types[] = {
	{".html", "text/html; charset=utf-8"},
	{".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".svg", "image/svg+xml"},
	{".json", "application/json"},
	{".png", "image/png"},
	{".ico", "image/x-icon"},
	{".woff2", "font/woff2"},
	{".txt", "text/plain; charset=utf-8"},
	{NULL, NULL},
};

const char *http_content_type(const char *path)
{
	size_t n = strlen(path);
	int i;

	for (i = 0; content_types[i].ext; i++) {
		size_t e = strlen(content_types[i].ext);
		if (n > e && strcmp(path + n - e, content_types[i].ext) == 0)
			return content_types[i].type;
	}
	return "application/octet-stream";
}

int http_host_from_header(const char *host, char *out, size_t outlen)
{
	size_t n, i;

	if (!host || !*host)
		return -EINVAL;
	if (host[0] == '[') {
		const char *rb = strchr(host, ']');
		if (!rb || (rb[1] && rb[1] != ':'))
			return -EINVAL;
		n = (size_t)(rb - host) + 1;
		if (n < 3)
			return -EINVAL;
		for (i = 1; i + 1 < n; i++)
			if (!strchr("0123456789abcdefABCDEF:.", host[i]))
				return -EINVAL;
	} else {
		n = strcspn(host, ":");
		if (n == 0 || n > 253)
			return -EINVAL;
		for (i = 0; i < n; i++) {
			char c = host[i];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '.' || c == '-'))
				return -EINVAL;
		}
	}
	/* Whatever follows is a port: digits only. */
	for (i = n + (host[n] == ':'); host[i]; i++)
		if (host[i] < '0' || host[i] > '9')
			return -EINVAL;
	if (n >= outlen)
		return -EINVAL;
	memcpy(out, host, n);
	out[n] = '\0';
	return 0;
}

static const char *str_field(const json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? v : "";
}

/* ---- the server ---- */

/*
 * One open HTTP connection, for the request deadline. MHD resets its own
 * idle timeout on every byte, so a client trickling one byte a second would
 * hold a connection for ever; here each connection has a deadline by which a
 * whole request must have arrived, set when it opens and again when a
 * response is done (the next request on a kept-alive connection), cleared
 * when a response is queued. The watchdog thread answers a connection past
 * its deadline with 408 and shuts the socket down; MHD then sees the end of
 * the stream and closes it itself (the fd is never closed here).
 */
struct http_conn {
	int fd;              /* -1 when the slot is free */
	int64_t deadline_us; /* CLOCK_MONOTONIC; 0: none */
	struct http_conn *next_free;
};

struct http_server {
	struct MHD_Daemon *d;
	const struct serve_config *cfg; /* read-only */
	struct http_counters *ctr;
	struct bundle_store *store; /* thread-safe */
	struct bus *bus;            /* thread-safe; NULL without --nats */
	struct bus_class *bclass;   /* thread-safe; NULL without --nats */
	int ws_port;
	int port; /* the public port (front.c listens on it) */
	struct timespec started;
	/* The request deadlines: written by the MHD thread, read by the
	 * watchdog; every field below is guarded by lock. */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct http_conn *conns; /* HTTP_SLOTS(cfg) slots */
	struct http_conn *free_conns;
	int stop;
	pthread_t watchdog;
	int watchdog_started;
	int grade_uploads; /* POST /api/grade bodies being received (HTTP thread only) */
};

/*
 * Deadline slots: twice the connection limit. MHD checks its limit on the
 * thread that calls MHD_add_connection() against a count its own thread
 * keeps, so a few connections handed over at once may briefly pass it; a
 * connection that still finds no slot is answered 503 (handler()).
 */
#define HTTP_SLOTS(cfg) ((size_t)(cfg)->http_max_conns * 2)

/* Addresses that mark a request's state in MHD's per-request pointer
 * (req_waited: suspended until another replica's run was read, bus.h); any
 * other pointer there is a struct grade_upload (POST /api/grade). */
static int req_fresh, req_too_many_args, req_seen, req_waited;

static void grade_upload_free(struct http_server *h, void *u);

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct http_conn *conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

/* Set (a deadline from now) or clear (0) the connection's request deadline. */
static void conn_deadline(struct http_server *h, struct MHD_Connection *c, int arm)
{
	struct http_conn *k = conn_of(c);

	if (!k)
		return;
	pthread_mutex_lock(&h->lock);
	k->deadline_us = arm ? mono_us() + (int64_t)h->cfg->header_timeout_s * 1000000 : 0;
	pthread_mutex_unlock(&h->lock);
}

/* Runs on the HTTP thread: a connection opened or closed. MHD calls CLOSED
 * before it closes the fd, so the watchdog never touches a reused fd. */
static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			      enum MHD_ConnectionNotificationCode toe)
{
	struct http_server *h = cls;
	struct http_conn *k;

	pthread_mutex_lock(&h->lock);
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		k = h->free_conns;
		if (k && ci) {
			h->free_conns = k->next_free;
			k->fd = ci->connect_fd;
			k->deadline_us =
				mono_us() + (int64_t)h->cfg->header_timeout_s * 1000000;
			*socket_context = k;
		}
	} else {
		k = *socket_context;
		if (k) {
			k->fd = -1;
			k->deadline_us = 0;
			k->next_free = h->free_conns;
			h->free_conns = k;
			*socket_context = NULL;
		}
	}
	pthread_mutex_unlock(&h->lock);
}

/* Runs on the HTTP thread: a response was sent (or the request failed). The
 * next request on a kept-alive connection has a fresh deadline. */
static void notify_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			     enum MHD_RequestTerminationCode toe)
{
	void *u = con_cls ? *con_cls : NULL;

	if (u && u != &req_fresh && u != &req_too_many_args && u != &req_seen &&
	    u != &req_waited) {
		grade_upload_free(cls, u);
		*con_cls = NULL;
	}
	conn_deadline(cls, c, 1);
}

/* The watchdog thread: answers connections past their deadline. */
static void *watchdog(void *arg)
{
	static const char body[] = "{\"error\":{\"code\":\"request_timeout\",\"message\":"
				   "\"the request did not arrive in time\"}}";
	char answer[256];
	int alen;
	struct http_server *h = arg;
	struct timespec ts;
	size_t i;

	alen = snprintf(answer, sizeof answer,
			"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
			"Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			sizeof body - 1, body);
	pthread_mutex_lock(&h->lock);
	while (!h->stop) {
		int64_t now = mono_us();
		long expired = 0;
		for (i = 0; i < HTTP_SLOTS(h->cfg); i++) {
			struct http_conn *k = &h->conns[i];
			if (k->fd < 0 || !k->deadline_us || now < k->deadline_us)
				continue;
			k->deadline_us = 0;
			/* MHD has sent nothing on this connection since its last
			 * response, so this is a whole answer; a short send just
			 * means the client is not reading either. */
			if (send(k->fd, answer, (size_t)alen, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
				(void)0;
			shutdown(k->fd, SHUT_RDWR);
			expired++;
		}
		if (expired)
			http_count(h->ctr, HTTP_C_HEADER_TIMEOUTS, expired);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += HTTP_WATCHDOG_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&h->wake, &h->lock, &ts);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* Runs on the HTTP thread, with the raw request target before MHD parses its
 * query string. MHD 0.9.75 keeps every argument in the connection's small
 * memory pool; a few hundred exhaust it and the request is then dropped with
 * no answer at all. So a request with more than HTTP_ARGS_MAX arguments has
 * its query string cut here (MHD parses the arguments from this very buffer,
 * right after this call) and is marked for a 400 answer. */
static void *uri_log(void *cls, const char *uri, struct MHD_Connection *c)
{
	char *q = strchr(uri, '?');
	size_t n = 0;

	if (!q)
		return &req_fresh;
	for (n = 1; (q = strchr(q + 1, '&')) != NULL && n <= HTTP_ARGS_MAX; n++)
		;
	if (n <= HTTP_ARGS_MAX)
		return &req_fresh;
	q = strchr(uri, '?');
	q[1] = '\0';
	return &req_too_many_args;
}

static void add_common_headers(struct http_server *h, struct MHD_Connection *c,
			       struct MHD_Response *r)
{
	char csp[CONFIG_URL_MAX + 512], host[300];
	const char *hh = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);

	/* Only a host this server answers to ever appears in the policy. */
	if (hh && !config_host_allowed(h->cfg, hh))
		hh = NULL;

	/* 'self' covers ws: to the page's own host and port in CSP Level 3;
	 * the explicit source is for browsers before it. */
	if (h->cfg->public_ws_url[0]) {
		snprintf(csp, sizeof csp,
			 "default-src 'self'; connect-src 'self' %s; img-src 'self' data:; "
			 "style-src 'self'; script-src 'self'; base-uri 'none'; "
			 "frame-ancestors 'none'",
			 h->cfg->public_ws_url);
	} else {
		if (http_host_from_header(hh, host, sizeof host) < 0)
			config_url_host(h->cfg->listen, host, sizeof host);
		snprintf(csp, sizeof csp,
			 "default-src 'self'; connect-src 'self' ws://%s:%d; img-src 'self' data:; "
			 "style-src 'self'; script-src 'self'; base-uri 'none'; "
			 "frame-ancestors 'none'",
			 host, h->ws_port);
	}
	MHD_add_response_header(r, "Content-Security-Policy", csp);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
}

static enum MHD_Result respond(struct http_server *h, struct MHD_Connection *c, unsigned status,
			       struct MHD_Response *r, const char *type)
{
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	add_common_headers(h, c, r);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (type)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	conn_deadline(h, c, 0);
	return ret;
}

/* Respond with JSON j (stolen). */
static enum MHD_Result respond_json(struct http_server *h, struct MHD_Connection *c,
				    unsigned status, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)
		       : NULL;
	struct MHD_Response *r;

	json_decref(j);
	if (!text)
		return MHD_NO;
	r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	return respond(h, c, status, r, "application/json");
}

static enum MHD_Result respond_error(struct http_server *h, struct MHD_Connection *c,
				     unsigned status, const char *code, const char *message)
{
	return respond_json(h, c, status,
			    json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message));
}

static long uptime_s(const struct http_server *h)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - h->started.tv_sec);
}

static enum MHD_Result api_health(struct http_server *h, struct MHD_Connection *c)
{
	struct http_counters *k = h->ctr;
	struct bundle_stats bs;
	json_t *body;
	json_t *counters = json_pack(
		"{s:I, s:I, s:I, s:I, s:I, s:I}", "runs_started",
		(json_int_t)http_counters_get(k, HTTP_C_RUNS_STARTED), "ws_sessions",
		(json_int_t)http_counters_get(k, HTTP_C_SESSIONS), "ws_queue_overflows",
		(json_int_t)http_counters_get(k, HTTP_C_QUEUE_OVERFLOWS), "ws_messages_dropped",
		(json_int_t)http_counters_get(k, HTTP_C_MESSAGES_DROPPED), "runs_bad_output",
		(json_int_t)http_counters_get(k, HTTP_C_BAD_OUTPUT), "bundle_write_errors",
		(json_int_t)http_counters_get(k, HTTP_C_BUNDLE_ERRORS));

	json_object_set_new(counters, "classes_open",
			    json_integer(http_counters_get(k, HTTP_C_CLASSES)));
	json_object_set_new(counters, "class_viewers",
			    json_integer(http_counters_get(k, HTTP_C_CLASS_VIEWERS)));
	json_object_set_new(counters, "class_resyncs",
			    json_integer(http_counters_get(k, HTTP_C_CLASS_RESYNCS)));
	json_object_set_new(counters, "signin_failures",
			    json_integer(http_counters_get(k, HTTP_C_SIGNIN_FAILURES)));
	json_object_set_new(counters, "messages_rate_limited",
			    json_integer(http_counters_get(k, HTTP_C_RATE_LIMITED)));
	json_object_set_new(counters, "http_header_timeouts",
			    json_integer(http_counters_get(k, HTTP_C_HEADER_TIMEOUTS)));
	json_object_set_new(counters, "http_bad_host",
			    json_integer(http_counters_get(k, HTTP_C_BAD_HOST)));
	json_object_set_new(counters, "http_too_many_args",
			    json_integer(http_counters_get(k, HTTP_C_TOO_MANY_ARGS)));
	json_object_set_new(counters, "first_bytes_refused",
			    json_integer(http_counters_get(k, HTTP_C_FRONT_REFUSED)));
	json_object_set_new(counters, "first_bytes_evicted",
			    json_integer(http_counters_get(k, HTTP_C_FRONT_EVICTED)));
	json_object_set_new(counters, "ws_refused",
			    json_integer(http_counters_get(k, HTTP_C_WS_REFUSED)));
	json_object_set_new(counters, "ws_queued_bytes",
			    json_integer(http_counters_get(k, HTTP_C_QUEUED_BYTES)));
	json_object_set_new(counters, "ws_memory_closes",
			    json_integer(http_counters_get(k, HTTP_C_MEMORY_CLOSES)));
	json_object_set_new(counters, "class_frames_direct",
			    json_integer(http_counters_get(k, HTTP_C_CLASS_FRAMES_DIRECT)));
	json_object_set_new(counters, "class_frames_deferred",
			    json_integer(http_counters_get(k, HTTP_C_CLASS_FRAMES_DEFERRED)));
	json_object_set_new(counters, "runs_throttled",
			    json_integer(http_counters_get(k, HTTP_C_RUNS_THROTTLED)));
	json_object_set_new(counters, "run_pauses",
			    json_integer(http_counters_get(k, HTTP_C_RUN_PAUSES)));
	{
		long admitted = http_counters_get(k, HTTP_C_QUEUE_ADMITTED);
		json_object_set_new(
			counters, "queue",
			json_pack("{s:I, s:i, s:i, s:I, s:I, s:I, s:I, s:I}", "waiting",
				  (json_int_t)http_counters_get(k, HTTP_C_RUNS_QUEUED), "max",
				  h->cfg->queue_max, "wait_limit_s", h->cfg->queue_wait_s, "admitted",
				  (json_int_t)admitted, "refused_full",
				  (json_int_t)http_counters_get(k, HTTP_C_QUEUE_FULL), "expired",
				  (json_int_t)http_counters_get(k, HTTP_C_QUEUE_EXPIRED),
				  "wait_ms_mean",
				  (json_int_t)(admitted ? http_counters_get(k, HTTP_C_QUEUE_WAIT_MS) /
								  admitted
							: 0),
				  "wait_ms_max",
				  (json_int_t)http_counters_get(k, HTTP_C_QUEUE_WAIT_MS_MAX)));
	}
	bundle_store_stats(h->store, &bs);
	body = json_pack("{s:s, s:s, s:I, s:I, s:o, s:{s:I, s:I, s:I, s:I, s:I}}", "status", "ok",
			  "version", SOCKLAB_VERSION, "runs_active",
			  (json_int_t)http_counters_get(k, HTTP_C_RUNS_ACTIVE), "uptime_s",
			  (json_int_t)uptime_s(h), "counters", counters, "data", "bundles",
			  (json_int_t)bs.bundles, "bytes", (json_int_t)bs.bytes, "max_bytes",
			  (json_int_t)bs.max_bytes, "pruned", (json_int_t)bs.pruned, "unsaved",
			  (json_int_t)bs.unsaved);
	/* How class messages reach viewers (--fanout, as the kernel allowed it). */
	if (body) {
		long mode = http_counters_get(k, HTTP_C_FANOUT_MODE);
		json_object_set_new(body, "class_fanout",
				    json_string(mode > CONFIG_FANOUT_AUTO && mode <= CONFIG_FANOUT_LWS
							? config_fanout_names[mode]
							: "lws"));
	}
	/* --nats: whether run events reach the stream. A NATS that is down
	 * is reported here, and the server stays "ok": it still serves its
	 * own runs. */
	if (body && h->bus)
		json_object_set_new(body, "nats", bus_health(h->bus));
	/* Classes across replicas and every replica's admission queue. */
	if (body && h->bclass)
		json_object_set_new(json_object_get(body, "nats"), "classes",
				    bus_class_health(h->bclass));
	return respond_json(h, c, MHD_HTTP_OK, body);
}

static enum MHD_Result api_config(struct http_server *h, struct MHD_Connection *c)
{
	const struct serve_config *cfg = h->cfg;
	json_t *limits = json_pack(
		"{s:i, s:i, s:i, s:i, s:i, s:i, s:[i,i]}", "max_runs", cfg->max_runs,
		"max_runs_per_conn", cfg->max_runs_per_conn, "max_byo", cfg->max_byo,
		"max_byo_per_conn", cfg->max_byo_per_conn, "run_timeout_s", cfg->run_timeout_s,
		"max_message_bytes", CONFIG_MAX_MESSAGE_BYTES, "byo_ports", cfg->byo_lo,
		cfg->byo_hi);

	json_object_set_new(limits, "queue_max", json_integer(cfg->queue_max));
	json_object_set_new(limits, "queue_wait_s", json_integer(cfg->queue_wait_s));
	json_object_set_new(limits, "max_classes", json_integer(cfg->max_classes));
	json_object_set_new(limits, "max_class_viewers", json_integer(cfg->max_class_viewers));
	json_object_set_new(limits, "msg_rate", json_integer(cfg->msg_rate));
	json_object_set_new(limits, "max_data", json_integer(cfg->max_data));
	json_object_set_new(limits, "max_run_data", json_integer(cfg->max_run_data));
	/* ws_same_port: the page connects to its own origin (scheme, host and
	 * port, whatever proxy it came through) at ws_path. */
	return respond_json(h, c, MHD_HTTP_OK,
			    json_pack("{s:s, s:i, s:s, s:b, s:s, s:s?, s:o, s:s, s:s?, s:{s:b}}",
				      "version", SOCKLAB_VERSION, "ws_port", h->ws_port, "ws_path",
				      WS_PATH, "ws_same_port", cfg->ws_port < 0, "ws_protocol",
				      WS_PROTOCOL, "ws_url",
				      cfg->public_ws_url[0] ? cfg->public_ws_url : NULL, "limits",
				      limits, "byo_host", cfg->byo_bind, "byo_url",
				      cfg->byo_url[0] ? cfg->byo_url : NULL, "classroom",
				      "secret_required", cfg->instructor_secret[0] != '\0'));
}

/* From the store's index: no disk read on this thread. */
static json_t *load_meta(struct http_server *h, const char *id)
{
	json_t *meta = bundle_store_get(h->store, id);

	/* --nats: a run of another replica, from the run index. */
	if (!meta && h->bus)
		meta = bus_run_meta(h->bus, id);
	return meta;
}

static void resume_request(void *c)
{
	MHD_resume_connection(c);
}

/* Another replica's run: the path of this replica's copy of its events,
 * read from the stream (bus.h), once it holds everything the stream had
 * when it was asked for. 0 with path; -1 while it is still reading; 2 when
 * an answer is already queued (*ret). */
static int remote_events(struct http_server *h, struct MHD_Connection *c, const char *id,
			 char *path, size_t pathlen, enum MHD_Result *ret)
{
	char err[300], m[400];
	enum bus_mirror_state st;
	int rc;

	rc = bus_mirror_open(h->bus, id, path, pathlen, err, sizeof err);
	if (rc < 0) {
		*ret = respond_error(h, c,
				     rc == -ENOENT ? MHD_HTTP_NOT_FOUND : MHD_HTTP_SERVICE_UNAVAILABLE,
				     rc == -ENOENT ? "not_found" : "limit", err);
		return 2;
	}
	st = bus_mirror_state(h->bus, id, NULL, err, sizeof err);
	if (st != BUS_M_FETCHING) {
		if (st == BUS_M_FAILED) {
			snprintf(m, sizeof m, "this run's events could not be read from NATS: %s", err);
			*ret = respond_error(h, c, MHD_HTTP_BAD_GATEWAY, "stream_error", m);
			return 2;
		}
		return 0;
	}
	return -1;
}

/* remote_events() for a request: 0 with path once this replica's copy is
 * ready; otherwise 1 with *ret the answer (an error, or the request
 * suspended until the copy is ready, when MHD calls the handler again). */
static int remote_events_ready(struct http_server *h, struct MHD_Connection *c, const char *id,
			       char *path, size_t pathlen, void **con_cls, enum MHD_Result *ret)
{
	int rc = remote_events(h, c, id, path, pathlen, ret);

	if (rc == 2)
		return 1;
	if (rc == 0)
		return 0;
	if (*con_cls == &req_waited) {
		*ret = respond_error(h, c, MHD_HTTP_GATEWAY_TIMEOUT, "nats_timeout",
				     "this run is another replica's, and NATS did not give "
				     "its events within 10 s (BUS_FETCH_WAIT_MS); see "
				     "/api/health nats.replicas");
		return 1;
	}
	/* Suspended first, so a resume can never come before it. */
	*con_cls = &req_waited;
	MHD_suspend_connection(c);
	if (bus_mirror_wait(h->bus, id, resume_request, c) != 0)
		MHD_resume_connection(c);
	*ret = MHD_YES;
	return 1;
}

static int newest_first(const void *x, const void *y)
{
	const char *a = str_field(*(json_t *const *)x, "created");
	const char *b = str_field(*(json_t *const *)y, "created");

	return strcmp(b, a);
}

/* This replica's runs and, with --nats, other replicas' (from the run
 * index), newest first. */
static json_t *merged_runs(struct http_server *h)
{
	json_t *own = bundle_store_list(h->store, HTTP_RUNS_LIST_MAX);
	json_t *other, *out, *v[2 * HTTP_RUNS_LIST_MAX];
	size_t n = 0, i;

	if (!own || !h->bus)
		return own;
	other = bus_run_list(h->bus, HTTP_RUNS_LIST_MAX);
	out = json_array();
	if (!other || !out) {
		json_decref(other);
		json_decref(out);
		return own;
	}
	for (i = 0; i < json_array_size(own); i++)
		v[n++] = json_array_get(own, i);
	for (i = 0; i < json_array_size(other); i++) {
		json_t *m = json_array_get(other, i);
		json_t *local = bundle_store_get(h->store, str_field(m, "id"));
		if (!local)
			v[n++] = m; /* a copy of a run also here is left out */
		json_decref(local);
	}
	qsort(v, n, sizeof *v, newest_first);
	for (i = 0; i < n && i < HTTP_RUNS_LIST_MAX; i++)
		json_array_append(out, v[i]);
	json_decref(own);
	json_decref(other);
	return out;
}

static enum MHD_Result api_runs(struct http_server *h, struct MHD_Connection *c)
{
	json_t *out = merged_runs(h);

	if (!out)
		return respond_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
				     "out of memory");
	return respond_json(h, c, MHD_HTTP_OK, out);
}

/* The length of the file's prefix that ends with a newline: a line being
 * appended right now is left out rather than sent torn. */
static off_t complete_prefix(int fd, off_t size)
{
	char buf[4096];
	off_t end = size;

	while (end > 0) {
		size_t chunk = end > (off_t)sizeof buf ? sizeof buf : (size_t)end;
		ssize_t n = pread(fd, buf, chunk, end - (off_t)chunk);
		ssize_t i;
		if (n != (ssize_t)chunk)
			return 0;
		for (i = n - 1; i >= 0; i--)
			if (buf[i] == '\n')
				return end - (off_t)chunk + i + 1;
		end -= (off_t)chunk;
	}
	return 0;
}

static enum MHD_Result api_run_events(struct http_server *h, struct MHD_Connection *c,
				      const char *id, int remote, void **con_cls)
{
	char path[PATH_MAX];
	struct MHD_Response *r;
	struct stat st;
	off_t len;
	int fd = -1;

	if (remote) {
		enum MHD_Result ret = MHD_NO;
		if (remote_events_ready(h, c, id, path, sizeof path, con_cls, &ret) != 0)
			return ret;
		fd = open(path, O_RDONLY | O_CLOEXEC);
	} else if (runs_bundle_path(h->cfg->data, id, "events.jsonl", path, sizeof path) == 0)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return respond_error(h, c, MHD_HTTP_NOT_FOUND, "not_found", "no such run");
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return respond_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
				     "cannot read the run's events");
	}
	len = complete_prefix(fd, st.st_size);
	if (len == 0) {
		close(fd);
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	} else {
		/* MHD owns fd from here and closes it. */
		r = MHD_create_response_from_fd64((uint64_t)len, fd);
		if (!r)
			close(fd);
	}
	return respond(h, c, MHD_HTTP_OK, r, "application/x-ndjson");
}

/* A run's capture as a download, from fd (of size bytes): MHD owns fd from
 * here and closes it. */
static enum MHD_Result respond_capture(struct http_server *h, struct MHD_Connection *c, int fd,
				       off_t size, const char *id, const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_fd64((uint64_t)size, fd);
	char disp[96];

	if (!r) {
		close(fd);
		return MHD_NO;
	}
	snprintf(disp, sizeof disp, "attachment; filename=\"socklab-%s.pcap\"", id);
	MHD_add_response_header(r, "Content-Disposition", disp);
	return respond(h, c, MHD_HTTP_OK, r, type);
}

/* The run's packet capture (labs that capture write DATA/runs/ID/capture.pcap).
 * Served once the run has ended: while it runs, the file is still growing. */
static enum MHD_Result api_run_capture(struct http_server *h, struct MHD_Connection *c,
				       const char *id, const json_t *meta)
{
	char path[PATH_MAX];
	struct stat st;
	int fd = -1;

	if (runs_bundle_path(h->cfg->data, id, "capture.pcap", path, sizeof path) == 0)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return respond_error(h, c, MHD_HTTP_NOT_FOUND, "no_capture",
				     "this run has no packet capture");
	if (!strcmp(str_field(meta, "status"), "running")) {
		close(fd);
		return respond_error(h, c, MHD_HTTP_CONFLICT, "capture_in_progress",
				     "the run is still going; its capture can be downloaded when "
				     "it ends");
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return respond_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
				     "cannot read the run's capture");
	}
	return respond_capture(h, c, fd, st.st_size, id, "application/vnd.tcpdump.pcap");
}

/* Another replica's run file (--nats): reassembled from the stream by this
 * replica (bus_files.c), checked chunk by chunk and against its length and
 * SHA-256, and served whole or not at all. */
static enum MHD_Result api_remote_file(struct http_server *h, struct MHD_Connection *c,
				       const char *id, const json_t *meta, const char *name,
				       const char *type, void **con_cls)
{
	const json_t *files = json_object_get(meta, "files");
	const char *status = str_field(meta, "status");
	const char *replica = str_field(meta, "replica");
	char path[PATH_MAX], err[400], m[600];
	struct stat st;
	int rc, fd;

	if (!strcmp(status, "running"))
		return respond_error(h, c, MHD_HTTP_CONFLICT, "capture_in_progress",
				     "the run is still going; its capture can be downloaded when "
				     "it ends");
	if (!json_is_object(files)) {
		if (!strcmp(status, "incomplete")) {
			snprintf(m, sizeof m,
				 "the replica that ran it (%s) stopped before it published the run's "
				 "files to NATS",
				 replica);
			return respond_error(h, c, MHD_HTTP_NOT_FOUND, "no_capture", m);
		}
		snprintf(m, sizeof m,
			 "the run ended on another replica (%s), whose files have not reached NATS "
			 "yet; try again in a moment",
			 replica);
		return respond_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "files_pending", m);
	}
	if (!json_object_get(files, name))
		return respond_error(h, c, MHD_HTTP_NOT_FOUND, "no_capture",
				     "this run has no packet capture");
	rc = bus_file_open(h->bus, id, name, json_object_get(files, name), path, sizeof path, err,
			   sizeof err);
	if (rc == -EINPROGRESS && *con_cls == &req_waited) {
		snprintf(m, sizeof m,
			 "this run is another replica's (%s), and NATS did not give its %s within "
			 "%d s; see /api/health nats.files",
			 replica, name, BUS_FILE_WAIT_MS / 1000);
		return respond_error(h, c, MHD_HTTP_GATEWAY_TIMEOUT, "nats_timeout", m);
	}
	if (rc == -EINPROGRESS) {
		/* Suspended first, so a resume can never come before it. */
		*con_cls = &req_waited;
		MHD_suspend_connection(c);
		if (bus_file_wait(h->bus, id, name, resume_request, c) != 0)
			MHD_resume_connection(c);
		return MHD_YES;
	}
	if (rc == -ENOENT)
		return respond_error(h, c, MHD_HTTP_NOT_FOUND, "no_capture", err);
	if (rc == -EPROTO) {
		snprintf(m, sizeof m, "%s of this run (replica %s) cannot be served: %s", name,
			 replica, err);
		return respond_error(h, c, MHD_HTTP_BAD_GATEWAY, "file_error", m);
	}
	if (rc == -ENOSPC)
		return respond_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "limit", err);
	if (rc < 0)
		return respond_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "nats_unavailable", err);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		return respond_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "limit",
				     "the copy of the file was given up for another; try again");
	}
	return respond_capture(h, c, fd, st.st_size, id, type);
}

/* GET /api/runs/ID/grade?QUESTION=ANSWER...[&lang=L]: the answers graded
 * against the run's saved events (labs/quiz/quiz.h); with no answer, what
 * the run shows for each of its lab's questions. The events are read and
 * graded on this thread, so a run larger than GRADE_EVENTS_MAX is refused. */
#define GRADE_EVENTS_MAX (8u * 1024 * 1024)

struct grade_args {
	const char *lab;
	json_t *answers;
	const char *lang;
	char err[300];
	const char *param;
};

static enum MHD_Result grade_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *value)
{
	struct grade_args *g = cls;
	const struct quiz_question *q;
	json_t *a;

	if (g->err[0])
		return MHD_NO;
	if (!strcmp(key, "lang")) {
		g->lang = value && !strcmp(value, "zh-CN") ? "zh-CN" : "en";
		return MHD_YES;
	}
	q = quiz_find(g->lab, key);
	if (!q) {
		snprintf(g->err, sizeof g->err, "lab %s has no question '%.64s'", g->lab, key);
		g->param = "question";
		return MHD_NO;
	}
	if (json_object_size(g->answers) >= QUIZ_ANSWERS_MAX) {
		snprintf(g->err, sizeof g->err, "at most %d answers at once", QUIZ_ANSWERS_MAX);
		g->param = "answers";
		return MHD_NO;
	}
	a = quiz_parse_answer(q, value, g->err, sizeof g->err);
	if (!a) {
		g->param = q->id;
		return MHD_NO;
	}
	json_object_set_new(g->answers, q->id, a);
	return MHD_YES;
}

/* GET /api/runs/ID/grade: the answers in the query graded on the run's
 * events, read from path (this replica's bundle, or its copy of another
 * replica's run from the stream). */
static enum MHD_Result api_run_grade(struct http_server *h, struct MHD_Connection *c,
				     const char *id, const json_t *meta, const char *path)
{
	struct grade_args g = {.lab = str_field(meta, "lab"), .lang = "en"};
	char err[300];
	json_t *events, *verdicts;
	struct stat st;

	if (!strcmp(str_field(meta, "status"), "running"))
		return respond_error(h, c, MHD_HTTP_CONFLICT, "run_in_progress",
				     "the run is still going; it can be graded when it ends");
	if (!quiz_bank_find(g.lab))
		return respond_error(h, c, MHD_HTTP_NOT_FOUND, "no_questions",
				     "this run's lab has no questions");
	g.answers = json_object();
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, grade_arg, &g);
	if (g.err[0]) {
		json_decref(g.answers);
		return respond_json(h, c, MHD_HTTP_BAD_REQUEST,
				    json_pack("{s:{s:s, s:s, s:s}}", "error", "code", "bad_param",
					      "message", g.err, "param", g.param));
	}
	if (!path || stat(path, &st) < 0) {
		json_decref(g.answers);
		return respond_error(h, c, MHD_HTTP_NOT_FOUND, "not_found", "the run has no events");
	}
	if ((size_t)st.st_size > GRADE_EVENTS_MAX) {
		json_decref(g.answers);
		snprintf(err, sizeof err, "the run's events (%lld bytes) are larger than the %u bytes "
			 "the server grades", (long long)st.st_size, GRADE_EVENTS_MAX);
		return respond_error(h, c, MHD_HTTP_CONTENT_TOO_LARGE, "run_too_large", err);
	}
	events = quiz_load_events(path, GRADE_EVENTS_MAX, err, sizeof err);
	if (!events) {
		json_decref(g.answers);
		return respond_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", err);
	}
	verdicts = quiz_grade(g.lab, json_object_size(g.answers) ? g.answers : NULL, events, g.lang);
	json_decref(events);
	json_decref(g.answers);
	return respond_json(h, c, MHD_HTTP_OK,
			    json_pack("{s:s, s:s, s:o}", "run", id, "lab", g.lab, "verdicts",
				      verdicts ? verdicts : json_array()));
}

/*
 * POST /api/grade?QUESTION=ANSWER...[&lang=L], the body a run's events as
 * JSON Lines: the same grading for a run the server does not keep (a run
 * file the dashboard opened; the page sends the events it validated). A
 * client sends at most GRADE_POST_MAX bytes and GRADE_POST_EVENTS events;
 * at most GRADE_UPLOADS_MAX such bodies are received at once (each is held
 * in memory, then parsed and graded on this thread); the request deadline
 * bounds a slow sender. Nothing is stored.
 */
#define GRADE_POST_MAX GRADE_EVENTS_MAX
#define GRADE_POST_EVENTS 200000
#define GRADE_UPLOADS_MAX 4

struct grade_upload {
	char *buf;
	size_t len, cap;
	int over; /* the body passed GRADE_POST_MAX: discarded, answered 413 */
};

static void grade_upload_free(struct http_server *h, void *p)
{
	struct grade_upload *u = p;

	free(u->buf);
	free(u);
	h->grade_uploads--;
}

static enum MHD_Result grade_post(struct http_server *h, struct MHD_Connection *c,
				  const char *data, size_t *size, void **con_cls)
{
	struct grade_upload *u = *con_cls;
	struct grade_args g = {.lang = "en"};
	char err[300];
	json_t *events, *verdicts;
	const char *run;

	if (*con_cls == &req_fresh || *con_cls == NULL) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > GRADE_POST_MAX) {
			snprintf(err, sizeof err, "the events are larger than the %u bytes the server "
				 "grades", GRADE_POST_MAX);
			return respond_error(h, c, MHD_HTTP_CONTENT_TOO_LARGE, "run_too_large", err);
		}
		if (h->grade_uploads >= GRADE_UPLOADS_MAX) {
			snprintf(err, sizeof err, "the server is grading %d sent runs already; try again "
				 "in a moment", GRADE_UPLOADS_MAX);
			return respond_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", err);
		}
		u = calloc(1, sizeof *u);
		if (!u)
			return respond_error(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
					     "out of memory");
		h->grade_uploads++;
		*con_cls = u;
		return MHD_YES;
	}
	if (*size) {
		/* The limit is checked before anything more is buffered. */
		if (!u->over && u->len + *size > GRADE_POST_MAX) {
			u->over = 1;
			free(u->buf);
			u->buf = NULL;
			u->len = u->cap = 0;
		}
		if (!u->over) {
			if (u->len + *size > u->cap) {
				size_t cap = u->cap ? u->cap : 65536;
				char *nb;
				while (cap < u->len + *size)
					cap *= 2;
				if (cap > GRADE_POST_MAX)
					cap = GRADE_POST_MAX;
				nb = realloc(u->buf, cap);
				if (!nb) {
					u->over = 1;
					free(u->buf);
					u->buf = NULL;
					u->len = u->cap = 0;
					*size = 0;
					return MHD_YES;
				}
				u->buf = nb;
				u->cap = cap;
			}
			memcpy(u->buf + u->len, data, *size);
			u->len += *size;
		}
		*size = 0;
		return MHD_YES;
	}
	if (u->over) {
		snprintf(err, sizeof err, "the events are larger than the %u bytes the server grades",
			 GRADE_POST_MAX);
		return respond_error(h, c, MHD_HTTP_CONTENT_TOO_LARGE, "run_too_large", err);
	}
	if (!u->len)
		return respond_error(h, c, MHD_HTTP_BAD_REQUEST, "bad_events",
				     "the body must hold the run's events, one JSON object a line");
	events = quiz_parse_events(u->buf, u->len, GRADE_POST_EVENTS, err, sizeof err);
	if (!events)
		return respond_json(h, c, MHD_HTTP_BAD_REQUEST,
				    json_pack("{s:{s:s, s:s, s:s}}", "error", "code", "bad_events",
					      "message", err, "param", "events"));
	g.lab = quiz_events_lab(events);
	if (!quiz_bank_find(g.lab)) {
		json_decref(events);
		return respond_error(h, c, MHD_HTTP_NOT_FOUND, "no_questions",
				     "this run's lab has no questions");
	}
	g.answers = json_object();
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, grade_arg, &g);
	if (g.err[0]) {
		json_decref(g.answers);
		json_decref(events);
		return respond_json(h, c, MHD_HTTP_BAD_REQUEST,
				    json_pack("{s:{s:s, s:s, s:s}}", "error", "code", "bad_param",
					      "message", g.err, "param", g.param));
	}
	verdicts = quiz_grade(g.lab, json_object_size(g.answers) ? g.answers : NULL, events, g.lang);
	run = json_string_value(json_object_get(json_array_get(events, 0), "run"));
	verdicts = json_pack("{s:s, s:s, s:o, s:b}", "run", run && ev_valid_run_id(run) ? run : "",
			     "lab", g.lab, "verdicts", verdicts ? verdicts : json_array(), "sent",
			     1);
	json_decref(events);
	json_decref(g.answers);
	return respond_json(h, c, MHD_HTTP_OK, verdicts);
}

static enum MHD_Result api_run(struct http_server *h, struct MHD_Connection *c, const char *rest,
			      void **con_cls)
{
	char id[EV_RUN_ID_LEN + 1];
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
	const char *sub = slash ? slash : "";
	json_t *meta;
	int remote;

	if (n != EV_RUN_ID_LEN)
		goto bad_id;
	memcpy(id, rest, n);
	id[n] = '\0';
	if (!ev_valid_run_id(id))
		goto bad_id;
	meta = load_meta(h, id);
	if (!meta)
		return respond_error(h, c, MHD_HTTP_NOT_FOUND, "not_found", "no such run");
	if (!*sub)
		return respond_json(h, c, MHD_HTTP_OK, meta);
	remote = json_is_true(json_object_get(meta, "remote"));
	if (remote && !strcmp(sub, "/capture.pcap")) {
		enum MHD_Result ret = api_remote_file(h, c, id, meta, "capture.pcap",
						      "application/vnd.tcpdump.pcap", con_cls);
		json_decref(meta);
		return ret;
	}
	if (!strcmp(sub, "/capture.pcap")) {
		enum MHD_Result ret = api_run_capture(h, c, id, meta);
		json_decref(meta);
		return ret;
	}
	if (!strcmp(sub, "/grade")) {
		char path[PATH_MAX] = "";
		enum MHD_Result ret = MHD_NO;
		int rc = 0;

		if (remote && strcmp(str_field(meta, "status"), "running") != 0)
			rc = remote_events_ready(h, c, id, path, sizeof path, con_cls, &ret);
		else if (!remote && runs_bundle_path(h->cfg->data, id, "events.jsonl", path,
						     sizeof path) < 0)
			path[0] = '\0';
		if (rc == 0)
			ret = api_run_grade(h, c, id, meta, path[0] ? path : NULL);
		json_decref(meta);
		return ret;
	}
	json_decref(meta);
	if (!strcmp(sub, "/events"))
		return api_run_events(h, c, id, remote, con_cls);
	return respond_error(h, c, MHD_HTTP_NOT_FOUND, "not_found", "no such resource");
bad_id:
	return respond_error(h, c, MHD_HTTP_BAD_REQUEST, "bad_run_id",
			     "run id must be 16 lowercase hex digits");
}

static enum MHD_Result serve_asset(struct http_server *h, struct MHD_Connection *c,
				   const char *url)
{
	const char *path = strcmp(url, "/") == 0 ? "/index.html" : url;
	int i;

	for (i = 0; assets[i].path; i++) {
		if (strcmp(assets[i].path, path) == 0) {
			struct MHD_Response *r = MHD_create_response_from_buffer(
				assets[i].len, (void *)assets[i].data, MHD_RESPMEM_PERSISTENT);
			return respond(h, c, MHD_HTTP_OK, r, http_content_type(path));
		}
	}
	return respond_error(h, c, MHD_HTTP_NOT_FOUND, "not_found", "no such page");
}

/* Runs on the HTTP thread. */
static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload_data,
			       size_t *upload_data_size, void **con_cls)
{
	struct http_server *h = cls;
	const char *host;

	/* Answering on the first call makes MHD close the connection: right
	 * for a request that is refused outright. */
	if (*con_cls == &req_too_many_args) {
		char m[96];
		http_count(h->ctr, HTTP_C_TOO_MANY_ARGS, 1);
		snprintf(m, sizeof m, "too many query arguments: at most %d", HTTP_ARGS_MAX);
		return respond_error(h, c, MHD_HTTP_BAD_REQUEST, "too_many_arguments", m);
	}
	/* DNS rebinding: a page of another site whose name now resolves to
	 * this server must not read it. */
	host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	if (!config_host_allowed(h->cfg, host)) {
		http_count(h->ctr, HTTP_C_BAD_HOST, 1);
		return respond_error(h, c, MHD_HTTP_MISDIRECTED_REQUEST, "bad_host",
				     "this server does not answer to that Host name; use its address "
				     "or a name given with --origin or --public-ws-url");
	}
	/* A connection that found no deadline slot (see HTTP_SLOTS) would have
	 * no request deadline: refused at once. */
	if (!conn_of(c))
		return respond_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "server_full",
				     "the server has too many HTTP connections open (--http-max-conns)");
	/* The WebSocket lives at WS_PATH only (front.c hands "GET /ws" to
	 * libwebsockets); an upgrade anywhere else is refused with a reason
	 * rather than answered as a page. */
	if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE)) {
		char m[128];
		snprintf(m, sizeof m, "no WebSocket here: it is served at %s (subprotocol %s)",
			 WS_PATH, WS_PROTOCOL);
		return respond_error(h, c, MHD_HTTP_NOT_FOUND, "not_websocket_path", m);
	}
	/* The one request with a body: a run's events to grade. */
	if (!strcmp(method, MHD_HTTP_METHOD_POST) && !strcmp(url, "/api/grade"))
		return grade_post(h, c, upload_data, upload_data_size, con_cls);
	/* The second call is where a keep-alive response goes (or the call
	 * after a suspended request was resumed). */
	if (*con_cls != &req_seen && *con_cls != &req_waited) {
		*con_cls = &req_seen;
		return MHD_YES;
	}
	/* A body is never wanted: let it pass (MHD refuses a response queued
	 * while upload data is pending) and answer once it is through. */
	if (*upload_data_size) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond_error(h, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
				     "only GET and HEAD are supported (and POST to /api/grade)");
	if (strlen(url) > HTTP_PATH_MAX)
		return respond_error(h, c, MHD_HTTP_URI_TOO_LONG, "uri_too_long",
				     "request path too long");
	if (!strcmp(url, "/api/health"))
		return api_health(h, c);
	if (!strcmp(url, "/api/config"))
		return api_config(h, c);
	if (!strcmp(url, "/api/labs"))
		return respond_json(h, c, MHD_HTTP_OK, lab_describe_all());
	if (!strcmp(url, "/api/runs") || !strcmp(url, "/api/runs/"))
		return api_runs(h, c);
	if (!strncmp(url, "/api/runs/", 10))
		return api_run(h, c, url + 10, con_cls);
	if (!strncmp(url, "/api/", 5) || !strcmp(url, "/api"))
		return respond_error(h, c, MHD_HTTP_NOT_FOUND, "not_found", "no such API");
	return serve_asset(h, c, url);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	vsnprintf(buf, sizeof buf, fmt, ap);
	fprintf(stderr, "socklab serve: http: %s%s", buf,
		buf[0] && buf[strlen(buf) - 1] == '\n' ? "" : "\n");
}

int http_start(struct http_server **out, const struct serve_config *cfg, int port, int ws_port,
	       struct http_counters *counters, struct bundle_store *store, char *err,
	       size_t errlen)
{
	struct http_server *h;
	size_t i;
	/* No listening socket of its own: front.c accepts on the public port
	 * and hands every connection that is not a WebSocket upgrade to
	 * MHD_add_connection(), from its own thread (MHD_USE_ITC wakes MHD's
	 * thread for it). */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
			 MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;

	h = calloc(1, sizeof *h);
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	h->cfg = cfg;
	h->ctr = counters;
	h->store = store;
	h->ws_port = ws_port;
	h->port = port;
	clock_gettime(CLOCK_MONOTONIC, &h->started);
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->wake, NULL);
	h->conns = calloc(HTTP_SLOTS(cfg), sizeof *h->conns);
	if (!h->conns) {
		snprintf(err, errlen, "out of memory");
		http_stop(h);
		return -ENOMEM;
	}
	for (i = HTTP_SLOTS(cfg); i-- > 0;) {
		h->conns[i].fd = -1;
		h->conns[i].next_free = h->free_conns;
		h->free_conns = &h->conns[i];
	}
	/* The logger must be the first option to catch every message. The
	 * per-address limit keeps one client from taking every connection;
	 * the request deadline (the watchdog) keeps a slow one from holding
	 * its connections. Both apply to connections added by front.c. */
	h->d = MHD_start_daemon(
		flags, 0, NULL, NULL, handler, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->http_max_conns,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_conns_per_addr,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_NOTIFY_CONNECTION,
		notify_connection, h, MHD_OPTION_NOTIFY_COMPLETED, notify_completed, h,
		MHD_OPTION_URI_LOG_CALLBACK, uri_log, h, MHD_OPTION_END);
	if (!h->d) {
		snprintf(err, errlen, "cannot start the HTTP server (libmicrohttpd)");
		http_stop(h);
		return -EIO;
	}
	if (pthread_create(&h->watchdog, NULL, watchdog, h) != 0) {
		snprintf(err, errlen, "cannot start the HTTP watchdog thread");
		http_stop(h);
		return -EAGAIN;
	}
	h->watchdog_started = 1;
	*out = h;
	return 0;
}

int http_add_connection(struct http_server *h, int fd, const struct sockaddr *addr,
			socklen_t addrlen)
{
	/* MHD closes fd itself when it refuses it (its connection or
	 * per-address limit), as it does for the connections it accepts. */
	errno = 0;
	return MHD_add_connection(h->d, fd, addr, addrlen) == MHD_YES ? 0 : -(errno ? errno : EIO);
}

void http_set_bus_class(struct http_server *h, struct bus_class *bc)
{
	h->bclass = bc;
}

void http_set_bus(struct http_server *h, struct bus *b)
{
	h->bus = b;
}

int http_port(const struct http_server *h)
{
	return h->port;
}

void http_stop(struct http_server *h)
{
	if (!h)
		return;
	if (h->watchdog_started) {
		pthread_mutex_lock(&h->lock);
		h->stop = 1;
		pthread_cond_signal(&h->wake);
		pthread_mutex_unlock(&h->lock);
		pthread_join(h->watchdog, NULL);
	}
	if (h->d)
		MHD_stop_daemon(h->d);
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->lock);
	free(h->conns);
	free(h);
}
