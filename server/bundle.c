/* bundle.c: the run bundle store on disk: paths, atomic meta.json, events.jsonl lines, pruning, repair. */
#include "bundle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int bundle_append_line(int fd, const char *line, size_t len)
{
	struct iovec iov[2] = {
		{.iov_base = (void *)line, .iov_len = len},
		{.iov_base = (void *)"\n", .iov_len = 1},
	};
	int i = 0;

	while (i < 2) {
		ssize_t n = writev(fd, iov + i, 2 - i);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
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
	static const char *const known[] = {"ok", "error", "cancelled", "timeout", NULL};
	int i;

	for (i = 0; s && known[i]; i++)
		if (!strcmp(s, known[i]))
			return known[i];
	return NULL;
}

/* ======================================================================
 * Pruning
 * ====================================================================== */

struct bundle_age {
	char id[EV_RUN_ID_LEN + 1];
	struct timespec mtime;
};

static int older_first(const void *a, const void *b)
{
	const struct bundle_age *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->id, y->id);
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

void bundle_prune(const char *data, int keep, int (*in_use)(void *arg, const char *id), void *arg)
{
	char dir[PATH_MAX];
	struct bundle_age *all = NULL;
	size_t n = 0, cap = 0, i, excess;
	struct dirent *e;
	DIR *d;

	if (snprintf(dir, sizeof dir, "%s/runs", data) >= (int)sizeof dir)
		return;
	d = opendir(dir);
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		if (!ev_valid_run_id(e->d_name) || fstatat(dirfd(d), e->d_name, &st, 0) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		if (n == cap) {
			struct bundle_age *grown;
			cap = cap ? cap * 2 : 256;
			grown = realloc(all, cap * sizeof *all);
			if (!grown)
				goto out;
			all = grown;
		}
		memcpy(all[n].id, e->d_name, EV_RUN_ID_LEN + 1);
		all[n].mtime = st.st_mtim;
		n++;
	}
	if (n <= (size_t)keep)
		goto out;
	qsort(all, n, sizeof *all, older_first);
	excess = n - (size_t)keep;
	for (i = 0; i < n && excess > 0; i++) {
		char path[PATH_MAX];
		if (in_use && in_use(arg, all[i].id))
			continue;
		if (runs_bundle_path(data, all[i].id, NULL, path, sizeof path) == 0)
			remove_bundle(path);
		excess--;
	}
out:
	free(all);
	closedir(d);
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
			if (!line || bundle_append_line(fd, line, strlen(line)) < 0)
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
