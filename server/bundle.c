/* bundle.c: the run bundle store on disk: paths, atomic meta.json, events.jsonl lines, pruning, repair. */
#include "bundle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "event.h"
#include "runs.h"

/* ======================================================================
 * Files
 * ====================================================================== */

int runs_bundle_path(const char *data, const char *id, const char *file, char *out,
		     size_t outlen)
{
	int n;

	if (file)
		n = snprintf(out, outlen, "%s/runs/%s/%s", data, id, file);
	else
		n = snprintf(out, outlen, "%s/runs/%s", data, id);
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

int bundle_write_file(const char *path, const char *buf, size_t len)
{
	char tmp[PATH_MAX];
	int fd, rc;

	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = ev_write_all(fd, buf, len);
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

int bundle_write_json(const char *path, const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	int rc;

	if (!s)
		return -ENOMEM;
	rc = bundle_write_file(path, s, strlen(s));
	free(s);
	return rc;
}

int bundle_append_line(int fd, off_t *size, const char *line, size_t len)
{
	struct iovec iov[2] = {
		{.iov_base = (void *)line, .iov_len = len},
		{.iov_base = (void *)"\n", .iov_len = 1},
	};
	off_t start = size ? *size : lseek(fd, 0, SEEK_END);
	int i = 0, rc = 0;

	if (start < 0)
		return -errno;
	while (i < 2) {
		ssize_t n = writev(fd, iov + i, 2 - i);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		while (i < 2 && (size_t)n >= iov[i].iov_len) {
			n -= (ssize_t)iov[i].iov_len;
			i++;
		}
		if (i < 2) {
			iov[i].iov_base = (char *)iov[i].iov_base + n;
			iov[i].iov_len -= (size_t)n;
		}
	}
	if (rc < 0) {
		/* A short write (the disk filled up half way): cut the file
		 * back to its last complete line, so no reader ever sees the
		 * torn one and no later line is spliced onto it. Shrinking
		 * needs no space. */
		while (ftruncate(fd, start) < 0 && errno == EINTR)
			;
		return rc;
	}
	if (size)
		*size = start + (off_t)len + 1;
	return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t i, n = strlen(path);

	if (n == 0 || n >= sizeof buf)
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		buf[i] = path[i];
	}
	return 0;
}

const char *bundle_end_status(const char *s)
{
	static const char *const known[] = {"ok",      "error",     "cancelled",
					    "timeout", "truncated", NULL};
	int i;

	for (i = 0; s && known[i]; i++)
		if (!strcmp(s, known[i]))
			return known[i];
	return NULL;
}

/* ======================================================================
 * The store: an index of every bundle, kept in memory
 * ====================================================================== */

struct bundle_entry {
	char id[EV_RUN_ID_LEN + 1];
	json_t *meta;       /* the latest meta.json (our own copy), or NULL if none */
	long long bytes;    /* space its files take on disk, measured when the run ended */
	long long reserved; /* while its run goes: the most it may write */
	uint64_t age;       /* larger is newer: the order of last changes */
	int live;           /* its run has not ended: never pruned */
	int dirty;          /* meta.json on disk is older than meta (a write failed) */
};

struct bundle_store {
	char data[PATH_MAX]; /* immutable */
	long long max_bytes; /* immutable */
	int keep;            /* immutable */
	pthread_mutex_t lock;
	struct bundle_entry *v; /* guarded by lock */
	size_t n, cap;          /* guarded by lock */
	uint64_t next_age;      /* guarded by lock */
	long long total;        /* guarded by lock: sum over entries of max(bytes, reserved) */
	long long pruned;       /* guarded by lock: bundles removed since start-up */
	long long save_failures; /* guarded by lock: meta.json writes that failed */
	/* The listener (bundle_store_set_listener), set once. */
	void (*on_put)(void *arg, const char *id, const json_t *meta);
	void (*on_removed)(void *arg, const char *id);
	void *listener;
};

static long long entry_usage(const struct bundle_entry *e)
{
	return e->bytes > e->reserved ? e->bytes : e->reserved;
}

/* Remove one bundle directory and the files in it (bundles hold no subdirectories). */
static void remove_bundle(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	rmdir(dir);
}

long long bundle_measure(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	long long sum = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		/* What the disk really gives the file, and never less than its
		 * length (a sparse file still counts what it claims). */
		sum += (long long)st.st_blocks * 512 > (long long)st.st_size
			       ? (long long)st.st_blocks * 512
			       : (long long)st.st_size;
	}
	closedir(d);
	return sum;
}

