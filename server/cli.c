/* cli.c: `socklab labs` and `socklab run`: the terminal front ends of the lab engine. */
#include "cli.h"
#include "i18n.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bundle.h"
#include "cli_quiz.h"
#include "lab.h"
#include "net/net.h"
#include "privs.h"
#include "sandbox.h"
#include "version.h"

#define MAX_TIMEOUT_S 3600
#define DEFAULT_TIMEOUT_S 120

/* ---- socklab labs ---- */

static void print_param(const json_t *pj)
{
	const char *type = json_string_value(json_object_get(pj, "type"));
	char range[256] = "";
	char def[128];
	json_t *d = json_object_get(pj, "default");

	if (json_is_integer(d))
		snprintf(def, sizeof def, "%lld", (long long)json_integer_value(d));
	else if (json_is_boolean(d))
		snprintf(def, sizeof def, "%s", json_is_true(d) ? "true" : "false");
	else
		snprintf(def, sizeof def, "\"%s\"", json_string_value(d));
	if (!strcmp(type, "integer")) {
		snprintf(range, sizeof range, "%lld..%lld%s%s",
			 (long long)json_integer_value(json_object_get(pj, "min")),
			 (long long)json_integer_value(json_object_get(pj, "max")),
			 json_object_get(pj, "unit") ? " " : "",
			 json_object_get(pj, "unit")
				 ? json_string_value(json_object_get(pj, "unit"))
				 : "");
	} else if (!strcmp(type, "choice")) {
		size_t i, off = 0;
		json_t *c;
		json_array_foreach(json_object_get(pj, "choices"), i, c) {
			int w = snprintf(range + off, sizeof range - off, "%s%s", i ? "|" : "",
					 json_string_value(c));
			if (w < 0 || (size_t)w >= sizeof range - off)
				break;
			off += (size_t)w;
		}
	} else if (!strcmp(type, "string")) {
		snprintf(range, sizeof range, "text, %lld..%lld bytes",
			 (long long)json_integer_value(json_object_get(pj, "min_len")),
			 (long long)json_integer_value(json_object_get(pj, "max_len")));
	} else {
		snprintf(range, sizeof range, "true|false");
	}
	printf("    %-14s %-28s default %-18s %s\n", json_string_value(json_object_get(pj, "name")),
	       range, def, json_string_value(json_object_get(pj, "help")));
}

int cli_labs(int argc, char **argv)
{
	int as_json = 0, i;
	json_t *all, *lab;
	size_t k;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			as_json = 1;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("usage: socklab labs [--json]\n");
			return 0;
		} else {
			fprintf(stderr, "socklab labs: unknown option '%s' (allowed: --json)\n",
				argv[i]);
			return 2;
		}
	}
	all = lab_describe_all();
	if (as_json) {
		char *s = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		puts(s ? s : "[]");
		free(s);
		json_decref(all);
		return 0;
	}
	json_array_foreach(all, k, lab) {
		size_t j;
		json_t *pj;

		printf("%s  %s\n  %s\n  parameters (-p NAME=VALUE):\n",
		       json_string_value(json_object_get(lab, "name")),
		       json_string_value(json_object_get(lab, "title")),
		       json_string_value(json_object_get(lab, "summary")));
		json_array_foreach(json_object_get(lab, "params"), j, pj)
			print_param(pj);
		printf("\n");
	}
	json_decref(all);
	return 0;
}

/* ---- socklab run: the human-readable trace ---- */

