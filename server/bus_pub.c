/* bus_pub.c: --nats: run events (and index entries, purges) queued by the lws thread without blocking and handed in order to JetStream by the publisher thread. */
#include "bus_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The send counter of a line (an attempt number), so an acknowledgement
 * failure of an older send is not taken for the newest's. */
#define HDR_TRY "Socklab-Try"

static int atoi_attempt(const char *v)
{
	long x = strtol(v, NULL, 10);

	return x > 0 && x < 1000000 ? (int)x : -1;
}

/* libnats's thread, for every acknowledgement: a line's marks its entry of
 * the in-flight list (the publisher frees it); a failed one of the newest
 * send asks for the unacknowledged lines to be sent again. */
void bus_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct bus *b = closure;
	const char *id = NULL, *attempt = NULL;
	struct bus_msg *e = NULL;

	natsMsgHeader_Get(msg, "Nats-Msg-Id", &id);
	natsMsgHeader_Get(msg, HDR_TRY, &attempt);
	pthread_mutex_lock(&b->lock);
	if (bus_is_chunk_subject(natsMsg_GetSubject(msg))) {
		/* A run file's chunk: bus_publish_files counts its own. */
		if (pae)
			b->chunks_failed++;
		goto out;
	}
	for (e = id ? b->fl_head : NULL; e; e = e->next)
		if (!strcmp(e->msgid, id))
			break;
	if (!e)
		goto out; /* acknowledged already, by an earlier send */
	if (!pae) {
		if (!e->acked) {
			e->acked = 1;
			b->acked++;
			if (e == b->fl_head)
				pthread_cond_signal(&b->wake);
		}
	} else if (!e->acked && attempt && atoi_attempt(attempt) == e->attempt &&
		   b->state == BUS_CONNECTED && b->conn_gen == e->gen) {
		/* On the connection it was sent on (a line sent on a lost
		 * one goes again after the reconnect, resend_all). A timeout
		 * there means a slow server, not a lost line (TCP lost
		 * nothing): counted, not sent again, which under load would
		 * only add duplicates. A refusal: sent again, a few times. */
		b->failed++;
		if (pae->Err == NATS_TIMEOUT || e->attempt >= BUS_SEND_TRIES) {
			e->acked = 1;
			if (e == b->fl_head)
				pthread_cond_signal(&b->wake);
		} else {
			b->resend = 1;
			pthread_cond_signal(&b->wake);
		}
	}
out:
	pthread_mutex_unlock(&b->lock);
	natsMsg_Destroy(msg);
}

/* The "seq" of an event line (our own emitter writes it near the start),
 * or -1. */
static long long line_seq(const char *line, size_t len)
{
	static const char key[] = "\"seq\":";
	const char *p = memmem(line, len < 256 ? len : 256, key, sizeof key - 1);
	long long v = 0;
	int digits = 0;

	if (!p)
		return -1;
	for (p += sizeof key - 1; p < line + len && *p >= '0' && *p <= '9' && digits < 18; p++) {
		v = v * 10 + (*p - '0');
		digits++;
	}
	return digits ? v : -1;
}

/* lock held: a line of run_id that did not fit the queue: the run is
 * marked in its next index entries (stream_incomplete), so a reader is told
 * why the stream lacks it, never left with a silent hole. */
static void note_dropped(struct bus *b, const char *run_id, long long seq)
{
	int i;

	for (i = 0; i < b->n_dropped_runs; i++)
		if (!strcmp(b->dropped_runs[i].id, run_id))
			break;
	if (i == b->n_dropped_runs) {
		if (b->n_dropped_runs == BUS_DROPPED_RUNS)
			i = 0; /* a cache: the first goes (readers still see the gap) */
		else
			b->n_dropped_runs++;
		snprintf(b->dropped_runs[i].id, sizeof b->dropped_runs[i].id, "%s", run_id);
		b->dropped_runs[i].first_seq = seq;
		b->dropped_runs[i].count = 0;
	}
	if (seq >= 0 && (b->dropped_runs[i].first_seq < 0 || seq < b->dropped_runs[i].first_seq))
		b->dropped_runs[i].first_seq = seq;
	b->dropped_runs[i].count++;
}

