/* ws.c: WebSocket sessions: origin check, the socklab.v1 ops, bounded outgoing queues, watch replay. */
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

#include "class.h"
#include "runs.h"
#include "ws_addr.h"
#include "ws_mask.h"

/* Queue refills from a watch replay happen when fewer than this are queued. */
#define WS_REPLAY_LOW 64
/* Lines read from a replay file per refill. */
#define WS_REPLAY_BATCH 256
/* Seconds the shutdown waits for runs to end after SIGKILL is due. */
#define WS_SHUTDOWN_EXTRA_S 3
/* Seconds it then waits for queued messages to reach their connections. */
#define WS_DRAIN_S 1

/* Largest frame of batched class messages (a JSON array) for a late reader. */
#define WS_BATCH_BYTES 16384
/* Kernel send buffer per connection (bytes; Linux doubles it). */
#define WS_SNDBUF 65536
/* Failed sign-ins one connection may make before it is refused outright. */
#define WS_SIGNIN_FAILS_MAX 5
/* Sign-in attempts from all addresses together, per second and the burst
 * allowed: a backstop against guessing from many addresses at once. One
 * address alone is held to WS_ADDR_SIGNIN_RATE (ws_addr.h), so it can never
 * drain this bucket and lock the instructor out. */
#define WS_SIGNIN_RATE 10.0
#define WS_SIGNIN_BURST 50.0
/* A run owner's queue above either mark pauses its runs' output (the child
 * blocks in write); below both low marks it is resumed. */
#define WS_PAUSE_MSGS 1024
#define WS_PAUSE_BYTES (1024u * 1024)
#define WS_RESUME_MSGS 256
#define WS_RESUME_BYTES (256u * 1024)
/* Names listed in a class.members message (the count is always exact). */
#define WS_MEMBERS_LISTED 100
/* Bytes a class ring may hold per entry allowed (--class-buffer). */
#define WS_RING_BYTES_PER_ENTRY 2048

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
 * A class: an instructor's session, its students, the view they all follow
 * and the ring of messages (the class runs' events and class notices) every
 * one of them reads at its own position. Owned by the service thread; freed
 * only by class_end(), which first detaches every session.
 */
struct ws_class {
	struct ws_server *srv;
	char code[CLASS_CODE_LEN + 1];
	uint64_t instructor;                /* session id */
	struct class_ring ring;
	char run[EV_RUN_ID_LEN + 1];        /* the latest class run, "" before the first */
	int run_live;                       /* it has not ended yet */
	json_t *run_msg;                    /* its class.run notice (lab, params) */
	int paused;                         /* the view: paused or playing */
	json_int_t pos;                     /* events shown; -1: follow live */
	double speed;                       /* events per second; 0: as they come */
	unsigned view_ver;                  /* bumped on every change */
	uint64_t *members;                  /* session ids of its students */
	size_t n_members;
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
	struct ws_msg **q; /* ring of q_cap slots */
	size_t q_head, q_count, q_bytes;
	unsigned char *rx; /* the message being assembled */
	size_t rx_len;
	int rx_skip;       /* discard the rest of an oversized message */
	int overflowed;    /* queue overflow: close without sending more */
	const char *overflow_why; /* the close reason that goes with it */
	int close_after;   /* close once the queue is flushed */
	enum lws_close_status close_code;
	char close_reason[100];
	struct ws_watch watches[WS_MAX_WATCHES];
	int n_watches;
	char *line; /* getline buffer for replays */
	size_t line_cap;
	size_t q_cap;       /* slots allocated in q (grows up to WS_QUEUE_MAX) */
	size_t rx_cap;      /* bytes allocated in rx */
	/* Classroom mode. */
	int instructor;     /* signed in with the instructor secret */
	int signin_fails;
	struct ws_class *cls; /* the class it teaches (teaching) or attends */
	int teaching;
	size_t member_idx;  /* its index in cls->members */
	uint64_t ring_pos;  /* next cls->ring entry to send */
	unsigned view_sent; /* cls->view_ver last sent */
	int need_resync;    /* it fell behind the ring: send class.resync */
	int members_dirty;  /* teaching: send class.members */
	struct class_bucket rate;
	int rate_told;      /* the client was told it is over --msg-rate */
	int throttling;     /* its runs' output is paused until its queue drains */
	unsigned char addr[16]; /* its address's key in srv->addrs */
	int addr_counted;   /* it is counted in that entry's sessions */
	char name[CLASS_NAME_BYTES + 1];
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
	struct ws_session **slots; /* cfg->max_conns */
	size_t n_slots, n_sessions;
	struct ws_class **classes; /* cfg->max_classes */
	struct class_bucket signin;
	struct ws_addr_table addrs; /* sessions and sign-ins per client address */
	size_t q_total;             /* bytes queued for every session together */
	size_t q_total_max;         /* cfg->queue_total_mib */
	unsigned char batch[LWS_PRE + WS_BATCH_BYTES]; /* one batched frame at a time */
	uint64_t next_serial;
	int stopping;
	int stop_now;
	lws_sorted_usec_list_t sul_stop;
};

/* ---- sessions ---- */

static struct ws_session *session_find(struct ws_server *srv, uint64_t id)
{
	struct ws_session *s = srv->slots[id % srv->n_slots];

	return s && s->id == id ? s : NULL;
}

/* Ask lws for a writeable callback; a session without a connection (the
 * offline handler below) has nothing to ask. */
static void want_write(struct lws *wsi)
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
	want_write(s->wsi);
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
static void enqueue(struct ws_session *s, const char *data, size_t len)
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
	want_write(s->wsi);
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
	want_write(s->wsi);
}

