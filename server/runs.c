/* runs.c: the run manager: spawn `socklab run --json` children, stream and record their events. */
#include "runs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lab.h"
#include "sock.h"

static void iso_now(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char base[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%.20s.%03dZ", base, (int)(ts.tv_nsec / 1000000) % 1000);
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ======================================================================
 * The manager
 * ====================================================================== */

struct run {
	struct run_mgr *m;
	struct run *next;
	char id[EV_RUN_ID_LEN + 1];
	const struct lab_desc *lab;
	json_t *params; /* applied values, for meta.json */
	char tag[RUN_TAG_MAX + 1];
	int has_tag;
	uint64_t owner;
	uint64_t watchers[RUN_MAX_WATCHERS];
	size_t n_watchers;
	pid_t pid;
	int wstatus;
	struct lws *wsi; /* the adopted stdout pipe; NULL once closed */
	int pipe_fd;     /* its fd, owned by lws once adopted */
	int events_fd;   /* events.jsonl; -1 once finished */
	struct run_sm sm;
	struct run_linebuf lb;
	int64_t next_seq;
	int64_t last_t_us;
	long long bytes;      /* event bytes the run produced (lines and newlines) */
	off_t stored;         /* length of events.jsonl: whole lines only */
	int64_t stored_events; /* lines in events.jsonl */
	int save_errno;       /* why events.jsonl stopped taking lines, or 0 */
	int discard;     /* refuse further output (after bad output) */
	int paused;      /* its output is not read: its owner lags (runs_pause_owner) */
	char status[16]; /* run.end status as delivered */
	char why[256];   /* what was wrong with the output */
	int byo_port;    /* 0 unless a bring-your-own-client run */
	int64_t t0_us;
	char created[64];
	lws_sorted_usec_list_t sul_timeout, sul_kill;
	/* Admission: a run that found no free slot waits in m->queue with its
	 * checked request until one frees, its deadline passes, or it is
	 * cancelled. Its bundle is made only when it starts. */
	int queued;
	int cls;            /* an instructor's class run: ahead of every other */
	int round;          /* the owner's runs queued or running when it asked */
	uint64_t qseq;      /* arrival order */
	int64_t q_since_us, q_deadline_us;
	int q_pos_sent;     /* the position its owner was last told, 0: none */
	int queued_id;      /* id was given out while queued */
	int delivering_end; /* the line being handed to the hooks is its run.end */
	struct lab_params *qp;  /* the checked parameters */
	struct run_upload qup;  /* data owned; file texts borrowed from req_files */
	json_t *req_params, *req_files; /* the request's, for the class notice */
};

struct run_mgr {
	const struct serve_config *cfg;
	struct lws_context *ctx;
	struct lws_vhost *vh;
	struct run_hooks hooks;
	struct http_counters *ctr;
	struct bundle_store *store;
	struct run *runs; /* every run not yet freed, newest first */
	int n_active;
	int n_byo;
	unsigned char *byo_used; /* one byte per pool port */
	int shutting_down;
	lws_sorted_usec_list_t sul_gc;
	lws_sorted_usec_list_t sul_retry; /* armed while a meta.json is out of date */
	/* The admission queue, in the order runs will start (see queue_insert). */
	struct run *queue;
	int n_queued;
	uint64_t next_qseq;
	lws_sorted_usec_list_t sul_admit, sul_deadline;
	long long q_admitted, q_wait_ms_total, q_wait_ms_max;
};

static void run_input(struct run *r, enum run_input in);
static void admit_cb(lws_sorted_usec_list_t *sul);

const char *run_id(const struct run *r)
{
	return r->id;
}

uint64_t run_owner(const struct run *r)
{
	return r->owner;
}

size_t run_watchers(const struct run *r, const uint64_t **ids)
{
	*ids = r->watchers;
	return r->n_watchers;
}

int runs_active(const struct run_mgr *m)
{
	return m->n_active;
}

int runs_queued(const struct run_mgr *m)
{
	return m->n_queued;
}

const char *run_tag(const struct run *r)
{
	return r->has_tag ? r->tag : NULL;
}

const char *run_lab(const struct run *r)
{
	return r->lab->name;
}

int run_is_class(const struct run *r)
{
	return r->cls;
}

const json_t *run_request_params(const struct run *r)
{
	return r->req_params;
}

const json_t *run_request_files(const struct run *r)
{
	return r->req_files;
}

int run_line_is_end(const struct run *r)
{
	return r->delivering_end;
}

int64_t run_queued_us(const struct run *r)
{
	return r->q_since_us ? r->t0_us - r->q_since_us : 0;
}

void runs_pause_owner(struct run_mgr *m, uint64_t owner, int paused)
{
	struct run *r;

	for (r = m->runs; r; r = r->next) {
		if (r->owner != owner || !r->wsi || r->paused == !!paused)
			continue;
		/* Not reading the pipe: once it is full the child blocks in its
		 * next write, and its clock (the wall-clock limit) keeps going. */
		r->paused = !!paused;
		lws_rx_flow_control(r->wsi, !paused);
		http_count(m->ctr, HTTP_C_RUNS_THROTTLED, paused ? 1 : -1);
		if (paused)
			http_count(m->ctr, HTTP_C_RUN_PAUSES, 1);
	}
}

struct run *runs_find(struct run_mgr *m, const char *id)
{
	struct run *r;

	/* A run whose run.end has been delivered is over for its clients,
	 * even if its process has not been reaped yet. */
	for (r = m->runs; r; r = r->next)
		if (r->sm.state != RUN_FINISHED && !r->sm.end_seen && strcmp(r->id, id) == 0)
			return r;
	return NULL;
}

int runs_watch(struct run *r, uint64_t session)
{
	size_t i;

	for (i = 0; i < r->n_watchers; i++)
		if (r->watchers[i] == session)
			return 0;
	if (r->n_watchers >= RUN_MAX_WATCHERS)
		return -ENOSPC;
	r->watchers[r->n_watchers++] = session;
	return 0;
}

void runs_unwatch(struct run *r, uint64_t session)
{
	size_t i;

	for (i = 0; i < r->n_watchers; i++) {
		if (r->watchers[i] != session)
			continue;
		memmove(&r->watchers[i], &r->watchers[i + 1],
			(r->n_watchers - i - 1) * sizeof r->watchers[0]);
		r->n_watchers--;
		return;
	}
}

static void run_free(struct run *r)
{
	lws_sul_cancel(&r->sul_timeout);
	lws_sul_cancel(&r->sul_kill);
	free(r->qp);
	free(r->qup.data);
	json_decref(r->req_params);
	json_decref(r->req_files);
	if (r->wsi)
		lws_set_opaque_user_data(r->wsi, NULL);
	if (r->events_fd >= 0)
		close(r->events_fd);
	run_linebuf_cleanup(&r->lb);
	json_decref(r->params);
	free(r);
}

/* Free finished runs at a safe point: never inside a callback using them. */
static void gc_cb(lws_sorted_usec_list_t *sul)
{
	struct run_mgr *m = lws_container_of(sul, struct run_mgr, sul_gc);
	struct run **pp = &m->runs;

	while (*pp) {
		struct run *r = *pp;
		if (r->sm.state == RUN_FINISHED && !r->wsi) {
			*pp = r->next;
			run_free(r);
			continue;
		}
		pp = &r->next;
	}
}

static void signal_group(struct run *r, int sig)
{
	if (r->pid <= 0)
		return;
	/* The child made itself a process group leader with setsid(); before it
	 * reaches it the group does not exist yet and the pid is signalled. A
	 * reaped pid is never signalled on its own: it may belong to someone
	 * else by now. */
	if (kill(-r->pid, sig) == 0)
		return;
	if (!r->sm.exited)
		kill(r->pid, sig);
}

static void exit_text(const struct run *r, char *buf, size_t len)
{
	if (r->pid <= 0 || !r->sm.exited)
		snprintf(buf, len, "no exit status");
	else if (WIFEXITED(r->wstatus))
		snprintf(buf, len, "its process exited with status %d", WEXITSTATUS(r->wstatus));
	else if (WIFSIGNALED(r->wstatus)) {
		const char *name = sigabbrev_np(WTERMSIG(r->wstatus));
		snprintf(buf, len, "its process was killed by signal %d (SIG%s)",
			 WTERMSIG(r->wstatus), name ? name : "?");
	} else
		snprintf(buf, len, "its process ended with wait status %d", r->wstatus);
}

/* Seconds between attempts to write meta.json files the disk refused. */
#define RUNS_RETRY_S 1

static void retry_cb(lws_sorted_usec_list_t *sul)
{
	struct run_mgr *m = lws_container_of(sul, struct run_mgr, sul_retry);

	if (bundle_store_retry(m->store) > 0)
		lws_sul_schedule(m->ctx, 0, &m->sul_retry, retry_cb,
				 (lws_usec_t)RUNS_RETRY_S * LWS_US_PER_SEC);
}

/* Record the run's meta.json through the store. final: the outcome is
 * known (the run is no longer live for pruning). */
static void run_meta(struct run *r, const char *status, int final)
{
	struct run_mgr *m = r->m;
	json_t *o;
	int rc;

	o = json_pack("{s:s, s:s, s:O, s:s, s:s, s:I, s:I, s:o, s:I}", "id", r->id, "lab",
		      r->lab->name, "params", r->params, "status", status, "created", r->created,
		      "duration_ms", (json_int_t)(final ? (mono_us() - r->t0_us) / 1000 : 0),
		      "events", (json_int_t)r->stored_events, "tag",
		      r->has_tag ? json_string(r->tag) : json_null(), "bytes",
		      (json_int_t)r->stored);
	if (!o)
		return;
	if (r->save_errno) {
		/* The truth about a bundle the disk refused: "events" counts
		 * the lines really stored; the run went on without them. */
		json_object_set_new(o, "incomplete", json_true());
		json_object_set_new(o, "events_seen", json_integer(r->next_seq));
		json_object_set_new(o, "save_error", json_string(strerror(r->save_errno)));
	}
	if (r->sm.reason == RUN_R_LIMIT)
		json_object_set_new(o, "limit", json_pack("{s:s, s:I, s:I}", "name", "max_run_data",
							  "bytes", (json_int_t)m->cfg->max_run_data,
							  "reached", (json_int_t)r->bytes));
	if (r->byo_port)
		json_object_set_new(o, "byo", json_pack("{s:s, s:i}", "host", m->cfg->byo_bind,
							"port", r->byo_port));
	if (final && r->pid > 0 && r->sm.exited) {
		if (WIFEXITED(r->wstatus))
			json_object_set_new(o, "exit", json_pack("{s:i}", "code",
								 WEXITSTATUS(r->wstatus)));
		else if (WIFSIGNALED(r->wstatus))
			json_object_set_new(o, "exit", json_pack("{s:i}", "signal",
								 WTERMSIG(r->wstatus)));
	}
	rc = bundle_store_put(m->store, r->id, o, !final, m->cfg->max_run_data);
	if (rc < 0) {
		/* Readers get the truth from the store's index meanwhile; the
		 * file follows when the disk has room again. */
		http_count(m->ctr, HTTP_C_BUNDLE_ERRORS, 1);
		if (!m->shutting_down)
			lws_sul_schedule(m->ctx, 0, &m->sul_retry, retry_cb,
					 (lws_usec_t)RUNS_RETRY_S * LWS_US_PER_SEC);
	}
	json_decref(o);
}

/* Record one event line and hand it to the owner and watchers. Once a line
 * could not be stored (the disk is full), no later one is: the file stays a
 * gap-free prefix of the stream, and meta.json says it is incomplete. */
static void run_deliver(struct run *r, const char *line, size_t len)
{
	struct run_mgr *m = r->m;
	int rc;

	if (r->events_fd >= 0 && !r->save_errno) {
		rc = bundle_append_line(r->events_fd, &r->stored, line, len);
		/* The disk is full: the oldest ended bundle makes room, once. */
		if ((rc == -ENOSPC || rc == -EDQUOT) && bundle_store_make_room(m->store, r->id) == 0)
			rc = bundle_append_line(r->events_fd, &r->stored, line, len);
		if (rc < 0) {
			r->save_errno = -rc;
			http_count(m->ctr, HTTP_C_BUNDLE_ERRORS, 1);
		} else {
			r->stored_events++;
		}
	}
	r->bytes += (long long)len + 1;
	if (m->hooks.line)
		m->hooks.line(m->hooks.arg, r, line, len);
}

/* Emit an event the child did not: same envelope, the next seq. */
static void run_synth(struct run *r, const char *type, json_t *fields)
{
	int64_t t = mono_us() - r->t0_us;
	json_t *ev;
	char *line;

	if (t < r->last_t_us)
		t = r->last_t_us;
	ev = json_pack("{s:i, s:s, s:I, s:I, s:s, s:s}", "v", EV_VERSION, "run", r->id, "seq",
		       (json_int_t)r->next_seq, "t_us", (json_int_t)t, "lab", r->lab->name, "type",
		       type);
	if (ev && fields)
		json_object_update(ev, fields);
	json_decref(fields);
	line = ev ? json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII) : NULL;
	json_decref(ev);
	if (!line)
		return;
	r->next_seq++;
	r->last_t_us = t;
	r->delivering_end = !strcmp(type, "run.end");
	run_deliver(r, line, strlen(line));
	r->delivering_end = 0;
	free(line);
}

static void run_finish(struct run *r)
{
	struct run_mgr *m = r->m;
	char detail[128], msg[512];

	lws_sul_cancel(&r->sul_timeout);
	lws_sul_cancel(&r->sul_kill);
	if (!r->sm.end_seen) {
		exit_text(r, detail, sizeof detail);
		switch (r->sm.reason) {
		case RUN_R_CANCELLED:
			snprintf(msg, sizeof msg, "the run was cancelled (%s)", detail);
			break;
		case RUN_R_TIMEOUT:
			snprintf(msg, sizeof msg, "the run passed its time limit of %d s (%s)",
				 m->cfg->run_timeout_s, detail);
			break;
		case RUN_R_BAD_OUTPUT:
			snprintf(msg, sizeof msg, "%s (%s)", r->why, detail);
			break;
		case RUN_R_LIMIT:
			snprintf(msg, sizeof msg,
				 "the run was stopped: its events reached this server's limit of "
				 "%lld bytes per run (--max-run-data) after %lld events and %lld "
				 "bytes; what came before is kept",
				 m->cfg->max_run_data, (long long)r->next_seq, r->bytes);
			break;
		default:
			snprintf(msg, sizeof msg, "the run ended without reporting run.end: %s",
				 detail);
			break;
		}
		snprintf(r->status, sizeof r->status, "%s", run_sm_status(&r->sm));
		run_synth(r, "error",
			  json_pack("{s:s, s:s}", "code", run_sm_error_code(&r->sm), "message", msg));
		run_synth(r, "run.end", json_pack("{s:s, s:{}}", "status", r->status, "summary"));
	}
	if (r->events_fd >= 0) {
		close(r->events_fd);
		r->events_fd = -1;
	}
	if (r->byo_port) {
		m->byo_used[r->byo_port - m->cfg->byo_lo] = 0;
		m->n_byo--;
	}
	m->n_active--;
	http_count(m->ctr, HTTP_C_RUNS_ACTIVE, -1);
	if (m->queue)
		lws_sul_schedule(m->ctx, 0, &m->sul_admit, admit_cb, 1);
	run_meta(r, r->status, 1);
	bundle_store_prune(m->store, 0);
	if (m->hooks.finished)
		m->hooks.finished(m->hooks.arg, r);
	r->n_watchers = 0;
	lws_sul_schedule(m->ctx, 0, &m->sul_gc, gc_cb, 1);
}

static void on_timeout(lws_sorted_usec_list_t *sul)
{
	run_input(lws_container_of(sul, struct run, sul_timeout), RUN_IN_TIMEOUT);
}

static void on_kill_timer(lws_sorted_usec_list_t *sul)
{
	run_input(lws_container_of(sul, struct run, sul_kill), RUN_IN_KILL_TIMER);
}

static void run_input(struct run *r, enum run_input in)
{
	struct run_mgr *m = r->m;
	unsigned acts = run_sm_step(&r->sm, in);

	if (acts & RUN_ACT_ARM_TIMEOUT)
		lws_sul_schedule(m->ctx, 0, &r->sul_timeout, on_timeout,
				 (lws_usec_t)(m->cfg->run_timeout_s + RUN_TIMEOUT_GRACE_S) *
					 LWS_US_PER_SEC);
	if (acts & RUN_ACT_TERM)
		signal_group(r, SIGTERM);
	if (acts & RUN_ACT_KILL)
		signal_group(r, SIGKILL);
	if (acts & RUN_ACT_ARM_KILL)
		lws_sul_schedule(m->ctx, 0, &r->sul_kill, on_kill_timer,
				 (lws_usec_t)RUN_KILL_GRACE_S * LWS_US_PER_SEC);
	if ((acts & RUN_ACT_CLOSE_PIPE) && r->wsi)
		lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	if (acts & RUN_ACT_FINISH)
		run_finish(r);
}

/* Refuse the rest of the run's output and end it; fmt says what was wrong. */
static void run_bad_output(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void run_bad_output(struct run *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(r->why, sizeof r->why, "event %lld: ", (long long)r->next_seq);
	va_start(ap, fmt);
	vsnprintf(r->why + n, sizeof r->why - (size_t)n, fmt, ap);
	va_end(ap);
	r->discard = 1;
	http_count(r->m->ctr, HTTP_C_BAD_OUTPUT, 1);
	run_input(r, RUN_IN_BAD_OUTPUT);
}

/* One line of the child's stdout. */
static int run_line(void *arg, char *line, size_t len)
{
	struct run *r = arg;
	json_error_t jerr;
	json_t *ev, *seq, *id, *type, *t;
	char *rewritten = NULL;
	int is_end;

	if (r->discard || r->sm.end_seen)
		return 0;
	if (r->bytes + (long long)len + 1 > r->m->cfg->max_run_data - RUN_CLOSE_RESERVE) {
		/* A valid run that says more than this server keeps: stop it,
		 * keep what came before, and say so (status "truncated"). */
		r->discard = 1;
		run_input(r, RUN_IN_LIMIT);
		return 0;
	}
	ev = json_loadb(line, len, 0, &jerr);
	if (!ev || !json_is_object(ev)) {
		run_bad_output(r, "the run printed something that is not a JSON object (%s)",
			       ev ? "another JSON value" : jerr.text);
		json_decref(ev);
		return 0;
	}
	seq = json_object_get(ev, "seq");
	id = json_object_get(ev, "run");
	type = json_object_get(ev, "type");
	t = json_object_get(ev, "t_us");
	if (!json_is_integer(seq) || json_integer_value(seq) != r->next_seq) {
		run_bad_output(r, "seq missing or not %lld", (long long)r->next_seq);
		goto out;
	}
	if (!json_is_string(id) || strcmp(json_string_value(id), r->id) != 0) {
		run_bad_output(r, "run id missing or not this run's");
		goto out;
	}
	if (!json_is_string(type)) {
		run_bad_output(r, "type missing");
		goto out;
	}
	if (json_is_integer(t) && json_integer_value(t) > r->last_t_us)
		r->last_t_us = json_integer_value(t);
	is_end = strcmp(json_string_value(type), "run.end") == 0;
	if (is_end) {
		const char *st = bundle_end_status(json_string_value(json_object_get(ev, "status")));
		if (!st)
			st = "error";
		/* The server's own time limit stopped it with SIGTERM, which the
		 * child reports as cancelled: say what really happened. */
		if (r->sm.reason == RUN_R_TIMEOUT && !strcmp(st, "cancelled")) {
			st = "timeout";
			json_object_set_new(ev, "status", json_string(st));
			rewritten = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER |
							   JSON_ENSURE_ASCII);
		}
		snprintf(r->status, sizeof r->status, "%s", st);
	}
	r->next_seq++;
	r->delivering_end = is_end;
	if (rewritten)
		run_deliver(r, rewritten, strlen(rewritten));
	else
		run_deliver(r, line, len);
	r->delivering_end = 0;
	if (is_end) {
		/* The outcome is known: record it before any client can see the
		 * run.end (sends happen later, in this same thread). The exit
		 * status is added when the process is reaped. */
		run_meta(r, r->status, 1);
		run_input(r, RUN_IN_END_SEEN);
	}
out:
	free(rewritten);
	json_decref(ev);
	return 0;
}

/* Reap r's process if it has exited. */
static void run_try_reap(struct run *r)
{
	int st;

	if (r->pid <= 0 || r->sm.exited)
		return;
	if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
		r->wstatus = st;
		run_input(r, RUN_IN_EXITED);
	}
}

