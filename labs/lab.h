/* lab.h: the lab plug-in interface: descriptor, parameter schema and run context. */
#ifndef SOCKLAB_LAB_H
#define SOCKLAB_LAB_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "event.h"

/*
 * A lab is a static const struct lab_desc registered in labs/registry.c. The
 * descriptor carries everything a front end needs to show a form and validate
 * input (the parameter schema); the run function does the exercise and reports
 * only through the event emitter in its context. The CLI (`socklab run`) and
 * the server (which spawns `socklab run --json` per run) share this code, so a
 * run looks the same everywhere.
 */

enum lab_ptype {
	LAB_P_INT,    /* signed integer within [min, max] */
	LAB_P_BOOL,   /* true/false (also accepts 1/0, yes/no, on/off on the CLI) */
	LAB_P_ENUM,   /* one of choices[] */
	LAB_P_STRING, /* printable UTF-8 text of at most max_len bytes */
};

/* Flags on a parameter definition. */
enum {
	/* The server assigns this parameter itself for browser runs; a browser
	 * client may not set it (for example the bring-your-own-client port). */
	LAB_PF_SERVER = 1u << 0,
	/* Shown under "advanced" in the dashboard form. */
	LAB_PF_ADVANCED = 1u << 1,
	/* A boolean that, when true, makes the lab network's wire report every
	 * frame it carries (network=two-hosts then always uses the relay). */
	LAB_PF_WIRE_TRACE = 1u << 2,
	/* With LAB_PF_SERVER: a text file the browser uploads ("files" in the run
	 * request, at most RUN_FILE_MAX bytes); the server saves it in the run's
	 * bundle and sets this parameter to that file's path. */
	LAB_PF_UPLOAD = 1u << 3,
};

struct lab_param_def {
	const char *name;  /* [a-z_]+, the key in -p KEY=VALUE and in JSON */
	enum lab_ptype type;
	const char *title; /* short label for forms */
	const char *help;  /* one sentence for forms and `socklab labs` */
	const char *unit;  /* "ms", "bytes", ... or NULL */
	const char *def;   /* default, written as on the CLI */
	long long min, max;          /* LAB_P_INT range; LAB_P_STRING: max = max bytes */
	const char *const *choices;  /* LAB_P_ENUM: NULL-terminated */
	unsigned flags;
};

/* Parsed, validated values, indexed like the descriptor's params[]. */
#define LAB_MAX_PARAMS 48
#define LAB_STR_MAX 1024

struct lab_value {
	long long i;          /* LAB_P_INT, LAB_P_BOOL (0/1), LAB_P_ENUM (index) */
	char s[LAB_STR_MAX];  /* canonical text form of every type */
	int set;              /* given explicitly (not the default) */
};

struct lab_params {
	const struct lab_desc *lab;
	struct lab_value v[LAB_MAX_PARAMS];
};

struct lab_ctx;
struct net;

/* Which network a run needs, decided from its parameters before it starts. */
enum lab_net {
	LAB_NET_PRIVATE, /* its own network namespace when permitted (the normal case) */
	LAB_NET_HOST,    /* the host's network: a port a student's own program can reach */
	LAB_NET_NONE,    /* no network at all (a lab that only reads a file, like a replay) */
	/* The lab builds its own topology (labs/net/topo.h) from the namespace
	 * the run started in, where its address leases are held; the front end
	 * creates no namespace for it. */
	LAB_NET_TOPOLOGY,
};

struct lab_desc {
	const char *name;     /* "tcp-echo": CLI name, URL and event "lab" field */
	const char *title;    /* "TCP echo" */
	const char *summary;  /* one sentence for the catalogue */
	const struct lab_param_def *params;
	size_t n_params;
	/* Cross-parameter checks after every value is in range. On failure write a
	 * message to err, set *param to the offending name, return negative. May be
	 * NULL. */
	int (*check)(const struct lab_params *p, const char **param, char *err, size_t errlen);
	/* Which network this run needs. NULL means LAB_NET_PRIVATE. */
	enum lab_net (*network)(const struct lab_params *p);
	/* Nonzero when the lab captures packets: it writes them to ctx->pcap_path
	 * (`socklab run --pcap FILE`; the server keeps the run's capture.pcap). */
	int captures;
	/* Do the exercise. Emit events through ctx->em; return 0 on success or a
	 * negative code after emitting an "error" event. Must return promptly once
	 * lab_cancelled(ctx) is true. */
	int (*run)(struct lab_ctx *ctx);
	/* Optional: the lab's own text for one event in the CLI's readable
	 * output (for example ping-style lines). Write at most len bytes to buf
	 * (lines end with a newline) and return the length, 0 to show nothing
	 * for this event, or -1 for the generic line. May be NULL. */
	int (*format)(const struct lab_params *p, const json_t *ev, char *buf, size_t len);
	/* With format: nonzero when socket calls keep the generic lines (format
	 * returns -1 for them), so the CLI still prints their column header. */
	int format_keeps_calls;
};

/* What a run function receives. Owned by the caller of run(). */
struct lab_ctx {
	const struct lab_params *p;
	struct ev_emitter *em;
	int cancel_fd;           /* eventfd, readable once the run is cancelled or aborted */
	int64_t deadline_us;     /* t_us (run clock) by which the lab must end */
	int netns;               /* 1 when the run has a private network namespace */
	struct net *net;         /* network=two-hosts (labs/net/net.h), else NULL */
	const char *pcap_path;   /* captures labs: write the frames here; NULL: no file */
	json_t *summary;         /* object the lab fills; emitted in run.end */
	struct lab_watch *watch; /* the run's stop watcher (lab_watch_start), or NULL:
				  * then every wait polls the cancel fd itself */
};