static void watch_drop(struct ws_session *s, int i)
{
	if (s->watches[i].f)
		fclose(s->watches[i].f);
	memmove(&s->watches[i], &s->watches[i + 1],
		(size_t)(s->n_watches - i - 1) * sizeof s->watches[0]);
	s->n_watches--;
}

/* ---- classes: fan-out ---- */

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A session reading the class ring: its students and its instructor. */
static void ring_reader_wake(struct ws_class *c, struct ws_session *s, uint64_t old_head)
{
	if (!s)
		return;
	if (s->ring_pos < c->ring.tail) {
		/* It has lost messages: it will be told to resync (re-read the
		 * run from its bundle) instead of the server keeping more. */
		if (!s->need_resync) {
			s->need_resync = 1;
			http_count(c->srv->ctr, HTTP_C_CLASS_RESYNCS, 1);
		}
		want_write(s->wsi);
	} else if (s->ring_pos == old_head) {
		/* It was waiting for exactly this message; the others already
		 * have a write pending. */
		want_write(s->wsi);
	}
}

/* Append one message to the class ring and wake the readers that need it. */
static void class_push(struct ws_class *c, const char *data, size_t len)
{
	struct ws_server *srv = c->srv;
	uint64_t old_head = c->ring.head;
	size_t i;

	if (class_ring_push(&c->ring, data, len) < 0) {
		/* Out of memory or a message larger than the ring: everyone
		 * misses it, so everyone resyncs. */
		class_ring_clear(&c->ring);
		c->ring.head++;
		c->ring.tail = c->ring.head;
	}
	ring_reader_wake(c, session_find(srv, c->instructor), old_head);
	for (i = 0; i < c->n_members; i++)
		ring_reader_wake(c, session_find(srv, c->members[i]), old_head);
}

static void class_push_json(struct ws_class *c, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);

	if (text)
		class_push(c, text, strlen(text));
	free(text);
}

static json_t *class_view_json(const struct ws_class *c)
{
	return json_pack("{s:s, s:s, s:s?, s:b, s:o, s:f}", "type", "class.view", "class", c->code,
			 "run", c->run[0] ? c->run : NULL, "paused", c->paused, "pos",
			 c->pos < 0 ? json_null() : json_integer(c->pos), "speed", c->speed);
}

/* Something of the class is still to be sent to s. */
static int class_pending(const struct ws_session *s)
{
	const struct ws_class *c = s->cls;

	return c && (s->need_resync || s->view_sent != c->view_ver || s->members_dirty ||
		     s->ring_pos < c->ring.head);
}

/* Write one JSON object (stolen) now, from the writeable callback. */
static int write_json_now(struct ws_session *s, json_t *o)
{
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)
		       : NULL;
	unsigned char *buf;
	size_t len;
	int n = -1;

	json_decref(o);
	if (!text)
		return -1;
	len = strlen(text);
	buf = malloc(LWS_PRE + len);
	if (buf) {
		memcpy(buf + LWS_PRE, text, len);
		n = lws_write(s->wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
	}
	free(buf);
	free(text);
	return n < 0 ? -1 : 1;
}

/* One class message for s, in the writeable callback (one message per
 * callback). Returns 1 after writing, 0 when nothing was due, -1 to close. */