static const char *jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static long long jint(const json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static void fmt_addr(const json_t *a, char *buf, size_t len)
{
	const char *h = jstr(a, "addr");

	if (strchr(h, ':'))
		snprintf(buf, len, "[%s]:%lld", h, jint(a, "port"));
	else
		snprintf(buf, len, "%s:%lld", h, jint(a, "port"));
}

/* The call as the program wrote it: "bind(3, 127.0.0.1:0)". */
static void fmt_call(const json_t *ev, char *buf, size_t len)
{
	const char *call = jstr(ev, "call");
	const json_t *a = json_object_get(ev, "args");
	long long fd = jint(ev, "fd");
	char addr[80];

	if (!strcmp(call, "socket")) {
		snprintf(buf, len, "socket(%s, %s)", jstr(a, "domain"), jstr(a, "type"));
	} else if (!strcmp(call, "setsockopt") && json_is_object(json_object_get(a, "value"))) {
		const json_t *v = json_object_get(a, "value");
		snprintf(buf, len, "setsockopt(%lld, %s, %s, {%lld, %lld})", fd, jstr(a, "level"),
			 jstr(a, "name"), jint(v, "l_onoff"), jint(v, "l_linger"));
	} else if (!strcmp(call, "setsockopt")) {
		snprintf(buf, len, "setsockopt(%lld, %s, %s, %lld)", fd, jstr(a, "level"),
			 jstr(a, "name"), jint(a, "value"));
	} else if (!strcmp(call, "bind") || !strcmp(call, "connect")) {
		fmt_addr(a, addr, sizeof addr);
		snprintf(buf, len, "%s(%lld, %s)", call, fd, addr);
	} else if (!strcmp(call, "listen")) {
		snprintf(buf, len, "listen(%lld, %lld)", fd, jint(a, "backlog"));
	} else if (!strcmp(call, "send")) {
		snprintf(buf, len, "send(%lld, %lld bytes)", fd, jint(a, "len"));
	} else if (!strcmp(call, "recv")) {
		snprintf(buf, len, "recv(%lld, %lld)", fd, jint(a, "len"));
	} else if (!strcmp(call, "shutdown")) {
		snprintf(buf, len, "shutdown(%lld, %s)", fd, jstr(a, "how"));
	} else {
		snprintf(buf, len, "%s(%lld)", call, fd);
	}
}

static void print_syscall(const json_t *ev, double ms)
{
	char call[160], who[32], extra[400] = "", addr[80];
	long long ret = jint(ev, "ret"), blocked = jint(ev, "blocked_us");
	const char *c = jstr(ev, "call");

	if (jint(ev, "conn") > 0)
		snprintf(who, sizeof who, "%s#%lld", jstr(ev, "who"), jint(ev, "conn"));
	else
		snprintf(who, sizeof who, "%s", jstr(ev, "who"));
	fmt_call(ev, call, sizeof call);
	if (ret < 0) {
		snprintf(extra, sizeof extra, " %s (%s)", jstr(ev, "errno_name"), jstr(ev, "error"));
	} else if (json_object_get(ev, "peer")) {
		fmt_addr(json_object_get(ev, "peer"), addr, sizeof addr);
		snprintf(extra, sizeof extra, "  from %s", addr);
	} else if (json_object_get(ev, "local") && strcmp(c, "bind") == 0) {
		fmt_addr(json_object_get(ev, "local"), addr, sizeof addr);
		snprintf(extra, sizeof extra, "  bound to %s", addr);
	} else if (json_object_get(ev, "local")) {
		fmt_addr(json_object_get(ev, "local"), addr, sizeof addr);
		snprintf(extra, sizeof extra, "  local %s", addr);
	} else if (json_is_true(json_object_get(ev, "eof"))) {
		snprintf(extra, sizeof extra, "  end of stream: the peer closed");
	} else if (json_object_get(ev, "data")) {
		snprintf(extra, sizeof extra, "  \"%.60s%s\"", jstr(ev, "data"),
			 strlen(jstr(ev, "data")) > 60 ? "..." : "");
	}
	printf("%10.3f  %-10s %-40s = %lld%s", ms, who, call, ret, extra);
	if (blocked >= 1000)
		printf("  [blocked %.1f ms]", (double)blocked / 1000.0);
	printf("\n");
}

/* "two-hosts over a relay: client 198.18.0.1, server 198.18.0.2, MTU 1500; c2s loss 10%" */
static void print_network(const json_t *net)
{
	const json_t *imp = json_object_get(net, "impair");
	static const char *const dirs[] = {"c2s", "s2c"};
	static const char *const knobs[] = {"delay_ms", "jitter_ms", "loss_pct", "dup_pct",
					    "reorder_pct", "rate_kbit"};
	size_t d, k;

	if (strcmp(jstr(net, "kind"), "two-hosts") != 0)
		return;
	printf("hosts:   client %s (%s), server %s (%s), MTU %lld, wire: %s, seed %lld\n",
	       jstr(json_object_get(net, "client"), "addr"),
	       jstr(json_object_get(net, "client"), "mac"),
	       jstr(json_object_get(net, "server"), "addr"),
	       jstr(json_object_get(net, "server"), "mac"), jint(net, "mtu"), jstr(net, "wire"),
	       jint(net, "seed"));
	for (d = 0; d < 2; d++) {
		const json_t *o = json_object_get(imp, dirs[d]);
		int any = 0;
		for (k = 0; k < sizeof knobs / sizeof knobs[0]; k++) {
			if (jint(o, knobs[k]) == 0)
				continue;
			printf("%s %s %s=%lld", any ? "," : "impair: ", dirs[d], knobs[k],
			       jint(o, knobs[k]));
			any = 1;
		}
		if (any)
			printf("\n");
	}
}

static const struct lab_params *human_params; /* the run's parameters, for lab formats */

static long long sort_key(const json_t *ev);

/* One event in the readable trace, at the time it happened (sort_key). */
static void human_print(const json_t *ev, const char *line)
{
	const char *lang = i18n_lang_from_env(NULL);
	const char *type = jstr(ev, "type");
	double ms = (double)sort_key(ev) / 1000.0;
	char addr[80];
	const struct lab_desc *lab = human_params ? human_params->lab : NULL;

	if (lab && lab->format) {
		char buf[2048];
		int n = lab->format(human_params, ev, buf, sizeof buf);
		if (n >= 0) {
			fwrite(buf, 1, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, stdout);
			fflush(stdout);
			return;
		}
	}
	if (!strcmp(type, "run.start")) {
		const json_t *sb = json_object_get(ev, "sandbox");
		printf("socklab %s: run %s\n", jstr(ev, "lab"), jstr(ev, "run"));
		printf("network: %s\n", jstr(sb, "note"));
		print_network(json_object_get(ev, "network"));
		if (!lab || !lab->format || lab->format_keeps_calls)
			printf("%10s  %-10s %-40s   %s\n", "time(ms)", "who", "call", "result");
	} else if (!strcmp(type, "syscall")) {
		print_syscall(ev, ms);
	} else if (!strcmp(type, "listening")) {
		fmt_addr(ev, addr, sizeof addr);
		printf("%10.3f  %-10s listening on %s (backlog %lld)\n", ms, jstr(ev, "who"), addr,
		       jint(ev, "backlog"));
		if (json_is_true(json_object_get(ev, "byo")))
			printf("            connect your own client:  nc %s %lld\n", jstr(ev, "addr"),
			       jint(ev, "port"));
	} else if (!strcmp(type, "echo")) {
		printf("%10.3f  %-10s echo #%lld.%lld  \"%.40s\" -> \"%.40s\"  %lld bytes  rtt %lld us  "
		       "%s\n",
		       ms, "client", jint(ev, "conn"), jint(ev, "index"), jstr(ev, "sent"),
		       jstr(ev, "reply"), jint(ev, "bytes"), jint(ev, "rtt_us"),
		       json_is_true(json_object_get(ev, "ok")) ? "ok" : "MISMATCH");
	} else if (!strcmp(type, "wire")) {
		printf("%10.3f  %-10s %s frame %lld %s", ms, "wire", jstr(ev, "dir"), jint(ev, "frame"),
		       jstr(ev, "action"));
		if (json_object_get(ev, "delay_us") && jint(ev, "delay_us") > 0)
			printf(" %.3f ms", (double)jint(ev, "delay_us") / 1000.0);
		printf(": %s\n", jstr(ev, "summary"));
	} else if (!strcmp(type, "note")) {
		/* The explanation in the terminal's language (LANG), from the
		 * same tables as the dashboard; the event's own text otherwise. */
		char id[128], *text = NULL, *label = i18n_text(lang, "cli.note", NULL);
		if (strcmp(lang, "en") != 0 &&
		    snprintf(id, sizeof id, "note.%s", jstr(ev, "key")) < (int)sizeof id)
			text = i18n_text(lang, id, json_object_get(ev, "params"));
		printf("%10.3f  %s: %s\n", ms, label ? label : "note", text ? text : jstr(ev, "text"));
		free(text);
		free(label);
	} else if (!strcmp(type, "metric")) {
		printf("%10.3f  %-10s %s = %lld", ms, jstr(ev, "who"), jstr(ev, "name"),
		       jint(ev, "value"));
		if (json_object_get(ev, "max"))
			printf(" (max %lld)", jint(ev, "max"));
		printf("\n");
	} else if (!strcmp(type, "error")) {
		printf("%10.3f  error [%s]%s%s: %s\n", ms, jstr(ev, "code"),
		       json_object_get(ev, "param") ? " parameter " : "", jstr(ev, "param"),
		       jstr(ev, "message"));
	} else if (!strcmp(type, "run.end")) {
		char *s = json_dumps(json_object_get(ev, "summary"), JSON_COMPACT);
		const json_t *tr = json_object_get(ev, "trace");
		printf("--- %s %s after %.1f ms ---\nsummary: %s\n", jstr(ev, "lab"),
		       jstr(ev, "status"), ms, s ? s : "{}");
		free(s);
		if (tr && jint(tr, "calls") > 0)
			printf("tracing: %lld socket calls recorded, %lld ns each on the lab's thread "
			       "(median; 99%% under %lld ns), %lld waits for the event writer\n",
			       jint(tr, "calls"), jint(tr, "call_ns_median"), jint(tr, "call_ns_p99"),
			       jint(tr, "stalls"));
	} else {
		printf("%10.3f  %s\n", ms, line);
	}
	fflush(stdout);
}

/* The human trace prints events in the order things happened: captured
 * segments and kernel states carry the kernel's own time (t_kernel_us) and
 * may be reported a few milliseconds after socket calls that returned later.
 * Once a run shows it observes the kernel (a "capture" event, or any event
 * with t_kernel_us), events wait in a small buffer and are printed in time
 * order when nothing earlier can still come (REORDER_US behind the newest
 * event). Other runs print every event at once. */
#define REORDER_US 100000
#define REORDER_MAX 4096

struct reorder {
	json_t *ev[REORDER_MAX];
	long long key[REORDER_MAX];
	int n;
	int hold; /* the run reports kernel-timed events: keep the window */
};

/* When the event happened: the kernel's stamp, or for a socket call the
 * moment it returned (a call recorded in another process, as in the own lab,
 * is emitted well after that), or when a lab said what an observer emitted
 * later in its place (t_lab_us), else when it was emitted. */
static long long sort_key(const json_t *ev)
{
	const json_t *k = json_object_get(ev, "t_kernel_us");
	const json_t *call = json_object_get(ev, "t_call_us");
	const json_t *said = json_object_get(ev, "t_lab_us");

	if (k)
		return (long long)json_integer_value(k);
	if (said)
		return (long long)json_integer_value(said);
	if (call && json_object_get(ev, "blocked_us"))
		return (long long)json_integer_value(call) + jint(ev, "blocked_us");
	return jint(ev, "t_us");
}

/* Print the first n events (they are in order) and drop them. */
static void reorder_print(struct reorder *ro, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		char *line = json_dumps(ro->ev[i], JSON_COMPACT);
		human_print(ro->ev[i], line ? line : "");
		free(line);
		json_decref(ro->ev[i]);
	}
	memmove(ro->ev, ro->ev + n, (size_t)(ro->n - n) * sizeof ro->ev[0]);
	memmove(ro->key, ro->key + n, (size_t)(ro->n - n) * sizeof ro->key[0]);
	ro->n -= n;
}

