/* ws_class.c: classroom mode on the WebSocket server: the per-class ring fan-out and the class ops. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "bus_class.h"
#include "ws_int.h"

/* A session reading the class ring: its students and its instructor.
 * direct: the fan-out sweep (ws_fanout.c) writes what it waits for. */
static void ring_reader_wake(struct ws_class *c, struct ws_session *s, uint64_t old_head,
			     int direct)
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
		ws_want_write(s->wsi);
	} else if (s->ring_pos == old_head && !direct) {
		/* It was waiting for exactly this message; the others already
		 * have a write pending. */
		ws_want_write(s->wsi);
	}
}

/* Append one message to the class ring and wake the readers that need it. */
void ws_class_push(struct ws_class *c, const char *data, size_t len)
{
	struct ws_server *srv = c->srv;
	uint64_t old_head = c->ring.head, old_tail = c->ring.tail;
	size_t i;
	int direct;

	if (class_ring_push(&c->ring, data, len) < 0) {
		/* Out of memory or a message larger than the ring: everyone
		 * misses it, so everyone resyncs. */
		class_ring_clear(&c->ring);
		c->ring.head++;
		c->ring.tail = c->ring.head;
	}
	direct = ws_fanout_due(c);
	/* With the sweep, only a ring that dropped messages can leave a
	 * reader behind its tail: otherwise there is nobody to look at. */
	if (direct && c->ring.tail == old_tail)
		return;
	ring_reader_wake(c, ws_session_find(srv, c->instructor), old_head, direct);
	for (i = 0; i < c->n_members; i++)
		ring_reader_wake(c, ws_session_find(srv, c->members[i]), old_head, direct);
}

void ws_class_push_json(struct ws_class *c, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);

	if (text)
		ws_class_push(c, text, strlen(text));
	free(text);
}

json_t *ws_class_view_json(const struct ws_class *c)
{
	return json_pack("{s:s, s:s, s:s?, s:b, s:o, s:f}", "type", "class.view", "class", c->code,
			 "run", c->run[0] ? c->run : NULL, "paused", c->paused, "pos",
			 c->pos < 0 ? json_null() : json_integer(c->pos), "speed", c->speed);
}

/* Something of the class is still to be sent to s. */
int ws_class_pending(const struct ws_session *s)
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

/* A student that rejoined has this event already (skip_run up to
 * skip_seq): 1 to pass over it. The first newer event of that run ends the
 * skipping: a run's events are in the ring in seq order. */
static int ring_skip(struct ws_session *s, const struct class_msg *m, size_t pre)
{
	long long seq;

	if (!class_msg_event(m->buf + pre, m->len, s->skip_run, &seq))
		return 0;
	if (seq <= s->skip_seq)
		return 1;
	s->skipping = 0;
	return 0;
}

/* One class message for s, in the writeable callback (one message per
 * callback). Returns 1 after writing, 0 when nothing was due, -1 to close. */
int ws_class_write(struct ws_session *s)
{
	struct ws_class *c = s->cls;
	const struct class_msg *m;
	const unsigned char *p;
	json_t *o;
	size_t i, len;
	uint64_t end;

	if (s->need_resync || s->ring_pos < c->ring.tail) {
		s->need_resync = 0;
		s->skipping = 0;
		s->ring_pos = c->ring.head;
		return write_json_now(s, json_pack("{s:s, s:s, s:s?, s:b}", "type", "class.resync",
						   "class", c->code, "run",
						   c->run[0] ? c->run : NULL, "live", c->run_live));
	}
	if (s->view_sent != c->view_ver) {
		s->view_sent = c->view_ver;
		return write_json_now(s, ws_class_view_json(c));
	}
	if (s->members_dirty) {
		s->members_dirty = 0;
		o = json_pack("{s:s, s:s, s:I, s:[]}", "type", "class.members", "class", c->code,
			      "count", (json_int_t)ws_cluster_count(c), "names");
		for (i = 0; o && i < c->n_members && i < WS_MEMBERS_LISTED; i++) {
			struct ws_session *m2 = ws_session_find(s->srv, c->members[i]);
			if (m2)
				json_array_append_new(json_object_get(o, "names"),
						      json_string(m2->name));
		}
		/* --nats: and its students on other replicas. */
		if (o)
			ws_cluster_names(c, json_object_get(o, "names"), WS_MEMBERS_LISTED);
		return write_json_now(s, o);
	}
	while ((m = class_ring_get(&c->ring, s->ring_pos)) != NULL && s->skipping &&
	       ring_skip(s, m, c->ring.pre))
		s->ring_pos++;
	if (!m)
		return 0;
	if (s->skipping) {
		/* Not an event of the run it rejoined (a notice): alone, so
		 * what follows is looked at one by one too. */
		s->ring_pos++;
		return lws_write(s->wsi, (unsigned char *)m->buf + LWS_PRE, m->len,
				 LWS_WRITE_TEXT) < 0
			       ? -1
			       : 1;
	}
	p = ws_class_next(c, s->ring_pos, s->srv->batch + LWS_PRE, &len, &end);
	if (!p)
		return 0;
	s->ring_pos = end;
	/* A single entry is shared by every reader: lws writes the frame
	 * header into the headroom in front of it and sends it at once (or
	 * keeps its own copy of what the socket did not take). */
	return lws_write(s->wsi, (unsigned char *)p, len, LWS_WRITE_TEXT) < 0 ? -1 : 1;
}

