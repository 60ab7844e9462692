/* ws.c: WebSocket sessions: origin check, the socklab.v1 ops, bounded outgoing queues, watch replay. */
#include "ws.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "runs.h"

/* Queue refills from a watch replay happen when fewer than this are queued. */
#define WS_REPLAY_LOW 64
/* Lines read from a replay file per refill. */
#define WS_REPLAY_BATCH 256
/* Seconds the shutdown waits for runs to end after SIGKILL is due. */
#define WS_SHUTDOWN_EXTRA_S 3
/* Seconds it then waits for queued messages to reach their connections. */
#define WS_DRAIN_S 1

struct ws_msg {
	size_t len;
	unsigned char buf[]; /* LWS_PRE bytes for lws, then the message */
};

/* A run this connection watches: replaying its events.jsonl (f != NULL),
 * then live (registered with the run) until it finishes. */
struct ws_watch {
	char run[EV_RUN_ID_LEN + 1];
	FILE *f;
	int live;
};

/*
 * One WebSocket connection: lws allocates and frees it (per-session data).
 * Owned by the service thread. Runs know it only by id; the server's slot
 * table maps ids to live sessions.
 */
struct ws_session {
	uint64_t id; /* 0 until registered */
	struct lws *wsi;
	struct ws_server *srv;
	struct ws_msg **q; /* ring of WS_QUEUE_MAX */
	size_t q_head, q_count, q_bytes;
	unsigned char *rx; /* the message being assembled */
	size_t rx_len;
	int rx_skip;       /* discard the rest of an oversized message */
	int overflowed;    /* queue overflow: close without sending more */
	int close_after;   /* close once the queue is flushed */
	enum lws_close_status close_code;
	char close_reason[100];
	struct ws_watch watches[WS_MAX_WATCHES];
	int n_watches;
	char *line; /* getline buffer for replays */
	size_t line_cap;
};

/* Owned by the service thread. */
struct ws_server {
	const struct serve_config *cfg;
	struct http_counters *ctr;
	struct lws_context *ctx;
	struct lws_vhost *vh;       /* the WebSocket listener */
	struct lws_vhost *internal; /* no listener: run pipes and the signalfd */
	struct run_mgr *runs;
	int http_port;
	int signal_fd;
	struct ws_session *slots[WS_MAX_SESSIONS];
	uint64_t next_serial;
	int stopping;
	int stop_now;
	lws_sorted_usec_list_t sul_stop;
};

/* ---- sessions ---- */

static struct ws_session *session_find(struct ws_server *srv, uint64_t id)
{
	struct ws_session *s = srv->slots[id % WS_MAX_SESSIONS];

	return s && s->id == id ? s : NULL;
}

static int session_register(struct ws_server *srv, struct ws_session *s)
{
	size_t i;

	for (i = 0; i < WS_MAX_SESSIONS; i++) {
		if (srv->slots[i])
			continue;
		s->id = ++srv->next_serial * WS_MAX_SESSIONS + i;
		srv->slots[i] = s;
		return 0;
	}
	return -ENOSPC;
}

static void queue_clear(struct ws_session *s)
{
	while (s->q_count > 0) {
		free(s->q[s->q_head]);
		s->q_head = (s->q_head + 1) % WS_QUEUE_MAX;
		s->q_count--;
	}
	s->q_bytes = 0;
}

static void overflow(struct ws_session *s)
{
	http_count(s->srv->ctr, HTTP_C_QUEUE_OVERFLOWS, 1);
	http_count(s->srv->ctr, HTTP_C_MESSAGES_DROPPED, (long)s->q_count + 1);
	queue_clear(s);
	s->overflowed = 1;
	lws_callback_on_writable(s->wsi);
}

/* Queue one text message. Never blocks; on overflow the connection is closed. */
static void enqueue(struct ws_session *s, const char *data, size_t len)
{
	struct ws_msg *m;

	if (s->overflowed) {
		http_count(s->srv->ctr, HTTP_C_MESSAGES_DROPPED, 1);
		return;
	}
	if (s->close_after || !s->q)
		return;
	if (s->q_count >= WS_QUEUE_MAX || s->q_bytes + len > WS_QUEUE_BYTES) {
		overflow(s);
		return;
	}
	m = malloc(sizeof *m + LWS_PRE + len);
	if (!m) {
		overflow(s);
		return;
	}
	m->len = len;
	memcpy(m->buf + LWS_PRE, data, len);
	s->q[(s->q_head + s->q_count) % WS_QUEUE_MAX] = m;
	s->q_count++;
	s->q_bytes += len;
	lws_callback_on_writable(s->wsi);
}