static int human_sink(void *arg, const json_t *ev, const char *line)
{
	struct reorder *ro = arg;
	long long key = sort_key(ev), now = jint(ev, "t_us");
	int i, ready = 0;

	(void)line;
	if (ro->n == REORDER_MAX)
		reorder_print(ro, 1);
	/* Insert after every event with a key not above this one (stable). */
	i = ro->n;
	while (i > 0 && ro->key[i - 1] > key)
		i--;
	memmove(ro->ev + i + 1, ro->ev + i, (size_t)(ro->n - i) * sizeof ro->ev[0]);
	memmove(ro->key + i + 1, ro->key + i, (size_t)(ro->n - i) * sizeof ro->key[0]);
	ro->ev[i] = json_incref((json_t *)ev);
	ro->key[i] = key;
	ro->n++;
	if (json_object_get(ev, "t_kernel_us") || !strcmp(jstr(ev, "type"), "capture"))
		ro->hold = 1;
	if (!strcmp(jstr(ev, "type"), "run.end") || !ro->hold) {
		reorder_print(ro, ro->n);
		return 0;
	}
	while (ready < ro->n && ro->key[ready] <= now - REORDER_US)
		ready++;
	if (ready)
		reorder_print(ro, ready);
	return 0;
}

/* ---- socklab run ---- */