const unsigned char *ws_class_next(const struct ws_class *c, uint64_t pos, unsigned char *batch,
				   size_t *len, uint64_t *end)
{
	const struct class_msg *m = class_ring_get(&c->ring, pos), *next;
	size_t n = 0;

	if (!m)
		return NULL;
	next = class_ring_get(&c->ring, pos + 1);
	if (!next || m->len + next->len + 3 > WS_BATCH_BYTES) {
		/* The usual case: one message, the ring's own copy. */
		*len = m->len;
		*end = pos + 1;
		return m->buf + c->ring.pre;
	}
	/* A reader that is behind is sent what it lacks as one JSON array (up
	 * to WS_BATCH_BYTES): one frame and one send instead of one per
	 * message, so it catches up instead of falling further behind. */
	batch[n++] = '[';
	for (;;) {
		memcpy(batch + n, m->buf + c->ring.pre, m->len);
		n += m->len;
		m = class_ring_get(&c->ring, ++pos);
		if (!m || n + m->len + 2 > WS_BATCH_BYTES)
			break;
		batch[n++] = ',';
	}
	batch[n++] = ']';
	*len = n;
	*end = pos;
	return batch;
}

void ws_class_bump_view(struct ws_class *c)
{
	struct ws_server *srv = c->srv;
	struct ws_session *s;
	size_t i;

	c->view_ver++;
	ws_cluster_changed(c);
	s = ws_session_find(srv, c->instructor);
	if (s)
		ws_want_write(s->wsi);
	for (i = 0; i < c->n_members; i++) {
		s = ws_session_find(srv, c->members[i]);
		if (s)
			ws_want_write(s->wsi);
	}
}

void ws_class_members_changed(struct ws_class *c)
{
	struct ws_session *t = ws_session_find(c->srv, c->instructor);

	if (c->remote) {
		ws_cluster_members(c);
		return;
	}
	if (t) {
		t->members_dirty = 1;
		ws_want_write(t->wsi);
	}
}

static void member_remove(struct ws_session *s)
{
	struct ws_class *c = s->cls;
	size_t i = s->member_idx;

	if (i < c->n_members && c->members[i] == s->id) {
		c->members[i] = c->members[--c->n_members];
		if (i < c->n_members) {
			struct ws_session *moved = ws_session_find(s->srv, c->members[i]);
			if (moved)
				moved->member_idx = i;
		}
		http_count(s->srv->ctr, HTTP_C_CLASS_VIEWERS, -1);
	}
	s->cls = NULL;
	s->need_resync = 0;
	ws_class_members_changed(c);
	/* --nats: its seat is given back. */
	if (s->srv->bclass)
		bus_class_seats(s->srv->bclass, c->code, (long)(c->n_members + c->joins));
	/* A class of another replica is followed only for students here. */
	if (c->remote && c->n_members == 0 && c->joins == 0)
		ws_class_end(c, "no student here follows it");
}

