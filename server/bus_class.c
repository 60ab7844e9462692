/* bus_class.c: --nats: classes across replicas (state in the bucket SOCKLAB_CLASSES, messages on socklab.class.CODE) and every replica's admission queue in SOCKLAB_LOAD, on a thread of its own. */
#include "bus_class.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "bus_int.h"
#include "class.h"
#include "http.h"

/* What the lws thread asks the NATS thread to do, in order. */
enum bc_kind {
	BC_PUT, BC_DEL, BC_PUB, BC_UP, BC_FOLLOW, BC_UNFOLLOW, BC_HOME, BC_UNHOME, BC_CLAIM,
	BC_KEEP, BC_UNKEEP, BC_SEAT, BC_SEATS
};

struct bc_out {
	struct bc_out *next;
	enum bc_kind kind;
	char code[CLASS_CODE_LEN + 1];
	char *data; /* JSON text (PUT, PUB, UP, CLAIM); NULL otherwise */
	int tries;  /* failed attempts while connected */
};

/* A put or delete refused on a working connection (JetStream still
 * recovering after NATS restarted, say) is tried again this often, at
 * most this many times; then it is counted as failed. */
#define BC_RETRY_MS 250
#define BC_TRIES 120
/* Reads and revision-checked writes of a class's seats one join makes at
 * most while other replicas write them too (each try: one read, one write;
 * losing one means another replica's join or leave went through). */
#define BC_SEAT_TRIES 64

/* A subscription of the NATS thread: a class it follows (socklab.class.CODE)
 * or a class it is home to (socklab.class.CODE.up). */
struct bc_sub {
	char code[CLASS_CODE_LEN + 1];
	int home;
	natsSubscription *sub;
};

struct bus_class {
	struct bus *bus;                /* read-only: nc, js, replica */
	const struct serve_config *cfg; /* read-only */
	struct http_counters *ctr;      /* thread-safe */
	void (*wake)(void *); /* under wake_lock: cleared before the lws server goes */
	void *wake_arg;
	pthread_mutex_t wake_lock;
	/* Everything below up to the thread's own is guarded by lock; the
	 * libnats delivery threads take it too. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct bc_out *oh, *ot;
	long on;
	json_t *inbox;       /* array of what arrived for the lws thread */
	json_t *known;       /* code -> {"state", "seen_us"} from the bucket */
	json_t *following;   /* code -> true: the classes this replica follows */
	json_t *loads;       /* replica -> {load..., "seen_us"} */
	int connected, synced, told_ok;
	int posted; /* something was posted since the lws thread was last woken */
	long published, failed, dropped;
	long moved_in, moved_out; /* classes claimed here / taken by another replica */
	long answers_resent;      /* students' answers sent to a home again */
	int stop;
	/* The NATS thread's own. */
	pthread_t thread;
	int started;
	kvStore *kv, *kv_load, *kv_seats;
	kvWatcher *w, *w_load;
	unsigned gen;
	struct bc_sub *subs;
	size_t n_subs, cap_subs;
	/* code -> {"text","rev"}: the classes this replica is home to, their
	 * latest state (put again every BC_TOUCH_MS) and the revision of the
	 * entry it last wrote ("rev" 0: none yet). */
	json_t *homes;
	json_t *kept;      /* code -> true: followed classes whose home stopped (kept alive) */
	json_t *home_seen; /* code -> "replica" or "replica gone": what heartbeats last said */
	int64_t touched_us, load_us, swept_us, beat_us;
	int64_t watch_us; /* when the buckets were last read whole (a new connection) */
};

static int64_t now_us(void)
{
	return bus_mono_us();
}

/* lock held: hand o (stolen) to the lws thread. */
static void post(struct bus_class *bc, json_t *o)
{
	if (!o)
		return;
	if (json_array_size(bc->inbox) >= BC_IN_MAX) {
		bc->dropped++;
		json_decref(o);
		return;
	}
	json_array_append_new(bc->inbox, o);
	bc->posted = 1;
}

/* Wake the lws thread: once bus_class_set_wake(bc, NULL, NULL) has
 * returned, no call is under way or to come. */
static void wake(struct bus_class *bc)
{
	pthread_mutex_lock(&bc->wake_lock);
	if (bc->wake)
		bc->wake(bc->wake_arg);
	pthread_mutex_unlock(&bc->wake_lock);
}

void bus_class_set_wake(struct bus_class *bc, void (*fn)(void *), void *arg)
{
	if (!bc)
		return;
	pthread_mutex_lock(&bc->wake_lock);
	bc->wake = fn;
	bc->wake_arg = arg;
	pthread_mutex_unlock(&bc->wake_lock);
}

/* ---- the lws thread's side: queue work ---- */

static void queue(struct bus_class *bc, enum bc_kind kind, const char *code, json_t *msg)
{
	struct bc_out *o;
	char *text = NULL;

	if (!bc) {
		json_decref(msg);
		return;
	}
	if (msg) {
		text = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(msg);
		if (!text)
			return;
	}
	o = calloc(1, sizeof *o);
	if (!o) {
		free(text);
		return;
	}
	o->kind = kind;
	snprintf(o->code, sizeof o->code, "%s", code);
	o->data = text;
	pthread_mutex_lock(&bc->lock);
	/* A full queue drops messages, never subscriptions: those are bounded
	 * by the classes themselves. */
	if (bc->on >= BC_OUT_MAX && (kind == BC_PUB || kind == BC_UP || kind == BC_PUT)) {
		bc->dropped++;
		pthread_mutex_unlock(&bc->lock);
		free(text);
		free(o);
		return;
	}
	if (bc->ot)
		bc->ot->next = o;
	else
		bc->oh = o;
	bc->ot = o;
	bc->on++;
	if (kind == BC_FOLLOW)
		json_object_set_new(bc->following, code, json_true());
	else if (kind == BC_UNFOLLOW)
		json_object_del(bc->following, code);
	pthread_cond_signal(&bc->cond);
	pthread_mutex_unlock(&bc->lock);
}