/* ---- registry (labs/registry.c) ---- */

/* The registered labs, NULL-terminated. */
extern const struct lab_desc *const lab_registry[];

/* The lab called name, or NULL. */
const struct lab_desc *lab_find(const char *name);

/* New JSON description of one lab (name, title, summary, params with type,
 * default, range or choices, unit, help, flags). Caller owns the reference. */
json_t *lab_describe(const struct lab_desc *lab);

/* New JSON array describing every lab. Caller owns the reference. */
json_t *lab_describe_all(void);

/* ---- parameters (labs/params.c) ---- */

/* Fill p with every default of lab. */
void lab_params_init(struct lab_params *p, const struct lab_desc *lab);

/* Set one parameter from its text form. On error returns negative and writes
 * a message naming the parameter and what is allowed into err. */
int lab_param_set(struct lab_params *p, const char *name, const char *value, char *err,
		  size_t errlen);

/* Set one parameter from a JSON value (number, string or boolean). */
int lab_param_set_json(struct lab_params *p, const char *name, const json_t *value, char *err,
		       size_t errlen);

/* Parse "KEY=VALUE" as given to -p. */
int lab_param_set_kv(struct lab_params *p, const char *kv, char *err, size_t errlen);

/* Run the descriptor's cross-parameter check. *param is set to the offending
 * name on failure (may be NULL when no single parameter is to blame). */
int lab_params_check(const struct lab_params *p, const char **param, char *err, size_t errlen);

/* Lookups by name; the name must exist in the descriptor (a programming error
 * otherwise, so these abort). */
long long lab_int(const struct lab_params *p, const char *name);
const char *lab_str(const struct lab_params *p, const char *name);
int lab_is_set(const struct lab_params *p, const char *name);

/* Index of name in the descriptor, or -1. */
int lab_param_index(const struct lab_desc *lab, const char *name);

/* New JSON object of every parameter's applied value (typed). */
json_t *lab_params_json(const struct lab_params *p);

/* ---- run context helpers (labs/labrun.c) ---- */

/* Nonzero once the run has been cancelled (signal) or has passed its deadline. */
int lab_cancelled(struct lab_ctx *ctx);

/* Wait until fd has any of events (POLLIN/POLLOUT), the run is cancelled, or
 * timeout_ms passes (-1: no timeout other than the run's deadline). Returns
 * 1 when ready, 0 on timeout, -ECANCELED when cancelled, -errno on error. */
int lab_wait_fd(struct lab_ctx *ctx, int fd, short events, int timeout_ms);

/* lab_wait_fd, and also return 2 as soon as wake_fd (an eventfd or pipe a lab
 * thread signals; -1 for none) is readable. */
int lab_wait_fd2(struct lab_ctx *ctx, int fd, short events, int wake_fd, int timeout_ms);

/* Stop the run from inside (a lab thread failed): every lab_wait_fd returns
 * -ECANCELED from now on. The front end still reports the run as an error. */
void lab_abort(struct lab_ctx *ctx);

/* Sleep for ms unless cancelled first. Returns 0, or -ECANCELED. */
int lab_sleep_ms(struct lab_ctx *ctx, int ms);

/*
 * The run's stop watcher: one thread per run that waits for the cancel fd and
 * the deadline, so that a lab thread can make a classic blocking call (a
 * recv() that sleeps in the kernel) without a poll() before it and without a
 * timer of its own, and still stops when the run does. When the run is
 * cancelled or reaches its deadline the watcher sets a flag every call checks
 * (lab_watch_stopped) and interrupts, with a signal, every thread that is
 * inside a blocking call (lab_block_begin .. lab_block_end): the call returns
 * EINTR. A signal that lands just before the thread enters the call is
 * repeated every 2 ms until the thread is out, so no thread stays blocked.
 *
 * lab_watch_start: call on the run's main thread after ctx->cancel_fd and
 * ctx->deadline_us are set, before the lab runs; it sets ctx->watch. 0 or
 * -errno (err says why; the run then works without it, polling). Uses the
 * signal SIGRTMIN + 3 (a handler that does nothing, without SA_RESTART).
 * lab_watch_stop: after every lab thread has returned; clears ctx->watch.
 */
struct lab_watch;
int lab_watch_start(struct lab_ctx *ctx, char *err, size_t errlen);
void lab_watch_stop(struct lab_ctx *ctx);

/* 1 once the watcher saw the run cancelled or past its deadline (one atomic
 * load; 0 without a watcher). */
int lab_watch_stopped(const struct lab_ctx *ctx);

/* Around one blocking system call on the calling thread (ctx->watch set):
 * lab_block_begin returns -ECANCELED (make no call) when the run is stopping,
 * else 0, and from then until lab_block_end the watcher may interrupt the
 * call. A call that fails with EINTR is retried unless lab_watch_stopped. */
int lab_block_begin(struct lab_ctx *ctx);
void lab_block_end(struct lab_ctx *ctx);

/* lab_block_begin for a call that also ends when wake_fd (an eventfd) is
 * woken with lab_wake: returns 2 (make no call) when it already was. After
 * EINTR, lab_block_woken says whether that was the reason. */
int lab_block_begin2(struct lab_ctx *ctx, int wake_fd);
int lab_block_woken(const struct lab_ctx *ctx, int wake_fd);

/* Wake the threads that wait with wake_fd (an eventfd; lsock_io.wake_fd):
 * writes 1 to it (a poll() sees it readable) and has the watcher interrupt a
 * blocking call made with it. It stays woken for the rest of the run. */
void lab_wake(struct lab_ctx *ctx, int wake_fd);

#endif