static volatile sig_atomic_t got_signal;
static int cancel_fd = -1;

/* JSON Lines go to stdout through the emitter's writer thread, in batches.
 * When the reader goes away (the server died, a pipe closed) nobody can see
 * the run any more: cancel it. Runs on the writer thread. */
static void stdout_failed(void *arg, int err)
{
	uint64_t one = 1;

	(void)arg;
	(void)err;
	got_signal = SIGPIPE;
	if (write(cancel_fd, &one, sizeof one) < 0) {
		/* The run still ends at its deadline. */
	}
}

static void on_signal(int sig)
{
	uint64_t one = 1;
	int saved = errno;

	got_signal = sig;
	if (write(cancel_fd, &one, sizeof one) < 0) {
		/* Nothing async-signal-safe left to do. */
	}
	errno = saved;
}

static void run_usage(FILE *out)
{
	fprintf(out,
		"usage: socklab run LAB [-p KEY=VALUE]... [--json] [--timeout SEC]\n"
		"                   [--netns auto|on|off] [--bundle DIR] [--run-id ID] [--parent PID]\n"
		"                   [--pcap FILE] [--ask]\n"
		"\n"
		"  -p KEY=VALUE   set a lab parameter (`socklab labs` lists them)\n"
		"  --json         print events as JSON Lines instead of a readable trace\n"
		"  --ask          first answer the lab's questions (predict), then see each\n"
		"                 graded against this run's events\n"
		"  --timeout SEC  stop the run after SEC seconds (1..%d, default %d)\n"
		"  --netns MODE   auto: a private network namespace when permitted (default);\n"
		"                 on: fail without one; off: use the host's network\n"
		"  --bundle DIR   also save the run (events.jsonl, meta.json) in DIR\n"
		"  --run-id ID    use this run id (16 hex digits) instead of a random one\n"
		"  --pcap FILE    labs that capture packets: also write them to FILE (pcap)\n"
		"  --parent PID   stop at once when process PID, which started this run, exits\n"
		"                 (socklab serve passes its own)\n",
		MAX_TIMEOUT_S, DEFAULT_TIMEOUT_S);
}