/* End class c: tell and detach every student, free it. */
void ws_class_end(struct ws_class *c, const char *why)
{
	struct ws_server *srv = c->srv;
	struct ws_session *t = ws_session_find(srv, c->instructor);
	size_t i;
	int k;

	for (i = 0; i < c->n_members; i++) {
		struct ws_session *s = ws_session_find(srv, c->members[i]);
		if (!s)
			continue;
		s->cls = NULL;
		s->need_resync = 0;
		ws_send_json(s, json_pack("{s:s, s:s, s:s, s:s?}", "type", "class.ended", "class",
				       c->code, "reason", why, "run", c->run[0] ? c->run : NULL));
	}
	http_count(srv->ctr, HTTP_C_CLASS_VIEWERS, -(long)c->n_members);
	if (!c->remote)
		http_count(srv->ctr, HTTP_C_CLASSES, -1);
	/* --nats: its students elsewhere are told, or this replica stops
	 * following a class of another. */
	ws_cluster_ended(c, why);
	lws_sul_cancel(&c->sul_grace);
	lws_sul_cancel(&c->sul_put);
	/* A class run nobody owns (its instructor went and did not come back)
	 * ends with the class. */
	if (c->orphaned && c->run_live && !c->run_remote && srv->runs) {
		struct run_error e;
		runs_cancel(srv->runs, 0, c->run, &e);
	}
	if (t) {
		t->cls = NULL;
		t->teaching = 0;
		t->members_dirty = 0;
	}
	for (k = 0; k < srv->cfg->max_classes; k++)
		if (srv->classes[k] == c)
			srv->classes[k] = NULL;
	class_ring_cleanup(&c->ring);
	ws_quiz_free(c->quiz);
	ws_cluster_free(c);
	json_decref(c->run_msg);
	free(c->members);
	free(c);
}

void ws_classes_end_all(struct ws_server *srv, const char *why)
{
	int k;

	for (k = 0; k < srv->cfg->max_classes; k++)
		if (srv->classes[k])
			ws_class_end(srv->classes[k], why);
}

struct ws_class *ws_class_of_run(struct ws_server *srv, const char *id)
{
	int k;

	for (k = 0; k < srv->cfg->max_classes; k++)
		if (srv->classes[k] && srv->classes[k]->run_live && !strcmp(srv->classes[k]->run, id))
			return srv->classes[k];
	return NULL;
}

static void grace_cb(lws_sorted_usec_list_t *sul)
{
	struct ws_class *c = lws_container_of(sul, struct ws_class, sul_grace);
	char why[128];

	snprintf(why, sizeof why, "the instructor did not come back within %d s",
		 c->srv->cfg->class_grace_s);
	ws_class_end(c, why);
}

static void push_instructor_state(struct ws_class *c, const char *state)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:i}", "type", "class.instructor", "class", c->code,
			      "state", state, "grace_s", c->srv->cfg->class_grace_s);

	if (o)
		ws_class_push_json(c, o);
	json_decref(o);
	ws_cluster_changed(c);
}

/* The instructor's connection went: the class waits --class-grace seconds
 * for its page to come back (class.reclaim), its students told meanwhile,
 * and its run going on owned by nobody. */
static void class_orphan(struct ws_class *c, struct ws_session *t)
{
	struct ws_server *srv = c->srv;

	t->cls = NULL;
	t->teaching = 0;
	t->members_dirty = 0;
	if (c->run_live && !c->run_remote && srv->runs)
		runs_set_owner(srv->runs, c->run, 0);
	ws_class_orphaned(c);
}

void ws_class_orphaned(struct ws_class *c)
{
	c->instructor = 0;
	c->orphaned = 1;
	push_instructor_state(c, "reconnecting");
	lws_sul_schedule(c->srv->ctx, 0, &c->sul_grace, grace_cb,
			 (lws_usec_t)c->srv->cfg->class_grace_s * LWS_US_PER_SEC);
}

/* The session is going: its class waits for its instructor (or ends, when
 * the server stops), or it leaves the one it attends. */
void ws_class_detach(struct ws_session *s, const char *why)
{
	if (!s->cls)
		return;
	if (s->teaching && s->srv->ctx && !s->srv->stopping)
		class_orphan(s->cls, s);
	else if (s->teaching)
		ws_class_end(s->cls, why);
	else
		member_remove(s);
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
	ws_send_error(s, "forbidden", NULL, m, tag, NULL);
	return 0;
}

struct ws_class *ws_class_find(struct ws_server *srv, const char *code)
{
	int k;

	for (k = 0; k < srv->cfg->max_classes; k++)
		if (srv->classes[k] && !strcmp(srv->classes[k]->code, code))
			return srv->classes[k];
	return NULL;
}

