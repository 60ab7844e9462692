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
 * assigned under the same lock. Emitting is thread-safe: lab threads (client,
 * server, capture) emit concurrently.
 *
 * Two ways to deliver:
 *  - synchronous (after ev_init): each event is serialised and handed to the
 *    sinks inside the emitting call, under the lock;
 *  - through a writer thread (after ev_start): an event is only recorded on
 *    the emitting thread (a seq, a time and either its serialised fields or a
 *    binary record, see ev_rec_begin) into a bounded ring; the writer thread
 *    builds the lines in seq order and writes them in batches. When the ring
 *    is full the emitting thread waits for the writer: no event is ever
 *    dropped, and each wait is counted (struct ev_trace_stats).
 */

#define EV_VERSION 1
#define EV_RUN_ID_LEN 16
#define EV_MAX_SINKS 4
#define EV_REC_MAX 448    /* bytes of one binary record (ev_rec_begin) */
#define EV_HIST_BUCKETS 512 /* cost histogram: 10 ns per bucket, then one overflow bucket */

/* A growing text buffer for building lines. oom is set when an append could
 * not grow it (the text is then incomplete). */
struct ev_buf {
	char *p;
	size_t len, cap;
	int oom;
};

void ev_buf_free(struct ev_buf *b);
void ev_buf_put(struct ev_buf *b, const char *s, size_t n);
void ev_buf_puts(struct ev_buf *b, const char *s);
/* "key": for the next member of an object, with a comma before it unless the
 * buffer ends with '{'. key is written as is: plain ASCII, no quote or
 * backslash (member names are the program's own). */
void ev_buf_key(struct ev_buf *b, const char *key);
/* A JSON string, escaped exactly as jansson's JSON_ENSURE_ASCII output. */
void ev_buf_str(struct ev_buf *b, const char *s);
void ev_buf_int(struct ev_buf *b, long long v);

/* Append the fields of one binary record to b as members of the event object
 * (the envelope precedes them: use ev_buf_key). Runs on the writer thread, or
 * on the emitting thread when the emitter is synchronous. */
typedef void (*ev_rec_format_fn)(struct ev_buf *b, const void *rec);

/* A sink receives every event in seq order: the parsed object and its
 * serialised line (no trailing newline). It runs on the writer thread once
 * ev_start succeeded, else under the emitter's lock in the emitting call. A
 * sink returns 0, or negative when it can take no more (it is then removed). */
typedef int (*ev_sink_fn)(void *arg, const json_t *event, const char *line);

/* Called once, on the thread that delivers events, when a write to an fd sink
 * fails (err is a positive errno); the sink is then removed. */
typedef void (*ev_fd_error_fn)(void *arg, int err);

struct ev_sink {
	ev_sink_fn fn;  /* NULL: an fd sink */
	void *arg;
	int fd;
	ev_fd_error_fn on_error;
};

/* What recording cost the threads that emitted, and what the writer did. */
struct ev_trace_stats {
	uint64_t events;         /* events emitted so far */
	uint64_t calls;          /* binary records (traced socket calls) */
	uint64_t call_ns_median; /* time one record took on the calling thread, from the
				  * caller's clock read to the commit, waits for room aside */
	uint64_t call_ns_p99;
	uint64_t call_ns_max;
	uint64_t call_ns_mean;
	uint64_t stalls;         /* times an emitting thread waited for room in the ring */
	uint64_t stall_us;       /* how long those waits took in all */
	uint64_t batches;        /* writes of a batch of lines (writer thread) */
	uint64_t writer_cpu_us;  /* CPU time the writer thread used (formatting and writing) */
	int threaded;            /* 1 when a writer thread delivers the events */
};

struct ev_ring;  /* event.c: the writer thread's ring */
struct ev_defer; /* event.c: binary records held for an observer (ev_defer_start) */