/* Read once from the pipe. Returns 2 after data, 1 when nothing is there
 * now, 0 at end of file, -1 on error. */
static int run_read(struct run *r)
{
	char buf[65536];
	ssize_t n = read(r->pipe_fd, buf, sizeof buf);
	int rc;

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 1 : -1;
	if (n == 0)
		return 0;
	if (r->discard)
		return 2;
	rc = run_linebuf_feed(&r->lb, buf, (size_t)n, run_line, r);
	if (rc == -E2BIG)
		run_bad_output(r, "longer than 1 MiB");
	else if (rc < 0)
		run_bad_output(r, "could not be buffered");
	return 2;
}

int runs_pipe_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		       size_t len)
{
	struct run *r = lws_get_opaque_user_data(wsi);

	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (!r)
			return -1;
		return run_read(r) > 0 ? 0 : -1;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (!r)
			return 0;
		/* lws closes on hang-up; take whatever is still buffered first
		 * (bounded: a straggler may still be writing). */
		for (int i = 0; i < 64 && run_read(r) == 2; i++)
			;
		lws_set_opaque_user_data(wsi, NULL);
		r->wsi = NULL;
		r->pipe_fd = -1; /* lws closes it */
		if (r->paused) {
			r->paused = 0;
			http_count(r->m->ctr, HTTP_C_RUNS_THROTTLED, -1);
		}
		run_input(r, RUN_IN_EOF);
		/* Usually the process has just exited: reap it now rather than
		 * on the next turn of the loop. */
		run_try_reap(r);
		return 0;
	default:
		return 0;
	}
}

