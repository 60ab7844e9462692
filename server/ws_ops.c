/* ws_ops.c: the socklab.v1 ops (run, cancel, watch, ping), watch replay, and the run hooks that fan a run's events out to its owner and watchers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "bus.h"
#include "ws_int.h"

/* ---- watch replay ---- */

/* At the end of the copy of another replica's run (len: a part of a line
 * being written, or <= 0). 1: keep the watch (more will come, or one more
 * look is due); 0: it is over (what ends it has been sent). */
static int remote_at_end(struct ws_session *s, struct ws_watch *w, ssize_t len)
{
	char why[240];
	long long events;
	enum bus_mirror_state st;

	/* A line half written: read it again whole later. */
	if (len > 0)
		fseeko(w->f, -(off_t)len, SEEK_CUR);
	clearerr(w->f);
	st = bus_mirror_state(s->srv->bus, w->run, &events, why, sizeof why);
	if (st == BUS_M_FETCHING || st == BUS_M_LIVE) {
		w->waiting = 1;
		return 1;
	}
	if (!w->last_look) {
		/* Over now: whatever was written before it was is read first. */
		w->last_look = 1;
		return 1;
	}
	if (len > 0)
		return 1;
	if (st == BUS_M_INCOMPLETE)
		ws_send_json(s, json_pack("{s:s, s:s, s:I, s:s}", "type", "watch.incomplete", "run",
					  w->run, "events", (json_int_t)events, "reason", why));
	else if (st == BUS_M_FAILED)
		ws_send_error(s, "stream_error", "run", why, NULL, w->run);
	return 0;
}

void ws_remote_wake(struct ws_server *srv)
{
	size_t i;
	int k;

	for (i = 0; i < srv->n_slots; i++) {
		struct ws_session *s = srv->slots[i];
		int woke = 0;
		if (!s || !s->wsi)
			continue;
		for (k = 0; k < s->n_watches; k++) {
			if (s->watches[k].remote && s->watches[k].waiting) {
				s->watches[k].waiting = 0;
				woke = 1;
			}
		}
		if (woke)
			ws_want_write(s->wsi);
	}
}

/* Move replayed lines into the queue while it is short. At the end of a
 * file the watch turns live if the run is still going (everything it has
 * written so far has been read: the file is appended to before any line is
 * delivered, on this same thread), else it is done. */
void ws_pump_replays(struct ws_session *s)
{
	int i = 0, n = 0;

	while (i < s->n_watches && s->q_count < WS_REPLAY_LOW && !s->overflowed) {
		struct ws_watch *w = &s->watches[i];
		ssize_t len;
		struct run *r;

		if (!w->f) {
			i++;
			continue;
		}
		if (n++ >= WS_REPLAY_BATCH)
			break;
		len = getline(&s->line, &s->line_cap, w->f);
		if (len > 0 && s->line[len - 1] == '\n') {
			ws_enqueue(s, s->line, (size_t)len - 1);
			continue;
		}
		if (w->remote) {
			if (remote_at_end(s, w, len))
				i++;
			else
				ws_watch_drop(s, i);
			continue;
		}
		if (len > 0)
			continue; /* a torn last line (a crashed server); skip it */
		fclose(w->f);
		w->f = NULL;
		r = s->srv->runs ? runs_find(s->srv->runs, w->run) : NULL;
		if (r && runs_watch(r, s->id) == 0) {
			w->live = 1;
			i++;
			continue;
		}
		if (r)
			ws_send_error(s, "limit", "run", "too many connections watch this run", NULL,
				   w->run);
		ws_watch_drop(s, i);
	}
}

int ws_has_replay(const struct ws_session *s)
{
	int i;

	for (i = 0; i < s->n_watches; i++)
		if (s->watches[i].f && !s->watches[i].waiting)
			return 1;
	return 0;
}

/* ---- run hooks ---- */