struct ev_emitter {
	pthread_mutex_t lock; /* guards every field below unless said otherwise */
	char run_id[EV_RUN_ID_LEN + 1];
	char lab[64];
	char env_head[64];  /* {"v":1,"run":"ID","seq":  (read-only after ev_init) */
	char env_lab[420];  /* ,"lab":"NAME","type":     (read-only after ev_init) */
	struct timespec t0;
	uint64_t t0_ns;   /* t0 in nanoseconds (read-only after ev_init) */
	uint64_t seq;     /* the next event's seq */
	uint64_t last_ns; /* the last event's time: no later event is stamped earlier */
	int ended;        /* run.end was emitted: later events are refused */
	struct ev_sink sinks[EV_MAX_SINKS]; /* written before ev_start only */
	int n_sinks;
	int sink_failed; /* a sink was removed after an error */
	struct ev_ring *ring; /* NULL: synchronous delivery */
	struct ev_defer *defer; /* non-NULL: binary records go to it (ev_defer_start) */
	/* Synchronous delivery only: the line being built and the record being
	 * filled between ev_rec_begin and ev_rec_commit. */
	struct ev_buf line;
	_Alignas(16) unsigned char scratch[EV_REC_MAX];
	/* Statistics (struct ev_trace_stats). */
	uint64_t calls, call_ns_sum, call_ns_max, stalls, stall_ns, batches, writer_cpu_ns;
	uint32_t call_hist[EV_HIST_BUCKETS + 1];
};

/* A binary record being filled (between ev_rec_begin and ev_rec_commit). */
struct ev_rec {
	void *slot;  /* the ring's slot, or NULL when synchronous */
	void *dslot; /* the deferred record's slot (ev_defer_start), else NULL */
	uint64_t seq;
	uint64_t t_ns;
	uint64_t stall_ns;         /* how long ev_rec_begin waited for room */
	int64_t t_us;              /* synchronous only */
	const char *type;          /* synchronous only */
	ev_rec_format_fn fmt;      /* synchronous only */
};

/* Initialise an emitter. run_id must be EV_RUN_ID_LEN lowercase hex digits, or
 * NULL for a fresh random one. Returns 0 or negative (bad run id). */
int ev_init(struct ev_emitter *em, const char *run_id, const char *lab);
/* Stops the writer thread first when there is one (ev_stop). */
void ev_cleanup(struct ev_emitter *em);

/* Add sinks before ev_start. */
int ev_add_sink(struct ev_emitter *em, ev_sink_fn fn, void *arg);
/* JSON Lines written to fd: with a writer thread, in batches (many lines per
 * write()); on_error (may be NULL) is told once if a write fails. */
int ev_add_fd_sink(struct ev_emitter *em, int fd, ev_fd_error_fn on_error, void *arg);

/* Start the writer thread with a ring of slots events (a power of two; 0 for
 * the default). From then on emitting records the event and returns; the
 * writer delivers it within a few milliseconds. Returns 0 or -errno (the
 * emitter then stays synchronous). The writer blocks every signal. */
int ev_start(struct ev_emitter *em, size_t slots);
/* Wait until every event emitted before this call has been handed to the
 * sinks. Returns at once when synchronous. */
void ev_flush(struct ev_emitter *em);
/* Deliver everything, stop and join the writer thread; the emitter is then
 * synchronous again. */
void ev_stop(struct ev_emitter *em);

/* The statistics so far (flushes first, so they include every call made). */
void ev_trace_stats(struct ev_emitter *em, struct ev_trace_stats *out);

/* CLOCK_MONOTONIC in nanoseconds: the clock of every event. */
uint64_t ev_clock_ns(void);
/* A clock reading as microseconds since ev_init. */
int64_t ev_ns_to_us(const struct ev_emitter *em, uint64_t ns);
/* Microseconds since ev_init on the run's monotonic clock. */
int64_t ev_now_us(struct ev_emitter *em);

/* Emit one event of type with fields (an object, stolen even on failure; may
 * be NULL). The fields are serialised on the calling thread, so the caller
 * may change any object it still holds afterwards. Returns the event's seq,
 * or negative if it was refused (after run.end) or could not be built. */
int64_t ev_emit(struct ev_emitter *em, const char *type, json_t *fields);