/* The entry for id, or NULL. Caller holds the lock. */
static struct bundle_entry *find_locked(struct bundle_store *s, const char *id)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (!strcmp(s->v[i].id, id))
			return &s->v[i];
	return NULL;
}

/* A new entry for id (zeroed, newest). Caller holds the lock. */
static struct bundle_entry *add_locked(struct bundle_store *s, const char *id)
{
	struct bundle_entry *e;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		struct bundle_entry *grown = realloc(s->v, cap * sizeof *grown);
		if (!grown)
			return NULL;
		s->v = grown;
		s->cap = cap;
	}
	e = &s->v[s->n++];
	memset(e, 0, sizeof *e);
	memcpy(e->id, id, EV_RUN_ID_LEN + 1);
	e->age = ++s->next_age;
	return e;
}

/* Drop entry i from the index. Caller holds the lock. */
static void drop_locked(struct bundle_store *s, size_t i)
{
	if (s->on_removed)
		s->on_removed(s->listener, s->v[i].id);
	s->total -= entry_usage(&s->v[i]);
	json_decref(s->v[i].meta);
	s->v[i] = s->v[--s->n];
}

/* The index of the oldest entry that is not live and not except (may be
 * NULL), or -1. Caller holds the lock. */
static long oldest_locked(const struct bundle_store *s, const char *except)
{
	long best = -1;
	size_t i;

	for (i = 0; i < s->n; i++)
		if (!s->v[i].live && (!except || strcmp(s->v[i].id, except) != 0) &&
		    (best < 0 || s->v[i].age < s->v[best].age))
			best = (long)i;
	return best;
}

struct bundle_scan {
	char id[EV_RUN_ID_LEN + 1];
	struct timespec mtime;
};

static int older_first(const void *a, const void *b)
{
	const struct bundle_scan *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->id, y->id);
}

/* Read every bundle once, oldest (by the time it last changed) first, so
 * their ages keep that order. */