/* ======================================================================
 * Spawning
 * ====================================================================== */

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child_exec(const char *exe, int out_fd, int err_fd, char *const argv[],
		       pid_t parent)
{
	static const struct {
		int res;
		rlim_t lim;
	} limits[] = {
		{RLIMIT_NOFILE, 256},
		{RLIMIT_CPU, 60},
		{RLIMIT_FSIZE, 64ull * 1024 * 1024},
		{RLIMIT_CORE, 0},
	};
	static const char msg[] = "socklab serve: could not start the run (exec failed)\n";
	struct sigaction dfl;
	sigset_t none;
	size_t i;
	int devnull, sig;

	/* Signals as a freshly started program has them: default actions
	 * (the server ignores SIGPIPE) and nothing blocked (it blocks the
	 * signals it reads through a signalfd). */
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Its own session and process group: a cancel signals the group. */
	setsid();
	/* Die with the server, even if it is killed without ceremony. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	/* Descriptors first, limits after: with many connections open the
	 * server's lowest free descriptor is far above the run's limit of 256,
	 * where open() would fail once that limit is set. */
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
		_exit(127);
	close_range(3, ~0u, 0);
	for (i = 0; i < sizeof limits / sizeof limits[0]; i++) {
		struct rlimit rl = {.rlim_cur = limits[i].lim, .rlim_max = limits[i].lim};
		setrlimit(limits[i].res, &rl);
	}
	execv(exe, argv);
	if (errno == EPERM && strcmp(exe, "/proc/self/exe") != 0) {
		/* The lab program carries effective file capabilities the
		 * container does not grant (the kernel refuses to start it):
		 * run this binary instead, without privileges. The run's
		 * run.start says what that costs (no private namespace, ...). */
		static const char fb[] = "socklab serve: the lab program may not start here (EPERM: "
					 "its file capabilities are not granted); running the "
					 "server's own binary without capabilities\n";
		if (write(2, fb, sizeof fb - 1) < 0)
			_exit(127);
		execv("/proc/self/exe", argv);
	}
	if (write(2, msg, sizeof msg - 1) < 0)
		_exit(127);
	_exit(127);
}

