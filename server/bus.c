/* bus.c: --nats: run events appended to a JetStream stream (libnats) by a publisher thread, from a bounded queue the lws thread fills without blocking. */
#include "bus.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bundle.h"
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

static const char *const state_names[] = {
	[BUS_CONNECTING] = "connecting",
	[BUS_CONNECTED] = "connected",
	[BUS_RECONNECTING] = "reconnecting",
	[BUS_CLOSED] = "closed",
};

/* What a queued message is: an event line for the stream, a run's meta for
 * the index (subject holds the run id), or a purge of a removed run. */
enum bus_kind { BUS_K_LINE, BUS_K_META, BUS_K_PURGE };

struct bus_msg {
	struct bus_msg *next;
	enum bus_kind kind;
	int len;
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
	size_t q_bytes;
	long q_len;
	long published, acked, failed, dropped;
	enum bus_state state;
	int stream_ready; /* the stream exists (checked since the last connect) */
	char stream_error[160]; /* why it could not be created; "" */
	int draining, stop;
	long purged;            /* runs purged from the stream (guarded by lock) */
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
	} mirrors[BUS_MIRRORS_MAX];
	void (*wake_fn)(void *);
	void *wake_arg;
	int rstop;
	pthread_cond_t rwake;
	pthread_t reader;
	int reader_started;
};

static void set_state(struct bus *b, enum bus_state st)
{
	pthread_mutex_lock(&b->lock);
	b->state = st;
	/* A new connection may be to a server without the stream (a NATS
	 * restarted with an empty store): look again. */
	if (st == BUS_CONNECTED) {
		b->stream_ready = 0;
		b->conn_gen++;
	}
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
}

/* libnats's threads. */
static void on_connected(natsConnection *nc, void *closure)
{
	set_state(closure, BUS_CONNECTED);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	set_state(closure, BUS_RECONNECTING);
}

static void on_closed(natsConnection *nc, void *closure)
{
	set_state(closure, BUS_CLOSED);
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct bus *b = closure;

	pthread_mutex_lock(&b->lock);
	if (pae)
		b->failed++;
	else
		b->acked++;
	pthread_mutex_unlock(&b->lock);
	natsMsg_Destroy(msg);
}

static void enqueue(struct bus *b, enum bus_kind kind, const char *run_id, const char *data,
		    size_t len)
{
	struct bus_msg *m;

	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	if (b->stop || b->q_bytes + len > BUS_QUEUE_BYTES || len > (size_t)0x7fffffff) {
		b->dropped++;
		pthread_mutex_unlock(&b->lock);
		return;
	}
	pthread_mutex_unlock(&b->lock);
	m = malloc(sizeof *m + len);
	if (!m) {
		pthread_mutex_lock(&b->lock);
		b->dropped++;
		pthread_mutex_unlock(&b->lock);
		return;
	}
	m->next = NULL;
	m->kind = kind;
	m->len = (int)len;
	if (kind == BUS_K_LINE)
		snprintf(m->subject, sizeof m->subject, "%s%s", BUS_SUBJECT_PREFIX, run_id);
	else
		snprintf(m->subject, sizeof m->subject, "%s", run_id);
	memcpy(m->data, data, len);
	pthread_mutex_lock(&b->lock);
	if (b->tail)
		b->tail->next = m;
	else
		b->head = m;
	b->tail = m;
	b->q_bytes += len;
	b->q_len++;
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
}

void bus_publish(struct bus *b, const char *run_id, const char *line, size_t len)
{
	enqueue(b, BUS_K_LINE, run_id, line, len);
}

void bus_meta_put(void *arg, const char *id, const json_t *meta)
{
	struct bus *b = arg;
	json_t *o = json_deep_copy(meta);
	char *text;

	if (!o)
		return;
	json_object_set_new(o, "replica", json_string(b->replica));
	text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (text)
		enqueue(b, BUS_K_META, id, text, strlen(text));
	free(text);
}

void bus_run_removed(void *arg, const char *id)
{
	enqueue(arg, BUS_K_PURGE, id, "", 0);
}

const char *bus_replica(const struct bus *b)
{
	return b->replica;
}

/* One bucket: bound when it exists, created when it is missing. */
static natsStatus one_bucket(struct bus *b, kvStore **kv, const char *name, int64_t ttl_ms,
			     int64_t max_bytes)
{
	kvConfig kc;
	natsStatus s;

	if (*kv)
		return NATS_OK;
	kvConfig_Init(&kc);
	kc.Bucket = name;
	kc.History = 1;
	kc.TTL = ttl_ms * 1000000; /* libnats 3.4 passes it on as the stream's MaxAge (ns) */
	kc.MaxBytes = max_bytes;
	kc.StorageType = js_FileStorage;
	s = js_CreateKeyValue(kv, b->js, &kc);
	if (s != NATS_OK) {
		/* Made by another replica with other settings: use it. */
		*kv = NULL;
		s = js_KeyValue(kv, b->js, name);
	}
	return s;
}

/* The run index and the heartbeats; either thread (setup_lock). */
static natsStatus ensure_buckets(struct bus *b, jsErrCode *jerr)
{
	natsStatus s;

	pthread_mutex_lock(&b->setup_lock);
	/* An index entry is one meta (a few hundred bytes): a tenth of the
	 * stream's limit holds far more than --keep-runs on every replica. */
	s = one_bucket(b, &b->kv_index, BUS_INDEX, 0, b->cfg->nats_max_bytes / 10);
	if (s == NATS_OK)
		s = one_bucket(b, &b->kv_replicas, BUS_REPLICAS, BUS_REPLICA_TTL_MS, 1 << 20);
	pthread_mutex_unlock(&b->setup_lock);
	if (s != NATS_OK && jerr)
		*jerr = 0;
	return s;
}

