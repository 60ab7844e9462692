/* bus_mirror.c: --nats: copies of other replicas' runs in DATA/remote, read from the stream with ordered consumers, checked gap-free, and the requests waiting for them. */
#include "bus_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle.h"

static void mirror_path(const struct bus *b, const char *id, char *out, size_t len)
{
	if (snprintf(out, len, "%s/%s.jsonl", b->remote_dir, id) >= (int)len && len)
		out[0] = '\0';
}

/* rlock held. */
static struct bus_mirror *mirror_find(struct bus *b, const char *id)
{
	int i;

	for (i = 0; i < BUS_MIRRORS_MAX; i++)
		if (b->mirrors[i].id[0] && !strcmp(b->mirrors[i].id, id))
			return &b->mirrors[i];
	return NULL;
}

/* rlock held: move m's waiters to out (called after rlock is released). */
static int take_waiters(struct bus_mirror *m, struct bus_waiter_call *out)
{
	int i, n = m->n_waiters;

	for (i = 0; i < n; i++) {
		out[i].fn = m->waiters[i].fn;
		out[i].arg = m->waiters[i].arg;
	}
	m->n_waiters = 0;
	return n;
}

void bus_mirror_drop_held(struct bus_mirror *m)
{
	int i;

	for (i = 0; i < m->n_held; i++)
		free(m->held[i].line);
	free(m->held);
	m->held = NULL;
	m->n_held = 0;
	m->held_bytes = 0;
}

/* rlock held: m is done (ended, incomplete or failed). */
static void mirror_finish(struct bus_mirror *m, enum bus_mirror_state st, const char *why)
{
	bus_mirror_drop_held(m);
	m->state = st;
	if (why)
		snprintf(m->why, sizeof m->why, "%s", why);
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
}

static void call_waiters(struct bus_waiter_call *w, int n)
{
	int i;

	for (i = 0; i < n; i++)
		w[i].fn(w[i].arg);
}

/* rlock held: append the line of seq m->next_seq to m's file. */
static void mirror_take(struct bus *b, struct bus_mirror *m, const char *data, int len,
			const json_t *ev)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	char why[240];

	if ((long long)m->size + len + 1 > b->cfg->max_run_data) {
		snprintf(why, sizeof why, "the run's events are larger than --max-run-data (%lld bytes)",
			 b->cfg->max_run_data);
		mirror_finish(m, BUS_M_FAILED, why);
	} else if (bundle_append_line(m->fd, &m->size, data, (size_t)len) < 0) {
		snprintf(why, sizeof why, "cannot write the copy of the run: %s", strerror(errno));
		mirror_finish(m, BUS_M_FAILED, why);
	} else {
		m->next_seq++;
		if (type && !strcmp(type, "run.end"))
			mirror_finish(m, BUS_M_ENDED, NULL);
	}
}

/* rlock held: keep line seq (ahead of m->next_seq) until its turn. 0, or
 * -1 when m holds its limit already. */
static int mirror_hold(struct bus_mirror *m, long long seq, const char *data, int len)
{
	struct bus_held *h;
	int i;

	for (i = 0; i < m->n_held && m->held[i].seq < seq; i++)
		;
	if (i < m->n_held && m->held[i].seq == seq)
		return 0; /* held already */
	if (m->n_held >= BUS_REORDER_MAX || m->held_bytes + (size_t)len > BUS_REORDER_BYTES)
		return -1;
	if (!m->held) {
		m->held = calloc(BUS_REORDER_MAX, sizeof *m->held);
		if (!m->held)
			return -1;
	}
	h = &m->held[i];
	memmove(h + 1, h, (size_t)(m->n_held - i) * sizeof *h);
	h->line = malloc((size_t)len);
	if (!h->line) {
		memmove(h, h + 1, (size_t)(m->n_held - i) * sizeof *h);
		return -1;
	}
	memcpy(h->line, data, (size_t)len);
	h->len = len;
	h->seq = seq;
	m->n_held++;
	m->held_bytes += (size_t)len;
	return 0;
}

/* Wake the lws thread (bus_set_wake), under rlock: once bus_set_wake(b,
 * NULL, NULL) has returned, no call is under way or to come. */
