/* bus.h: --nats: every run event appended to a NATS JetStream stream as it happens (libnats), published off the lws thread. */
#ifndef SOCKLAB_BUS_H
#define SOCKLAB_BUS_H

#include <stddef.h>

#include <jansson.h>

#include "config.h"

/*
 * With --nats URL, each event line of every run (exactly the line written to
 * the run's events.jsonl) is published to the subject BUS_SUBJECT_PREFIX.ID
 * of the JetStream stream BUS_STREAM, which this server creates when it is
 * missing (file storage, at most cfg->nats_max_bytes, the oldest messages
 * discarded first). The lws thread only queues a copy (bus_publish never
 * blocks); a publisher thread of its own hands lines to libnats in queue
 * order and counts the acknowledgements. NATS being down or slow never stops
 * a run: lines wait in a bounded queue (BUS_QUEUE_BYTES) while libnats
 * reconnects, and what does not fit is dropped, counted, and its run marked
 * "stream_incomplete" in the index; /api/health says so ("nats": state,
 * published, acked, failed, dropped, queued). A line stays in flight until
 * JetStream acknowledges it and is sent again (same Nats-Msg-Id ID:SEQ, so
 * stored once) after a reconnect or a failed acknowledgement; readers put
 * lines that arrive early back in seq order.
 *
 * Reading back (any replica serves any run): each run's meta (as in its
 * meta.json, plus "replica") is put in the key-value bucket BUS_INDEX under
 * its id when the run starts and when it ends; every replica puts its own id
 * in BUS_REPLICAS every BUS_HEARTBEAT_MS, an entry that expires after
 * BUS_REPLICA_TTL_MS. A reader thread follows the index into memory (the
 * run list of other replicas' runs) and, on demand, mirrors one run of
 * another replica into DATA/remote/ID.jsonl with an ordered consumer on its
 * subject from the first message, checking seq gap-free; watch, replay and
 * GET /api/runs/ID/events then read that file as they read a bundle. A run
 * whose replica stopped heartbeating before its run.end is "incomplete":
 * what the stream holds is served, and no end is made up.
 *
 * Run files (bus_files.c): when a run has finished, every file of its
 * bundle but meta.json and events.jsonl (capture.pcap, stderr.log, uploads)
 * is published to the stream BUS_FILES_STREAM on BUS_FILES_PREFIX.ID.NAME as
 * chunks of BUS_CHUNK_BYTES with headers naming the run, the file, the
 * chunk's index, their total, the file's length and its SHA-256; then the
 * run's index entry gains "files" (name -> bytes, sha256, chunks). A replica
 * serving another's file reassembles it from the stream into
 * DATA/remote/ID.NAME and serves it only when every chunk is there and the
 * length and SHA-256 match: never a truncated file.
 *
 * Classes and the admission queue across replicas: bus_class.h.
 */

#define BUS_STREAM "SOCKLAB_RUNS"
#define BUS_SUBJECT_PREFIX "socklab.runs."
/* Bytes of lines waiting for the publisher thread at most. */
#define BUS_QUEUE_BYTES (16u * 1024 * 1024)
/* The run index and the replicas' heartbeats (key-value buckets). */
#define BUS_INDEX "SOCKLAB_RUN_INDEX"
#define BUS_REPLICAS "SOCKLAB_REPLICAS"
#define BUS_HEARTBEAT_MS 2000
#define BUS_REPLICA_TTL_MS 10000
/* Runs of other replicas in the index held in memory at most. */
#define BUS_INDEX_MAX 100000
/* Runs of other replicas mirrored at once (ended ones are evicted, oldest
 * first, to make room). */
#define BUS_MIRRORS_MAX 64
/* HTTP requests one mirror keeps waiting for its catch-up at most, and how
 * long they wait before they are answered 504. */
#define BUS_WAITERS_MAX 32
#define BUS_FETCH_WAIT_MS 10000

/* Run files: the stream, its subjects, the chunk size, the largest file
 * shared (a capture is at most 64 MiB already), the most files of one run
 * shared, and the files reassembled here at once (DATA/remote, least
 * recently used out first). */
#define BUS_FILES_STREAM "SOCKLAB_RUN_FILES"
#define BUS_FILES_PREFIX "socklab.files."
#define BUS_CHUNK_BYTES (128 * 1024)
#define BUS_FILE_MAX (64LL * 1024 * 1024)
#define BUS_RUN_FILES_MAX 16
#define BUS_FILE_SLOTS 16
/* How long an HTTP request waits for a file to be reassembled, and how long
 * the reader waits for the next chunk before it gives up. */
#define BUS_FILE_WAIT_MS 30000
#define BUS_CHUNK_WAIT_MS 5000

/* A mirrored run, as far as the stream tells. */
enum bus_mirror_state {
	BUS_M_FETCHING,   /* reading what the stream holds */
	BUS_M_LIVE,       /* caught up; more may come */
	BUS_M_ENDED,      /* its run.end is in the file */
	BUS_M_INCOMPLETE, /* caught up, no run.end, and its replica is gone */
	BUS_M_FAILED,     /* a gap, a bad line or a limit: why says which */
};