/* The publisher thread: create the stream when it is missing. 0 or -1. */
static int ensure_stream(struct bus *b)
{
	static const char *subjects[] = {BUS_SUBJECT_PREFIX "*"};
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	jsStreamConfig_Init(&sc);
	sc.Name = BUS_STREAM;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Discard = js_DiscardOld;
	sc.MaxBytes = b->cfg->nats_max_bytes;
	s = js_AddStream(&si, b->js, &sc, NULL, &jerr);
	if (s != NATS_OK && jerr == JSStreamNameExistErr) {
		/* It exists (another replica, an earlier run): keep its messages,
		 * apply this server's limit. */
		jerr = 0;
		s = js_UpdateStream(&si, b->js, &sc, NULL, &jerr);
		if (s != NATS_OK) {
			/* Configured otherwise by someone else: publish anyway. */
			s = NATS_OK;
		}
	}
	jsStreamInfo_Destroy(si);
	if (s == NATS_OK)
		s = ensure_buckets(b, &jerr);
	pthread_mutex_lock(&b->lock);
	if (s == NATS_OK)
		b->stream_error[0] = '\0';
	else
		snprintf(b->stream_error, sizeof b->stream_error, "%s (JetStream error %d%s)",
			 natsStatus_GetText(s), (int)jerr,
			 jerr == JSStorageResourcesExceededErr || jerr == JSInsufficientResourcesErr
				 ? ": the server cannot hold --nats-max-bytes"
				 : "");
	pthread_mutex_unlock(&b->lock);
	return s == NATS_OK ? 0 : -1;
}

static void wait_ms_on(pthread_cond_t *c, pthread_mutex_t *l, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(c, l, &ts);
}

static void wait_ms(struct bus *b, int ms)
{
	wait_ms_on(&b->wake, &b->lock, ms);
}

/* The publisher thread: one queued message to NATS. NATS_OK once it is
 * taken (a line) or done (an index entry, a purge). */
static natsStatus publish_one(struct bus *b, struct bus_msg *m, jsPubOptions *po)
{
	char subject[sizeof m->subject + sizeof BUS_SUBJECT_PREFIX];
	jsOptions o;
	jsErrCode jerr = 0;
	natsStatus s = NATS_OK;

	switch (m->kind) {
	case BUS_K_LINE:
		return js_PublishAsync(b->js, m->subject, m->data, m->len, po);
	case BUS_K_META:
		/* After the lines queued before it: the index never says a run
		 * ended before its run.end is on its way to the stream. */
		s = kvStore_Put(NULL, b->kv_index, m->subject, m->data, m->len);
		break;
	case BUS_K_PURGE:
		snprintf(subject, sizeof subject, "%s%s", BUS_SUBJECT_PREFIX, m->subject);
		jsOptions_Init(&o);
		o.Stream.Purge.Subject = subject;
		s = js_PurgeStream(b->js, BUS_STREAM, &o, &jerr);
		if (s == NATS_OK || s == NATS_NOT_FOUND) {
			s = kvStore_Purge(b->kv_index, m->subject, NULL);
			if (s == NATS_NOT_FOUND)
				s = NATS_OK;
		}
		break;
	}
	if (s == NATS_OK)
		return s;
	/* Lost with the connection: again once it is back. Refused on a
	 * connection that still works: counted, and the queue goes on. */
	pthread_mutex_lock(&b->lock);
	s = b->state == BUS_CONNECTED ? NATS_OK : NATS_ERR;
	if (s == NATS_OK)
		b->failed++;
	pthread_mutex_unlock(&b->lock);
	return s;
}