static void wake_ws(struct bus *b)
{
	pthread_mutex_lock(&b->rlock);
	if (b->wake_fn)
		b->wake_fn(b->wake_arg);
	pthread_mutex_unlock(&b->rlock);
}

/* libnats's delivery thread: one line of a mirrored run. */
static void on_mirror_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct bus *b = closure;
	struct bus_waiter_call calls[BUS_WAITERS_MAX];
	const char *subject = natsMsg_GetSubject(msg);
	const char *data = natsMsg_GetData(msg);
	int len = natsMsg_GetDataLength(msg), n_calls = 0, woke = 0;
	jsMsgMetaData *md = NULL;
	struct bus_mirror *m;
	json_t *ev = NULL;
	char why[240];

	if (!subject || strncmp(subject, BUS_SUBJECT_PREFIX, strlen(BUS_SUBJECT_PREFIX)) != 0 ||
	    natsMsg_GetMetaData(&md, msg) != NATS_OK) {
		natsMsg_Destroy(msg);
		return;
	}
	ev = json_loadb(data, (size_t)len, 0, NULL);
	pthread_mutex_lock(&b->rlock);
	m = mirror_find(b, subject + strlen(BUS_SUBJECT_PREFIX));
	if (!m || (m->state != BUS_M_FETCHING && m->state != BUS_M_LIVE) ||
	    md->Sequence.Stream <= m->last_sseq)
		goto out; /* not followed any more, or seen already */
	m->last_sseq = md->Sequence.Stream;
	{
		json_t *jseq = json_object_get(ev, "seq");
		const char *run = json_string_value(json_object_get(ev, "run"));
		long long seq = json_integer_value(jseq);

		if (!json_is_integer(jseq) || !run || strcmp(run, m->id) != 0) {
			snprintf(why, sizeof why, "message %llu of the stream is not an event of run %s",
				 (unsigned long long)md->Sequence.Stream, m->id);
			mirror_finish(m, BUS_M_FAILED, why);
		} else if (seq < m->next_seq) {
			/* A line stored twice (sent again after a lost
			 * acknowledgement, outside the duplicate window): the
			 * first copy is in the file already. */
		} else if (seq > m->next_seq) {
			/* An earlier line is missing so far: one sent again
			 * after a reconnect comes after newer ones. Held until
			 * it arrives; a gap that stays is found when the run is
			 * over (mirror_check_end). */
			if (mirror_hold(m, seq, data, len) < 0) {
				snprintf(why, sizeof why,
					 "the stream lacks events %lld to %lld of the run (removed by "
					 "--nats-max-bytes, or dropped by the replica that ran it): more "
					 "than %d later events came without them",
					 m->next_seq, m->held[0].seq - 1, BUS_REORDER_MAX);
				mirror_finish(m, BUS_M_FAILED, why);
			}
		} else {
			mirror_take(b, m, data, len, ev);
			/* Lines held for this one follow it now. */
			while (m->fd >= 0 && m->n_held && m->held[0].seq <= m->next_seq) {
				struct bus_held h = m->held[0];
				m->n_held--;
				m->held_bytes -= (size_t)h.len;
				memmove(&m->held[0], &m->held[1], (size_t)m->n_held * sizeof *m->held);
				if (h.seq == m->next_seq) {
					json_t *hev = json_loadb(h.line, (size_t)h.len, 0, NULL);
					mirror_take(b, m, h.line, h.len, hev);
					json_decref(hev);
				}
				free(h.line);
			}
		}
		if (m->state == BUS_M_FETCHING && md->NumPending == 0)
			m->state = BUS_M_LIVE;
	}
	if (m->state != BUS_M_FETCHING) {
		if (!m->caught_up_us)
			m->caught_up_us = bus_mono_us();
		n_calls = take_waiters(m, calls);
	}
	woke = 1;
out:
	pthread_mutex_unlock(&b->rlock);
	call_waiters(calls, n_calls);
	if (woke)
		wake_ws(b);
	json_decref(ev);
	jsMsgMetaData_Destroy(md);
	natsMsg_Destroy(msg);
}