static int class_write(struct ws_session *s)
{
	struct ws_class *c = s->cls;
	const struct class_msg *m, *next;
	unsigned char *batch;
	json_t *o;
	size_t i, len;

	if (s->need_resync || s->ring_pos < c->ring.tail) {
		s->need_resync = 0;
		s->ring_pos = c->ring.head;
		return write_json_now(s, json_pack("{s:s, s:s, s:s?, s:b}", "type", "class.resync",
						   "class", c->code, "run",
						   c->run[0] ? c->run : NULL, "live", c->run_live));
	}
	if (s->view_sent != c->view_ver) {
		s->view_sent = c->view_ver;
		return write_json_now(s, class_view_json(c));
	}
	if (s->members_dirty) {
		s->members_dirty = 0;
		o = json_pack("{s:s, s:s, s:I, s:[]}", "type", "class.members", "class", c->code,
			      "count", (json_int_t)c->n_members, "names");
		for (i = 0; o && i < c->n_members && i < WS_MEMBERS_LISTED; i++) {
			struct ws_session *m2 = session_find(s->srv, c->members[i]);
			if (m2)
				json_array_append_new(json_object_get(o, "names"),
						      json_string(m2->name));
		}
		return write_json_now(s, o);
	}
	m = class_ring_get(&c->ring, s->ring_pos);
	if (!m)
		return 0;
	s->ring_pos++;
	next = class_ring_get(&c->ring, s->ring_pos);
	if (!next || m->len + next->len + 3 > WS_BATCH_BYTES) {
		/* The usual case: one message. The entry is shared by every
		 * reader: lws writes the frame header into the headroom in front
		 * of it and sends it at once (or keeps its own copy of what the
		 * socket did not take). */
		return lws_write(s->wsi, (unsigned char *)m->buf + LWS_PRE, m->len,
				 LWS_WRITE_TEXT) < 0
			       ? -1
			       : 1;
	}
	/* A reader that is behind is sent what it lacks as one JSON array (up to
	 * WS_BATCH_BYTES): one frame and one send instead of one per message,
	 * so it catches up instead of falling further behind. */
	batch = s->srv->batch + LWS_PRE;
	len = 0;
	batch[len++] = '[';
	for (;;) {
		memcpy(batch + len, m->buf + LWS_PRE, m->len);
		len += m->len;
		m = class_ring_get(&c->ring, s->ring_pos);
		if (!m || len + m->len + 2 > WS_BATCH_BYTES)
			break;
		batch[len++] = ',';
		s->ring_pos++;
	}
	batch[len++] = ']';
	return lws_write(s->wsi, batch, len, LWS_WRITE_TEXT) < 0 ? -1 : 1;
}

static void class_bump_view(struct ws_class *c)
{
	struct ws_server *srv = c->srv;
	struct ws_session *s;
	size_t i;

	c->view_ver++;
	s = session_find(srv, c->instructor);
	if (s)
		want_write(s->wsi);
	for (i = 0; i < c->n_members; i++) {
		s = session_find(srv, c->members[i]);
		if (s)
			want_write(s->wsi);
	}
}

static void class_members_changed(struct ws_class *c)
{
	struct ws_session *t = session_find(c->srv, c->instructor);

	if (t) {
		t->members_dirty = 1;
		want_write(t->wsi);
	}
}

static void member_remove(struct ws_session *s)
{
	struct ws_class *c = s->cls;
	size_t i = s->member_idx;

	if (i < c->n_members && c->members[i] == s->id) {
		c->members[i] = c->members[--c->n_members];
		if (i < c->n_members) {
			struct ws_session *moved = session_find(s->srv, c->members[i]);
			if (moved)
				moved->member_idx = i;
		}
		http_count(s->srv->ctr, HTTP_C_CLASS_VIEWERS, -1);
	}
	s->cls = NULL;
	s->need_resync = 0;
	class_members_changed(c);
}

/* End class c: tell and detach every student, free it. */
static void class_end(struct ws_class *c, const char *why)
{
	struct ws_server *srv = c->srv;
	struct ws_session *t = session_find(srv, c->instructor);
	size_t i;
	int k;

	for (i = 0; i < c->n_members; i++) {
		struct ws_session *s = session_find(srv, c->members[i]);
		if (!s)
			continue;
		s->cls = NULL;
		s->need_resync = 0;
		send_json(s, json_pack("{s:s, s:s, s:s, s:s?}", "type", "class.ended", "class",
				       c->code, "reason", why, "run", c->run[0] ? c->run : NULL));
	}
	http_count(srv->ctr, HTTP_C_CLASS_VIEWERS, -(long)c->n_members);
	http_count(srv->ctr, HTTP_C_CLASSES, -1);
	if (t) {
		t->cls = NULL;
		t->teaching = 0;
		t->members_dirty = 0;
	}
	for (k = 0; k < srv->cfg->max_classes; k++)
		if (srv->classes[k] == c)
			srv->classes[k] = NULL;
	class_ring_cleanup(&c->ring);
	json_decref(c->run_msg);
	free(c->members);
	free(c);
}