void bus_class_put(struct bus_class *bc, const char *code, const json_t *state)
{
	queue(bc, BC_PUT, code, json_deep_copy(state));
}

void bus_class_send(struct bus_class *bc, const char *code, json_t *msg)
{
	queue(bc, BC_PUB, code, msg);
}

void bus_class_gone(struct bus_class *bc, const char *code, const char *why)
{
	queue(bc, BC_DEL, code,
	      json_pack("{s:s, s:s, s:s}", "code", code, "replica", bus_replica(bc->bus), "ended",
			why));
}

void bus_class_home(struct bus_class *bc, const char *code, int on)
{
	queue(bc, on ? BC_HOME : BC_UNHOME, code, NULL);
}

void bus_class_up(struct bus_class *bc, const char *code, json_t *msg)
{
	queue(bc, BC_UP, code, msg);
}

void bus_class_follow(struct bus_class *bc, const char *code, int on)
{
	queue(bc, on ? BC_FOLLOW : BC_UNFOLLOW, code, NULL);
}

void bus_class_keep(struct bus_class *bc, const char *code, int on)
{
	queue(bc, on ? BC_KEEP : BC_UNKEEP, code, NULL);
}

void bus_class_seat(struct bus_class *bc, const char *code, long want, long max, uint64_t sid)
{
	queue(bc, BC_SEAT, code,
	      json_pack("{s:I, s:I, s:I}", "want", (json_int_t)want, "max", (json_int_t)max, "sid",
			(json_int_t)sid));
}

void bus_class_seats(struct bus_class *bc, const char *code, long count)
{
	queue(bc, BC_SEATS, code, json_pack("{s:I}", "count", (json_int_t)count));
}

void bus_class_claim(struct bus_class *bc, const char *code, const char *from, const char *hash)
{
	queue(bc, BC_CLAIM, code, json_pack("{s:s, s:s}", "from", from, "reclaim_sha256", hash));
}

int bus_class_replica_live(struct bus_class *bc, const char *id)
{
	json_t *v;
	int live;

	pthread_mutex_lock(&bc->lock);
	v = json_object_get(bc->loads, id);
	live = v && now_us() - json_integer_value(json_object_get(v, "seen_us")) <=
			    (int64_t)BC_LOAD_TTL_MS * 1000;
	pthread_mutex_unlock(&bc->lock);
	return live;
}

void bus_class_answer_resent(struct bus_class *bc)
{
	pthread_mutex_lock(&bc->lock);
	bc->answers_resent++;
	pthread_mutex_unlock(&bc->lock);
}

const char *bus_class_replica(const struct bus_class *bc)
{
	return bus_replica(bc->bus);
}

json_t *bus_class_lookup(struct bus_class *bc, const char *code, uint64_t *rev)
{
	json_t *k, *st;

	pthread_mutex_lock(&bc->lock);
	k = json_object_get(bc->known, code);
	st = json_object_get(k, "state");
	json_incref(st);
	if (rev)
		*rev = (uint64_t)json_integer_value(json_object_get(k, "rev"));
	pthread_mutex_unlock(&bc->lock);
	return st;
}

json_t *bus_class_next(struct bus_class *bc)
{
	json_t *o = NULL;

	pthread_mutex_lock(&bc->lock);
	if (json_array_size(bc->inbox)) {
		o = json_incref(json_array_get(bc->inbox, 0));
		json_array_remove(bc->inbox, 0);
	}
	pthread_mutex_unlock(&bc->lock);
	return o;
}

/* lock held. */
static const char *degraded_why(const struct bus_class *bc)
{
	if (!bc->connected)
		return "NATS is not reachable: classes go on for the students of the replica "
		       "that holds them; students here cannot follow a class of another replica "
		       "until it is back";
	if (!bc->synced)
		return "reading the classes of every replica from NATS";
	return NULL;
}

int bus_class_ok(struct bus_class *bc, char *reason, size_t len)
{
	const char *why;

	pthread_mutex_lock(&bc->lock);
	why = degraded_why(bc);
	if (reason && len)
		snprintf(reason, len, "%s", why ? why : "");
	pthread_mutex_unlock(&bc->lock);
	return why == NULL;
}

/* lock held. */
static json_t *queues_locked(struct bus_class *bc)
{
	json_t *out = json_array(), *v;
	const char *key;
	int64_t now = now_us();

	json_object_foreach(bc->loads, key, v) {
		json_t *row;
		json_int_t seen = json_integer_value(json_object_get(v, "seen_us"));
		int self = !strcmp(key, bus_replica(bc->bus));
		if (!self && now - seen > (int64_t)BC_LOAD_TTL_MS * 1000)
			continue; /* not heard of for a while: gone */
		row = json_deep_copy(v);
		json_object_del(row, "seen_us");
		json_object_set_new(row, "self", json_boolean(self));
		json_object_set_new(row, "age_ms", json_integer((now - seen) / 1000));
		if (self)
			json_array_insert_new(out, 0, row);
		else
			json_array_append_new(out, row);
	}
	return out;
}

json_t *bus_class_queues(struct bus_class *bc)
{
	json_t *o;

	pthread_mutex_lock(&bc->lock);
	o = queues_locked(bc);
	pthread_mutex_unlock(&bc->lock);
	return o;
}

