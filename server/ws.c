/* ws.c: the WebSocket server's transport and sessions: lws callbacks, bounded outgoing queues, receive and write, start and stop. */
#include "ws.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "bus.h"
#include "ws_int.h"
#include "ws_mask.h"

/* ---- sessions ---- */

struct ws_session *ws_session_find(struct ws_server *srv, uint64_t id)
{
	struct ws_session *s = srv->slots[id % srv->n_slots];

	return s && s->id == id ? s : NULL;
}

/* Ask lws for a writeable callback; a session without a connection (the
 * offline handler below) has nothing to ask. */
void ws_want_write(struct lws *wsi)
{
	if (wsi)
		lws_callback_on_writable(wsi);
}

static int session_register(struct ws_server *srv, struct ws_session *s)
{
	size_t i, k;

	if (srv->n_sessions >= srv->n_slots)
		return -ENOSPC;
	/* Start the search after the last slot handed out: O(1) on average. */
	for (k = 0; k < srv->n_slots; k++) {
		i = (size_t)((srv->next_serial + k) % srv->n_slots);
		if (srv->slots[i])
			continue;
		s->id = ++srv->next_serial * srv->n_slots + i;
		srv->slots[i] = s;
		srv->n_sessions++;
		return 0;
	}
	return -ENOSPC;
}

/* Bytes queued for s change by delta (here and in the server-wide total). */
static void queue_account(struct ws_session *s, long delta)
{
	s->q_bytes = (size_t)((long)s->q_bytes + delta);
	s->srv->q_total = (size_t)((long)s->srv->q_total + delta);
	http_count(s->srv->ctr, HTTP_C_QUEUED_BYTES, delta);
}

static void queue_clear(struct ws_session *s)
{
	while (s->q_count > 0) {
		free(s->q[s->q_head]);
		s->q_head = (s->q_head + 1) % s->q_cap;
		s->q_count--;
	}
	queue_account(s, -(long)s->q_bytes);
}

static int queue_grow(struct ws_session *s)
{
	size_t cap = s->q_cap ? s->q_cap * 2 : 8, i;
	struct ws_msg **q;

	if (cap > WS_QUEUE_MAX)
		cap = WS_QUEUE_MAX;
	q = malloc(cap * sizeof *q);
	if (!q)
		return -ENOMEM;
	for (i = 0; i < s->q_count; i++)
		q[i] = s->q[(s->q_head + i) % s->q_cap];
	free(s->q);
	s->q = q;
	s->q_cap = cap;
	s->q_head = 0;
	return 0;
}

static void overflow_why(struct ws_session *s, const char *why)
{
	s->overflow_why = why;
	http_count(s->srv->ctr, HTTP_C_QUEUE_OVERFLOWS, 1);
	http_count(s->srv->ctr, HTTP_C_MESSAGES_DROPPED, (long)s->q_count + 1);
	queue_clear(s);
	s->overflowed = 1;
	ws_want_write(s->wsi);
}

static void overflow(struct ws_session *s)
{
	overflow_why(s, "outgoing queue overflow: the client reads too slowly");
}

/*
 * Make room for len more bytes under --queue-total: close the sessions that
 * hold the most queued bytes (the slowest readers) until it fits. Returns 0
 * when it fits, -1 when s itself was closed. The scan over every slot runs
 * only when the server-wide cap is reached.
 */
static int queue_reclaim(struct ws_session *s, size_t len)
{
	struct ws_server *srv = s->srv;

	while (srv->q_total + len > srv->q_total_max) {
		struct ws_session *v = NULL;
		size_t i;
		for (i = 0; i < srv->n_slots; i++) {
			struct ws_session *o = srv->slots[i];
			if (o && !o->overflowed && o->q_bytes > 0 && (!v || o->q_bytes > v->q_bytes))
				v = o;
		}
		if (!v)
			return 0; /* nothing queued anywhere: one message over is fine */
		http_count(srv->ctr, HTTP_C_MEMORY_CLOSES, 1);
		overflow_why(v, "the server's outgoing memory is full and this client reads "
				"the slowest");
		if (v == s)
			return -1;
	}
	return 0;
}