struct bus;

/* Start connecting to cfg->nats_url (in the background: a NATS server that
 * is down now is retried for ever) and start the publisher thread. cfg must
 * outlive the bus. 0 or -errno with err (a malformed URL, no memory). */
int bus_start(struct bus **out, const struct serve_config *cfg, char *err, size_t errlen);

/* Queue one event line of run id (no newline) for the stream; any thread,
 * never blocks. NULL b: nothing. */
void bus_publish(struct bus *b, const char *run_id, const char *line, size_t len);

/* {"url","state","replica","published","acked","failed","dropped","queued",
 * "replicas":{"state","index_runs","mirrors","reason"}}: a new
 * reference. state is "connected", "connecting" (never connected yet),
 * "reconnecting", "no_stream" (connected, but the stream cannot be created:
 * is JetStream enabled?) or "closed". */
json_t *bus_health(struct bus *b);

/* This server's replica id (16 hex digits, new at every start). */
const char *bus_replica(const struct bus *b);

/* The bundle store's listener (lws thread; never blocks): run id's meta
 * changed (queued for the index, in order with its lines), or its bundle
 * was removed (its subject is purged from the stream and its index entry
 * removed: the stream's retention follows --keep-runs and --max-data). */
void bus_meta_put(void *b, const char *id, const json_t *meta);
void bus_run_removed(void *b, const char *id);

/* Wake fn(arg) (any thread) when a mirror has news, for the lws thread. */
void bus_set_wake(struct bus *b, void (*fn)(void *), void *arg);
/* ... and bus_set_wake(b, NULL, NULL) before what fn wakes is freed: no
 * call is under way once it returns. NULL b is fine. */

/* Another replica's run id: a copy of its meta from the index with
 * "replica" and "remote": true, and "status": "incomplete" (with
 * "incomplete_reason") when its replica stopped before its run ended; NULL
 * when the index does not know it. Any thread. */
json_t *bus_run_meta(struct bus *b, const char *id);

/* Other replicas' runs from the index: at most max, newest first. */
json_t *bus_run_list(struct bus *b, size_t max);

/* Mirror another replica's run id into a file and put its path in path.
 * 0; -ENOENT when the index does not know the run; -ENOSPC when
 * BUS_MIRRORS_MAX runs are being followed (err says so). Any thread; the
 * stream is read by the reader thread. */
int bus_mirror_open(struct bus *b, const char *id, char *path, size_t pathlen, char *err,
		    size_t errlen);

/* The state of id's mirror (BUS_M_FAILED with why when there is none);
 * *events: lines in its file. why may be NULL. */
enum bus_mirror_state bus_mirror_state(struct bus *b, const char *id, long long *events,
				       char *why, size_t whylen);

/* Call resume(arg) once id's mirror has caught up (or BUS_FETCH_WAIT_MS
 * passed). 1: it already has (resume is not called); 0: registered;
 * -ENOSPC: BUS_WAITERS_MAX wait already. */
int bus_mirror_wait(struct bus *b, const char *id, void (*resume)(void *), void *arg);

/* Call every waiting resume now (before the HTTP server stops). */
void bus_release_waiters(struct bus *b);

/* The lws thread (the run manager's finished hook): run id has finished
 * and its files are complete: publish them (queued after its last index
 * entry; never blocks). NULL b: nothing. */
void bus_run_files(struct bus *b, const char *id);

/* Another replica's run file name (manifest: the "files" entry of the run's
 * index meta for it, or NULL when there is none). 0 with the path of the
 * reassembled copy in path; -EINPROGRESS while it is being read (then
 * bus_file_wait); -ENOENT: not in the manifest or not shared (err says
 * why); -EPROTO: the stream lacks a chunk or the file does not match its
 * length or SHA-256 (err names what); -ENOSPC: BUS_FILE_SLOTS files are
 * being read. Any thread. */
int bus_file_open(struct bus *b, const char *id, const char *name, const json_t *manifest,
		  char *path, size_t pathlen, char *err, size_t errlen);

/* Call resume(arg) once id's file name is read (or failed), or after
 * BUS_FILE_WAIT_MS. 1: it is not being read (resume is not called); 0:
 * registered; -ENOSPC: BUS_WAITERS_MAX wait already. */
int bus_file_wait(struct bus *b, const char *id, const char *name, void (*resume)(void *),
		  void *arg);

/* The main thread, before stopping the bus and what uses its connection:
 * when NATS is not reachable now, close the connection, so that stopping
 * key-value watchers and JetStream subscriptions afterwards does not wait
 * for an answer to each consumer delete (5 s each: a replica told to stop
 * while NATS was down took 17 to 20 s). Lines still queued then stay
 * unpublished, as they would have. NULL is fine. */
void bus_quiesce(struct bus *b);

/* Publish what is queued (waiting at most 2 s for it and its
 * acknowledgements), stop the thread, close the connection, free b. NULL is
 * fine. */
void bus_stop(struct bus *b);

#endif
