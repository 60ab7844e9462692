/* bus_pub.c: --nats: run events (and index entries, purges) queued by the lws thread without blocking and handed in order to JetStream by the publisher thread. */
#include "bus_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bus_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct bus *b = closure;

	pthread_mutex_lock(&b->lock);
	if (bus_is_chunk_subject(natsMsg_GetSubject(msg))) {
		/* A run file's chunk: bus_publish_files counts its own. */
		if (pae)
			b->chunks_failed++;
	} else if (pae) {
		b->failed++;
	} else {
		b->acked++;
	}
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
		return js_PublishAsync(b->js, m->subject, m->data, m->len, po);
	case BUS_K_META:
		/* After the lines queued before it: the index never says a run
		 * ended before its run.end is on its way to the stream. */
		s = kvStore_Put(NULL, b->kv_index, m->subject, m->data, m->len);
		break;
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

void *bus_publisher(void *arg)
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
	b->tail = NULL;
	b->q_bytes = 0;
	b->q_len = 0;
}