/* The session is going: end the class it teaches, or leave the one it attends. */
static void class_detach(struct ws_session *s, const char *why)
{
	if (!s->cls)
		return;
	if (s->teaching)
		class_end(s->cls, why);
	else
		member_remove(s);
}

static void session_cleanup(struct ws_session *s)
{
	struct ws_server *srv = s->srv;

	if (!s->id)
		return;
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
			ws_addr_put(&srv->addrs, a, now_us());
		}
		s->addr_counted = 0;
	}
	class_detach(s, "the instructor left");
	while (s->n_watches > 0)
		watch_drop(s, s->n_watches - 1);
	queue_clear(s);
	free(s->q);
	free(s->rx);
	free(s->line);
	srv->slots[s->id % srv->n_slots] = NULL;
	srv->n_sessions--;
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

	/* The class run's events go to the class ring, which the instructor
	 * reads too; everything else straight to the owner's queue. */
	if (s && s->teaching && s->cls && !strcmp(s->cls->run, run_id(r))) {
		class_push(s->cls, line, len);
	} else if (s) {
		enqueue(s, line, len);
		/* The owner lags: stop reading its runs' output, so the child
		 * waits for it instead of the run being cut off. */
		if (!s->throttling && !s->overflowed &&
		    (s->q_count >= WS_PAUSE_MSGS || s->q_bytes >= WS_PAUSE_BYTES)) {
			s->throttling = 1;
			runs_pause_owner(srv->runs, s->id, 1);
		}
	}
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
	int k;

	for (k = 0; k < srv->cfg->max_classes; k++)
		if (srv->classes[k] && !strcmp(srv->classes[k]->run, run_id(r)))
			srv->classes[k]->run_live = 0;

	for (i = 0; i < n; i++) {
		struct ws_session *s = session_find(srv, ids[i]);
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
	json_t *pcap = json_object_get(msg, "pcap");
	struct run_error e;
	char id[EV_RUN_ID_LEN + 1];

	if (!json_is_string(lab)) {
		send_error(s, "bad_request", "lab", "'lab' must be a string naming a lab", tag, NULL);
		return;
	}
	if (pcap && !json_is_string(pcap)) {
		send_error(s, "bad_request", "pcap", "'pcap' must be a capture file in base64", tag,
			   NULL);
		return;
	}
	/* "pcap": a recorded capture for a replay, uploaded with the request;
	 * "files": text files (programs) for a lab's upload parameters. */
	if (runs_start_files(s->srv->runs, s->id, json_string_value(lab),
			     json_object_get(msg, "params"), json_string_value(pcap),
			     json_object_get(msg, "files"), tag, id, &e) < 0) {
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
	want_write(s->wsi);
}

/* ---- classes: ops ---- */

static int require_teaching(struct ws_session *s, const char *what, const char *tag)
{
	char m[160];

	if (s->cls && s->teaching)
		return 1;
	if (s->cls)
		snprintf(m, sizeof m, "only the class's instructor may %s", what);
	else if (s->instructor)
		snprintf(m, sizeof m, "open a class first (class.open) to %s", what);
	else
		snprintf(m, sizeof m, "sign in as the instructor to %s", what);
	send_error(s, "forbidden", NULL, m, tag, NULL);
	return 0;
}

static void op_signin(struct ws_session *s, json_t *msg, const char *tag)
{
	const char *secret = s->srv->cfg->instructor_secret;
	const char *given = json_string_value(json_object_get(msg, "secret"));
	struct ws_addr *a;
	int64_t now;
	int ok;

	if (s->instructor) {
		send_json(s, json_pack("{s:s, s:s, s:s?}", "type", "signin.accepted", "role",
				       "instructor", "tag", tag));
		return;
	}
	/* Failures drain the address's bucket (guessing from many connections
	 * of one client), a server-wide one (from many addresses) and a
	 * per-connection count. One address cannot empty the server-wide bucket
	 * (its own refills ten times slower), so it cannot lock out an
	 * instructor at another address. */
	now = now_us();
	a = s->addr_counted ? ws_addr_find(&s->srv->addrs, s->addr) : NULL;
	if (s->signin_fails >= WS_SIGNIN_FAILS_MAX || !a ||
	    !class_bucket_ready(&a->signin, WS_ADDR_SIGNIN_RATE, WS_ADDR_SIGNIN_BURST, now) ||
	    !class_bucket_ready(&s->srv->signin, WS_SIGNIN_RATE, WS_SIGNIN_BURST, now)) {
		http_count(s->srv->ctr, HTTP_C_SIGNIN_FAILURES, 1);
		send_error(s, "limit", "secret",
			   "too many sign-in attempts; wait a moment (or reconnect) and try again",
			   tag, NULL);
		return;
	}
	/* With no secret (a loopback-only server) whoever reaches it may
	 * teach; otherwise the secret must match, compared in constant time. */
	ok = !secret[0] || (given && class_secret_equal(secret, given));
	if (!ok) {
		class_bucket_take(&a->signin, WS_ADDR_SIGNIN_RATE, WS_ADDR_SIGNIN_BURST, now);
		class_bucket_take(&s->srv->signin, WS_SIGNIN_RATE, WS_SIGNIN_BURST, now);
		s->signin_fails++;
		http_count(s->srv->ctr, HTTP_C_SIGNIN_FAILURES, 1);
		send_error(s, "forbidden", "secret", "wrong instructor secret", tag, NULL);
		return;
	}
	s->instructor = 1;
	send_json(s, json_pack("{s:s, s:s, s:s?}", "type", "signin.accepted", "role", "instructor",
			       "tag", tag));
}

static struct ws_class *class_find(struct ws_server *srv, const char *code)
{
	int k;

	for (k = 0; k < srv->cfg->max_classes; k++)
		if (srv->classes[k] && !strcmp(srv->classes[k]->code, code))
			return srv->classes[k];
	return NULL;
}

static void op_class_open(struct ws_session *s, json_t *msg, const char *tag)
{
	struct ws_server *srv = s->srv;
	struct ws_class *c;
	char m[160];
	int k, slot = -1, tries;

	if (!s->instructor) {
		send_error(s, "forbidden", NULL, "sign in as the instructor to open a class", tag,
			   NULL);
		return;
	}
	if (s->cls) {
		send_error(s, "bad_request", NULL,
			   s->teaching ? "this connection already teaches a class"
				       : "leave the class you attend first",
			   tag, NULL);
		return;
	}
	for (k = 0; k < srv->cfg->max_classes && slot < 0; k++)
		if (!srv->classes[k])
			slot = k;
	if (slot < 0) {
		snprintf(m, sizeof m, "the server allows at most %d classes at once",
			 srv->cfg->max_classes);
		send_error(s, "limit", NULL, m, tag, NULL);
		return;
	}
	c = calloc(1, sizeof *c);
	if (!c || class_ring_init(&c->ring, (size_t)srv->cfg->class_buffer,
				  (size_t)srv->cfg->class_buffer * WS_RING_BYTES_PER_ENTRY,
				  LWS_PRE) < 0) {
		free(c);
		send_error(s, "internal", NULL, "out of memory", tag, NULL);
		return;
	}
	for (tries = 0; tries < 16; tries++)
		if (class_code_new(c->code) < 0 || !class_find(srv, c->code))
			break;
	if (!c->code[0] || class_find(srv, c->code)) {
		class_ring_cleanup(&c->ring);
		free(c);
		send_error(s, "internal", NULL, "could not make a class code", tag, NULL);
		return;
	}
	c->srv = srv;
	c->instructor = s->id;
	c->pos = -1;
	srv->classes[slot] = c;
	s->cls = c;
	s->teaching = 1;
	s->ring_pos = c->ring.head;
	s->view_sent = c->view_ver;
	http_count(srv->ctr, HTTP_C_CLASSES, 1);
	send_json(s, json_pack("{s:s, s:s, s:i, s:s?}", "type", "class.opened", "class", c->code,
			       "max_viewers", srv->cfg->max_class_viewers, "tag", tag));
}

static void op_class_join(struct ws_session *s, json_t *msg, const char *tag)
{
	struct ws_server *srv = s->srv;
	const char *code_in = json_string_value(json_object_get(msg, "class"));
	const char *name_in = json_string_value(json_object_get(msg, "name"));
	char code[CLASS_CODE_LEN + 1], m[200];
	struct ws_class *c;
	uint64_t *mem;

	if (s->cls) {
		send_error(s, "bad_request", NULL,
			   s->teaching ? "an instructor cannot join a class"
				       : "this connection already attends a class; leave it first",
			   tag, NULL);
		return;
	}
	if (!code_in || class_code_parse(code_in, code) < 0) {
		snprintf(m, sizeof m, "'class' must be a class code of %d letters and digits",
			 CLASS_CODE_LEN);
		send_error(s, "bad_request", "class", m, tag, NULL);
		return;
	}
	if (!name_in) {
		send_error(s, "bad_request", "name", "'name' must be a string (your display name)",
			   tag, NULL);
		return;
	}
	if (class_name_parse(name_in, s->name, m, sizeof m) < 0) {
		send_error(s, "bad_param", "name", m, tag, NULL);
		return;
	}
	c = class_find(srv, code);
	if (!c) {
		send_error(s, "unknown_class", "class", "no class with that code is open", tag, NULL);
		return;
	}
	if (c->n_members >= (size_t)srv->cfg->max_class_viewers) {
		snprintf(m, sizeof m, "the class is full (at most %d students)",
			 srv->cfg->max_class_viewers);
		send_error(s, "limit", "class", m, tag, NULL);
		return;
	}
	mem = realloc(c->members, (c->n_members + 1) * sizeof *mem);
	if (!mem) {
		send_error(s, "internal", NULL, "out of memory", tag, NULL);
		return;
	}
	c->members = mem;
	s->member_idx = c->n_members;
	c->members[c->n_members++] = s->id;
	s->cls = c;
	s->teaching = 0;
	/* A new viewer starts at the newest message: what came before is in
	 * the run's bundle, which the page reads over HTTP. */
	s->ring_pos = c->ring.head;
	s->view_sent = c->view_ver;
	s->need_resync = 0;
	http_count(srv->ctr, HTTP_C_CLASS_VIEWERS, 1);
	class_members_changed(c);
	send_json(s, json_pack("{s:s, s:s, s:s, s:s?, s:b, s:O?, s:o, s:s?}", "type",
			       "class.joined", "class", c->code, "name", s->name, "run",
			       c->run[0] ? c->run : NULL, "live", c->run_live, "run_info", c->run_msg,
			       "view", class_view_json(c), "tag", tag));
}

static void op_class_leave(struct ws_session *s, json_t *msg, const char *tag)
{
	if (!s->cls || s->teaching) {
		send_error(s, "bad_request", NULL, "this connection attends no class", tag, NULL);
		return;
	}
	member_remove(s);
	send_json(s, json_pack("{s:s, s:s?}", "type", "class.left", "tag", tag));
}

static void op_class_run(struct ws_session *s, json_t *msg, const char *tag)
{
	struct ws_class *c = s->cls;
	json_t *lab = json_object_get(msg, "lab"), *params = json_object_get(msg, "params");
	json_t *files = json_object_get(msg, "files");
	struct run_error e;
	char id[EV_RUN_ID_LEN + 1], m[160];

	if (!require_teaching(s, "run labs in the class", tag))
		return;
	if (c->run_live) {
		snprintf(m, sizeof m, "the class run %s is still going; cancel it or wait", c->run);
		send_error(s, "limit", NULL, m, tag, c->run);
		return;
	}
	if (!json_is_string(lab)) {
		send_error(s, "bad_request", "lab", "'lab' must be a string naming a lab", tag, NULL);
		return;
	}
	/* "files": programs for a lab like own, uploaded as text (a student's
	 * program the instructor runs for everyone). */
	if (runs_start_files(s->srv->runs, s->id, json_string_value(lab), params, NULL, files, tag,
			     id, &e) < 0) {
		send_error(s, e.code, e.param, e.message, tag, NULL);
		return;
	}
	/* Its events start arriving on a later loop turn, after this notice. */
	memcpy(c->run, id, sizeof c->run);
	c->run_live = 1;
	json_decref(c->run_msg);
	c->run_msg = json_pack("{s:s, s:s, s:s, s:s, s:O}", "type", "class.run", "class", c->code,
			       "run", id, "lab", json_string_value(lab), "params",
			       json_is_object(params) ? params : json_object());
	if (c->run_msg && !json_is_object(params))
		json_object_set_new(c->run_msg, "params", json_object());
	/* The programs go to every student too: "try it myself" runs them. */
	if (c->run_msg && json_is_object(files))
		json_object_set(c->run_msg, "files", files);
	c->paused = 0;
	c->pos = -1;
	c->speed = 0;
	class_bump_view(c);
	if (c->run_msg)
		class_push_json(c, c->run_msg);
	send_json(s, json_pack("{s:s, s:s, s:s?, s:s, s:s}", "type", "run.accepted", "run", id,
			       "tag", tag, "lab", json_string_value(lab), "class", c->code));
}

static void op_class_view(struct ws_session *s, json_t *msg, const char *tag)
{
	struct ws_class *c = s->cls;
	json_t *paused = json_object_get(msg, "paused"), *pos = json_object_get(msg, "pos");
	json_t *speed = json_object_get(msg, "speed");

	if (!require_teaching(s, "control the class view", tag))
		return;
	if (paused && !json_is_boolean(paused)) {
		send_error(s, "bad_request", "paused", "'paused' must be true or false", tag, NULL);
		return;
	}
	if (pos && !json_is_null(pos) &&
	    (!json_is_integer(pos) || json_integer_value(pos) < 0 ||
	     json_integer_value(pos) > 100000000)) {
		send_error(s, "bad_request", "pos",
			   "'pos' must be null (follow live) or an event count from 0 to 100000000",
			   tag, NULL);
		return;
	}
	if (speed && (!json_is_number(speed) || json_number_value(speed) < 0 ||
		      json_number_value(speed) > 1000)) {
		send_error(s, "bad_request", "speed",
			   "'speed' must be events per second from 0 to 1000 (0: as they come)",
			   tag, NULL);
		return;
	}
	if (paused)
		c->paused = json_is_true(paused);
	if (pos)
		c->pos = json_is_null(pos) ? -1 : json_integer_value(pos);
	if (speed)
		c->speed = json_number_value(speed);
	class_bump_view(c);
}

static void op_class_end(struct ws_session *s, json_t *msg, const char *tag)
{
	char code[CLASS_CODE_LEN + 1];

	if (!require_teaching(s, "end the class", tag))
		return;
	memcpy(code, s->cls->code, sizeof code);
	class_end(s->cls, "ended by the instructor");
	send_json(s, json_pack("{s:s, s:s, s:s?}", "type", "class.ended", "class", code, "tag", tag));
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
	{"signin", op_signin},
	{"class.open", op_class_open},
	{"class.join", op_class_join},
	{"class.leave", op_class_leave},
	{"class.run", op_class_run},
	{"class.view", op_class_view},
	{"class.end", op_class_end},
	{NULL, NULL},
};

#define OPS_LIST                                                                               \
	"run, cancel, watch, ping, signin, class.open, class.join, class.leave, class.run, "  \
	"class.view or class.end"

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
		snprintf(m, sizeof m, "unknown op '%.40s'; expected %s", op, OPS_LIST);
	else
		snprintf(m, sizeof m, "'op' is missing or not a string; expected %s", OPS_LIST);
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
	/* The rate limit comes first, before anything of the message is
	 * buffered or parsed: every message counts, whatever it holds. Over the
	 * limit the message is skipped unread; the client is told once per
	 * burst, not once per message. */
	if (s->rx_len == 0 && lws_is_first_fragment(s->wsi)) {
		if (!class_bucket_take(&s->rate, s->srv->cfg->msg_rate,
				       2.0 * s->srv->cfg->msg_rate, now_us())) {
			http_count(s->srv->ctr, HTTP_C_RATE_LIMITED, 1);
			s->rx_skip = !final;
			if (!s->rate_told) {
				s->rate_told = 1;
				snprintf(m, sizeof m,
					 "too many messages: at most %d per second; messages over "
					 "the limit are dropped",
					 s->srv->cfg->msg_rate);
				send_error(s, "limit", NULL, m, NULL, NULL);
			}
			return 0;
		}
		s->rate_told = 0;
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
	/* A message that arrives whole is handled in place: a viewer that
	 * only ever sends small ops never holds a receive buffer. */
	if (final && s->rx_len == 0) {
		handle_message(s, in, len);
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
		handle_message(s, (const char *)s->rx, n);
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
	if (s->q_count == 0)
		pump_replays(s);
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
		if (s->q_count > 0 || has_replay(s) || s->close_after || class_pending(s))
			want_write(s->wsi);
		return 0;
	}
	if (s->cls) {
		n = class_write(s);
		if (n < 0)
			return -1;
		if (n > 0) {
			if (class_pending(s) || has_replay(s) || s->close_after)
				want_write(s->wsi);
			return 0;
		}
	}
	if (s->close_after) {
		lws_close_reason(s->wsi, s->close_code, (unsigned char *)s->close_reason,
				 strlen(s->close_reason));
		return -1;
	}
	if (has_replay(s))
		want_write(s->wsi);
	return 0;
}

/*
 * Refuse a WebSocket upgrade with an HTTP answer (RFC 6455 4.2.2: any status
 * other than 101) whose JSON body says why, in the same shape as the HTTP
 * API's errors, instead of dropping the connection. Runs in
 * FILTER_PROTOCOL_CONNECTION, before anything was sent; returns -1, which
 * makes lws close the connection once the answer is written.
 */
static int refuse_upgrade(struct ws_server *srv, struct lws *wsi, unsigned status,
			  const char *code, const char *message)
{
	unsigned char buf[LWS_PRE + 1024];
	unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
	json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)
		       : NULL;
	size_t n = text ? strlen(text) : 0;

	json_decref(j);
	http_count(srv->ctr, HTTP_C_WS_REFUSED, 1);
	if (!text)
		return -1;
	if (lws_add_http_header_status(wsi, status, &p, end) == 0 &&
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
					 (const unsigned char *)"application/json", 16, &p,
					 end) == 0 &&
	    lws_add_http_header_content_length(wsi, n, &p, end) == 0 &&
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
					 (const unsigned char *)"close", 5, &p, end) == 0 &&
	    lws_finalize_http_header(wsi, &p, end) == 0 && (size_t)(end - p) >= n) {
		memcpy(p, text, n);
		p += n;
		lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL);
	}
	free(text);
	return -1;
}