void ws_hook_line(void *arg, const struct run *r, const char *line, size_t len)
{
	struct ws_server *srv = arg;
	uint64_t owner = run_owner(r);
	struct ws_session *s = ws_session_find(srv, owner);
	const uint64_t *ids;
	size_t i, n;

	/* The class run's events go to the class ring, which the instructor
	 * reads too; everything else straight to the owner's queue. */
	struct ws_class *c = ws_class_of_run(srv, run_id(r));

	/* --nats: every line goes to the stream too, as to the bundle. */
	bus_publish(srv->bus, run_id(r), line, len);

	/* (A class run is found by its class: while the instructor is away it
	 * has no owner.) */
	if (c) {
		ws_class_push(c, line, len);
		/* Its run.end is in the ring: the run is over for the class, and
		 * the instructor may start the next at once (its process may not
		 * have been reaped yet; runs_find treats it as over too). */
		if (run_line_is_end(r))
			c->run_live = 0;
	} else if (s) {
		ws_enqueue(s, line, len);
		/* The owner lags: stop reading its runs' output, so the child
		 * waits for it instead of the run being cut off. */
		if (!s->throttling && !s->overflowed &&
		    (s->q_count >= WS_PAUSE_MSGS || s->q_bytes >= WS_PAUSE_BYTES)) {
			s->throttling = 1;
			runs_pause_owner(srv->runs, s->id, 1);
		}
	}
	n = run_watchers(r, &ids);
	for (i = 0; i < n; i++) {
		if (ids[i] == owner)
			continue;
		s = ws_session_find(srv, ids[i]);
		if (s)
			ws_enqueue(s, line, len);
	}
}

void ws_hook_finished(void *arg, const struct run *r)
{
	struct ws_server *srv = arg;
	const uint64_t *ids;
	size_t i, n = run_watchers(r, &ids);
	int k;

	/* --nats: its files are complete (its process has exited): to the
	 * stream, after its last index entry. */
	bus_run_files(srv->bus, run_id(r));

	for (k = 0; k < srv->cfg->max_classes; k++) {
		if (srv->classes[k] && !strcmp(srv->classes[k]->run, run_id(r))) {
			srv->classes[k]->run_live = 0;
			ws_cluster_changed(srv->classes[k]);
		}
	}

	for (i = 0; i < n; i++) {
		struct ws_session *s = ws_session_find(srv, ids[i]);
		for (k = 0; s && k < s->n_watches; k++) {
			if (s->watches[k].live && !strcmp(s->watches[k].run, run_id(r))) {
				ws_watch_drop(s, k);
				break;
			}
		}
	}
}

/* ---- admission ---- */

void ws_send_queued(struct ws_session *s, const char *id, const char *tag, const char *lab,
		    int position, int waiting)
{
	const struct serve_config *c = s->srv->cfg;

	ws_send_json(s, json_pack("{s:s, s:s, s:s?, s:s, s:i, s:i, s:i, s:i, s:i, s:i}", "type",
				  "run.queued", "run", id, "tag", tag, "lab", lab, "position",
				  position, "ahead", position - 1, "waiting", waiting, "running",
				  runs_active(s->srv->runs), "max_runs", c->max_runs,
				  "queue_wait_s", c->queue_wait_s));
}

void ws_hook_queued(void *arg, const struct run *r, int position, int length)
{
	struct ws_server *srv = arg;
	struct ws_session *s = ws_session_find(srv, run_owner(r));

	if (s)
		ws_send_queued(s, run_id(r), run_tag(r), run_lab(r), position, length);
}

void ws_hook_admitted(void *arg, const struct run *r)
{
	struct ws_server *srv = arg;
	struct ws_session *s = ws_session_find(srv, run_owner(r));
	json_int_t waited = (json_int_t)(run_queued_us(r) / 1000);
	struct ws_class *c = run_is_class(r) ? ws_class_of_run(srv, run_id(r)) : NULL;

	if (c) {
		ws_class_run_started(c, run_id(r), run_lab(r), run_request_params(r),
				     run_request_files(r), run_tag(r));
		return;
	}
	if (!s)
		return; /* gone: runs_session_closed cancels what it owned */
	ws_send_json(s, json_pack("{s:s, s:s, s:s?, s:s, s:I}", "type", "run.accepted", "run",
				  run_id(r), "tag", run_tag(r), "lab", run_lab(r), "waited_ms",
				  waited));
}

void ws_hook_refused(void *arg, const struct run *r, const struct run_error *e)
{
	struct ws_server *srv = arg;
	struct ws_class *c = ws_class_of_run(srv, run_id(r));
	struct ws_session *s = ws_session_find(srv, c ? c->instructor : run_owner(r));

	if (c)
		c->run_live = 0;
	if (!s)
		return;
	ws_send_error(s, e->code, e->param[0] ? e->param : NULL, e->message, run_tag(r),
		      run_id(r));
}