#define ARGV_MAX (12 + 2 * LAB_MAX_PARAMS)

/* Build `socklab run LAB --json --run-id ID --timeout SEC --parent PID
 * -p K=V...` for the parameters given explicitly (and those the server
 * assigned), so the child applies its own defaults exactly as on the command
 * line. --parent re-arms the parent-death signal, which the kernel clears
 * when it starts a program with file capabilities. Strings are allocated
 * into store (freed by the caller). */
static int build_argv(const struct run *r, const struct lab_params *p, int timeout_s,
		      const char *pcap, char *argv[ARGV_MAX], char *store[LAB_MAX_PARAMS + 3])
{
	size_t i;
	int n = 0, k = 0;

	argv[n++] = "socklab";
	argv[n++] = "run";
	argv[n++] = (char *)r->lab->name;
	argv[n++] = "--json";
	argv[n++] = "--run-id";
	argv[n++] = (char *)r->id;
	argv[n++] = "--timeout";
	if (asprintf(&store[k], "%d", timeout_s) < 0)
		return -ENOMEM;
	argv[n++] = store[k++];
	argv[n++] = "--parent";
	if (asprintf(&store[k], "%d", (int)getpid()) < 0)
		return -ENOMEM;
	argv[n++] = store[k++];
	/* A lab that captures packets writes them into the bundle. */
	if (pcap) {
		argv[n++] = "--pcap";
		argv[n++] = (char *)pcap;
	}
	for (i = 0; i < r->lab->n_params && i < LAB_MAX_PARAMS; i++) {
		if (!p->v[i].set)
			continue;
		if (asprintf(&store[k], "%s=%s", r->lab->params[i].name, p->v[i].s) < 0)
			return -ENOMEM;
		argv[n++] = "-p";
		argv[n++] = store[k++];
	}
	argv[n] = NULL;
	return 0;
}

/* Create the bundle directory under a fresh id. */
static int make_bundle(struct run_mgr *m, struct run *r, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	int tries;

	/* A run that waited in the queue keeps the id its owner was told. */
	for (tries = 0; tries < 8; tries++) {
		if ((!r->queued_id || tries > 0) && ev_random_id(r->id) < 0) {
			snprintf(err, errlen, "could not make a run id");
			return -EIO;
		}
		if (runs_bundle_path(m->cfg->data, r->id, NULL, dir, sizeof dir) < 0) {
			snprintf(err, errlen, "could not make a run id");
			return -EIO;
		}
		if (mkdir(dir, 0700) == 0)
			return 0;
		if (errno != EEXIST) {
			int e = errno;
			snprintf(err, errlen, "could not create %.200s: %s", dir, strerror(e));
			return -e;
		}
	}
	snprintf(err, errlen, "could not find an unused run id");
	return -EEXIST;
}

/* Write an uploaded capture into the new bundle and point the lab's replay
 * parameter at it (the only way a browser names a file: the server's own). */