static int scan(struct bundle_store *s, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct bundle_scan *all = NULL;
	size_t n = 0, cap = 0, i;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (snprintf(dir, sizeof dir, "%s/runs", s->data) >= (int)sizeof dir) {
		snprintf(err, errlen, "data directory path too long");
		return -ENAMETOOLONG;
	}
	d = opendir(dir);
	if (!d) {
		rc = -errno;
		snprintf(err, errlen, "cannot read %.300s: %s", dir, strerror(-rc));
		return rc;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (!ev_valid_run_id(de->d_name) || fstatat(dirfd(d), de->d_name, &st, 0) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		if (n == cap) {
			struct bundle_scan *grown;
			cap = cap ? cap * 2 : 256;
			grown = realloc(all, cap * sizeof *all);
			if (!grown) {
				rc = -ENOMEM;
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			all = grown;
		}
		memcpy(all[n].id, de->d_name, EV_RUN_ID_LEN + 1);
		all[n].mtime = st.st_mtim;
		n++;
	}
	if (n > 1)
		qsort(all, n, sizeof *all, older_first);
	for (i = 0; i < n; i++) {
		struct bundle_entry *e = add_locked(s, all[i].id);
		char *text;
		if (!e) {
			rc = -ENOMEM;
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		if (runs_bundle_path(s->data, e->id, "meta.json", path, sizeof path) == 0) {
			text = runs_read_small(path, BUNDLE_META_MAX);
			e->meta = text ? json_loads(text, 0, NULL) : NULL;
			free(text);
			if (e->meta && !json_is_object(e->meta)) {
				json_decref(e->meta);
				e->meta = NULL;
			}
		}
		if (runs_bundle_path(s->data, e->id, NULL, path, sizeof path) == 0)
			e->bytes = bundle_measure(path);
		s->total += e->bytes;
	}
out:
	free(all);
	closedir(d);
	return rc;
}

int bundle_store_open(struct bundle_store **out, const char *data, long long max_bytes, int keep,
		      char *err, size_t errlen)
{
	struct bundle_store *s = calloc(1, sizeof *s);
	int rc;

	*out = NULL;
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (snprintf(s->data, sizeof s->data, "%s", data) >= (int)sizeof s->data) {
		free(s);
		snprintf(err, errlen, "data directory path too long");
		return -ENAMETOOLONG;
	}
	s->max_bytes = max_bytes;
	s->keep = keep;
	pthread_mutex_init(&s->lock, NULL);
	rc = scan(s, err, errlen);
	if (rc < 0) {
		bundle_store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void bundle_store_close(struct bundle_store *s)
{
	size_t i;

	if (!s)
		return;
	for (i = 0; i < s->n; i++)
		json_decref(s->v[i].meta);
	free(s->v);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* meta.json is padded with spaces (JSON allows them) to a multiple of this,
 * so the space for its final version is already the file's when the disk
 * fills up during the run. */
#define META_PAD 4096

/* Write meta to path: atomically (a temporary file renamed over it) when
 * the disk allows; when it is full, over the old file in place if the new
 * text fits in its padding (no block to allocate). 0 or -errno. */
static int write_meta(const char *path, const json_t *meta)
{
	char *text = json_dumps(meta, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	char *padded = NULL;
	size_t len, plen;
	struct stat st;
	int fd, rc;

	if (!text)
		return -ENOMEM;
	len = strlen(text);
	plen = (len + 1 + META_PAD - 1) / META_PAD * META_PAD;
	padded = malloc(plen);
	if (!padded) {
		free(text);
		return -ENOMEM;
	}
	memcpy(padded, text, len);
	memset(padded + len, ' ', plen - len - 1);
	padded[plen - 1] = '\n';
	rc = bundle_write_file(path, padded, plen);
	if (rc == -ENOSPC || rc == -EDQUOT) {
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0 && fstat(fd, &st) == 0 && (size_t)st.st_size >= plen &&
		    (size_t)st.st_size % META_PAD == 0) {
			/* The old file's length, spaces to the end: no block
			 * to allocate. Not atomic, but the disk is full and
			 * readers use the store's index, not this file. */
			char *whole = realloc(padded, (size_t)st.st_size);
			if (whole) {
				padded = whole;
				memset(padded + len, ' ', (size_t)st.st_size - len - 1);
				padded[st.st_size - 1] = '\n';
				if (pwrite(fd, padded, (size_t)st.st_size, 0) == st.st_size)
					rc = 0;
			}
		}
		if (fd >= 0)
			close(fd);
	}
	free(padded);
	free(text);
	return rc;
}

#define RETRY_MAX 8
int bundle_store_retry(struct bundle_store *s)
{
	char ids[RETRY_MAX][EV_RUN_ID_LEN + 1], path[PATH_MAX];
	json_t *copies[RETRY_MAX];
	size_t i, n = 0;

	pthread_mutex_lock(&s->lock);
	for (i = 0; i < s->n && n < RETRY_MAX; i++) {
		if (!s->v[i].dirty || !s->v[i].meta)
			continue;
		copies[n] = json_deep_copy(s->v[i].meta);
		if (!copies[n])
			break;
		memcpy(ids[n], s->v[i].id, EV_RUN_ID_LEN + 1);
		n++;
	}
	pthread_mutex_unlock(&s->lock);
	for (i = 0; i < n; i++) {
		struct bundle_entry *e;
		int rc = runs_bundle_path(s->data, ids[i], "meta.json", path, sizeof path);
		if (rc == 0)
			rc = write_meta(path, copies[i]);
		pthread_mutex_lock(&s->lock);
		e = find_locked(s, ids[i]);
		if (rc == 0 && e && e->meta && json_equal(e->meta, copies[i]))
			e->dirty = 0;
		pthread_mutex_unlock(&s->lock);
		json_decref(copies[i]);
	}
	pthread_mutex_lock(&s->lock);
	for (i = 0, n = 0; i < s->n; i++)
		n += s->v[i].dirty ? 1 : 0;
	pthread_mutex_unlock(&s->lock);
	return (int)n;
}

int bundle_store_make_room(struct bundle_store *s, const char *except)
{
	char path[PATH_MAX], id[EV_RUN_ID_LEN + 1];
	long i;

	pthread_mutex_lock(&s->lock);
	i = oldest_locked(s, except);
	if (i >= 0) {
		memcpy(id, s->v[i].id, sizeof id);
		drop_locked(s, (size_t)i);
		s->pruned++;
	}
	pthread_mutex_unlock(&s->lock);
	if (i < 0)
		return -ENOENT;
	if (runs_bundle_path(s->data, id, NULL, path, sizeof path) == 0)
		remove_bundle(path);
	return 0;
}

int bundle_store_put(struct bundle_store *s, const char *id, const json_t *meta, int live,
		     long long reserve)
{
	char path[PATH_MAX], dir[PATH_MAX];
	struct bundle_entry *e;
	json_t *copy = json_deep_copy(meta);
	long long bytes = 0;
	int rc;

	if (!copy)
		return -ENOMEM;
	if (!live && runs_bundle_path(s->data, id, NULL, dir, sizeof dir) == 0)
		bytes = bundle_measure(dir);
	rc = runs_bundle_path(s->data, id, "meta.json", path, sizeof path);
	if (rc == 0)
		rc = write_meta(path, meta);
	if ((rc == -ENOSPC || rc == -EDQUOT) && bundle_store_make_room(s, id) == 0) {
		/* The disk is full (of something else than bundles, or it is
		 * smaller than --max-data says): the oldest bundle makes room
		 * for this run's record. */
		rc = write_meta(path, meta);
	}
	pthread_mutex_lock(&s->lock);
	e = find_locked(s, id);
	if (!e)
		e = add_locked(s, id);
	if (!e) {
		pthread_mutex_unlock(&s->lock);
		json_decref(copy);
		return -ENOMEM;
	}
	s->total -= entry_usage(e);
	json_decref(e->meta);
	e->meta = copy;
	e->live = live;
	e->reserved = live ? reserve : 0;
	if (!live)
		e->bytes = bytes;
	e->age = ++s->next_age;
	e->dirty = rc < 0;
	if (rc < 0)
		s->save_failures++;
	s->total += entry_usage(e);
	if (s->on_put)
		s->on_put(s->listener, id, meta);
	pthread_mutex_unlock(&s->lock);
	if (rc == 0)
		bundle_store_retry(s);
	return rc;
}

void bundle_store_set_listener(struct bundle_store *s,
			       void (*put)(void *arg, const char *id, const json_t *meta),
			       void (*removed)(void *arg, const char *id), void *arg)
{
	pthread_mutex_lock(&s->lock);
	s->on_put = put;
	s->on_removed = removed;
	s->listener = arg;
	pthread_mutex_unlock(&s->lock);
}

json_t *bundle_store_get(struct bundle_store *s, const char *id)
{
	struct bundle_entry *e;
	json_t *j = NULL;

	pthread_mutex_lock(&s->lock);
	e = find_locked(s, id);
	if (e && e->meta)
		j = json_deep_copy(e->meta);
	pthread_mutex_unlock(&s->lock);
	return j;
}

static const char *str_field(const json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? v : "";
}

/* Newest "created" first; the id breaks ties so the order is stable. */
static int newest_first(const void *a, const void *b)
{
	const struct bundle_entry *x = *(const struct bundle_entry *const *)a;
	const struct bundle_entry *y = *(const struct bundle_entry *const *)b;
	int d = strcmp(str_field(y->meta, "created"), str_field(x->meta, "created"));

	return d ? d : strcmp(y->id, x->id);
}

json_t *bundle_store_list(struct bundle_store *s, size_t max)
{
	struct bundle_entry **sorted = NULL;
	json_t *out = json_array();
	size_t i, n = 0;

	if (!out)
		return NULL;
	pthread_mutex_lock(&s->lock);
	if (s->n)
		sorted = malloc(s->n * sizeof *sorted);
	for (i = 0; sorted && i < s->n; i++)
		if (s->v[i].meta)
			sorted[n++] = &s->v[i];
	if (n > 1)
		qsort(sorted, n, sizeof *sorted, newest_first);
	for (i = 0; i < n && i < max; i++)
		json_array_append_new(out, json_deep_copy(sorted[i]->meta));
	pthread_mutex_unlock(&s->lock);
	free(sorted);
	return out;
}

int bundle_store_prune(struct bundle_store *s, long long room)
{
	char path[PATH_MAX];
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	while (s->n > (size_t)s->keep || s->total + room > s->max_bytes) {
		long i = oldest_locked(s, NULL);
		char id[EV_RUN_ID_LEN + 1];

		if (i < 0) {
			rc = -ENOSPC;
			break;
		}
		memcpy(id, s->v[i].id, sizeof id);
		drop_locked(s, (size_t)i);
		s->pruned++;
		/* Out of the index first, so no reader is sent to a bundle
		 * being removed; the files go without the lock. */
		pthread_mutex_unlock(&s->lock);
		if (runs_bundle_path(s->data, id, NULL, path, sizeof path) == 0)
			remove_bundle(path);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void bundle_store_stats(struct bundle_store *s, struct bundle_stats *st)
{
	size_t i;

	pthread_mutex_lock(&s->lock);
	memset(st, 0, sizeof *st);
	st->bundles = (long long)s->n;
	st->bytes = s->total;
	st->max_bytes = s->max_bytes;
	st->pruned = s->pruned;
	st->save_failures = s->save_failures;
	for (i = 0; i < s->n; i++)
		st->unsaved += s->v[i].dirty;
	pthread_mutex_unlock(&s->lock);
}

int bundle_default_limits(const char *data, int max_runs, long long *max_bytes,
			  long long *max_run_bytes)
{
	struct statvfs vfs;
	long long fs, run;

	if (statvfs(data, &vfs) < 0)
		return -errno;
	fs = (long long)vfs.f_blocks * (long long)vfs.f_frsize;
	if (*max_bytes <= 0)
		*max_bytes = fs / 4 > BUNDLE_MIN_TOTAL ? fs / 4 : BUNDLE_MIN_TOTAL;
	if (*max_run_bytes <= 0) {
		/* Every run in progress holds room for its whole limit, so
		 * max_runs of them at once take at most half the total. */
		run = *max_bytes / (2LL * (max_runs > 0 ? max_runs : 1));
		if (run > BUNDLE_RUN_DEFAULT_MAX)
			run = BUNDLE_RUN_DEFAULT_MAX;
		if (run < BUNDLE_RUN_MIN)
			run = BUNDLE_RUN_MIN;
		*max_run_bytes = run;
	}
	return 0;
}

/* ======================================================================
 * Reading, and start-up repair of bundles left by a crashed server
 * ====================================================================== */

char *runs_read_small(const char *path, size_t max)
{
	char *buf = NULL;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size <= max)
		buf = malloc((size_t)st.st_size + 1);
	if (buf) {
		n = pread(fd, buf, (size_t)st.st_size, 0);
		if (n < 0) {
			free(buf);
			buf = NULL;
		} else {
			buf[n] = '\0';
		}
	}
	close(fd);
	return buf;
}

/* Close the event stream of a run that died with the server: drop a torn
 * last line, then append error and run.end unless the stream already ended.
 * Returns the final status through status (static string). */
static int repair_events(const char *path, const char *id, const char *lab, json_int_t *count,
			 const char **status)
{
	off_t size, keep, start, tail_off;
	size_t tail_len;
	char *tail = NULL;
	json_int_t seq = -1, t_us = 0;
	int fd, rc = 0;

	*status = "error";
	fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size = lseek(fd, 0, SEEK_END);
	if (size < 0) {
		rc = -errno;
		goto out;
	}
	/* Lines are at most RUN_LINE_MAX (or a little more, rewritten), so
	 * the last two newlines lie in the last 2 MiB + a bit. */
	tail_off = size > (off_t)(2 * RUN_LINE_MAX + 4096) ? size - (2 * RUN_LINE_MAX + 4096) : 0;
	tail_len = (size_t)(size - tail_off);
	tail = malloc(tail_len + 1);
	if (!tail || pread(fd, tail, tail_len, tail_off) != (ssize_t)tail_len) {
		rc = -EIO;
		goto out;
	}
	tail[tail_len] = '\0';
	keep = (off_t)tail_len;
	while (keep > 0 && tail[keep - 1] != '\n')
		keep--;
	if (keep == 0 && tail_off > 0) {
		rc = -EINVAL; /* no newline in the tail: not our file */
		goto out;
	}
	if (tail_off + keep < size && ftruncate(fd, tail_off + keep) < 0) {
		rc = -errno;
		goto out;
	}
	if (keep > 0) {
		json_t *ev;
		start = keep - 1;
		while (start > 0 && tail[start - 1] != '\n')
			start--;
		ev = json_loadb(tail + start, (size_t)(keep - 1 - start), 0, NULL);
		if (ev) {
			const char *type = json_string_value(json_object_get(ev, "type"));
			seq = json_integer_value(json_object_get(ev, "seq"));
			t_us = json_integer_value(json_object_get(ev, "t_us"));
			if (type && !strcmp(type, "run.end")) {
				const char *st =
					bundle_end_status(json_string_value(json_object_get(ev, "status")));
				*status = st ? st : "error";
				*count = seq + 1;
				json_decref(ev);
				goto out;
			}
			json_decref(ev);
		}
	}
	{
		static const char *const types[] = {"error", "run.end"};
		int i;
		for (i = 0; i < 2; i++) {
			json_t *ev = json_pack("{s:i, s:s, s:I, s:I, s:s, s:s}", "v", EV_VERSION, "run",
					       id, "seq", seq + 1 + i, "t_us", t_us, "lab", lab,
					       "type", types[i]);
			char *line;
			if (i == 0)
				json_object_update_new(
					ev, json_pack("{s:s, s:s}", "code", "server_restart",
						      "message",
						      "the server stopped while this run was in "
						      "progress"));
			else
				json_object_update_new(ev, json_pack("{s:s, s:{}}", "status",
								     "error", "summary"));
			line = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER |
						      JSON_ENSURE_ASCII);
			json_decref(ev);
			if (!line || bundle_append_line(fd, NULL, line, strlen(line)) < 0)
				rc = -EIO;
			free(line);
		}
		*count = seq + 3;
	}
out:
	free(tail);
	close(fd);
	return rc;
}

int runs_recover(const char *data, char *err, size_t errlen)
{
	char path[PATH_MAX], runs_dir[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc, repaired = 0;

	rc = mkdir_p(data, 0700);
	if (rc == 0 && snprintf(runs_dir, sizeof runs_dir, "%s/runs", data) >= (int)sizeof runs_dir)
		rc = -ENAMETOOLONG;
	if (rc == 0 && mkdir(runs_dir, 0700) < 0 && errno != EEXIST)
		rc = -errno;
	if (rc < 0) {
		snprintf(err, errlen, "cannot create data directory %s: %s", data, strerror(-rc));
		return rc;
	}
	d = opendir(runs_dir);
	if (!d) {
		rc = -errno;
		snprintf(err, errlen, "cannot read %s: %s", runs_dir, strerror(errno));
		return rc;
	}
	for (de = readdir(d); de; de = readdir(d)) {
		const char *status = NULL, *lab;
		json_int_t count = 0;
		json_t *meta;
		char *text;

		if (!ev_valid_run_id(de->d_name))
			continue;
		if (runs_bundle_path(data, de->d_name, "meta.json", path, sizeof path) < 0)
			continue;
		text = runs_read_small(path, 1024 * 1024);
		meta = text ? json_loads(text, 0, NULL) : NULL;
		free(text);
		status = meta ? json_string_value(json_object_get(meta, "status")) : NULL;
		if (!status || strcmp(status, "running") != 0) {
			json_decref(meta);
			continue;
		}
		lab = json_string_value(json_object_get(meta, "lab"));
		status = "error";
		if (runs_bundle_path(data, de->d_name, "events.jsonl", path, sizeof path) == 0 &&
		    repair_events(path, de->d_name, lab ? lab : "", &count, &status) == 0)
			json_object_set_new(meta, "events", json_integer(count));
		json_object_set_new(meta, "status", json_string(status));
		json_object_set_new(meta, "recovered", json_true());
		if (runs_bundle_path(data, de->d_name, "meta.json", path, sizeof path) == 0 &&
		    bundle_write_json(path, meta) == 0)
			repaired++;
		json_decref(meta);
	}
	closedir(d);
	return repaired;
}
