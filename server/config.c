/* config.c: parse and validate `socklab serve` flags and SOCKLAB_* environment variables. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/random.h>

const char config_usage[] =
	"usage: socklab serve [OPTIONS]\n"
	"\n"
	"Serve the dashboard (HTTP) and live runs (WebSocket). Each option can also be\n"
	"set with the environment variable in brackets; a flag wins over its variable.\n"
	"\n"
	"  --listen ADDR            address to listen on [SOCKLAB_LISTEN] (127.0.0.1)\n"
	"  --http-port N            the one public port: dashboard, REST API and WebSocket\n"
	"                           (/ws); 0 picks a free one [SOCKLAB_HTTP_PORT] (8080)\n"
	"  --ws-port N              also serve the WebSocket on a port of its own (the old\n"
	"                           layout); 0 picks a free one [SOCKLAB_WS_PORT] (none)\n"
	"  --data DIR               run bundles directory [SOCKLAB_DATA] (./socklab-data)\n"
	"  --port-file FILE         write {\"http_port\":N,\"ws_port\":M,\"ws_path\":\"/ws\"}\n"
	"                           once listening (ws_port is N without --ws-port)\n"
	"                           [SOCKLAB_PORT_FILE]\n"
	"  --origin URL             also accept WebSocket clients from this page origin\n"
	"                           (repeatable; '*' accepts any) [SOCKLAB_ORIGINS, comma-separated]\n"
	"  --byo-ports LO-HI        ports for bring-your-own-client runs [SOCKLAB_BYO_PORTS]\n"
	"                           (9000-9019)\n"
	"  --byo-bind ADDR          address those runs listen on [SOCKLAB_BYO_BIND] (--listen)\n"
	"  --max-runs N             runs at once, 1-1024 [SOCKLAB_MAX_RUNS] (16)\n"
	"  --max-runs-per-conn N    runs at once per connection, 1-64\n"
	"                           [SOCKLAB_MAX_RUNS_PER_CONN] (3)\n"
	"  --max-byo N              bring-your-own-client runs at once, 0-1000 [SOCKLAB_MAX_BYO] (8)\n"
	"  --max-byo-per-conn N     ... per connection, 0-64 [SOCKLAB_MAX_BYO_PER_CONN] (1)\n"
	"  --byo-url URL            with --max-byo 0: the http(s) page of the server that runs\n"
	"                           them, shown to students instead [SOCKLAB_BYO_URL]\n"
	"  --run-timeout SEC        wall-clock limit of one run, 1-3600 [SOCKLAB_RUN_TIMEOUT] (120)\n"
	"  --public-ws-url URL      WebSocket URL browsers should use (behind a proxy)\n"
	"                           [SOCKLAB_PUBLIC_WS_URL]\n"
	"  --keep-runs N            saved run bundles to keep, oldest removed first, 10-100000\n"
	"                           [SOCKLAB_KEEP_RUNS] (1000)\n"
	"  --max-data BYTES         space all run bundles may take, oldest removed first;\n"
	"                           a number with K, M, G or T (powers of 1024), 16M-1024T\n"
	"                           [SOCKLAB_MAX_DATA] (a quarter of the data directory's\n"
	"                           filesystem)\n"
	"  --max-run-data BYTES     events one run may record; a run that reaches it is\n"
	"                           stopped as 'truncated', 64K-1024G [SOCKLAB_MAX_RUN_DATA]\n"
	"                           (--max-data / (2 x --max-runs), 1M to 256M)\n"
	"  --lab-exe PATH           program lab runs execute, an absolute path to socklab or\n"
	"                           a copy with file capabilities [SOCKLAB_LAB_EXE]\n"
	"                           (this binary)\n"
	"  --instructor-secret S    secret that signs an instructor in, 8-128 printable\n"
	"                           characters [SOCKLAB_INSTRUCTOR_SECRET] (beyond loopback or\n"
	"                           behind a proxy: generated and printed once on stdout)\n"
	"  --max-classes N          classes open at once, 1-1000 [SOCKLAB_MAX_CLASSES] (8)\n"
	"  --max-class-viewers N    students per class (with --nats: on every replica\n"
	"                           together), 1-20000 [SOCKLAB_MAX_CLASS_VIEWERS] (200)\n"
	"  --class-buffer N         events kept per class for slow viewers, 16-65536\n"
	"                           [SOCKLAB_CLASS_BUFFER] (4096)\n"
	"  --max-conns N            WebSocket connections at once, 16-60000 [SOCKLAB_MAX_CONNS]\n"
	"                           (1024)\n"
	"  --msg-rate N             messages per second one connection may send, 1-1000\n"
	"                           (bursts of twice that) [SOCKLAB_MSG_RATE] (20)\n"
	"  --http-max-conns N       HTTP connections at once, 16-60000 [SOCKLAB_HTTP_MAX_CONNS]\n"
	"                           (1024)\n"
	"  --max-conns-per-addr N   HTTP connections, and WebSocket connections, from one\n"
	"                           client address at once, 1-60000\n"
	"                           [SOCKLAB_MAX_CONNS_PER_ADDR] (64)\n"
	"  --header-timeout SEC     time a client has to send a whole request (the clock is\n"
	"                           not reset by trickled bytes), 1-300\n"
	"                           [SOCKLAB_HEADER_TIMEOUT] (10)\n"
	"  --queue-total MIB        outgoing WebSocket messages queued for all connections\n"
	"                           together, 1-4096 MiB [SOCKLAB_QUEUE_TOTAL] (64)\n"
	"  --fanout MODE            how class messages reach viewers: io_uring (one system\n"
	"                           call for all of them), send (one per viewer), lws (each\n"
	"                           viewer's writeable callback), or auto: io_uring when the\n"
	"                           kernel allows it, else send [SOCKLAB_FANOUT] (auto)\n"
	"  --nats URL               append every run event to the NATS JetStream stream\n"
	"                           SOCKLAB_RUNS (nats://HOST:PORT) [SOCKLAB_NATS] (none)\n"
	"  --nats-max-bytes N       the stream's size; the oldest events go first, 1M-1P\n"
	"                           [SOCKLAB_NATS_MAX_BYTES] (1G)\n"
	"  -h, --help               this text\n";

enum opt_kind {
	OPT_ADDR,
	OPT_PORT,
	OPT_PATH,
	OPT_INT,
	OPT_ORIGINS,
	OPT_RANGE,
	OPT_WSURL,
	OPT_NATSURL,
	OPT_PAGEURL,
	OPT_EXE,
	OPT_SECRET,
	OPT_BYTES,
	OPT_FANOUT,
};

struct opt_def {
	const char *flag;
	const char *env;
	enum opt_kind kind;
	size_t off;   /* field in struct serve_config */
	size_t size;  /* for text fields */
	long min, max;
};

