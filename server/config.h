/* config.h: `socklab serve` settings from flags and environment variables, and the Origin policy. */
#ifndef SOCKLAB_CONFIG_H
#define SOCKLAB_CONFIG_H

#include <stddef.h>

#define CONFIG_ADDR_MAX 64
#define CONFIG_PATH_MAX 1024
#define CONFIG_URL_MAX 256
#define CONFIG_MAX_ORIGINS 16
#define CONFIG_SECRET_MIN 8
#define CONFIG_SECRET_MAX 128
/* Length of a generated instructor secret. */
#define CONFIG_SECRET_GEN 24

/* Largest client -> server WebSocket message (bytes). */
#define CONFIG_MAX_MESSAGE_BYTES 65536

/*
 * Every setting of `socklab serve`. Filled once by config_parse() on the main
 * thread before any other thread starts, then read-only: the HTTP thread and
 * the lws thread read it without a lock.
 */
struct serve_config {
	char listen[CONFIG_ADDR_MAX];   /* IPv4 or IPv6 literal */
	int listen_v6;                  /* listen is an IPv6 literal */
	int http_port;                  /* the public port (HTTP and /ws); 0: pick a free one */
	int ws_port;                    /* a separate WebSocket port too; -1: none, 0: free */
	char data[CONFIG_PATH_MAX];     /* run bundles live in data/runs/ID/ */
	char port_file[CONFIG_PATH_MAX];/* "" when not wanted */
	char origins[CONFIG_MAX_ORIGINS][CONFIG_URL_MAX]; /* extra allowed Origins */
	int n_origins;
	int any_origin;                 /* --origin '*' was given */
	int byo_lo, byo_hi;             /* bring-your-own-client port pool */
	char byo_bind[CONFIG_ADDR_MAX]; /* address BYO runs listen on */
	int max_runs, max_runs_per_conn;
	int max_runs_auto;              /* max_runs was sized from the machine */
	int queue_max;                  /* runs that may wait for a slot; 0: refuse at once */
	int queue_wait_s;               /* longest a run waits in the queue */
	int max_byo, max_byo_per_conn;
	int run_timeout_s;
	int keep_runs;                  /* bundles kept in data/runs (oldest pruned) */
	long long max_data;             /* bytes all bundles may take; 0: from the disk */
	long long max_run_data;         /* bytes of events one run may record; 0: derived */
	char public_ws_url[CONFIG_URL_MAX]; /* "" when not set */
	char nats_url[CONFIG_URL_MAX];  /* --nats; "" when not set */
	char byo_url[CONFIG_URL_MAX];   /* --byo-url: the page that hosts BYO runs when
					 * this server has none; "" when not set */
	long long nats_max_bytes;       /* the stream's size limit (oldest discarded) */
	/* The program each run executes as `PROGRAM run LAB --json ...`:
	 * /proc/self/exe (this binary) unless --lab-exe names another, such
	 * as a copy carrying file capabilities in a container (privs.h), or
	 * a fake that misbehaves on purpose in tests. lab_exe_from is the flag
	 * or variable that set it, for messages ("" for the default). */
	char lab_exe[CONFIG_PATH_MAX];
	char lab_exe_from[32];
	/* Classroom mode. The secret signs an instructor in; "" with a
	 * loopback listener and no proxy settings (--origin, --public-ws-url)
	 * means no secret is needed; otherwise config_parse() generates one
	 * (secret_generated) that the caller prints once. Never logged. */
	char instructor_secret[CONFIG_SECRET_MAX + 1];
	int secret_generated;
	int max_classes;                /* classes open at once */
	int max_class_viewers;          /* students per class */
	int class_buffer;               /* events kept per class ring */
	int class_grace_s;              /* a class outlives its instructor's connection this long */
	int signin_lockout_s;           /* sign-ins refused this long after too many wrong ones */
	int max_conns;                  /* WebSocket connections at once */
	int msg_rate;                   /* messages per second per connection (burst 2x) */
	int http_max_conns;             /* HTTP connections at once */
	int max_conns_per_addr;         /* HTTP, and WebSocket, connections per client address */
	int header_timeout_s;           /* a whole request must arrive within this */
	int queue_total_mib;            /* WebSocket bytes queued for all connections */
	int fanout;                     /* enum config_fanout: how class messages are written */
};