json_t *bus_class_health(struct bus_class *bc)
{
	json_t *o;
	const char *why;

	pthread_mutex_lock(&bc->lock);
	why = degraded_why(bc);
	o = json_pack("{s:s, s:s?, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "state",
		      why ? "degraded" : "ok", "reason", why, "classes_known",
		      (json_int_t)json_object_size(bc->known), "following",
		      (json_int_t)json_object_size(bc->following), "published",
		      (json_int_t)bc->published, "failed", (json_int_t)bc->failed, "dropped",
		      (json_int_t)bc->dropped, "moved_in", (json_int_t)bc->moved_in, "moved_out",
		      (json_int_t)bc->moved_out, "answers_resent", (json_int_t)bc->answers_resent,
		      "queues", queues_locked(bc));
	pthread_mutex_unlock(&bc->lock);
	return o;
}

/* ---- libnats's delivery threads ---- */

/* A message on socklab.class.CODE (followers) or socklab.class.CODE.up
 * (the home): for the lws thread, with the code added. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct bus_class *bc = closure;
	const char *subject = natsMsg_GetSubject(msg);
	json_t *o = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
	char code[CLASS_CODE_LEN + 1];

	if (json_is_object(o) && subject && strlen(subject) >= strlen(BC_SUBJECT) + CLASS_CODE_LEN &&
	    !strncmp(subject, BC_SUBJECT, strlen(BC_SUBJECT))) {
		memcpy(code, subject + strlen(BC_SUBJECT), CLASS_CODE_LEN);
		code[CLASS_CODE_LEN] = '\0';
		json_object_set_new(o, "code", json_string(code));
		pthread_mutex_lock(&bc->lock);
		post(bc, o);
		pthread_mutex_unlock(&bc->lock);
		wake(bc);
	} else {
		json_decref(o);
	}
	natsMsg_Destroy(msg);
}

/* ---- the NATS thread ---- */

static int sub_find(struct bus_class *bc, const char *code, int home)
{
	size_t i;

	for (i = 0; i < bc->n_subs; i++)
		if (bc->subs[i].home == home && !strcmp(bc->subs[i].code, code))
			return (int)i;
	return -1;
}

static void subscribe(struct bus_class *bc, const char *code, int home)
{
	char subject[64];
	natsSubscription *sub = NULL;

	if (sub_find(bc, code, home) >= 0)
		return;
	if (bc->n_subs == bc->cap_subs) {
		size_t cap = bc->cap_subs ? bc->cap_subs * 2 : 16;
		struct bc_sub *n = realloc(bc->subs, cap * sizeof *n);
		if (!n)
			return;
		bc->subs = n;
		bc->cap_subs = cap;
	}
	snprintf(subject, sizeof subject, "%s%s%s", BC_SUBJECT, code, home ? ".up" : "");
	if (natsConnection_Subscribe(&sub, bc->bus->nc, subject, on_msg, bc) != NATS_OK) {
		pthread_mutex_lock(&bc->lock);
		bc->failed++;
		pthread_mutex_unlock(&bc->lock);
		return;
	}
	snprintf(bc->subs[bc->n_subs].code, sizeof bc->subs[0].code, "%s", code);
	bc->subs[bc->n_subs].home = home;
	bc->subs[bc->n_subs++].sub = sub;
}

static void unsubscribe(struct bus_class *bc, const char *code, int home)
{
	int i = sub_find(bc, code, home);

	if (i < 0)
		return;
	natsSubscription_Unsubscribe(bc->subs[i].sub);
	natsSubscription_Destroy(bc->subs[i].sub);
	bc->subs[i] = bc->subs[--bc->n_subs];
}

/* lock held: the bucket's entry for code, as a "state" for the lws thread
 * when this replica follows the class. */
static void post_state(struct bus_class *bc, const char *code)
{
	json_t *st = json_object_get(json_object_get(bc->known, code), "state");

	if (!json_object_get(bc->following, code))
		return;
	if (st)
		post(bc, json_pack("{s:s, s:s, s:O}", "kind", "state", "code", code, "state", st));
}

/* The replica named by an entry of the class bucket (into rep), "" when
 * none. */
static void entry_replica(kvEntry *e, char *rep, size_t len)
{
	json_t *st = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);

	snprintf(rep, len, "%s", json_string_value(json_object_get(st, "replica")) ?: "");
	json_decref(st);
}

/* This replica is no longer code's home: another took the class (its
 * instructor reclaimed it there). The lws thread makes it a follower. */
static void deposed(struct bus_class *bc, const char *code, const char *by)
{
	json_object_del(bc->homes, code);
	unsubscribe(bc, code, 1);
	pthread_mutex_lock(&bc->lock);
	bc->moved_out++;
	post(bc, json_pack("{s:s, s:s, s:s}", "kind", "deposed", "code", code, "replica", by));
	pthread_mutex_unlock(&bc->lock);
}

/*
 * Put code's state as its home, revision-checked, so that two replicas can
 * never both be home: an update of the revision this replica last wrote,
 * or a create when it has written none. Refused, the entry is read: another
 * replica's (it claimed the class) -> this one is deposed; this replica's
 * own (a follower kept it alive while this one was away, or an
 * acknowledgement was lost) -> its revision, and again; none (expired or
 * deleted) -> a create. NATS_OK when done (or deposed).
 */
