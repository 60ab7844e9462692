/* bus_files.c: --nats: a finished run's files (capture.pcap, stderr.log, uploads) published to JetStream as checked chunks, and reassembled, whole or not at all, by a replica that serves another's run. */
#include "bus_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>
#include <openssl/evp.h>

#include "bundle.h"

/*
 * Wire format (libnats 3.4 has no object store): each file of a finished
 * run is published on BUS_FILES_PREFIX.ID.NAME of the stream
 * BUS_FILES_STREAM as ceil(bytes / BUS_CHUNK_BYTES) messages (one, empty,
 * for an empty file), in order, each with the headers below and the
 * JetStream Nats-Msg-Id ID/NAME/INDEX (so a chunk published twice within
 * the stream's duplicate window is stored once). Then the run's index entry
 * gains "files": {NAME: {"bytes","sha256","chunks"}} (or {"bytes","error"}
 * for a file that was not shared): a reader knows what to expect before it
 * reads a chunk, and checks every chunk against it.
 */
#define HDR_RUN "Socklab-Run"
#define HDR_FILE "Socklab-File"
#define HDR_INDEX "Socklab-Chunk"
#define HDR_TOTAL "Socklab-Chunks"
#define HDR_BYTES "Socklab-Bytes"
#define HDR_SHA "Socklab-Sha256"
/* Chunks published before the publisher waits for their acknowledgements
 * (what libnats holds at once for one file: 4 MiB). */
#define CHUNKS_IN_FLIGHT 32
/* A failed reassembly is answered as failed for this long before it is
 * tried again. */
#define FAILED_KEEP_US 2000000

/* A reason into why (cut to wl bytes: the reasons name the file, the
 * chunks and the hashes, and fit 300 bytes). */
__attribute__((format(printf, 3, 4))) static void say(char *why, size_t wl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, wl, fmt, ap);
	va_end(ap);
}

int bus_is_chunk_subject(const char *subject)
{
	return subject && !strncmp(subject, BUS_FILES_PREFIX, strlen(BUS_FILES_PREFIX));
}

/* A file name usable as the last tokens of a subject and as a file name in
 * DATA/remote: letters, digits, '-', '_' and inner dots. */
static int name_ok(const char *n)
{
	size_t i, len = strlen(n);

	if (len == 0 || len >= sizeof ((struct bus_file *)0)->name || n[0] == '.' ||
	    n[len - 1] == '.')
		return 0;
	for (i = 0; i < len; i++) {
		char c = n[i];
		if (c == '.' && n[i + 1] == '.')
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

static long long chunks_of(long long bytes)
{
	return bytes == 0 ? 1 : (bytes + BUS_CHUNK_BYTES - 1) / BUS_CHUNK_BYTES;
}

static void hex(const unsigned char *d, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * n] = '\0';
}

/* SHA-256 of the first bytes of fd, as 64 hex digits in out. 0 or -errno
 * (-EIO: the file is shorter than bytes). */
static int sha256_fd(int fd, long long bytes, char out[65])
{
	unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	long long off = 0;
	int rc = 0;

	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		rc = -ENOMEM;
		goto out;
	}
	while (off < bytes) {
		size_t want = bytes - off > (long long)sizeof buf ? sizeof buf : (size_t)(bytes - off);
		ssize_t n = pread(fd, buf, want, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto out;
		}
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		off += n;
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
		rc = -EIO;
		goto out;
	}
	hex(md, mdlen, out);
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* Read exactly len bytes at off. 0 or -errno (-EIO when the file ends). */
static int pread_all(int fd, char *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int pwrite_all(int fd, const char *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* ======================================================================
 * Publishing (the publisher thread)
 * ====================================================================== */

static int connected(struct bus *b)
{
	int c;

	pthread_mutex_lock(&b->lock);
	c = b->state == BUS_CONNECTED;
	pthread_mutex_unlock(&b->lock);
	return c;
}

/* One chunk (len bytes in data) to libnats. */
static natsStatus publish_chunk(struct bus *b, const char *id, const char *name,
				long long index, long long total, long long bytes, const char *sha,
				const char *data, size_t len)
{
	char subject[sizeof BUS_FILES_PREFIX + EV_RUN_ID_LEN + 80], msgid[128], v[32];
	natsMsg *msg = NULL;
	jsPubOptions po;
	natsStatus s;

	snprintf(subject, sizeof subject, "%s%s.%s", BUS_FILES_PREFIX, id, name);
	snprintf(msgid, sizeof msgid, "%s/%s/%lld", id, name, index);
	s = natsMsg_Create(&msg, subject, NULL, data, (int)len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, HDR_RUN, id);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, HDR_FILE, name);
	snprintf(v, sizeof v, "%lld", index);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, HDR_INDEX, v);
	snprintf(v, sizeof v, "%lld", total);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, HDR_TOTAL, v);
	snprintf(v, sizeof v, "%lld", bytes);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, HDR_BYTES, v);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, HDR_SHA, sha);
	jsPubOptions_Init(&po);
	po.MaxWait = BUS_ACK_WAIT_MS;
	po.MsgId = msgid;
	if (s == NATS_OK)
		s = js_PublishMsgAsync(b->js, &msg, &po);
	natsMsg_Destroy(msg); /* NULL once libnats has taken it */
	return s;
}

