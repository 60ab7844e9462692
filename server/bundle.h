/* bundle.h: the run bundle store: DATA/runs/ID/{meta.json,events.jsonl,...} on disk. */
#ifndef SOCKLAB_BUNDLE_H
#define SOCKLAB_BUNDLE_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

/*
 * A bundle is one run's directory, DATA/runs/ID (mode 0700), holding
 * meta.json (written atomically: a temporary file renamed over it),
 * events.jsonl (one event per line, appended), stderr.log and, for labs that
 * capture, capture.pcap. Functions here are thread-agnostic unless they say
 * otherwise.
 */

/* DATA/runs/ID/FILE (file may be NULL for the directory). 0, or -ENAMETOOLONG. */
int runs_bundle_path(const char *data, const char *id, const char *file, char *out,
		     size_t outlen);

/* Create DATA and DATA/runs (mode 0700) and mark the bundles of runs a
 * crashed server left "running" as "error", closing their event streams with
 * an error and a run.end. Returns the number of bundles repaired, or -errno. */
int runs_recover(const char *data, char *err, size_t errlen);

/* Read a regular file of at most max bytes into a new NUL-terminated buffer
 * (the caller frees it), or NULL when it is missing, larger or unreadable.
 * Thread-agnostic: the HTTP thread uses it for meta.json too. */
char *runs_read_small(const char *path, size_t max);

/* Write len bytes of buf to path atomically (mode 0600). 0 or -errno. */
int bundle_write_file(const char *path, const char *buf, size_t len);

/* Write j, indented, to path atomically. 0 or -errno. */
int bundle_write_json(const char *path, const json_t *j);

/* Append line and a newline to fd (opened O_APPEND) with one writev,
 * finishing partial writes. *size is the file's length before (NULL: ask
 * the file) and is advanced on success. On a failed or short write (ENOSPC)
 * the file is cut back to *size: it only ever holds whole lines. 0 or
 * -errno. */
int bundle_append_line(int fd, off_t *size, const char *line, size_t len);

/* The run.end status s as one of our static strings ("ok", "error",
 * "cancelled", "timeout", "truncated"), or NULL if unknown. */
const char *bundle_end_status(const char *s);

/* Space the files of bundle directory dir take on disk (bytes). */
long long bundle_measure(const char *dir);

/* ---- the store: every bundle, indexed in memory ---- */

/* Largest meta.json read. */
#define BUNDLE_META_MAX (256 * 1024)
/* The default total (--max-data) is a quarter of the data directory's
 * filesystem, and at least this. */
#define BUNDLE_MIN_TOTAL (64LL * 1024 * 1024)
/* The default per-run limit (--max-run-data): the total shared by twice
 * --max-runs, between these two. */
#define BUNDLE_RUN_DEFAULT_MAX (256LL * 1024 * 1024)
#define BUNDLE_RUN_MIN (1LL * 1024 * 1024)

/*
 * The index is built once at start-up (one read of every meta.json) and
 * then follows the runs: GET /api/runs and /api/runs/ID are answered from
 * memory, and a reader is given the meta the run manager recorded
 * last even when the disk refused it (then it is written again later). The
 * store also keeps the bundles within --keep-runs and --max-data bytes,
 * oldest first, never removing the bundle of a run that is still going.
 *
 * Threads: put, retry, make_room and prune are called by the lws thread only (they
 * write and remove files); get, list and stats by any thread. Every field
 * is guarded by the store's lock.
 */
struct bundle_store;

struct bundle_stats {
	long long bundles;       /* bundles indexed */
	long long bytes;         /* their space, counting each running run's limit */
	long long max_bytes;     /* --max-data */
	long long pruned;        /* bundles removed since start-up */
	long long save_failures; /* meta.json writes that failed */
	long long unsaved;       /* bundles whose meta.json on disk is out of date now */
};

/* Index DATA/runs (which must exist: runs_recover makes it). max_bytes is
 * the total limit, keep the most bundles kept. 0 or -errno with err. */
int bundle_store_open(struct bundle_store **out, const char *data, long long max_bytes, int keep,
		      char *err, size_t errlen);

/* Free the index (the files stay). NULL is fine. */
void bundle_store_close(struct bundle_store *s);

/* Record meta (copied) as run id's and write its meta.json. live: the run
 * is still going; it then holds reserve bytes of the total and is never
 * pruned. When it has ended (live 0), the bundle's real size is measured.
 * When the disk is full, the oldest ended bundle is removed to make room
 * and the write tried once more. Returns 0, or -errno when meta.json could
 * not be written: the index has meta all the same, and later puts write it
 * again once there is room. */
int bundle_store_put(struct bundle_store *s, const char *id, const json_t *meta, int live,
		     long long reserve);

/* Write again the meta.json of up to 8 bundles whose last write failed (the
 * disk may have room again). Returns how many are still out of date. */
int bundle_store_retry(struct bundle_store *s);

/* The disk is full: remove the oldest bundle whose run has ended, whatever
 * the limits, other than except (the bundle being written; may be NULL).
 * 0, or -ENOENT when there is none. */
int bundle_store_make_room(struct bundle_store *s, const char *except);

/* A copy of id's meta (the caller owns it), or NULL when there is none. */
json_t *bundle_store_get(struct bundle_store *s, const char *id);

/* At most max metas, newest "created" first, as a new array. */
json_t *bundle_store_list(struct bundle_store *s, size_t max);

/* Remove the oldest ended bundles until at most keep remain and their
 * space plus room fits max_bytes. 0, or -ENOSPC when runs still going hold
 * too much for that. */
int bundle_store_prune(struct bundle_store *s, long long room);

void bundle_store_stats(struct bundle_store *s, struct bundle_stats *st);

/* Tell arg of every meta put (put(arg, id, meta)) and every bundle removed
 * (removed(arg, id)) from now on; called on the thread that puts or
 * removes, with the store's lock held (they must not call the store). Set
 * once, before the lws thread puts anything (--nats: bus.h). */
void bundle_store_set_listener(struct bundle_store *s,
			       void (*put)(void *arg, const char *id, const json_t *meta),
			       void (*removed)(void *arg, const char *id), void *arg);

/* Fill a limit that is 0 or less from the size of the filesystem holding
 * data (which must exist): *max_bytes a quarter of it (at least
 * BUNDLE_MIN_TOTAL), *max_run_bytes *max_bytes / (2 * max_runs) within
 * BUNDLE_RUN_MIN..BUNDLE_RUN_DEFAULT_MAX. 0 or -errno. */
int bundle_default_limits(const char *data, int max_runs, long long *max_bytes,
			  long long *max_run_bytes);

#endif