/* ---- ops ---- */

static void op_run(struct ws_session *s, json_t *msg, const char *tag)
{
	json_t *lab = json_object_get(msg, "lab");
	json_t *pcap = json_object_get(msg, "pcap");
	struct run_error e;
	char id[EV_RUN_ID_LEN + 1];
	int rc, pos = 0;

	if (!json_is_string(lab)) {
		ws_send_error(s, "bad_request", "lab", "'lab' must be a string naming a lab", tag, NULL);
		return;
	}
	if (pcap && !json_is_string(pcap)) {
		ws_send_error(s, "bad_request", "pcap", "'pcap' must be a capture file in base64", tag,
			   NULL);
		return;
	}
	/* "pcap": a recorded capture for a replay, uploaded with the request;
	 * "files": text files (programs) for a lab's upload parameters. */
	/* With every slot taken it waits in line (run.queued, then
	 * run.accepted when it starts). */
	rc = runs_submit(s->srv->runs, s->id, json_string_value(lab), json_object_get(msg, "params"),
			 json_string_value(pcap), json_object_get(msg, "files"), tag, RUN_F_QUEUE, id,
			 &pos, &e);
	if (rc < 0) {
		ws_send_error(s, e.code, e.param, e.message, tag, NULL);
		return;
	}
	if (rc == 1) {
		ws_send_queued(s, id, tag, json_string_value(lab), pos, runs_queued(s->srv->runs));
		return;
	}
	ws_send_json(s, json_pack("{s:s, s:s, s:s?, s:s}", "type", "run.accepted", "run", id, "tag",
			       tag, "lab", json_string_value(lab)));
}

static const char *run_arg(struct ws_session *s, json_t *msg, const char *tag)
{
	const char *id = json_string_value(json_object_get(msg, "run"));

	if (!id || !ev_valid_run_id(id)) {
		ws_send_error(s, "bad_request", "run", "'run' must be a run id (16 lowercase hex digits)",
			   tag, NULL);
		return NULL;
	}
	return id;
}

static void op_cancel(struct ws_session *s, json_t *msg, const char *tag)
{
	const char *id = run_arg(s, msg, tag);
	struct run_error e;
	json_t *reply;
	int rc;

	if (!id)
		return;
	rc = runs_cancel(s->srv->runs, s->id, id, &e);
	if (rc < 0) {
		ws_send_error(s, e.code, e.param, e.message, tag, id);
		return;
	}
	/* A waiting run just leaves the line: no run.end follows, it never ran. */
	if (rc == 1 && s->cls && s->teaching && !strcmp(s->cls->run, id))
		s->cls->run_live = 0;
	reply = json_pack("{s:s, s:s, s:s?}", "type", "cancel.accepted", "run", id, "tag", tag);
	if (reply && rc == 1)
		json_object_set_new(reply, "queued", json_true());
	ws_send_json(s, reply);
}

