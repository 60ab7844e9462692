/* test_bundle.c: the bundle store (server/bundle.c): whole lines only, the in-memory index, byte limits, retries. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "bundle.h"
#include "event.h"

static char root[PATH_MAX];

static int setup(void **state)
{
	char runs[PATH_MAX + 8];

	(void)state;
	snprintf(root, sizeof root, "/tmp/socklab-bundle-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	snprintf(runs, sizeof runs, "%s/runs", root);
	return mkdir(runs, 0700);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	(void)state;
	return nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A finished bundle: meta.json with created, and an events file of size bytes. */
static void make_bundle(const char *id, const char *created, size_t size, time_t mtime)
{
	char path[PATH_MAX];
	struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
	json_t *meta;
	char *fill;
	int fd;

	assert_int_equal(runs_bundle_path(root, id, NULL, path, sizeof path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(runs_bundle_path(root, id, "meta.json", path, sizeof path), 0);
	meta = json_pack("{s:s, s:s, s:s, s:i}", "id", id, "status", "ok", "created", created,
			 "events", 1);
	assert_int_equal(json_dump_file(meta, path, 0), 0);
	json_decref(meta);
	assert_int_equal(runs_bundle_path(root, id, "events.jsonl", path, sizeof path), 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	fill = calloc(1, size);
	assert_non_null(fill);
	assert_int_equal(write(fd, fill, size), (ssize_t)size);
	free(fill);
	close(fd);
	assert_int_equal(runs_bundle_path(root, id, NULL, path, sizeof path), 0);
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static int exists(const char *id)
{
	char path[PATH_MAX];
	struct stat st;

	assert_int_equal(runs_bundle_path(root, id, NULL, path, sizeof path), 0);
	return stat(path, &st) == 0;
}

static const char *list_id(const json_t *list, size_t i)
{
	return json_string_value(json_object_get(json_array_get(list, i), "id"));
}

/* ---- whole lines under a failing disk ---- */

static void append_cuts_back_a_short_write(void **state)
{
	struct rlimit old, small = {.rlim_cur = 1000, .rlim_max = RLIM_INFINITY};
	char path[PATH_MAX + 16], line[300], *text;
	off_t size = 0;
	int fd, rc = 0, n = 0;
	struct stat st;

	(void)state;
	/* A file size limit makes the kernel stop a write part way (EFBIG),
	 * as a full disk does (ENOSPC), without needing a small filesystem. */
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &old);
	snprintf(path, sizeof path, "%s/lines", root);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	assert_true(fd >= 0);
	memset(line, 'x', sizeof line - 1);
	line[sizeof line - 1] = '\0';
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	while (rc == 0) {
		rc = bundle_append_line(fd, &size, line, 299);
		if (rc == 0)
			n++;
	}
	setrlimit(RLIMIT_FSIZE, &old);
	assert_int_equal(rc, -EFBIG);
	/* Three lines of 300 bytes fit in 1000; the fourth was cut at 1000
	 * bytes and has been taken back. */
	assert_int_equal(n, 3);
	assert_int_equal(size, 900);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 900);
	/* A later line goes right after the last whole one. */
	assert_int_equal(bundle_append_line(fd, &size, "end", 3), 0);
	close(fd);
	text = runs_read_small(path, 4096);
	assert_non_null(text);
	assert_int_equal(strlen(text), 904);
	assert_int_equal(text[899], '\n');
	assert_string_equal(text + 900, "end\n");
	free(text);
}

/* ---- the index ---- */

static void index_reads_each_meta_once(void **state)
{
	struct bundle_store *s;
	char err[256], path[PATH_MAX];
	json_t *list, *one;

	(void)state;
	make_bundle("00000000000000a1", "2026-01-01T00:00:01.000Z", 100, 1000);
	make_bundle("00000000000000a2", "2026-01-01T00:00:03.000Z", 100, 1001);
	make_bundle("00000000000000a3", "2026-01-01T00:00:02.000Z", 100, 1002);
	assert_int_equal(bundle_store_open(&s, root, 1LL << 30, 100, err, sizeof err), 0);
	/* Gone from disk, still in the index: nothing reads it again. */
	assert_int_equal(runs_bundle_path(root, "00000000000000a2", "meta.json", path, sizeof path),
			 0);
	assert_int_equal(unlink(path), 0);
	list = bundle_store_list(s, 10);
	assert_int_equal(json_array_size(list), 3);
	assert_string_equal(list_id(list, 0), "00000000000000a2");
	assert_string_equal(list_id(list, 1), "00000000000000a3");
	assert_string_equal(list_id(list, 2), "00000000000000a1");
	json_decref(list);
	list = bundle_store_list(s, 2);
	assert_int_equal(json_array_size(list), 2);
	json_decref(list);
	one = bundle_store_get(s, "00000000000000a2");
	assert_non_null(one);
	assert_string_equal(json_string_value(json_object_get(one, "status")), "ok");
	/* A copy: changing it changes nothing in the store. */
	json_object_set_new(one, "status", json_string("changed"));
	json_decref(one);
	one = bundle_store_get(s, "00000000000000a2");
	assert_string_equal(json_string_value(json_object_get(one, "status")), "ok");
	json_decref(one);
	assert_null(bundle_store_get(s, "00000000000000ff"));
	bundle_store_close(s);
}

static void put_updates_the_index_and_the_file(void **state)
{
	struct bundle_store *s;
	char err[256], path[PATH_MAX], *text;
	json_t *meta, *back;

	(void)state;
	assert_int_equal(bundle_store_open(&s, root, 1LL << 30, 100, err, sizeof err), 0);
	assert_int_equal(runs_bundle_path(root, "00000000000000b1", NULL, path, sizeof path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	meta = json_pack("{s:s, s:s, s:s}", "id", "00000000000000b1", "status", "running", "created",
			 "2026-02-01T00:00:00.000Z");
	assert_int_equal(bundle_store_put(s, "00000000000000b1", meta, 1, 1 << 20), 0);
	json_object_set_new(meta, "status", json_string("ok"));
	assert_int_equal(bundle_store_put(s, "00000000000000b1", meta, 0, 0), 0);
	back = bundle_store_get(s, "00000000000000b1");
	assert_true(json_equal(back, meta));
	json_decref(back);
	assert_int_equal(runs_bundle_path(root, "00000000000000b1", "meta.json", path, sizeof path),
			 0);
	text = runs_read_small(path, 65536);
	assert_non_null(text);
	back = json_loads(text, 0, NULL);
	assert_true(json_equal(back, meta));
	/* Padded to a whole block, so a full disk can still take the final one. */
	assert_int_equal(strlen(text) % 4096, 0);
	json_decref(back);
	free(text);
	json_decref(meta);
	bundle_store_close(s);
}

static void prunes_by_bytes_and_count_oldest_first(void **state)
{
	struct bundle_store *s;
	struct bundle_stats st;
	char err[256], dir[PATH_MAX];
	json_t *meta;

	(void)state;
	/* Four bundles of 64 KiB; ages follow the modification times. */
	make_bundle("00000000000000c1", "2026-01-01T00:00:04.000Z", 65536, 1000);
	make_bundle("00000000000000c2", "2026-01-01T00:00:03.000Z", 65536, 1001);
	make_bundle("00000000000000c3", "2026-01-01T00:00:02.000Z", 65536, 1002);
	make_bundle("00000000000000c4", "2026-01-01T00:00:01.000Z", 65536, 1003);
	assert_int_equal(bundle_store_open(&s, root, 200 * 1024, 3, err, sizeof err), 0);
	bundle_store_stats(s, &st);
	assert_int_equal(st.bundles, 4);
	assert_true(st.bytes >= 4 * 65536);
	/* Count (3) and bytes (200 KiB): the two oldest go. */
	assert_int_equal(bundle_store_prune(s, 0), 0);
	assert_false(exists("00000000000000c1"));
	assert_false(exists("00000000000000c2"));
	assert_true(exists("00000000000000c3"));
	assert_true(exists("00000000000000c4"));
	bundle_store_stats(s, &st);
	assert_int_equal(st.bundles, 2);
	assert_int_equal(st.pruned, 2);
	assert_true(st.bytes <= 200 * 1024);
	/* A running run holds room for its limit (150 KiB) and is never
	 * removed: room for 100 KiB more cannot be made, and every ended
	 * bundle has gone trying. */
	meta = json_pack("{s:s, s:s}", "id", "00000000000000c5", "status", "running");
	assert_int_equal(runs_bundle_path(root, "00000000000000c5", NULL, dir, sizeof dir), 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(bundle_store_put(s, "00000000000000c5", meta, 1, 150 * 1024), 0);
	assert_int_equal(bundle_store_prune(s, 100 * 1024), -ENOSPC);
	assert_true(exists("00000000000000c5"));
	assert_false(exists("00000000000000c3"));
	assert_false(exists("00000000000000c4"));
	/* Ended, it counts what it really wrote (a few bytes): room again. */
	json_object_set_new(meta, "status", json_string("ok"));
	assert_int_equal(bundle_store_put(s, "00000000000000c5", meta, 0, 0), 0);
	assert_int_equal(bundle_store_prune(s, 100 * 1024), 0);
	assert_true(exists("00000000000000c5"));
	json_decref(meta);
	bundle_store_close(s);
}

static void a_refused_meta_is_served_and_written_later(void **state)
{
	struct rlimit old, tiny = {.rlim_cur = 100, .rlim_max = RLIM_INFINITY};
	struct bundle_store *s;
	struct bundle_stats st;
	char err[256], path[PATH_MAX];
	json_t *meta, *back;
	char *text;

	(void)state;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(bundle_store_open(&s, root, 1LL << 30, 100, err, sizeof err), 0);
	assert_int_equal(runs_bundle_path(root, "00000000000000d1", NULL, path, sizeof path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	meta = json_pack("{s:s, s:s}", "id", "00000000000000d1", "status", "error");
	getrlimit(RLIMIT_FSIZE, &old);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
	assert_int_equal(bundle_store_put(s, "00000000000000d1", meta, 0, 0), -EFBIG);
	setrlimit(RLIMIT_FSIZE, &old);
	back = bundle_store_get(s, "00000000000000d1");
	assert_true(json_equal(back, meta));
	json_decref(back);
	bundle_store_stats(s, &st);
	assert_int_equal(st.unsaved, 1);
	assert_int_equal(st.save_failures, 1);
	assert_int_equal(runs_bundle_path(root, "00000000000000d1", "meta.json", path, sizeof path),
			 0);
	assert_int_equal(access(path, F_OK), -1);
	/* Room again: the retry writes it. */
	assert_int_equal(bundle_store_retry(s), 0);
	text = runs_read_small(path, 65536);
	assert_non_null(text);
	back = json_loads(text, 0, NULL);
	assert_true(json_equal(back, meta));
	json_decref(back);
	free(text);
	bundle_store_stats(s, &st);
	assert_int_equal(st.unsaved, 0);
	json_decref(meta);
	bundle_store_close(s);
}

/* ---- threads: readers on one thread, the run manager's writes on another ---- */

struct reader {
	struct bundle_store *s;
	volatile int stop;
	long lists;
};

static void *read_loop(void *arg)
{
	struct reader *rd = arg;

	while (!rd->stop) {
		json_t *l = bundle_store_list(rd->s, 100);
		json_t *g = bundle_store_get(rd->s, "00000000000000e1");
		json_decref(l);
		json_decref(g);
		rd->lists++;
	}
	return NULL;
}

static void readers_and_the_writer_at_once(void **state)
{
	struct reader rd = {0};
	char err[256], id[EV_RUN_ID_LEN + 1], path[PATH_MAX];
	pthread_t t;
	json_t *meta;
	int i;

	(void)state;
	assert_int_equal(bundle_store_open(&rd.s, root, 1LL << 30, 20, err, sizeof err), 0);
	assert_int_equal(pthread_create(&t, NULL, read_loop, &rd), 0);
	for (i = 0; i < 200; i++) {
		snprintf(id, sizeof id, "%016x", 0xe1 + i);
		assert_int_equal(runs_bundle_path(root, id, NULL, path, sizeof path), 0);
		assert_int_equal(mkdir(path, 0700), 0);
		meta = json_pack("{s:s, s:s, s:i}", "id", id, "status", "running", "n", i);
		assert_int_equal(bundle_store_put(rd.s, id, meta, 1, 4096), 0);
		json_object_set_new(meta, "status", json_string("ok"));
		assert_int_equal(bundle_store_put(rd.s, id, meta, 0, 0), 0);
		json_decref(meta);
		bundle_store_prune(rd.s, 0);
	}
	rd.stop = 1;
	pthread_join(t, NULL);
	meta = bundle_store_list(rd.s, 1000);
	assert_int_equal(json_array_size(meta), 20);
	json_decref(meta);
	assert_true(rd.lists > 0);
	bundle_store_close(rd.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(append_cuts_back_a_short_write, setup, teardown),
		cmocka_unit_test_setup_teardown(index_reads_each_meta_once, setup, teardown),
		cmocka_unit_test_setup_teardown(put_updates_the_index_and_the_file, setup, teardown),
		cmocka_unit_test_setup_teardown(prunes_by_bytes_and_count_oldest_first, setup,
						teardown),
		cmocka_unit_test_setup_teardown(a_refused_meta_is_served_and_written_later, setup,
						teardown),
		cmocka_unit_test_setup_teardown(readers_and_the_writer_at_once, setup, teardown),
	};

	return cmocka_run_group_tests_name("bundle", tests, NULL, NULL);
}
