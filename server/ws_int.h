/* ws_int.h: what the WebSocket server's files share (server/ws*.c): limits, the session, class and server structs, and their functions. Not for other modules: they use ws.h. */
#ifndef SOCKLAB_WS_INT_H
#define SOCKLAB_WS_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <pthread.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "class.h"
#include "runs.h"
#include "ws.h"
#include "ws_addr.h"

struct ws_fanout;

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
/* Characters of a class's reclaim token (the instructor's page keeps it). */
#define WS_RECLAIM_LEN 32
/* A student's identity in a class (class.joined "member"): random, held by
 * the page, sent again when it rejoins, so a reconnected student is the same
 * member for the class's questions. */
#define WS_MEMBER_LEN 24
/* Characters of the nonce a follower gives each answer it sends its
 * class's home (resent with the same nonce until the home replies). */
#define WS_NONCE_LEN 24
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
	/* --nats: another replica's run, read from this replica's copy of its
	 * stream (bus.h) as it grows; waiting: at the end of the copy until
	 * the bus says more came; last_look: the copy was over when the end
	 * was reached, so one more read finds whatever came before that. */
	int remote, waiting, last_look;
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
	char teacher[CLASS_NAME_BYTES + 1]; /* the instructor's display name, "" when none given */
	struct class_ring ring;
	char run[EV_RUN_ID_LEN + 1];        /* the latest class run, "" before the first */
	int run_live;                       /* it has not ended yet */
	json_t *run_msg;                    /* its class.run notice (lab, params) */
	uint64_t run_pos;                   /* the ring index its first event went (or goes) to */
	int paused;                         /* the view: paused or playing */
	json_int_t pos;                     /* events shown; -1: follow live */
	double speed;                       /* events per second; 0: as they come */
	unsigned view_ver;                  /* bumped on every change */
	uint64_t *members;                  /* session ids of its students */
	size_t n_members;
	/* The instructor's page may take the class back after a reload or a
	 * dropped connection: with this token, within --class-grace seconds
	 * of losing it (instructor is 0 meanwhile). */
	char reclaim[WS_RECLAIM_LEN + 1];
	int orphaned;
	lws_sorted_usec_list_t sul_grace;
	struct ws_quiz *quiz; /* its question (ws_quiz.c), NULL before the first */
	/* --nats, classes across replicas (ws_cluster.c). remote: the class's
	 * home is another replica and this one follows it for its own
	 * students (no instructor here; its ring is fed from the class's
	 * subject and its run from the run stream). cver: the state version
	 * this home published last, or a follower applied last. */
	int remote;
	json_int_t cver;
	char home[EV_RUN_ID_LEN + 1];  /* remote: the replica that holds it */
	int away;                      /* remote: its instructor is reconnecting */
	json_t *quiz_notice;           /* remote: the question that is up (class.quiz) */
	json_t *others;                /* home: replica -> {"count","names"} of its students elsewhere */
	FILE *rf;                      /* the class run, from this replica's copy of the stream */
	int rf_want, rf_last_look;     /* the copy is still to be opened; one more read is due */
	int fanout_due;                /* messages were pushed since the last sweep (ws_fanout.c) */
	/* The class run is another replica's (a class that moved here while
	 * its run went on where it was): its events come from the stream as
	 * for a follower (rf), and it cannot be cancelled from here. */
	int run_remote;
	char reclaim_sha256[65];       /* SHA-256 (hex) of reclaim: in the bucket, never the token */
	int teacher_away;              /* remote: the home says its instructor is reconnecting */
	int home_gone;                 /* remote: the home stopped heartbeating (bus_class.h) */
	lws_sorted_usec_list_t sul_put; /* home: the answers changed: put the state soon */
	int put_due;
	/* remote: its students' answers sent to the home and not yet replied
	 * to: member -> {"up" (the message, sent again), "nonce", "sent_us",
	 * "sid"}. At most --max-class-viewers. */
	json_t *pending;
	json_int_t revealed_id;        /* remote: the question whose reveal reached here */
	size_t joins;                  /* --nats: students whose seat is being taken */
};

