/* ws_cluster.c: --nats: classes across replicas on the WebSocket side: a home publishes its class's state and messages, a follower fans them out to its own students and feeds its ring the class run from the stream. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <openssl/evp.h>

#include "bundle.h"
#include "bus.h"
#include "bus_class.h"
#include "config.h"
#include "ws_int.h"

/* How often a followed class whose run the run index does not know yet
 * (its meta and its class state travel separately) tries again. */
#define CLUSTER_RETRY_US (250 * LWS_US_PER_MS)

static void members_up(struct ws_class *c, int resync);
static void answers_resend(struct ws_class *c, int all);
static void answers_cb(lws_sorted_usec_list_t *sul);
static int reveal_missing(const struct ws_class *c);

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

	if (st) {
		json_object_set_new(st, "quiz", ws_quiz_notice(c) ?: json_null());
		/* What a replica the class moves to needs: the answers so far,
		 * and the token's hash to check a reclaim against. */
		json_object_set_new(st, "answers", ws_quiz_answers(c) ?: json_array());
		json_object_set_new(st, "reclaim_sha256", json_string(c->reclaim_sha256));
	}
	return st;
}

int ws_cluster_token_hash(const char *token, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;

	if (EVP_Digest(token, strlen(token), md, &n, EVP_sha256(), NULL) != 1 || n != 32)
		return -1;
	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static void put_cb(lws_sorted_usec_list_t *sul)
{
	struct ws_class *c = lws_container_of(sul, struct ws_class, sul_put);
	json_t *st;

	c->put_due = 0;
	if (c->remote || !c->srv->bclass)
		return;
	/* The bucket only (a new home needs the answers; followers do not),
	 * under the same cver. */
	st = state_json(c);
	if (st)
		bus_class_put(c->srv->bclass, c->code, st);
	json_decref(st);
}

void ws_cluster_answers_changed(struct ws_class *c)
{
	if (!c->srv->bclass || c->remote || c->put_due)
		return;
	c->put_due = 1;
	lws_sul_schedule(c->srv->ctx, 0, &c->sul_put, put_cb, WS_PUT_ANSWERS_US);
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
	if (c->put_due) {
		lws_sul_cancel(&c->sul_put);
		c->put_due = 0;
	}
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
	bus_class_gone(bc, c->code, why);
	bus_class_home(bc, c->code, 0);
}

int ws_cluster_taken(struct ws_server *srv, const char *code)
{
	json_t *st;

	if (!srv->bclass)
		return 0;
	st = bus_class_lookup(srv->bclass, code, NULL);
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

/* Every WS_OTHERS_CHECK_US while a home counts students elsewhere: those
 * of a replica that no longer puts its load (BC_LOAD: it died) are not
 * counted any more. Not judged while NATS is away (every replica would
 * look dead); they are counted again when their replica says so. */
static void others_cb(lws_sorted_usec_list_t *sul)
{
	struct ws_server *srv = lws_container_of(sul, struct ws_server, sul_others);
	int k, more = 0;

	for (k = 0; k < srv->cfg->max_classes; k++) {
		struct ws_class *c = srv->classes[k];
		const char *rep;
		json_t *v;
		void *tmp;
		int changed = 0;

		if (!c || c->remote || !json_object_size(c->others))
			continue;
		more = 1;
		if (srv->cluster_degraded)
			continue;
		json_object_foreach_safe(c->others, tmp, rep, v)
			if (!bus_class_replica_live(srv->bclass, rep)) {
				json_object_del(c->others, rep);
				changed = 1;
			}
		if (changed) {
			ws_class_members_changed(c);
			ws_quiz_members_changed(c);
		}
	}
	if (more)
		lws_sul_schedule(srv->ctx, 0, &srv->sul_others, others_cb, WS_OTHERS_CHECK_US);
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
		json_t *now = json_integer_value(count) == 0
				      ? NULL
				      : json_pack("{s:O, s:O}", "count", count, "names", names);
		int same;

		if (!c->others)
			c->others = json_object();
		same = now ? json_equal(now, json_object_get(c->others, replica))
			   : !json_object_get(c->others, replica);
		if (!now)
			json_object_del(c->others, replica);
		else
			json_object_set_new(c->others, replica, now);
		/* Looked at again while it counts students elsewhere. */
		if (json_object_size(c->others) && lws_dll2_is_detached(&c->srv->sul_others.list))
			lws_sul_schedule(c->srv->ctx, 0, &c->srv->sul_others, others_cb,
					 WS_OTHERS_CHECK_US);
		/* The instructor is told only of a change (a resync repeats
		 * what the home may already have). */
		if (!same) {
			ws_class_members_changed(c);
			ws_quiz_members_changed(c);
		}
		if (json_is_true(json_object_get(m, "resync")))
			ws_quiz_resend(c);
	} else if (!strcmp(kind, "answer")) {
		json_t *reply = ws_quiz_remote_answer(c, m);
		const char *member = json_string_value(json_object_get(m, "member"));
		const char *nonce = json_string_value(json_object_get(m, "nonce"));
		if (reply && member)
			bus_class_send(c->srv->bclass, c->code,
				       json_pack("{s:s, s:s, s:s?, s:o}", "kind", "to", "member",
						 member, "nonce", nonce, "msg", reply));
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
		/* A class that moved here while its run went on elsewhere: the
		 * run is over for the class, and the followers are told. */
		if (!c->remote)
			ws_cluster_changed(c);
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
		if (c && c->rf_want && !c->rf) {
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

/* A follower: its students are told when the instructor is away (their
 * page reconnecting, or the class's home stopped) and back. */
static void set_away(struct ws_class *c, const char *reason)
{
	int away = c->teacher_away || c->home_gone;
	json_t *o;

	if (away == c->away)
		return;
	c->away = away;
	o = json_pack("{s:s, s:s, s:s, s:i, s:s?}", "type", "class.instructor", "class", c->code,
		      "state", away ? "reconnecting" : "back", "grace_s", c->srv->cfg->class_grace_s,
		      "reason", away ? reason : NULL);
	ws_class_push_json(c, o);
	json_decref(o);
}

/* A follower: the class has a new home (its instructor reclaimed it on
 * another replica). Whatever the last one was waiting for is over; the new
 * one hears how many students follow from here. */
static void home_moved(struct ws_class *c)
{
	if (c->home_gone) {
		c->home_gone = 0;
		lws_sul_cancel(&c->sul_grace);
		bus_class_keep(c->srv->bclass, c->code, 0);
	}
	members_up(c, 1);
	answers_resend(c, 1);
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
	int bump = 0, paused;
	double speed;

	if (cver <= c->cver)
		return; /* older than what was applied (the bucket and the subject both tell) */
	/* This replica claimed it (the claim's answer follows). */
	if (replica && !strcmp(replica, bus_class_replica(c->srv->bclass)))
		return;
	c->cver = cver;
	snprintf(c->teacher, sizeof c->teacher, "%s", teacher ? teacher : "");
	if (replica && strlen(replica) == EV_RUN_ID_LEN && strcmp(replica, c->home)) {
		int moved = c->home[0] != '\0';
		memcpy(c->home, replica, sizeof c->home);
		if (moved)
			home_moved(c);
	}
	c->teacher_away = tstate && !strcmp(tstate, "reconnecting");
	set_away(c, NULL);
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
		if (reveal_missing(c))
			lws_sul_schedule(c->srv->ctx, 0, &c->srv->sul_answers, answers_cb,
					 WS_ANSWER_RETRY_US);
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
	st = bus_class_lookup(srv->bclass, code, NULL);
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

/* Tell the class's home how many students follow it from here; resync:
 * after NATS was away, or to a new home, which then sends again what its
 * students here may have missed (a reveal's results). */
static void members_up(struct ws_class *c, int resync)
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
		     json_pack("{s:s, s:s, s:I, s:o, s:b}", "kind", "members", "replica",
			       bus_class_replica(c->srv->bclass), "count", (json_int_t)c->n_members,
			       "names", names, "resync", resync));
}

void ws_cluster_members(struct ws_class *c)
{
	members_up(c, 0);
}


/* Send c's pending answers that have waited WS_ANSWER_RETRY_US for their
 * reply again (all: every one, now), while NATS is there. */
static void answers_resend(struct ws_class *c, int all)
{
	struct ws_server *srv = c->srv;
	int64_t now = ws_now_us();
	const char *member;
	json_t *p;

	if (srv->cluster_degraded || !c->remote)
		return;
	json_object_foreach(c->pending, member, p) {
		json_int_t sent = json_integer_value(json_object_get(p, "sent_us"));
		if (!all && now - sent < WS_ANSWER_RETRY_US)
			continue;
		json_object_set_new(p, "sent_us", json_integer(now));
		bus_class_up(srv->bclass, c->code, json_deep_copy(json_object_get(p, "up")));
		bus_class_answer_resent(srv->bclass);
	}
}

/* A follower: the question is revealed (the home's state says) and the
 * reveal has not reached this replica. */
static int reveal_missing(const struct ws_class *c)
{
	const json_t *q = c->quiz_notice;
	const char *st = json_string_value(json_object_get(q, "state"));

	return st && !strcmp(st, "revealed") &&
	       json_integer_value(json_object_get(q, "id")) != c->revealed_id;
}

static void answers_cb(lws_sorted_usec_list_t *sul)
{
	struct ws_server *srv = lws_container_of(sul, struct ws_server, sul_answers);
	int k, more = 0;

	for (k = 0; k < srv->cfg->max_classes; k++) {
		struct ws_class *c = srv->classes[k];
		if (!c || !c->remote)
			continue;
		if (json_object_size(c->pending)) {
			answers_resend(c, 0);
			more = 1;
		}
		/* The home says the question is revealed and its results never
		 * came (lost while NATS was away): asked for again. */
		if (reveal_missing(c)) {
			if (!srv->cluster_degraded)
				members_up(c, 1);
			more = 1;
		}
	}
	if (more)
		lws_sul_schedule(srv->ctx, 0, &srv->sul_answers, answers_cb, WS_ANSWER_RETRY_US);
}

void ws_cluster_answer(struct ws_session *s, json_t *msg, const char *tag)
{
	struct ws_server *srv = s->srv;
	struct ws_class *c = s->cls;
	char m[400], nonce[WS_NONCE_LEN + 1];
	json_t *up;

	if (srv->cluster_degraded) {
		snprintf(m, sizeof m, "your answer cannot reach the instructor now: %s",
			 srv->cluster_reason);
		ws_send_error(s, "unavailable", NULL, m, tag, NULL);
		return;
	}
	if (!c->pending)
		c->pending = json_object();
	if (!json_object_get(c->pending, s->member) &&
	    json_object_size(c->pending) >= (size_t)srv->cfg->max_class_viewers) {
		snprintf(m, sizeof m,
			 "at most %d answers of this class wait for the instructor's server at once "
			 "(--max-class-viewers); try again in a moment",
			 srv->cfg->max_class_viewers);
		ws_send_error(s, "limit", "answer", m, tag, NULL);
		return;
	}
	if (config_random_text(nonce, WS_NONCE_LEN) < 0) {
		ws_send_error(s, "internal", NULL, "could not make an answer nonce", tag, NULL);
		return;
	}
	/* Checked and counted by the class's home; its reply comes back for
	 * this member (class.quiz.answered or an error with this tag). Sent
	 * again, with the same nonce, until it does: the home counts a nonce
	 * once, so an answer is counted exactly once however often it is
	 * sent, and a newer answer of the same student replaces this one. */
	up = json_pack("{s:s, s:s, s:s, s:s, s:O?, s:O?, s:s?, s:s}", "kind", "answer", "replica",
		       bus_class_replica(srv->bclass), "member", s->member, "name", s->name, "id",
		       json_object_get(msg, "id"), "answer", json_object_get(msg, "answer"), "tag",
		       tag, "nonce", nonce);
	if (!up || !c->pending) {
		json_decref(up);
		ws_send_error(s, "internal", NULL, "out of memory", tag, NULL);
		return;
	}
	json_object_set_new(c->pending, s->member,
			    json_pack("{s:O, s:s, s:I, s:I}", "up", up, "nonce", nonce, "sent_us",
				      (json_int_t)ws_now_us(), "sid", (json_int_t)s->id));
	bus_class_up(srv->bclass, c->code, up);
	lws_sul_schedule(srv->ctx, 0, &srv->sul_answers, answers_cb, WS_ANSWER_RETRY_US);
}

/* The home's reply to an answer: handed on once, when it is the reply to
 * the answer waiting (a reply to a resent copy, or to an answer the
 * student replaced since, is dropped). 1 when msg is to be sent. */
static int answer_replied(struct ws_class *c, const char *member, const char *nonce)
{
	json_t *p = json_object_get(c->pending, member);

	if (!nonce)
		return 1;
	if (!p || strcmp(json_string_value(json_object_get(p, "nonce")) ?: "", nonce))
		return 0;
	json_object_del(c->pending, member);
	return 1;
}

/* The class ends (or its answers are taken here, moved == 1): every
 * answer still waiting for the home is told, never dropped in silence. */
static void answers_settle(struct ws_class *c)
{
	const char *member;
	json_t *p;
	void *tmp;

	json_object_foreach_safe(c->pending, tmp, member, p) {
		json_t *up = json_object_get(p, "up");
		json_t *reply = NULL;
		if (!c->remote)
			reply = ws_quiz_remote_answer(c, up);
		else
			reply = json_pack("{s:s, s:s, s:s, s:s, s:s?}", "type", "error", "code",
					  "unconfirmed", "param", "answer", "message",
					  "the class ended before the instructor's server confirmed "
					  "your answer: it was not counted",
					  "tag", json_string_value(json_object_get(up, "tag")));
		if (reply)
			to_members(c, reply, member);
		json_decref(reply);
		json_object_del(c->pending, member);
	}
}

void ws_cluster_free(struct ws_class *c)
{
	answers_settle(c);
	json_decref(c->pending);
	c->pending = NULL;
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
	for (k = 0; k < srv->cfg->max_classes; k++) {
		struct ws_class *c = srv->classes[k];
		if (!c)
			continue;
		/* Students admitted while NATS was away hold seats now. */
		bus_class_seats(srv->bclass, c->code, (long)(c->n_members + c->joins));
		if (c->remote) {
			members_up(c, 1);
			answers_resend(c, 1);
		}
	}
}

/* ---- moving a class between replicas ---- */

static struct ws_claim *claim_find(struct ws_server *srv, const char *code)
{
	int i;

	for (i = 0; i < WS_CLAIMS_MAX; i++)
		if (srv->claims[i].code[0] && !strcmp(srv->claims[i].code, code))
			return &srv->claims[i];
	return NULL;
}

static void claim_free(struct ws_claim *cl)
{
	memset(cl, 0, sizeof *cl);
}

void ws_cluster_reclaim(struct ws_session *s, const char *code, const char *token,
			const char *tag)
{
	struct ws_server *srv = s->srv;
	struct bus_class *bc = srv->bclass;
	struct ws_class *c = ws_class_find(srv, code);
	struct ws_claim *cl = NULL;
	json_t *st = NULL;
	const char *want;
	char hash[65], m[400], why[200];
	int i, k, slot = c ? 0 : -1;

	if (bc)
		st = bus_class_lookup(bc, code, NULL);
	want = json_string_value(json_object_get(st, "reclaim_sha256"));
	if (!st || !want || ws_cluster_token_hash(token, hash) < 0 ||
	    !class_secret_equal(want, hash)) {
		json_decref(st);
		ws_class_reclaim_refused(s, tag);
		return;
	}
	/* Asked of the bus itself, as a join does: this thread hears of NATS
	 * being back (its "cluster" news) a turn of the bus's loop later. */
	if (!bus_class_ok(bc, why, sizeof why)) {
		json_decref(st);
		snprintf(m, sizeof m,
			 "the class is held by another server and cannot move here now: %s", why);
		ws_send_error(s, "unavailable", "class", m, tag, NULL);
		return;
	}
	if (claim_find(srv, code)) {
		json_decref(st);
		ws_send_error(s, "bad_request", "class",
			      "a reclaim of this class is already under way on this server", tag,
			      NULL);
		return;
	}
	for (k = 0; k < srv->cfg->max_classes && slot < 0; k++)
		if (!srv->classes[k])
			slot = k;
	for (i = 0; i < WS_CLAIMS_MAX && !cl; i++)
		if (!srv->claims[i].code[0])
			cl = &srv->claims[i];
	if (slot < 0 || !cl) {
		json_decref(st);
		snprintf(m, sizeof m,
			 slot < 0 ? "this server holds or follows at most %d classes at once "
				    "(--max-classes): the class cannot move here; try again later"
				  : "this server takes back at most %d classes at once; try again",
			 slot < 0 ? srv->cfg->max_classes : WS_CLAIMS_MAX);
		ws_send_error(s, "limit", "class", m, tag, NULL);
		return;
	}
	/* The NATS thread reads the entry fresh and replaces it, naming this
	 * replica, if it is still this class held where it was seen. */
	memcpy(cl->code, code, sizeof cl->code);
	cl->sid = s->id;
	cl->has_tag = tag != NULL;
	snprintf(cl->tag, sizeof cl->tag, "%s", tag ? tag : "");
	snprintf(cl->token, sizeof cl->token, "%s", token);
	bus_class_claim(bc, code, json_string_value(json_object_get(st, "replica")) ?: "", want);
	json_decref(st);
}

/* This replica ran run id (its bundle is here). */
static int run_here(struct ws_server *srv, const char *id)
{
	char path[4096];

	return runs_bundle_path(srv->cfg->data, id, "events.jsonl", path, sizeof path) == 0 &&
	       access(path, F_OK) == 0;
}

static void home_grace_cb(lws_sorted_usec_list_t *sul)
{
	struct ws_class *c = lws_container_of(sul, struct ws_class, sul_grace);
	char why[200];

	snprintf(why, sizeof why,
		 "the server that held the class stopped and its instructor did not take it back "
		 "within %d s",
		 c->srv->cfg->class_grace_s);
	ws_class_end(c, why);
}

/* A follower: the class's home stopped heartbeating (or beats again). */
static void home_gone(struct ws_class *c, const char *replica, int gone)
{
	if (!c->remote || strcmp(c->home, replica) || gone == c->home_gone)
		return;
	c->home_gone = gone;
	bus_class_keep(c->srv->bclass, c->code, gone);
	if (gone)
		lws_sul_schedule(c->srv->ctx, 0, &c->sul_grace, home_grace_cb,
				 (lws_usec_t)c->srv->cfg->class_grace_s * LWS_US_PER_SEC);
	else
		lws_sul_cancel(&c->sul_grace);
	set_away(c, "the server that held the class stopped (or lost its link to the others); "
		    "the class goes on when its instructor takes it back on another server");
}

/* The claim of a class (ws_cluster_reclaim) was decided. */
static void claimed(struct ws_server *srv, const char *code, int ok, const json_t *st,
		    const char *why)
{
	struct ws_claim *cl = claim_find(srv, code);
	struct ws_session *s = cl ? ws_session_find(srv, cl->sid) : NULL;
	struct ws_class *c;
	const json_t *view, *pos;
	const char *run, *teacher, *tag;
	char tagbuf[RUN_TAG_MAX + 1];
	int k, slot = -1, followed;

	if (!cl)
		return;
	memcpy(tagbuf, cl->tag, sizeof tagbuf);
	tag = cl->has_tag ? tagbuf : NULL;
	if (!ok || !json_is_object(st)) {
		if (s)
			ws_send_error(s, "conflict", "class", why ? why : "the class could not move here",
				      tag, NULL);
		claim_free(cl);
		return;
	}
	c = ws_class_find(srv, code);
	followed = c != NULL;
	if (c && !c->remote) {
		claim_free(cl); /* cannot be: a class is claimed only where it is not home */
		return;
	}
	if (!c) {
		for (k = 0; k < srv->cfg->max_classes && slot < 0; k++)
			if (!srv->classes[k])
				slot = k;
		c = slot < 0 ? NULL : calloc(1, sizeof *c);
		if (c && class_ring_init(&c->ring, (size_t)srv->cfg->class_buffer,
					 (size_t)srv->cfg->class_buffer * WS_RING_BYTES_PER_ENTRY,
					 LWS_PRE) < 0) {
			free(c);
			c = NULL;
		}
		if (!c) {
			/* Claimed, and nowhere to hold it: the entry expires, its
			 * followers wait for their grace period to end. */
			if (s)
				ws_send_error(s, "limit", "class",
					      "this server has no room for the class now (--max-classes)",
					      tag, NULL);
			claim_free(cl);
			return;
		}
		memcpy(c->code, code, sizeof c->code);
		c->srv = srv;
		c->pos = -1;
		srv->classes[slot] = c;
	} else {
		/* It was followed here: its students stay, its ring too. */
		bus_class_follow(srv->bclass, code, 0);
		if (c->home_gone)
			bus_class_keep(srv->bclass, code, 0);
		lws_sul_cancel(&c->sul_grace);
		json_decref(c->quiz_notice);
		json_decref(c->others);
		c->quiz_notice = c->others = NULL;
		c->home_gone = c->teacher_away = c->away = 0;
	}
	c->remote = 0;
	c->home[0] = '\0';
	c->cver = json_integer_value(json_object_get(st, "cver"));
	teacher = json_string_value(json_object_get(st, "instructor"));
	snprintf(c->teacher, sizeof c->teacher, "%s", teacher ? teacher : "");
	snprintf(c->reclaim, sizeof c->reclaim, "%s", cl->token);
	ws_cluster_token_hash(c->reclaim, c->reclaim_sha256);
	run = json_string_value(json_object_get(st, "run"));
	if (run && ev_valid_run_id(run) && strcmp(run, c->run)) {
		close_run(c);
		memcpy(c->run, run, sizeof c->run);
		json_decref(c->run_msg);
		c->run_msg = json_deep_copy(json_object_get(st, "run_info"));
	}
	/* The class run went on where the class was: read from the stream
	 * until it ends (it cannot be cancelled from here). A class followed
	 * here already reads it (or has read it to its end); a class new here
	 * reads it from its first event. */
	c->run_remote = c->run[0] && !run_here(srv, c->run);
	if (!followed) {
		c->run_live = json_is_true(json_object_get(st, "live"));
		if (c->run_live && c->run_remote)
			open_run(c);
	}
	view = json_object_get(st, "view");
	pos = json_object_get(view, "pos");
	c->paused = json_is_true(json_object_get(view, "paused"));
	c->speed = json_number_value(json_object_get(view, "speed"));
	c->pos = json_is_integer(pos) ? json_integer_value(pos) : -1;
	ws_quiz_restore(c, json_object_get(st, "quiz"), json_object_get(st, "answers"));
	/* Answers of its students here that waited for the old home: taken
	 * here now (one the old home counted is in the answers restored, under
	 * its nonce, and is not counted twice). */
	answers_settle(c);
	http_count(srv->ctr, HTTP_C_CLASSES, 1);
	claim_free(cl);
	/* Its students elsewhere are counted again as their replicas say. */
	if (s && !s->cls) {
		ws_class_reclaimed(c, s, tag);
	} else {
		/* The page went meanwhile: the class waits for it here. */
		ws_class_orphaned(c);
	}
	ws_class_members_changed(c);
	pump_run(c);
}

/* This replica was the class's home and another claimed it: it follows
 * the class for its own students from now on (or lets it go without
 * them), and an instructor's page still here is told. */
static void deposed(struct ws_server *srv, const char *code, const char *by)
{
	struct ws_class *c = ws_class_find(srv, code);
	struct ws_session *t;

	if (!c || c->remote)
		return;
	t = ws_session_find(srv, c->instructor);
	if (t) {
		t->cls = NULL;
		t->teaching = 0;
		t->members_dirty = 0;
		ws_send_json(t, json_pack("{s:s, s:s, s:s}", "type", "class.ended", "class", c->code,
					  "reason",
					  "the class was taken over by another page (its instructor "
					  "reclaimed it on another server)"));
	}
	lws_sul_cancel(&c->sul_grace);
	if (c->put_due) {
		lws_sul_cancel(&c->sul_put);
		c->put_due = 0;
	}
	/* Its run, if it is still going here, goes on for the class's new
	 * home (which reads it from the stream), owned by no page. */
	if (c->run_live && !c->run_remote && srv->runs)
		runs_set_owner(srv->runs, c->run, 0);
	/* Its students here were told the instructor was away (if the page
	 * had gone): the new home's state says when they are back. */
	c->teacher_away = c->away = c->orphaned;
	c->instructor = 0;
	c->orphaned = 0;
	ws_quiz_free(c->quiz);
	c->quiz = NULL;
	json_decref(c->others);
	c->others = NULL;
	c->remote = 1;
	memcpy(c->home, by, sizeof c->home);
	http_count(srv->ctr, HTTP_C_CLASSES, -1);
	if (c->n_members == 0) {
		ws_class_end(c, "the class moved to another server");
		return;
	}
	/* The bucket's state (the new home's) is delivered once subscribed. */
	bus_class_follow(srv->bclass, code, 1);
	ws_cluster_members(c);
}

static void one(struct ws_server *srv, json_t *m)
{
	const char *kind = json_string_value(json_object_get(m, "kind"));
	const char *code = json_string_value(json_object_get(m, "code"));
	const char *replica = json_string_value(json_object_get(m, "replica"));
	struct ws_class *c;

	if (!kind)
		return;
	if (!strcmp(kind, "cluster")) {
		cluster_state(srv, m);
		return;
	}
	if (!code)
		return;
	if (!strcmp(kind, "seat")) {
		ws_class_seated(srv, code, (uint64_t)json_integer_value(json_object_get(m, "sid")),
				json_is_true(json_object_get(m, "ok")),
				json_string_value(json_object_get(m, "reason")));
		return;
	}
	if (!strcmp(kind, "claimed")) {
		claimed(srv, code, json_is_true(json_object_get(m, "ok")), json_object_get(m, "state"),
			json_string_value(json_object_get(m, "reason")));
		return;
	}
	c = ws_class_find(srv, code);
	if (!c)
		return;
	if (!strcmp(kind, "deposed") && replica && strlen(replica) == EV_RUN_ID_LEN) {
		deposed(srv, code, replica);
		return;
	}
	if ((!strcmp(kind, "home_gone") || !strcmp(kind, "home_back")) && replica) {
		home_gone(c, replica, !strcmp(kind, "home_gone"));
		return;
	}
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
		if (member && json_is_object(msg) &&
		    answer_replied(c, member, json_string_value(json_object_get(m, "nonce"))))
			to_members(c, msg, member);
	} else if (!strcmp(kind, "to_many")) {
		const char *member;
		json_t *msg;
		json_object_foreach(json_object_get(m, "msgs"), member, msg) {
			/* The results of a reveal that reached here already, sent
			 * again for another replica's students. */
			if (json_integer_value(json_object_get(msg, "id")) == c->revealed_id)
				break;
			if (json_is_object(msg))
				to_members(c, msg, member);
		}
	} else if (!strcmp(kind, "all")) {
		json_t *msg = json_object_get(m, "msg");
		const char *type = json_string_value(json_object_get(msg, "type"));
		if (!json_is_object(msg))
			return;
		if (type && !strcmp(type, "class.quiz.revealed")) {
			json_int_t id = json_integer_value(json_object_get(msg, "id"));
			if (id == c->revealed_id)
				return; /* sent again for another replica's students */
			c->revealed_id = id;
		}
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
		if (srv->classes[k] && srv->classes[k]->rf)
			pump_run(srv->classes[k]);
}