#define F(field) offsetof(struct serve_config, field), sizeof(((struct serve_config *)0)->field)

static const struct opt_def opts[] = {
	{"--listen", "SOCKLAB_LISTEN", OPT_ADDR, F(listen), 0, 0},
	{"--http-port", "SOCKLAB_HTTP_PORT", OPT_PORT, F(http_port), 0, 65535},
	{"--ws-port", "SOCKLAB_WS_PORT", OPT_PORT, F(ws_port), 0, 65535},
	{"--data", "SOCKLAB_DATA", OPT_PATH, F(data), 0, 0},
	{"--port-file", "SOCKLAB_PORT_FILE", OPT_PATH, F(port_file), 0, 0},
	{"--origin", "SOCKLAB_ORIGINS", OPT_ORIGINS, F(origins), 0, 0},
	{"--byo-ports", "SOCKLAB_BYO_PORTS", OPT_RANGE, F(byo_lo), 1, 65535},
	{"--byo-bind", "SOCKLAB_BYO_BIND", OPT_ADDR, F(byo_bind), 0, 0},
	{"--max-runs", "SOCKLAB_MAX_RUNS", OPT_INT, F(max_runs), 1, 1024},
	{"--queue-max", "SOCKLAB_QUEUE_MAX", OPT_INT, F(queue_max), 0, 100000},
	{"--queue-wait", "SOCKLAB_QUEUE_WAIT", OPT_INT, F(queue_wait_s), 1, 3600},
	{"--max-runs-per-conn", "SOCKLAB_MAX_RUNS_PER_CONN", OPT_INT, F(max_runs_per_conn), 1, 64},
	{"--max-byo", "SOCKLAB_MAX_BYO", OPT_INT, F(max_byo), 0, 1000},
	{"--max-byo-per-conn", "SOCKLAB_MAX_BYO_PER_CONN", OPT_INT, F(max_byo_per_conn), 0, 64},
	{"--run-timeout", "SOCKLAB_RUN_TIMEOUT", OPT_INT, F(run_timeout_s), 1, 3600},
	{"--public-ws-url", "SOCKLAB_PUBLIC_WS_URL", OPT_WSURL, F(public_ws_url), 0, 0},
	{"--nats", "SOCKLAB_NATS", OPT_NATSURL, F(nats_url), 0, 0},
	{"--byo-url", "SOCKLAB_BYO_URL", OPT_PAGEURL, F(byo_url), 0, 0},
	{"--nats-max-bytes", "SOCKLAB_NATS_MAX_BYTES", OPT_BYTES, F(nats_max_bytes), 1L << 20,
	 1L << 50},
	{"--keep-runs", "SOCKLAB_KEEP_RUNS", OPT_INT, F(keep_runs), 10, 100000},
	{"--max-data", "SOCKLAB_MAX_DATA", OPT_BYTES, F(max_data), 16L << 20, 1L << 50},
	{"--max-run-data", "SOCKLAB_MAX_RUN_DATA", OPT_BYTES, F(max_run_data), 64L << 10, 1L << 40},
	{"--lab-exe", "SOCKLAB_LAB_EXE", OPT_EXE, F(lab_exe), 0, 0},
	{"--instructor-secret", "SOCKLAB_INSTRUCTOR_SECRET", OPT_SECRET, F(instructor_secret),
	 CONFIG_SECRET_MIN, CONFIG_SECRET_MAX},
	{"--max-classes", "SOCKLAB_MAX_CLASSES", OPT_INT, F(max_classes), 1, 1000},
	{"--max-class-viewers", "SOCKLAB_MAX_CLASS_VIEWERS", OPT_INT, F(max_class_viewers), 1,
	 20000},
	{"--class-grace", "SOCKLAB_CLASS_GRACE", OPT_INT, F(class_grace_s), 1, 3600},
	{"--signin-lockout", "SOCKLAB_SIGNIN_LOCKOUT", OPT_INT, F(signin_lockout_s), 1, 3600},
	{"--class-buffer", "SOCKLAB_CLASS_BUFFER", OPT_INT, F(class_buffer), 16, 65536},
	{"--max-conns", "SOCKLAB_MAX_CONNS", OPT_INT, F(max_conns), 16, 60000},
	{"--msg-rate", "SOCKLAB_MSG_RATE", OPT_INT, F(msg_rate), 1, 1000},
	{"--http-max-conns", "SOCKLAB_HTTP_MAX_CONNS", OPT_INT, F(http_max_conns), 16, 60000},
	{"--max-conns-per-addr", "SOCKLAB_MAX_CONNS_PER_ADDR", OPT_INT, F(max_conns_per_addr), 1,
	 60000},
	{"--header-timeout", "SOCKLAB_HEADER_TIMEOUT", OPT_INT, F(header_timeout_s), 1, 300},
	{"--queue-total", "SOCKLAB_QUEUE_TOTAL", OPT_INT, F(queue_total_mib), 1, 4096},
	{"--fanout", "SOCKLAB_FANOUT", OPT_FANOUT, F(fanout), 0, 0},
	{NULL, NULL, 0, 0, 0, 0, 0},
};