struct bundle {
	int fd;
	char dir[512];
};

static int bundle_open(struct bundle *b, const char *dir)
{
	char path[600];

	snprintf(b->dir, sizeof b->dir, "%s", dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof path, "%s/events.jsonl", dir);
	b->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	return b->fd < 0 ? -errno : 0;
}

static void bundle_finish(struct bundle *b, const struct ev_emitter *em, const char *status,
			  const struct lab_params *p)
{
	char path[600];
	json_t *meta = json_pack("{s:s, s:s, s:s, s:o, s:I}", "id", em->run_id, "lab", em->lab,
				 "status", status, "params", lab_params_json(p), "events",
				 (json_int_t)em->seq);

	close(b->fd);
	snprintf(path, sizeof path, "%s/meta.json", b->dir);
	/* 0600 like every file of a run, whatever the umask; written atomically. */
	if (!meta || bundle_write_json(path, meta) < 0)
		fprintf(stderr, "socklab run: --bundle: could not write %s\n", path);
	json_decref(meta);
}

/* What tracing cost this run (run.end's "trace"): the socket calls recorded,
 * how long recording one took on the lab's thread, and how often a thread
 * had to wait for the writer (events are never dropped). */
static json_t *trace_json(struct ev_emitter *em)
{
	struct ev_trace_stats st;

	ev_trace_stats(em, &st);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:I}", "events",
			 (json_int_t)st.events, "calls", (json_int_t)st.calls, "call_ns_median",
			 (json_int_t)st.call_ns_median, "call_ns_p99", (json_int_t)st.call_ns_p99,
			 "call_ns_max", (json_int_t)st.call_ns_max, "call_ns_mean",
			 (json_int_t)st.call_ns_mean, "stalls", (json_int_t)st.stalls, "stall_us",
			 (json_int_t)st.stall_us, "dropped", (json_int_t)0, "writer",
			 st.threaded ? "thread" : "inline", "writer_cpu_us",
			 (json_int_t)st.writer_cpu_us);
}