static natsStatus home_put(struct bus_class *bc, const char *code, const char *text)
{
	json_t *h = json_object_get(bc->homes, code);
	uint64_t rev, nrev = 0;
	natsStatus s = NATS_OK;
	int tries, len = (int)strlen(text);

	if (!h)
		return NATS_OK; /* not (or no longer) home: nothing to put */
	rev = (uint64_t)json_integer_value(json_object_get(h, "rev"));
	for (tries = 0; tries < 3; tries++) {
		kvEntry *e = NULL;
		natsStatus g;
		char rep[EV_RUN_ID_LEN + 8];

		s = rev ? kvStore_Update(&nrev, bc->kv, code, text, len, rev)
			: kvStore_Create(&nrev, bc->kv, code, text, len);
		if (s == NATS_OK) {
			json_object_set_new(bc->homes, code,
					    json_pack("{s:s, s:I}", "text", text, "rev", (json_int_t)nrev));
			return NATS_OK;
		}
		g = kvStore_Get(&e, bc->kv, code);
		if (g == NATS_NOT_FOUND) {
			rev = 0;
			continue;
		}
		if (g != NATS_OK)
			return s; /* the connection: again later */
		entry_replica(e, rep, sizeof rep);
		rev = kvEntry_Revision(e);
		kvEntry_Destroy(e);
		if (strcmp(rep, bus_replica(bc->bus))) {
			deposed(bc, code, rep);
			return NATS_OK;
		}
	}
	return s;
}

/*
 * A claim (o->data: {"from","reclaim_sha256"}): code's entry becomes this
 * replica's. It is read fresh and replaced at its revision, by the same
 * state naming this replica, a version above and its instructor here, if
 * it is still the class whose token was checked (same hash) and still held
 * by the replica the lws thread saw as its home ("from"), or by this one.
 * An entry another replica rewrote since (a step, an answer) is read
 * again; one that names a third replica was claimed there first. The lws
 * thread is told {"kind":"claimed","code","ok","state" or "reason"}.
 */
static natsStatus claim(struct bus_class *bc, struct bc_out *o)
{
	json_t *want = json_loads(o->data, 0, NULL), *st = NULL;
	const char *from = json_string_value(json_object_get(want, "from"));
	const char *hash = json_string_value(json_object_get(want, "reclaim_sha256"));
	const char *self = bus_replica(bc->bus);
	const char *why = NULL;
	natsStatus s = NATS_ERR;
	int tries;

	for (tries = 0; tries < 5 && !why; tries++) {
		kvEntry *e = NULL;
		natsStatus g = kvStore_Get(&e, bc->kv, o->code);
		const char *rep, *h;
		char *text;
		uint64_t nrev = 0;

		if (g == NATS_NOT_FOUND) {
			why = "the class has ended";
			break;
		}
		if (g != NATS_OK) {
			json_decref(want);
			if (o->tries + 1 < BC_TRIES && bc->connected)
				return g; /* the connection: again soon */
			why = "NATS did not answer";
			break;
		}
		json_decref(st);
		st = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
		rep = json_string_value(json_object_get(st, "replica"));
		h = json_string_value(json_object_get(st, "reclaim_sha256"));
		if (!json_is_object(st) || !rep || !h || !hash || strcmp(h, hash)) {
			why = "the class has ended";
		} else if (strcmp(rep, self) && (!from || strcmp(rep, from))) {
			why = "another page of the class's instructor took it back on another server "
			      "first";
		} else {
			json_object_set_new(st, "replica", json_string(self));
			json_object_set_new(st, "cver",
					    json_integer(json_integer_value(json_object_get(st, "cver")) + 1));
			json_object_set_new(st, "teacher", json_string("here"));
			text = json_dumps(st, JSON_COMPACT | JSON_PRESERVE_ORDER);
			s = text ? kvStore_Update(&nrev, bc->kv, o->code, text, (int)strlen(text),
						  kvEntry_Revision(e))
				 : NATS_NO_MEMORY;
			if (s == NATS_OK) {
				json_object_set_new(bc->homes, o->code,
						    json_pack("{s:s, s:I}", "text", text, "rev",
							      (json_int_t)nrev));
				subscribe(bc, o->code, 1);
			}
			free(text);
		}
		kvEntry_Destroy(e);
		if (s == NATS_OK)
			break;
	}
	if (s != NATS_OK && !why)
		why = "the class kept changing while it was being moved: try again";
	pthread_mutex_lock(&bc->lock);
	if (s == NATS_OK)
		bc->moved_in++;
	post(bc, json_pack("{s:s, s:s, s:b, s:O?, s:s?}", "kind", "claimed", "code", o->code, "ok",
			   s == NATS_OK, "state", s == NATS_OK ? st : NULL, "reason", why));
	pthread_mutex_unlock(&bc->lock);
	json_decref(st);
	json_decref(want);
	return NATS_OK;
}

/* Heartbeats can be judged: NATS has been reachable for a whole heartbeat
 * lifetime. Right after NATS restarts its bucket may have let every entry
 * expire while it was away, and a live replica puts its own again only
 * within BUS_HEARTBEAT_MS of reconnecting: until then a missing entry
 * proves nothing. */
static int beats_judged(const struct bus_class *bc)
{
	return bc->watch_us && now_us() - bc->watch_us >= (int64_t)BUS_REPLICA_TTL_MS * 1000;
}

/*
 * The seats of a class (BC_SEATS bucket, key: the code): {"REPLICA": n,...},
 * each replica's students of it (those joining included). A join asks for
 * this replica's count to become want (o->data {"want","max","sid"}): the
 * entry is read, the counts of replicas whose heartbeat has expired are
 * dropped (a dead replica holds no seat), and the update, revision-checked,
 * is made only when the other replicas' seats and want fit in max; the lws
 * thread is told {"kind":"seat","code","sid","ok","total"} (total: the
 * seats taken on every replica as read). A count set without a limit (a
 * student left, NATS came back) is BC_SEATS {"count"}. NATS_OK when done.
 */