/* The reader thread: start following mirror slot i (its id is copied: the
 * slot may change while the lock is not held). */
static void mirror_subscribe(struct bus *b, int i)
{
	char subject[sizeof BUS_SUBJECT_PREFIX + EV_RUN_ID_LEN], id[EV_RUN_ID_LEN + 1];
	struct bus_waiter_call calls[BUS_WAITERS_MAX];
	natsSubscription *sub = NULL;
	natsMsg *last = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;
	int n_calls = 0, empty;

	pthread_mutex_lock(&b->rlock);
	memcpy(id, b->mirrors[i].id, sizeof id);
	b->mirrors[i].subscribed = 1;
	pthread_mutex_unlock(&b->rlock);
	snprintf(subject, sizeof subject, "%s%s", BUS_SUBJECT_PREFIX, id);
	/* Nothing in the stream for it yet: caught up at once. */
	s = js_GetLastMsg(&last, b->js, BUS_STREAM, subject, NULL, &jerr);
	empty = s == NATS_NOT_FOUND;
	natsMsg_Destroy(last);
	jsSubOptions_Init(&so);
	so.Stream = BUS_STREAM;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverAll;
	if (s == NATS_OK || empty)
		s = js_Subscribe(&sub, b->js, subject, on_mirror_msg, b, NULL, &so, &jerr);
	pthread_mutex_lock(&b->rlock);
	if (strcmp(b->mirrors[i].id, id) != 0 || s != NATS_OK) {
		/* Evicted meanwhile, or NATS refused: the slot is tried again
		 * when it is still wanted. */
		if (!strcmp(b->mirrors[i].id, id))
			b->mirrors[i].subscribed = 0;
		pthread_mutex_unlock(&b->rlock);
		if (sub) {
			natsSubscription_Unsubscribe(sub);
			natsSubscription_Destroy(sub);
		}
		return;
	}
	b->mirrors[i].sub = sub;
	if (empty && b->mirrors[i].state == BUS_M_FETCHING) {
		b->mirrors[i].state = BUS_M_LIVE;
		b->mirrors[i].caught_up_us = bus_mono_us();
		n_calls = take_waiters(&b->mirrors[i], calls);
	}
	pthread_mutex_unlock(&b->rlock);
	call_waiters(calls, n_calls);
}

/* The reader thread: a LIVE mirror that nothing more will reach is
 * incomplete. Asked of the stream, not guessed: its replica stopped
 * heartbeating (or the index says its run ended) and the stream holds no
 * message for it beyond the last one the mirror took. */
static void mirror_check_end(struct bus *b, int i)
{
	char subject[sizeof BUS_SUBJECT_PREFIX + EV_RUN_ID_LEN], id[EV_RUN_ID_LEN + 1];
	char why[240], replica[EV_RUN_ID_LEN + 1] = "";
	const char *status = NULL;
	natsMsg *last = NULL;
	jsErrCode jerr = 0;
	uint64_t seen, newest = 0;
	json_t *meta;
	natsStatus s;
	int gone;

	pthread_mutex_lock(&b->rlock);
	memcpy(id, b->mirrors[i].id, sizeof id);
	seen = b->mirrors[i].last_sseq;
	meta = json_object_get(b->index, id);
	if (meta) {
		snprintf(replica, sizeof replica, "%s",
			 json_string_value(json_object_get(meta, "replica")) ?: "");
		status = json_string_value(json_object_get(meta, "status"));
	}
	gone = replica[0] && bus_replica_gone(b, replica);
	if (!gone && (!status || !strcmp(status, "running"))) {
		pthread_mutex_unlock(&b->rlock);
		return;
	}
	snprintf(why, sizeof why,
		 gone ? "the replica that ran it (%s) stopped before the run ended: the stream "
			"holds %lld events and no run.end"
		      : "the run ended on its replica (%s) but the stream lacks its last events: "
			"it holds %lld and no run.end",
		 replica, b->mirrors[i].next_seq);
	pthread_mutex_unlock(&b->rlock);
	snprintf(subject, sizeof subject, "%s%s", BUS_SUBJECT_PREFIX, id);
	s = js_GetLastMsg(&last, b->js, BUS_STREAM, subject, NULL, &jerr);
	if (s == NATS_OK)
		newest = natsMsg_GetSequence(last);
	natsMsg_Destroy(last);
	if ((s != NATS_OK && s != NATS_NOT_FOUND) || newest > seen)
		return;
	pthread_mutex_lock(&b->rlock);
	if (!strcmp(b->mirrors[i].id, id) && b->mirrors[i].state == BUS_M_LIVE &&
	    b->mirrors[i].last_sseq == seen) {
		struct bus_mirror *m = &b->mirrors[i];
		if (m->n_held) {
			/* Later events came, the missing ones never will. */
			const char *dropped = json_string_value(json_object_get(
				json_object_get(json_object_get(b->index, id), "stream_incomplete"),
				"reason"));
			snprintf(why, sizeof why,
				 "the stream lacks events %lld to %lld of the run (%s)", m->next_seq,
				 m->held[0].seq - 1,
				 dropped ? dropped
					 : "removed by --nats-max-bytes, or dropped by the replica that "
					   "ran it");
			mirror_finish(m, BUS_M_FAILED, why);
		} else {
			mirror_finish(m, BUS_M_INCOMPLETE, why);
		}
	}
	pthread_mutex_unlock(&b->rlock);
	wake_ws(b);
}

