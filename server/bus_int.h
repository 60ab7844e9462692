/* bus_int.h: what the files of the NATS bus (bus.c, bus_pub.c, bus_mirror.c, bus_index.c) share: struct bus, the publish queue's messages, and their internal calls. Not for other modules: they use bus.h. */
#ifndef SOCKLAB_BUS_INT_H
#define SOCKLAB_BUS_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include <nats/nats.h>

#include "bus.h"
#include "event.h"

/* Acknowledgements the library may wait for at once, and how long one may
 * take before it counts as failed (without a limit a lost one would hold
 * its place for ever and, MaxPending later, stall publishing). */
#define BUS_MAX_PENDING 4096
#define BUS_ACK_WAIT_MS 5000
/* How long js_PublishAsync may wait when BUS_MAX_PENDING are in flight. */
#define BUS_STALL_MS 50
/* How often a publisher with nothing it can do looks again (ms). */
#define BUS_RETRY_MS 500
/* What libnats buffers while it reconnects (bytes). */
#define BUS_RECONNECT_BUF (8 * 1024 * 1024)

enum bus_state { BUS_CONNECTING, BUS_CONNECTED, BUS_RECONNECTING, BUS_CLOSED };

/* What a queued message is: an event line for the stream, a run's meta for
 * the index (subject holds the run id), a purge of a removed run, or a
 * finished run's files to publish (bus_files.c). */
enum bus_kind { BUS_K_LINE, BUS_K_META, BUS_K_PURGE, BUS_K_FILES };

/* Unacknowledged lines kept for resending at most (then the publisher
 * waits, the queue fills, and what does not fit is dropped and the run
 * marked). */
#define BUS_INFLIGHT_MAX BUS_MAX_PENDING
/* Sends of one line refused by a working connection at most. */
#define BUS_SEND_TRIES 3
/* Replaced kvWatchers kept before they are destroyed, and for how long. */
#define BUS_RETIRED_MAX 8
#define BUS_RETIRE_US 10000000
/* Lines (and bytes) one mirror holds out of order at most. */
#define BUS_REORDER_MAX 1024
#define BUS_REORDER_BYTES (8u * 1024 * 1024)
/* Bytes past BUS_QUEUE_BYTES that index entries, purges and file jobs may
 * still take. */
#define BUS_QUEUE_RESERVE (1u * 1024 * 1024)
/* Runs with dropped lines remembered until their next index entry. */
#define BUS_DROPPED_RUNS 64

struct bus_msg {
	struct bus_msg *next;
	enum bus_kind kind;
	int len;
	/* A line once published: in the in-flight list until JetStream
	 * acknowledges it (acked), resent after a failure or a reconnect
	 * (attempt counts the sends; an acknowledgement failure of an older
	 * attempt is ignored). Guarded by lock. */
	int acked, attempt;
	unsigned gen; /* the connection it was last sent on */
	char msgid[EV_RUN_ID_LEN + 24]; /* Nats-Msg-Id: ID:SEQ; "" when unknown */
	char subject[sizeof BUS_SUBJECT_PREFIX + EV_RUN_ID_LEN];
	char data[];
};