/* One file: its manifest entry (a new reference) in *entry. NATS_OK when
 * published or not shared (entry says which); another status: the
 * connection went away, start again later. */
static natsStatus publish_file(struct bus *b, const char *id, const char *name, const char *path,
			       char *buf, json_t **entry)
{
	char sha[65], why[160];
	jsPubOptions po;
	struct stat st;
	long long i, total;
	natsStatus s = NATS_OK;
	int fd;

	*entry = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, sizeof why, "it could not be read: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		*entry = json_pack("{s:s}", "error", why);
		return NATS_OK;
	}
	if (st.st_size > BUS_FILE_MAX) {
		snprintf(why, sizeof why,
			 "it is larger (%lld bytes) than a replica shares through NATS (%lld bytes)",
			 (long long)st.st_size, BUS_FILE_MAX);
		*entry = json_pack("{s:I, s:s}", "bytes", (json_int_t)st.st_size, "error", why);
		close(fd);
		return NATS_OK;
	}
	if (sha256_fd(fd, st.st_size, sha) < 0) {
		*entry = json_pack("{s:I, s:s}", "bytes", (json_int_t)st.st_size, "error",
				   "it could not be read to the end");
		close(fd);
		return NATS_OK;
	}
	total = chunks_of(st.st_size);
	jsPubOptions_Init(&po);
	po.MaxWait = BUS_ACK_WAIT_MS;
	for (i = 0; i < total && s == NATS_OK; i++) {
		long long off = i * BUS_CHUNK_BYTES;
		size_t len = st.st_size - off > BUS_CHUNK_BYTES ? BUS_CHUNK_BYTES
							       : (size_t)(st.st_size - off);
		if (len && pread_all(fd, buf, len, off) < 0) {
			*entry = json_pack("{s:I, s:s}", "bytes", (json_int_t)st.st_size, "error",
					   "it shrank while it was published");
			close(fd);
			return NATS_OK;
		}
		s = publish_chunk(b, id, name, i, total, st.st_size, sha, buf, len);
		/* Bounded memory: what libnats holds waits for its
		 * acknowledgements every CHUNKS_IN_FLIGHT chunks. */
		if (s == NATS_OK && (i + 1) % CHUNKS_IN_FLIGHT == 0)
			s = js_PublishAsyncComplete(b->js, &po);
	}
	close(fd);
	if (s != NATS_OK)
		return s;
	pthread_mutex_lock(&b->lock);
	b->chunks_published += total;
	pthread_mutex_unlock(&b->lock);
	*entry = json_pack("{s:I, s:s, s:I}", "bytes", (json_int_t)st.st_size, "sha256", sha,
			   "chunks", (json_int_t)total);
	return NATS_OK;
}