/* Largest bring-your-own-client pool: one bookkeeping byte per port. */
#define BYO_POOL_MAX 1000

static int parse_long(const char *s, long *out)
{
	char *end = NULL;
	long v;

	if (!*s || s[0] == ' ' || s[0] == '+' || s[0] == '-')
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* A byte count: digits and an optional K, M, G or T (powers of 1024). */
static int parse_bytes(const char *s, long *out)
{
	static const char units[] = "KMGT";
	char *end = NULL;
	const char *u;
	long v;
	int shift;

	if (!(*s >= '0' && *s <= '9'))
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end) {
		u = strchr(units, *end >= 'a' ? *end - 'a' + 'A' : *end);
		if (!u || !*u || end[1])
			return -EINVAL;
		shift = 10 * (int)(u - units + 1);
		if (v > (LONG_MAX >> shift))
			return -EINVAL;
		v <<= shift;
	}
	*out = v;
	return 0;
}

/* v as parse_bytes reads it, in the largest unit that divides it. */
static void bytes_text(long v, char *buf, size_t len)
{
	static const char units[] = " KMGT";
	int i = 0;

	while (i < 4 && v >= 1024 && v % 1024 == 0) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, "%ld%.*s", v, i > 0, units + i);
}

static int addr_family(const char *s)
{
	unsigned char buf[16];

	if (inet_pton(AF_INET, s, buf) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, buf) == 1)
		return AF_INET6;
	return 0;
}

int config_is_loopback(const char *addr)
{
	unsigned char b[16];
	static const unsigned char v6_lo[16] = {[15] = 1};

	if (inet_pton(AF_INET, addr, b) == 1)
		return b[0] == 127;
	if (inet_pton(AF_INET6, addr, b) == 1)
		return memcmp(b, v6_lo, 16) == 0;
	return 0;
}