static int parse_timeout(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 1 || v > MAX_TIMEOUT_S) {
		fprintf(stderr, "socklab run: --timeout must be an integer from 1 to %d seconds "
				"(got \"%s\")\n",
			MAX_TIMEOUT_S, s);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

/* The run's sandbox for run.start; caps lists the capabilities a lab can
 * use (privs_lab_caps) that this run holds. */
static json_t *sandbox_facts(int netns, const char *note)
{
	struct utsname u;
	uint64_t eff = privs_effective() & privs_lab_caps;
	json_t *caps = json_array();
	unsigned i;

	for (i = 0; i < 64; i++)
		if ((eff & PRIVS_CAP(i)) && privs_cap_name(i))
			json_array_append_new(caps, json_string(privs_cap_name(i)));
	uname(&u);
	return json_pack("{s:b, s:s, s:s, s:i, s:o}", "netns", netns, "note", note, "kernel",
			 u.release, "euid", (int)geteuid(), "caps", caps);
}

static int parse_parent(const char *s, pid_t *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 1 || v > 4194304) {
		fprintf(stderr, "socklab run: --parent must be a process id from 1 to 4194304 "
				"(got \"%s\")\n",
			s);
		return -EINVAL;
	}
	*out = (pid_t)v;
	return 0;
}