/* The run's index entry gains its files' manifest. */
static void put_manifest(struct bus *b, const char *id, json_t *files)
{
	kvEntry *e = NULL;
	json_t *meta = NULL;
	char *text = NULL;

	if (kvStore_Get(&e, b->kv_index, id) == NATS_OK)
		meta = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
	kvEntry_Destroy(e);
	if (!json_is_object(meta)) {
		/* Pruned meanwhile (its purge follows in the queue). */
		json_decref(meta);
		return;
	}
	json_object_set(meta, "files", files);
	text = json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!text || kvStore_Put(NULL, b->kv_index, id, text, (int)strlen(text)) != NATS_OK) {
		pthread_mutex_lock(&b->lock);
		b->failed++;
		pthread_mutex_unlock(&b->lock);
	}
	free(text);
	json_decref(meta);
}

static int by_name(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

natsStatus bus_publish_files(struct bus *b, struct bus_msg *m)
{
	const char *id = m->subject;
	char dir[PATH_MAX], path[PATH_MAX], *names[BUS_RUN_FILES_MAX], *buf = NULL;
	json_t *files = json_object();
	long failed_before, published = 0, not_shared = 0;
	struct dirent *e;
	jsPubOptions po;
	natsStatus s = NATS_OK;
	int n = 0, i, skipped = 0;
	DIR *d;

	if (!files || runs_bundle_path(b->cfg->data, id, NULL, dir, sizeof dir) < 0)
		goto out;
	d = opendir(dir);
	if (!d)
		goto out; /* removed already: its purge follows */
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || !strcmp(e->d_name, "meta.json") ||
		    !strcmp(e->d_name, "events.jsonl") || strstr(e->d_name, ".tmp"))
			continue;
		if (!name_ok(e->d_name)) {
			skipped++;
			continue;
		}
		if (n == BUS_RUN_FILES_MAX) {
			skipped++;
			continue;
		}
		names[n] = strdup(e->d_name);
		if (names[n])
			n++;
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof *names, by_name);
	buf = malloc(BUS_CHUNK_BYTES);
	if (!buf)
		goto out;
	pthread_mutex_lock(&b->lock);
	failed_before = b->chunks_failed;
	pthread_mutex_unlock(&b->lock);
	for (i = 0; i < n && s == NATS_OK; i++) {
		json_t *entry = NULL;
		if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path)
			continue;
		s = publish_file(b, id, names[i], path, buf, &entry);
		if (s == NATS_OK && entry) {
			if (json_object_get(entry, "error"))
				not_shared++;
			else
				published++;
			json_object_set_new(files, names[i], entry);
		} else {
			json_decref(entry);
		}
	}
	if (s == NATS_OK) {
		/* Every chunk stored before the manifest says the files are
		 * there. */
		jsPubOptions_Init(&po);
		po.MaxWait = BUS_ACK_WAIT_MS;
		s = js_PublishAsyncComplete(b->js, &po);
		if (s == NATS_TIMEOUT && connected(b))
			s = NATS_OK; /* counted below as failed */
	}
	if (s != NATS_OK && !connected(b))
		goto out; /* the whole job again once NATS is back */
	pthread_mutex_lock(&b->lock);
	if (b->chunks_failed != failed_before || s != NATS_OK) {
		/* NATS refused a chunk on a working connection: no file of
		 * this run is claimed to be in the stream. */
		const char *key;
		json_t *v;
		json_object_foreach(files, key, v)
			if (!json_object_get(v, "error"))
				json_object_set_new(v, "error",
						    json_string("NATS did not store every chunk"));
		b->files_failed += published;
		published = 0;
	}
	b->files_published += published;
	b->files_failed += not_shared;
	/* More files than a run shares, or names that cannot be a subject:
	 * counted, and absent from the manifest. */
	b->files_failed += skipped;
	pthread_mutex_unlock(&b->lock);
	put_manifest(b, id, files);
	s = NATS_OK;
out:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(buf);
	json_decref(files);
	return s;
}

/* ======================================================================
 * Reading another replica's file (any thread; the fetcher thread reads)
 * ====================================================================== */