static void *publisher(void *arg)
{
	struct bus *b = arg;
	jsPubOptions po;
	natsStatus s;

	jsPubOptions_Init(&po);
	po.MaxWait = BUS_ACK_WAIT_MS;
	pthread_mutex_lock(&b->lock);
	while (!b->stop) {
		struct bus_msg *m = b->head;
		if (!m) {
			if (b->draining)
				break;
			pthread_cond_wait(&b->wake, &b->lock);
			continue;
		}
		if (b->state != BUS_CONNECTED) {
			wait_ms(b, BUS_RETRY_MS);
			continue;
		}
		if (!b->stream_ready) {
			int ok;
			pthread_mutex_unlock(&b->lock);
			ok = ensure_stream(b) == 0;
			pthread_mutex_lock(&b->lock);
			b->stream_ready = ok;
			if (!ok)
				wait_ms(b, BUS_RETRY_MS);
			continue;
		}
		/* In queue order: the head leaves the queue only once libnats
		 * has taken it, so nothing is reordered by a retry. */
		pthread_mutex_unlock(&b->lock);
		s = publish_one(b, m, &po);
		pthread_mutex_lock(&b->lock);
		if (s == NATS_OK) {
			b->head = m->next;
			if (!b->head)
				b->tail = NULL;
			b->q_bytes -= (size_t)m->len;
			b->q_len--;
			if (m->kind == BUS_K_LINE)
				b->published++;
			else if (m->kind == BUS_K_PURGE)
				b->purged++;
			free(m);
		} else if (s != NATS_TIMEOUT) {
			/* Not connected after all, or closed: look again soon. */
			wait_ms(b, BUS_RETRY_MS);
		}
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}


/* ======================================================================
 * The read side: the run index, heartbeats and mirrors of other
 * replicas' runs
 * ====================================================================== */

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void mirror_path(const struct bus *b, const char *id, char *out, size_t len)
{
	if (snprintf(out, len, "%s/%s.jsonl", b->remote_dir, id) >= (int)len && len)
		out[0] = '\0';
}

/* rlock held. */
static struct bus_mirror *mirror_find(struct bus *b, const char *id)
{
	int i;

	for (i = 0; i < BUS_MIRRORS_MAX; i++)
		if (b->mirrors[i].id[0] && !strcmp(b->mirrors[i].id, id))
			return &b->mirrors[i];
	return NULL;
}

/* rlock held: is replica id known to have stopped heartbeating? Unknown
 * replicas are not: nothing is claimed without evidence. */
static int replica_gone(struct bus *b, const char *id)
{
	int i;

	for (i = 0; i < b->n_reps; i++)
		if (!strcmp(b->reps[i].id, id))
			return b->reps[i].gone;
	return 0;
}

struct bus_waiter_call {
	void (*fn)(void *);
	void *arg;
};

/* rlock held: move m's waiters to out (called after rlock is released). */
static int take_waiters(struct bus_mirror *m, struct bus_waiter_call *out)
{
	int i, n = m->n_waiters;

	for (i = 0; i < n; i++) {
		out[i].fn = m->waiters[i].fn;
		out[i].arg = m->waiters[i].arg;
	}
	m->n_waiters = 0;
	return n;
}

/* rlock held: m is done (ended, incomplete or failed). */
static void mirror_finish(struct bus_mirror *m, enum bus_mirror_state st, const char *why)
{
	m->state = st;
	if (why)
		snprintf(m->why, sizeof m->why, "%s", why);
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
}

static void call_waiters(struct bus_waiter_call *w, int n)
{
	int i;

	for (i = 0; i < n; i++)
		w[i].fn(w[i].arg);
}

/* libnats's delivery thread: one line of a mirrored run. */
static void on_mirror_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct bus *b = closure;
	struct bus_waiter_call calls[BUS_WAITERS_MAX];
	const char *subject = natsMsg_GetSubject(msg);
	const char *data = natsMsg_GetData(msg);
	int len = natsMsg_GetDataLength(msg), n_calls = 0, woke = 0;
	jsMsgMetaData *md = NULL;
	struct bus_mirror *m;
	json_t *ev = NULL;
	char why[240];

	if (!subject || strncmp(subject, BUS_SUBJECT_PREFIX, strlen(BUS_SUBJECT_PREFIX)) != 0 ||
	    natsMsg_GetMetaData(&md, msg) != NATS_OK) {
		natsMsg_Destroy(msg);
		return;
	}
	ev = json_loadb(data, (size_t)len, 0, NULL);
	pthread_mutex_lock(&b->rlock);
	m = mirror_find(b, subject + strlen(BUS_SUBJECT_PREFIX));
	if (!m || (m->state != BUS_M_FETCHING && m->state != BUS_M_LIVE) ||
	    md->Sequence.Stream <= m->last_sseq)
		goto out; /* not followed any more, or seen already */
	/* A line stored twice (published again after a lost acknowledgement):
	 * the first copy is in the file already. */
	if (json_integer_value(json_object_get(ev, "seq")) < m->next_seq &&
	    json_is_integer(json_object_get(ev, "seq"))) {
		m->last_sseq = md->Sequence.Stream;
		goto out;
	}
	{
		json_t *jseq = json_object_get(ev, "seq");
		const char *type = json_string_value(json_object_get(ev, "type"));
		const char *run = json_string_value(json_object_get(ev, "run"));

		if (!json_is_integer(jseq) || !run || strcmp(run, m->id) != 0) {
			snprintf(why, sizeof why, "message %llu of the stream is not an event of run %s",
				 (unsigned long long)md->Sequence.Stream, m->id);
			mirror_finish(m, BUS_M_FAILED, why);
		} else if (json_integer_value(jseq) != m->next_seq) {
			snprintf(why, sizeof why,
				 "the stream lacks events %lld to %lld of the run (removed by "
				 "--nats-max-bytes, or dropped by the replica that ran it)",
				 m->next_seq, (long long)json_integer_value(jseq) - 1);
			mirror_finish(m, BUS_M_FAILED, why);
		} else if ((long long)m->size + len + 1 > b->cfg->max_run_data) {
			snprintf(why, sizeof why,
				 "the run's events are larger than --max-run-data (%lld bytes)",
				 b->cfg->max_run_data);
			mirror_finish(m, BUS_M_FAILED, why);
		} else if (bundle_append_line(m->fd, &m->size, data, (size_t)len) < 0) {
			snprintf(why, sizeof why, "cannot write the copy of the run: %s",
				 strerror(errno));
			mirror_finish(m, BUS_M_FAILED, why);
		} else {
			m->next_seq++;
			m->last_sseq = md->Sequence.Stream;
			if (type && !strcmp(type, "run.end"))
				mirror_finish(m, BUS_M_ENDED, NULL);
			else if (m->state == BUS_M_FETCHING && md->NumPending == 0)
				m->state = BUS_M_LIVE;
		}
	}
	if (m->state != BUS_M_FETCHING) {
		if (!m->caught_up_us)
			m->caught_up_us = mono_us();
		n_calls = take_waiters(m, calls);
	}
	woke = 1;
out:
	pthread_mutex_unlock(&b->rlock);
	call_waiters(calls, n_calls);
	if (woke && b->wake_fn)
		b->wake_fn(b->wake_arg);
	json_decref(ev);
	jsMsgMetaData_Destroy(md);
	natsMsg_Destroy(msg);
}