int cli_run(int argc, char **argv)
{
	const struct lab_desc *lab;
	struct lab_params params;
	struct lab_ctx ctx;
	struct ev_emitter em;
	struct bundle bundle = {.fd = -1};
	const char *run_id = NULL, *netns_mode = "auto", *bundle_dir = NULL, *bad = NULL;
	const char *pcap_path = NULL;
	static struct reorder reorder;
	int as_json = 0, timeout_s = DEFAULT_TIMEOUT_S, netns = 0, rc, i, ask = 0;
	static struct cli_quiz quiz;
	pid_t parent = 0;
	char err[512], note[300], net_err[512] = "";
	const char *status;
	json_t *start, *net_desc = NULL;
	struct net_config ncfg;
	struct net *net = NULL;
	int has_net, host_net, no_net, topo_net;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		run_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	lab = lab_find(argv[1]);
	if (!lab) {
		size_t k, off;
		off = (size_t)snprintf(err, sizeof err, "socklab run: unknown lab '%.60s'; labs: ",
				       argv[1]);
		for (k = 0; lab_registry[k] && off < sizeof err; k++)
			off += (size_t)snprintf(err + off, sizeof err - off, "%s%s", k ? ", " : "",
						lab_registry[k]->name);
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	lab_params_init(&params, lab);
	for (i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		int takes = !strcmp(a, "-p") || !strcmp(a, "--timeout") || !strcmp(a, "--netns") ||
			    !strcmp(a, "--bundle") || !strcmp(a, "--run-id") || !strcmp(a, "--pcap") ||
			    !strcmp(a, "--parent");

		if (takes && !val) {
			fprintf(stderr, "socklab run: %s needs a value\n", a);
			return 2;
		}
		if (!strcmp(a, "--json")) {
			as_json = 1;
		} else if (!strcmp(a, "--ask")) {
			ask = 1;
		} else if (!strcmp(a, "-p")) {
			if (lab_param_set_kv(&params, val, err, sizeof err) < 0) {
				fprintf(stderr, "socklab run %s: %s\n", lab->name, err);
				return 2;
			}
		} else if (!strcmp(a, "--timeout")) {
			if (parse_timeout(val, &timeout_s) < 0)
				return 2;
		} else if (!strcmp(a, "--netns")) {
			if (strcmp(val, "auto") && strcmp(val, "on") && strcmp(val, "off")) {
				fprintf(stderr, "socklab run: --netns must be auto, on or off "
						"(got \"%s\")\n", val);
				return 2;
			}
			netns_mode = val;
		} else if (!strcmp(a, "--bundle")) {
			bundle_dir = val;
		} else if (!strcmp(a, "--run-id")) {
			if (!ev_valid_run_id(val)) {
				fprintf(stderr, "socklab run: --run-id must be 16 lowercase hex digits\n");
				return 2;
			}
			run_id = val;
		} else if (!strcmp(a, "--parent")) {
			if (parse_parent(val, &parent) < 0)
				return 2;
		} else if (!strcmp(a, "--pcap")) {
			if (!lab->captures) {
				fprintf(stderr, "socklab run: --pcap: lab %s captures no packets\n",
					lab->name);
				return 2;
			}
			pcap_path = val;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			run_usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "socklab run: unknown option '%s'\n", a);
			run_usage(stderr);
			return 2;
		}
		if (takes)
			i++;
	}
	if (lab_params_check(&params, &bad, err, sizeof err) < 0) {
		fprintf(stderr, "socklab run %s: %s\n", lab->name, err);
		return 2;
	}
	if (ask && as_json) {
		fprintf(stderr, "socklab run: --ask asks in the terminal; it cannot go with --json "
				"(grade JSON output with `socklab grade`)\n");
		return 2;
	}
	/* Predictions are asked before anything is set up: the run starts
	 * once they are in. */
	if (ask && cli_quiz_ask(&quiz, lab, &params, stdin, stdout) < 0) {
		cli_quiz_cleanup(&quiz);
		fprintf(stderr, "socklab run: --ask: standard input ended before the answers\n");
		return 2;
	}
	/* The bundle is opened before anything else is set up, so a bad
	 * directory is a usage error with nothing to undo. */
	if (bundle_dir && (rc = bundle_open(&bundle, bundle_dir)) < 0) {
		fprintf(stderr, "socklab run: --bundle %s: %s\n", bundle_dir, strerror(-rc));
		return 2;
	}

	if (parent) {
		/* The kernel clears the parent-death signal the server set when it
		 * starts a program with file capabilities (the lab program in a
		 * container): arm it again, then make sure the parent is still
		 * the one that started us. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent) {
			fprintf(stderr, "socklab run: process %d, which started this run, has gone\n",
				(int)parent);
			return 1;
		}
	}
	/* Started from a program with permitted-only file capabilities, the
	 * run holds them but not yet as effective ones: raise them (privs.h). */
	privs_raise();

	/* The namespaces must be made before any thread exists, so every lab
	 * thread starts in one. */
	host_net = lab->network && lab->network(&params) == LAB_NET_HOST;
	no_net = lab->network && lab->network(&params) == LAB_NET_NONE;
	topo_net = lab->network && lab->network(&params) == LAB_NET_TOPOLOGY;
	has_net = net_lab_has_params(lab) && !no_net;
	memset(&ncfg, 0, sizeof ncfg);
	if (has_net)
		net_config_read(&params, &ncfg);
	if (has_net && !host_net && ncfg.kind == NET_TWO_HOSTS && !strcmp(netns_mode, "off")) {
		fprintf(stderr, "socklab run %s: parameter 'network': two-hosts builds its own "
				"network namespaces, so it cannot run with --netns off\n",
			lab->name);
		return 2;
	}
	if (host_net) {
		snprintf(note, sizeof note,
			 "the host's network (this lab serves clients from outside the sandbox)");
	} else if (no_net) {
		snprintf(note, sizeof note, "no network: this run only reads a file");
	} else if (topo_net) {
		if (!strcmp(netns_mode, "off")) {
			fprintf(stderr, "socklab run %s: this lab builds its own network namespaces, so "
					"it cannot run with --netns off\n",
				lab->name);
			return 2;
		}
		netns = 1;
		snprintf(note, sizeof note,
			 "private network namespaces the lab builds: hosts, a switch and a router");
	} else if (has_net && ncfg.kind == NET_TWO_HOSTS) {
		if (net_create(&net, &ncfg, net_err, sizeof net_err) == 0) {
			netns = 1;
			snprintf(note, sizeof note,
				 "two private network namespaces (client and server hosts) joined by "
				 "a %s",
				 net_has_relay(net) ? "wire through socklab's relay" : "veth pair");
			net_desc = net_describe(net);
		} else {
			snprintf(note, sizeof note, "no two-hosts network: %.200s", net_err);
		}
	} else if (!strcmp(netns_mode, "off")) {
		snprintf(note, sizeof note, "the host's network (--netns off), ephemeral ports");
	} else if ((rc = sandbox_netns_enter(err, sizeof err)) == 0) {
		netns = 1;
		snprintf(note, sizeof note, "a private network namespace with its own loopback");
		if (has_net)
			net_desc = net_describe_loopback();
	} else if (!strcmp(netns_mode, "on") || rc == -ENOTRECOVERABLE) {
		fprintf(stderr, "socklab run: %s\n", err);
		return 1;
	} else {
		snprintf(note, sizeof note, "the host's loopback with ephemeral ports (%.200s)", err);
	}

	cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (cancel_fd < 0 || ev_init(&em, run_id, lab->name) < 0) {
		fprintf(stderr, "socklab run: cannot set up the run: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	{
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_signal;
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
	}
	human_params = &params;
	if (as_json)
		ev_add_fd_sink(&em, STDOUT_FILENO, stdout_failed, NULL);
	else
		ev_add_sink(&em, human_sink, &reorder);
	if (bundle_dir)
		ev_add_fd_sink(&em, bundle.fd, NULL, NULL);
	if (ask)
		ev_add_sink(&em, cli_quiz_sink, &quiz);
	/* Events are recorded on the lab's threads and written by the emitter's
	 * own thread (labs/event.h); without it they are written synchronously,
	 * which is slower but the same stream. */
	ev_start(&em, 0);

	memset(&ctx, 0, sizeof ctx);
	ctx.p = &params;
	ctx.em = &em;
	ctx.cancel_fd = cancel_fd;
	ctx.deadline_us = (int64_t)timeout_s * 1000000;
	ctx.netns = netns;
	ctx.net = net;
	ctx.pcap_path = pcap_path;
	ctx.summary = json_object();
	/* Without the watcher every blocking call polls the cancel fd itself:
	 * slower, the same run. */
	lab_watch_start(&ctx, err, sizeof err);

	start = json_pack("{s:s, s:s, s:o, s:o, s:i}", "title", lab->title, "version",
			  SOCKLAB_VERSION, "params", lab_params_json(&params), "sandbox",
			  sandbox_facts(netns, note), "timeout_s", timeout_s);
	if (net_desc)
		json_object_set_new(start, "network", net_desc);
	ev_emit(&em, "run.start", start);

	if (net_err[0]) {
		ev_error(&em, "network_unavailable", "network", net_err);
		rc = -1;
	} else if (net_start(net, &em, err, sizeof err) < 0) {
		ev_error(&em, "network_unavailable", "network", err);
		rc = -1;
	} else {
		rc = lab->run(&ctx);
	}
	lab_watch_stop(&ctx);
	if (net) {
		json_t *w = net_stop(net);
		if (w)
			json_object_set_new(ctx.summary, "wire", w);
	}

	if (got_signal)
		status = "cancelled";
	else if (rc < 0)
		status = "error";
	else if (ev_now_us(&em) >= ctx.deadline_us)
		status = "timeout";
	else
		status = "ok";
	if (!strcmp(status, "timeout"))
		ev_error(&em, "timeout", NULL, "the run reached its time limit and was stopped");
	ev_emit(&em, "run.end", json_pack("{s:s, s:O, s:o}", "status", status, "summary", ctx.summary,
					  "trace", trace_json(&em)));
	ev_stop(&em);
	if (bundle_dir)
		bundle_finish(&bundle, &em, status, &params);
	if (ask) {
		cli_quiz_report(&quiz, stdout);
		cli_quiz_cleanup(&quiz);
	}
	json_decref(ctx.summary);
	net_destroy(net);
	human_params = NULL;
	ev_cleanup(&em);
	close(cancel_fd);
	return strcmp(status, "ok") == 0 ? 0 : 1;
}