struct bus {
	const struct serve_config *cfg; /* read-only */
	/* Every field below up to the publisher's own is guarded by lock;
	 * libnats's callbacks run on its threads and take it too. */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct bus_msg *head, *tail;
	size_t q_bytes; /* queued and in flight: BUS_QUEUE_BYTES bounds both */
	long q_len;
	long published, acked, failed, dropped;
	/* Lines published and not yet acknowledged, oldest first: appended and
	 * popped only by the publisher thread (which may walk it without the
	 * lock); their flags are set under lock by libnats's ack thread. */
	struct bus_msg *fl_head, *fl_tail;
	long fl_len;
	long resent;         /* lines sent again */
	int resend;          /* an acknowledgement failed: resend the unacked */
	unsigned pub_gen;    /* the connection the in-flight lines were sent on */
	struct bus_dropped {
		char id[EV_RUN_ID_LEN + 1];
		long long first_seq, count;
	} dropped_runs[BUS_DROPPED_RUNS];
	int n_dropped_runs;
	enum bus_state state;
	int stream_ready; /* the stream exists (checked since the last connect) */
	char stream_error[160]; /* why it could not be created; "" */
	int draining, stop;
	long purged;            /* runs purged from the stream (guarded by lock) */
	/* Run files published (guarded by lock): files whose every chunk was
	 * acknowledged, chunks, and files not shared (too large, unreadable,
	 * or a chunk refused). */
	long files_published, chunks_published, files_failed;
	long chunks_failed; /* chunk acknowledgements that failed (lock) */
	unsigned conn_gen;      /* connections made so far (guarded by lock) */
	/* Set once by bus_start, read-only after. */
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
	pthread_t thread;
	int started;
	char replica[EV_RUN_ID_LEN + 1];
	char remote_dir[PATH_MAX]; /* DATA/remote: mirrors of other replicas' runs */
	/* The buckets, created once by whichever thread comes first
	 * (setup_lock); never replaced after: kvStore handles outlive
	 * reconnections. */
	pthread_mutex_t setup_lock;
	kvStore *kv_index, *kv_replicas; /* written under setup_lock, then read-only */
	/* The read side (the reader thread and libnats's delivery threads):
	 * every field below is guarded by rlock. */
	pthread_mutex_t rlock;
	json_t *index;            /* other replicas' runs: id -> meta */
	long long index_dropped;  /* entries past BUS_INDEX_MAX */
	int index_synced;         /* the index watcher has delivered the whole bucket */
	struct bus_replica_seen {
		char id[EV_RUN_ID_LEN + 1];
		int gone; /* its heartbeat entry had expired when last asked */
	} reps[BUS_MIRRORS_MAX];
	int n_reps;
	struct bus_mirror {
		char id[EV_RUN_ID_LEN + 1]; /* "" when the slot is free */
		enum bus_mirror_state state;
		int subscribed;       /* the reader thread has a subscription for it */
		int fd;               /* the file, appended to; -1 once done */
		off_t size;
		long long next_seq;   /* lines in the file */
		uint64_t last_sseq;   /* stream sequence of the last line taken */
		int64_t opened_us, touched_us, caught_up_us;
		char why[240];
		struct { void (*fn)(void *); void *arg; int64_t since; } waiters[BUS_WAITERS_MAX];
		int n_waiters;
		int64_t checked_us; /* when the reader last asked whether it is over */
		natsSubscription *sub; /* the reader thread's */
		/* Lines that came before an earlier one (a line resent after a
		 * reconnect is stored after newer ones), held until the missing
		 * ones arrive, sorted by seq; at most BUS_REORDER_MAX lines and
		 * BUS_REORDER_BYTES. */
		struct bus_held { long long seq; int len; char *line; } *held;
		int n_held;
		size_t held_bytes;
	} mirrors[BUS_MIRRORS_MAX];
	void (*wake_fn)(void *);
	void *wake_arg;
	int rstop;
	pthread_cond_t rwake;
	pthread_t reader;
	int reader_started;
	/* Run files of other replicas being reassembled (bus_files.c): the
	 * fetcher thread and every field of files[] are guarded by flock. */
	pthread_mutex_t flock;
	pthread_cond_t fwake;
	int fstop;
	pthread_t fetcher;
	int fetcher_started;
	long long files_fetched, files_bad; /* (flock) */
	/* kvWatchers of an earlier connection, destroyed BUS_RETIRE_US after
	 * they were replaced (retire_lock): destroying one right after a
	 * reconnect races libnats 3.4's own reset of its ordered consumer (a
	 * use-after-free of the consumer's name inside libnats, seen under
	 * ASan). */
	pthread_mutex_t retire_lock;
	struct { kvWatcher *w; int64_t at; } retired[BUS_RETIRED_MAX];
	struct bus_file {
		char id[EV_RUN_ID_LEN + 1]; /* "" when the slot is free */
		char name[64];
		enum { BUS_F_WANTED, BUS_F_READING, BUS_F_READY, BUS_F_FAILED } state;
		int err;              /* the -errno a failed one answers */
		long long bytes;      /* from the manifest */
		long long chunks;
		char sha256[65];
		char why[300];
		int64_t touched_us, failed_us;
		struct { void (*fn)(void *); void *arg; int64_t since; } waiters[BUS_WAITERS_MAX];
		int n_waiters;
	} files[BUS_FILE_SLOTS];
};