/* The reader thread: start following mirror slot i (its id is copied: the
 * slot may change while the lock is not held). */
static void mirror_subscribe(struct bus *b, int i)
{
	char subject[sizeof BUS_SUBJECT_PREFIX + EV_RUN_ID_LEN], id[EV_RUN_ID_LEN + 1];
	struct bus_waiter_call calls[BUS_WAITERS_MAX];
	natsSubscription *sub = NULL;
	natsMsg *last = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;
	int n_calls = 0, empty;

	pthread_mutex_lock(&b->rlock);
	memcpy(id, b->mirrors[i].id, sizeof id);
	b->mirrors[i].subscribed = 1;
	pthread_mutex_unlock(&b->rlock);
	snprintf(subject, sizeof subject, "%s%s", BUS_SUBJECT_PREFIX, id);
	/* Nothing in the stream for it yet: caught up at once. */
	s = js_GetLastMsg(&last, b->js, BUS_STREAM, subject, NULL, &jerr);
	empty = s == NATS_NOT_FOUND;
	natsMsg_Destroy(last);
	jsSubOptions_Init(&so);
	so.Stream = BUS_STREAM;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverAll;
	if (s == NATS_OK || empty)
		s = js_Subscribe(&sub, b->js, subject, on_mirror_msg, b, NULL, &so, &jerr);
	pthread_mutex_lock(&b->rlock);
	if (strcmp(b->mirrors[i].id, id) != 0 || s != NATS_OK) {
		/* Evicted meanwhile, or NATS refused: the slot is tried again
		 * when it is still wanted. */
		if (!strcmp(b->mirrors[i].id, id))
			b->mirrors[i].subscribed = 0;
		pthread_mutex_unlock(&b->rlock);
		if (sub) {
			natsSubscription_Unsubscribe(sub);
			natsSubscription_Destroy(sub);
		}
		return;
	}
	b->mirrors[i].sub = sub;
	if (empty && b->mirrors[i].state == BUS_M_FETCHING) {
		b->mirrors[i].state = BUS_M_LIVE;
		b->mirrors[i].caught_up_us = mono_us();
		n_calls = take_waiters(&b->mirrors[i], calls);
	}
	pthread_mutex_unlock(&b->rlock);
	call_waiters(calls, n_calls);
}

/* The reader thread: a LIVE mirror that nothing more will reach is
 * incomplete. Asked of the stream, not guessed: its replica stopped
 * heartbeating (or the index says its run ended) and the stream holds no
 * message for it beyond the last one the mirror took. */
static void mirror_check_end(struct bus *b, int i)
{
	char subject[sizeof BUS_SUBJECT_PREFIX + EV_RUN_ID_LEN], id[EV_RUN_ID_LEN + 1];
	char why[240], replica[EV_RUN_ID_LEN + 1] = "";
	const char *status = NULL;
	natsMsg *last = NULL;
	jsErrCode jerr = 0;
	uint64_t seen, newest = 0;
	json_t *meta;
	natsStatus s;
	int gone;

	pthread_mutex_lock(&b->rlock);
	memcpy(id, b->mirrors[i].id, sizeof id);
	seen = b->mirrors[i].last_sseq;
	meta = json_object_get(b->index, id);
	if (meta) {
		snprintf(replica, sizeof replica, "%s",
			 json_string_value(json_object_get(meta, "replica")) ?: "");
		status = json_string_value(json_object_get(meta, "status"));
	}
	gone = replica[0] && replica_gone(b, replica);
	if (!gone && (!status || !strcmp(status, "running"))) {
		pthread_mutex_unlock(&b->rlock);
		return;
	}
	snprintf(why, sizeof why,
		 gone ? "the replica that ran it (%s) stopped before the run ended: the stream "
			"holds %lld events and no run.end"
		      : "the run ended on its replica (%s) but the stream lacks its last events: "
			"it holds %lld and no run.end",
		 replica, b->mirrors[i].next_seq);
	pthread_mutex_unlock(&b->rlock);
	snprintf(subject, sizeof subject, "%s%s", BUS_SUBJECT_PREFIX, id);
	s = js_GetLastMsg(&last, b->js, BUS_STREAM, subject, NULL, &jerr);
	if (s == NATS_OK)
		newest = natsMsg_GetSequence(last);
	natsMsg_Destroy(last);
	if ((s != NATS_OK && s != NATS_NOT_FOUND) || newest > seen)
		return;
	pthread_mutex_lock(&b->rlock);
	if (!strcmp(b->mirrors[i].id, id) && b->mirrors[i].state == BUS_M_LIVE &&
	    b->mirrors[i].last_sseq == seen)
		mirror_finish(&b->mirrors[i], BUS_M_INCOMPLETE, why);
	pthread_mutex_unlock(&b->rlock);
	if (b->wake_fn)
		b->wake_fn(b->wake_arg);
}

/* The reader thread: one index entry into map (other replicas' runs only). */
static void index_apply(struct bus *b, json_t *map, kvEntry *e)
{
	const char *key = kvEntry_Key(e);
	json_t *meta;

	if (!key || !ev_valid_run_id(key))
		return;
	if (kvEntry_Operation(e) != kvOp_Put) {
		json_object_del(map, key);
		return;
	}
	meta = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
	if (!json_is_object(meta) ||
	    !json_is_string(json_object_get(meta, "replica")) ||
	    !strcmp(json_string_value(json_object_get(meta, "replica")), b->replica)) {
		json_decref(meta);
		return;
	}
	if (!json_object_get(map, key) && json_object_size(map) >= BUS_INDEX_MAX) {
		b->index_dropped++;
		json_decref(meta);
		return;
	}
	json_object_set_new(map, key, meta);
}