void ws_op_class_open(struct ws_session *s, json_t *msg, const char *tag)
{
	struct ws_server *srv = s->srv;
	json_t *name = json_object_get(msg, "name");
	char teacher[CLASS_NAME_BYTES + 1] = "";
	struct ws_class *c;
	char m[200];
	int k, slot = -1, tries;

	if (!s->instructor) {
		ws_send_error(s, "forbidden", NULL, "sign in as the instructor to open a class", tag,
			   NULL);
		return;
	}
	if (s->cls) {
		ws_send_error(s, "bad_request", NULL,
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
		ws_send_error(s, "limit", NULL, m, tag, NULL);
		return;
	}
	/* An optional display name the students' banner shows ("instructor"):
	 * the same rules as a student's name. */
	if (name && !json_is_null(name) && !json_is_string(name)) {
		snprintf(m, sizeof m,
			 "'name' (your display name, shown to the students) must be a string of 1 "
			 "to %d characters, or left out",
			 CLASS_NAME_MAX);
		ws_send_error(s, "bad_request", "name", m, tag, NULL);
		return;
	}
	if (json_is_string(name) && class_name_parse(json_string_value(name), teacher, m,
						     sizeof m) < 0) {
		ws_send_error(s, "bad_param", "name", m, tag, NULL);
		return;
	}
	c = calloc(1, sizeof *c);
	if (!c || class_ring_init(&c->ring, (size_t)srv->cfg->class_buffer,
				  (size_t)srv->cfg->class_buffer * WS_RING_BYTES_PER_ENTRY,
				  LWS_PRE) < 0) {
		free(c);
		ws_send_error(s, "internal", NULL, "out of memory", tag, NULL);
		return;
	}
	/* --nats: a code no other replica holds either. */
	for (tries = 0; tries < 16; tries++)
		if (class_code_new(c->code) < 0 ||
		    (!ws_class_find(srv, c->code) && !ws_cluster_taken(srv, c->code)))
			break;
	if (!c->code[0] || ws_class_find(srv, c->code) || ws_cluster_taken(srv, c->code)) {
		class_ring_cleanup(&c->ring);
		free(c);
		ws_send_error(s, "internal", NULL, "could not make a class code", tag, NULL);
		return;
	}
	if (config_random_text(c->reclaim, WS_RECLAIM_LEN) < 0 ||
	    ws_cluster_token_hash(c->reclaim, c->reclaim_sha256) < 0) {
		class_ring_cleanup(&c->ring);
		free(c);
		ws_send_error(s, "internal", NULL, "could not make a reclaim token", tag, NULL);
		return;
	}
	c->srv = srv;
	c->instructor = s->id;
	memcpy(c->teacher, teacher, sizeof c->teacher);
	c->pos = -1;
	srv->classes[slot] = c;
	s->cls = c;
	s->teaching = 1;
	s->ring_pos = c->ring.head;
	s->view_sent = c->view_ver;
	http_count(srv->ctr, HTTP_C_CLASSES, 1);
	ws_cluster_opened(c);
	/* The reclaim token goes to this page only: with it the page takes the
	 * class back after a reload or a dropped connection. */
	ws_send_json(s, json_pack("{s:s, s:s, s:s?, s:i, s:s, s:i, s:s?}", "type", "class.opened",
				  "class", c->code, "instructor", c->teacher[0] ? c->teacher : NULL,
				  "max_viewers", srv->cfg->max_class_viewers, "reclaim", c->reclaim,
				  "grace_s", srv->cfg->class_grace_s, "tag", tag));
}

static void full_error(struct ws_session *s, struct ws_class *c, const char *tag);
static int join_finish(struct ws_session *s, struct ws_class *c, const char *member_in,
		       const char *after_run, long long after_seq, const char *tag);

/* The symbols config_random_text() draws from. */
#define MEMBER_ALPHABET "23456789ABCDEFGHJKMNPQRSTUVWXYZa"

static int member_valid(const json_t *v)
{
	const char *p = json_string_value(v);

	if (!p || strlen(p) != WS_MEMBER_LEN)
		return 0;
	for (; *p; p++)
		if (!strchr(MEMBER_ALPHABET, *p))
			return 0;
	return 1;
}

/* The highest "seq" a rejoining page may name (as class.view's pos). */
#define WS_AFTER_SEQ_MAX 100000000

/* A student that rejoins with "after" (the last event of a class run its
 * page has: after a reload, or when its replica went and the balancer sent
 * it to another) continues right after that event, from the ring, missing
 * none and sent none twice. 1 when it does; 0 when the ring no longer holds
 * what follows (the page reads the run from its bundle and drops what it
 * has by seq, as a late joiner does). */
static int class_resume(struct ws_class *c, struct ws_session *s, const char *run, long long seq)
{
	/* The ring has held the class run since its notice: every event of
	 * it is there, or still to come, in seq order. */
	int whole = !strcmp(run, c->run) && c->run_pos >= c->ring.tail;
	uint64_t p = whole ? c->run_pos : c->ring.tail, next = 0;
	const struct class_msg *m;
	long long q;

	for (; p < c->ring.head; p++) {
		m = class_ring_get(&c->ring, p);
		if (!m || !class_msg_event(m->buf + c->ring.pre, m->len, run, &q))
			continue;
		if (q == seq) {
			s->ring_pos = p + 1;
			return 1;
		}
		if (q > seq)
			return 0; /* the ring starts after it: what lies between is gone */
		next = p + 1;
	}
	if (!whole)
		return 0;
	/* This replica has not had that event yet (a follower reads the run
	 * from the stream, behind the replica the page came from): it goes on
	 * after the last event it has, passing over those the page has. */
	s->ring_pos = next ? next : c->run_pos;
	s->skipping = 1;
	s->skip_seq = seq;
	memcpy(s->skip_run, run, sizeof s->skip_run);
	return 1;
}

void ws_op_class_join(struct ws_session *s, json_t *msg, const char *tag)
{
	struct ws_server *srv = s->srv;
	const char *code_in = json_string_value(json_object_get(msg, "class"));
	const char *name_in = json_string_value(json_object_get(msg, "name"));
	const json_t *member_in = json_object_get(msg, "member");
	const json_t *after = json_object_get(msg, "after");
	const char *after_run = NULL;
	long long after_seq = 0;
	char code[CLASS_CODE_LEN + 1], m[200];
	struct ws_class *c;

	/* --nats: what the bus brought is taken first (the classes, whether
	 * NATS is there, the seat of a join of this connection), so the join
	 * sees the latest. */
	if (srv->bclass)
		ws_cluster_wake(srv);
	if (s->joining) {
		ws_send_error(s, "bad_request", NULL,
			      "a class.join of this connection is already under way", tag, NULL);
		return;
	}
	if (s->cls) {
		ws_send_error(s, "bad_request", NULL,
			   s->teaching ? "an instructor cannot join a class"
				       : "this connection already attends a class; leave it first",
			   tag, NULL);
		return;
	}
	if (!code_in || class_code_parse(code_in, code) < 0) {
		snprintf(m, sizeof m,
			 "'class' must be a class code of %d characters from %s (no 0, 1, I, L or O: "
			 "they look alike, so no code uses them)",
			 CLASS_CODE_LEN, CLASS_CODE_ALPHABET);
		ws_send_error(s, "bad_request", "class", m, tag, NULL);
		return;
	}
	if (!name_in) {
		ws_send_error(s, "bad_request", "name", "'name' must be a string (your display name)",
			   tag, NULL);
		return;
	}
	if (class_name_parse(name_in, s->name, m, sizeof m) < 0) {
		ws_send_error(s, "bad_param", "name", m, tag, NULL);
		return;
	}
	if (member_in && !member_valid(member_in)) {
		snprintf(m, sizeof m,
			 "'member' must be the identity class.joined gave this page (%d characters "
			 "from %s)",
			 WS_MEMBER_LEN, MEMBER_ALPHABET);
		ws_send_error(s, "bad_param", "member", m, tag, NULL);
		return;
	}
	if (after && !json_is_null(after)) {
		const json_t *run = json_object_get(after, "run"), *seq = json_object_get(after, "seq");
		if (!json_is_object(after) || !json_is_string(run) ||
		    !ev_valid_run_id(json_string_value(run)) || !json_is_integer(seq) ||
		    json_integer_value(seq) < 0 || json_integer_value(seq) > WS_AFTER_SEQ_MAX) {
			snprintf(m, sizeof m,
				 "'after' must be {\"run\": a run id (%d hex digits), \"seq\": the "
				 "last event of it this page has (0 to %d)}, or left out",
				 EV_RUN_ID_LEN, WS_AFTER_SEQ_MAX);
			ws_send_error(s, "bad_param", "after", m, tag, NULL);
			return;
		}
		after_run = json_string_value(run);
		after_seq = (long long)json_integer_value(seq);
	}
	c = ws_class_find(srv, code);
	/* --nats: a class another replica holds is followed from here. */
	if (!c) {
		int full;
		c = ws_cluster_follow(srv, code, &full);
		if (full) {
			snprintf(m, sizeof m,
				 "this server holds or follows at most %d classes at once "
				 "(--max-classes); try again later",
				 srv->cfg->max_classes);
			ws_send_error(s, "limit", "class", m, tag, NULL);
			return;
		}
	}
	if (!c) {
		ws_send_error(s, "unknown_class", "class", "no class with that code is open", tag, NULL);
		return;
	}
	if (c->n_members + c->joins >= (size_t)srv->cfg->max_class_viewers) {
		full_error(s, c, tag);
		return;
	}
	/* --nats: the limit is the class's students on every replica: a seat
	 * is taken in the bucket (revision-checked) before the student is in.
	 * With NATS away, this replica's own count only. */
	if (srv->bclass && bus_class_ok(srv->bclass, NULL, 0)) {
		s->joining = 1;
		s->join_has_tag = tag != NULL;
		snprintf(s->join_tag, sizeof s->join_tag, "%s", tag ? tag : "");
		snprintf(s->join_member, sizeof s->join_member, "%s",
			 member_in ? json_string_value(member_in) : "");
		snprintf(s->join_after, sizeof s->join_after, "%s", after_run ? after_run : "");
		s->join_after_seq = after_seq;
		c->joins++;
		bus_class_seat(srv->bclass, c->code, (long)(c->n_members + c->joins),
			       srv->cfg->max_class_viewers, s->id);
		return;
	}
	join_finish(s, c, member_in ? json_string_value(member_in) : NULL, after_run, after_seq, tag);
}

/* The class is full: at most --max-class-viewers students (on every
 * replica, with --nats). */
static void full_error(struct ws_session *s, struct ws_class *c, const char *tag)
{
	char m[300];

	snprintf(m, sizeof m,
		 "the class is full: at most %d students%s (--max-class-viewers, 1 to 20000)",
		 s->srv->cfg->max_class_viewers, s->srv->bclass ? " on every server together" : "");
	ws_send_error(s, "limit", "class", m, tag, NULL);
}

void ws_class_seated(struct ws_server *srv, const char *code, uint64_t sid, int ok,
		     const char *why)
{
	struct ws_class *c = ws_class_find(srv, code);
	struct ws_session *s = ws_session_find(srv, sid);
	char tag[RUN_TAG_MAX + 1], m[400];
	const char *t = NULL;

	if (c && c->joins)
		c->joins--;
	if (s && s->joining) {
		s->joining = 0;
		memcpy(tag, s->join_tag, sizeof tag);
		t = s->join_has_tag ? tag : NULL;
	} else {
		s = NULL;
	}
	if (ok && s && c && !s->cls &&
	    join_finish(s, c, s->join_member[0] ? s->join_member : NULL,
			s->join_after[0] ? s->join_after : NULL, s->join_after_seq, t) == 0)
		return;
	if (s && !ok && c) {
		if (why) {
			snprintf(m, sizeof m, "could not join the class now: %s; try again", why);
			ws_send_error(s, "unavailable", "class", m, t, NULL);
		} else {
			full_error(s, c, t);
		}
	} else if (s && !c) {
		ws_send_error(s, "unknown_class", "class", "the class has ended", t, NULL);
	}
	if (!c)
		return;
	/* A seat taken for no one (the page went, or joined elsewhere): given
	 * back. */
	if (ok)
		bus_class_seats(srv->bclass, c->code, (long)(c->n_members + c->joins));
	/* A class of another replica is followed only for students here. */
	if (c->remote && c->n_members == 0 && c->joins == 0)
		ws_class_end(c, "no student here follows it");
}

/* s joins c (its seat taken): 0, or -1 after telling it why not. */
static int join_finish(struct ws_session *s, struct ws_class *c, const char *member_in,
		       const char *after_run, long long after_seq, const char *tag)
{
	struct ws_server *srv = s->srv;
	uint64_t *mem;
	json_t *o;
	int resumed = 0;

	mem = realloc(c->members, (c->n_members + 1) * sizeof *mem);
	if (!mem) {
		ws_send_error(s, "internal", NULL, "out of memory", tag, NULL);
		return -1;
	}
	/* The identity: the one the page had (a student who rejoins, after a
	 * reload or a dropped connection), or a new one. It is a random token
	 * only that page received, so no one takes another student's place. */
	if (member_in) {
		snprintf(s->member, sizeof s->member, "%s", member_in);
	} else if (config_random_text(s->member, WS_MEMBER_LEN) < 0) {
		c->members = mem;
		ws_send_error(s, "internal", NULL, "could not make a member identity", tag, NULL);
		return -1;
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
	s->skipping = 0;
	if (after_run)
		resumed = class_resume(c, s, after_run, after_seq);
	http_count(srv->ctr, HTTP_C_CLASS_VIEWERS, 1);
	ws_class_members_changed(c);
	o = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:b, s:O?, s:o, s:s?}", "type",
		      "class.joined", "class", c->code, "name", s->name, "member", s->member,
		      "instructor", c->teacher[0] ? c->teacher : NULL, "run",
		      c->run[0] ? c->run : NULL, "live", c->run_live, "run_info", c->run_msg, "view",
		      ws_class_view_json(c), "tag", tag);
	/* "resumed": the events after "after" follow from here (else the page
	 * reads the run from its bundle); "replica": --nats, which one this is. */
	if (o && after_run)
		json_object_set_new(o, "resumed", json_boolean(resumed));
	if (o && ws_cluster_replica(srv))
		json_object_set_new(o, "replica", json_string(ws_cluster_replica(srv)));
	ws_send_json(s, o);
	if (resumed)
		ws_want_write(s->wsi);
	if (c->remote) {
		/* The question that is up, as the class's home said. */
		json_t *q = c->quiz_notice;
		if (q && strcmp(json_string_value(json_object_get(q, "state")) ?: "", "revealed"))
			ws_send_json(s, json_incref(q));
		return 0;
	}
	ws_quiz_joined(c, s);
	return 0;
}