static void op_watch(struct ws_session *s, json_t *msg, const char *tag)
{
	const char *id = run_arg(s, msg, tag);
	char path[4096];
	struct ws_watch *w;
	FILE *f;
	int i, remote = 0, live;

	if (!id)
		return;
	for (i = 0; i < s->n_watches; i++) {
		if (!strcmp(s->watches[i].run, id)) {
			ws_send_error(s, "bad_request", "run", "this connection already watches that run",
				   tag, id);
			return;
		}
	}
	if (s->n_watches >= WS_MAX_WATCHES) {
		char m[128];
		snprintf(m, sizeof m, "a connection may watch at most %d runs at once",
			 WS_MAX_WATCHES);
		ws_send_error(s, "limit", NULL, m, tag, id);
		return;
	}
	f = NULL;
	if (runs_bundle_path(s->srv->cfg->data, id, "events.jsonl", path, sizeof path) == 0)
		f = fopen(path, "re");
	/* --nats: another replica's run, read from the stream into a copy
	 * here that the watch follows as it grows. */
	if (!f && s->srv->bus) {
		char err[300];
		int rc = bus_mirror_open(s->srv->bus, id, path, sizeof path, err, sizeof err);
		if (rc == -ENOSPC) {
			ws_send_error(s, "limit", "run", err, tag, id);
			return;
		}
		if (rc == 0)
			f = fopen(path, "re");
		if (f)
			remote = 1;
	}
	if (!f) {
		ws_send_error(s, "unknown_run", "run", "no such run", tag, id);
		return;
	}
	w = &s->watches[s->n_watches++];
	memset(w, 0, sizeof *w);
	memcpy(w->run, id, EV_RUN_ID_LEN + 1);
	w->f = f;
	w->remote = remote;
	if (remote) {
		enum bus_mirror_state st = bus_mirror_state(s->srv->bus, id, NULL, NULL, 0);
		json_t *meta = bus_run_meta(s->srv->bus, id);
		const char *status = json_string_value(json_object_get(meta, "status"));
		live = (st == BUS_M_FETCHING || st == BUS_M_LIVE) && status &&
		       !strcmp(status, "running");
		ws_send_json(s, json_pack("{s:s, s:s, s:s?, s:b, s:s, s:s?}", "type",
					  "watch.accepted", "run", id, "tag", tag, "live", live,
					  "source", "stream", "replica",
					  json_string_value(json_object_get(meta, "replica"))));
		json_decref(meta);
		ws_want_write(s->wsi);
		return;
	}
	ws_send_json(s, json_pack("{s:s, s:s, s:s?, s:b}", "type", "watch.accepted", "run", id, "tag",
			       tag, "live", runs_find(s->srv->runs, id) != NULL));
	ws_want_write(s->wsi);
}

static void op_ping(struct ws_session *s, json_t *msg, const char *tag)
{
	ws_send_json(s, json_pack("{s:s, s:s?}", "type", "pong", "tag", tag));
}

static const struct {
	const char *name;
	void (*fn)(struct ws_session *s, json_t *msg, const char *tag);
} ops[] = {
	{"run", op_run},
	{"cancel", op_cancel},
	{"watch", op_watch},
	{"ping", op_ping},
	{"signin", ws_op_signin},
	{"class.open", ws_op_class_open},
	{"class.join", ws_op_class_join},
	{"class.leave", ws_op_class_leave},
	{"class.run", ws_op_class_run},
	{"class.view", ws_op_class_view},
	{"class.end", ws_op_class_end},
	{"class.reclaim", ws_op_class_reclaim},
	{"class.quiz", ws_op_class_quiz},
	{NULL, NULL},
};

#define OPS_LIST                                                                               \
	"run, cancel, watch, ping, signin, class.open, class.join, class.leave, class.run, "  \
	"class.view, class.end, class.reclaim or class.quiz"

void ws_handle_message(struct ws_session *s, const char *buf, size_t len)
{
	json_error_t jerr;
	json_t *msg = json_loadb(buf, len, 0, &jerr);
	json_t *jtag;
	const char *op, *tag = NULL;
	char m[300];
	int i;

	if (!msg) {
		snprintf(m, sizeof m, "message is not valid JSON: %s (at byte %d)", jerr.text,
			 jerr.position);
		ws_send_error(s, "bad_request", NULL, m, NULL, NULL);
		return;
	}
	if (!json_is_object(msg)) {
		ws_send_error(s, "bad_request", NULL, "message must be a JSON object", NULL, NULL);
		goto out;
	}
	jtag = json_object_get(msg, "tag");
	if (jtag && (!json_is_string(jtag) || strlen(json_string_value(jtag)) > RUN_TAG_MAX)) {
		snprintf(m, sizeof m, "'tag' must be a string of at most %d bytes", RUN_TAG_MAX);
		ws_send_error(s, "bad_request", "tag", m, NULL, NULL);
		goto out;
	}
	tag = json_string_value(jtag);
	op = json_string_value(json_object_get(msg, "op"));
	for (i = 0; op && ops[i].name; i++) {
		if (!strcmp(ops[i].name, op)) {
			ops[i].fn(s, msg, tag);
			goto out;
		}
	}
	if (op)
		snprintf(m, sizeof m, "unknown op '%.40s'; expected %s", op, OPS_LIST);
	else
		snprintf(m, sizeof m, "'op' is missing or not a string; expected %s", OPS_LIST);
	ws_send_error(s, "bad_request", "op", m, tag, NULL);
out:
	json_decref(msg);
}