static int save_upload(struct run_mgr *m, struct run *r, struct lab_params *p,
		       const struct run_upload *up, char *err, size_t errlen)
{
	char path[PATH_MAX];
	const char *bad = NULL;
	int fd, rc;

	rc = runs_bundle_path(m->cfg->data, r->id, "upload.pcap", path, sizeof path);
	if (rc < 0) {
		snprintf(err, errlen, "bundle path too long");
		return rc;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || ev_write_all(fd, (const char *)up->data, up->len) < 0) {
		rc = -errno;
		snprintf(err, errlen, "could not save the uploaded capture: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	close(fd);
	if (lab_param_set(p, "replay", path, err, errlen) < 0 ||
	    lab_params_check(p, &bad, err, errlen) < 0)
		return -EINVAL;
	json_decref(r->params);
	r->params = lab_params_json(p);
	return 0;
}

/* Write the uploaded text files into the new bundle (upload-PARAM, 0600) and
 * point each parameter at its file. */
static int save_files(struct run_mgr *m, struct run *r, struct lab_params *p,
		      const struct run_upload *up, char *err, size_t errlen)
{
	char path[PATH_MAX], name[64];
	const char *bad = NULL;
	int i, fd, rc;

	for (i = 0; i < up->n_files; i++) {
		snprintf(name, sizeof name, "upload-%s", up->files[i].param);
		rc = runs_bundle_path(m->cfg->data, r->id, name, path, sizeof path);
		if (rc < 0) {
			snprintf(err, errlen, "bundle path too long");
			return rc;
		}
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || ev_write_all(fd, up->files[i].text, up->files[i].len) < 0) {
			rc = -errno;
			snprintf(err, errlen, "could not save the uploaded %s: %s", up->files[i].param,
				 strerror(errno));
			if (fd >= 0)
				close(fd);
			return rc == -EINVAL ? -EIO : rc;
		}
		close(fd);
		if (lab_param_set(p, up->files[i].param, path, err, errlen) < 0)
			return -EINVAL;
	}
	if (lab_params_check(p, &bad, err, errlen) < 0)
		return -EINVAL;
	json_decref(r->params);
	r->params = lab_params_json(p);
	return 0;
}

static int run_spawn(struct run_mgr *m, struct run *r, struct lab_params *p,
		     const struct run_upload *up, char *err, size_t errlen)
{
	char path[PATH_MAX], pcap[PATH_MAX];
	char *argv[ARGV_MAX];
	char *store[LAB_MAX_PARAMS + 3] = {0};
	int pfd[2] = {-1, -1};
	int err_fd = -1, rc, i;
	lws_adopt_desc_t ad;
	pid_t pid, self = getpid();

	rc = make_bundle(m, r, err, errlen);
	if (rc < 0)
		return rc;
	rc = runs_bundle_path(m->cfg->data, r->id, "events.jsonl", path, sizeof path);
	if (rc == 0) {
		r->events_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
		if (r->events_fd < 0)
			rc = -errno;
	}
	if (rc == 0)
		rc = runs_bundle_path(m->cfg->data, r->id, "stderr.log", path, sizeof path);
	if (rc == 0) {
		err_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (err_fd < 0)
			rc = -errno;
	}
	if (rc < 0) {
		snprintf(err, errlen, "could not create the run's bundle files: %s", strerror(-rc));
		goto out;
	}
	if (rc == 0 && up && up->data) {
		rc = save_upload(m, r, p, up, err, errlen);
		if (rc < 0)
			goto out;
	}
	if (rc == 0 && up && up->n_files) {
		rc = save_files(m, r, p, up, err, errlen);
		if (rc < 0)
			goto out;
	}
	if (r->lab->captures &&
	    runs_bundle_path(m->cfg->data, r->id, "capture.pcap", pcap, sizeof pcap) < 0) {
		rc = -ENAMETOOLONG;
		snprintf(err, errlen, "bundle path too long");
		goto out;
	}
	rc = build_argv(r, p, m->cfg->run_timeout_s, r->lab->captures ? pcap : NULL, argv, store);
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		rc = -errno;
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto out;
	}
	iso_now(r->created, sizeof r->created);
	r->t0_us = mono_us();
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		snprintf(err, errlen, "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0)
		child_exec(m->cfg->lab_exe, pfd[1], err_fd, argv, self);
	r->pid = pid;
	close(pfd[1]);
	pfd[1] = -1;
	fcntl(pfd[0], F_SETFL, fcntl(pfd[0], F_GETFL) | O_NONBLOCK);
	memset(&ad, 0, sizeof ad);
	ad.vh = m->vh;
	ad.type = LWS_ADOPT_RAW_FILE_DESC;
	ad.fd.filefd = pfd[0];
	ad.vh_prot_name = RUNS_PIPE_PROTOCOL;
	ad.opaque = r;
	r->pipe_fd = pfd[0];
	r->wsi = lws_adopt_descriptor_vhost_via_info(&ad);
	pfd[0] = -1; /* adopted, or closed by lws on failure */
	if (!r->wsi) {
		int st;
		r->pipe_fd = -1;
		kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		r->pid = 0;
		rc = -EIO;
		snprintf(err, errlen, "could not watch the run's output");
		goto out;
	}
	rc = 0;
out:
	for (i = 0; store[i]; i++)
		free(store[i]);
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (err_fd >= 0)
		close(err_fd);
	if (rc < 0) {
		char dir[PATH_MAX];
		if (r->events_fd >= 0) {
			close(r->events_fd);
			r->events_fd = -1;
		}
		/* Leave no half-made bundle behind. */
		if (runs_bundle_path(m->cfg->data, r->id, "events.jsonl", path, sizeof path) == 0)
			unlink(path);
		if (runs_bundle_path(m->cfg->data, r->id, "stderr.log", path, sizeof path) == 0)
			unlink(path);
		if (runs_bundle_path(m->cfg->data, r->id, "upload.pcap", path, sizeof path) == 0)
			unlink(path);
		if (runs_bundle_path(m->cfg->data, r->id, NULL, dir, sizeof dir) == 0)
			rmdir(dir);
	}
	return rc;
}

/* ======================================================================
 * Requests
 * ====================================================================== */

static int refuse(struct run_error *e, const char *code, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int refuse(struct run_error *e, const char *code, const char *param, const char *fmt, ...)
{
	va_list ap;

	e->code = code;
	snprintf(e->param, sizeof e->param, "%s", param ? param : "");
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof e->message, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int port_bindable(const char *addr, int port)
{
	static const int types[] = {SOCK_STREAM, SOCK_DGRAM};
	struct sockaddr_storage ss;
	socklen_t len;
	size_t i;
	int fd, one = 1, ok = 1;

	if (lsock_parse_addr(addr, port, &ss, &len) < 0)
		return 0;
	/* Labs serve TCP (tcp-echo) or UDP (udp-ping): the port must be free for both. */
	for (i = 0; ok && i < sizeof types / sizeof types[0]; i++) {
		fd = socket(ss.ss_family, types[i] | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return 0;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
		close(fd);
	}
	return ok;
}

/* The first pool port that no run of ours holds and nothing else has bound. */
static int byo_pick(struct run_mgr *m)
{
	int port;

	for (port = m->cfg->byo_lo; port <= m->cfg->byo_hi; port++)
		if (!m->byo_used[port - m->cfg->byo_lo] && port_bindable(m->cfg->byo_bind, port))
			return port;
	return -1;
}

static void count_owned(const struct run_mgr *m, uint64_t owner, int *runs, int *byo)
{
	const struct run *r;

	*runs = *byo = 0;
	for (r = m->runs; r; r = r->next) {
		if (r->sm.state == RUN_FINISHED || r->owner != owner)
			continue;
		(*runs)++;
		if (r->byo_port)
			(*byo)++;
	}
	for (r = m->queue; r; r = r->next) {
		if (r->owner != owner)
			continue;
		(*runs)++;
		if (r->byo_port)
			(*byo)++;
	}
}

static void known_labs(char *buf, size_t len)
{
	size_t i, off = 0;

	buf[0] = '\0';
	for (i = 0; lab_registry[i] && off < len; i++) {
		int w = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", lab_registry[i]->name);
		if (w < 0)
			break;
		off += (size_t)w;
	}
}

/* Check the request and fill p; on success *byo says whether the run needs
 * a bring-your-own-client port. */
static int check_request(struct run_mgr *m, uint64_t owner, const struct lab_desc *lab,
			 const json_t *params, struct lab_params *p, int *byo, struct run_error *e)
{
	const struct serve_config *c = m->cfg;
	const char *key;
	json_t *val;
	char msg[512];
	int n_runs, n_byo;

	lab_params_init(p, lab);
	if (params && !json_is_object(params))
		return refuse(e, "bad_request", "params", "'params' must be a JSON object");
	json_object_foreach((json_t *)params, key, val) {
		int idx = lab_param_index(lab, key);
		if (idx >= 0 && (lab->params[idx].flags & LAB_PF_SERVER))
			return refuse(e, "bad_param", key, "parameter '%s' is assigned by the server",
				      lab->params[idx].name);
		if (lab_param_set_json(p, key, val, msg, sizeof msg) < 0)
			return refuse(e, "bad_param", idx >= 0 ? lab->params[idx].name : key, "%s",
				      msg);
	}
	*byo = lab->network && lab->network(p) == LAB_NET_HOST;
	if (m->shutting_down)
		return refuse(e, "limit", NULL, "the server is shutting down");
	count_owned(m, owner, &n_runs, &n_byo);
	if (n_runs >= c->max_runs_per_conn)
		return refuse(e, "limit", NULL,
			      "this connection already has %d runs in progress (the limit is %d)",
			      n_runs, c->max_runs_per_conn);
	if (*byo) {
		if ((c->max_byo == 0 || c->max_byo_per_conn == 0) && c->byo_url[0])
			return refuse(e, "limit", NULL,
				      "bring-your-own-client runs are disabled on this server; "
				      "open %s to run them",
				      c->byo_url);
		if (c->max_byo == 0 || c->max_byo_per_conn == 0)
			return refuse(e, "limit", NULL,
				      "bring-your-own-client runs are disabled on this server");
		if (n_byo >= c->max_byo_per_conn)
			return refuse(e, "limit", NULL,
				      "this connection already has %d bring-your-own-client run%s "
				      "(the limit is %d)",
				      n_byo, n_byo == 1 ? "" : "s", c->max_byo_per_conn);
		if (m->n_byo >= c->max_byo)
			return refuse(e, "limit", NULL,
				      "the server allows at most %d bring-your-own-client runs at "
				      "once; try again when one ends",
				      c->max_byo);
	}
	/* Room on disk for everything this run may record: the oldest
	 * bundles go first; runs in progress keep theirs. */
	if (m->store && bundle_store_prune(m->store, c->max_run_data) < 0)
		return refuse(e, "limit", NULL,
			      "the runs in progress hold all the space this server keeps for runs "
			      "(--max-data, %lld bytes; each run may record %lld bytes); try again "
			      "when one ends",
			      c->max_data, c->max_run_data);
	return 0;
}

/* Start r (checked, not yet spawned): its bundle, its process, and its
 * place in m->runs. 0, or a refusal in e (r is then the caller's to free). */
static int run_launch(struct run_mgr *m, struct run *r, struct run_error *e)
{
	char msg[512];
	int rc;

	if (m->store && bundle_store_prune(m->store, m->cfg->max_run_data) < 0)
		return refuse(e, "limit", NULL,
			      "the runs in progress hold all the space this server keeps for runs "
			      "(--max-data, %lld bytes; each run may record %lld bytes); try again "
			      "when one ends",
			      m->cfg->max_data, m->cfg->max_run_data);
	rc = run_spawn(m, r, r->qp, r->qup.data || r->qup.n_files ? &r->qup : NULL, msg,
		       sizeof msg);
	if (rc < 0)
		/* A refused upload is the client's error; anything else is ours. */
		return rc == -EINVAL ? refuse(e, "bad_param", r->qup.n_files ? "files" : "pcap",
					      "%s", msg)
				     : refuse(e, "internal", NULL, "%s", msg);
	free(r->qp);
	r->qp = NULL;
	free(r->qup.data);
	memset(&r->qup, 0, sizeof r->qup);
	r->next = m->runs;
	m->runs = r;
	m->n_active++;
	http_count(m->ctr, HTTP_C_RUNS_ACTIVE, 1);
	http_count(m->ctr, HTTP_C_RUNS_STARTED, 1);
	snprintf(r->status, sizeof r->status, "running");
	run_meta(r, "running", 0);
	run_input(r, RUN_IN_SPAWN_OK);
	return 0;
}

static void run_release_port(struct run_mgr *m, struct run *r)
{
	if (!r->byo_port)
		return;
	m->byo_used[r->byo_port - m->cfg->byo_lo] = 0;
	m->n_byo--;
	r->byo_port = 0;
}

/* ---- admission ---- */

/* Whether a goes before b: class runs first, then each owner's first run
 * ahead of anyone's second (round), then arrival. */
static int queue_before(const struct run *a, const struct run *b)
{
	if (a->cls != b->cls)
		return a->cls;
	if (a->round != b->round)
		return a->round < b->round;
	return a->qseq < b->qseq;
}

static int queue_position(const struct run_mgr *m, const struct run *r)
{
	const struct run *q;
	int i = 1;

	for (q = m->queue; q && q != r; q = q->next)
		i++;
	return i;
}

static void queue_arm_deadline(struct run_mgr *m);

/* Put r in line: its position (1: next to start), or a refusal. */
static int queue_add(struct run_mgr *m, struct run *r, unsigned flags, struct run_error *e)
{
	const struct serve_config *c = m->cfg;
	struct run **pp;
	int n_runs, n_byo;

	if (!(flags & RUN_F_QUEUE))
		return refuse(e, "limit", NULL,
			      "the server is running %d runs, its limit (--max-runs %d); try again "
			      "when one ends",
			      m->n_active, c->max_runs);
	if (m->n_queued >= c->queue_max) {
		http_count(m->ctr, HTTP_C_QUEUE_FULL, 1);
		return refuse(e, "limit", NULL,
			      "the server is running %d runs (its limit, --max-runs %d) and %d "
			      "more are waiting, as many as its queue holds (--queue-max %d); "
			      "try again in a minute",
			      m->n_active, c->max_runs, m->n_queued, c->queue_max);
	}
	count_owned(m, r->owner, &n_runs, &n_byo);
	if (ev_random_id(r->id) < 0)
		return refuse(e, "internal", NULL, "could not make a run id");
	r->queued_id = 1;
	r->round = n_runs;
	r->qseq = m->next_qseq++;
	r->q_since_us = mono_us();
	r->q_deadline_us = r->q_since_us + (int64_t)c->queue_wait_s * 1000000;
	r->queued = 1;
	for (pp = &m->queue; *pp && !queue_before(r, *pp); pp = &(*pp)->next)
		;
	r->next = *pp;
	*pp = r;
	m->n_queued++;
	http_count(m->ctr, HTTP_C_RUNS_QUEUED, 1);
	r->q_pos_sent = queue_position(m, r);
	queue_arm_deadline(m);
	/* Someone behind it moved back: tell them on the next turn; a free
	 * slot (a run just ended) is filled there too. */
	lws_sul_schedule(m->ctx, 0, &m->sul_admit, admit_cb, 1);
	return r->q_pos_sent;
}

/* Unlink r from the queue (it is still the caller's). */
static void queue_remove(struct run_mgr *m, struct run *r)
{
	struct run **pp;

	for (pp = &m->queue; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			r->next = NULL;
			r->queued = 0;
			m->n_queued--;
			http_count(m->ctr, HTTP_C_RUNS_QUEUED, -1);
			return;
		}
	}
}

/* Tell everyone still waiting whose place changed. */
static void queue_tell(struct run_mgr *m)
{
	struct run *r;
	int i = 1;

	for (r = m->queue; r; r = r->next, i++) {
		if (r->q_pos_sent == i)
			continue;
		r->q_pos_sent = i;
		if (m->hooks.queued)
			m->hooks.queued(m->hooks.arg, r, i, m->n_queued);
	}
}

/* Start waiting runs while slots are free; runs on its own loop turn,
 * never inside a callback that is using a run. */
static void admit_cb(lws_sorted_usec_list_t *sul)
{
	struct run_mgr *m = lws_container_of(sul, struct run_mgr, sul_admit);
	struct run_error e;

	while (m->queue && m->n_active < m->cfg->max_runs && !m->shutting_down) {
		struct run *r = m->queue;
		long long waited;

		queue_remove(m, r);
		memset(&e, 0, sizeof e);
		if (run_launch(m, r, &e) < 0) {
			if (m->hooks.refused)
				m->hooks.refused(m->hooks.arg, r, &e);
			run_release_port(m, r);
			run_free(r);
			continue;
		}
		waited = (r->t0_us - r->q_since_us) / 1000;
		m->q_admitted++;
		m->q_wait_ms_total += waited;
		if (waited > m->q_wait_ms_max)
			m->q_wait_ms_max = waited;
		http_count(m->ctr, HTTP_C_QUEUE_ADMITTED, 1);
		http_count(m->ctr, HTTP_C_QUEUE_WAIT_MS, waited);
		if (waited > http_counters_get(m->ctr, HTTP_C_QUEUE_WAIT_MS_MAX))
			http_count(m->ctr, HTTP_C_QUEUE_WAIT_MS_MAX,
				   waited - http_counters_get(m->ctr, HTTP_C_QUEUE_WAIT_MS_MAX));
		if (m->hooks.admitted)
			m->hooks.admitted(m->hooks.arg, r);
	}
	queue_tell(m);
	queue_arm_deadline(m);
}

/* Refuse every waiting run whose deadline has passed. */
static void deadline_cb(lws_sorted_usec_list_t *sul)
{
	struct run_mgr *m = lws_container_of(sul, struct run_mgr, sul_deadline);
	int64_t now = mono_us();
	struct run *r, *next;
	struct run_error e;

	for (r = m->queue; r; r = next) {
		next = r->next;
		if (r->q_deadline_us > now)
			continue;
		queue_remove(m, r);
		memset(&e, 0, sizeof e);
		refuse(&e, "limit", NULL,
		       "the run waited %d s for a free slot, the longest a run may wait "
		       "(--queue-wait %d); the server runs at most %d at once (--max-runs) and "
		       "%d more are waiting; try again later",
		       m->cfg->queue_wait_s, m->cfg->queue_wait_s, m->cfg->max_runs, m->n_queued);
		http_count(m->ctr, HTTP_C_QUEUE_EXPIRED, 1);
		if (m->hooks.refused)
			m->hooks.refused(m->hooks.arg, r, &e);
		run_release_port(m, r);
		run_free(r);
	}
	queue_tell(m);
	queue_arm_deadline(m);
}

static void queue_arm_deadline(struct run_mgr *m)
{
	int64_t first = 0, now = mono_us();
	struct run *r;

	for (r = m->queue; r; r = r->next)
		if (!first || r->q_deadline_us < first)
			first = r->q_deadline_us;
	if (!first) {
		lws_sul_cancel(&m->sul_deadline);
		return;
	}
	lws_sul_schedule(m->ctx, 0, &m->sul_deadline, deadline_cb,
			 first > now ? (lws_usec_t)(first - now) : 1);
}

/* The waiting run id, or NULL. */
static struct run *queue_find(struct run_mgr *m, const char *id)
{
	struct run *r;

	for (r = m->queue; r; r = r->next)
		if (!strcmp(r->id, id))
			return r;
	return NULL;
}

int runs_base64_decode(const char *in, uint8_t *out, size_t cap)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t acc = 0;
	size_t n = 0, len = strlen(in), i;
	int bits = 0, pad = 0;

	if (len % 4)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		const char *pos;
		if (in[i] == '=') {
			/* Padding: at most two, only at the very end. */
			if (i < len - 2 || ++pad > 2)
				return -EINVAL;
			continue;
		}
		if (pad)
			return -EINVAL;
		pos = memchr(alphabet, in[i], 64);
		if (!pos || !in[i])
			return -EINVAL;
		acc = acc << 6 | (uint32_t)(pos - alphabet);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == cap)
				return -E2BIG;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	return (int)n;
}

int runs_start(struct run_mgr *m, uint64_t owner, const char *lab_name, const json_t *params,
	       const char *tag, char id[EV_RUN_ID_LEN + 1], struct run_error *e)
{
	return runs_start_upload(m, owner, lab_name, params, NULL, tag, id, e);
}

int runs_start_upload(struct run_mgr *m, uint64_t owner, const char *lab_name,
		      const json_t *params, const char *pcap_b64, const char *tag,
		      char id[EV_RUN_ID_LEN + 1], struct run_error *e)
{
	return runs_start_files(m, owner, lab_name, params, pcap_b64, NULL, tag, id, e);
}

/* Check the request's "files" against the lab's upload parameters and borrow
 * them into up. 0, or a refusal. */
static int take_files(const struct lab_desc *lab, const json_t *files, struct run_upload *up,
		      struct run_error *e)
{
	const char *key;
	json_t *val;

	if (!files)
		return 0;
	if (!json_is_object(files))
		return refuse(e, "bad_request", "files",
			      "'files' must be an object of parameter names and file texts");
	json_object_foreach((json_t *)files, key, val) {
		int idx = lab_param_index(lab, key);
		size_t len;

		if (idx < 0 || !(lab->params[idx].flags & LAB_PF_UPLOAD))
			return refuse(e, "bad_request", "files", "lab %s takes no file '%.64s'",
				      lab->name, key);
		if (!json_is_string(val))
			return refuse(e, "bad_param", lab->params[idx].name,
				      "file '%s' must be text (a JSON string)", lab->params[idx].name);
		len = json_string_length(val);
		if (len > RUN_FILE_MAX)
			return refuse(e, "limit", lab->params[idx].name,
				      "file '%s' is %zu bytes; at most %d may be uploaded",
				      lab->params[idx].name, len, RUN_FILE_MAX);
		if (strlen(json_string_value(val)) != len)
			return refuse(e, "bad_param", lab->params[idx].name,
				      "file '%s' holds a NUL byte", lab->params[idx].name);
		if (len == 0)
			continue; /* an empty editor: no such program */
		if (up->n_files == RUN_FILES_MAX)
			return refuse(e, "limit", "files", "at most %d files per run", RUN_FILES_MAX);
		up->files[up->n_files].param = lab->params[idx].name;
		up->files[up->n_files].text = json_string_value(val);
		up->files[up->n_files].len = len;
		up->n_files++;
	}
	return 0;
}

int runs_start_files(struct run_mgr *m, uint64_t owner, const char *lab_name,
		     const json_t *params, const char *pcap_b64, const json_t *files,
		     const char *tag, char id[EV_RUN_ID_LEN + 1], struct run_error *e)
{
	return runs_submit(m, owner, lab_name, params, pcap_b64, files, tag, 0, id, NULL, e);
}

int runs_submit(struct run_mgr *m, uint64_t owner, const char *lab_name, const json_t *params,
		const char *pcap_b64, const json_t *files, const char *tag, unsigned flags,
		char id[EV_RUN_ID_LEN + 1], int *pos, struct run_error *e)
{
	struct run_upload up;
	const struct lab_desc *lab;
	struct lab_params *p = NULL;
	struct run *r = NULL;
	const char *bad = NULL;
	char msg[512], labs[256], portbuf[16];
	int byo = 0, port = 0, rc;

	memset(&up, 0, sizeof up);
	memset(e, 0, sizeof *e);
	lab = lab_name ? lab_find(lab_name) : NULL;
	if (!lab) {
		known_labs(labs, sizeof labs);
		return refuse(e, "unknown_lab", "lab", "unknown lab '%.64s'; known: %s",
			      lab_name ? lab_name : "", labs);
	}
	p = calloc(1, sizeof *p);
	r = calloc(1, sizeof *r);
	if (!p || !r) {
		rc = refuse(e, "internal", NULL, "out of memory");
		goto out;
	}
	rc = check_request(m, owner, lab, params, p, &byo, e);
	if (rc == 0)
		rc = take_files(lab, files, &up, e);
	if (rc < 0)
		goto out;
	if (pcap_b64) {
		int idx = lab_param_index(lab, "replay");
		int n;

		if (!lab->captures || idx < 0 || !(lab->params[idx].flags & LAB_PF_SERVER)) {
			rc = refuse(e, "bad_request", "pcap", "lab %s does not replay captures",
				    lab->name);
			goto out;
		}
		if (strlen(pcap_b64) > (RUN_UPLOAD_MAX + 2) / 3 * 4) {
			rc = refuse(e, "limit", "pcap",
				    "the capture is larger than the %d bytes a browser may upload",
				    RUN_UPLOAD_MAX);
			goto out;
		}
		up.data = malloc(RUN_UPLOAD_MAX);
		n = up.data ? runs_base64_decode(pcap_b64, up.data, RUN_UPLOAD_MAX) : -ENOMEM;
		if (n <= 0) {
			rc = refuse(e, n == -ENOMEM ? "internal" : n == -E2BIG ? "limit" : "bad_request",
				    "pcap",
				    n == -E2BIG ? "the capture is larger than the %d bytes a browser "
						  "may upload"
						: "'pcap' must be a capture file in base64 (at most %d "
						  "bytes)",
				    RUN_UPLOAD_MAX);
			goto out;
		}
		up.len = (size_t)n;
	}
	if (byo) {
		port = byo_pick(m);
		if (port < 0) {
			rc = refuse(e, "limit", NULL,
				    "all %d bring-your-own-client ports are in use (%d-%d)",
				    m->cfg->byo_hi - m->cfg->byo_lo + 1, m->cfg->byo_lo,
				    m->cfg->byo_hi);
			goto out;
		}
		snprintf(portbuf, sizeof portbuf, "%d", port);
		if ((lab_param_index(lab, "port") >= 0 &&
		     lab_param_set(p, "port", portbuf, msg, sizeof msg) < 0) ||
		    (lab_param_index(lab, "bind") >= 0 &&
		     lab_param_set(p, "bind", m->cfg->byo_bind, msg, sizeof msg) < 0)) {
			rc = refuse(e, "internal", NULL, "could not assign the run's address: %s",
				    msg);
			goto out;
		}
	}
	/* Uploaded files set their parameters later; their check comes then. */
	if (!up.n_files && lab_params_check(p, &bad, msg, sizeof msg) < 0) {
		rc = refuse(e, "bad_param", bad, "%s", msg);
		goto out;
	}
	if (!m->ctx) {
		/* A manager without an event loop only checks (ws_offline). */
		rc = refuse(e, "internal", NULL,
			    "this server only checks requests; it has no event loop to run them");
		goto out;
	}
	r->m = m;
	r->lab = lab;
	r->owner = owner;
	r->events_fd = -1;
	r->pipe_fd = -1;
	r->cls = !!(flags & RUN_F_CLASS);
	r->params = lab_params_json(p);
	if (tag) {
		r->has_tag = 1;
		snprintf(r->tag, sizeof r->tag, "%s", tag);
	}
	run_sm_init(&r->sm);
	run_linebuf_init(&r->lb, RUN_LINE_MAX);
	r->qp = p;
	r->qup = up;
	p = NULL;
	up.data = NULL;
	if (files)
		r->req_files = json_incref((json_t *)files);
	if (json_is_object(params))
		r->req_params = json_incref((json_t *)params);
	if (port) {
		r->byo_port = port;
		m->byo_used[port - m->cfg->byo_lo] = 1;
		m->n_byo++;
	}
	/* A free slot and nobody waiting: start now. Otherwise wait in line
	 * (or, without RUN_F_QUEUE or past the queue's bound, be refused). */
	if (m->n_active < m->cfg->max_runs && !m->queue) {
		rc = run_launch(m, r, e);
		if (rc < 0) {
			run_release_port(m, r);
			run_free(r);
			r = NULL;
			goto out;
		}
		memcpy(id, r->id, EV_RUN_ID_LEN + 1);
		r = NULL;
		rc = 0;
		goto out;
	}
	rc = queue_add(m, r, flags, e);
	if (rc < 0) {
		run_release_port(m, r);
		run_free(r);
		r = NULL;
		goto out;
	}
	memcpy(id, r->id, EV_RUN_ID_LEN + 1);
	if (pos)
		*pos = rc;
	r = NULL;
	rc = 1;
out:
	free(up.data);
	free(r);
	free(p);
	return rc;
}

int runs_set_owner(struct run_mgr *m, const char *id, uint64_t owner)
{
	struct run *r = queue_find(m, id);

	if (!r)
		r = runs_find(m, id);
	if (!r)
		return -ENOENT;
	if (r->paused)
		runs_pause_owner(m, r->owner, 0);
	r->owner = owner;
	return 0;
}

int runs_cancel(struct run_mgr *m, uint64_t session, const char *id, struct run_error *e)
{
	struct run *r;

	memset(e, 0, sizeof *e);
	if (!ev_valid_run_id(id))
		return refuse(e, "bad_request", "run", "run id must be 16 lowercase hex digits");
	r = queue_find(m, id);
	if (r) {
		if (r->owner != session)
			return refuse(e, "not_owner", "run",
				      "run %s was asked for by another connection; only it may cancel "
				      "it", id);
		/* It never started: no bundle, no process; it just leaves the line. */
		queue_remove(m, r);
		run_release_port(m, r);
		run_free(r);
		lws_sul_schedule(m->ctx, 0, &m->sul_admit, admit_cb, 1);
		return 1;
	}
	r = runs_find(m, id);
	if (!r) {
		json_t *meta = m->store ? bundle_store_get(m->store, id) : NULL;
		json_decref(meta);
		if (meta)
			return refuse(e, "not_running", "run", "run %s has already ended", id);
		return refuse(e, "unknown_run", "run", "no run %s", id);
	}
	if (r->owner != session)
		return refuse(e, "not_owner", "run",
			      "run %s was started by another connection; only it may cancel it", id);
	run_input(r, RUN_IN_CANCEL);
	return 0;
}

void runs_session_closed(struct run_mgr *m, uint64_t session)
{
	struct run *r, *next;
	int left = 0;

	for (r = m->queue; r; r = next) {
		next = r->next;
		if (r->owner != session)
			continue;
		queue_remove(m, r);
		run_release_port(m, r);
		run_free(r);
		left = 1;
	}
	if (left)
		lws_sul_schedule(m->ctx, 0, &m->sul_admit, admit_cb, 1);

	for (r = m->runs; r; r = r->next) {
		if (r->sm.state == RUN_FINISHED)
			continue;
		runs_unwatch(r, session);
		if (r->owner == session)
			run_input(r, RUN_IN_CANCEL);
	}
}

void runs_reap(struct run_mgr *m)
{
	struct run *r;
	int i;

	for (r = m->runs; r; r = r->next)
		run_try_reap(r);
	/* As PID 1 of a container the server also inherits orphans (a process
	 * a run started that outlived it). Reap those too, without touching a
	 * run's status: look first (WNOWAIT), then reap only strangers. */
	for (i = 0; i < 64; i++) {
		siginfo_t si;
		int st;

		memset(&si, 0, sizeof si);
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
			break;
		for (r = m->runs; r; r = r->next)
			if (r->pid == si.si_pid && !r->sm.exited)
				break;
		if (r)
			run_try_reap(r);
		else
			waitpid(si.si_pid, &st, WNOHANG);
	}
}

void runs_shutdown(struct run_mgr *m)
{
	struct run *r;

	m->shutting_down = 1;
	while (m->queue) {
		struct run_error e;

		r = m->queue;
		queue_remove(m, r);
		memset(&e, 0, sizeof e);
		refuse(&e, "limit", NULL, "the server is shutting down");
		if (m->hooks.refused)
			m->hooks.refused(m->hooks.arg, r, &e);
		run_release_port(m, r);
		run_free(r);
	}
	for (r = m->runs; r; r = r->next)
		run_input(r, RUN_IN_CANCEL);
}

int runs_create(struct run_mgr **out, const struct serve_config *cfg, struct lws_context *ctx,
		struct lws_vhost *vh, const struct run_hooks *hooks, struct http_counters *counters,
		struct bundle_store *store, char *err, size_t errlen)
{
	struct run_mgr *m = calloc(1, sizeof *m);

	if (m)
		m->byo_used = calloc((size_t)(cfg->byo_hi - cfg->byo_lo + 1), 1);
	if (!m || !m->byo_used) {
		free(m);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	m->cfg = cfg;
	m->ctx = ctx;
	m->vh = vh;
	m->hooks = *hooks;
	m->ctr = counters;
	m->store = store;
	*out = m;
	return 0;
}

void runs_destroy(struct run_mgr *m)
{
	struct run *r;

	if (!m)
		return;
	/* Normally every run has finished by now. Any that has not is killed
	 * and recorded as cancelled, with nobody left to tell. */
	m->hooks.line = NULL;
	m->hooks.finished = NULL;
	for (r = m->runs; r; r = r->next) {
		if (r->sm.state == RUN_FINISHED)
			continue;
		if (r->pid > 0 && !r->sm.exited) {
			signal_group(r, SIGKILL);
			while (waitpid(r->pid, &r->wstatus, 0) < 0 && errno == EINTR)
				;
		}
		if (r->sm.reason == RUN_R_NONE)
			r->sm.reason = RUN_R_CANCELLED;
		r->sm.exited = 1;
		r->sm.eof = 1;
		r->sm.state = RUN_FINISHED;
		run_finish(r);
	}
	lws_sul_cancel(&m->sul_gc);
	lws_sul_cancel(&m->sul_retry);
	lws_sul_cancel(&m->sul_admit);
	lws_sul_cancel(&m->sul_deadline);
	while (m->queue) {
		r = m->queue;
		queue_remove(m, r);
		run_release_port(m, r);
		run_free(r);
	}
	/* A last try for records the disk refused so far. */
	if (m->store)
		bundle_store_retry(m->store);
	while (m->runs) {
		r = m->runs;
		m->runs = r->next;
		run_free(r);
	}
	free(m->byo_used);
	free(m);
}