static void enqueue(struct bus *b, enum bus_kind kind, const char *run_id, const char *data,
		    size_t len)
{
	struct bus_msg *m;
	size_t limit;

	if (!b)
		return;
	/* Index entries, purges and file jobs have a reserve of their own: a
	 * queue full of lines never loses the entry that says so. */
	limit = kind == BUS_K_LINE ? BUS_QUEUE_BYTES : BUS_QUEUE_BYTES + BUS_QUEUE_RESERVE;
	pthread_mutex_lock(&b->lock);
	if (b->stop || b->q_bytes + len > limit || len > (size_t)0x7fffffff) {
		b->dropped++;
		if (kind == BUS_K_LINE && !b->stop)
			note_dropped(b, run_id, line_seq(data, len));
		pthread_mutex_unlock(&b->lock);
		return;
	}
	pthread_mutex_unlock(&b->lock);
	m = malloc(sizeof *m + len);
	if (!m) {
		pthread_mutex_lock(&b->lock);
		b->dropped++;
		if (kind == BUS_K_LINE)
			note_dropped(b, run_id, line_seq(data, len));
		pthread_mutex_unlock(&b->lock);
		return;
	}
	m->next = NULL;
	m->kind = kind;
	m->len = (int)len;
	m->acked = m->attempt = 0;
	m->gen = 0;
	m->msgid[0] = '\0';
	if (kind == BUS_K_LINE) {
		long long seq = line_seq(data, len);
		snprintf(m->subject, sizeof m->subject, "%s%s", BUS_SUBJECT_PREFIX, run_id);
		if (seq >= 0)
			snprintf(m->msgid, sizeof m->msgid, "%s:%lld", run_id, seq);
	} else {
		snprintf(m->subject, sizeof m->subject, "%s", run_id);
	}
	memcpy(m->data, data, len);
	pthread_mutex_lock(&b->lock);
	if (kind == BUS_K_LINE && !m->msgid[0])
		snprintf(m->msgid, sizeof m->msgid, "%s:n%ld", run_id, b->published + b->q_len);
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

void bus_run_files(struct bus *b, const char *id)
{
	enqueue(b, BUS_K_FILES, id, "", 0);
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
	si = NULL;
	if (s == NATS_OK) {
		/* The run files' stream: the same limit, chunks published twice
		 * within the default duplicate window (2 min) stored once. */
		static const char *fsubjects[] = {BUS_FILES_PREFIX ">"};
		sc.Name = BUS_FILES_STREAM;
		sc.Subjects = fsubjects;
		s = js_AddStream(&si, b->js, &sc, NULL, &jerr);
		if (s != NATS_OK && jerr == JSStreamNameExistErr) {
			jerr = 0;
			s = js_UpdateStream(&si, b->js, &sc, NULL, &jerr);
			if (s != NATS_OK)
				s = NATS_OK;
		}
		jsStreamInfo_Destroy(si);
	}
	if (s == NATS_OK)
		s = bus_ensure_buckets(b, &jerr);
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

/* The publisher thread: send line m (again, when m->attempt > 1), with
 * its Nats-Msg-Id: JetStream stores a line sent twice within the stream's
 * duplicate window (2 minutes) once. */
static natsStatus send_line(struct bus *b, struct bus_msg *m, jsPubOptions *po)
{
	natsMsg *msg = NULL;
	char attempt[16];
	jsPubOptions o = *po;
	natsStatus s;

	snprintf(attempt, sizeof attempt, "%d", m->attempt);
	o.MsgId = m->msgid;
	s = natsMsg_Create(&msg, m->subject, NULL, m->data, m->len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, HDR_TRY, attempt);
	if (s == NATS_OK)
		s = js_PublishMsgAsync(b->js, &msg, &o);
	natsMsg_Destroy(msg); /* NULL once libnats has taken it */
	return s;
}

/* The publisher thread: run m->subject's index entry with
 * "stream_incomplete" when lines of it were dropped (a new string), or
 * NULL. */
static char *mark_dropped(struct bus *b, struct bus_msg *m)
{
	long long first = -1, count = 0;
	json_t *meta;
	char *text = NULL, why[200];
	int i;

	pthread_mutex_lock(&b->lock);
	for (i = 0; i < b->n_dropped_runs; i++)
		if (!strcmp(b->dropped_runs[i].id, m->subject)) {
			first = b->dropped_runs[i].first_seq;
			count = b->dropped_runs[i].count;
		}
	pthread_mutex_unlock(&b->lock);
	if (!count)
		return NULL;
	meta = json_loadb(m->data, (size_t)m->len, 0, NULL);
	if (!json_is_object(meta)) {
		json_decref(meta);
		return NULL;
	}
	snprintf(why, sizeof why,
		 "the replica that ran it dropped %lld events from seq %lld: its queue for NATS "
		 "(%u MiB) was full",
		 count, first, BUS_QUEUE_BYTES >> 20);
	json_object_set_new(meta, "stream_incomplete",
			    json_pack("{s:I, s:I, s:s}", "dropped", (json_int_t)count, "first_seq",
				      (json_int_t)first, "reason", why));
	text = json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(meta);
	return text;
}

/* The publisher thread: one queued message to NATS. NATS_OK once it is
 * taken (a line) or done (an index entry, a purge). */
static natsStatus publish_one(struct bus *b, struct bus_msg *m, jsPubOptions *po)
{
	char subject[sizeof m->subject + sizeof BUS_FILES_PREFIX + 4];
	jsOptions o;
	jsErrCode jerr = 0;
	natsStatus s = NATS_OK;

	switch (m->kind) {
	case BUS_K_LINE:
		return send_line(b, m, po);
	case BUS_K_META: {
		/* After the lines queued before it: the index never says a run
		 * ended before its run.end is on its way to the stream. */
		char *marked = mark_dropped(b, m);
		s = marked ? kvStore_Put(NULL, b->kv_index, m->subject, marked, (int)strlen(marked))
			   : kvStore_Put(NULL, b->kv_index, m->subject, m->data, m->len);
		free(marked);
		break;
	}
	case BUS_K_FILES:
		s = bus_publish_files(b, m);
		break;
	case BUS_K_PURGE:
		snprintf(subject, sizeof subject, "%s%s", BUS_SUBJECT_PREFIX, m->subject);
		jsOptions_Init(&o);
		o.Stream.Purge.Subject = subject;
		s = js_PurgeStream(b->js, BUS_STREAM, &o, &jerr);
		if (s == NATS_OK || s == NATS_NOT_FOUND) {
			/* Its files too: every subject under the run's. */
			snprintf(subject, sizeof subject, "%s%s.>", BUS_FILES_PREFIX, m->subject);
			jsOptions_Init(&o);
			o.Stream.Purge.Subject = subject;
			s = js_PurgeStream(b->js, BUS_FILES_STREAM, &o, &jerr);
		}
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

/* Lock held: does run id have lines in flight? */
static int inflight_of(struct bus *b, const char *id)
{
	size_t n = strlen(BUS_SUBJECT_PREFIX);
	struct bus_msg *e;

	for (e = b->fl_head; e; e = e->next)
		if (!e->acked && !strcmp(e->subject + n, id))
			return 1;
	return 0;
}

/* The publisher thread, lock held: free the acknowledged lines at the head
 * of the in-flight list. */
static void pop_acked(struct bus *b)
{
	while (b->fl_head && b->fl_head->acked) {
		struct bus_msg *e = b->fl_head;
		b->fl_head = e->next;
		if (!b->fl_head)
			b->fl_tail = NULL;
		b->fl_len--;
		b->q_bytes -= (size_t)e->len;
		free(e);
	}
}

/* The publisher thread, lock held: send every unacknowledged line again,
 * oldest first (after a reconnect, or an acknowledgement that failed).
 * Only this thread changes the list, so it is walked with the lock
 * released around each send. 0 when all went, -1 when the connection went
 * away meanwhile (tried again once it is back). */
static int resend_all(struct bus *b, jsPubOptions *po)
{
	unsigned gen = b->conn_gen;
	struct bus_msg *e;

	b->resend = 0;
	for (e = b->fl_head; e; e = e->next) {
		natsStatus s;
		if (e->acked)
			continue;
		e->attempt++;
		e->gen = gen;
		pthread_mutex_unlock(&b->lock);
		s = send_line(b, e, po);
		pthread_mutex_lock(&b->lock);
		if (s != NATS_OK) {
			b->resend = 1;
			return -1;
		}
		b->resent++;
	}
	b->pub_gen = gen;
	return 0;
}

void *bus_publisher(void *arg)
{
	struct bus *b = arg;
	jsPubOptions po;
	natsStatus s;

	jsPubOptions_Init(&po);
	po.MaxWait = BUS_ACK_WAIT_MS;
	pthread_mutex_lock(&b->lock);
	while (!b->stop) {
		struct bus_msg *m;
		pop_acked(b);
		m = b->head;
		if (!m && !(b->fl_head && b->resend)) {
			if (b->draining)
				break;
			/* Timed: a reconnect with lines in flight is noticed. */
			bus_wait_ms(b, BUS_RETRY_MS);
			if (!b->head && !(b->fl_head && b->pub_gen != b->conn_gen))
				continue;
			m = b->head;
		}
		if (b->state != BUS_CONNECTED) {
			bus_wait_ms(b, BUS_RETRY_MS);
			continue;
		}
		if (!b->stream_ready) {
			int ok;
			pthread_mutex_unlock(&b->lock);
			ok = ensure_stream(b) == 0;
			pthread_mutex_lock(&b->lock);
			b->stream_ready = ok;
			if (!ok)
				bus_wait_ms(b, BUS_RETRY_MS);
			continue;
		}
		/* Lines in flight when the connection was lost, or whose
		 * acknowledgement failed, go again before anything newer. */
		if (b->fl_head && (b->resend || b->pub_gen != b->conn_gen)) {
			if (resend_all(b, &po) < 0)
				bus_wait_ms(b, BUS_RETRY_MS);
			continue;
		}
		b->pub_gen = b->conn_gen;
		if (!m)
			continue;
		if (m->kind == BUS_K_LINE && b->fl_len >= BUS_INFLIGHT_MAX) {
			/* As many wait for their acknowledgement as are kept:
			 * the queue holds the rest. */
			bus_wait_ms(b, 50);
			continue;
		}
		/* In queue order: the head leaves the queue only once libnats
		 * has taken it, so nothing is reordered by a retry. */
		if (m->kind == BUS_K_LINE) {
			m->attempt = 1;
			m->gen = b->conn_gen;
		}
		if (m->kind == BUS_K_PURGE && inflight_of(b, m->subject)) {
			/* Its lines first: one sent again after the purge
			 * would bring the run back to the stream. */
			bus_wait_ms(b, 50);
			continue;
		}
		pthread_mutex_unlock(&b->lock);
		s = publish_one(b, m, &po);
		pthread_mutex_lock(&b->lock);
		if (s == NATS_OK) {
			b->head = m->next;
			if (!b->head)
				b->tail = NULL;
			b->q_len--;
			if (m->kind == BUS_K_LINE) {
				/* Kept until acknowledged. */
				b->published++;
				m->next = NULL;
				if (b->fl_tail)
					b->fl_tail->next = m;
				else
					b->fl_head = m;
				b->fl_tail = m;
				b->fl_len++;
			} else {
				if (m->kind == BUS_K_PURGE) {
					int i;
					b->purged++;
					for (i = 0; i < b->n_dropped_runs; i++)
						if (!strcmp(b->dropped_runs[i].id, m->subject))
							b->dropped_runs[i] =
								b->dropped_runs[--b->n_dropped_runs];
				}
				b->q_bytes -= (size_t)m->len;
				free(m);
			}
		} else if (s != NATS_TIMEOUT) {
			/* Not connected after all, or closed: look again soon. */
			bus_wait_ms(b, BUS_RETRY_MS);
		}
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

void bus_free_queue(struct bus *b)
{
	while (b->head) {
		struct bus_msg *m = b->head;
		b->head = m->next;
		free(m);
	}
	while (b->fl_head) {
		struct bus_msg *m = b->fl_head;
		b->fl_head = m->next;
		free(m);
	}
	b->fl_tail = NULL;
	b->fl_len = 0;
	b->tail = NULL;
	b->q_bytes = 0;
	b->q_len = 0;
}
