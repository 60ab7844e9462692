/* runs.h: the run manager: one `socklab run --json` child per run, its output, bundle and limits. */
#ifndef SOCKLAB_RUNS_H
#define SOCKLAB_RUNS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "config.h"
#include "event.h"
#include "bundle.h"
#include "http.h"

/*
 * Everything here runs in the lws service thread (the main thread) unless a
 * function says otherwise. A run is a child process started with fork+exec
 * of cfg->lab_exe (this binary, /proc/self/exe, unless --lab-exe names
 * another; if that one may not start for want of capabilities, EPERM, this
 * binary); its stdout (one JSON event per line) is a pipe adopted
 * into the lws loop. Each line is checked (JSON object, the run's id, the next
 * seq), appended to DATA/runs/ID/events.jsonl and handed to the hooks, which
 * deliver it to the run's owner and watchers. Runs refer to WebSocket
 * sessions only by their 64-bit id, never by pointer.
 */

#define RUNS_PIPE_PROTOCOL "socklab-run-pipe"
#define RUN_TAG_MAX 64
#define RUN_MAX_WATCHERS 32
/* Longest event line a child may print; a longer one ends the run. */
#define RUN_LINE_MAX (1024 * 1024)
/* Room kept under --max-run-data for the error and run.end the server
 * writes when a run reaches it. */
#define RUN_CLOSE_RESERVE 4096
/* Seconds between SIGTERM and SIGKILL. */
#define RUN_KILL_GRACE_S 2
/* Seconds the server waits past the child's own --timeout before it steps in. */
#define RUN_TIMEOUT_GRACE_S 3

/* ---- the run state machine (pure; tests/unit/test_runs.c) ---- */

enum run_state {
	RUN_STARTING,   /* forked, not yet confirmed */
	RUN_RUNNING,    /* the child runs; its output is streamed */
	RUN_CANCELLING, /* SIGTERM (or SIGKILL) sent; waiting for it to go */
	RUN_FINISHED,   /* output closed and process reaped; run.end written */
};

enum run_input {
	RUN_IN_SPAWN_OK,
	RUN_IN_SPAWN_FAIL,
	RUN_IN_END_SEEN,   /* the child printed run.end */
	RUN_IN_BAD_OUTPUT, /* a line was malformed, out of sequence or too long */
	RUN_IN_CANCEL,     /* the owner asked, its connection closed, or shutdown */
	RUN_IN_LIMIT,      /* its events reached --max-run-data */
	RUN_IN_TIMEOUT,    /* the wall-clock limit passed */
	RUN_IN_KILL_TIMER, /* the grace timer armed by RUN_ACT_ARM_KILL fired */
	RUN_IN_EOF,        /* the child's stdout reached end of file */
	RUN_IN_EXITED,     /* the child was reaped */
};

/* Why a run ended early, for the synthesized error and status. */
enum run_reason {
	RUN_R_NONE,
	RUN_R_CANCELLED,
	RUN_R_TIMEOUT,
	RUN_R_BAD_OUTPUT,
	RUN_R_SPAWN,
	RUN_R_LIMIT,
};

/* Actions run_sm_step() asks the caller to take, as bits, in this order. */
enum {
	RUN_ACT_ARM_TIMEOUT = 1u << 0, /* start the wall-clock timer */
	RUN_ACT_TERM = 1u << 1,        /* SIGTERM the process group */
	RUN_ACT_KILL = 1u << 2,        /* SIGKILL the process group */
	RUN_ACT_ARM_KILL = 1u << 3,    /* (re)arm the grace timer */
	RUN_ACT_CLOSE_PIPE = 1u << 4,  /* stop waiting for EOF: close the pipe */
	RUN_ACT_FINISH = 1u << 5,      /* synthesize run.end if missing, write meta */
};

struct run_sm {
	enum run_state state;
	enum run_reason reason;
	unsigned eof : 1, exited : 1, end_seen : 1;
};

void run_sm_init(struct run_sm *sm);

/* Feed one input; returns the RUN_ACT_* bits to carry out. Inputs that make
 * no sense in a state (a second cancel, anything after FINISHED) are no-ops. */
unsigned run_sm_step(struct run_sm *sm, enum run_input in);

/* The run.end status the server writes when the child did not: "cancelled",
 * "timeout", "truncated" (its events reached the server's limit) or "error";
 * and the error code that goes with it. */