int config_is_wildcard(const char *addr)
{
	unsigned char b[16];
	static const unsigned char zero[16];

	if (inet_pton(AF_INET, addr, b) == 1)
		return memcmp(b, zero, 4) == 0;
	if (inet_pton(AF_INET6, addr, b) == 1)
		return memcmp(b, zero, 16) == 0;
	return 0;
}

void config_url_host(const char *addr, char *out, size_t outlen)
{
	if (strchr(addr, ':'))
		snprintf(out, outlen, "[%s]", addr);
	else
		snprintf(out, outlen, "%s", addr);
}

/* A host name or address as it may appear in a URL or Host header: letters,
 * digits, '.', '-', or a bracketed IPv6 literal. */
static int host_ok(const char *h, size_t n)
{
	size_t i;

	if (n == 0 || n > 253)
		return 0;
	if (h[0] == '[') {
		if (n < 3 || h[n - 1] != ']')
			return 0;
		for (i = 1; i + 1 < n; i++)
			if (!strchr("0123456789abcdefABCDEF:.", h[i]))
				return 0;
		return 1;
	}
	for (i = 0; i < n; i++) {
		char ch = h[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '-'))
			return 0;
	}
	return 1;
}

/* scheme://host[:port] with nothing after it; schemes is NULL-terminated. */
static int url_ok(const char *u, const char *const *schemes, int allow_path)
{
	const char *rest = NULL, *end, *colon;
	size_t i;

	for (i = 0; schemes[i]; i++) {
		size_t n = strlen(schemes[i]);
		if (strncasecmp(u, schemes[i], n) == 0 && strncmp(u + n, "://", 3) == 0) {
			rest = u + n + 3;
			break;
		}
	}
	if (!rest)
		return 0;
	end = rest + strcspn(rest, "/");
	if (*end && !allow_path)
		return 0;
	/* The port follows the last ':' outside brackets. */
	colon = NULL;
	if (rest[0] == '[') {
		const char *rb = memchr(rest, ']', (size_t)(end - rest));
		if (!rb)
			return 0;
		if (rb + 1 < end) {
			if (rb[1] != ':')
				return 0;
			colon = rb + 1;
		}
	} else {
		colon = memchr(rest, ':', (size_t)(end - rest));
	}
	if (colon) {
		const char *p;
		long port = 0;
		if (colon + 1 == end || end - colon > 6)
			return 0;
		for (p = colon + 1; p < end; p++) {
			if (*p < '0' || *p > '9')
				return 0;
			port = port * 10 + (*p - '0');
		}
		if (port < 1 || port > 65535)
			return 0;
	}
	if (!host_ok(rest, (size_t)((colon ? colon : end) - rest)))
		return 0;
	/* Whatever follows (a path) must be plain printable text with no
	 * characters that would matter in a header value. */
	for (; *end; end++)
		if ((unsigned char)*end <= 0x20 || (unsigned char)*end >= 0x7f ||
		    strchr("\"';,\\", *end))
			return 0;
	return 1;
}

const char *const config_fanout_names[] = {
	[CONFIG_FANOUT_AUTO] = "auto",
	[CONFIG_FANOUT_IO_URING] = "io_uring",
	[CONFIG_FANOUT_SEND] = "send",
	[CONFIG_FANOUT_LWS] = "lws",
	NULL,
};

static const char *const origin_schemes[] = {"http", "https", NULL};
static const char *const ws_schemes[] = {"ws", "wss", NULL};
static const char *const nats_schemes[] = {"nats", NULL};

static int add_origin(struct serve_config *c, const char *o, size_t n, char *err, size_t errlen,
		      const char *who)
{
	char buf[CONFIG_URL_MAX];

	if (n >= sizeof buf) {
		snprintf(err, errlen, "%s: origin too long (at most %zu bytes)", who, sizeof buf - 1);
		return -EINVAL;
	}
	memcpy(buf, o, n);
	buf[n] = '\0';
	if (strcmp(buf, "*") == 0) {
		c->any_origin = 1;
		return 0;
	}
	/* Browsers send the origin without a trailing slash; accept one here. */
	if (n > 0 && buf[n - 1] == '/')
		buf[--n] = '\0';
	if (!url_ok(buf, origin_schemes, 0)) {
		snprintf(err, errlen,
			 "%s: must be an origin like http://host:port or https://host, or '*' "
			 "(got \"%.60s\")",
			 who, buf);
		return -EINVAL;
	}
	if (c->n_origins >= CONFIG_MAX_ORIGINS) {
		snprintf(err, errlen, "%s: at most %d origins", who, CONFIG_MAX_ORIGINS);
		return -EINVAL;
	}
	memcpy(c->origins[c->n_origins++], buf, n + 1);
	return 0;
}