/* The reader thread: which replicas of running runs still heartbeat. */
static void check_replicas(struct bus *b)
{
	char ids[BUS_MIRRORS_MAX][EV_RUN_ID_LEN + 1];
	int gone[BUS_MIRRORS_MAX];
	const char *key;
	json_t *meta;
	int n = 0, i;

	pthread_mutex_lock(&b->rlock);
	json_object_foreach(b->index, key, meta) {
		const char *rep = json_string_value(json_object_get(meta, "replica"));
		const char *st = json_string_value(json_object_get(meta, "status"));
		if (!rep || !st || strcmp(st, "running") != 0 || strlen(rep) != EV_RUN_ID_LEN)
			continue;
		for (i = 0; i < n && strcmp(ids[i], rep) != 0; i++)
			;
		if (i == n && n < BUS_MIRRORS_MAX)
			memcpy(ids[n++], rep, EV_RUN_ID_LEN + 1);
	}
	pthread_mutex_unlock(&b->rlock);
	for (i = 0; i < n; i++) {
		kvEntry *e = NULL;
		natsStatus s = kvStore_Get(&e, b->kv_replicas, ids[i]);
		/* Gone: the entry expired (BUS_REPLICA_TTL_MS without a
		 * heartbeat). Any other failure says nothing. */
		gone[i] = s == NATS_NOT_FOUND ? 1 : s == NATS_OK ? 0 : -1;
		kvEntry_Destroy(e);
	}
	pthread_mutex_lock(&b->rlock);
	for (i = 0; i < n; i++) {
		int k;
		if (gone[i] < 0)
			continue;
		for (k = 0; k < b->n_reps && strcmp(b->reps[k].id, ids[i]) != 0; k++)
			;
		if (k == b->n_reps) {
			if (b->n_reps == BUS_MIRRORS_MAX)
				k = 0; /* the table is a cache: the first goes */
			else
				b->n_reps++;
			memcpy(b->reps[k].id, ids[i], EV_RUN_ID_LEN + 1);
		}
		b->reps[k].gone = gone[i];
	}
	pthread_mutex_unlock(&b->rlock);
}

/* The reader thread: subscribe new mirrors, release waiters that waited
 * too long, ask whether live ones are over, unsubscribe finished ones. */
static void tend_mirrors(struct bus *b, int connected)
{
	struct bus_waiter_call calls[BUS_WAITERS_MAX];
	int64_t now = mono_us();
	int i;

	for (i = 0; i < BUS_MIRRORS_MAX; i++) {
		struct bus_mirror *m = &b->mirrors[i];
		natsSubscription *done = NULL;
		int n_calls = 0, subscribe = 0, check = 0, k;

		pthread_mutex_lock(&b->rlock);
		if (!m->id[0]) {
			pthread_mutex_unlock(&b->rlock);
			continue;
		}
		for (k = 0; k < m->n_waiters;) {
			if (now - m->waiters[k].since >= (int64_t)BUS_FETCH_WAIT_MS * 1000) {
				calls[n_calls].fn = m->waiters[k].fn;
				calls[n_calls++].arg = m->waiters[k].arg;
				m->waiters[k] = m->waiters[--m->n_waiters];
			} else {
				k++;
			}
		}
		if (m->state == BUS_M_FETCHING || m->state == BUS_M_LIVE) {
			subscribe = connected && !m->subscribed;
			if (m->state == BUS_M_LIVE && m->sub && now - m->checked_us >= 1000000) {
				m->checked_us = now;
				check = connected;
			}
		} else if (m->sub) {
			done = m->sub;
			m->sub = NULL;
		}
		pthread_mutex_unlock(&b->rlock);
		call_waiters(calls, n_calls);
		if (done) {
			natsSubscription_Unsubscribe(done);
			natsSubscription_Destroy(done);
		}
		if (subscribe)
			mirror_subscribe(b, i);
		if (check)
			mirror_check_end(b, i);
	}
}