/* The reader thread: subscribe new mirrors, release waiters that waited
 * too long, ask whether live ones are over, unsubscribe finished ones. */
void bus_tend_mirrors(struct bus *b, int connected)
{
	struct bus_waiter_call calls[BUS_WAITERS_MAX];
	int64_t now = bus_mono_us();
	int i;

	for (i = 0; i < BUS_MIRRORS_MAX; i++) {
		struct bus_mirror *m = &b->mirrors[i];
		natsSubscription *done = NULL;
		int n_calls = 0, subscribe = 0, check = 0, k;

		pthread_mutex_lock(&b->rlock);
		if (!m->id[0]) {
			pthread_mutex_unlock(&b->rlock);
			continue;
		}
		for (k = 0; k < m->n_waiters;) {
			if (now - m->waiters[k].since >= (int64_t)BUS_FETCH_WAIT_MS * 1000) {
				calls[n_calls].fn = m->waiters[k].fn;
				calls[n_calls++].arg = m->waiters[k].arg;
				m->waiters[k] = m->waiters[--m->n_waiters];
			} else {
				k++;
			}
		}
		if (m->state == BUS_M_FETCHING || m->state == BUS_M_LIVE) {
			subscribe = connected && !m->subscribed;
			if (m->state == BUS_M_LIVE && m->sub && now - m->checked_us >= 1000000) {
				m->checked_us = now;
				check = connected;
			}
		} else if (m->sub) {
			done = m->sub;
			m->sub = NULL;
		}
		pthread_mutex_unlock(&b->rlock);
		call_waiters(calls, n_calls);
		if (done) {
			natsSubscription_Unsubscribe(done);
			natsSubscription_Destroy(done);
		}
		if (subscribe)
			mirror_subscribe(b, i);
		if (check)
			mirror_check_end(b, i);
	}
}

/* ---- the read side's interface ---- */

void bus_set_wake(struct bus *b, void (*fn)(void *), void *arg)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->rlock);
	b->wake_fn = fn;
	b->wake_arg = arg;
	pthread_mutex_unlock(&b->rlock);
}