/* Apply one value of option d; who is the flag or variable, for messages. */
static int apply(struct serve_config *c, const struct opt_def *d, const char *v, const char *who,
		 char *err, size_t errlen)
{
	char *field = (char *)c + d->off;
	long n, lo, hi;
	const char *dash;

	switch (d->kind) {
	case OPT_ADDR:
		if (!addr_family(v) || strlen(v) >= d->size) {
			snprintf(err, errlen,
				 "%s: must be an IPv4 or IPv6 address such as 127.0.0.1, 0.0.0.0 or ::1 "
				 "(got \"%.60s\")",
				 who, v);
			return -EINVAL;
		}
		snprintf(field, d->size, "%s", v);
		return 0;
	case OPT_PORT:
	case OPT_INT:
		if (parse_long(v, &n) < 0 || n < d->min || n > d->max) {
			snprintf(err, errlen, "%s: must be an integer from %ld to %ld (got \"%.40s\")",
				 who, d->min, d->max, v);
			return -EINVAL;
		}
		*(int *)(void *)field = (int)n;
		return 0;
	case OPT_BYTES:
		if (parse_bytes(v, &n) < 0 || n < d->min || n > d->max) {
			char lo_text[24], hi_text[24];
			bytes_text(d->min, lo_text, sizeof lo_text);
			bytes_text(d->max, hi_text, sizeof hi_text);
			snprintf(err, errlen,
				 "%s: must be a byte count from %s to %s, with K, M, G or T for "
				 "powers of 1024 (got \"%.40s\")",
				 who, lo_text, hi_text, v);
			return -EINVAL;
		}
		*(long long *)(void *)field = n;
		return 0;
	case OPT_PATH:
		if (!*v || strlen(v) >= d->size - 64) {
			snprintf(err, errlen, "%s: must be a path of 1 to %zu bytes", who,
				 d->size - 65);
			return -EINVAL;
		}
		snprintf(field, d->size, "%s", v);
		return 0;
	case OPT_ORIGINS: {
		/* One origin per flag; the variable is a comma-separated list. */
		int is_env = strncmp(who, "--", 2) != 0;
		const char *p = v;
		if (!is_env)
			return add_origin(c, v, strlen(v), err, errlen, who);
		while (*p) {
			size_t len = strcspn(p, ",");
			while (len > 0 && *p == ' ') {
				p++;
				len--;
			}
			while (len > 0 && p[len - 1] == ' ')
				len--;
			if (len > 0 && add_origin(c, p, len, err, errlen, who) < 0)
				return -EINVAL;
			p += strcspn(p, ",");
			if (*p == ',')
				p++;
		}
		return 0;
	}
	case OPT_RANGE: {
		char a[16], b[16];
		size_t la;
		dash = strchr(v, '-');
		la = dash ? (size_t)(dash - v) : 0;
		if (!dash || la == 0 || la >= sizeof a || strlen(dash + 1) >= sizeof b)
			goto bad_range;
		memcpy(a, v, la);
		a[la] = '\0';
		snprintf(b, sizeof b, "%s", dash + 1);
		if (parse_long(a, &lo) < 0 || parse_long(b, &hi) < 0 || lo < d->min || hi > d->max ||
		    lo > hi || hi - lo + 1 > BYO_POOL_MAX)
			goto bad_range;
		c->byo_lo = (int)lo;
		c->byo_hi = (int)hi;
		return 0;
	bad_range:
		snprintf(err, errlen,
			 "%s: must be LO-HI with 1 <= LO <= HI <= 65535 and at most %d ports "
			 "(got \"%.40s\")",
			 who, BYO_POOL_MAX, v);
		return -EINVAL;
	}
	case OPT_SECRET: {
		size_t len = strlen(v), k;
		int ok = len >= (size_t)d->min && len <= (size_t)d->max;
		for (k = 0; ok && k < len; k++)
			ok = v[k] > 0x20 && v[k] < 0x7f;
		if (!ok) {
			/* The value itself is never repeated back: it is a secret. */
			snprintf(err, errlen,
				 "%s: must be %ld to %ld printable characters without spaces", who,
				 d->min, d->max);
			return -EINVAL;
		}
		snprintf(field, d->size, "%s", v);
		return 0;
	}
	case OPT_WSURL:
		if (strlen(v) >= d->size || !url_ok(v, ws_schemes, 1)) {
			snprintf(err, errlen,
				 "%s: must be a ws:// or wss:// URL such as wss://lab.example/ws "
				 "(at most %zu bytes; got \"%.60s\")",
				 who, d->size - 1, v);
			return -EINVAL;
		}
		snprintf(field, d->size, "%s", v);
		return 0;
	case OPT_NATSURL:
		if (strlen(v) >= d->size || !url_ok(v, nats_schemes, 0)) {
			snprintf(err, errlen,
				 "%s: must be a nats:// URL such as nats://127.0.0.1:4222 "
				 "(at most %zu bytes; got \"%.60s\")",
				 who, d->size - 1, v);
			return -EINVAL;
		}
		snprintf(field, d->size, "%s", v);
		return 0;
	case OPT_PAGEURL:
		if (strlen(v) >= d->size || !url_ok(v, origin_schemes, 1)) {
			snprintf(err, errlen,
				 "%s: must be an http:// or https:// URL such as "
				 "https://byo.lab.example.org/ (at most %zu bytes; got \"%.60s\")",
				 who, d->size - 1, v);
			return -EINVAL;
		}
		snprintf(field, d->size, "%s", v);
		return 0;
	case OPT_FANOUT:
		for (n = 0; config_fanout_names[n]; n++)
			if (!strcmp(v, config_fanout_names[n])) {
				*(int *)(void *)field = (int)n;
				return 0;
			}
		snprintf(err, errlen, "%s: must be auto, io_uring, send or lws (got \"%.40s\")", who,
			 v);
		return -EINVAL;
	case OPT_EXE:
		if (v[0] != '/' || strlen(v) >= d->size) {
			snprintf(err, errlen,
				 "%s: must be an absolute path of at most %zu bytes (got \"%.60s\")",
				 who, d->size - 1, v);
			return -EINVAL;
		}
		snprintf(field, d->size, "%s", v);
		snprintf(c->lab_exe_from, sizeof c->lab_exe_from, "%s", who);
		return 0;
	}
	return -EINVAL;
}