static void file_path(const struct bus *b, const char *id, const char *name, const char *suffix,
		      char *out, size_t len)
{
	if (snprintf(out, len, "%s/%s.%s%s", b->remote_dir, id, name, suffix) >= (int)len && len)
		out[0] = '\0';
}

/* flock held. */
static struct bus_file *file_find(struct bus *b, const char *id, const char *name)
{
	int i;

	for (i = 0; i < BUS_FILE_SLOTS; i++)
		if (b->files[i].id[0] && !strcmp(b->files[i].id, id) &&
		    !strcmp(b->files[i].name, name))
			return &b->files[i];
	return NULL;
}

static int is_hex64(const char *s)
{
	int i;

	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[64] == '\0';
}

int bus_file_open(struct bus *b, const char *id, const char *name, const json_t *manifest,
		  char *path, size_t pathlen, char *err, size_t errlen)
{
	const char *sha = json_string_value(json_object_get(manifest, "sha256"));
	const char *bad = json_string_value(json_object_get(manifest, "error"));
	json_int_t bytes = json_integer_value(json_object_get(manifest, "bytes"));
	json_int_t chunks = json_integer_value(json_object_get(manifest, "chunks"));
	struct bus_file *f;
	int64_t now = bus_mono_us();
	int rc = -EINPROGRESS, i;

	if (!json_is_object(manifest) || !name_ok(name)) {
		snprintf(err, errlen, "the run has no file %s", name);
		return -ENOENT;
	}
	if (bad) {
		snprintf(err, errlen, "%s was not shared through NATS by the replica that ran it: %s",
			 name, bad);
		return -ENOENT;
	}
	if (!sha || !is_hex64(sha) || bytes < 0 || bytes > BUS_FILE_MAX ||
	    chunks != chunks_of(bytes)) {
		snprintf(err, errlen, "the run index's entry for %s is malformed", name);
		return -EPROTO;
	}
	file_path(b, id, name, "", path, pathlen);
	pthread_mutex_lock(&b->flock);
	f = file_find(b, id, name);
	if (f) {
		f->touched_us = now;
		if (f->state == BUS_F_READY && access(path, R_OK) == 0) {
			rc = 0;
			goto out;
		}
		if (f->state == BUS_F_FAILED && now - f->failed_us < FAILED_KEEP_US) {
			snprintf(err, errlen, "%s", f->why);
			rc = f->err;
			goto out;
		}
		if (f->state == BUS_F_WANTED || f->state == BUS_F_READING)
			goto out;
		f->state = BUS_F_WANTED; /* read it again */
		pthread_cond_signal(&b->fwake);
		goto out;
	}
	for (i = 0; i < BUS_FILE_SLOTS && b->files[i].id[0]; i++)
		;
	if (i == BUS_FILE_SLOTS) {
		/* The least recently used file that is over makes room. */
		int k;
		for (k = 0, i = -1; k < BUS_FILE_SLOTS; k++) {
			struct bus_file *c = &b->files[k];
			if (c->state == BUS_F_WANTED || c->state == BUS_F_READING || c->n_waiters)
				continue;
			if (i < 0 || c->touched_us < b->files[i].touched_us)
				i = k;
		}
		if (i < 0) {
			snprintf(err, errlen,
				 "this replica reads %d files of other replicas at once, its limit; "
				 "try again in a moment",
				 BUS_FILE_SLOTS);
			rc = -ENOSPC;
			goto out;
		}
		{
			char old[PATH_MAX];
			file_path(b, b->files[i].id, b->files[i].name, "", old, sizeof old);
			unlink(old);
		}
	}
	f = &b->files[i];
	memset(f, 0, sizeof *f);
	memcpy(f->id, id, EV_RUN_ID_LEN + 1);
	snprintf(f->name, sizeof f->name, "%s", name);
	snprintf(f->sha256, sizeof f->sha256, "%s", sha);
	f->bytes = bytes;
	f->chunks = chunks;
	f->state = BUS_F_WANTED;
	f->touched_us = now;
	pthread_cond_signal(&b->fwake);
out:
	pthread_mutex_unlock(&b->flock);
	return rc;
}

