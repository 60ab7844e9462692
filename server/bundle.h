/* bundle.h: the run bundle store: DATA/runs/ID/{meta.json,events.jsonl,...} on disk. */
#ifndef SOCKLAB_BUNDLE_H
#define SOCKLAB_BUNDLE_H

#include <stddef.h>

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

/* Append line and a newline with one writev, finishing partial writes.
 * 0 or -errno. */
int bundle_append_line(int fd, const char *line, size_t len);

/* The run.end status s as one of our static strings ("ok", "error",
 * "cancelled", "timeout"), or NULL if unknown. */
const char *bundle_end_status(const char *s);

/* Keep at most keep bundles so a busy classroom cannot fill the disk: remove
 * the oldest (by the time their bundle last changed), skipping those for which
 * in_use (may be NULL) returns nonzero. The scan is one directory of at most a
 * few thousand entries. */
void bundle_prune(const char *data, int keep, int (*in_use)(void *arg, const char *id),
		  void *arg);

#endif