static void *reader(void *arg)
{
	struct bus *b = arg;
	kvWatcher *w = NULL;
	json_t *pending = NULL;
	unsigned gen = 0;
	int64_t beat = 0, reps = 0;

	for (;;) {
		int connected, ready;
		unsigned g;

		pthread_mutex_lock(&b->lock);
		connected = b->state == BUS_CONNECTED;
		g = b->conn_gen;
		pthread_mutex_unlock(&b->lock);
		pthread_mutex_lock(&b->rlock);
		if (b->rstop) {
			pthread_mutex_unlock(&b->rlock);
			break;
		}
		pthread_mutex_unlock(&b->rlock);
		pthread_mutex_lock(&b->setup_lock);
		ready = b->kv_index && b->kv_replicas;
		pthread_mutex_unlock(&b->setup_lock);
		if (connected && !ready)
			ready = ensure_buckets(b, NULL) == NATS_OK;
		if (connected && ready) {
			int64_t now = mono_us();
			if (now - beat >= (int64_t)BUS_HEARTBEAT_MS * 1000) {
				char v[64];
				int n = snprintf(v, sizeof v, "{\"replica\":\"%s\"}", b->replica);
				if (kvStore_Put(NULL, b->kv_replicas, b->replica, v, n) == NATS_OK)
					beat = now;
			}
			/* A new connection: read the whole index again (what
			 * changed while NATS was away). */
			if (w && g != gen) {
				kvWatcher_Destroy(w);
				w = NULL;
			}
			if (!w && kvStore_WatchAll(&w, b->kv_index, NULL) == NATS_OK) {
				gen = g;
				json_decref(pending);
				pending = json_object();
			}
			if (now - reps >= 2000000) {
				check_replicas(b);
				reps = now;
			}
		}
		tend_mirrors(b, connected && ready);
		if (w) {
			kvEntry *e = NULL;
			natsStatus s = kvWatcher_Next(&e, w, 200);
			int n = 0;
			while (s == NATS_OK && n++ < 1000) {
				pthread_mutex_lock(&b->rlock);
				if (!e && pending) {
					/* The whole bucket is in: it replaces the
					 * index of the last connection. */
					json_decref(b->index);
					b->index = pending;
					pending = NULL;
					b->index_synced = 1;
				} else if (e) {
					index_apply(b, pending ? pending : b->index, e);
				}
				pthread_mutex_unlock(&b->rlock);
				kvEntry_Destroy(e);
				e = NULL;
				s = kvWatcher_Next(&e, w, 0);
			}
			kvEntry_Destroy(e);
		} else {
			pthread_mutex_lock(&b->rlock);
			if (!b->rstop)
				wait_ms_on(&b->rwake, &b->rlock, 200);
			pthread_mutex_unlock(&b->rlock);
		}
	}
	kvWatcher_Destroy(w);
	json_decref(pending);
	return NULL;
}

/* ---- the read side's interface ---- */

void bus_set_wake(struct bus *b, void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&b->rlock);
	b->wake_fn = fn;
	b->wake_arg = arg;
	pthread_mutex_unlock(&b->rlock);
}

/* rlock held: a copy of an index entry as served. */
static json_t *served_meta(struct bus *b, const json_t *meta)
{
	json_t *o = json_deep_copy(meta);
	const char *rep = json_string_value(json_object_get(meta, "replica"));
	const char *st = json_string_value(json_object_get(meta, "status"));
	char why[200];

	if (!o)
		return NULL;
	json_object_set_new(o, "remote", json_true());
	if (st && !strcmp(st, "running") && rep && replica_gone(b, rep)) {
		/* Its replica stopped heartbeating: no end is made up. */
		snprintf(why, sizeof why,
			 "the replica that ran it (%s) stopped before the run ended; the stream "
			 "holds what it published, without a run.end",
			 rep);
		json_object_set_new(o, "status", json_string("incomplete"));
		json_object_set_new(o, "incomplete", json_true());
		json_object_set_new(o, "incomplete_reason", json_string(why));
	}
	return o;
}

json_t *bus_run_meta(struct bus *b, const char *id)
{
	json_t *meta, *o = NULL;

	pthread_mutex_lock(&b->rlock);
	meta = json_object_get(b->index, id);
	if (meta)
		o = served_meta(b, meta);
	pthread_mutex_unlock(&b->rlock);
	return o;
}

static int by_created_desc(const void *x, const void *y)
{
	const char *a = json_string_value(json_object_get(*(json_t *const *)x, "created"));
	const char *c = json_string_value(json_object_get(*(json_t *const *)y, "created"));

	return strcmp(c ? c : "", a ? a : "");
}

json_t *bus_run_list(struct bus *b, size_t max)
{
	json_t **v, *out = json_array(), *meta;
	const char *key;
	size_t n = 0, i;

	if (!out)
		return NULL;
	pthread_mutex_lock(&b->rlock);
	v = malloc((json_object_size(b->index) + 1) * sizeof *v);
	if (v) {
		json_object_foreach(b->index, key, meta)
			v[n++] = meta;
		qsort(v, n, sizeof *v, by_created_desc);
		for (i = 0; i < n && i < max; i++)
			json_array_append_new(out, served_meta(b, v[i]));
	}
	pthread_mutex_unlock(&b->rlock);
	free(v);
	return out;
}

int bus_mirror_open(struct bus *b, const char *id, char *path, size_t pathlen, char *err,
		    size_t errlen)
{
	struct bus_mirror *m;
	int i, fd, rc = 0;

	mirror_path(b, id, path, pathlen);
	pthread_mutex_lock(&b->rlock);
	m = mirror_find(b, id);
	if (m) {
		m->touched_us = mono_us();
		goto out;
	}
	if (!json_object_get(b->index, id)) {
		snprintf(err, errlen, "no such run");
		rc = -ENOENT;
		goto out;
	}
	for (i = 0; i < BUS_MIRRORS_MAX && b->mirrors[i].id[0]; i++)
		;
	if (i == BUS_MIRRORS_MAX) {
		/* The least recently used mirror that is over makes room. */
		int k;
		for (k = 0, i = -1; k < BUS_MIRRORS_MAX; k++) {
			struct bus_mirror *c = &b->mirrors[k];
			if (c->state == BUS_M_FETCHING || c->state == BUS_M_LIVE || c->sub ||
			    c->n_waiters)
				continue;
			if (i < 0 || c->touched_us < b->mirrors[i].touched_us)
				i = k;
		}
		if (i < 0) {
			snprintf(err, errlen,
				 "this replica follows %d runs of other replicas at once, its limit; "
				 "try again when one has ended",
				 BUS_MIRRORS_MAX);
			rc = -ENOSPC;
			goto out;
		}
		{
			char old[PATH_MAX];
			mirror_path(b, b->mirrors[i].id, old, sizeof old);
			unlink(old);
		}
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot keep a copy of the run: %s", strerror(errno));
		rc = -errno;
		memset(&b->mirrors[i], 0, sizeof b->mirrors[i]);
		goto out;
	}
	m = &b->mirrors[i];
	memset(m, 0, sizeof *m);
	memcpy(m->id, id, EV_RUN_ID_LEN + 1);
	m->state = BUS_M_FETCHING;
	m->fd = fd;
	m->opened_us = m->touched_us = mono_us();
	pthread_cond_signal(&b->rwake);
out:
	pthread_mutex_unlock(&b->rlock);
	return rc;
}