/*
 * Record one event whose fields are a binary struct of at most EV_REC_MAX
 * bytes that fmt turns into JSON later (on the writer thread). Two steps, so
 * the record is written in place without a copy:
 *   struct ev_rec rec;
 *   struct my_rec *r = ev_rec_begin(em, "syscall", my_format, t_ns, &rec);
 *   if (r) { ...fill *r...; ev_rec_commit(em, &rec); }
 * t_ns (ev_clock_ns) is the event's time, normally read just before; it is
 * raised to the previous event's time if another thread emitted a later one
 * in between, so t_us never decreases along seq. The time from t_ns to the
 * commit, less any wait for room in the ring (a stall), is the record's
 * cost. Returns NULL (and nothing is to be committed) after run.end.
 * Between the two calls the thread must not emit anything else; when
 * synchronous the emitter's lock is held in between.
 */
void *ev_rec_begin(struct ev_emitter *em, const char *type, ev_rec_format_fn fmt, uint64_t t_ns,
		   struct ev_rec *rec);
void ev_rec_commit(struct ev_emitter *em, struct ev_rec *rec);

/*
 * Deferred records: while an observer merges the run's sources in time order
 * (labs/observer), binary records (the socket calls) are not given a seq when
 * they are made: ev_rec_begin puts them, with their time, in a ring of their
 * own (the calling thread's cost is the same), and the observer takes them
 * (ev_defer_take), merges them with the frames and kernel states by time and
 * emits each when its time comes (ev_rec_emit). So a call and the segments
 * around it reach the stream in the order they happened, with no work added
 * to the lab's threads. Only with a writer thread (ev_start).
 *
 * A deferred record's time is read when it is reserved, under the emitter's
 * lock (ev_rec_begin's t_ns is then ignored; the caller reads it back from
 * struct ev_rec's t_ns): a few tens of nanoseconds after the call returned,
 * more if the thread was descheduled in between, but never a record the
 * observer could pass over.
 * ev_defer_start: from now on records are deferred; kick_fd (an eventfd) is
 * written when the ring is half full (the observer should take them soon).
 * 0, -EINVAL (no writer thread), -EALREADY, -ENOMEM.
 * ev_defer_take: call fn for every record committed so far, in the order
 * they were made; *hold_ns (may be NULL) is set to the time of the first
 * record still being written (the observer must not emit anything later
 * than that yet), or INT64_MAX. Returns how many. One consumer thread.
 * ev_defer_stop: records go to the stream directly again; the ones still held
 * are handed to fn (fn NULL: emitted now, in order). Waits for records being
 * written.
 */
typedef void (*ev_defer_fn)(void *arg, uint64_t t_ns, const char *type, ev_rec_format_fn fmt,
			    const void *rec, int64_t cost_ns);
int ev_defer_start(struct ev_emitter *em, int kick_fd);
size_t ev_defer_take(struct ev_emitter *em, ev_defer_fn fn, void *arg, int64_t *hold_ns);
void ev_defer_stop(struct ev_emitter *em, ev_defer_fn fn, void *arg);

/* Emit a binary record made earlier (a copy of EV_REC_MAX bytes at most):
 * its time is t_ns, or the last event's when that is later; cost_ns is the
 * cost measured when it was made (-1: none). type must outlive the event
 * (a string literal). 0, or negative after run.end. */
int ev_rec_emit(struct ev_emitter *em, const char *type, ev_rec_format_fn fmt, uint64_t t_ns,
		const void *rec, int64_t cost_ns);

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

/* A sink writing JSON Lines to the fd given as arg (an int cast to pointer),
 * one write per event. ev_add_fd_sink is the batched way. */
int ev_sink_fd(void *arg, const json_t *event, const char *line);

/* Write all of buf to fd, retrying EINTR and partial writes. 0 or -errno. */
int ev_write_all(int fd, const char *buf, size_t len);

/* Fill out with EV_RUN_ID_LEN random lowercase hex digits and a NUL. */
int ev_random_id(char out[EV_RUN_ID_LEN + 1]);

/* 1 when s is a well-formed run id. */
int ev_valid_run_id(const char *s);

#endif