static natsStatus seat(struct bus_class *bc, struct bc_out *o, int limited)
{
	json_t *req = json_loads(o->data, 0, NULL), *map = NULL, *v;
	json_int_t want = json_integer_value(json_object_get(req, limited ? "want" : "count"));
	json_int_t max = json_integer_value(json_object_get(req, "max"));
	const char *self = bus_replica(bc->bus), *key;
	kvStore *reps;
	natsStatus s = NATS_ERR;
	json_int_t others = 0;
	int tries, ok = 0, refused = 0;
	void *tmp;

	pthread_mutex_lock(&bc->bus->setup_lock);
	reps = bc->bus->kv_replicas;
	pthread_mutex_unlock(&bc->bus->setup_lock);
	for (tries = 0; tries < BC_SEAT_TRIES && !ok && !refused; tries++) {
		kvEntry *e = NULL;
		uint64_t rev = 0;
		natsStatus g = kvStore_Get(&e, bc->kv_seats, o->code);
		char *text;

		if (g != NATS_OK && g != NATS_NOT_FOUND) {
			s = g;
			break;
		}
		if (g == NATS_NOT_FOUND && !limited && want == 0) {
			ok = 1; /* nothing held (the class ended: its entry went) */
			break;
		}
		json_decref(map);
		map = NULL;
		if (g == NATS_OK) {
			map = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
			rev = kvEntry_Revision(e);
		}
		kvEntry_Destroy(e);
		if (!json_is_object(map)) {
			json_decref(map);
			map = json_object();
		}
		others = 0;
		json_object_foreach_safe(map, tmp, key, v) {
			kvEntry *r = NULL;
			if (!strcmp(key, self))
				continue;
			if (reps && beats_judged(bc) && kvStore_Get(&r, reps, key) == NATS_NOT_FOUND) {
				json_object_del(map, key); /* its replica is dead */
				continue;
			}
			kvEntry_Destroy(r);
			others += json_integer_value(v);
		}
		if (limited && others + want > max) {
			refused = 1;
			break;
		}
		if (want > 0)
			json_object_set_new(map, self, json_integer(want));
		else
			json_object_del(map, self);
		text = json_dumps(map, JSON_COMPACT);
		s = !text ? NATS_NO_MEMORY
		    : rev ? kvStore_Update(NULL, bc->kv_seats, o->code, text, (int)strlen(text), rev)
			  : kvStore_Create(NULL, bc->kv_seats, o->code, text, (int)strlen(text));
		free(text);
		ok = s == NATS_OK;
	}
	json_decref(map);
	if (!ok && !refused && !bc->connected) {
		json_decref(req);
		return s; /* again once connected */
	}
	if (limited) {
		pthread_mutex_lock(&bc->lock);
		post(bc, json_pack("{s:s, s:s, s:O, s:b, s:I, s:s?}", "kind", "seat", "code", o->code,
				   "sid", json_object_get(req, "sid"), "ok", ok, "total",
				   others + (ok ? want : want - 1), "reason",
				   ok || refused ? NULL : "NATS did not take the seat"));
		pthread_mutex_unlock(&bc->lock);
	}
	json_decref(req);
	return NATS_OK;
}

/* One queued job. NATS_OK when done (or given up: counted), else the job
 * waits for the connection. */
static natsStatus do_job(struct bus_class *bc, struct bc_out *o)
{
	char subject[64];
	natsStatus s = NATS_OK;
	int len = o->data ? (int)strlen(o->data) : 0;

	switch (o->kind) {
	case BC_PUT:
		/* The latest state is what the periodic put repeats, whether
		 * or not this put goes through. */
		if (json_object_get(bc->homes, o->code))
			json_object_set_new(json_object_get(bc->homes, o->code), "text",
					    json_string(o->data));
		s = home_put(bc, o->code, o->data);
		break;
	case BC_DEL:
		/* The end with its reason first (a follower may read the bucket
		 * before the subject's "ended"), then the delete. Not home any
		 * more (deposed): the class is another replica's to end. */
		if (json_object_get(bc->homes, o->code) && o->data &&
		    (s = home_put(bc, o->code, o->data)) != NATS_OK)
			break;
		if (!json_object_get(bc->homes, o->code))
			break;
		json_object_del(bc->homes, o->code);
		s = kvStore_Delete(bc->kv, o->code);
		if (s == NATS_OK)
			kvStore_Delete(bc->kv_seats, o->code);
		break;
	case BC_PUB:
	case BC_UP:
		snprintf(subject, sizeof subject, "%s%s%s", BC_SUBJECT, o->code,
			 o->kind == BC_UP ? ".up" : "");
		s = natsConnection_Publish(bc->bus->nc, subject, o->data, len);
		break;
	case BC_FOLLOW:
		subscribe(bc, o->code, 0);
		pthread_mutex_lock(&bc->lock);
		post_state(bc, o->code);
		pthread_mutex_unlock(&bc->lock);
		break;
	case BC_UNFOLLOW:
		unsubscribe(bc, o->code, 0);
		json_object_del(bc->kept, o->code);
		json_object_del(bc->home_seen, o->code);
		break;
	case BC_HOME:
		/* A class opened here: its first put creates its entry. */
		if (!json_object_get(bc->homes, o->code))
			json_object_set_new(bc->homes, o->code, json_pack("{s:I}", "rev", (json_int_t)0));
		subscribe(bc, o->code, 1);
		break;
	case BC_UNHOME:
		unsubscribe(bc, o->code, 1);
		break;
	case BC_CLAIM:
		s = claim(bc, o);
		break;
	case BC_SEAT:
	case BC_SEATS:
		s = seat(bc, o, o->kind == BC_SEAT);
		break;
	case BC_KEEP:
		json_object_set_new(bc->kept, o->code, json_true());
		bc->touched_us = 0; /* at once */
		break;
	case BC_UNKEEP:
		json_object_del(bc->kept, o->code);
		break;
	}
	pthread_mutex_lock(&bc->lock);
	if (s == NATS_OK && (o->kind == BC_PUT || o->kind == BC_PUB || o->kind == BC_UP))
		bc->published++;
	if (s != NATS_OK) {
		/* Again once connected, or soon (a put, delete or claim that a
		 * working connection refused). */
		if (!bc->connected || ((o->kind == BC_PUT || o->kind == BC_DEL || o->kind == BC_CLAIM ||
					o->kind == BC_SEAT || o->kind == BC_SEATS) &&
				       ++o->tries < BC_TRIES)) {
			pthread_mutex_unlock(&bc->lock);
			return s;
		}
		bc->failed++;
	}
	pthread_mutex_unlock(&bc->lock);
	return NATS_OK;
}