void ws_op_class_leave(struct ws_session *s, json_t *msg, const char *tag)
{
	if (!s->cls || s->teaching) {
		ws_send_error(s, "bad_request", NULL, "this connection attends no class", tag, NULL);
		return;
	}
	member_remove(s);
	ws_send_json(s, json_pack("{s:s, s:s?}", "type", "class.left", "tag", tag));
}

void ws_op_class_run(struct ws_session *s, json_t *msg, const char *tag)
{
	struct ws_class *c = s->cls;
	json_t *lab = json_object_get(msg, "lab"), *params = json_object_get(msg, "params");
	json_t *files = json_object_get(msg, "files");
	struct run_error e;
	char id[EV_RUN_ID_LEN + 1], m[160];
	int rc, pos = 0;

	if (!require_teaching(s, "run labs in the class", tag))
		return;
	if (c->run_live) {
		snprintf(m, sizeof m, "the class run %s is still going; cancel it or wait", c->run);
		ws_send_error(s, "limit", NULL, m, tag, c->run);
		return;
	}
	if (!json_is_string(lab)) {
		ws_send_error(s, "bad_request", "lab", "'lab' must be a string naming a lab", tag, NULL);
		return;
	}
	/* "files": programs for a lab like own, uploaded as text (a student's
	 * program the instructor runs for everyone). A class run goes ahead of
	 * every other in the admission queue when the server is full. */
	rc = runs_submit(s->srv->runs, s->id, json_string_value(lab), params, NULL, files, tag,
			 RUN_F_QUEUE | RUN_F_CLASS, id, &pos, &e);
	if (rc < 0) {
		ws_send_error(s, e.code, e.param, e.message, tag, NULL);
		return;
	}
	memcpy(c->run, id, sizeof c->run);
	c->run_live = 1;
	if (rc == 1) {
		ws_send_queued(s, id, tag, json_string_value(lab), pos, runs_queued(s->srv->runs));
		return;
	}
	ws_class_run_started(c, id, json_string_value(lab), params, files, tag);
}