/* Queue a JSON object (stolen). */
static void send_json(struct ws_session *s, json_t *o)
{
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)
		       : NULL;

	if (text)
		enqueue(s, text, strlen(text));
	free(text);
	json_decref(o);
}

static void set_opt_string(json_t *o, const char *key, const char *v)
{
	json_object_set_new(o, key, v ? json_string(v) : json_null());
}

static void send_error(struct ws_session *s, const char *code, const char *param,
		       const char *message, const char *tag, const char *run)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);

	if (!o)
		return;
	if (param && *param)
		json_object_set_new(o, "param", json_string(param));
	if (run)
		json_object_set_new(o, "run", json_string(run));
	set_opt_string(o, "tag", tag);
	send_json(s, o);
}

static void close_after_flush(struct ws_session *s, enum lws_close_status code,
			      const char *reason)
{
	s->close_after = 1;
	s->close_code = code;
	snprintf(s->close_reason, sizeof s->close_reason, "%s", reason);
	lws_callback_on_writable(s->wsi);
}

static void watch_drop(struct ws_session *s, int i)
{
	if (s->watches[i].f)
		fclose(s->watches[i].f);
	memmove(&s->watches[i], &s->watches[i + 1],
		(size_t)(s->n_watches - i - 1) * sizeof s->watches[0]);
	s->n_watches--;
}

static void session_cleanup(struct ws_session *s)
{
	struct ws_server *srv = s->srv;

	if (!s->id)
		return;
	if (srv->runs)
		runs_session_closed(srv->runs, s->id);
	while (s->n_watches > 0)
		watch_drop(s, s->n_watches - 1);
	queue_clear(s);
	free(s->q);
	free(s->rx);
	free(s->line);
	srv->slots[s->id % WS_MAX_SESSIONS] = NULL;
	http_count(srv->ctr, HTTP_C_SESSIONS, -1);
	s->id = 0;
}

/* ---- watch replay ---- */

/* Move replayed lines into the queue while it is short. At the end of a
 * file the watch turns live if the run is still going (everything it has
 * written so far has been read: the file is appended to before any line is
 * delivered, on this same thread), else it is done. */
static void pump_replays(struct ws_session *s)
{
	int i = 0, n = 0;

	while (i < s->n_watches && s->q_count < WS_REPLAY_LOW && !s->overflowed) {
		struct ws_watch *w = &s->watches[i];
		ssize_t len;
		struct run *r;

		if (!w->f) {
			i++;
			continue;
		}
		if (n++ >= WS_REPLAY_BATCH)
			break;
		len = getline(&s->line, &s->line_cap, w->f);
		if (len > 0 && s->line[len - 1] == '\n') {
			enqueue(s, s->line, (size_t)len - 1);
			continue;
		}
		if (len > 0)
			continue; /* a torn last line (a crashed server); skip it */
		fclose(w->f);
		w->f = NULL;
		r = s->srv->runs ? runs_find(s->srv->runs, w->run) : NULL;
		if (r && runs_watch(r, s->id) == 0) {
			w->live = 1;
			i++;
			continue;
		}
		if (r)
			send_error(s, "limit", "run", "too many connections watch this run", NULL,
				   w->run);
		watch_drop(s, i);
	}
}

static int has_replay(const struct ws_session *s)
{
	int i;

	for (i = 0; i < s->n_watches; i++)
		if (s->watches[i].f)
			return 1;
	return 0;
}

/* ---- run hooks ---- */

static void hook_line(void *arg, const struct run *r, const char *line, size_t len)
{
	struct ws_server *srv = arg;
	uint64_t owner = run_owner(r);
	struct ws_session *s = session_find(srv, owner);
	const uint64_t *ids;
	size_t i, n;

	if (s)
		enqueue(s, line, len);
	n = run_watchers(r, &ids);
	for (i = 0; i < n; i++) {
		if (ids[i] == owner)
			continue;
		s = session_find(srv, ids[i]);
		if (s)
			enqueue(s, line, len);
	}
}