struct bus_waiter_call {
	void (*fn)(void *);
	void *arg;
};

/* ---- bus.c: shared helpers ---- */

/* Wait on c (l held) for at most ms milliseconds. */
void bus_wait_ms_on(pthread_cond_t *c, pthread_mutex_t *l, int ms);
/* The publisher's wait: on b->wake with b->lock held. */
void bus_wait_ms(struct bus *b, int ms);
/* CLOCK_MONOTONIC in microseconds. */
int64_t bus_mono_us(void);

/* Any thread: w (may be NULL) is replaced after a reconnect; it is
 * destroyed BUS_RETIRE_US later by bus_reap_watchers. */
void bus_retire_watcher(struct bus *b, kvWatcher *w);
/* Destroy the retired watchers whose time has come (all: every one, when
 * the bus stops). */
void bus_reap_watchers(struct bus *b, int all);

/* ---- bus_pub.c: the publish queue and the publisher thread ---- */

/* libnats's thread: one acknowledgement of js_PublishAsync. */
void bus_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);
/* The publisher thread (arg: the bus). */
void *bus_publisher(void *arg);
/* Free what is still queued (bus_stop, after the thread is joined). */
void bus_free_queue(struct bus *b);

/* ---- bus_index.c: the run index, the heartbeats and the reader thread ---- */

/* The index and heartbeat buckets, bound or created; either thread
 * (setup_lock). */
natsStatus bus_ensure_buckets(struct bus *b, jsErrCode *jerr);
/* Bucket name into *kv (left as it is when already open): created with one
 * history entry, entries living ttl_ms (0: for ever), at most max_bytes on
 * file; made by another replica with other settings, it is used as it is. */
natsStatus bus_kv_bucket(struct bus *b, kvStore **kv, const char *name, int64_t ttl_ms,
			 int64_t max_bytes);
/* rlock held: is replica id known to have stopped heartbeating? */
int bus_replica_gone(struct bus *b, const char *id);
/* The reader thread (arg: the bus). */
void *bus_reader(void *arg);

/* ---- bus_files.c: run files across replicas ---- */

/* The publisher thread: publish run m->subject's files (BUS_K_FILES).
 * NATS_OK when done (published, or given up and counted); anything else:
 * the connection was lost, try the whole job again once it is back. */
natsStatus bus_publish_files(struct bus *b, struct bus_msg *m);
/* The fetcher thread (arg: the bus). */
void *bus_fetcher(void *arg);
/* Call every resume waiting for a file now. */
void bus_files_release(struct bus *b);
/* 1 when subject is a run file chunk's (its acknowledgement is counted
 * apart from the lines'). */
int bus_is_chunk_subject(const char *subject);

/* ---- bus_mirror.c: copies of other replicas' runs ---- */

/* The reader thread: tend every mirror slot (subscribe, time out waiters,
 * ask whether live ones are over, unsubscribe finished ones). */
void bus_tend_mirrors(struct bus *b, int connected);
/* Free a mirror's held lines (rlock held, or the bus stopping). */
void bus_mirror_drop_held(struct bus_mirror *m);
/* Make DATA/remote and empty it (copies a previous start left). */
int bus_remote_dir_open(struct bus *b, char *err, size_t errlen);

#endif
