/* bus_index.c: --nats: the run index (key-value SOCKLAB_RUN_INDEX) and replica heartbeats (SOCKLAB_REPLICAS), followed into memory by the reader thread; other replicas' runs as listed and served. */
#include "bus_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One bucket: bound when it exists, created when it is missing. */
natsStatus bus_kv_bucket(struct bus *b, kvStore **kv, const char *name, int64_t ttl_ms,
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
natsStatus bus_ensure_buckets(struct bus *b, jsErrCode *jerr)
{
	natsStatus s;

	pthread_mutex_lock(&b->setup_lock);
	/* An index entry is one meta (a few hundred bytes): a tenth of the
	 * stream's limit holds far more than --keep-runs on every replica. */
	s = bus_kv_bucket(b, &b->kv_index, BUS_INDEX, 0, b->cfg->nats_max_bytes / 10);
	if (s == NATS_OK)
		s = bus_kv_bucket(b, &b->kv_replicas, BUS_REPLICAS, BUS_REPLICA_TTL_MS, 1 << 20);
	pthread_mutex_unlock(&b->setup_lock);
	if (s != NATS_OK && jerr)
		*jerr = 0;
	return s;
}

/* rlock held: is replica id known to have stopped heartbeating? Unknown
 * replicas are not: nothing is claimed without evidence. */
int bus_replica_gone(struct bus *b, const char *id)
{
	int i;

	for (i = 0; i < b->n_reps; i++)
		if (!strcmp(b->reps[i].id, id))
			return b->reps[i].gone;
	return 0;
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

void *bus_reader(void *arg)
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
			ready = bus_ensure_buckets(b, NULL) == NATS_OK;
		if (connected && ready) {
			int64_t now = bus_mono_us();
			if (now - beat >= (int64_t)BUS_HEARTBEAT_MS * 1000) {
				char v[64];
				int n = snprintf(v, sizeof v, "{\"replica\":\"%s\"}", b->replica);
				if (kvStore_Put(NULL, b->kv_replicas, b->replica, v, n) == NATS_OK)
					beat = now;
			}
			/* A new connection: read the whole index again (what
			 * changed while NATS was away). */
			if (w && g != gen) {
				bus_retire_watcher(b, w);
				w = NULL;
			}
			bus_reap_watchers(b, 0);
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
		bus_tend_mirrors(b, connected && ready);
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
				bus_wait_ms_on(&b->rwake, &b->rlock, 200);
			pthread_mutex_unlock(&b->rlock);
		}
	}
	kvWatcher_Destroy(w);
	json_decref(pending);
	return NULL;
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
	if (st && !strcmp(st, "running") && rep && bus_replica_gone(b, rep)) {
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