enum bus_mirror_state bus_mirror_state(struct bus *b, const char *id, long long *events,
				       char *why, size_t whylen)
{
	enum bus_mirror_state st = BUS_M_FAILED;
	struct bus_mirror *m;

	pthread_mutex_lock(&b->rlock);
	m = mirror_find(b, id);
	if (m) {
		st = m->state;
		if (events)
			*events = m->next_seq;
		if (why)
			snprintf(why, whylen, "%s", m->why);
	} else {
		if (events)
			*events = 0;
		if (why)
			snprintf(why, whylen, "the copy of this run was given up for another");
	}
	pthread_mutex_unlock(&b->rlock);
	return st;
}

int bus_mirror_wait(struct bus *b, const char *id, void (*resume)(void *), void *arg)
{
	struct bus_mirror *m;
	int rc = 1;

	pthread_mutex_lock(&b->rlock);
	m = mirror_find(b, id);
	if (m && m->state == BUS_M_FETCHING) {
		if (m->n_waiters >= BUS_WAITERS_MAX) {
			rc = -ENOSPC;
		} else {
			m->waiters[m->n_waiters].fn = resume;
			m->waiters[m->n_waiters].arg = arg;
			m->waiters[m->n_waiters++].since = mono_us();
			rc = 0;
		}
	}
	pthread_mutex_unlock(&b->rlock);
	return rc;
}

void bus_release_waiters(struct bus *b)
{
	struct bus_waiter_call calls[BUS_WAITERS_MAX];
	int i, n;

	if (!b)
		return;
	for (i = 0; i < BUS_MIRRORS_MAX; i++) {
		pthread_mutex_lock(&b->rlock);
		n = take_waiters(&b->mirrors[i], calls);
		pthread_mutex_unlock(&b->rlock);
		call_waiters(calls, n);
	}
}