static void defaults(struct serve_config *c)
{
	memset(c, 0, sizeof *c);
	snprintf(c->listen, sizeof c->listen, "127.0.0.1");
	c->http_port = 8080;
	c->ws_port = -1; /* the WebSocket is served on the HTTP port only */
	c->nats_max_bytes = 1LL << 30;
	snprintf(c->data, sizeof c->data, "./socklab-data");
	c->byo_lo = 9000;
	c->byo_hi = 9019;
	c->max_runs = 0; /* sized from the machine after parsing */
	c->queue_max = 1000;
	c->queue_wait_s = 300;
	c->max_runs_per_conn = 3;
	c->max_byo = 8;
	c->max_byo_per_conn = 1;
	c->run_timeout_s = 120;
	c->keep_runs = 1000;
	snprintf(c->lab_exe, sizeof c->lab_exe, "/proc/self/exe");
	c->max_classes = 8;
	c->max_class_viewers = 200;
	c->class_buffer = 4096;
	c->class_grace_s = 120;
	c->signin_lockout_s = 30;
	c->max_conns = 1024;
	c->msg_rate = 20;
	c->http_max_conns = 1024;
	c->max_conns_per_addr = 64;
	c->header_timeout_s = 10;
	c->queue_total_mib = 64;
}

int config_parse(struct serve_config *c, int argc, char **argv,
		 const char *(*env)(const char *name), char *err, size_t errlen)
{
	const struct opt_def *d;
	int byo_bind_set = 0, origin_flag_seen = 0;
	int i, rc;

	defaults(c);
	for (d = opts; env && d->flag; d++) {
		const char *v = env(d->env);
		if (!v)
			continue;
		rc = apply(c, d, v, d->env, err, errlen);
		if (rc < 0)
			return rc;
		if (d->off == offsetof(struct serve_config, byo_bind))
			byo_bind_set = 1;
	}
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = NULL;
		size_t flen;

		if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
			return CONFIG_HELP;
		flen = strcspn(arg, "=");
		for (d = opts; d->flag; d++)
			if (strlen(d->flag) == flen && strncmp(arg, d->flag, flen) == 0)
				break;
		if (!d->flag) {
			snprintf(err, errlen, "unknown option '%.60s' (see socklab serve --help)", arg);
			return -EINVAL;
		}
		if (arg[flen] == '=') {
			val = arg + flen + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			snprintf(err, errlen, "%s needs a value (see socklab serve --help)", d->flag);
			return -EINVAL;
		}
		if (d->kind == OPT_ORIGINS && !origin_flag_seen) {
			/* Flags replace the variable's list rather than adding to it. */
			origin_flag_seen = 1;
			c->n_origins = 0;
			c->any_origin = 0;
		}
		rc = apply(c, d, val, d->flag, err, errlen);
		if (rc < 0)
			return rc;
		if (d->off == offsetof(struct serve_config, byo_bind))
			byo_bind_set = 1;
	}
	if (!byo_bind_set)
		snprintf(c->byo_bind, sizeof c->byo_bind, "%s", c->listen);
	if (c->byo_url[0] && c->max_byo > 0 && c->max_byo_per_conn > 0) {
		/* Pointing students elsewhere only makes sense where they cannot
		 * run such a lab here. */
		snprintf(err, errlen,
			 "--byo-url: only with --max-byo 0 (this server runs up to %d "
			 "bring-your-own-client runs itself)",
			 c->max_byo);
		return -EINVAL;
	}
	if (c->max_runs == 0) {
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
		long long mib = pages > 0 && psize > 0 ? (long long)pages * psize >> 20 : 0;

		c->max_runs = config_default_max_runs(cores, mib);
		c->max_runs_auto = 1;
	}
	c->listen_v6 = addr_family(c->listen) == AF_INET6;
	/* Beyond loopback, or behind a reverse proxy (which makes a loopback
	 * listener reachable from anywhere), teaching needs a secret. */
	if (!c->instructor_secret[0] && (!config_is_loopback(c->listen) || c->public_ws_url[0] ||
					 c->n_origins > 0 || c->any_origin)) {
		rc = config_random_text(c->instructor_secret, CONFIG_SECRET_GEN);
		if (rc < 0) {
			snprintf(err, errlen, "cannot generate an instructor secret: %s",
				 strerror(-rc));
			return rc;
		}
		c->secret_generated = 1;
	}
	return 0;
}