/* Reclaims of classes held elsewhere waiting for their claim (bus_class.h)
 * at most, per replica. */
#define WS_CLAIMS_MAX 16
/* How long a follower waits for the reply to an answer before it sends the
 * answer again. */
#define WS_ANSWER_RETRY_US (2 * LWS_US_PER_SEC)
/* How often a home looks whether the replicas its students elsewhere are on
 * still live. */
#define WS_OTHERS_CHECK_US (2 * LWS_US_PER_SEC)
/* How soon a home puts its state after an answer (answers coalesce). */
#define WS_PUT_ANSWERS_US (200 * LWS_US_PER_MS)

/* A class.reclaim of a class another replica holds, waiting for the claim. */
struct ws_claim {
	char code[CLASS_CODE_LEN + 1]; /* "" when the slot is free */
	uint64_t sid;                  /* the reclaiming session */
	char tag[RUN_TAG_MAX + 1];
	int has_tag;
	char token[WS_RECLAIM_LEN + 1];
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
	int64_t signin_locked_until; /* CLOCK_MONOTONIC us; sign-ins refused until then */
	struct ws_class *cls; /* the class it teaches (teaching) or attends */
	int teaching;
	size_t member_idx;  /* its index in cls->members */
	uint64_t ring_pos;  /* next cls->ring entry to send */
	unsigned view_sent; /* cls->view_ver last sent */
	int need_resync;    /* it fell behind the ring: send class.resync */
	/* A student that rejoined with "after" (ws_class_resume): events of
	 * skip_run up to skip_seq, which it has, are passed over in the ring. */
	int skipping;
	long long skip_seq;
	char skip_run[EV_RUN_ID_LEN + 1];
	int members_dirty;  /* teaching: send class.members */
	struct class_bucket rate;
	int rate_told;      /* the client was told it is over --msg-rate */
	int throttling;     /* its runs' output is paused until its queue drains */
	unsigned char addr[16]; /* its address's key in srv->addrs */
	int addr_counted;   /* it is counted in that entry's sessions */
	char name[CLASS_NAME_BYTES + 1];
	char member[WS_MEMBER_LEN + 1]; /* attending: its identity in the class */
	int tx_failed;      /* a write of the fan-out sweep failed: close it */
	/* --nats: a class.join waiting for its seat (bus_class_seat). */
	int joining, join_has_tag;
	char join_tag[RUN_TAG_MAX + 1];
	char join_member[WS_MEMBER_LEN + 1];
	char join_after[EV_RUN_ID_LEN + 1]; /* its "after" run ("": none) and seq */
	long long join_after_seq;
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
	/* Connections from the front door (ws_adopt(), any thread) waiting for
	 * the lws thread: a ring guarded by adopt_lock. */
	pthread_mutex_t adopt_lock;
	int adopt_q[WS_ADOPT_MAX];  /* guarded by adopt_lock */
	size_t adopt_head, adopt_n; /* guarded by adopt_lock */
	int adopt_lock_ready;
	struct bus *bus; /* --nats: run events to JetStream; NULL without */
	struct bus_class *bclass; /* --nats: classes across replicas (bus_class.h); NULL without */
	int cluster_degraded;     /* bclass says classes across replicas are degraded */
	char cluster_reason[300];
	lws_sorted_usec_list_t sul_cluster; /* retries of class runs not yet in the run index */
	struct ws_fanout *fanout;           /* the class fan-out sweep (ws_fanout.c); NULL: lws path */
	lws_sorted_usec_list_t sul_fanout;  /* the next sweep, on the next loop turn */
	struct ws_claim claims[WS_CLAIMS_MAX];
	lws_sorted_usec_list_t sul_answers; /* answers waiting for their class's home */
	lws_sorted_usec_list_t sul_others;  /* homes: forget the students of dead replicas */
};