/* An entry of the class bucket. */
static void class_entry(struct bus_class *bc, kvEntry *e)
{
	const char *key = kvEntry_Key(e);
	char code[CLASS_CODE_LEN + 1];
	const char *rep;
	json_t *st;

	if (!key || class_code_parse(key, code) < 0 || strcmp(code, key))
		return;
	pthread_mutex_lock(&bc->lock);
	if (kvEntry_Operation(e) != kvOp_Put) {
		json_object_del(bc->known, code);
		if (json_object_get(bc->following, code))
			post(bc, json_pack("{s:s, s:s, s:s}", "kind", "gone", "code", code, "reason",
					   "the class has ended"));
		pthread_mutex_unlock(&bc->lock);
		return;
	}
	st = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
	rep = json_string_value(json_object_get(st, "replica"));
	if (json_is_string(json_object_get(st, "ended"))) {
		/* Its home ended it (the delete follows). */
		json_object_del(bc->known, code);
		if (json_object_get(bc->following, code))
			post(bc, json_pack("{s:s, s:s, s:O}", "kind", "gone", "code", code, "reason",
					   json_object_get(st, "ended")));
		pthread_mutex_unlock(&bc->lock);
		json_decref(st);
		return;
	}
	if (json_is_object(st) &&
	    (json_object_get(bc->known, code) || json_object_size(bc->known) < BC_KNOWN_MAX)) {
		json_object_set_new(bc->known, code,
				    json_pack("{s:O, s:I, s:I}", "state", st, "seen_us",
					      (json_int_t)now_us(), "rev",
					      (json_int_t)kvEntry_Revision(e)));
		post_state(bc, code);
	}
	pthread_mutex_unlock(&bc->lock);
	/* Another replica wrote the entry of a class this one is home to, after
	 * this one last did: it claimed the class (its instructor reclaimed it
	 * there). An older entry the watcher delivers late (one a follower
	 * kept alive before this replica claimed the class) says nothing. */
	if (rep && json_object_get(bc->homes, code) && strcmp(rep, bus_replica(bc->bus)) &&
	    kvEntry_Revision(e) >
		    (uint64_t)json_integer_value(json_object_get(json_object_get(bc->homes, code),
								 "rev")))
		deposed(bc, code, rep);
	json_decref(st);
}

static void load_entry(struct bus_class *bc, kvEntry *e)
{
	const char *key = kvEntry_Key(e);
	json_t *v;

	if (!key || kvEntry_Operation(e) != kvOp_Put)
		return;
	v = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
	if (!json_is_object(v)) {
		json_decref(v);
		return;
	}
	json_object_set_new(v, "seen_us", json_integer(now_us()));
	pthread_mutex_lock(&bc->lock);
	json_object_set_new(bc->loads, key, v);
	pthread_mutex_unlock(&bc->lock);
}

/* Drain a watcher; NULL entry: the whole bucket has been delivered. */
static void drain(struct bus_class *bc, kvWatcher *w, int classes)
{
	kvEntry *e = NULL;
	int n = 0;

	while (w && n++ < 1000 && kvWatcher_Next(&e, w, 1) == NATS_OK) {
		if (!e) {
			if (classes) {
				pthread_mutex_lock(&bc->lock);
				bc->synced = 1;
				pthread_mutex_unlock(&bc->lock);
			}
			continue;
		}
		if (classes)
			class_entry(bc, e);
		else
			load_entry(bc, e);
		kvEntry_Destroy(e);
		e = NULL;
	}
	kvEntry_Destroy(e);
}

/* A followed class whose home stopped: its entry is put again as it is
 * (the revision it had), so it does not expire while the followers wait for
 * its instructor to reclaim it elsewhere. Refused (another follower kept it
 * first, or a replica claimed it): nothing to do. */
static void keep_alive(struct bus_class *bc, const char *code)
{
	json_t *k;
	char *text = NULL;
	uint64_t rev = 0;

	pthread_mutex_lock(&bc->lock);
	k = json_object_get(bc->known, code);
	if (k) {
		text = json_dumps(json_object_get(k, "state"), JSON_COMPACT | JSON_PRESERVE_ORDER);
		rev = (uint64_t)json_integer_value(json_object_get(k, "rev"));
	}
	pthread_mutex_unlock(&bc->lock);
	if (text && rev)
		kvStore_Update(NULL, bc->kv, code, text, (int)strlen(text), rev);
	free(text);
}

/* The homes of the classes followed here: is each still heartbeating (its
 * entry in BUS_REPLICAS, which expires BUS_REPLICA_TTL_MS after its last
 * beat)? A change is told to the lws thread: {"kind":"home_gone"} or
 * {"kind":"home_back"}, with "code" and "replica". A lookup that fails for
 * another reason says nothing. */
