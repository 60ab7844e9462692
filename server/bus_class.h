/* bus_class.h: --nats: classes across replicas (class state in a key-value bucket, a class's messages on one subject) and every replica's admission queue made visible. */
#ifndef SOCKLAB_BUS_CLASS_H
#define SOCKLAB_BUS_CLASS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"

/*
 * A class lives on one replica, its "home": the ring, the run, the question
 * and its answers are there, as without NATS. At first the home is the
 * replica its instructor opened it on; it moves when the instructor's page
 * reclaims the class on another replica (below). With --nats the home also
 *   - puts the class's state (BC_BUCKET, key: the class code) whenever it
 *     changes: {"cver","code","replica","instructor","run","live","run_info",
 *     "view","teacher","quiz","answers","reclaim_sha256"}, cver counting
 *     up; and again every BC_TOUCH_MS, since an entry expires BC_TTL_MS
 *     after its last put. Every put is revision-checked (an update of the
 *     revision this home wrote last, a create for a new class), so two
 *     replicas are never both home: a home whose put is refused because
 *     another replica wrote the entry is "deposed" and becomes a follower;
 *   - publishes the class's messages on BC_SUBJECT CODE: {"kind":"state",
 *     "state"} (the same state, live), {"kind":"to","member","msg"} (a
 *     reply for one student), {"kind":"all","msg"} (for every student),
 *     {"kind":"ended","reason"};
 *   - listens on BC_SUBJECT CODE ".up" for what students elsewhere send:
 *     {"kind":"answer",...} and {"kind":"members","replica","count","names"}.
 * Another replica whose student joins follows the class: it subscribes to
 * BC_SUBJECT CODE for as long as one of its own students attends, fans
 * every message out with its own ring, and reads the class run from the
 * run stream (bus.h: the run's own events, gap-free, in order). It learns
 * of classes, and resyncs after NATS was away, from the bucket: a watcher
 * keeps every entry in memory, with its revision.
 *
 * Moving: a replica where the instructor's page reclaims a class it does
 * not hold (its token checked against reclaim_sha256) claims it: an update
 * of the entry at the revision it last saw, naming itself. One claim wins;
 * the old home, if alive, sees the entry and is deposed. A home is dead
 * when its heartbeat (bus.h, BUS_REPLICAS) has expired: the followers
 * check every BC_BEAT_CHECK_MS, tell their students the instructor is
 * away, and keep the entry alive (put again at its revision) while they
 * wait --class-grace seconds for the instructor to reclaim it elsewhere.
 *
 * Each replica also puts its admission queue (running, max_runs, waiting,
 * queue_max) in BC_LOAD every BC_LOAD_MS; health lists every replica's.
 *
 * Threads: one thread of its own talks to NATS (puts, publishes,
 * subscriptions, watchers); the lws thread only queues (never blocks) and
 * takes what arrived with bus_class_next() when woken.
 */

#define BC_BUCKET "SOCKLAB_CLASSES"
/* Each class's seats: {"REPLICA": students there} (no expiry: removed with
 * the class; a dead replica's count is dropped by the next join). */
#define BC_SEATS_BUCKET "SOCKLAB_CLASS_SEATS"
#define BC_LOAD "SOCKLAB_LOAD"
#define BC_SUBJECT "socklab.class."
#define BC_TTL_MS 90000
#define BC_TOUCH_MS 30000
#define BC_LOAD_MS 2000
#define BC_LOAD_TTL_MS 10000
/* How often a follower asks whether its classes' homes still heartbeat. */
#define BC_BEAT_CHECK_MS 1000
/* Class entries of the bucket held in memory at most. */
#define BC_KNOWN_MAX 10000
/* Messages waiting for NATS, and for the lws thread, at most (the rest
 * are dropped and counted). */
#define BC_OUT_MAX 8192
#define BC_IN_MAX 16384

struct bus;
struct bus_class;
struct http_counters;

/* Start the thread. wake(arg) is called (any thread) when something
 * arrived for the lws thread. 0 or -errno with err. */
int bus_class_start(struct bus_class **out, struct bus *b, const struct serve_config *cfg,
		    struct http_counters *ctr, void (*wake)(void *), void *arg, char *err,
		    size_t errlen);