static void hook_finished(void *arg, const struct run *r)
{
	struct ws_server *srv = arg;
	const uint64_t *ids;
	size_t i, n = run_watchers(r, &ids);

	for (i = 0; i < n; i++) {
		struct ws_session *s = session_find(srv, ids[i]);
		int k;
		for (k = 0; s && k < s->n_watches; k++) {
			if (s->watches[k].live && !strcmp(s->watches[k].run, run_id(r))) {
				watch_drop(s, k);
				break;
			}
		}
	}
}

/* ---- ops ---- */

static void op_run(struct ws_session *s, json_t *msg, const char *tag)
{
	json_t *lab = json_object_get(msg, "lab");
	struct run_error e;
	char id[EV_RUN_ID_LEN + 1];

	if (!json_is_string(lab)) {
		send_error(s, "bad_request", "lab", "'lab' must be a string naming a lab", tag, NULL);
		return;
	}
	if (runs_start(s->srv->runs, s->id, json_string_value(lab),
		       json_object_get(msg, "params"), tag, id, &e) < 0) {
		send_error(s, e.code, e.param, e.message, tag, NULL);
		return;
	}
	send_json(s, json_pack("{s:s, s:s, s:s?, s:s}", "type", "run.accepted", "run", id, "tag",
			       tag, "lab", json_string_value(lab)));
}

static const char *run_arg(struct ws_session *s, json_t *msg, const char *tag)
{
	const char *id = json_string_value(json_object_get(msg, "run"));

	if (!id || !ev_valid_run_id(id)) {
		send_error(s, "bad_request", "run", "'run' must be a run id (16 lowercase hex digits)",
			   tag, NULL);
		return NULL;
	}
	return id;
}

static void op_cancel(struct ws_session *s, json_t *msg, const char *tag)
{
	const char *id = run_arg(s, msg, tag);
	struct run_error e;

	if (!id)
		return;
	if (runs_cancel(s->srv->runs, s->id, id, &e) < 0) {
		send_error(s, e.code, e.param, e.message, tag, id);
		return;
	}
	send_json(s, json_pack("{s:s, s:s, s:s?}", "type", "cancel.accepted", "run", id, "tag",
			       tag));
}

static void op_watch(struct ws_session *s, json_t *msg, const char *tag)
{
	const char *id = run_arg(s, msg, tag);
	char path[4096];
	struct ws_watch *w;
	FILE *f;
	int i;

	if (!id)
		return;
	for (i = 0; i < s->n_watches; i++) {
		if (!strcmp(s->watches[i].run, id)) {
			send_error(s, "bad_request", "run", "this connection already watches that run",
				   tag, id);
			return;
		}
	}
	if (s->n_watches >= WS_MAX_WATCHES) {
		char m[128];
		snprintf(m, sizeof m, "a connection may watch at most %d runs at once",
			 WS_MAX_WATCHES);
		send_error(s, "limit", NULL, m, tag, id);
		return;
	}
	f = NULL;
	if (runs_bundle_path(s->srv->cfg->data, id, "events.jsonl", path, sizeof path) == 0)
		f = fopen(path, "re");
	if (!f) {
		send_error(s, "unknown_run", "run", "no such run", tag, id);
		return;
	}
	w = &s->watches[s->n_watches++];
	memset(w, 0, sizeof *w);
	memcpy(w->run, id, EV_RUN_ID_LEN + 1);
	w->f = f;
	send_json(s, json_pack("{s:s, s:s, s:s?, s:b}", "type", "watch.accepted", "run", id, "tag",
			       tag, "live", runs_find(s->srv->runs, id) != NULL));
	lws_callback_on_writable(s->wsi);
}

static void op_ping(struct ws_session *s, json_t *msg, const char *tag)
{
	send_json(s, json_pack("{s:s, s:s?}", "type", "pong", "tag", tag));
}

static const struct {
	const char *name;
	void (*fn)(struct ws_session *s, json_t *msg, const char *tag);
} ops[] = {
	{"run", op_run},
	{"cancel", op_cancel},
	{"watch", op_watch},
	{"ping", op_ping},
	{NULL, NULL},
};