/* Empty DATA/remote (copies a previous start left). */
static int remote_dir_open(struct bus *b, char *err, size_t errlen)
{
	struct dirent *e;
	DIR *d;

	if (snprintf(b->remote_dir, sizeof b->remote_dir, "%s/remote", b->cfg->data) >=
	    (int)sizeof b->remote_dir - EV_RUN_ID_LEN - 8) {
		snprintf(err, errlen, "--data is too long");
		return -ENAMETOOLONG;
	}
	if (mkdir(b->remote_dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", b->remote_dir, strerror(errno));
		return -errno;
	}
	d = opendir(b->remote_dir);
	if (!d) {
		snprintf(err, errlen, "cannot read %s: %s", b->remote_dir, strerror(errno));
		return -errno;
	}
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	return 0;
}

static void free_queue(struct bus *b)
{
	while (b->head) {
		struct bus_msg *m = b->head;
		b->head = m->next;
		free(m);
	}
	b->tail = NULL;
	b->q_bytes = 0;
	b->q_len = 0;
}

int bus_start(struct bus **out, const struct serve_config *cfg, char *err, size_t errlen)
{
	struct bus *b = calloc(1, sizeof *b);
	jsOptions jo;
	natsStatus s;

	*out = NULL;
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->cfg = cfg;
	b->state = BUS_CONNECTING;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->wake, NULL);
	pthread_mutex_init(&b->setup_lock, NULL);
	pthread_mutex_init(&b->rlock, NULL);
	pthread_cond_init(&b->rwake, NULL);
	b->index = json_object();
	if (!b->index || ev_random_id(b->replica) < 0) {
		snprintf(err, errlen, "--nats: cannot make a replica id");
		bus_stop(b);
		return -EIO;
	}
	if (remote_dir_open(b, err, errlen) < 0) {
		bus_stop(b);
		return -EIO;
	}
	s = natsOptions_Create(&b->opts);
	if (s == NATS_OK)
		s = natsOptions_SetURL(b->opts, cfg->nats_url);
	if (s == NATS_OK)
		s = natsOptions_SetName(b->opts, "socklab");
	/* A NATS server that is down, now or later, is retried for ever
	 * (every 2 s); runs go on meanwhile. */
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(b->opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(b->opts, 2000);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectBufSize(b->opts, BUS_RECONNECT_BUF);
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(b->opts, true, on_connected, b);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(b->opts, on_connected, b);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(b->opts, on_disconnected, b);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(b->opts, on_closed, b);
	if (s != NATS_OK) {
		snprintf(err, errlen, "--nats: cannot set up the NATS client: %s",
			 natsStatus_GetText(s));
		bus_stop(b);
		return -EINVAL;
	}
	s = natsConnection_Connect(&b->nc, b->opts);
	if (s == NATS_OK)
		set_state(b, BUS_CONNECTED);
	else if (s != NATS_NOT_YET_CONNECTED) {
		snprintf(err, errlen, "--nats %s: %s", cfg->nats_url, natsStatus_GetText(s));
		bus_stop(b);
		return -EIO;
	}
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = BUS_MAX_PENDING;
	jo.PublishAsync.StallWait = BUS_STALL_MS;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.AckHandlerClosure = b;
	s = natsConnection_JetStream(&b->js, b->nc, &jo);
	if (s != NATS_OK) {
		snprintf(err, errlen, "--nats: cannot use JetStream: %s", natsStatus_GetText(s));
		bus_stop(b);
		return -EIO;
	}
	if (pthread_create(&b->thread, NULL, publisher, b) != 0) {
		snprintf(err, errlen, "cannot start the NATS publisher thread");
		bus_stop(b);
		return -EAGAIN;
	}
	b->started = 1;
	if (pthread_create(&b->reader, NULL, reader, b) != 0) {
		snprintf(err, errlen, "cannot start the NATS reader thread");
		bus_stop(b);
		return -EAGAIN;
	}
	b->reader_started = 1;
	*out = b;
	return 0;
}

json_t *bus_health(struct bus *b)
{
	json_t *o;
	int connected, mirrors = 0, i;

	pthread_mutex_lock(&b->lock);
	o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "url", b->cfg->nats_url, "state",
		      b->state == BUS_CONNECTED && !b->stream_ready && b->head ? "no_stream"
										: state_names[b->state],
		      "stream", BUS_STREAM, "published", (json_int_t)b->published, "acked",
		      (json_int_t)b->acked, "failed", (json_int_t)b->failed, "dropped",
		      (json_int_t)b->dropped, "queued", (json_int_t)b->q_len);
	if (o && b->stream_error[0])
		json_object_set_new(o, "stream_error", json_string(b->stream_error));
	connected = b->state == BUS_CONNECTED && !b->stream_error[0];
	if (o) {
		json_object_set_new(o, "replica", json_string(b->replica));
		json_object_set_new(o, "purged", json_integer(b->purged));
	}
	pthread_mutex_unlock(&b->lock);
	if (!o)
		return NULL;
	pthread_mutex_lock(&b->rlock);
	for (i = 0; i < BUS_MIRRORS_MAX; i++)
		if (b->mirrors[i].id[0] &&
		    (b->mirrors[i].state == BUS_M_FETCHING || b->mirrors[i].state == BUS_M_LIVE))
			mirrors++;
	/* "degraded": this replica's own runs are served as ever, but runs of
	 * other replicas cannot be listed as they are now nor followed. */
	json_object_set_new(
		o, "replicas",
		json_pack("{s:s, s:I, s:I, s:i, s:i, s:s?}", "state",
			  connected && b->index_synced ? "ok" : "degraded", "index_runs",
			  (json_int_t)json_object_size(b->index), "index_dropped",
			  (json_int_t)b->index_dropped, "mirrors", mirrors, "mirrors_max",
			  BUS_MIRRORS_MAX, "reason",
			  connected && b->index_synced
				  ? NULL
				  : !connected ? "NATS is not reachable: this replica serves its own runs; "
						 "runs of other replicas are listed as last seen and "
						 "cannot be followed until it is back"
					       : "reading the run index from NATS"));
	pthread_mutex_unlock(&b->rlock);
	return o;
}

void bus_stop(struct bus *b)
{
	struct timespec end;
	jsPubOptions po;
	int i;

	if (!b)
		return;
	if (b->reader_started) {
		pthread_mutex_lock(&b->rlock);
		b->rstop = 1;
		pthread_cond_signal(&b->rwake);
		pthread_mutex_unlock(&b->rlock);
		pthread_join(b->reader, NULL);
	}
	bus_release_waiters(b);
	for (i = 0; i < BUS_MIRRORS_MAX; i++) {
		if (b->mirrors[i].sub) {
			natsSubscription_Unsubscribe(b->mirrors[i].sub);
			natsSubscription_Destroy(b->mirrors[i].sub);
			b->mirrors[i].sub = NULL;
		}
	}
	if (b->started) {
		/* What is queued goes out if it can within 2 s. */
		clock_gettime(CLOCK_MONOTONIC, &end);
		end.tv_sec += 2;
		pthread_mutex_lock(&b->lock);
		b->draining = 1;
		pthread_cond_signal(&b->wake);
		while (b->head) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > end.tv_sec ||
			    (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
				break;
			wait_ms(b, 50);
		}
		b->stop = 1;
		pthread_cond_signal(&b->wake);
		pthread_mutex_unlock(&b->lock);
		pthread_join(b->thread, NULL);
		jsPubOptions_Init(&po);
		po.MaxWait = 2000;
		if (b->state == BUS_CONNECTED)
			js_PublishAsyncComplete(b->js, &po);
	}
	kvStore_Destroy(b->kv_index);
	kvStore_Destroy(b->kv_replicas);
	jsCtx_Destroy(b->js);
	if (b->nc) {
		natsConnection_Close(b->nc);
		natsConnection_Destroy(b->nc);
	}
	natsOptions_Destroy(b->opts);
	/* libnats's own threads and memory, so nothing is left at exit. */
	nats_CloseAndWait(2000);
	free_queue(b);
	for (i = 0; i < BUS_MIRRORS_MAX; i++)
		if (b->mirrors[i].fd > 0)
			close(b->mirrors[i].fd);
	json_decref(b->index);
	pthread_cond_destroy(&b->rwake);
	pthread_mutex_destroy(&b->rlock);
	pthread_mutex_destroy(&b->setup_lock);
	pthread_cond_destroy(&b->wake);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
