/* ws_cluster.c: --nats: classes across replicas on the WebSocket side: a home publishes its class's state and messages, a follower fans them out to its own students and feeds its ring the class run from the stream. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "bus.h"
#include "bus_class.h"
#include "ws_int.h"

/* How often a followed class whose run the run index does not know yet
 * (its meta and its class state travel separately) tries again. */
#define CLUSTER_RETRY_US (250 * LWS_US_PER_MS)

/* ---- the home ---- */

static json_t *state_json(const struct ws_class *c)
{
	json_t *st = json_pack("{s:I, s:s, s:s, s:s?, s:s?, s:b, s:O?, s:{s:b, s:o, s:f}, s:s}",
			       "cver", c->cver, "code", c->code, "replica",
			       bus_class_replica(c->srv->bclass), "instructor",
			       c->teacher[0] ? c->teacher : NULL, "run", c->run[0] ? c->run : NULL,
			       "live", c->run_live, "run_info", c->run_msg, "view", "paused",
			       c->paused, "pos", c->pos < 0 ? json_null() : json_integer(c->pos),
			       "speed", c->speed, "teacher", c->orphaned ? "reconnecting" : "here");

	if (st)
		json_object_set_new(st, "quiz", ws_quiz_notice(c) ?: json_null());
	return st;
}

void ws_cluster_changed(struct ws_class *c)
{
	struct bus_class *bc = c->srv->bclass;
	json_t *st;

	if (!bc || c->remote)
		return;
	c->cver++;
	st = state_json(c);
	if (!st)
		return;
	/* The bucket for late joiners and resyncs; the subject for the
	 * students following now. */
	bus_class_put(bc, c->code, st);
	bus_class_send(bc, c->code, json_pack("{s:s, s:o}", "kind", "state", "state", st));
}

void ws_cluster_opened(struct ws_class *c)
{
	if (!c->srv->bclass)
		return;
	bus_class_home(c->srv->bclass, c->code, 1);
	ws_cluster_changed(c);
}

void ws_cluster_ended(struct ws_class *c, const char *why)
{
	struct bus_class *bc = c->srv->bclass;

	if (!bc)
		return;
	if (c->remote) {
		bus_class_follow(bc, c->code, 0);
		return;
	}
	bus_class_send(bc, c->code, json_pack("{s:s, s:s}", "kind", "ended", "reason", why));
	bus_class_gone(bc, c->code);
	bus_class_home(bc, c->code, 0);
}

int ws_cluster_taken(struct ws_server *srv, const char *code)
{
	json_t *st;

	if (!srv->bclass)
		return 0;
	st = bus_class_lookup(srv->bclass, code);
	json_decref(st);
	return st != NULL;
}

size_t ws_cluster_count(const struct ws_class *c)
{
	size_t n = c->n_members;
	const char *key;
	json_t *v;

	json_object_foreach(c->others, key, v)
		n += (size_t)json_integer_value(json_object_get(v, "count"));
	return n;
}

void ws_cluster_names(const struct ws_class *c, json_t *names, size_t max)
{
	const char *key;
	json_t *v, *name;
	size_t i;

	json_object_foreach(c->others, key, v)
		json_array_foreach(json_object_get(v, "names"), i, name)
			if (json_array_size(names) < max && json_is_string(name))
				json_array_append(names, name);
}

/* A message from a student elsewhere (socklab.class.CODE.up). */
static void home_up(struct ws_class *c, json_t *m)
{
	const char *kind = json_string_value(json_object_get(m, "kind"));
	const char *replica = json_string_value(json_object_get(m, "replica"));

	if (!kind || !replica || strlen(replica) != EV_RUN_ID_LEN)
		return;
	if (!strcmp(kind, "members")) {
		json_t *count = json_object_get(m, "count"), *names = json_object_get(m, "names");
		if (!json_is_integer(count) || json_integer_value(count) < 0 ||
		    json_integer_value(count) > c->srv->cfg->max_class_viewers || !json_is_array(names))
			return;
		if (!c->others)
			c->others = json_object();
		if (json_integer_value(count) == 0)
			json_object_del(c->others, replica);
		else
			json_object_set_new(c->others, replica,
					    json_pack("{s:O, s:O}", "count", count, "names", names));
		ws_class_members_changed(c);
		ws_quiz_members_changed(c);
	} else if (!strcmp(kind, "answer")) {
		json_t *reply = ws_quiz_remote_answer(c, m);
		const char *member = json_string_value(json_object_get(m, "member"));
		if (reply && member)
			bus_class_send(c->srv->bclass, c->code,
				       json_pack("{s:s, s:s, s:o}", "kind", "to", "member", member,
						 "msg", reply));
		else
			json_decref(reply);
	}
}

