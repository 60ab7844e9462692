/* http.c: the dashboard assets and the REST API over libmicrohttpd (its own polling thread). */
#include "http.h"

#include <arpa/inet.h>
#include <dirent.h>
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
#include "event.h"
#include "lab.h"
#include "runs.h"
#include "version.h"
#include "ws.h"

/* Longest request path served; a longer one is answered with 414. */
#define HTTP_PATH_MAX 512
/* Runs listed by GET /api/runs. */
#define HTTP_RUNS_LIST_MAX 100
/* Largest meta.json read. */
#define HTTP_META_MAX (256 * 1024)

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

/* ---- the server ---- */

struct http_server {
	struct MHD_Daemon *d;
	const struct serve_config *cfg; /* read-only */
	struct http_counters *ctr;
	int ws_port;
	int port;
	struct timespec started;
};

static void add_common_headers(struct http_server *h, struct MHD_Connection *c,
			       struct MHD_Response *r)
{
	char csp[CONFIG_URL_MAX + 512], host[300];
	const char *hh = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);

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

	return respond_json(h, c, MHD_HTTP_OK,
			    json_pack("{s:s, s:s, s:I, s:I, s:o}", "status", "ok", "version",
				      SOCKLAB_VERSION, "runs_active",
				      (json_int_t)http_counters_get(k, HTTP_C_RUNS_ACTIVE),
				      "uptime_s", (json_int_t)uptime_s(h), "counters", counters));
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

	json_object_set_new(limits, "max_classes", json_integer(cfg->max_classes));
	json_object_set_new(limits, "max_class_viewers", json_integer(cfg->max_class_viewers));
	json_object_set_new(limits, "msg_rate", json_integer(cfg->msg_rate));
	return respond_json(h, c, MHD_HTTP_OK,
			    json_pack("{s:s, s:i, s:s, s:s, s:s?, s:o, s:s, s:{s:b}}", "version",
				      SOCKLAB_VERSION, "ws_port", h->ws_port, "ws_path", "/",
				      "ws_protocol", WS_PROTOCOL, "ws_url",
				      cfg->public_ws_url[0] ? cfg->public_ws_url : NULL, "limits",
				      limits, "byo_host", cfg->byo_bind, "classroom",
				      "secret_required", cfg->instructor_secret[0] != '\0'));
}

static json_t *load_meta(struct http_server *h, const char *id)
{
	char path[PATH_MAX];
	char *text;
	json_t *j;

	if (runs_bundle_path(h->cfg->data, id, "meta.json", path, sizeof path) < 0)
		return NULL;
	text = runs_read_small(path, HTTP_META_MAX);
	j = text ? json_loads(text, 0, NULL) : NULL;
	free(text);
	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

static const char *str_field(const json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? v : "";
}

/* Newest "created" first; the id breaks ties so the order is stable. */
static int newest_first(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int d = strcmp(str_field(y, "created"), str_field(x, "created"));

	return d ? d : strcmp(str_field(y, "id"), str_field(x, "id"));
}

static enum MHD_Result api_runs(struct http_server *h, struct MHD_Connection *c)
{
	char dir[PATH_MAX];
	json_t **metas = NULL, *out;
	size_t n = 0, cap = 0, i;
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof dir, "%s/runs", h->cfg->data);
	d = opendir(dir);
	for (de = d ? readdir(d) : NULL; de; de = readdir(d)) {
		json_t *m;
		if (!ev_valid_run_id(de->d_name))
			continue;
		m = load_meta(h, de->d_name);
		if (!m)
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			json_t **nm = realloc(metas, nc * sizeof *nm);
			if (!nm) {
				json_decref(m);
				break;
			}
			metas = nm;
			cap = nc;
		}
		metas[n++] = m;
	}
	if (d)
		closedir(d);
	if (n > 1)
		qsort(metas, n, sizeof *metas, newest_first);
	out = json_array();
	for (i = 0; i < n; i++) {
		if (i < HTTP_RUNS_LIST_MAX)
			json_array_append_new(out, metas[i]);
		else
			json_decref(metas[i]);
	}
	free(metas);
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
				      const char *id)
{
	char path[PATH_MAX];
	struct MHD_Response *r;
	struct stat st;
	off_t len;
	int fd = -1;

	if (runs_bundle_path(h->cfg->data, id, "events.jsonl", path, sizeof path) == 0)
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

/* The run's packet capture (labs that capture write DATA/runs/ID/capture.pcap).
 * Served once the run has ended: while it runs, the file is still growing. */
static enum MHD_Result api_run_capture(struct http_server *h, struct MHD_Connection *c,
				       const char *id, const json_t *meta)
{
	char path[PATH_MAX], disp[96];
	struct MHD_Response *r;
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
	/* MHD owns fd from here and closes it. */
	r = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
	if (!r) {
		close(fd);
		return MHD_NO;
	}
	snprintf(disp, sizeof disp, "attachment; filename=\"socklab-%s.pcap\"", id);
	MHD_add_response_header(r, "Content-Disposition", disp);
	return respond(h, c, MHD_HTTP_OK, r, "application/vnd.tcpdump.pcap");
}

static enum MHD_Result api_run(struct http_server *h, struct MHD_Connection *c, const char *rest)
{
	char id[EV_RUN_ID_LEN + 1];
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
	const char *sub = slash ? slash : "";
	json_t *meta;

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
	if (!strcmp(sub, "/capture.pcap")) {
		enum MHD_Result ret = api_run_capture(h, c, id, meta);
		json_decref(meta);
		return ret;
	}
	json_decref(meta);
	if (!strcmp(sub, "/events"))
		return api_run_events(h, c, id);
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
	static int first_call_seen;
	struct http_server *h = cls;

	/* Answering on the first call makes MHD close the connection; the
	 * second call is where a keep-alive response goes. */
	if (!*con_cls) {
		*con_cls = &first_call_seen;
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
				     "only GET and HEAD are supported");
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
		return api_run(h, c, url + 10);
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

int http_start(struct http_server **out, const struct serve_config *cfg, int ws_port,
	       struct http_counters *counters, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct http_server *h;
	const union MHD_DaemonInfo *info;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

	memset(&ss, 0, sizeof ss);
	if (cfg->listen_v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)cfg->http_port);
		inet_pton(AF_INET6, cfg->listen, &a->sin6_addr);
		flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)cfg->http_port);
		inet_pton(AF_INET, cfg->listen, &a->sin_addr);
	}
	h = calloc(1, sizeof *h);
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	h->cfg = cfg;
	h->ctr = counters;
	h->ws_port = ws_port;
	clock_gettime(CLOCK_MONOTONIC, &h->started);
	/* The logger must be the first option to catch every message. */
	h->d = MHD_start_daemon(flags, (uint16_t)cfg->http_port, NULL, NULL, handler, h,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)256,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
	if (!h->d) {
		snprintf(err, errlen, "cannot listen for HTTP on %s port %d", cfg->listen,
			 cfg->http_port);
		free(h);
		return -EADDRINUSE;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info ? info->port : cfg->http_port;
	*out = h;
	return 0;
}

int http_port(const struct http_server *h)
{
	return h->port;
}

void http_stop(struct http_server *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