void ws_class_run_started(struct ws_class *c, const char *id, const char *lab,
			  const json_t *params, const json_t *files, const char *tag)
{
	struct ws_session *s = ws_session_find(c->srv, c->instructor);

	/* Its events start arriving on a later loop turn, after this notice. */
	memcpy(c->run, id, sizeof c->run);
	c->run_live = 1;
	c->run_remote = 0;
	json_decref(c->run_msg);
	/* "o" steals: a fresh object when the request had no params (with "O" it
	 * would keep a second reference and leak). */
	c->run_msg = json_pack("{s:s, s:s, s:s, s:s, s:o}", "type", "class.run", "class", c->code,
			       "run", id, "lab", lab, "params",
			       json_is_object(params) ? json_incref((json_t *)params) : json_object());
	/* The programs go to every student too: "try it myself" runs them. */
	if (c->run_msg && json_is_object(files))
		json_object_set(c->run_msg, "files", (json_t *)files);
	c->paused = 0;
	c->pos = -1;
	c->speed = 0;
	ws_class_bump_view(c);
	if (c->run_msg)
		ws_class_push_json(c, c->run_msg);
	c->run_pos = c->ring.head;
	if (s)
		ws_send_json(s, json_pack("{s:s, s:s, s:s?, s:s, s:s}", "type", "run.accepted", "run",
					  id, "tag", tag, "lab", lab, "class", c->code));
}