/* How a class's messages are written to its viewers (--fanout, ws_fanout.c). */
enum config_fanout {
	CONFIG_FANOUT_AUTO,     /* io_uring when the kernel allows it, else send */
	CONFIG_FANOUT_IO_URING, /* one io_uring submission per sweep; no start without it */
	CONFIG_FANOUT_SEND,     /* one send() per viewer from the sweep */
	CONFIG_FANOUT_LWS,      /* every message from each viewer's lws writeable callback */
};

/* Their names, indexed by enum config_fanout, then NULL. */
extern const char *const config_fanout_names[];

/* config_parse() returns this when --help was given (usage is not an error). */
#define CONFIG_HELP 1

/* Fill c from defaults, then the environment (looked up through env, which
 * may be NULL for none; pass getenv normally), then argv (argv[0] is the
 * command name "serve"). A flag wins over its environment variable. Returns
 * 0, CONFIG_HELP, or -EINVAL with a message naming the flag or variable and
 * what it allows in err. */
int config_parse(struct serve_config *c, int argc, char **argv,
		 const char *(*env)(const char *name), char *err, size_t errlen);

/* Check that lab_exe is an executable regular file (I/O: called once at
 * start-up, after config_parse). 0, or -errno with a message naming the
 * flag or variable in err. */
int config_check_lab_exe(const struct serve_config *c, char *err, size_t errlen);

/* The usage text of `socklab serve --help`. */
extern const char config_usage[];

/* n random characters from an alphabet without look-alikes (getrandom), then
 * a NUL: out holds n + 1 bytes, n <= 256. 0 or -errno. */
int config_random_text(char *out, size_t n);

/* The default --max-runs for a machine with cores CPUs and mem_mib MiB of
 * memory (0: unknown): CONFIG_RUNS_PER_CORE per core, at most one per
 * CONFIG_MIB_PER_RUN MiB, within CONFIG_MIN_DEFAULT_RUNS..1024. Pure. */
#define CONFIG_RUNS_PER_CORE 8
#define CONFIG_MIB_PER_RUN 64
#define CONFIG_MIN_DEFAULT_RUNS 4
int config_default_max_runs(long cores, long long mem_mib);

/* 1 when addr (an IPv4 or IPv6 literal) is a loopback address. */
int config_is_loopback(const char *addr);

/* 1 when addr is the IPv4 or IPv6 wildcard (0.0.0.0, ::). */
int config_is_wildcard(const char *addr);

/* Write addr as it appears in a URL ("[::1]" for IPv6) into out. */
void config_url_host(const char *addr, char *out, size_t outlen);

/*
 * The WebSocket Origin policy (browsers send Origin; libwebsockets does not
 * check it). origin is the request's Origin header or NULL when absent; host
 * is its Host header or NULL. Allowed:
 *   - no Origin at all: a non-browser client, which cross-site WebSocket
 *     hijacking cannot come from;
 *   - http://LISTEN:HTTP_PORT, and on a loopback listener also the localhost,
 *     127.0.0.1 and [::1] spellings of it;
 *   - on any other listener (0.0.0.0, ::, a LAN address), http://H:HTTP_PORT
 *     where H is the host the client connected to (its Host header), so the
 *     page works under whatever name or address students use. A loopback
 *     listener does not do this: a name there could be DNS rebinding;
 *   - every --origin given (exact match), or anything after --origin '*'.
 * Returns 1 when allowed.
 */
int config_origin_allowed(const struct serve_config *c, int http_port, const char *origin,
			  const char *host);

/*
 * The HTTP Host policy against DNS rebinding: a page on an attacker's domain
 * whose name is made to resolve to this server would otherwise read it as
 * same-origin. host is the request's Host header (with or without a port) or
 * NULL when absent (not a browser: allowed). Allowed: the host of any
 * --origin or --public-ws-url; an IP literal that is the listen address (any
 * loopback address on a loopback listener, any address on a wildcard one);
 * localhost on a loopback or wildcard listener; anything after --origin '*'.
 * Returns 1 when allowed.
 */
int config_host_allowed(const struct serve_config *c, const char *host);

#endif