/* ---- a follower ---- */

static void close_run(struct ws_class *c)
{
	if (c->rf)
		fclose(c->rf);
	c->rf = NULL;
	c->rf_want = 0;
	c->rf_last_look = 0;
}

static void retry_cb(lws_sorted_usec_list_t *sul);

/* Open this replica's copy of the class run (bus.h), which the ring is
 * fed from. The run index may not know the run yet: tried again later. */
static void open_run(struct ws_class *c)
{
	char path[4096], err[300];
	int rc;

	rc = bus_mirror_open(c->srv->bus, c->run, path, sizeof path, err, sizeof err);
	if (rc == 0)
		c->rf = fopen(path, "re");
	if (c->rf) {
		c->rf_want = 0;
		return;
	}
	c->rf_want = 1;
	if (rc == -ENOSPC) {
		/* Nothing to follow it with: the students are told, and read
		 * the run from its bundle when the class view asks. */
		json_t *e = json_pack("{s:s, s:s, s:s, s:s}", "type", "error", "code", "limit", "run",
				      c->run, "message", err);
		ws_class_push_json(c, e);
		json_decref(e);
		c->rf_want = 0;
		return;
	}
	lws_sul_schedule(c->srv->ctx, 0, &c->srv->sul_cluster, retry_cb, CLUSTER_RETRY_US);
}

/* Move what the copy of the class run holds into the ring. */
static void pump_run(struct ws_class *c)
{
	struct ws_server *srv = c->srv;
	char *line = NULL, why[240];
	size_t cap = 0;
	ssize_t len;
	long long events;
	enum bus_mirror_state st;

	if (!c->rf)
		return;
	for (;;) {
		len = getline(&line, &cap, c->rf);
		if (len > 0 && line[len - 1] == '\n') {
			ws_class_push(c, line, (size_t)len - 1);
			continue;
		}
		/* At the end (or in a line being written: read it whole later). */
		if (len > 0)
			fseeko(c->rf, -(off_t)len, SEEK_CUR);
		clearerr(c->rf);
		st = bus_mirror_state(srv->bus, c->run, &events, why, sizeof why);
		if (st == BUS_M_FETCHING || st == BUS_M_LIVE)
			break;
		if (!c->rf_last_look) {
			/* Over now: whatever was written before it was is read first. */
			c->rf_last_look = 1;
			continue;
		}
		if (st == BUS_M_INCOMPLETE) {
			/* Its replica died: an incomplete run, never a made-up end. */
			json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "type", "watch.incomplete", "run",
					      c->run, "events", (json_int_t)events, "reason", why);
			ws_class_push_json(c, o);
			json_decref(o);
		} else if (st == BUS_M_FAILED) {
			json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "type", "error", "code",
					      "stream_error", "run", c->run, "message", why);
			ws_class_push_json(c, o);
			json_decref(o);
		}
		c->run_live = 0;
		close_run(c);
		break;
	}
	free(line);
}

static void retry_cb(lws_sorted_usec_list_t *sul)
{
	struct ws_server *srv = lws_container_of(sul, struct ws_server, sul_cluster);
	int k;

	for (k = 0; k < srv->cfg->max_classes; k++) {
		struct ws_class *c = srv->classes[k];
		if (c && c->remote && c->rf_want && !c->rf) {
			open_run(c);
			pump_run(c);
		}
	}
}

static void to_members(struct ws_class *c, json_t *o, const char *member)
{
	size_t i;

	for (i = 0; i < c->n_members; i++) {
		struct ws_session *s = ws_session_find(c->srv, c->members[i]);
		if (s && (!member || !strcmp(s->member, member)))
			ws_send_json(s, json_incref(o));
	}
}

/* The class's state as its home published it (or the bucket holds it):
 * what changed is told to the students here as the home told its own. */