/* The admission checks of an upgrade, in FILTER_PROTOCOL_CONNECTION. */
static int admit(struct ws_server *srv, struct lws *wsi)
{
	char origin[300], host[300], m[160];
	const char *h = hdr(wsi, WSI_TOKEN_HOST, host, sizeof host);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	unsigned char key[16];
	struct ws_addr *a;

	if (!config_host_allowed(srv->cfg, h)) {
		http_count(srv->ctr, HTTP_C_BAD_HOST, 1);
		return refuse_upgrade(srv, wsi, HTTP_STATUS_FORBIDDEN, "bad_host",
				      "this server does not answer to that Host name; use its "
				      "address or a name given with --origin or --public-ws-url");
	}
	/* Reject cross-site pages here: lws does not check Origin. */
	if (!config_origin_allowed(srv->cfg, srv->http_port,
				   hdr(wsi, WSI_TOKEN_ORIGIN, origin, sizeof origin), h))
		return refuse_upgrade(srv, wsi, HTTP_STATUS_FORBIDDEN, "bad_origin",
				      "pages from this Origin may not connect; see --origin");
	if (srv->stopping)
		return refuse_upgrade(srv, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "stopping",
				      "the server is shutting down");
	if (srv->n_sessions >= srv->n_slots) {
		snprintf(m, sizeof m, "the server is full: %zu connections at once (--max-conns)",
			 srv->n_slots);
		return refuse_upgrade(srv, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "server_full", m);
	}
	if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &sl) < 0 ||
	    ws_addr_key((struct sockaddr *)&ss, sl, key) < 0)
		return refuse_upgrade(srv, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "internal",
				      "cannot tell the client's address");
	a = ws_addr_find(&srv->addrs, key);
	if (a && a->sessions >= srv->cfg->max_conns_per_addr) {
		snprintf(m, sizeof m,
			 "too many connections from your address: at most %d at once "
			 "(--max-conns-per-addr)",
			 srv->cfg->max_conns_per_addr);
		return refuse_upgrade(srv, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
				      "too_many_connections", m);
	}
	return 0;
}