/* Queue one text message. Never blocks; on overflow the connection is closed. */
void ws_enqueue(struct ws_session *s, const char *data, size_t len)
{
	struct ws_msg *m;

	if (s->overflowed) {
		http_count(s->srv->ctr, HTTP_C_MESSAGES_DROPPED, 1);
		return;
	}
	if (s->close_after)
		return;
	if (s->q_count >= WS_QUEUE_MAX || s->q_bytes + len > WS_QUEUE_BYTES) {
		overflow(s);
		return;
	}
	if (s->srv->q_total + len > s->srv->q_total_max && queue_reclaim(s, len) < 0) {
		http_count(s->srv->ctr, HTTP_C_MESSAGES_DROPPED, 1);
		return;
	}
	/* The queue starts small and doubles: a viewer that only follows a
	 * class never needs more than a few slots. */
	if (s->q_count == s->q_cap && queue_grow(s) < 0) {
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
	s->q[(s->q_head + s->q_count) % s->q_cap] = m;
	s->q_count++;
	queue_account(s, (long)len);
	ws_want_write(s->wsi);
}

/* Queue a JSON object (stolen). */
void ws_send_json(struct ws_session *s, json_t *o)
{
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)
		       : NULL;

	if (text)
		ws_enqueue(s, text, strlen(text));
	free(text);
	json_decref(o);
}

static void set_opt_string(json_t *o, const char *key, const char *v)
{
	json_object_set_new(o, key, v ? json_string(v) : json_null());
}

void ws_send_error(struct ws_session *s, const char *code, const char *param,
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
	ws_send_json(s, o);
}

static void close_after_flush(struct ws_session *s, enum lws_close_status code,
			      const char *reason)
{
	s->close_after = 1;
	s->close_code = code;
	snprintf(s->close_reason, sizeof s->close_reason, "%s", reason);
	ws_want_write(s->wsi);
}

void ws_watch_drop(struct ws_session *s, int i)
{
	if (s->watches[i].f)
		fclose(s->watches[i].f);
	memmove(&s->watches[i], &s->watches[i + 1],
		(size_t)(s->n_watches - i - 1) * sizeof s->watches[0]);
	s->n_watches--;
}

/* ---- classes: fan-out ---- */

int64_t ws_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void session_cleanup(struct ws_session *s)
{
	struct ws_server *srv = s->srv;

	if (!s->id)
		return;
	/* First the class: a class run whose instructor may come back is
	 * handed to nobody (owner 0) before the session's runs are cancelled. */
	ws_class_detach(s, "the instructor left");
	if (srv->runs) {
		/* Let its runs drain (to nobody) while they are stopped. */
		if (s->throttling)
			runs_pause_owner(srv->runs, s->id, 0);
		runs_session_closed(srv->runs, s->id);
	}
	if (s->addr_counted) {
		struct ws_addr *a = ws_addr_find(&srv->addrs, s->addr);
		if (a) {
			a->sessions--;
			ws_addr_put(&srv->addrs, a, ws_now_us());
		}
		s->addr_counted = 0;
	}
	while (s->n_watches > 0)
		ws_watch_drop(s, s->n_watches - 1);
	queue_clear(s);
	free(s->q);
	free(s->rx);
	free(s->line);
	srv->slots[s->id % srv->n_slots] = NULL;
	srv->n_sessions--;
	http_count(srv->ctr, HTTP_C_SESSIONS, -1);
	s->id = 0;
}

/* ---- lws callbacks ---- */