static void apply_state(struct ws_class *c, const json_t *st)
{
	const char *run = json_string_value(json_object_get(st, "run"));
	const char *teacher = json_string_value(json_object_get(st, "instructor"));
	const char *replica = json_string_value(json_object_get(st, "replica"));
	const char *tstate = json_string_value(json_object_get(st, "teacher"));
	const json_t *view = json_object_get(st, "view"), *pos = json_object_get(view, "pos");
	json_t *quiz = json_object_get(st, "quiz");
	json_int_t cver = json_integer_value(json_object_get(st, "cver"));
	int away, bump = 0, paused;
	double speed;

	if (cver <= c->cver)
		return; /* older than what was applied (the bucket and the subject both tell) */
	c->cver = cver;
	snprintf(c->teacher, sizeof c->teacher, "%s", teacher ? teacher : "");
	if (replica && strlen(replica) == EV_RUN_ID_LEN)
		memcpy(c->home, replica, sizeof c->home);
	away = tstate && !strcmp(tstate, "reconnecting");
	if (away != c->away) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:i}", "type", "class.instructor", "class",
				      c->code, "state", away ? "reconnecting" : "back", "grace_s",
				      c->srv->cfg->class_grace_s);
		c->away = away;
		ws_class_push_json(c, o);
		json_decref(o);
	}
	if (run && ev_valid_run_id(run) && strcmp(run, c->run)) {
		/* A new class run: its notice, then its events from the stream. */
		close_run(c);
		memcpy(c->run, run, sizeof c->run);
		json_decref(c->run_msg);
		c->run_msg = json_deep_copy(json_object_get(st, "run_info"));
		if (c->run_msg)
			ws_class_push_json(c, c->run_msg);
		c->run_pos = c->ring.head;
		open_run(c);
		bump = 1;
	}
	c->run_live = c->rf ? 1 : json_is_true(json_object_get(st, "live"));
	paused = json_is_true(json_object_get(view, "paused"));
	speed = json_number_value(json_object_get(view, "speed"));
	if (paused != c->paused || speed != c->speed ||
	    (json_is_integer(pos) ? json_integer_value(pos) : -1) != c->pos) {
		c->paused = paused;
		c->speed = speed;
		c->pos = json_is_integer(pos) ? json_integer_value(pos) : -1;
		bump = 1;
	}
	if (bump)
		ws_class_bump_view(c);
	if (!json_equal(quiz, c->quiz_notice) && !(json_is_null(quiz) && !c->quiz_notice)) {
		json_decref(c->quiz_notice);
		c->quiz_notice = json_is_object(quiz) ? json_incref(quiz) : NULL;
		if (c->quiz_notice)
			to_members(c, c->quiz_notice, NULL);
	}
	pump_run(c);
}

struct ws_class *ws_cluster_follow(struct ws_server *srv, const char *code, int *full)
{
	struct ws_class *c;
	json_t *st;
	int k, slot = -1;

	*full = 0;
	if (!srv->bclass)
		return NULL;
	st = bus_class_lookup(srv->bclass, code);
	if (!st)
		return NULL;
	/* A class this replica holds itself is never followed. */
	if (!strcmp(json_string_value(json_object_get(st, "replica")) ?: "",
		    bus_class_replica(srv->bclass))) {
		json_decref(st);
		return NULL;
	}
	for (k = 0; k < srv->cfg->max_classes && slot < 0; k++)
		if (!srv->classes[k])
			slot = k;
	*full = slot < 0;
	c = slot < 0 ? NULL : calloc(1, sizeof *c);
	if (!c || class_ring_init(&c->ring, (size_t)srv->cfg->class_buffer,
				  (size_t)srv->cfg->class_buffer * WS_RING_BYTES_PER_ENTRY,
				  LWS_PRE) < 0) {
		free(c);
		json_decref(st);
		return NULL;
	}
	memcpy(c->code, code, sizeof c->code);
	c->srv = srv;
	c->remote = 1;
	c->pos = -1;
	srv->classes[slot] = c;
	apply_state(c, st);
	json_decref(st);
	/* Its messages from now on; the bucket's entry is delivered again
	 * once subscribed, so nothing between the two is missed. */
	bus_class_follow(srv->bclass, code, 1);
	return c;
}

void ws_cluster_members(struct ws_class *c)
{
	json_t *names = json_array();
	size_t i;

	if (!c->srv->bclass)
		return;
	for (i = 0; i < c->n_members && i < WS_MEMBERS_LISTED; i++) {
		struct ws_session *s = ws_session_find(c->srv, c->members[i]);
		if (s)
			json_array_append_new(names, json_string(s->name));
	}
	bus_class_up(c->srv->bclass, c->code,
		     json_pack("{s:s, s:s, s:I, s:o}", "kind", "members", "replica",
			       bus_class_replica(c->srv->bclass), "count", (json_int_t)c->n_members,
			       "names", names));
}