int bus_mirror_open(struct bus *b, const char *id, char *path, size_t pathlen, char *err,
		    size_t errlen)
{
	struct bus_mirror *m;
	int i, fd, rc = 0;

	mirror_path(b, id, path, pathlen);
	pthread_mutex_lock(&b->rlock);
	m = mirror_find(b, id);
	if (m) {
		m->touched_us = bus_mono_us();
		goto out;
	}
	if (!json_object_get(b->index, id)) {
		snprintf(err, errlen, "no such run");
		rc = -ENOENT;
		goto out;
	}
	for (i = 0; i < BUS_MIRRORS_MAX && b->mirrors[i].id[0]; i++)
		;
	if (i == BUS_MIRRORS_MAX) {
		/* The least recently used mirror that is over makes room. */
		int k;
		for (k = 0, i = -1; k < BUS_MIRRORS_MAX; k++) {
			struct bus_mirror *c = &b->mirrors[k];
			if (c->state == BUS_M_FETCHING || c->state == BUS_M_LIVE || c->sub ||
			    c->n_waiters)
				continue;
			if (i < 0 || c->touched_us < b->mirrors[i].touched_us)
				i = k;
		}
		if (i < 0) {
			snprintf(err, errlen,
				 "this replica follows %d runs of other replicas at once, its limit; "
				 "try again when one has ended",
				 BUS_MIRRORS_MAX);
			rc = -ENOSPC;
			goto out;
		}
		{
			char old[PATH_MAX];
			mirror_path(b, b->mirrors[i].id, old, sizeof old);
			unlink(old);
		}
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot keep a copy of the run: %s", strerror(errno));
		rc = -errno;
		bus_mirror_drop_held(&b->mirrors[i]);
		memset(&b->mirrors[i], 0, sizeof b->mirrors[i]);
		goto out;
	}
	m = &b->mirrors[i];
	bus_mirror_drop_held(m);
	memset(m, 0, sizeof *m);
	memcpy(m->id, id, EV_RUN_ID_LEN + 1);
	m->state = BUS_M_FETCHING;
	m->fd = fd;
	m->opened_us = m->touched_us = bus_mono_us();
	pthread_cond_signal(&b->rwake);
out:
	pthread_mutex_unlock(&b->rlock);
	return rc;
}

enum bus_mirror_state bus_mirror_state(struct bus *b, const char *id, long long *events,
				       char *why, size_t whylen)
{
	enum bus_mirror_state st = BUS_M_FAILED;
	struct bus_mirror *m;

	pthread_mutex_lock(&b->rlock);
	m = mirror_find(b, id);
	if (m) {
		st = m->state;
		if (events)
			*events = m->next_seq;
		if (why)
			snprintf(why, whylen, "%s", m->why);
	} else {
		if (events)
			*events = 0;
		if (why)
			snprintf(why, whylen, "the copy of this run was given up for another");
	}
	pthread_mutex_unlock(&b->rlock);
	return st;
}

int bus_mirror_wait(struct bus *b, const char *id, void (*resume)(void *), void *arg)
{
	struct bus_mirror *m;
	int rc = 1;

	pthread_mutex_lock(&b->rlock);
	m = mirror_find(b, id);
	if (m && m->state == BUS_M_FETCHING) {
		if (m->n_waiters >= BUS_WAITERS_MAX) {
			rc = -ENOSPC;
		} else {
			m->waiters[m->n_waiters].fn = resume;
			m->waiters[m->n_waiters].arg = arg;
			m->waiters[m->n_waiters++].since = bus_mono_us();
			rc = 0;
		}
	}
	pthread_mutex_unlock(&b->rlock);
	return rc;
}

void bus_release_waiters(struct bus *b)
{
	struct bus_waiter_call calls[BUS_WAITERS_MAX];
	int i, n;

	if (!b)
		return;
	bus_files_release(b);
	for (i = 0; i < BUS_MIRRORS_MAX; i++) {
		pthread_mutex_lock(&b->rlock);
		n = take_waiters(&b->mirrors[i], calls);
		pthread_mutex_unlock(&b->rlock);
		call_waiters(calls, n);
	}
}

/* Empty DATA/remote (copies a previous start left). */
int bus_remote_dir_open(struct bus *b, char *err, size_t errlen)
{
	struct dirent *e;
	DIR *d;

	if (snprintf(b->remote_dir, sizeof b->remote_dir, "%s/remote", b->cfg->data) >=
	    (int)sizeof b->remote_dir - EV_RUN_ID_LEN - 8) {
		snprintf(err, errlen, "--data is too long");
		return -ENAMETOOLONG;
	}
	if (mkdir(b->remote_dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", b->remote_dir, strerror(errno));
		return -errno;
	}
	d = opendir(b->remote_dir);
	if (!d) {
		snprintf(err, errlen, "cannot read %s: %s", b->remote_dir, strerror(errno));
		return -errno;
	}
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	return 0;
}