/*
 * Everything below runs on the lws service thread. The server is split by job:
 *   ws.c        transport and sessions: lws callbacks, the bounded outgoing
 *               queues (per session and server-wide), receive, write, life cycle;
 *   ws_auth.c   admission (Host, Origin, per-address and total limits, refusals
 *               as HTTP answers) and the instructor sign-in;
 *   ws_ops.c    the socklab.v1 ops, watch replay and the run hooks (fan-out of
 *               a run's events to its owner and watchers, backpressure);
 *   ws_class.c  classes: the ring fan-out and the class ops;
 *   ws_fanout.c the ring's fast path: each message framed once and written to
 *               every viewer waiting for it in one sweep (io_uring or send()).
 */

/* ---- ws.c ---- */

/* The live session with this id, or NULL (runs and classes hold ids, never pointers). */
struct ws_session *ws_session_find(struct ws_server *srv, uint64_t id);

/* Ask for a writeable callback for wsi (NULL: a session with no connection). */
void ws_want_write(struct lws *wsi);

/* Queue one text message for s; never blocks (over a bound: s is closed, see ws.c). */
void ws_enqueue(struct ws_session *s, const char *data, size_t len);

/* Queue a JSON object (stolen). */
void ws_send_json(struct ws_session *s, json_t *o);

/* Queue {"type":"error","code","message"[,"param"][,"run"],"tag"}. */
void ws_send_error(struct ws_session *s, const char *code, const char *param,
		   const char *message, const char *tag, const char *run);

/* Stop watch i of s (closing its replay file). */
void ws_watch_drop(struct ws_session *s, int i);

/* CLOCK_MONOTONIC in microseconds. */
int64_t ws_now_us(void);

/* A request header, NULL when absent, "" when too long to be anything allowed. */
const char *ws_hdr(struct lws *wsi, enum lws_token_indexes t, char *buf, size_t len);

/* ---- ws_auth.c ---- */

/* {"op":"signin"}: limited per connection, per address and server-wide. */
void ws_op_signin(struct ws_session *s, json_t *msg, const char *tag);

/* FILTER_PROTOCOL_CONNECTION: 0 to let the upgrade through, else -1 after an HTTP answer. */
int ws_admit(struct ws_server *srv, struct lws *wsi);

/* ESTABLISHED: count s for its address. 0, or -1 when the address table is full. */
int ws_session_admit(struct ws_server *srv, struct ws_session *s);

/* ---- ws_ops.c ---- */

/* --nats: another replica's run has news; look at every waiting copy. */
void ws_remote_wake(struct ws_server *srv);

/* Move replayed lines of s's watches into its queue while it is short. */
void ws_pump_replays(struct ws_session *s);

/* s has a replay still to read. */
int ws_has_replay(const struct ws_session *s);

/* The run hooks (runs.h): a run's line, and its end. */
void ws_hook_line(void *arg, const struct run *r, const char *line, size_t len);
void ws_hook_finished(void *arg, const struct run *r);
void ws_hook_queued(void *arg, const struct run *r, int position, int length);
void ws_hook_admitted(void *arg, const struct run *r);
void ws_hook_refused(void *arg, const struct run *r, const struct run_error *e);

/* Queue {"type":"run.queued","run","tag","lab","position","ahead","waiting"}. */
void ws_send_queued(struct ws_session *s, const char *id, const char *tag, const char *lab,
		    int position, int waiting);

/* One whole client message, already admitted by the rate limit. */
void ws_handle_message(struct ws_session *s, const char *buf, size_t len);

/* ---- ws_class.c ---- */

/* The class run id of c has started: tell the class and its instructor. */
void ws_class_run_started(struct ws_class *c, const char *id, const char *lab,
			  const json_t *params, const json_t *files, const char *tag);

/* End every class (the server is stopping). */
void ws_classes_end_all(struct ws_server *srv, const char *why);

/* The class whose current run is id and still live, or NULL. */
struct ws_class *ws_class_of_run(struct ws_server *srv, const char *id);