int config_default_max_runs(long cores, long long mem_mib)
{
	long long n;

	/* A run is mostly waiting (on its peer, the wire, the kernel): eight
	 * per core keep the cores busy. Each takes about 10 MiB (a tcp-echo
	 * run's peak RSS) and may take more, so allow one per 64 MiB. */
	if (cores < 1)
		cores = 1;
	n = (long long)cores * CONFIG_RUNS_PER_CORE;
	if (mem_mib > 0 && n > mem_mib / CONFIG_MIB_PER_RUN)
		n = mem_mib / CONFIG_MIB_PER_RUN;
	if (n < CONFIG_MIN_DEFAULT_RUNS)
		n = CONFIG_MIN_DEFAULT_RUNS;
	if (n > 1024)
		n = 1024;
	return (int)n;
}

int config_random_text(char *out, size_t n)
{
	/* 32 symbols without look-alikes (0/O, 1/I/L): 5 bits each. */
	static const char alphabet[] = "23456789ABCDEFGHJKMNPQRSTUVWXYZa";
	unsigned char raw[256];
	size_t i, got = 0;

	if (n > sizeof raw)
		return -EINVAL;
	while (got < n) {
		ssize_t r = getrandom(raw + got, n - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)r;
	}
	for (i = 0; i < n; i++)
		out[i] = alphabet[raw[i] % 32];
	out[n] = '\0';
	return 0;
}

int config_check_lab_exe(const struct serve_config *c, char *err, size_t errlen)
{
	struct stat st;
	int rc = 0;

	if (!c->lab_exe_from[0])
		return 0; /* this binary */
	if (stat(c->lab_exe, &st) < 0)
		rc = -errno;
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	else if (access(c->lab_exe, X_OK) < 0)
		rc = -errno;
	if (rc == -EINVAL)
		snprintf(err, errlen, "%s: %.300s is not a regular file", c->lab_exe_from, c->lab_exe);
	else if (rc < 0)
		snprintf(err, errlen, "%s: cannot execute %.300s: %s", c->lab_exe_from, c->lab_exe,
			 strerror(-rc));
	return rc;
}

/* Compare an Origin with "http://" + host + ":" + port. */
static int origin_is(const char *origin, const char *host, int port)
{
	char want[CONFIG_URL_MAX + 32];

	snprintf(want, sizeof want, "http://%s:%d", host, port);
	return strcasecmp(origin, want) == 0;
}