/* Give the thread up to 2 s to send what is queued, stop it, free bc. NULL
 * is fine. */
/* Replace the wake given to bus_class_start (NULL: none): called with NULL
 * before the lws server it wakes is destroyed. */
void bus_class_set_wake(struct bus_class *bc, void (*fn)(void *), void *arg);
void bus_class_stop(struct bus_class *bc);

/* This replica's id (bus.h). */
const char *bus_class_replica(const struct bus_class *bc);

/* ---- the lws thread (each call queues; none blocks) ---- */

/* Home: the state of class code changed (state is copied). */
void bus_class_put(struct bus_class *bc, const char *code, const json_t *state);
/* Home: a message for the class's students on other replicas (stolen). */
void bus_class_send(struct bus_class *bc, const char *code, json_t *msg);
/* Home: the class ended, why (its entry says so, then is removed;
 * listening stops). */
void bus_class_gone(struct bus_class *bc, const char *code, const char *why);
/* Home: listen for the class's students on other replicas (on) or stop. */
void bus_class_home(struct bus_class *bc, const char *code, int on);
/* Replica id has put its admission queue in BC_LOAD within BC_LOAD_TTL_MS
 * (it is alive, as far as this replica can tell). */
int bus_class_replica_live(struct bus_class *bc, const char *id);
/* A follower sent a student's answer again (counted for health). */
void bus_class_answer_resent(struct bus_class *bc);
/* A follower: a message for the class's home (stolen). */
void bus_class_up(struct bus_class *bc, const char *code, json_t *msg);
/* A follower: subscribe to the class's messages (on), or stop. On, the
 * state in the bucket is delivered again ("state"), as after a resync. */
void bus_class_follow(struct bus_class *bc, const char *code, int on);
/* A follower whose class's home stopped: keep its entry alive (on) while
 * the students wait for the instructor, or stop. */
void bus_class_keep(struct bus_class *bc, const char *code, int on);
/* Become the class's home: its entry, if it is still the class whose
 * reclaim token hashes to hash and still held by replica from (or this
 * one), is replaced at its latest revision by the same state naming this
 * replica. {"kind":"claimed","code","ok","state" (as put) or "reason"}
 * says whether it was. */
void bus_class_claim(struct bus_class *bc, const char *code, const char *from, const char *hash);

/* A student joins code on this replica: its count there would become want;
 * {"kind":"seat","code","sid","ok","total"} says whether that fits in max
 * with every other live replica's (--max-class-viewers across replicas). */
void bus_class_seat(struct bus_class *bc, const char *code, long want, long max, uint64_t sid);
/* This replica's count of code's students is count now (no limit: a
 * student left, or NATS came back). */
void bus_class_seats(struct bus_class *bc, const char *code, long count);

/* The class's state as the bucket last said (a new reference), NULL when
 * no replica has such a class; *rev (may be NULL): its entry's revision.
 * Any thread. */
json_t *bus_class_lookup(struct bus_class *bc, const char *code, uint64_t *rev);

/* The next thing that arrived, or NULL: {"kind":"state","code","state"},
 * {"kind":"gone","code"} (its entry expired or was removed), the messages
 * above with "code" added, {"kind":"claimed"} (above), {"kind":"deposed",
 * "code","replica"} (another replica took a class this one was home to),
 * {"kind":"home_gone"|"home_back","code","replica"} (a followed class's
 * home stopped heartbeating, or beats again), or {"kind":"cluster",
 * "state","reason"} when classes across replicas became degraded or ok. A
 * new reference. */
json_t *bus_class_next(struct bus_class *bc);

/* 1 when classes across replicas work now (connected, bucket read). */
int bus_class_ok(struct bus_class *bc, char *reason, size_t len);

/* {"state","reason","classes_known","following","published","failed",
 * "dropped","moved_in","moved_out","answers_resent","queues":[{"replica","running","max_runs","waiting","queue_max",
 * "self"}]}: a new reference. */
json_t *bus_class_health(struct bus_class *bc);

/* Every replica's admission queue as last heard (this one first): a new
 * reference, as in health's "queues". */
json_t *bus_class_queues(struct bus_class *bc);

#endif