const char *run_sm_status(const struct run_sm *sm);
const char *run_sm_error_code(const struct run_sm *sm);

/* ---- the line splitter (pure; tests/unit/test_runs.c) ---- */

/* Splits a byte stream into '\n'-terminated lines of at most max bytes. */
struct run_linebuf {
	char *buf;
	size_t len, cap, max;
};

typedef int (*run_line_fn)(void *arg, char *line, size_t len);

void run_linebuf_init(struct run_linebuf *lb, size_t max);
void run_linebuf_cleanup(struct run_linebuf *lb);

/* Feed n bytes; calls fn once per complete line (without the '\n', NUL-
 * terminated in place). Returns 0; -E2BIG once a line exceeds max (nothing
 * more is buffered); -ENOMEM; or the first negative value fn returned. */
int run_linebuf_feed(struct run_linebuf *lb, const char *data, size_t n, run_line_fn fn,
		     void *arg);

/* ---- the manager ---- */

struct run;
struct run_mgr;

/* Why a request was refused: code is one of "bad_param", "unknown_lab",
 * "bad_request", "limit", "unknown_run", "not_owner", "not_running",
 * "internal"; param names the offending parameter or "" when none. */
struct run_error {
	const char *code;
	char param[64];
	char message[512];
};

struct run_hooks {
	/* A run's event line (no trailing newline), in seq order. */
	void (*line)(void *arg, const struct run *r, const char *line, size_t len);
	/* The run finished; its last line has been delivered. */
	void (*finished)(void *arg, const struct run *r);
	/* Admission (runs_submit with RUN_F_QUEUE). A waiting run's place
	 * changed: position 1 starts next; length runs wait in all. */
	void (*queued)(void *arg, const struct run *r, int position, int length);
	/* A waiting run has started (its process runs; events follow). */
	void (*admitted)(void *arg, const struct run *r);
	/* A waiting run will not start: its deadline passed, the server is
	 * shutting down, or its start failed; e says why. r is freed after. */
	void (*refused)(void *arg, const struct run *r, const struct run_error *e);
	void *arg;
};


/* Create the manager. The data directory (and data/runs) must exist. ctx and
 * vh are the lws context and the vhost carrying RUNS_PIPE_PROTOCOL; runs are
 * recorded in store, which must outlive the manager. With ctx NULL (and
 * store NULL) the manager only checks: runs_start validates a request as
 * usual and then refuses it with "internal" (ws_offline, the fuzzer). */
int runs_create(struct run_mgr **out, const struct serve_config *cfg, struct lws_context *ctx,
		struct lws_vhost *vh, const struct run_hooks *hooks, struct http_counters *counters,
		struct bundle_store *store, char *err, size_t errlen);

/* Free the manager. Every run must have finished (runs_active() == 0);
 * remaining ones are killed without ceremony. */
void runs_destroy(struct run_mgr *m);

/* Validate a client's request (lab, params, server-assigned params, limits)
 * and start the run. On success writes its id and returns 0; otherwise fills
 * e and returns negative. tag may be NULL. */
int runs_start(struct run_mgr *m, uint64_t owner, const char *lab, const json_t *params,
	       const char *tag, char id[EV_RUN_ID_LEN + 1], struct run_error *e);

/* Largest capture a browser may upload for a replay (it travels base64 in
 * one WebSocket message of at most 64 KiB with the rest of the request). */
#define RUN_UPLOAD_MAX (47 * 1024)

/* Largest text file (a program) a browser may upload per parameter; two fit
 * in one WebSocket message with the rest of the request. */
#define RUN_FILE_MAX (24 * 1024)
#define RUN_FILES_MAX 2

struct run_upload {
	uint8_t *data;
	size_t len;
	/* Text files for LAB_PF_UPLOAD parameters (borrowed from the request). */
	struct {
		const char *param, *text;
		size_t len;
	} files[RUN_FILES_MAX];
	int n_files;
};

/* runs_start with an uploaded capture (base64, at most RUN_UPLOAD_MAX bytes
 * decoded): the server saves it as the run's upload.pcap and sets the lab's
 * server-assigned replay parameter to that file. Only for labs that capture
 * and have such a parameter. pcap_b64 may be NULL. */
int runs_start_upload(struct run_mgr *m, uint64_t owner, const char *lab_name,
		      const json_t *params, const char *pcap_b64, const char *tag,
		      char id[EV_RUN_ID_LEN + 1], struct run_error *e);