/* Sign-in limits shared by signin and class.reclaim (ws_auth.c): 1 when s
 * may try now, else 0 after telling it how long to wait. */
int ws_signin_may_try(struct ws_session *s, const char *tag);
/* A wrong secret or token: counted against s, its address and the server. */
void ws_signin_failed(struct ws_session *s);

/* Append a message to class c's ring and wake its readers. */
void ws_class_push(struct ws_class *c, const char *data, size_t len);

/* Something of s's class is still to be sent to it. */
int ws_class_pending(const struct ws_session *s);

/* One class message for s, in its writeable callback: 1 written, 0 nothing due, -1 close. */
int ws_class_write(struct ws_session *s);

/* The next frame's payload from c's ring for a reader at pos: the entry
 * itself when it goes alone, or (a reader that is behind) a JSON array of
 * the entries from pos, up to WS_BATCH_BYTES, built into batch (which has
 * that many bytes). *len is its length, *end the reader's position after it.
 * NULL when nothing is there (pos is at the head, or below the tail). */
const unsigned char *ws_class_next(const struct ws_class *c, uint64_t pos, unsigned char *batch,
				   size_t *len, uint64_t *end);

/* s is going: end the class it teaches, or leave the one it attends. */
void ws_class_detach(struct ws_session *s, const char *why);

/* The class ops (see ws.h). */
void ws_op_class_open(struct ws_session *s, json_t *msg, const char *tag);
void ws_op_class_join(struct ws_session *s, json_t *msg, const char *tag);
void ws_op_class_leave(struct ws_session *s, json_t *msg, const char *tag);
void ws_op_class_run(struct ws_session *s, json_t *msg, const char *tag);
void ws_op_class_view(struct ws_session *s, json_t *msg, const char *tag);
void ws_op_class_end(struct ws_session *s, json_t *msg, const char *tag);
void ws_op_class_reclaim(struct ws_session *s, json_t *msg, const char *tag);

/* Shared with ws_cluster.c. */
struct ws_class *ws_class_find(struct ws_server *srv, const char *code);
void ws_class_push_json(struct ws_class *c, json_t *o);
void ws_class_bump_view(struct ws_class *c);
void ws_class_members_changed(struct ws_class *c);
void ws_class_end(struct ws_class *c, const char *why);
json_t *ws_class_view_json(const struct ws_class *c);

/* ---- ws_cluster.c: --nats, classes across replicas ---- */

/* Home: class c's state changed; publish it (nothing without --nats or
 * for a followed class). */
void ws_cluster_changed(struct ws_class *c);
/* Home: c was opened here / ends (its students elsewhere are told why). */
void ws_cluster_opened(struct ws_class *c);
void ws_cluster_ended(struct ws_class *c, const char *why);
/* A class of another replica with this code: a followed class (made on
 * the first student's join), or NULL when no replica has it, or (*full
 * set) when every --max-classes slot here is taken. */
struct ws_class *ws_cluster_follow(struct ws_server *srv, const char *code, int *full);
/* Another replica holds a class with this code. */
int ws_cluster_taken(struct ws_server *srv, const char *code);
/* A follower: its students changed (the home counts them). */
void ws_cluster_members(struct ws_class *c);
/* Students of class c on every replica, and their names (up to max) into names. */
size_t ws_cluster_count(const struct ws_class *c);
void ws_cluster_names(const struct ws_class *c, json_t *names, size_t max);
/* The bus has news: what arrived for classes, and followed class runs. */
void ws_cluster_wake(struct ws_server *srv);
/* A new session: told at once when classes across replicas are degraded. */
void ws_cluster_hello(struct ws_session *s);
/* A student of a followed class answers: sent to the class's home. */
void ws_cluster_answer(struct ws_session *s, json_t *msg, const char *tag);
/* Free what a followed class holds (class_end). */
void ws_cluster_free(struct ws_class *c);
/* This replica's id in the cluster (nats.replica in health), NULL without --nats. */
const char *ws_cluster_replica(const struct ws_server *srv);
/* Home: c's answers changed: its state is put (to the bucket) soon. */
void ws_cluster_answers_changed(struct ws_class *c);
/* class.reclaim of a class this replica is not home to: checked against
 * the bucket's state and claimed (the reply comes once the claim is
 * decided). */