const char *ws_hdr(struct lws *wsi, enum lws_token_indexes t, char *buf, size_t len)
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
	/* The rate limit comes first, before anything of the message is
	 * buffered or parsed: every message counts, whatever it holds. Over the
	 * limit the message is skipped unread; the client is told once per
	 * burst, not once per message. */
	if (s->rx_len == 0 && lws_is_first_fragment(s->wsi)) {
		if (!class_bucket_take(&s->rate, s->srv->cfg->msg_rate,
				       2.0 * s->srv->cfg->msg_rate, ws_now_us())) {
			http_count(s->srv->ctr, HTTP_C_RATE_LIMITED, 1);
			s->rx_skip = !final;
			if (!s->rate_told) {
				s->rate_told = 1;
				snprintf(m, sizeof m,
					 "too many messages: at most %d per second; messages over "
					 "the limit are dropped",
					 s->srv->cfg->msg_rate);
				ws_send_error(s, "limit", NULL, m, NULL, NULL);
			}
			return 0;
		}
		s->rate_told = 0;
	}
	if (lws_frame_is_binary(s->wsi)) {
		s->rx_len = 0;
		s->rx_skip = !final;
		ws_send_error(s, "bad_request", NULL, "messages must be text frames holding JSON", NULL,
			   NULL);
		return 0;
	}
	/* The limit is checked before anything is buffered. */
	if (s->rx_len + len > CONFIG_MAX_MESSAGE_BYTES) {
		s->rx_len = 0;
		snprintf(m, sizeof m, "message too large: at most %d bytes",
			 CONFIG_MAX_MESSAGE_BYTES);
		ws_send_error(s, "bad_request", NULL, m, NULL, NULL);
		close_after_flush(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too large");
		return 0;
	}
	/* A message that arrives whole is handled in place: a viewer that
	 * only ever sends small ops never holds a receive buffer. */
	if (final && s->rx_len == 0) {
		ws_handle_message(s, in, len);
		return 0;
	}
	if (s->rx_len + len > s->rx_cap) {
		size_t cap = s->rx_cap ? s->rx_cap : 1024;
		unsigned char *nb;
		while (cap < s->rx_len + len)
			cap *= 2;
		if (cap > CONFIG_MAX_MESSAGE_BYTES)
			cap = CONFIG_MAX_MESSAGE_BYTES;
		nb = realloc(s->rx, cap);
		if (!nb)
			return -1;
		s->rx = nb;
		s->rx_cap = cap;
	}
	memcpy(s->rx + s->rx_len, in, len);
	s->rx_len += len;
	if (final) {
		size_t n = s->rx_len;
		s->rx_len = 0;
		ws_handle_message(s, (const char *)s->rx, n);
	}
	return 0;
}

static int on_writeable(struct ws_session *s)
{
	struct ws_msg *m;
	int n;

	if (s->overflowed) {
		const char *why = s->overflow_why ? s->overflow_why : "outgoing queue overflow";
		lws_close_reason(s->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)why,
				 strlen(why));
		return -1;
	}
	/* A write of the fan-out sweep failed (ws_fanout.c): the connection is broken. */
	if (s->tx_failed)
		return -1;
	if (s->q_count == 0)
		ws_pump_replays(s);
	if (s->q_count > 0) {
		m = s->q[s->q_head];
		s->q_head = (s->q_head + 1) % s->q_cap;
		s->q_count--;
		queue_account(s, -(long)m->len);
		n = lws_write(s->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
		free(m);
		if (n < 0)
			return -1;
		if (s->throttling && s->q_count <= WS_RESUME_MSGS && s->q_bytes <= WS_RESUME_BYTES) {
			s->throttling = 0;
			runs_pause_owner(s->srv->runs, s->id, 0);
		}
		if (s->q_count > 0 || ws_has_replay(s) || s->close_after || ws_class_pending(s))
			ws_want_write(s->wsi);
		return 0;
	}
	if (s->cls) {
		n = ws_class_write(s);
		if (n < 0)
			return -1;
		if (n > 0) {
			if (ws_class_pending(s) || ws_has_replay(s) || s->close_after)
				ws_want_write(s->wsi);
			return 0;
		}
	}
	if (s->close_after) {
		lws_close_reason(s->wsi, s->close_code, (unsigned char *)s->close_reason,
				 strlen(s->close_reason));
		return -1;
	}
	if (ws_has_replay(s))
		ws_want_write(s->wsi);
	return 0;
}