static void handle_message(struct ws_session *s, const char *buf, size_t len)
{
	json_error_t jerr;
	json_t *msg = json_loadb(buf, len, 0, &jerr);
	json_t *jtag;
	const char *op, *tag = NULL;
	char m[300];
	int i;

	if (!msg) {
		snprintf(m, sizeof m, "message is not valid JSON: %s (at byte %d)", jerr.text,
			 jerr.position);
		send_error(s, "bad_request", NULL, m, NULL, NULL);
		return;
	}
	if (!json_is_object(msg)) {
		send_error(s, "bad_request", NULL, "message must be a JSON object", NULL, NULL);
		goto out;
	}
	jtag = json_object_get(msg, "tag");
	if (jtag && (!json_is_string(jtag) || strlen(json_string_value(jtag)) > RUN_TAG_MAX)) {
		snprintf(m, sizeof m, "'tag' must be a string of at most %d bytes", RUN_TAG_MAX);
		send_error(s, "bad_request", "tag", m, NULL, NULL);
		goto out;
	}
	tag = json_string_value(jtag);
	op = json_string_value(json_object_get(msg, "op"));
	for (i = 0; op && ops[i].name; i++) {
		if (!strcmp(ops[i].name, op)) {
			ops[i].fn(s, msg, tag);
			goto out;
		}
	}
	if (op)
		snprintf(m, sizeof m, "unknown op '%.40s'; expected run, cancel, watch or ping", op);
	else
		snprintf(m, sizeof m, "'op' is missing or not a string; expected run, cancel, "
				      "watch or ping");
	send_error(s, "bad_request", "op", m, tag, NULL);
out:
	json_decref(msg);
}

/* ---- lws callbacks ---- */

static const char *hdr(struct lws *wsi, enum lws_token_indexes t, char *buf, size_t len)
{
	int n = lws_hdr_total_length(wsi, t);

	if (n <= 0)
		return NULL;
	if ((size_t)n >= len || lws_hdr_copy(wsi, buf, (int)len, t) < 0)
		return ""; /* too long to be anything we allow */
	return buf;
}

static int on_receive(struct ws_session *s, const void *in, size_t len)
{
	char m[128];
	int final = lws_is_final_fragment(s->wsi) && !lws_remaining_packet_payload(s->wsi);

	if (s->close_after || s->overflowed)
		return 0;
	if (s->rx_skip) {
		if (final)
			s->rx_skip = 0;
		return 0;
	}
	if (lws_frame_is_binary(s->wsi)) {
		s->rx_len = 0;
		s->rx_skip = !final;
		send_error(s, "bad_request", NULL, "messages must be text frames holding JSON", NULL,
			   NULL);
		return 0;
	}
	/* The limit is checked before anything is buffered. */
	if (s->rx_len + len > CONFIG_MAX_MESSAGE_BYTES) {
		s->rx_len = 0;
		snprintf(m, sizeof m, "message too large: at most %d bytes",
			 CONFIG_MAX_MESSAGE_BYTES);
		send_error(s, "bad_request", NULL, m, NULL, NULL);
		close_after_flush(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too large");
		return 0;
	}
	if (!s->rx) {
		s->rx = malloc(CONFIG_MAX_MESSAGE_BYTES);
		if (!s->rx)
			return -1;
	}
	memcpy(s->rx + s->rx_len, in, len);
	s->rx_len += len;
	if (final) {
		size_t n = s->rx_len;
		s->rx_len = 0;
		handle_message(s, (const char *)s->rx, n);
	}
	return 0;
}

static int on_writeable(struct ws_session *s)
{
	struct ws_msg *m;
	int n;

	if (s->overflowed) {
		static const char why[] = "outgoing queue overflow: the client reads too slowly";
		lws_close_reason(s->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)why,
				 sizeof why - 1);
		return -1;
	}
	if (s->q_count == 0)
		pump_replays(s);
	if (s->q_count > 0) {
		m = s->q[s->q_head];
		s->q_head = (s->q_head + 1) % WS_QUEUE_MAX;
		s->q_count--;
		s->q_bytes -= m->len;
		n = lws_write(s->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
		free(m);
		if (n < 0)
			return -1;
		if (s->q_count > 0 || has_replay(s) || s->close_after)
			lws_callback_on_writable(s->wsi);
		return 0;
	}
	if (s->close_after) {
		lws_close_reason(s->wsi, s->close_code, (unsigned char *)s->close_reason,
				 strlen(s->close_reason));
		return -1;
	}
	if (has_replay(s))
		lws_callback_on_writable(s->wsi);
	return 0;
}

static int cb_session(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		      size_t len)
{
	struct ws_server *srv = lws_context_user(lws_get_context(wsi));
	struct ws_session *s = user;
	char origin[300], host[300];

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		/* Reject cross-site pages here: lws does not check Origin. */
		if (!config_origin_allowed(srv->cfg, srv->http_port,
					   hdr(wsi, WSI_TOKEN_ORIGIN, origin, sizeof origin),
					   hdr(wsi, WSI_TOKEN_HOST, host, sizeof host)))
			return -1;
		return srv->stopping ? -1 : 0;
	case LWS_CALLBACK_ESTABLISHED:
		memset(s, 0, sizeof *s);
		s->wsi = wsi;
		s->srv = srv;
		s->q = calloc(WS_QUEUE_MAX, sizeof *s->q);
		if (!s->q || session_register(srv, s) < 0) {
			free(s->q);
			s->q = NULL;
			return -1;
		}
		http_count(srv->ctr, HTTP_C_SESSIONS, 1);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		return s && s->id ? on_receive(s, in, len) : -1;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return s && s->id ? on_writeable(s) : -1;
	case LWS_CALLBACK_CLOSED:
		if (s)
			session_cleanup(s);
		return 0;
	default:
		return 0;
	}
}

