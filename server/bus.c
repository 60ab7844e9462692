/* bus.c: --nats: run events appended to a JetStream stream (libnats) by a publisher thread, from a bounded queue the lws thread fills without blocking. */
#include "bus.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

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

struct bus_msg {
	struct bus_msg *next;
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
	/* The publisher thread's own (and bus_start/bus_stop's, before and
	 * after it runs). */
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
	pthread_t thread;
	int started;
};

static void set_state(struct bus *b, enum bus_state st)
{
	pthread_mutex_lock(&b->lock);
	b->state = st;
	/* A new connection may be to a server without the stream (a NATS
	 * restarted with an empty store): look again. */
	if (st == BUS_CONNECTED)
		b->stream_ready = 0;
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

void bus_publish(struct bus *b, const char *run_id, const char *line, size_t len)
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
	m->len = (int)len;
	snprintf(m->subject, sizeof m->subject, "%s%s", BUS_SUBJECT_PREFIX, run_id);
	memcpy(m->data, line, len);
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

static void wait_ms(struct bus *b, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&b->wake, &b->lock, &ts);
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
		s = js_PublishAsync(b->js, m->subject, m->data, m->len, &po);
		pthread_mutex_lock(&b->lock);
		if (s == NATS_OK) {
			b->head = m->next;
			if (!b->head)
				b->tail = NULL;
			b->q_bytes -= (size_t)m->len;
			b->q_len--;
			b->published++;
			free(m);
		} else if (s != NATS_TIMEOUT) {
			/* Not connected after all, or closed: look again soon. */
			wait_ms(b, BUS_RETRY_MS);
		}
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
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
	*out = b;
	return 0;
}

json_t *bus_health(struct bus *b)
{
	json_t *o;

	pthread_mutex_lock(&b->lock);
	o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "url", b->cfg->nats_url, "state",
		      b->state == BUS_CONNECTED && !b->stream_ready && b->head ? "no_stream"
										: state_names[b->state],
		      "stream", BUS_STREAM, "published", (json_int_t)b->published, "acked",
		      (json_int_t)b->acked, "failed", (json_int_t)b->failed, "dropped",
		      (json_int_t)b->dropped, "queued", (json_int_t)b->q_len);
	if (o && b->stream_error[0])
		json_object_set_new(o, "stream_error", json_string(b->stream_error));
	pthread_mutex_unlock(&b->lock);
	return o;
}

void bus_stop(struct bus *b)
{
	struct timespec end;
	jsPubOptions po;

	if (!b)
		return;
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
	jsCtx_Destroy(b->js);
	if (b->nc) {
		natsConnection_Close(b->nc);
		natsConnection_Destroy(b->nc);
	}
	natsOptions_Destroy(b->opts);
	/* libnats's own threads and memory, so nothing is left at exit. */
	nats_CloseAndWait(2000);
	free_queue(b);
	pthread_cond_destroy(&b->wake);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