static int cb_session(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		      size_t len)
{
	struct ws_server *srv = lws_context_user(lws_get_context(wsi));
	struct ws_session *s = user;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return ws_admit(srv, wsi);
	case LWS_CALLBACK_ESTABLISHED:
		memset(s, 0, sizeof *s);
		s->wsi = wsi;
		s->srv = srv;
		/* ws_admit() checked both limits just before, on this thread. */
		if (session_register(srv, s) < 0 || ws_session_admit(srv, s) < 0) {
			static const char why[] = "the server is full";
			session_cleanup(s);
			lws_close_reason(wsi, (enum lws_close_status)1013 /* try again later */, (unsigned char *)why,
					 sizeof why - 1);
			return -1;
		}
		/* Bound what the kernel buffers for one connection too: a stalled
		 * viewer then holds at most this much (twice, in kernel terms)
		 * plus its read position in a class ring. */
		{
			int sndbuf = WS_SNDBUF, one = 1;
			int fd = lws_get_socket_fd(wsi);
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
			/* Events are small and must go out at once: without this,
			 * Nagle holds a message back until the viewer's delayed
			 * ACK of the previous one (tens of ms). */
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		}
		http_count(srv->ctr, HTTP_C_SESSIONS, 1);
		ws_cluster_hello(s);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (!s || !s->id)
			return -1;
		if (ws_mask_unmasked(lws_get_socket_fd(wsi))) {
			static const char why[] = "unmasked frame: a client must mask every frame "
						  "(RFC 6455 5.1)";
			lws_close_reason(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR, (unsigned char *)why,
					 sizeof why - 1);
			return -1;
		}
		return on_receive(s, in, len);
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

int ws_adopt(struct ws_server *w, int fd)
{
	int rc = 0;

	pthread_mutex_lock(&w->adopt_lock);
	if (w->adopt_n >= WS_ADOPT_MAX)
		rc = -EAGAIN;
	else
		w->adopt_q[(w->adopt_head + w->adopt_n++) % WS_ADOPT_MAX] = fd;
	pthread_mutex_unlock(&w->adopt_lock);
	if (rc == 0)
		lws_cancel_service(w->ctx);
	return rc;
}

/* On the lws thread (EVENT_WAIT_CANCELLED): adopt what the front door queued. */
static void adopt_pending(struct ws_server *srv)
{
	int fds[64];
	size_t n, i;

	do {
		pthread_mutex_lock(&srv->adopt_lock);
		for (n = 0; n < 64 && srv->adopt_n > 0; n++) {
			fds[n] = srv->adopt_q[srv->adopt_head];
			srv->adopt_head = (srv->adopt_head + 1) % WS_ADOPT_MAX;
			srv->adopt_n--;
		}
		pthread_mutex_unlock(&srv->adopt_lock);
		for (i = 0; i < n; i++) {
			/* lws reads the upgrade request from its first byte (the
			 * front door only peeked): the mask follower sees it all.
			 * The accept path's FILTER_NETWORK_CONNECTION is not called
			 * for adopted sockets, so the fd is watched here. */
			ws_mask_watch(fds[i]);
			/* On failure lws has closed the fd. */
			if (!lws_adopt_socket_vhost(srv->vh, fds[i]))
				http_count(srv->ctr, HTTP_C_WS_REFUSED, 1);
		}
	} while (n == 64);
}

/* A plain HTTP request for the WebSocket path, without an upgrade: 426 with
 * a reason, written whole (as ws_auth.c's refusals) and the connection closed. */
static int refuse_plain_http(struct lws *wsi)
{
	static const char body[] = "{\"error\":{\"code\":\"upgrade_required\",\"message\":"
				   "\"this is the WebSocket endpoint: connect with subprotocol "
				   WS_PROTOCOL "\"}}";
	unsigned char buf[LWS_PRE + 512];
	int n = snprintf((char *)buf + LWS_PRE, sizeof buf - LWS_PRE,
			 "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\nCache-Control: no-store\r\n\r\n%s",
			 sizeof body - 1, body);

	if (n > 0 && (size_t)n < sizeof buf - LWS_PRE)
		lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_FINAL);
	return -1;
}