/* protocols[0] catches WebSocket clients that asked for no subprotocol. */
static int cb_default(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		      size_t len)
{
	if (reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION)
		return -1;
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static void stop_deadline(lws_sorted_usec_list_t *sul)
{
	struct ws_server *srv = lws_container_of(sul, struct ws_server, sul_stop);

	srv->stop_now = 1;
}

static void begin_stop(struct ws_server *srv)
{
	if (srv->stopping) {
		srv->stop_now = 1; /* a second signal: do not wait any longer */
		return;
	}
	srv->stopping = 1;
	runs_shutdown(srv->runs);
	lws_sul_schedule(srv->ctx, 0, &srv->sul_stop, stop_deadline,
			 (lws_usec_t)(RUN_KILL_GRACE_S + WS_SHUTDOWN_EXTRA_S) * LWS_US_PER_SEC);
}

static int cb_signal(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		     size_t len)
{
	struct ws_server *srv = lws_context_user(lws_get_context(wsi));
	struct signalfd_siginfo si;
	ssize_t n;

	if (reason != LWS_CALLBACK_RAW_RX_FILE)
		return 0;
	for (;;) {
		n = read(lws_get_socket_fd(wsi), &si, sizeof si);
		if (n != (ssize_t)sizeof si)
			break;
		if (si.ssi_signo == SIGCHLD)
			runs_reap(srv->runs);
		else if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM)
			begin_stop(srv);
	}
	/* SIGCHLD coalesces: a reap pass covers every child that exited. */
	runs_reap(srv->runs);
	return 0;
}

static const struct lws_protocols ws_protocols[] = {
	{"socklab-default", cb_default, 0, 0, 0, NULL, 0},
	{WS_PROTOCOL, cb_session, sizeof(struct ws_session), 4096, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0},
};

static const struct lws_protocols internal_protocols[] = {
	{"socklab-internal", cb_default, 0, 0, 0, NULL, 0},
	{RUNS_PIPE_PROTOCOL, runs_pipe_callback, 0, 0, 0, NULL, 0},
	{"socklab-signal", cb_signal, 0, 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0},
};

/* Idle connections get a ping, and are dropped when they stop answering. */
static const lws_retry_bo_t idle_policy = {
	.secs_since_valid_ping = 30,
	.secs_since_valid_hangup = 70,
};

static void lws_log(int level, const char *line)
{
	fprintf(stderr, "socklab serve: lws: %s", line);
}

int ws_create(struct ws_server **out_srv, const struct serve_config *cfg,
	      struct http_counters *counters, int signal_fd, char *err, size_t errlen)
{
	struct lws_context_creation_info info;
	struct run_hooks hooks;
	struct ws_server *srv;
	lws_sock_file_fd_type fd;
	int rc;