static void check_homes(struct bus_class *bc)
{
	kvStore *reps;
	json_t *look = json_object(), *v;
	const char *code;
	void *tmp;

	pthread_mutex_lock(&bc->bus->setup_lock);
	reps = bc->bus->kv_replicas;
	pthread_mutex_unlock(&bc->bus->setup_lock);
	if (!reps || !look) {
		json_decref(look);
		return;
	}
	pthread_mutex_lock(&bc->lock);
	json_object_foreach(bc->following, code, v) {
		const char *rep = json_string_value(
			json_object_get(json_object_get(json_object_get(bc->known, code), "state"),
					"replica"));
		if (rep && strcmp(rep, bus_replica(bc->bus)))
			json_object_set_new(look, code, json_string(rep));
	}
	pthread_mutex_unlock(&bc->lock);
	json_object_foreach_safe(look, tmp, code, v) {
		const char *rep = json_string_value(v);
		const char *was = json_string_value(json_object_get(bc->home_seen, code));
		kvEntry *e = NULL;
		natsStatus s = kvStore_Get(&e, reps, rep);
		char now_is[EV_RUN_ID_LEN + 8];
		int gone;

		kvEntry_Destroy(e);
		if (s != NATS_OK && s != NATS_NOT_FOUND)
			continue;
		gone = s == NATS_NOT_FOUND;
		if (gone && !beats_judged(bc))
			continue;
		snprintf(now_is, sizeof now_is, "%s%s", rep, gone ? " gone" : "");
		if (was && !strcmp(was, now_is))
			continue;
		json_object_set_new(bc->home_seen, code, json_string(now_is));
		/* A home first seen alive is nothing to tell. */
		if (!was && !gone)
			continue;
		pthread_mutex_lock(&bc->lock);
		post(bc, json_pack("{s:s, s:s, s:s}", "kind", gone ? "home_gone" : "home_back", "code",
				   code, "replica", rep));
		pthread_mutex_unlock(&bc->lock);
	}
	json_decref(look);
}

/* Every BC_TOUCH_MS: the home's classes again (their entries expire
 * otherwise); every BC_LOAD_MS: this replica's queue. */
static void periodic(struct bus_class *bc, int64_t now)
{
	const char *key;
	json_t *v;
	char buf[256];
	int n;

	if (now - bc->touched_us >= (int64_t)BC_TOUCH_MS * 1000) {
		void *tmp;

		bc->touched_us = now;
		json_object_foreach_safe(bc->homes, tmp, key, v) {
			json_t *text = json_incref(json_object_get(v, "text"));
			if (text && home_put(bc, key, json_string_value(text)) != NATS_OK)
				/* Not now (JetStream recovering): again in a second. */
				bc->touched_us = now - (int64_t)BC_TOUCH_MS * 1000 + 1000000;
			json_decref(text);
		}
		json_object_foreach(bc->kept, key, v)
			keep_alive(bc, key);
	}
	if (now - bc->beat_us >= (int64_t)BC_BEAT_CHECK_MS * 1000) {
		bc->beat_us = now;
		check_homes(bc);
	}
	if (now - bc->load_us >= (int64_t)BC_LOAD_MS * 1000) {
		bc->load_us = now;
		n = snprintf(buf, sizeof buf,
			     "{\"replica\":\"%s\",\"running\":%ld,\"max_runs\":%d,\"waiting\":%ld,"
			     "\"queue_max\":%d,\"queue_wait_s\":%d}",
			     bus_replica(bc->bus), http_counters_get(bc->ctr, HTTP_C_RUNS_ACTIVE),
			     bc->cfg->max_runs, http_counters_get(bc->ctr, HTTP_C_RUNS_QUEUED),
			     bc->cfg->queue_max, bc->cfg->queue_wait_s);
		kvStore_Put(NULL, bc->kv_load, bus_replica(bc->bus), buf, n);
	}
	/* An entry not put again within BC_TTL_MS has expired in the bucket
	 * (the watcher is not told): its home is gone. Judged only while
	 * connected, and a resync (a new watcher) delivers every live entry
	 * again first. */
	if (now - bc->swept_us >= 1000000) {
		json_t *gone = json_array();
		size_t i;

		bc->swept_us = now;
		pthread_mutex_lock(&bc->lock);
		json_object_foreach(bc->known, key, v)
			if (bc->synced && now - json_integer_value(json_object_get(v, "seen_us")) >
			    (int64_t)BC_TTL_MS * 1000)
				json_array_append_new(gone, json_string(key));
		for (i = 0; i < json_array_size(gone); i++) {
			const char *code = json_string_value(json_array_get(gone, i));
			if (json_object_get(bc->following, code))
				post(bc, json_pack("{s:s, s:s, s:s}", "kind", "gone", "code", code,
						   "reason",
						   "the replica that held the class stopped"));
			json_object_del(bc->known, code);
		}
		pthread_mutex_unlock(&bc->lock);
		json_decref(gone);
	}
}