/* protocols[0] catches WebSocket clients that asked for no subprotocol. */
static int cb_default(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		      size_t len)
{
	struct ws_server *srv = lws_context_user(lws_get_context(wsi));

	switch (reason) {
	case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
		/* Every connection accepted on --ws-port: follow its frames
		 * from the first byte. */
		ws_mask_watch((int)(intptr_t)in);
		return 0;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return -1;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (srv) {
			adopt_pending(srv);
			if (srv->bus)
				ws_remote_wake(srv);
			/* --nats: classes across replicas. */
			if (srv->bclass)
				ws_cluster_wake(srv);
		}
		return 0;
	case LWS_CALLBACK_HTTP:
		return refuse_plain_http(wsi);
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
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
	/* Nobody can come back to a class now, and its students are told. */
	ws_classes_end_all(srv, "the server is stopping");
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
	      struct http_counters *counters, struct bundle_store *store, int signal_fd,
	      char *err, size_t errlen)
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
	pthread_mutex_init(&srv->adopt_lock, NULL);
	srv->adopt_lock_ready = 1;
	ws_mask_service_thread();
	srv->http_port = cfg->http_port;
	srv->n_slots = (size_t)cfg->max_conns;
	srv->q_total_max = (size_t)cfg->queue_total_mib * 1024 * 1024;
	srv->slots = calloc(srv->n_slots, sizeof *srv->slots);
	srv->classes = calloc((size_t)cfg->max_classes, sizeof *srv->classes);
	/* Room for every session's address and as many again that only
	 * remember failed sign-ins. */
	if (!srv->slots || !srv->classes || ws_addr_init(&srv->addrs, 2 * srv->n_slots) < 0) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}

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

	/* The vhost of every WebSocket connection: those the front door hands
	 * over (ws_adopt()) and, with --ws-port, those of its own listener. */
	memset(&info, 0, sizeof info);
	info.vhost_name = "ws";
	if (cfg->ws_port >= 0) {
		info.port = cfg->ws_port;
		info.iface = cfg->listen;
		/* Without this an IPv4 iface silently listens on every address. */
		if (!cfg->listen_v6)
			info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	} else {
		info.port = CONTEXT_PORT_NO_LISTEN;
	}
	info.protocols = ws_protocols;
	info.retry_and_idle_policy = &idle_policy;
	info.user = srv;
	srv->vh = lws_create_vhost(srv->ctx, &info);
	if (!srv->vh || (cfg->ws_port >= 0 && lws_get_vhost_listen_port(srv->vh) <= 0)) {
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

	rc = ws_fanout_init(srv, err, errlen);
	if (rc < 0)
		goto out;

	hooks.line = ws_hook_line;
	hooks.finished = ws_hook_finished;
	hooks.queued = ws_hook_queued;
	hooks.admitted = ws_hook_admitted;
	hooks.refused = ws_hook_refused;
	hooks.arg = srv;
	rc = runs_create(&srv->runs, cfg, srv->ctx, srv->internal, &hooks, counters, store, err,
			 errlen);
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
	return w->cfg->ws_port >= 0 ? lws_get_vhost_listen_port(w->vh) : -1;
}

/* Any thread: another replica's run has news for watches (bus.h). */
static void bus_wake(void *arg)
{
	struct ws_server *w = arg;

	lws_cancel_service(w->ctx);
}

void ws_set_bus_class(struct ws_server *w, struct bus_class *bc)
{
	w->bclass = bc;
}

/* Any thread: the wake bus_class_start() is given. */
void ws_wake(void *arg)
{
	bus_wake(arg);
}

void ws_set_bus(struct ws_server *w, struct bus *b)
{
	w->bus = b;
	if (b)
		bus_set_wake(b, bus_wake, w);
}

void ws_set_http_port(struct ws_server *w, int port)
{
	w->http_port = port;
}

