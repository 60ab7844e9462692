/* bus.c: --nats: the connection to NATS, starting and stopping the bus's threads, and its health; the publisher is in bus_pub.c, the run index and heartbeats in bus_index.c, copies of other replicas' runs in bus_mirror.c. */
#include "bus_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const state_names[] = {
	[BUS_CONNECTING] = "connecting",
	[BUS_CONNECTED] = "connected",
	[BUS_RECONNECTING] = "reconnecting",
	[BUS_CLOSED] = "closed",
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

const char *bus_replica(const struct bus *b)
{
	return b->replica;
}

void bus_wait_ms_on(pthread_cond_t *c, pthread_mutex_t *l, int ms)
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

void bus_wait_ms(struct bus *b, int ms)
{
	bus_wait_ms_on(&b->wake, &b->lock, ms);
}

int64_t bus_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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
	pthread_mutex_init(&b->flock, NULL);
	pthread_mutex_init(&b->retire_lock, NULL);
	pthread_cond_init(&b->fwake, NULL);
	b->index = json_object();
	if (!b->index || ev_random_id(b->replica) < 0) {
		snprintf(err, errlen, "--nats: cannot make a replica id");
		bus_stop(b);
		return -EIO;
	}
	if (bus_remote_dir_open(b, err, errlen) < 0) {
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
	jo.PublishAsync.AckHandler = bus_on_ack;
	jo.PublishAsync.AckHandlerClosure = b;
	s = natsConnection_JetStream(&b->js, b->nc, &jo);
	if (s != NATS_OK) {
		snprintf(err, errlen, "--nats: cannot use JetStream: %s", natsStatus_GetText(s));
		bus_stop(b);
		return -EIO;
	}
	if (pthread_create(&b->thread, NULL, bus_publisher, b) != 0) {
		snprintf(err, errlen, "cannot start the NATS publisher thread");
		bus_stop(b);
		return -EAGAIN;
	}
	b->started = 1;
	if (pthread_create(&b->reader, NULL, bus_reader, b) != 0) {
		snprintf(err, errlen, "cannot start the NATS reader thread");
		bus_stop(b);
		return -EAGAIN;
	}
	b->reader_started = 1;
	if (pthread_create(&b->fetcher, NULL, bus_fetcher, b) != 0) {
		snprintf(err, errlen, "cannot start the NATS file reader thread");
		bus_stop(b);
		return -EAGAIN;
	}
	b->fetcher_started = 1;
	*out = b;
	return 0;
}

json_t *bus_health(struct bus *b)
{
	json_t *o, *files = NULL;
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
		json_object_set_new(o, "in_flight", json_integer(b->fl_len));
		json_object_set_new(o, "resent", json_integer(b->resent));
		files = json_pack("{s:s, s:I, s:I, s:I}", "stream", BUS_FILES_STREAM, "published",
				  (json_int_t)b->files_published, "chunks",
				  (json_int_t)b->chunks_published, "failed",
				  (json_int_t)b->files_failed);
	}
	pthread_mutex_unlock(&b->lock);
	if (!o)
		return NULL;
	pthread_mutex_lock(&b->flock);
	if (files) {
		json_object_set_new(files, "fetched", json_integer(b->files_fetched));
		json_object_set_new(files, "bad", json_integer(b->files_bad));
		json_object_set_new(o, "files", files);
	}
	pthread_mutex_unlock(&b->flock);
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

void bus_retire_watcher(struct bus *b, kvWatcher *w)
{
	kvWatcher *old = NULL;
	int i, oldest = 0;

	if (!w)
		return;
	pthread_mutex_lock(&b->retire_lock);
	for (i = 0; i < BUS_RETIRED_MAX && b->retired[i].w; i++)
		if (b->retired[i].at < b->retired[oldest].at)
			oldest = i;
	if (i == BUS_RETIRED_MAX) {
		/* Full (reconnections in quick succession): the oldest goes
		 * now, its reset long over. */
		old = b->retired[oldest].w;
		i = oldest;
	}
	b->retired[i].w = w;
	b->retired[i].at = bus_mono_us();
	pthread_mutex_unlock(&b->retire_lock);
	kvWatcher_Destroy(old);
}

void bus_reap_watchers(struct bus *b, int all)
{
	kvWatcher *due[BUS_RETIRED_MAX];
	int64_t now = bus_mono_us();
	int i, n = 0;

	pthread_mutex_lock(&b->retire_lock);
	for (i = 0; i < BUS_RETIRED_MAX; i++) {
		if (b->retired[i].w && (all || now - b->retired[i].at >= BUS_RETIRE_US)) {
			due[n++] = b->retired[i].w;
			b->retired[i].w = NULL;
		}
	}
	pthread_mutex_unlock(&b->retire_lock);
	for (i = 0; i < n; i++)
		kvWatcher_Destroy(due[i]);
}

void bus_quiesce(struct bus *b)
{
	int away;

	if (!b || !b->nc)
		return;
	pthread_mutex_lock(&b->lock);
	away = b->state != BUS_CONNECTED;
	pthread_mutex_unlock(&b->lock);
	if (away)
		natsConnection_Close(b->nc);
}

void bus_stop(struct bus *b)
{
	struct timespec end;
	jsPubOptions po;
	int i;

	if (!b)
		return;
	if (b->fetcher_started) {
		pthread_mutex_lock(&b->flock);
		b->fstop = 1;
		pthread_cond_signal(&b->fwake);
		pthread_mutex_unlock(&b->flock);
		pthread_join(b->fetcher, NULL);
	}
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
			bus_wait_ms(b, 50);
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
	bus_reap_watchers(b, 1);
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
	bus_free_queue(b);
	for (i = 0; i < BUS_MIRRORS_MAX; i++) {
		if (b->mirrors[i].fd > 0)
			close(b->mirrors[i].fd);
		bus_mirror_drop_held(&b->mirrors[i]);
	}
	json_decref(b->index);
	pthread_mutex_destroy(&b->retire_lock);
	pthread_cond_destroy(&b->fwake);
	pthread_mutex_destroy(&b->flock);
	pthread_cond_destroy(&b->rwake);
	pthread_mutex_destroy(&b->rlock);
	pthread_mutex_destroy(&b->setup_lock);
	pthread_cond_destroy(&b->wake);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