	srv = calloc(1, sizeof *srv);
	if (!srv) {
		close(signal_fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	srv->cfg = cfg;
	srv->ctr = counters;
	srv->signal_fd = signal_fd;
	srv->http_port = cfg->http_port;

	/* The library is a debug build: quiet it before it says anything. */
	lws_set_log_level(LLL_ERR, lws_log);
	memset(&info, 0, sizeof info);
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.user = srv;
	srv->ctx = lws_create_context(&info);
	if (!srv->ctx) {
		snprintf(err, errlen, "could not create the WebSocket context");
		rc = -EIO;
		goto out;
	}

	memset(&info, 0, sizeof info);
	info.vhost_name = "ws";
	info.port = cfg->ws_port;
	info.iface = cfg->listen;
	/* Without this an IPv4 iface silently listens on every address. */
	if (!cfg->listen_v6)
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	info.protocols = ws_protocols;
	info.retry_and_idle_policy = &idle_policy;
	info.user = srv;
	srv->vh = lws_create_vhost(srv->ctx, &info);
	if (!srv->vh || lws_get_vhost_listen_port(srv->vh) <= 0) {
		snprintf(err, errlen, "cannot listen for WebSocket on %s port %d", cfg->listen,
			 cfg->ws_port);
		rc = -EADDRINUSE;
		goto out;
	}

	memset(&info, 0, sizeof info);
	info.vhost_name = "internal";
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = internal_protocols;
	info.user = srv;
	srv->internal = lws_create_vhost(srv->ctx, &info);
	if (!srv->internal) {
		snprintf(err, errlen, "could not create the internal vhost");
		rc = -EIO;
		goto out;
	}

	hooks.line = hook_line;
	hooks.finished = hook_finished;
	hooks.arg = srv;
	rc = runs_create(&srv->runs, cfg, srv->ctx, srv->internal, &hooks, counters, err, errlen);
	if (rc < 0)
		goto out;

	fd.filefd = signal_fd;
	srv->signal_fd = -1; /* lws owns it now, or has closed it */
	if (!lws_adopt_descriptor_vhost(srv->internal, LWS_ADOPT_RAW_FILE_DESC, fd,
					"socklab-signal", NULL)) {
		snprintf(err, errlen, "could not watch signals");
		rc = -EIO;
		goto out;
	}
	rc = 0;
out:
	if (rc < 0) {
		if (srv->signal_fd >= 0)
			close(srv->signal_fd);
		ws_destroy(srv);
		srv = NULL;
	}
	*out_srv = srv;
	return rc;
}

int ws_port(const struct ws_server *w)
{
	return lws_get_vhost_listen_port(w->vh);
}

void ws_set_http_port(struct ws_server *w, int port)
{
	w->http_port = port;
}

/* Messages still queued for any connection. */
static int queued_anywhere(const struct ws_server *w)
{
	size_t i;

	for (i = 0; i < WS_MAX_SESSIONS; i++)
		if (w->slots[i] && w->slots[i]->q_count > 0 && !w->slots[i]->overflowed)
			return 1;
	return 0;
}

int ws_run(struct ws_server *w)
{
	int draining = 0;

	for (;;) {
		if (lws_service(w->ctx, 0) < 0)
			break;
		if (!w->stopping)
			continue;
		if (w->stop_now)
			break;
		if (runs_active(w->runs) > 0)
			continue;
		/* Every run has ended: give connections a moment to receive
		 * the last events (each run's run.end) before closing. */
		if (!queued_anywhere(w))
			break;
		if (!draining) {
			draining = 1;
			lws_sul_schedule(w->ctx, 0, &w->sul_stop, stop_deadline,
					 (lws_usec_t)WS_DRAIN_S * LWS_US_PER_SEC);
		}
	}
	return 0;
}

void ws_destroy(struct ws_server *w)
{
	if (!w)
		return;
	/* Runs first (with nobody left to tell), then the connections. */
	if (w->ctx)
		lws_sul_cancel(&w->sul_stop);
	runs_destroy(w->runs);
	w->runs = NULL;
	if (w->ctx)
		lws_context_destroy(w->ctx);
	free(w);
}