static void *thread_main(void *arg)
{
	struct bus_class *bc = arg;

	pthread_mutex_lock(&bc->lock);
	while (!bc->stop) {
		int connected = natsConnection_Status(bc->bus->nc) == NATS_CONN_STATUS_CONNECTED;
		int was_ok = bc->told_ok, ok;
		unsigned gen;
		struct bc_out *o;

		if (connected != bc->connected) {
			bc->connected = connected;
			if (!connected)
				bc->synced = 0;
		}
		ok = degraded_why(bc) == NULL;
		if (ok != was_ok) {
			bc->told_ok = ok;
			post(bc, json_pack("{s:s, s:s, s:s?}", "kind", "cluster", "state",
					   ok ? "ok" : "degraded", "reason", degraded_why(bc)));
		}
		pthread_mutex_unlock(&bc->lock);
		pthread_mutex_lock(&bc->bus->lock);
		gen = bc->bus->conn_gen;
		pthread_mutex_unlock(&bc->bus->lock);
		if (connected && (!bc->kv || !bc->kv_load || !bc->kv_seats)) {
			if (bus_kv_bucket(bc->bus, &bc->kv, BC_BUCKET, BC_TTL_MS, 64 << 20) != NATS_OK ||
			    bus_kv_bucket(bc->bus, &bc->kv_load, BC_LOAD, BC_LOAD_TTL_MS, 64 << 20) != NATS_OK ||
			    bus_kv_bucket(bc->bus, &bc->kv_seats, BC_SEATS_BUCKET, 0, 16 << 20) != NATS_OK)
				connected = 0;
		}
		if (connected && (gen != bc->gen || !bc->w)) {
			/* A new connection (NATS may have restarted): read both
			 * buckets whole again. */
			/* Destroyed later: at once races libnats's own reset
			 * of the watcher's consumer (bus_retire_watcher). */
			bus_retire_watcher(bc->bus, bc->w);
			bus_retire_watcher(bc->bus, bc->w_load);
			bc->w = bc->w_load = NULL;
			pthread_mutex_lock(&bc->lock);
			bc->synced = 0;
			pthread_mutex_unlock(&bc->lock);
			if (kvStore_WatchAll(&bc->w, bc->kv, NULL) == NATS_OK &&
			    kvStore_WatchAll(&bc->w_load, bc->kv_load, NULL) == NATS_OK) {
				bc->gen = gen;
				bc->touched_us = 0; /* put the home's classes again */
				bc->watch_us = now_us();
			}
		}
		if (connected && bc->w) {
			drain(bc, bc->w, 1);
			drain(bc, bc->w_load, 0);
			periodic(bc, now_us());
		}
		/* The queue, in order; a job that needs the connection waits. */
		pthread_mutex_lock(&bc->lock);
		while ((o = bc->oh) != NULL && !bc->stop && connected && bc->kv) {
			natsStatus s;
			pthread_mutex_unlock(&bc->lock);
			s = do_job(bc, o);
			pthread_mutex_lock(&bc->lock);
			if (s != NATS_OK) {
				if (connected && !bc->stop)
					bus_wait_ms_on(&bc->cond, &bc->lock, BC_RETRY_MS);
				break;
			}
			bc->oh = o->next;
			if (!bc->oh)
				bc->ot = NULL;
			bc->on--;
			free(o->data);
			free(o);
		}
		if (bc->posted) {
			bc->posted = 0;
			pthread_mutex_unlock(&bc->lock);
			wake(bc);
			pthread_mutex_lock(&bc->lock);
		}
		if (!bc->stop && (!bc->oh || !connected))
			bus_wait_ms_on(&bc->cond, &bc->lock, 50);
	}
	pthread_mutex_unlock(&bc->lock);
	return NULL;
}

int bus_class_start(struct bus_class **out, struct bus *b, const struct serve_config *cfg,
		    struct http_counters *ctr, void (*wakefn)(void *), void *arg, char *err,
		    size_t errlen)
{
	struct bus_class *bc = calloc(1, sizeof *bc);

	*out = NULL;
	if (!bc) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	bc->bus = b;
	bc->cfg = cfg;
	bc->ctr = ctr;
	bc->wake = wakefn;
	bc->wake_arg = arg;
	bc->told_ok = 1; /* so that a start without NATS says "degraded" once */
	pthread_mutex_init(&bc->lock, NULL);
	pthread_mutex_init(&bc->wake_lock, NULL);
	pthread_cond_init(&bc->cond, NULL);
	bc->inbox = json_array();
	bc->known = json_object();
	bc->following = json_object();
	bc->loads = json_object();
	bc->homes = json_object();
	bc->kept = json_object();
	bc->home_seen = json_object();
	if (!bc->inbox || !bc->known || !bc->following || !bc->loads || !bc->homes || !bc->kept ||
	    !bc->home_seen) {
		snprintf(err, errlen, "out of memory");
		bus_class_stop(bc);
		return -ENOMEM;
	}
	if (pthread_create(&bc->thread, NULL, thread_main, bc) != 0) {
		snprintf(err, errlen, "cannot start the NATS class thread");
		bus_class_stop(bc);
		return -EAGAIN;
	}
	bc->started = 1;
	*out = bc;
	return 0;
}

void bus_class_stop(struct bus_class *bc)
{
	int64_t end;
	size_t i;

	if (!bc)
		return;
	if (bc->started) {
		/* What is queued (a class's end, among others) goes out if it
		 * can within 2 s. */
		end = now_us() + 2000000;
		pthread_mutex_lock(&bc->lock);
		while (bc->oh && bc->connected && now_us() < end)
			bus_wait_ms_on(&bc->cond, &bc->lock, 20);
		bc->stop = 1;
		pthread_cond_signal(&bc->cond);
		pthread_mutex_unlock(&bc->lock);
		pthread_join(bc->thread, NULL);
	}
	for (i = 0; i < bc->n_subs; i++) {
		natsSubscription_Unsubscribe(bc->subs[i].sub);
		natsSubscription_Destroy(bc->subs[i].sub);
	}
	free(bc->subs);
	kvWatcher_Destroy(bc->w);
	kvWatcher_Destroy(bc->w_load);
	kvStore_Destroy(bc->kv);
	kvStore_Destroy(bc->kv_load);
	kvStore_Destroy(bc->kv_seats);
	while (bc->oh) {
		struct bc_out *o = bc->oh;
		bc->oh = o->next;
		free(o->data);
		free(o);
	}
	json_decref(bc->inbox);
	json_decref(bc->known);
	json_decref(bc->following);
	json_decref(bc->loads);
	json_decref(bc->homes);
	json_decref(bc->kept);
	json_decref(bc->home_seen);
	pthread_cond_destroy(&bc->cond);
	pthread_mutex_destroy(&bc->lock);
	pthread_mutex_destroy(&bc->wake_lock);
	free(bc);
}