int bus_file_wait(struct bus *b, const char *id, const char *name, void (*resume)(void *),
		  void *arg)
{
	struct bus_file *f;
	int rc = 1;

	pthread_mutex_lock(&b->flock);
	f = file_find(b, id, name);
	if (f && (f->state == BUS_F_WANTED || f->state == BUS_F_READING)) {
		if (f->n_waiters >= BUS_WAITERS_MAX) {
			rc = -ENOSPC;
		} else {
			f->waiters[f->n_waiters].fn = resume;
			f->waiters[f->n_waiters].arg = arg;
			f->waiters[f->n_waiters++].since = bus_mono_us();
			rc = 0;
		}
	}
	pthread_mutex_unlock(&b->flock);
	return rc;
}

/* flock held: move f's waiters (all, or those waiting since before
 * older_than when it is not 0) to out. */
static int take_file_waiters(struct bus_file *f, struct bus_waiter_call *out, int64_t older_than)
{
	int k, n = 0;

	for (k = 0; k < f->n_waiters;) {
		if (!older_than || f->waiters[k].since < older_than) {
			out[n].fn = f->waiters[k].fn;
			out[n++].arg = f->waiters[k].arg;
			f->waiters[k] = f->waiters[--f->n_waiters];
		} else {
			k++;
		}
	}
	return n;
}

static void call_all(struct bus_waiter_call *w, int n)
{
	int i;

	for (i = 0; i < n; i++)
		w[i].fn(w[i].arg);
}

void bus_files_release(struct bus *b)
{
	struct bus_waiter_call calls[BUS_WAITERS_MAX];
	int i, n;

	for (i = 0; i < BUS_FILE_SLOTS; i++) {
		pthread_mutex_lock(&b->flock);
		n = take_file_waiters(&b->files[i], calls, 0);
		pthread_mutex_unlock(&b->flock);
		call_all(calls, n);
	}
}

/* The missing chunks as "3-5, 9" (at most a few ranges, then "..."). */
static void missing_ranges(const unsigned char *have, long long total, char *out, size_t len)
{
	size_t used = 0;
	long long i = 0;
	int ranges = 0;

	out[0] = '\0';
	while (i < total && used + 32 < len) {
		long long j;
		if (have[i]) {
			i++;
			continue;
		}
		for (j = i; j + 1 < total && !have[j + 1]; j++)
			;
		if (ranges++ == 6) {
			snprintf(out + used, len - used, ", ...");
			return;
		}
		used += (size_t)snprintf(out + used, len - used, j > i ? "%s%lld-%lld" : "%s%lld",
					 used ? ", " : "", i, j);
		i = j + 1;
	}
}

static long long header_ll(natsMsg *m, const char *key)
{
	const char *v = NULL;
	char *end;
	long long x;

	if (natsMsgHeader_Get(m, key, &v) != NATS_OK || !v || !*v)
		return -1;
	errno = 0;
	x = strtoll(v, &end, 10);
	return errno || *end ? -1 : x;
}

/* Does chunk m belong to this file, as the manifest says? */
static int chunk_matches(natsMsg *m, const char *id, const char *name, long long bytes,
			 long long chunks, const char *sha, long long *index, char *why, size_t wl)
{
	const char *run = NULL, *file = NULL, *h = NULL;
	long long i = header_ll(m, HDR_INDEX);
	long long want;

	natsMsgHeader_Get(m, HDR_RUN, &run);
	natsMsgHeader_Get(m, HDR_FILE, &file);
	natsMsgHeader_Get(m, HDR_SHA, &h);
	if (!run || !file || !h || strcmp(run, id) || strcmp(file, name) || i < 0 ||
	    i >= chunks || header_ll(m, HDR_TOTAL) != chunks || header_ll(m, HDR_BYTES) != bytes ||
	    strcmp(h, sha)) {
		say(why, wl,
			 "message %" PRIu64 " of the stream on %s's subject is not one of its %lld "
			 "chunks of %lld bytes with SHA-256 %.12s...: not served",
			 natsMsg_GetSequence(m), name, chunks, bytes, sha);
		return 0;
	}
	want = i == chunks - 1 ? bytes - i * BUS_CHUNK_BYTES : BUS_CHUNK_BYTES;
	if (natsMsg_GetDataLength(m) != want) {
		say(why, wl,
			 "chunk %lld of %s holds %d bytes where %lld were published: not served", i,
			 name, natsMsg_GetDataLength(m), want);
		return 0;
	}
	*index = i;
	return 1;
}