/* Messages still queued for any connection. */
static int queued_anywhere(const struct ws_server *w)
{
	size_t i;

	for (i = 0; i < w->n_slots; i++)
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
	if (w->classes)
		ws_classes_end_all(w, "the server stopped");
	ws_fanout_cleanup(w);
	runs_destroy(w->runs);
	w->runs = NULL;
	if (w->ctx)
		lws_context_destroy(w->ctx);
	/* Connections handed over that were never adopted (front_close() has
	 * stopped the front door: nothing is added any more). */
	if (w->adopt_lock_ready) {
		while (w->adopt_n > 0) {
			close(w->adopt_q[w->adopt_head]);
			w->adopt_head = (w->adopt_head + 1) % WS_ADOPT_MAX;
			w->adopt_n--;
		}
		pthread_mutex_destroy(&w->adopt_lock);
	}
	free(w->slots);
	free(w->classes);
	ws_addr_cleanup(&w->addrs);
	ws_mask_cleanup();
	free(w);
}

/* ---- the op handler without a connection ---- */

struct ws_offline {
	struct ws_server *srv;
	struct ws_session s;
};

int ws_offline_create(struct ws_offline **out, const struct serve_config *cfg,
		      struct http_counters *counters)
{
	struct ws_offline *o = calloc(1, sizeof *o);
	struct run_hooks hooks;
	struct ws_server *srv = o ? calloc(1, sizeof *srv) : NULL;
	char err[256];
	int rc = -ENOMEM;

	*out = NULL;
	if (!srv)
		goto fail;
	o->srv = srv;
	srv->cfg = cfg;
	srv->ctr = counters;
	srv->signal_fd = -1;
	srv->http_port = cfg->http_port;
	srv->n_slots = (size_t)cfg->max_conns;
	srv->q_total_max = (size_t)cfg->queue_total_mib * 1024 * 1024;
	srv->slots = calloc(srv->n_slots, sizeof *srv->slots);
	srv->classes = calloc((size_t)cfg->max_classes, sizeof *srv->classes);
	if (!srv->slots || !srv->classes || ws_addr_init(&srv->addrs, 2 * srv->n_slots) < 0)
		goto fail;
	memset(&hooks, 0, sizeof hooks);
	/* No context: the manager checks every request and starts none. */
	rc = runs_create(&srv->runs, cfg, NULL, NULL, &hooks, counters, NULL, err, sizeof err);
	if (rc < 0)
		goto fail;
	o->s.srv = srv;
	rc = session_register(srv, &o->s);
	if (rc < 0)
		goto fail;
	http_count(srv->ctr, HTTP_C_SESSIONS, 1);
	/* As if from 127.0.0.1, counted like any client's address. */
	{
		struct sockaddr_in sin = {.sin_family = AF_INET};
		struct ws_addr *a;

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (ws_addr_key((struct sockaddr *)&sin, sizeof sin, o->s.addr) == 0) {
			a = ws_addr_get(&srv->addrs, o->s.addr, ws_now_us());
			if (a) {
				a->sessions++;
				o->s.addr_counted = 1;
			}
		}
	}
	*out = o;
	return 0;
fail:
	if (o) {
		ws_destroy(o->srv);
		free(o);
	}
	return rc;
}

json_t *ws_offline_message(struct ws_offline *o, const char *buf, size_t len)
{
	struct ws_session *s = &o->s;
	json_t *out = json_array();
	size_t i;

	ws_handle_message(s, buf, len);
	for (i = 0; out && i < s->q_count; i++) {
		struct ws_msg *m = s->q[(s->q_head + i) % s->q_cap];
		json_t *reply = json_loadb((const char *)m->buf + LWS_PRE, m->len, 0, NULL);

		json_array_append_new(out, reply ? reply : json_string("(not JSON)"));
	}
	queue_clear(s);
	return out;
}

void ws_offline_destroy(struct ws_offline *o)
{
	if (!o)
		return;
	session_cleanup(&o->s);
	ws_destroy(o->srv);
	free(o);
}