void ws_op_class_view(struct ws_session *s, json_t *msg, const char *tag)
{
	struct ws_class *c = s->cls;
	json_t *paused = json_object_get(msg, "paused"), *pos = json_object_get(msg, "pos");
	json_t *speed = json_object_get(msg, "speed");

	if (!require_teaching(s, "control the class view", tag))
		return;
	if (paused && !json_is_boolean(paused)) {
		ws_send_error(s, "bad_request", "paused", "'paused' must be true or false", tag, NULL);
		return;
	}
	if (pos && !json_is_null(pos) &&
	    (!json_is_integer(pos) || json_integer_value(pos) < 0 ||
	     json_integer_value(pos) > 100000000)) {
		ws_send_error(s, "bad_request", "pos",
			   "'pos' must be null (follow live) or an event count from 0 to 100000000",
			   tag, NULL);
		return;
	}
	if (speed && (!json_is_number(speed) || json_number_value(speed) < 0 ||
		      json_number_value(speed) > 1000)) {
		ws_send_error(s, "bad_request", "speed",
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
	ws_class_bump_view(c);
}

void ws_op_class_end(struct ws_session *s, json_t *msg, const char *tag)
{
	char code[CLASS_CODE_LEN + 1];

	if (!require_teaching(s, "end the class", tag))
		return;
	memcpy(code, s->cls->code, sizeof code);
	ws_class_end(s->cls, "ended by the instructor");
	ws_send_json(s, json_pack("{s:s, s:s, s:s?}", "type", "class.ended", "class", code, "tag", tag));
}

void ws_op_class_reclaim(struct ws_session *s, json_t *msg, const char *tag)
{
	struct ws_server *srv = s->srv;
	const char *code_in = json_string_value(json_object_get(msg, "class"));
	const char *token = json_string_value(json_object_get(msg, "reclaim"));
	char code[CLASS_CODE_LEN + 1];
	struct ws_class *c;

	if (s->cls) {
		ws_send_error(s, "bad_request", NULL,
			      s->teaching ? "this connection already teaches a class"
					  : "leave the class you attend first",
			      tag, NULL);
		return;
	}
	if (!code_in || class_code_parse(code_in, code) < 0 || !token) {
		ws_send_error(s, "bad_request", code_in ? "reclaim" : "class",
			      "'class' (a class code) and 'reclaim' (the token class.opened gave) "
			      "are required",
			      tag, NULL);
		return;
	}
	/* A token is as good as the secret: guesses are limited the same way. */
	if (!ws_signin_may_try(s, tag))
		return;
	/* --nats: what the bus brought is taken first, as for a join. */
	if (srv->bclass)
		ws_cluster_wake(srv);
	c = ws_class_find(srv, code);
	/* --nats: a class another replica holds (or held, until it stopped)
	 * moves here. */
	if ((!c || c->remote) && srv->bclass) {
		ws_cluster_reclaim(s, code, token, tag);
		return;
	}
	if (!c || c->remote || !class_secret_equal(c->reclaim, token)) {
		ws_class_reclaim_refused(s, tag);
		return;
	}
	ws_class_reclaimed(c, s, tag);
}

void ws_class_reclaim_refused(struct ws_session *s, const char *tag)
{
	ws_signin_failed(s);
	ws_send_error(s, "forbidden", "reclaim",
		      "no open class with that code and reclaim token (it may have ended: "
		      "a class waits for its instructor for --class-grace seconds)",
		      tag, NULL);
}

void ws_class_reclaimed(struct ws_class *c, struct ws_session *s, const char *tag)
{
	struct ws_server *srv = c->srv;
	struct ws_session *old;

	/* Another page of the instructor still holds it (a dropped network the
	 * server has not noticed yet): this one takes over. */
	old = ws_session_find(srv, c->instructor);
	if (old && old != s) {
		old->cls = NULL;
		old->teaching = 0;
		old->members_dirty = 0;
		ws_send_json(old, json_pack("{s:s, s:s, s:s}", "type", "class.ended", "class", c->code,
					    "reason", "the class was taken over by another page"));
	}
	lws_sul_cancel(&c->sul_grace);
	c->orphaned = 0;
	c->instructor = s->id;
	if (c->run_live && !c->run_remote && srv->runs)
		runs_set_owner(srv->runs, c->run, s->id);
	s->instructor = 1;
	s->cls = c;
	s->teaching = 1;
	s->ring_pos = c->ring.head;
	s->view_sent = c->view_ver;
	s->members_dirty = 1;
	push_instructor_state(c, "back");
	ws_send_json(s, json_pack("{s:s, s:s, s:s?, s:i, s:s, s:i, s:s?, s:b, s:O?, s:o, s:s?}",
				  "type", "class.reclaimed", "class", c->code, "instructor",
				  c->teacher[0] ? c->teacher : NULL, "max_viewers",
				  srv->cfg->max_class_viewers, "reclaim", c->reclaim, "grace_s",
				  srv->cfg->class_grace_s, "run", c->run[0] ? c->run : NULL, "live",
				  c->run_live, "run_info", c->run_msg, "view", ws_class_view_json(c),
				  "tag", tag));
	ws_want_write(s->wsi);
}