void ws_cluster_reclaim(struct ws_session *s, const char *code, const char *token,
			const char *tag);
/* SHA-256 of a reclaim token, in hex, into out (65 bytes). 0 or -1. */
int ws_cluster_token_hash(const char *token, char *out);

/* ws_class.c: s becomes c's instructor (class.reclaim succeeded). */
void ws_class_reclaimed(struct ws_class *c, struct ws_session *s, const char *tag);
/* ws_class.c: class.reclaim refused (no such class, or the wrong token):
 * counted as a failed sign-in, and the same answer whichever it was. */
void ws_class_reclaim_refused(struct ws_session *s, const char *tag);
/* ws_class.c: the seat asked for by session sid's class.join of code was
 * taken (ok) or not (why: NATS trouble; NULL: the class is full). */
void ws_class_seated(struct ws_server *srv, const char *code, uint64_t sid, int ok,
		     const char *why);
/* ws_class.c: c has no instructor now: it waits --class-grace seconds for
 * one to reclaim it, its students told. */
void ws_class_orphaned(struct ws_class *c);

/* ---- ws_fanout.c: the class ring's fast path ---- */

/* Pick the mode (cfg->fanout; auto: io_uring when the kernel allows it,
 * else send) and set up what it needs. 0, or -errno with err (io_uring
 * asked for and refused). LWS mode leaves srv->fanout NULL. */
int ws_fanout_init(struct ws_server *srv, char *err, size_t errlen);
void ws_fanout_cleanup(struct ws_server *srv);
/* The mode in use: "io_uring", "send" or "lws". */
const char *ws_fanout_mode(const struct ws_server *srv);
/* Messages were pushed to c's ring: sweep it on the next loop turn. 1 when
 * the sweep will write to the readers, 0 when they must be woken as before
 * (lws mode, or no lws context). */
int ws_fanout_due(struct ws_class *c);
/* RFC 6455 5.2: the header of a final, unmasked text frame of len bytes,
 * into out (WS_FRAME_HEADER_MAX bytes); returns its length (2, 4 or 10). */
#define WS_FRAME_HEADER_MAX 10
size_t ws_frame_header(unsigned char *out, uint64_t len);

/* ---- ws_quiz.c: class questions ---- */
struct ws_quiz;
void ws_op_class_quiz(struct ws_session *s, json_t *msg, const char *tag);
/* The class.quiz notice of the question that is up, or NULL: a new reference. */
json_t *ws_quiz_notice(const struct ws_class *c);
/* Home: a student of another replica answers (member, name, id, answer,
 * tag): the reply for that student (class.quiz.answered or an error). */
json_t *ws_quiz_remote_answer(struct ws_class *c, const json_t *in);
/* Home: a replica's students may have missed the reveal's results (NATS
 * was away, or the class moved): send them again. */
void ws_quiz_resend(struct ws_class *c);
/* Home: the students elsewhere count (class.quiz.tally). */
void ws_quiz_members_changed(struct ws_class *c);
/* Home: the answers as the bucket keeps them ([{"member","name","answer",
 * "nonce"}]): a new reference, NULL without a question. */
json_t *ws_quiz_answers(const struct ws_class *c);
/* A class that moved here: its question (the class.quiz notice) and its
 * answers as the bucket held them. 0, or -1 when the question cannot be
 * rebuilt (the class goes on without it). */
int ws_quiz_restore(struct ws_class *c, const json_t *notice, const json_t *answers);
/* Student s joined class c: show it the question that is up. */
void ws_quiz_joined(struct ws_class *c, struct ws_session *s);
void ws_quiz_free(struct ws_quiz *q);

#endif