/* The session s has just been established: count it for its address. */
static int session_admit(struct ws_server *srv, struct ws_session *s)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	struct ws_addr *a;

	if (getpeername(lws_get_socket_fd(s->wsi), (struct sockaddr *)&ss, &sl) < 0 ||
	    ws_addr_key((struct sockaddr *)&ss, sl, s->addr) < 0)
		return -1;
	a = ws_addr_get(&srv->addrs, s->addr, now_us());
	if (!a)
		return -1;
	a->sessions++;
	s->addr_counted = 1;
	return 0;
}

static int cb_session(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		      size_t len)
{
	struct ws_server *srv = lws_context_user(lws_get_context(wsi));
	struct ws_session *s = user;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return admit(srv, wsi);
	case LWS_CALLBACK_ESTABLISHED:
		memset(s, 0, sizeof *s);
		s->wsi = wsi;
		s->srv = srv;
		/* admit() checked both limits just before, on this thread. */
		if (session_register(srv, s) < 0 || session_admit(srv, s) < 0) {
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

/* protocols[0] catches WebSocket clients that asked for no subprotocol. */
static int cb_default(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		      size_t len)
{
	/* Every accepted connection: follow its frames from the first byte. */
	if (reason == LWS_CALLBACK_FILTER_NETWORK_CONNECTION)
		ws_mask_watch((int)(intptr_t)in);
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
	runs_destroy(w->runs);
	w->runs = NULL;
	if (w->ctx)
		lws_context_destroy(w->ctx);
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
			a = ws_addr_get(&srv->addrs, o->s.addr, now_us());
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

	handle_message(s, buf, len);
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