void ws_cluster_answer(struct ws_session *s, json_t *msg, const char *tag)
{
	struct ws_server *srv = s->srv;
	char m[400];

	if (srv->cluster_degraded) {
		snprintf(m, sizeof m, "your answer cannot reach the instructor now: %s",
			 srv->cluster_reason);
		ws_send_error(s, "unavailable", NULL, m, tag, NULL);
		return;
	}
	/* Checked and counted by the class's home; its reply comes back for
	 * this member (class.quiz.answered or an error with this tag). */
	bus_class_up(srv->bclass, s->cls->code,
		     json_pack("{s:s, s:s, s:s, s:s, s:O?, s:O?, s:s?}", "kind", "answer", "replica",
			       bus_class_replica(srv->bclass), "member", s->member, "name", s->name,
			       "id", json_object_get(msg, "id"), "answer",
			       json_object_get(msg, "answer"), "tag", tag));
}

void ws_cluster_free(struct ws_class *c)
{
	close_run(c);
	json_decref(c->quiz_notice);
	json_decref(c->others);
	c->quiz_notice = c->others = NULL;
}

const char *ws_cluster_replica(const struct ws_server *srv)
{
	return srv->bclass ? bus_class_replica(srv->bclass) : NULL;
}

/* ---- what the bus brought ---- */

static void tell_everyone(struct ws_server *srv)
{
	size_t i;

	for (i = 0; i < srv->n_slots; i++) {
		struct ws_session *s = srv->slots[i];
		if (s && s->wsi)
			ws_cluster_hello(s);
	}
}

void ws_cluster_hello(struct ws_session *s)
{
	struct ws_server *srv = s->srv;

	if (!srv->bclass)
		return;
	if (srv->cluster_degraded)
		ws_send_json(s, json_pack("{s:s, s:s, s:s}", "type", "cluster", "state", "degraded",
					  "reason", srv->cluster_reason));
}

static void cluster_state(struct ws_server *srv, json_t *m)
{
	const char *state = json_string_value(json_object_get(m, "state"));
	const char *why = json_string_value(json_object_get(m, "reason"));
	int degraded = state && !strcmp(state, "degraded"), k;
	size_t i;

	if (degraded == srv->cluster_degraded)
		return;
	srv->cluster_degraded = degraded;
	snprintf(srv->cluster_reason, sizeof srv->cluster_reason, "%s", why ? why : "");
	if (degraded) {
		tell_everyone(srv);
		return;
	}
	/* Back: every page is told, and each followed class's home hears
	 * again how many students follow it from here. */
	for (i = 0; i < srv->n_slots; i++) {
		struct ws_session *s = srv->slots[i];
		if (s && s->wsi)
			ws_send_json(s, json_pack("{s:s, s:s}", "type", "cluster", "state", "ok"));
	}
	for (k = 0; k < srv->cfg->max_classes; k++)
		if (srv->classes[k] && srv->classes[k]->remote)
			ws_cluster_members(srv->classes[k]);
}

static void one(struct ws_server *srv, json_t *m)
{
	const char *kind = json_string_value(json_object_get(m, "kind"));
	const char *code = json_string_value(json_object_get(m, "code"));
	struct ws_class *c;

	if (!kind)
		return;
	if (!strcmp(kind, "cluster")) {
		cluster_state(srv, m);
		return;
	}
	c = code ? ws_class_find(srv, code) : NULL;
	if (!c)
		return;
	if (!c->remote) {
		home_up(c, m);
		return;
	}
	if (!strcmp(kind, "state")) {
		apply_state(c, json_object_get(m, "state"));
	} else if (!strcmp(kind, "gone") || !strcmp(kind, "ended")) {
		const char *why = json_string_value(json_object_get(m, "reason"));
		ws_class_end(c, why ? why : "the class has ended");
	} else if (!strcmp(kind, "to")) {
		const char *member = json_string_value(json_object_get(m, "member"));
		json_t *msg = json_object_get(m, "msg");
		if (member && json_is_object(msg))
			to_members(c, msg, member);
	} else if (!strcmp(kind, "to_many")) {
		const char *member;
		json_t *msg;
		json_object_foreach(json_object_get(m, "msgs"), member, msg)
			if (json_is_object(msg))
				to_members(c, msg, member);
	} else if (!strcmp(kind, "all")) {
		json_t *msg = json_object_get(m, "msg");
		if (json_is_object(msg))
			to_members(c, msg, NULL);
	}
}

void ws_cluster_wake(struct ws_server *srv)
{
	json_t *m;
	int k;

	if (!srv->bclass)
		return;
	while ((m = bus_class_next(srv->bclass)) != NULL) {
		one(srv, m);
		json_decref(m);
	}
	/* The class runs followed from the stream. */
	for (k = 0; k < srv->cfg->max_classes; k++)
		if (srv->classes[k] && srv->classes[k]->remote && srv->classes[k]->rf)
			pump_run(srv->classes[k]);
}
