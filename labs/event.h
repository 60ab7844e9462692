/* event.h: the event emitter: one gap-free, time-stamped JSON event stream per run. */
#ifndef SOCKLAB_EVENT_H
#define SOCKLAB_EVENT_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

/*
 * Every event is one JSON object with the envelope
 *   {"v":1,"run":ID,"seq":N,"t_us":T,"lab":NAME,"type":TYPE, ...fields}
 * seq starts at 0 and has no gaps; t_us is CLOCK_MONOTONIC microseconds since
 * the emitter was initialised and never decreases along seq, because both are
 * taken under the same lock. Emitting is thread-safe: lab threads (client,
 * server) call ev_emit concurrently.
 */

#define EV_VERSION 1
#define EV_RUN_ID_LEN 16
#define EV_MAX_SINKS 4

/* A sink receives every event in seq order, under the emitter's lock: the
 * parsed object and its serialised line (no trailing newline). A sink returns
 * 0, or negative when it can take no more (it is then removed). */
typedef int (*ev_sink_fn)(void *arg, const json_t *event, const char *line);

struct ev_emitter {
	pthread_mutex_t lock; /* guards every field below */
	char run_id[EV_RUN_ID_LEN + 1];
	char lab[64];
	struct timespec t0;
	uint64_t seq;
	int ended; /* run.end was emitted: later events are refused */
	struct {
		ev_sink_fn fn;
		void *arg;
	} sinks[EV_MAX_SINKS];
	int n_sinks;
	int sink_failed; /* a sink was removed after an error */
};

/* Initialise an emitter. run_id must be EV_RUN_ID_LEN lowercase hex digits, or
 * NULL for a fresh random one. Returns 0 or negative (bad run id). */
int ev_init(struct ev_emitter *em, const char *run_id, const char *lab);
void ev_cleanup(struct ev_emitter *em);

int ev_add_sink(struct ev_emitter *em, ev_sink_fn fn, void *arg);

/* Microseconds since ev_init on the run's monotonic clock. */
int64_t ev_now_us(struct ev_emitter *em);

/* Emit one event of type with fields (an object, stolen even on failure; may
 * be NULL). Returns the event's seq, or negative if it was refused (after
 * run.end) or could not be built. */
int64_t ev_emit(struct ev_emitter *em, const char *type, json_t *fields);

/* Emit {"type":"error","code":code,"message":msg[,"param":param]}. */
int64_t ev_error(struct ev_emitter *em, const char *code, const char *param, const char *msg);

/* Emit {"type":"note","key":key,"params":params,"text":text}: an explanation
 * as a message key with its English text, taken from the translation table
 * (web/i18n/en.json, id "note.KEY", {placeholders} filled from params; see
 * labs/i18n.h). Pass text NULL: explanations live in the tables, not in C.
 * A non-NULL text is only a fallback for a key the tables lack (a lab whose
 * texts are not moved yet; tests/integration/test_i18n.py flags it). params
 * is stolen and may be NULL. */
int64_t ev_note(struct ev_emitter *em, const char *key, json_t *params, const char *text);

/* A sink writing JSON Lines to the fd given as arg (an int cast to pointer). */
int ev_sink_fd(void *arg, const json_t *event, const char *line);

/* Write all of buf to fd, retrying EINTR and partial writes. 0 or -errno. */
int ev_write_all(int fd, const char *buf, size_t len);

/* Fill out with EV_RUN_ID_LEN random lowercase hex digits and a NUL. */
int ev_random_id(char out[EV_RUN_ID_LEN + 1]);

/* 1 when s is a well-formed run id. */
int ev_valid_run_id(const char *s);

#endif