/* The fetcher thread: reassemble one file into path. 0, or -errno with
 * why: -EPROTO (missing or corrupt), -EAGAIN (NATS cannot be read now). */
static int fetch_one(struct bus *b, const char *id, const char *name, long long bytes,
		     long long chunks, const char *sha, const char *path, char *why, size_t wl)
{
	char subject[sizeof BUS_FILES_PREFIX + EV_RUN_ID_LEN + 80], tmp[PATH_MAX], got_sha[65];
	char ranges[120];
	unsigned char *have = calloc((size_t)chunks, 1);
	natsSubscription *sub = NULL;
	natsMsg *last = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;
	long long got = 0;
	int fd = -1, rc = 0;

	if (snprintf(tmp, sizeof tmp, "%s.part", path) >= (int)sizeof tmp) {
		free(have);
		say(why, wl, "--data is too long");
		return -ENAMETOOLONG;
	}
	snprintf(subject, sizeof subject, "%s%s.%s", BUS_FILES_PREFIX, id, name);
	if (!have) {
		say(why, wl, "out of memory");
		return -ENOMEM;
	}
	if (!connected(b)) {
		say(why, wl, "NATS is not reachable: %s of another replica's run cannot be read "
				  "until it is back",
			 name);
		rc = -EAGAIN;
		goto out;
	}
	s = js_GetLastMsg(&last, b->js, BUS_FILES_STREAM, subject, NULL, &jerr);
	natsMsg_Destroy(last);
	if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
		say(why, wl,
			 "the stream %s holds no chunk of %s (purged with its run, or removed by "
			 "--nats-max-bytes): not served",
			 BUS_FILES_STREAM, name);
		rc = -EPROTO;
		goto out;
	}
	if (s != NATS_OK) {
		say(why, wl, "cannot read %s from NATS: %s", name, natsStatus_GetText(s));
		rc = -EAGAIN;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		say(why, wl, "cannot keep a copy of %s: %s", name, strerror(errno));
		rc = -EAGAIN;
		goto out;
	}
	jsSubOptions_Init(&so);
	so.Stream = BUS_FILES_STREAM;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverAll;
	s = js_SubscribeSync(&sub, b->js, subject, NULL, &so, &jerr);
	if (s != NATS_OK) {
		say(why, wl, "cannot read %s from NATS: %s", name, natsStatus_GetText(s));
		rc = -EAGAIN;
		goto out;
	}
	for (;;) {
		natsMsg *msg = NULL;
		jsMsgMetaData *md = NULL;
		long long index;
		uint64_t pending = 0;

		s = natsSubscription_NextMsg(&msg, sub, BUS_CHUNK_WAIT_MS);
		if (s != NATS_OK) {
			say(why, wl,
				 "NATS stopped delivering %s after %lld of its %lld chunks (%s)", name,
				 got, chunks, natsStatus_GetText(s));
			rc = -EAGAIN;
			break;
		}
		if (natsMsg_GetMetaData(&md, msg) == NATS_OK)
			pending = md->NumPending;
		jsMsgMetaData_Destroy(md);
		if (!chunk_matches(msg, id, name, bytes, chunks, sha, &index, why, wl)) {
			natsMsg_Destroy(msg);
			rc = -EPROTO;
			break;
		}
		if (!have[index]) {
			int w = pwrite_all(fd, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
					   (off_t)index * BUS_CHUNK_BYTES);
			if (w < 0) {
				say(why, wl, "cannot write the copy of %s: %s", name,
					 strerror(-w));
				natsMsg_Destroy(msg);
				rc = -EAGAIN;
				break;
			}
			have[index] = 1;
			got++;
		}
		natsMsg_Destroy(msg);
		if (got == chunks || pending == 0)
			break;
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	if (rc < 0)
		goto out;
	if (got < chunks) {
		missing_ranges(have, chunks, ranges, sizeof ranges);
		say(why, wl,
			 "the stream %s lacks chunk%s %s of the %lld of %s (%lld bytes): removed by "
			 "--nats-max-bytes, or never stored; not served",
			 BUS_FILES_STREAM, chunks - got > 1 ? "s" : "", ranges, chunks, name, bytes);
		rc = -EPROTO;
		goto out;
	}
	close(fd);
	fd = open(tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || sha256_fd(fd, bytes, got_sha) < 0) {
		say(why, wl, "cannot read back the copy of %s", name);
		rc = -EAGAIN;
		goto out;
	}
	if (strcmp(got_sha, sha) != 0) {
		say(why, wl,
			 "%s put together from its %lld chunks does not match its SHA-256 (the run "
			 "index says %s, the chunks give %s): not served",
			 name, chunks, sha, got_sha);
		rc = -EPROTO;
		goto out;
	}
	if (rename(tmp, path) < 0) {
		say(why, wl, "cannot keep a copy of %s: %s", name, strerror(errno));
		rc = -EAGAIN;
	}
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	free(have);
	return rc;
}