static int host_is_ip_literal(const char *h)
{
	struct in6_addr a6;
	struct in_addr a4;
	char inner[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(h);

	if (h[0] == '[' && n >= 3 && n - 2 < sizeof inner && h[n - 1] == ']') {
		memcpy(inner, h + 1, n - 2);
		inner[n - 2] = '\0';
		return inet_pton(AF_INET6, inner, &a6) == 1;
	}
	return inet_pton(AF_INET, h, &a4) == 1;
}

int config_origin_allowed(const struct serve_config *c, int http_port, const char *origin,
			  const char *host)
{
	char h[CONFIG_URL_MAX];
	int i;

	if (!origin)
		return 1;
	if (c->any_origin)
		return 1;
	for (i = 0; i < c->n_origins; i++)
		if (strcasecmp(origin, c->origins[i]) == 0)
			return 1;
	config_url_host(c->listen, h, sizeof h);
	if (origin_is(origin, h, http_port))
		return 1;
	if (config_is_loopback(c->listen) &&
	    (origin_is(origin, "localhost", http_port) || origin_is(origin, "127.0.0.1", http_port) ||
	     origin_is(origin, "[::1]", http_port)))
		return 1;
	if (!config_is_loopback(c->listen) && host) {
		/* The host part of the Host header, without its port. */
		size_t n;
		if (host[0] == '[') {
			const char *rb = strchr(host, ']');
			n = rb ? (size_t)(rb - host) + 1 : 0;
		} else {
			n = strcspn(host, ":");
		}
		if (n == 0 || n >= sizeof h || !host_ok(host, n))
			return 0;
		memcpy(h, host, n);
		h[n] = '\0';
		/* Only an IP literal: a name in Host could be an attacker's domain
		 * rebound to this machine's address (DNS rebinding), and its page
		 * would then pass as same-origin. Names must be listed with --origin. */
		if (host_is_ip_literal(h) && origin_is(origin, h, http_port))
			return 1;
	}
	return 0;
}

/* Equal host parts, ignoring case: host is n bytes, name is NUL-terminated. */
static int host_is(const char *host, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(host, name, n) == 0;
}

/* The host part of URL u (scheme://host[:port][/...]) equals host[0..n). */
static int url_host_is(const char *u, const char *host, size_t n)
{
	const char *p = strstr(u, "://"), *end;

	if (!p)
		return 0;
	p += 3;
	if (*p == '[') {
		end = strchr(p, ']');
		end = end ? end + 1 : p + strlen(p);
	} else {
		end = p + strcspn(p, ":/");
	}
	return (size_t)(end - p) == n && strncasecmp(p, host, n) == 0;
}

int config_host_allowed(const struct serve_config *c, const char *host)
{
	char h[CONFIG_URL_MAX];
	size_t n;
	int i;

	if (!host)
		return 1;
	if (c->any_origin)
		return 1;
	if (host[0] == '[') {
		const char *rb = strchr(host, ']');
		n = rb ? (size_t)(rb - host) + 1 : 0;
	} else {
		n = strcspn(host, ":");
	}
	if (n == 0 || n >= sizeof h || !host_ok(host, n))
		return 0;
	/* Whatever follows the host is a port: digits only. */
	if (host[n] && (host[n] != ':' || !host[n + 1] ||
			strspn(host + n + 1, "0123456789") != strlen(host + n + 1)))
		return 0;
	memcpy(h, host, n);
	h[n] = '\0';
	/* Names the operator gave for this server: the pages' origins and the
	 * public WebSocket URL (a reverse proxy forwards the name browsers use). */
	for (i = 0; i < c->n_origins; i++)
		if (url_host_is(c->origins[i], h, n))
			return 1;
	if (c->public_ws_url[0] && url_host_is(c->public_ws_url, h, n))
		return 1;
	if (host_is_ip_literal(h)) {
		/* An address cannot be rebound: whatever reaches a wildcard
		 * listener by address is fine; otherwise the listen address (any
		 * loopback address for a loopback listener). */
		unsigned char a[16], b[16];
		char inner[INET6_ADDRSTRLEN + 2];
		int fam = h[0] == '[' ? AF_INET6 : AF_INET;
		if (config_is_wildcard(c->listen))
			return 1;
		if (fam == AF_INET6) {
			memcpy(inner, h + 1, n - 2);
			inner[n - 2] = '\0';
		} else {
			memcpy(inner, h, n + 1);
		}
		if (config_is_loopback(c->listen) && config_is_loopback(inner))
			return 1;
		return fam == (c->listen_v6 ? AF_INET6 : AF_INET) &&
		       inet_pton(fam, inner, a) == 1 && inet_pton(fam, c->listen, b) == 1 &&
		       memcmp(a, b, fam == AF_INET6 ? 16 : 4) == 0;
	}
	/* A name: only localhost, and only where the server can be reached that
	 * way. Any other name could be an attacker's domain rebound to this
	 * machine's address (DNS rebinding). */
	if (host_is(h, n, "localhost") || host_is(h, n, "localhost."))
		return config_is_loopback(c->listen) || config_is_wildcard(c->listen);
	return 0;
}