/* runs_start_upload with text files too: files is NULL or an object mapping
 * a lab's LAB_PF_UPLOAD parameter names to their text (at most RUN_FILE_MAX
 * bytes each); each is saved as the bundle's upload-NAME and the parameter set
 * to it. Refused with the parameter named: an unknown or non-upload name, a
 * value that is not a string, one that is too large or holds a NUL byte. */
int runs_start_files(struct run_mgr *m, uint64_t owner, const char *lab_name,
		     const json_t *params, const char *pcap_b64, const json_t *files,
		     const char *tag, char id[EV_RUN_ID_LEN + 1], struct run_error *e);

/* Decode standard base64 (with padding) into out; the byte count, or
 * -EINVAL for bad input, -E2BIG when more than cap bytes. Pure. */
int runs_base64_decode(const char *in, uint8_t *out, size_t cap);

/* Flags of runs_submit. */
#define RUN_F_QUEUE 1u /* wait in the admission queue when no slot is free */
#define RUN_F_CLASS 2u /* an instructor's class run: ahead of every other */

/* runs_start_files with admission: 0 when the run started now (id is its
 * id); 1 when it waits in the queue (id is the id it will run under, *pos
 * its place, 1 starting next; hooks.queued tells of moves, hooks.admitted
 * of its start, hooks.refused of its end); negative with e when refused.
 * The queue is fair: class runs first, then each connection's first
 * waiting or running run ahead of anyone's second, then arrival order. It
 * holds at most --queue-max runs, each for at most --queue-wait seconds. */
int runs_submit(struct run_mgr *m, uint64_t owner, const char *lab_name, const json_t *params,
		const char *pcap_b64, const json_t *files, const char *tag, unsigned flags,
		char id[EV_RUN_ID_LEN + 1], int *pos, struct run_error *e);

/* Cancel run id on behalf of session (only its own runs): 0 when a
 * running run was told to stop, 1 when a waiting one left the queue (it
 * never started and leaves no bundle). */
int runs_cancel(struct run_mgr *m, uint64_t session, const char *id, struct run_error *e);

/* Give run id (running or waiting) to another owner: 0 for nobody (a
 * class run while its instructor is away), or the session that took the
 * class back. 0, or -ENOENT. */
int runs_set_owner(struct run_mgr *m, const char *id, uint64_t owner);

/* The session closed: cancel the runs it owns and stop sending it events. */
void runs_session_closed(struct run_mgr *m, uint64_t session);

/* Stop (paused 1) or resume (0) reading the output of every run owner
 * started: while the owner's connection lags, each child blocks in its next
 * write instead of its events piling up in the server (backpressure). */
void runs_pause_owner(struct run_mgr *m, uint64_t owner, int paused);

/* A run whose event stream is still open (no run.end yet), or NULL. */
struct run *runs_find(struct run_mgr *m, const char *id);

/* Add or remove a live watcher of r. Adding fails with -ENOSPC when full. */
int runs_watch(struct run *r, uint64_t session);
void runs_unwatch(struct run *r, uint64_t session);

/* Called after SIGCHLD: reap every child that exited, runs and orphans
 * (as a container's PID 1 the server inherits them). */
void runs_reap(struct run_mgr *m);

/* Cancel every run and refuse new ones (server shutdown). */
void runs_shutdown(struct run_mgr *m);

/* Runs not yet finished. */
int runs_active(const struct run_mgr *m);

/* Runs waiting in the admission queue. */
int runs_queued(const struct run_mgr *m);

/* The lws callback of RUNS_PIPE_PROTOCOL: reads a run's stdout. */
int runs_pipe_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		       size_t len);

/* Accessors for the hooks. */
const char *run_id(const struct run *r);
uint64_t run_owner(const struct run *r);
size_t run_watchers(const struct run *r, const uint64_t **ids);
const char *run_tag(const struct run *r); /* NULL when the request had none */
const char *run_lab(const struct run *r);
int run_is_class(const struct run *r);
/* The request's params and files objects (NULL when absent), kept for the
 * class notice. */
const json_t *run_request_params(const struct run *r);
const json_t *run_request_files(const struct run *r);
/* In hooks.line: the line is the run's run.end (its last). */
int run_line_is_end(const struct run *r);
/* Microseconds it waited in the queue before it started (0: none). */
int64_t run_queued_us(const struct run *r);

#endif