void *bus_fetcher(void *arg)
{
	struct bus *b = arg;
	struct bus_waiter_call calls[BUS_WAITERS_MAX];

	pthread_mutex_lock(&b->flock);
	while (!b->fstop) {
		char id[EV_RUN_ID_LEN + 1], name[sizeof b->files[0].name], sha[65], why[300];
		char path[PATH_MAX];
		long long bytes, chunks;
		int64_t now = bus_mono_us();
		int i, pick = -1, n, rc;

		/* Requests that waited too long are answered (504). */
		for (i = 0; i < BUS_FILE_SLOTS; i++) {
			n = take_file_waiters(&b->files[i], calls,
					      now - (int64_t)BUS_FILE_WAIT_MS * 1000);
			if (n) {
				pthread_mutex_unlock(&b->flock);
				call_all(calls, n);
				pthread_mutex_lock(&b->flock);
			}
			if (pick < 0 && b->files[i].id[0] && b->files[i].state == BUS_F_WANTED)
				pick = i;
		}
		if (pick < 0) {
			bus_wait_ms_on(&b->fwake, &b->flock, 200);
			continue;
		}
		b->files[pick].state = BUS_F_READING;
		memcpy(id, b->files[pick].id, sizeof id);
		memcpy(name, b->files[pick].name, sizeof name);
		memcpy(sha, b->files[pick].sha256, sizeof sha);
		bytes = b->files[pick].bytes;
		chunks = b->files[pick].chunks;
		pthread_mutex_unlock(&b->flock);
		file_path(b, id, name, "", path, sizeof path);
		why[0] = '\0';
		rc = fetch_one(b, id, name, bytes, chunks, sha, path, why, sizeof why);
		pthread_mutex_lock(&b->flock);
		n = 0;
		if (!strcmp(b->files[pick].id, id) && !strcmp(b->files[pick].name, name)) {
			struct bus_file *f = &b->files[pick];
			if (rc == 0) {
				f->state = BUS_F_READY;
				b->files_fetched++;
			} else {
				f->state = BUS_F_FAILED;
				f->err = rc;
				f->failed_us = bus_mono_us();
				snprintf(f->why, sizeof f->why, "%s", why);
				if (rc == -EPROTO)
					b->files_bad++;
			}
			n = take_file_waiters(f, calls, 0);
		}
		pthread_mutex_unlock(&b->flock);
		call_all(calls, n);
		pthread_mutex_lock(&b->flock);
	}
	pthread_mutex_unlock(&b->flock);
	return NULL;
}
