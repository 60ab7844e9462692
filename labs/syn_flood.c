/* syn_flood.c: the syn-flood lab: SYNs from a raw socket against a listener in the run's own namespaces, the half-open and accept queues read from the kernel, the namespace's TcpExt counters, and a legitimate client's every connect(). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lab.h"
#include "net/net.h"
#include "net/nl.h"
#include "observer/observer.h"
#include "tcpstate/tcpstate.h"

/*
 * Two hosts (network=two-hosts, built by the front end): the server host
 * listens; the client host holds both the attacker (a raw socket that writes
 * whole IPv4 SYNs) and the legitimate client (ordinary connect() calls from
 * the kernel's ephemeral ports, 32768 and up; the attacker's source ports are
 * below 32768, so the two never share a 4-tuple).
 *
 * Spoofed sources come from 203.0.113.0/24 (TEST-NET-3, RFC 5737). The
 * server's namespace is given a default route via the client host, so its
 * SYN-ACKs to those addresses leave on the wire; the client host does not
 * forward and owns none of them, so it drops them without a word: nobody
 * answers, and each request socket stays in SYN_RECV until its SYN-ACK
 * retransmissions (tcp_synack_retries) run out. With attack=real the SYNs
 * carry the client host's own address: its kernel knows no such connection
 * and answers each SYN-ACK with an RST, which frees the entry at once.
 *
 * Every sysctl is written through /proc/sys while the writing thread is in
 * the server's namespace (net sysctls belong to the opener's namespace), and
 * /proc/thread-self/net/netstat is read the same way: the host's settings and
 * counters are never touched. Everything disappears with the run's
 * namespaces, however the process ends.
 *
 * Sources: the half-open queue = request sockets in SYN_RECV on the port,
 * and the accept queue = the listener's idiag_rqueue (its limit: wqueue),
 * both from NETLINK_SOCK_DIAG sampled every SAMPLE_MS in the server's
 * namespace (samples, never transitions); counters from TcpExt; SYNs, SYN-ACKs
 * and RSTs from the capture on the server host's eth0; connects from the
 * calls this lab made.
 *
 * A cookie's SYN-ACK, segment by segment: with timestamps, Linux puts the
 * options a cookie cannot remember (the peer's window scale, or 0xf without
 * one; SACK in bit 4; ECN in bit 5) in the low 6 bits of the SYN-ACK's TSval
 * and rounds the rest of its clock down (net/ipv4/syncookies.c,
 * cookie_init_timestamp): TSval = (now & ~63) | options, minus 64 if that
 * passes now. An ordinary SYN-ACK carries its clock itself. With
 * tcp_timestamps=2 the server adds no per-connection random offset, so TSval
 * is the kernel's CLOCK_MONOTONIC in ms: a SYN-ACK whose TSval's low bits
 * equal its SYN's options and which trails the capture's own stamp by 2 ms or
 * more is a cookie's (a cookie's TSval is up to 63 ms behind the clock it was
 * made at, one more when the capture's stamp crosses a millisecond; an
 * ordinary one is stamped on the same call path as the capture, within a
 * millisecond); low bits that differ make it no cookie; equal bits within a
 * millisecond of the stamp fit both (about one cookie in 32), and are called
 * undecided. The ISN itself (a keyed hash) says nothing without the
 * kernel's secret. The attacker's SYNs carry MSS, SACK, timestamps and window
 * scale as Linux's own do, so the flood's SYN-ACKs can be read the same way.
 */

#define SAMPLE_MS 100
#define WIRE_EVERY_MS 250
#define SPOOF_NET 0xcb007100u /* 203.0.113.0 */
#define ATTACK_PORT_MIN 1024
#define ATTACK_PORT_SPAN 31744 /* 1024..32767 */
#define SYNACK_SLOTS 65536
#define START_WAIT_MS 2000 /* longest wait for the attack's first evidence */
#define MAX_CONNECTS 200
#define ATTACK_WSCALE 7 /* the attacker's window-scale option */

static const char *const sf_attack_choices[] = {"spoofed", "real", "none", NULL};
enum { ATTACK_SPOOFED, ATTACK_REAL, ATTACK_NONE };

static const struct lab_param_def sf_params[] = {
	{"attack", LAB_P_ENUM, "Attack",
	 "spoofed: SYNs from 203.0.113.0/24 addresses that never answer; real: SYNs from the "
	 "client host's own address (its kernel answers each SYN-ACK with RST); none: no attack "
	 "(the accept queue alone)",
	 NULL, "spoofed", 0, 0, sf_attack_choices, 0},
	{"rate", LAB_P_INT, "SYN rate", "SYNs the attacker sends per second", "SYN/s", "200", 1,
	 2000, NULL, 0},
	{"duration_ms", LAB_P_INT, "Attack duration", "How long the attacker sends", "ms", "3000",
	 100, 15000, NULL, 0},
	{"syncookies", LAB_P_INT, "tcp_syncookies",
	 "0: never send cookies; 1: when the half-open queue is full; 2: for every SYN (set in "
	 "the run's server namespace only)",
	 NULL, "0", 0, 2, NULL, 0},
	{"backlog", LAB_P_INT, "listen() backlog",
	 "The listen() backlog: the accept queue holds backlog + 1 (capped by somaxconn)", NULL,
	 "8", 0, 1024, NULL, 0},
	{"accept", LAB_P_BOOL, "Server accepts",
	 "false: the server never calls accept(), so finished connections pile up in the accept "
	 "queue",
	 NULL, "true", 0, 0, NULL, 0},
	{"max_syn_backlog", LAB_P_INT, "tcp_max_syn_backlog",
	 "net.ipv4.tcp_max_syn_backlog in the run's server namespace", NULL, "128", 1, 65536, NULL,
	 LAB_PF_ADVANCED},
	{"somaxconn", LAB_P_INT, "somaxconn",
	 "net.core.somaxconn in the run's server namespace: the cap on any listen() backlog", NULL,
	 "4096", 1, 65535, NULL, LAB_PF_ADVANCED},
	{"synack_retries", LAB_P_INT, "tcp_synack_retries",
	 "How often the server retransmits an unanswered SYN-ACK (1 s, 2 s, 4 s, ... apart) "
	 "before it drops the request",
	 NULL, "5", 0, 10, NULL, LAB_PF_ADVANCED},
	{"connect_timeout_ms", LAB_P_INT, "Client connect timeout",
	 "How long the legitimate client waits for each connect()", "ms", "1500", 100, 5000, NULL,
	 LAB_PF_ADVANCED},
	{"connect_every_ms", LAB_P_INT, "Client interval",
	 "Time between the starts of the legitimate client's connects", "ms", "500", 50, 5000,
	 NULL, LAB_PF_ADVANCED},
	{"port", LAB_P_INT, "Server port", "The server's port (0: a random one)", NULL, "0", 0,
	 65535, NULL, LAB_PF_ADVANCED},
	{"timestamps", LAB_P_INT, "tcp_timestamps",
	 "net.ipv4.tcp_timestamps in the run's server namespace: 2 (the lab's default) timestamps "
	 "without a random offset, so each SYN-ACK's TSval shows whether it carries a cookie; 1 "
	 "Linux's default (a random offset hides it); 0 no timestamps",
	 NULL, "2", 0, 2, NULL, LAB_PF_ADVANCED},
	NET_PARAMS_D("two-hosts", "0"),
};

static const char *const counter_names[] = {
	"ListenOverflows",   "ListenDrops",    "TCPReqQFullDrop", "TCPReqQFullDoCookies",
	"SyncookiesSent",    "SyncookiesRecv", "SyncookiesFailed", "TCPSynRetrans",
	"TCPTimeouts",       "EmbryonicRsts",
};
#define N_COUNTERS (sizeof counter_names / sizeof counter_names[0])
enum {
	C_OVERFLOWS, C_DROPS, C_QFULLDROP, C_QFULLCOOKIES, C_CSENT, C_CRECV, C_CFAILED,
	C_SYNRETRANS, C_TIMEOUTS, C_EMBRYONIC,
};

struct synack_slot {
	uint32_t daddr; /* network order; 0: empty */
	uint16_t dport;
	uint32_t isn;
	uint16_t sent;  /* SYN-ACKs to this peer */
	int8_t code;    /* the options its SYN asked for, as a cookie encodes them; -1: no SYN seen */
};

/* What a SYN-ACK's TSval says about a cookie (see the comment at the top). */
enum { MARK_COOKIE, MARK_NOT, MARK_UNDECIDED, MARK_UNREADABLE, N_MARKS };
static const char *const mark_names[N_MARKS] = {"cookie", "not_cookie", "undecided",
						"unreadable"};

struct sf {
	struct lab_ctx *ctx;
	struct obs *obs;
	pthread_mutex_t lock;
	struct net_pair hp; /* the two hosts and the server's port */
	int attack, accepting, lfd;
	volatile int stop_attack, stop_all;
	/* the attacker */
	long long syn_sent, send_errors;
	int64_t attack_start_ns, attack_end_ns;
	volatile int attack_started;
	/* the sampler (server namespace) */
	long long base[N_COUNTERS], now[N_COUNTERS];
	int have_counters;
	int syn_recv, syn_recv_peak, acceptq, acceptq_peak, acceptq_limit, listener_seen;
	long long samples;
	/* the wire (server host's eth0) */
	long long syn_in, synack_out, synack_retrans, rst_in, legit_frames;
	long long marks[N_MARKS];
	int ts_mode; /* tcp_timestamps in effect in the server namespace */
	struct synack_slot *slots;
	/* the client */
	long long n_connects, n_ok, n_fail;
	int errnos[4]; /* ETIMEDOUT, ECONNREFUSED, ECONNRESET, other */
	int64_t started_client_ns;
	const char *client_start_evidence;
};

/* ---- the namespace's settings and counters ---- */

static int sysctl_rw(const char *path, long long value, long long *before)
{
	char buf[64];
	int fd = open(path, O_RDWR | O_CLOEXEC);
	ssize_t n;

	if (fd < 0 && errno == EROFS) {
		/* Read-only: report what the namespace has. */
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			n = read(fd, buf, sizeof buf - 1);
			*before = n > 0 ? (buf[n] = 0, strtoll(buf, NULL, 10)) : -1;
			close(fd);
		}
		return -EROFS;
	}
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof buf - 1);
	*before = n > 0 ? (buf[n] = 0, strtoll(buf, NULL, 10)) : -1;
	n = snprintf(buf, sizeof buf, "%lld\n", value);
	if (pwrite(fd, buf, (size_t)n, 0) != n) {
		int e = errno ? errno : EIO;
		close(fd);
		return -e;
	}
	close(fd);
	return 0;
}

static int set_sysctls(struct sf *s)
{
	static const struct {
		const char *param, *name, *path;
	} tab[] = {
		{"syncookies", "net.ipv4.tcp_syncookies", "/proc/sys/net/ipv4/tcp_syncookies"},
		{"max_syn_backlog", "net.ipv4.tcp_max_syn_backlog",
		 "/proc/sys/net/ipv4/tcp_max_syn_backlog"},
		{"somaxconn", "net.core.somaxconn", "/proc/sys/net/core/somaxconn"},
		{"synack_retries", "net.ipv4.tcp_synack_retries",
		 "/proc/sys/net/ipv4/tcp_synack_retries"},
		{"timestamps", "net.ipv4.tcp_timestamps", "/proc/sys/net/ipv4/tcp_timestamps"},
	};
	size_t i;

	for (i = 0; i < sizeof tab / sizeof tab[0]; i++) {
		long long v = lab_int(s->ctx->p, tab[i].param), before = -1;
		int rc = sysctl_rw(tab[i].path, v, &before);
		char msg[256];

		if (rc == -EROFS) {
			/* /proc/sys mounted read-only (a container): the run goes on
			 * with the namespace's own value, and says so; every verdict
			 * comes from the counters, not from the parameters. */
			ev_emit(s->ctx->em, "sysctl",
				json_pack("{s:s,s:I,s:I,s:b,s:s,s:s}", "name", tab[i].name, "value", before,
					  "wanted", v, "set", 0, "reason",
					  "/proc/sys is read-only here (a container)", "scope",
					  "server namespace"));
			if (before != v)
				ev_note(s->ctx->em, "synflood.sysctl_readonly",
					json_pack("{s:s,s:I,s:I}", "name", tab[i].name, "value", before,
						  "wanted", v),
					NULL);
			if (!strcmp(tab[i].param, "timestamps"))
				s->ts_mode = (int)before;
			continue;
		}
		if (rc < 0) {
			snprintf(msg, sizeof msg, "cannot set %s in the run's server namespace: %s",
				 tab[i].name, strerror(-rc));
			ev_error(s->ctx->em, "sysctl_failed", tab[i].param, msg);
			return rc;
		}
		ev_emit(s->ctx->em, "sysctl",
			json_pack("{s:s,s:I,s:I,s:s}", "name", tab[i].name, "value", v,
				  "namespace_default", before, "scope", "server namespace"));
		if (!strcmp(tab[i].param, "timestamps"))
			s->ts_mode = (int)v;
	}
	return 0;
}

/* TcpExt of the calling thread's namespace. */
static int read_counters(long long out[N_COUNTERS])
{
	return net_tcpext(counter_names, N_COUNTERS, out);
}

/* ---- the sampler: sock_diag and TcpExt in the server namespace ---- */

struct diag_acc {
	uint16_t port;
	int syn_recv, acceptq, limit, listener;
};

static void on_diag(void *arg, const struct tcpst_diag_sock *d)
{
	struct diag_acc *a = arg;

	if (d->family != AF_INET || d->sport != a->port)
		return;
	if (d->state == 3 /* SYN_RECV */)
		a->syn_recv++;
	else if (d->state == 10 /* LISTEN */) {
		a->listener = 1;
		a->acceptq = (int)d->rqueue;
		a->limit = (int)d->wqueue;
	}
}

static void take_sample(struct sf *s, int last)
{
	struct diag_acc a = {.port = s->hp.port};
	long long c[N_COUNTERS];
	int64_t from = obs_now_ns(), to;
	char err[256];
	json_t *delta;
	int changed = 0, rc;

	rc = tcpst_diag_dump(AF_INET, on_diag, &a, err, sizeof err);
	to = obs_now_ns();
	if (rc >= 0) {
		pthread_mutex_lock(&s->lock);
		s->syn_recv = a.syn_recv;
		if (a.syn_recv > s->syn_recv_peak)
			s->syn_recv_peak = a.syn_recv;
		if (a.listener) {
			s->listener_seen = 1;
			s->acceptq = a.acceptq;
			s->acceptq_limit = a.limit;
			if (a.acceptq > s->acceptq_peak)
				s->acceptq_peak = a.acceptq;
		}
		s->samples++;
		pthread_mutex_unlock(&s->lock);
		ev_emit(s->ctx->em, "queues",
			json_pack("{s:s,s:s,s:I,s:I,s:i,s:i,s:i,s:b,s:b}", "kind", "sample", "source",
				  "sock_diag", "t_from_us", (json_int_t)obs_run_us(s->ctx, from),
				  "t_kernel_us", (json_int_t)obs_run_us(s->ctx, to), "half_open",
				  a.syn_recv, "accept_queue", a.acceptq, "accept_limit", a.limit,
				  "listener_listed", a.listener, "last", last));
	}
	if (read_counters(c) < 0)
		return;
	delta = json_object();
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < N_COUNTERS; i++) {
		if (!s->have_counters)
			s->base[i] = c[i];
		else if (c[i] != s->now[i]) {
			json_object_set_new(delta, counter_names[i], json_integer(c[i] - s->base[i]));
			changed = 1;
		}
		s->now[i] = c[i];
	}
	s->have_counters = 1;
	pthread_mutex_unlock(&s->lock);
	if (changed || last) {
		json_t *all = json_object();

		for (size_t i = 0; i < N_COUNTERS; i++)
			json_object_set_new(all, counter_names[i],
					    json_integer(s->now[i] - s->base[i]));
		ev_emit(s->ctx->em, "counters",
			json_pack("{s:s,s:s,s:o,s:o,s:b}", "source", "/proc/net/netstat TcpExt",
				  "scope", "server namespace, since the run began", "values", all,
				  "changed", delta, "last", last));
	} else
		json_decref(delta);
}

/* ---- the wire: the server host's capture ---- */

/* The SYN-ACKs counted by what their TSval says (call with s->lock held or
 * after the observer stopped). */
static json_t *marks_json(struct sf *s)
{
	json_t *o = json_object();

	for (int i = 0; i < N_MARKS; i++)
		json_object_set_new(o, mark_names[i], json_integer(s->marks[i]));
	return o;
}

static void emit_wire(struct sf *s, int last)
{
	ev_emit(s->ctx->em, "wire_count",
		json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:b,s:o}", "kind", "count", "source",
			  "capture on the server host's eth0", "syn_in", (json_int_t)s->syn_in,
			  "synack_out", (json_int_t)s->synack_out, "synack_retrans",
			  (json_int_t)s->synack_retrans, "rst_in", (json_int_t)s->rst_in,
			  "capture_drops", (json_int_t)obs_capture_drops(s->obs), "last", last,
			  "synack_marks", marks_json(s)));
}

static struct synack_slot *slot_for(struct sf *s, uint32_t daddr, uint16_t dport)
{
	uint32_t h = (daddr * 2654435761u) ^ (dport * 40503u);

	for (unsigned i = 0; i < 64; i++) {
		struct synack_slot *sl = &s->slots[(h + i) & (SYNACK_SLOTS - 1)];

		if (!sl->daddr || (sl->daddr == daddr && sl->dport == dport))
			return sl;
	}
	return NULL;
}

/* The options a cookie would encode for this SYN (cookie_init_timestamp):
 * the peer's window scale (0xf without the option), SACK in bit 4, ECN
 * (ECE and CWR in the SYN) in bit 5. */
static int syn_code(const struct dec_packet *d)
{
	int ws = 0xf, sack = 0;

	for (unsigned i = 0; i < d->tcp.n_opts; i++) {
		const struct dec_tcp_opt *o = &d->tcp.opt[i];

		if (o->status != DEC_OK)
			continue;
		if (o->kind == 3)
			ws = o->u.wscale > 14 ? 14 : o->u.wscale;
		else if (o->kind == 4)
			sack = 1;
	}
	return ws | sack << 4 |
	       ((d->tcp.flags & (DEC_TCP_ECE | DEC_TCP_CWR)) == (DEC_TCP_ECE | DEC_TCP_CWR)) << 5;
}

struct mark_evidence {
	int low, code;  /* TSval's low 6 bits; the SYN's options (-1: unknown) */
	int64_t behind; /* the capture's stamp in ms minus TSval */
};

/* Read a SYN-ACK's TSval against its SYN's options (code) and the capture's
 * stamp t_ns (see the comment at the top). */
static int read_mark(const struct sf *s, const struct dec_packet *d, int code, int64_t t_ns,
		     struct mark_evidence *mk)
{
	const struct dec_tcp_opt *ts = NULL;

	for (unsigned i = 0; i < d->tcp.n_opts; i++)
		if (d->tcp.opt[i].kind == 8 && d->tcp.opt[i].status == DEC_OK)
			ts = &d->tcp.opt[i];
	mk->code = code;
	if (!ts || s->ts_mode != 2 || code < 0)
		return MARK_UNREADABLE;
	mk->low = (int)(ts->u.ts.val & 63);
	mk->behind = (int32_t)((uint32_t)(t_ns / 1000000) - ts->u.ts.val);
	if (mk->low != code)
		return MARK_NOT;
	return mk->behind >= 2 ? MARK_COOKIE : MARK_UNDECIDED;
}

static json_t *on_obs(void *arg, const struct obs_event *ev)
{
	struct sf *s = arg;
	const struct dec_packet *d = ev->pkt;
	uint32_t src, dst;
	uint16_t fl;
	int legit, mark = -1;
	struct mark_evidence mk = {-1, -1, 0};

	if (ev->kind != OBS_FRAME || ev->host != NET_SERVER || !dec_has(d, DEC_L_TCP) ||
	    !dec_has(d, DEC_L_IPV4))
		return NULL;
	obs_pcap_write(s->obs, ev->frame);
	memcpy(&src, d->ip4.src, 4);
	memcpy(&dst, d->ip4.dst, 4);
	fl = d->tcp.flags;
	pthread_mutex_lock(&s->lock);
	if (src == s->hp.srv.sin_addr.s_addr) {
		legit = dst == s->hp.cli.sin_addr.s_addr && d->tcp.dport >= 32768;
		if ((fl & 0x12) == 0x12) {
			struct synack_slot *sl = slot_for(s, dst, d->tcp.dport);

			s->synack_out++;
			mark = read_mark(s, d, sl ? sl->code : -1, ev->t_ns, &mk);
			s->marks[mark]++;
			if (sl) {
				if (sl->sent && sl->isn == d->tcp.seq)
					s->synack_retrans++;
				sl->daddr = dst;
				sl->dport = d->tcp.dport;
				sl->isn = d->tcp.seq;
				sl->sent++;
			}
		}
	} else {
		legit = src == s->hp.cli.sin_addr.s_addr && d->tcp.sport >= 32768;
		if ((fl & 0x12) == 0x02) {
			struct synack_slot *sl = slot_for(s, src, d->tcp.sport);

			s->syn_in++;
			if (sl) {
				/* The peer's options, for its SYN-ACK's mark. */
				sl->daddr = src;
				sl->dport = d->tcp.sport;
				sl->code = (int8_t)syn_code(d);
			}
		}
		if (fl & 0x04)
			s->rst_in++;
	}
	pthread_mutex_unlock(&s->lock);
	/* The legitimate client's segments are shown one by one; the flood only
	 * as counts (thousands of frames). */
	if (legit) {
		json_t *j = obs_segment_json(s->ctx, ev->frame, d, ev->t_ns);

		if (j) {
			json_object_set_new(j, "dir", json_string(src == s->hp.srv.sin_addr.s_addr
									? "out" : "in"));
			if (mark >= 0)
				json_object_set_new(
					j, "cookie_mark",
					json_pack("{s:s,s:i,s:i,s:I,s:i,s:s}", "mark", mark_names[mark],
						  "tsval_low6", mk.low, "syn_options", mk.code,
						  "behind_ms", (json_int_t)mk.behind, "tcp_timestamps",
						  s->ts_mode, "source",
						  "this SYN-ACK's TSval against its SYN's options and the "
						  "capture's stamp (CLOCK_MONOTONIC ms)"));
			json_object_set_new(j, "host", json_string("server"));
			ev_emit(s->ctx->em, "segment", j);
			s->legit_frames++;
		}
	}
	return NULL;
}

/* ---- the attacker (client namespace, raw socket) ---- */

static uint16_t csum_add(uint32_t sum, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1)
		sum += (uint32_t)b[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* A whole IPv4 SYN with the options Linux's own SYNs carry (RFC 9293 3.2,
 * RFC 7323): MSS 1460, SACK permitted, timestamps, NOP, window scale. */
#define SYN_LEN 60
static void build_syn(uint8_t pkt[SYN_LEN], uint32_t saddr, uint32_t daddr, uint16_t sport,
		      uint16_t dport, uint32_t seq, uint32_t tsval)
{
	struct iphdr *ip = (struct iphdr *)pkt;
	struct tcphdr *th = (struct tcphdr *)(pkt + 20);
	uint8_t pseudo[12];
	uint32_t sum;

	memset(pkt, 0, SYN_LEN);
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = htons(SYN_LEN);
	ip->ttl = 64;
	ip->protocol = IPPROTO_TCP;
	ip->saddr = saddr;
	ip->daddr = daddr;
	th->source = htons(sport);
	th->dest = htons(dport);
	th->seq = htonl(seq);
	th->doff = 10;
	th->syn = 1;
	th->window = htons(64240);
	pkt[40] = 2; /* MSS 1460 */
	pkt[41] = 4;
	pkt[42] = 1460 >> 8;
	pkt[43] = 1460 & 0xff;
	pkt[44] = 4; /* SACK permitted */
	pkt[45] = 2;
	pkt[46] = 8; /* timestamps: TSval, TSecr 0 */
	pkt[47] = 10;
	pkt[48] = (uint8_t)(tsval >> 24);
	pkt[49] = (uint8_t)(tsval >> 16);
	pkt[50] = (uint8_t)(tsval >> 8);
	pkt[51] = (uint8_t)tsval;
	pkt[56] = 1; /* NOP */
	pkt[57] = 3; /* window scale */
	pkt[58] = 3;
	pkt[59] = ATTACK_WSCALE;
	memcpy(pseudo, &saddr, 4);
	memcpy(pseudo + 4, &daddr, 4);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_TCP;
	pseudo[10] = 0;
	pseudo[11] = SYN_LEN - 20;
	sum = csum_add(0, pseudo, 12);
	sum = csum_add(sum, pkt + 20, SYN_LEN - 20);
	th->check = htons((uint16_t)~sum);
}

static void *attacker(void *arg)
{
	struct sf *s = arg;
	struct lab_ctx *ctx = s->ctx;
	int rate = (int)lab_int(ctx->p, "rate");
	int64_t dur_ns = lab_int(ctx->p, "duration_ms") * 1000000LL, t0, next;
	uint32_t rnd[2];
	int fd;

	if (net_enter(ctx->net, NET_CLIENT) < 0 ||
	    (fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW)) < 0) {
		ev_error(ctx->em, "attacker_failed", "attack",
			 "cannot open a raw socket in the client namespace (needs CAP_NET_RAW)");
		lab_abort(ctx);
		s->attack_started = -1;
		return NULL;
	}
	if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
		rnd[0] = (uint32_t)obs_now_ns(), rnd[1] = 1;
	t0 = next = obs_now_ns();
	s->attack_start_ns = t0;
	s->attack_started = 1;
	ev_emit(ctx->em, "attack",
		json_pack("{s:s,s:s,s:i,s:I,s:s,s:s,s:i}", "phase", "start", "source",
			  s->attack == ATTACK_SPOOFED ? "spoofed" : "real", "rate", rate,
			  "duration_ms", (json_int_t)lab_int(ctx->p, "duration_ms"), "from",
			  s->attack == ATTACK_SPOOFED ? "203.0.113.0/24" : s->hp.cli_ip, "to", s->hp.srv_ip,
			  "port", s->hp.port));
	for (uint64_t i = 0; !s->stop_attack && !lab_cancelled(ctx); i++) {
		struct timespec ts;
		uint8_t pkt[SYN_LEN];
		uint32_t x = rnd[0] + (uint32_t)i * 2654435761u;
		uint32_t saddr = s->attack == ATTACK_SPOOFED
					 ? htonl(SPOOF_NET | (1 + x % 254))
					 : s->hp.cli.sin_addr.s_addr;
		uint16_t sport = (uint16_t)(ATTACK_PORT_MIN + (x >> 8) % ATTACK_PORT_SPAN);

		next = t0 + (int64_t)(i * 1000000000ULL / (uint64_t)rate);
		if (next - t0 >= dur_ns)
			break;
		ts.tv_sec = next / 1000000000;
		ts.tv_nsec = next % 1000000000;
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		build_syn(pkt, saddr, s->hp.srv.sin_addr.s_addr, sport, s->hp.port, x ^ rnd[1],
			  (uint32_t)(next / 1000000));
		if (sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&s->hp.srv, sizeof s->hp.srv) ==
		    (ssize_t)sizeof pkt)
			__atomic_add_fetch(&s->syn_sent, 1, __ATOMIC_RELAXED);
		else
			__atomic_add_fetch(&s->send_errors, 1, __ATOMIC_RELAXED);
	}
	close(fd);
	s->attack_end_ns = obs_now_ns();
	ev_emit(ctx->em, "attack",
		json_pack("{s:s,s:I,s:I,s:I}", "phase", "end", "sent", (json_int_t)s->syn_sent,
			  "send_errors", (json_int_t)s->send_errors, "elapsed_ms",
			  (json_int_t)((s->attack_end_ns - t0) / 1000000)));
	return NULL;
}

/* ---- the server's accept loop (server namespace) ---- */

static void *acceptor(void *arg)
{
	struct sf *s = arg;
	long long n = 0;

	while (!s->stop_all) {
		int rc = lab_wait_fd(s->ctx, s->lfd, POLLIN, 100), fd;

		if (rc == -ECANCELED)
			break;
		if (rc <= 0)
			continue;
		fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			n++;
			close(fd);
		}
	}
	json_object_set_new(s->ctx->summary, "accepted", json_integer(n));
	return NULL;
}

/* ---- the legitimate client (client namespace) ---- */

static int connect_once(struct sf *s, int i, int timeout_ms, int *keep)
{
	struct lab_ctx *ctx = s->ctx;
	int64_t t0 = obs_now_ns(), t1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0, rc;
	struct sockaddr_in me;
	socklen_t ml = sizeof me, el = sizeof err;
	uint16_t sport = 0;

	if (fd < 0)
		return -errno;
	rc = connect(fd, (struct sockaddr *)&s->hp.srv, sizeof s->hp.srv);
	if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
		sport = ntohs(me.sin_port);
	if (rc < 0 && errno != EINPROGRESS)
		err = errno;
	else if (rc < 0) {
		rc = lab_wait_fd(ctx, fd, POLLOUT, timeout_ms);
		if (rc == -ECANCELED) {
			close(fd);
			return rc;
		}
		if (rc == 0)
			err = ETIMEDOUT;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
	}
	t1 = obs_now_ns();
	pthread_mutex_lock(&s->lock);
	s->n_connects++;
	if (!err)
		s->n_ok++;
	else {
		s->n_fail++;
		s->errnos[err == ETIMEDOUT ? 0 : err == ECONNREFUSED ? 1 : err == ECONNRESET ? 2 : 3]++;
	}
	pthread_mutex_unlock(&s->lock);
	ev_emit(ctx->em, "connect",
		json_pack("{s:i,s:I,s:I,s:b,s:s?,s:i,s:i,s:b,s:i}", "i", i, "t_start_us",
			  (json_int_t)obs_run_us(ctx, t0), "took_us",
			  (json_int_t)((t1 - t0) / 1000), "ok", !err, "errno",
			  err ? strerrorname_np(err) : NULL, "errno_value", err, "sport", sport,
			  "during_attack", s->attack != ATTACK_NONE && !s->attack_end_ns,
			  "timeout_ms", timeout_ms));
	if (!err && *keep < 64) {
		keep[1 + *keep] = fd; /* held open: the server's side stays queued */
		(*keep)++;
	} else
		close(fd);
	return 0;
}

static void *client(void *arg)
{
	struct sf *s = arg;
	struct lab_ctx *ctx = s->ctx;
	int timeout = (int)lab_int(ctx->p, "connect_timeout_ms");
	int every = (int)lab_int(ctx->p, "connect_every_ms");
	int keep[65] = {0};
	int64_t start;

	if (net_enter(ctx->net, NET_CLIENT) < 0) {
		ev_error(ctx->em, "internal", NULL, "cannot enter the client namespace");
		lab_abort(ctx);
		return NULL;
	}
	/* Start once the attack shows in the kernel (a SYN dropped for a full
	 * queue or answered with a cookie, a request reset by a real source, or
	 * sock_diag listing a full half-open queue), so that the first connect
	 * meets the queue the attack made. */
	start = obs_now_ns();
	s->client_start_evidence = "no attack";
	while (s->attack != ATTACK_NONE && !lab_cancelled(ctx)) {
		int seen;

		pthread_mutex_lock(&s->lock);
		seen = s->have_counters &&
		       (s->now[C_QFULLDROP] > s->base[C_QFULLDROP] ||
			s->now[C_QFULLCOOKIES] > s->base[C_QFULLCOOKIES] ||
			s->now[C_CSENT] > s->base[C_CSENT] || s->now[C_OVERFLOWS] > s->base[C_OVERFLOWS] ||
			s->now[C_EMBRYONIC] > s->base[C_EMBRYONIC] ||
			(s->listener_seen && s->syn_recv_peak > s->acceptq_limit) ||
			s->syn_recv_peak * 4 >= 3 * lab_int(ctx->p, "max_syn_backlog"));
		pthread_mutex_unlock(&s->lock);
		if (seen) {
			s->client_start_evidence = "kernel";
			break;
		}
		if (s->attack_end_ns || obs_now_ns() - start > START_WAIT_MS * 1000000LL) {
			s->client_start_evidence = "waited";
			break;
		}
		lab_sleep_ms(ctx, 10);
	}
	s->started_client_ns = obs_now_ns();
	ev_emit(ctx->em, "client",
		json_pack("{s:s,s:s}", "phase", "start", "after", s->client_start_evidence));
	for (int i = 1; i <= MAX_CONNECTS && !lab_cancelled(ctx); i++) {
		int64_t t = obs_now_ns();

		if (connect_once(s, i, timeout, keep) < 0)
			break;
		/* One more attempt once the attack is over, then stop. */
		if (s->attack == ATTACK_NONE ? i >= (int)(lab_int(ctx->p, "duration_ms") / every) + 1
					     : (s->attack_end_ns && s->attack_end_ns < t))
			break;
		{
			int64_t left = (int64_t)every - (obs_now_ns() - t) / 1000000;

			if (left > 0 && lab_sleep_ms(ctx, (int)left) < 0)
				break;
		}
	}
	for (int i = 0; i < keep[0]; i++)
		close(keep[1 + i]);
	return NULL;
}

/* ---- verdicts ---- */

static void verdicts(struct sf *s)
{
	struct lab_ctx *ctx = s->ctx;
	long long d[N_COUNTERS];
	int cookies = (int)lab_int(ctx->p, "syncookies");
	json_t *c = json_object();
	long long once = 0, more = 0;

	for (size_t i = 0; i < SYNACK_SLOTS; i++)
		if (s->slots[i].sent)
			s->slots[i].sent > 1 ? more++ : once++;
	for (size_t i = 0; i < N_COUNTERS; i++) {
		d[i] = s->now[i] - s->base[i];
		json_object_set_new(c, counter_names[i], json_integer(d[i]));
	}
	json_object_set_new(ctx->summary, "counters", c);
	json_object_set_new(
		ctx->summary, "queues",
		json_pack("{s:s,s:i,s:i,s:i,s:I}", "source", "sock_diag samples", "half_open_peak",
			  s->syn_recv_peak, "accept_queue_peak", s->acceptq_peak, "accept_limit",
			  s->acceptq_limit, "samples", (json_int_t)s->samples));
	json_object_set_new(
		ctx->summary, "wire",
		json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "syn_in", (json_int_t)s->syn_in,
			  "synack_out", (json_int_t)s->synack_out, "synack_retrans",
			  (json_int_t)s->synack_retrans, "rst_in", (json_int_t)s->rst_in,
			  "peers_answered_once", (json_int_t)once, "peers_retransmitted",
			  (json_int_t)more, "capture_drops", (json_int_t)obs_capture_drops(s->obs)));
	json_object_set_new(json_object_get(ctx->summary, "wire"), "synack_marks", marks_json(s));
	json_object_set_new(
		ctx->summary, "client",
		json_pack("{s:I,s:I,s:I,s:i,s:i,s:i,s:i,s:s}", "connects", (json_int_t)s->n_connects,
			  "ok", (json_int_t)s->n_ok, "failed", (json_int_t)s->n_fail, "ETIMEDOUT",
			  s->errnos[0], "ECONNREFUSED", s->errnos[1], "ECONNRESET", s->errnos[2],
			  "other", s->errnos[3], "started_after", s->client_start_evidence));
	json_object_set_new(ctx->summary, "attack",
			    json_pack("{s:I,s:I}", "sent", (json_int_t)s->syn_sent, "send_errors",
				      (json_int_t)s->send_errors));

	/* The accept queue: listen()'s backlog bounds it. */
	{
		json_t *aq = json_pack("{s:i,s:i,s:I,s:I}", "peak", s->acceptq_peak, "limit",
				       s->acceptq_limit, "overflows", (json_int_t)d[C_OVERFLOWS],
				       "drops", (json_int_t)d[C_DROPS]);

		if (d[C_OVERFLOWS] > 0)
			ev_note(ctx->em, "synflood.accept_queue_full", aq, NULL);
		else
			ev_note(ctx->em, "synflood.accept_queue", aq, NULL);
	}
	/* The half-open queue: its limit comes from the same backlog. */
	if (s->attack == ATTACK_SPOOFED)
		ev_note(ctx->em, "synflood.half_open",
			json_pack("{s:i,s:i,s:I,s:I}", "peak", s->syn_recv_peak, "limit",
				  s->acceptq_limit, "qfull_drop", (json_int_t)d[C_QFULLDROP],
				  "retrans", (json_int_t)s->synack_retrans),
			NULL);
	/* Without cookies the last quarter of tcp_max_syn_backlog is kept for
	 * peers the kernel has seen answer before: SYNs dropped for that show in
	 * ListenDrops but not in TCPReqQFullDrop or ListenOverflows. */
	if (cookies == 0 && d[C_DROPS] > d[C_QFULLDROP] + d[C_OVERFLOWS])
		ev_note(ctx->em, "synflood.syn_backlog_quarter",
			json_pack("{s:I,s:I,s:I,s:i}", "max_syn_backlog",
				  (json_int_t)lab_int(ctx->p, "max_syn_backlog"), "drops",
				  (json_int_t)(d[C_DROPS] - d[C_QFULLDROP] - d[C_OVERFLOWS]),
				  "qfull_drop", (json_int_t)d[C_QFULLDROP], "peak", s->syn_recv_peak),
			NULL);
	if (d[C_QFULLCOOKIES] > 0 || d[C_CSENT] > 0)
		ev_note(ctx->em, "synflood.cookies",
			json_pack("{s:i,s:I,s:I,s:I,s:I,s:I,s:I}", "mode", cookies, "do_cookies",
				  (json_int_t)d[C_QFULLCOOKIES], "sent", (json_int_t)d[C_CSENT], "recv",
				  (json_int_t)d[C_CRECV], "once", (json_int_t)once, "more",
				  (json_int_t)more, "peak", (json_int_t)s->syn_recv_peak),
			NULL);
	/* Cookies segment by segment, from each SYN-ACK's TSval. */
	if (cookies > 0 || d[C_CSENT] > 0) {
		long long ck = s->marks[MARK_COOKIE], un = s->marks[MARK_UNDECIDED];
		json_t *mp = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "cookie", (json_int_t)ck,
				       "undecided", (json_int_t)un, "not", (json_int_t)s->marks[MARK_NOT],
				       "unreadable", (json_int_t)s->marks[MARK_UNREADABLE], "sent",
				       (json_int_t)d[C_CSENT], "both", (json_int_t)(ck + un), "drops",
				       (json_int_t)obs_capture_drops(s->obs));

		if (s->ts_mode != 2) {
			json_object_set_new(mp, "ts", json_integer(s->ts_mode));
			json_object_set_new(mp, "why", json_string(s->ts_mode == 1
								   ? "carries a random per-connection offset"
								   : "is absent (no timestamps)"));
			json_object_set_new(mp, "why_key",
					    json_string(s->ts_mode == 1 ? "sf.ts_offset"
									: "sf.ts_absent"));
			ev_note(ctx->em, "synflood.cookie_marks_off", mp, NULL);
		} else if (ck <= d[C_CSENT] && d[C_CSENT] <= ck + un)
			ev_note(ctx->em, "synflood.cookie_marks", mp, NULL);
		else
			ev_note(ctx->em, "synflood.cookie_marks_disagree", mp, NULL);
	}
	if (s->attack == ATTACK_REAL)
		ev_note(ctx->em, "synflood.real_source",
			json_pack("{s:I,s:I,s:i}", "rst_in", (json_int_t)s->rst_in, "embryonic",
				  (json_int_t)d[C_EMBRYONIC], "peak", s->syn_recv_peak),
			NULL);
	ev_note(ctx->em, "synflood.client",
		json_pack("{s:I,s:I,s:I,s:i}", "connects", (json_int_t)s->n_connects, "ok",
			  (json_int_t)s->n_ok, "failed", (json_int_t)s->n_fail, "timedout",
			  s->errnos[0]),
		NULL);
}

/* ---- the run ---- */

static int open_listener(struct sf *s)
{
	int one = 1;

	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->lfd < 0 ||
	    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(s->lfd, (struct sockaddr *)&s->hp.srv, sizeof s->hp.srv) < 0 ||
	    listen(s->lfd, (int)lab_int(s->ctx->p, "backlog")) < 0) {
		char msg[200];

		snprintf(msg, sizeof msg, "server socket on %s:%u: %s", s->hp.srv_ip, s->hp.port,
			 strerror(errno));
		ev_error(s->ctx->em, "listen_failed", "port", msg);
		return -errno;
	}
	ev_emit(s->ctx->em, "listen",
		json_pack("{s:s,s:i,s:I,s:b}", "addr", s->hp.srv_ip, "port", s->hp.port, "backlog",
			  (json_int_t)lab_int(s->ctx->p, "backlog"), "accepting", s->accepting));
	return 0;
}

static int route_spoofed(struct sf *s)
{
	struct nl nl;
	char err[256];
	int rc, ifi = (int)if_nametoindex(NET_IFNAME);

	if (nl_open(&nl, err, sizeof err) < 0) {
		ev_error(s->ctx->em, "route_failed", NULL, err);
		return -EIO;
	}
	rc = nl_route_add_default(&nl, ntohl(s->hp.cli.sin_addr.s_addr), ifi, err, sizeof err);
	nl_close(&nl);
	if (rc < 0) {
		ev_error(s->ctx->em, "route_failed", NULL, err);
		return rc;
	}
	ev_emit(s->ctx->em, "route",
		json_pack("{s:s,s:s,s:s}", "namespace", "server", "to", "0.0.0.0/0", "via", s->hp.cli_ip));
	return 0;
}

/* The client host must drop the SYN-ACKs to spoofed addresses without a
 * word: were it to forward, it would answer each with ICMP "unreachable"
 * (rate-limited), and an ICMP error that reaches a request socket removes it
 * (ListenDrops). The run's namespaces may inherit forwarding on from the
 * host; it is switched off in the client namespace only. Leaves the thread
 * in the server namespace. */
static int no_forwarding(struct sf *s)
{
	long long before = -1;
	int rc;

	if (net_enter(s->ctx->net, NET_CLIENT) < 0)
		return -EIO;
	rc = sysctl_rw("/proc/sys/net/ipv4/ip_forward", 0, &before);
	if (net_enter(s->ctx->net, NET_SERVER) < 0)
		return -EIO;
	if (rc == -EROFS) {
		ev_emit(s->ctx->em, "sysctl",
			json_pack("{s:s,s:I,s:i,s:b,s:s,s:s}", "name", "net.ipv4.ip_forward", "value",
				  before, "wanted", 0, "set", 0, "reason",
				  "/proc/sys is read-only here (a container)", "scope",
				  "client namespace"));
		if (before != 0)
			ev_note(s->ctx->em, "synflood.sysctl_readonly",
				json_pack("{s:s,s:I,s:i}", "name", "net.ipv4.ip_forward", "value", before,
					  "wanted", 0),
				NULL);
		return 0;
	}
	if (rc < 0) {
		ev_error(s->ctx->em, "sysctl_failed", NULL,
			 "cannot set net.ipv4.ip_forward in the run's client namespace");
		return rc;
	}
	ev_emit(s->ctx->em, "sysctl",
		json_pack("{s:s,s:i,s:I,s:s}", "name", "net.ipv4.ip_forward", "value", 0, "namespace_default",
			  before, "scope", "client namespace"));
	return 0;
}

static int sf_run(struct lab_ctx *ctx)
{
	struct sf *s = calloc(1, sizeof *s);
	pthread_t at, ct, act;
	int have_at = 0, have_ct = 0, have_act = 0, rc = 0;
	struct obs_config cfg;
	char filter[128];
	int64_t next_wire;

	if (!s || !(s->slots = calloc(SYNACK_SLOTS, sizeof *s->slots))) {
		free(s);
		ev_error(ctx->em, "internal", NULL, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->ctx = ctx;
	s->lfd = -1;
	s->attack = (int)lab_int(ctx->p, "attack");
	s->accepting = (int)lab_int(ctx->p, "accept");
	if ((rc = net_pair_pick(ctx, &s->hp)) < 0)
		goto out;

	if ((rc = net_enter(ctx->net, NET_SERVER)) < 0) {
		ev_error(ctx->em, "internal", NULL, "cannot enter the server namespace");
		goto out;
	}
	if ((rc = set_sysctls(s)) < 0 || (rc = route_spoofed(s)) < 0 || (rc = no_forwarding(s)) < 0)
		goto out;
	snprintf(filter, sizeof filter, "tcp port %u", s->hp.port);
	memset(&cfg, 0, sizeof cfg);
	cfg.ctx = ctx;
	cfg.filter = filter;
	cfg.fn = on_obs;
	cfg.arg = s;
	cfg.pcap_path = ctx->pcap_path;
	if ((rc = obs_start(&s->obs, &cfg)) < 0)
		goto out;
	if ((rc = net_enter(ctx->net, NET_SERVER)) < 0 || (rc = open_listener(s)) < 0)
		goto out;
	take_sample(s, 0); /* the counters' baseline */
	if (s->accepting && pthread_create(&act, NULL, acceptor, s) == 0)
		have_act = 1;
	if (s->attack != ATTACK_NONE) {
		if (pthread_create(&at, NULL, attacker, s) != 0) {
			ev_error(ctx->em, "internal", NULL, "cannot start the attacker");
			rc = -EAGAIN;
			goto stop;
		}
		have_at = 1;
	}
	if (pthread_create(&ct, NULL, client, s) != 0) {
		ev_error(ctx->em, "internal", NULL, "cannot start the client");
		rc = -EAGAIN;
		goto stop;
	}
	have_ct = 1;
	/* The sampler: this thread, in the server namespace, until the client is
	 * done. */
	next_wire = obs_now_ns();
	for (;;) {
		int done;

		take_sample(s, 0);
		if (obs_now_ns() >= next_wire) {
			pthread_mutex_lock(&s->lock);
			emit_wire(s, 0);
			pthread_mutex_unlock(&s->lock);
			next_wire += WIRE_EVERY_MS * 1000000LL;
		}
		done = pthread_tryjoin_np(ct, NULL) == 0;
		if (done) {
			have_ct = 0;
			break;
		}
		if (lab_sleep_ms(ctx, SAMPLE_MS) < 0)
			break;
	}
stop:
	s->stop_attack = 1;
	if (have_ct)
		pthread_join(ct, NULL);
	if (have_at)
		pthread_join(at, NULL);
	s->stop_all = 1;
	if (have_act)
		pthread_join(act, NULL);
	if (s->obs) {
		take_sample(s, 1);
		obs_stop(s->obs);
		pthread_mutex_lock(&s->lock);
		emit_wire(s, 1);
		pthread_mutex_unlock(&s->lock);
		if (rc == 0 && !lab_cancelled(ctx))
			verdicts(s);
	}
	if (rc == 0 && lab_cancelled(ctx))
		rc = -ECANCELED;
out:
	if (s->lfd >= 0)
		close(s->lfd);
	obs_destroy(s->obs);
	pthread_mutex_destroy(&s->lock);
	free(s->slots);
	free(s);
	return rc;
}

static int sf_check(const struct lab_params *p, const char **param, char *err, size_t errlen)
{
	return net_params_check_two_hosts(p, "a client host for the attacker and the client, a server host for the listener", param, err, errlen);
}

static int sf_format(const struct lab_params *p, const json_t *ev, char *buf, size_t len)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	double t = (double)json_integer_value(json_object_get(ev, "t_us")) / 1000.0;

	(void)p;
	if (!type)
		return -1;
	if (!strcmp(type, "queues")) {
		static int64_t last_ms = -1000;
		int64_t ms = (int64_t)t;

		if (!json_is_true(json_object_get(ev, "last")) && ms - last_ms < 500)
			return 0;
		last_ms = ms;
		return snprintf(buf, len, "%10.3f  sample   half-open %lld  accept queue %lld/%lld "
				"(sock_diag)\n", t,
				json_integer_value(json_object_get(ev, "half_open")),
				json_integer_value(json_object_get(ev, "accept_queue")),
				json_integer_value(json_object_get(ev, "accept_limit")));
	}
	if (!strcmp(type, "connect")) {
		const char *e = json_string_value(json_object_get(ev, "errno"));

		return snprintf(buf, len, "%10.3f  connect  #%-3lld %s after %.1f ms\n", t,
				json_integer_value(json_object_get(ev, "i")), e ? e : "ok",
				(double)json_integer_value(json_object_get(ev, "took_us")) / 1000.0);
	}
	if (!strcmp(type, "counters")) {
		const json_t *ch = json_object_get(ev, "changed");
		const char *k;
		json_t *v;
		int n = snprintf(buf, len, "%10.3f  TcpExt  ", t);

		if (json_object_size(ch) == 0)
			return 0;
		json_object_foreach((json_t *)ch, k, v)
			if (n >= 0 && (size_t)n < len)
				n += snprintf(buf + n, len - (size_t)n, " %s=%lld", k,
					      json_integer_value(v));
		if (n >= 0 && (size_t)n < len)
			n += snprintf(buf + n, len - (size_t)n, "\n");
		return n;
	}
	if (!strcmp(type, "sysctl") && json_is_false(json_object_get(ev, "set")))
		return snprintf(buf, len, "%10.3f  sysctl   %s stays %lld (%s; read-only here, wanted %lld)\n",
				t, json_string_value(json_object_get(ev, "name")),
				json_integer_value(json_object_get(ev, "value")),
				json_string_value(json_object_get(ev, "scope")),
				json_integer_value(json_object_get(ev, "wanted")));
	if (!strcmp(type, "sysctl"))
		return snprintf(buf, len, "%10.3f  sysctl   %s = %lld (%s; it had %lld)\n", t,
				json_string_value(json_object_get(ev, "name")),
				json_integer_value(json_object_get(ev, "value")),
				json_string_value(json_object_get(ev, "scope")),
				json_integer_value(json_object_get(ev, "namespace_default")));
	if (!strcmp(type, "attack")) {
		if (!strcmp(json_string_value(json_object_get(ev, "phase")), "start"))
			return snprintf(buf, len, "%10.3f  attack   %lld SYN/s from %s to %s:%lld\n", t,
					json_integer_value(json_object_get(ev, "rate")),
					json_string_value(json_object_get(ev, "from")),
					json_string_value(json_object_get(ev, "to")),
					json_integer_value(json_object_get(ev, "port")));
		return snprintf(buf, len, "%10.3f  attack   over: %lld SYNs sent\n", t,
				json_integer_value(json_object_get(ev, "sent")));
	}
	if (!strcmp(type, "wire_count")) {
		const json_t *m = json_object_get(ev, "synack_marks");

		return !json_is_true(json_object_get(ev, "last"))
			       ? 0
			       : snprintf(buf, len, "%10.3f  wire     SYN in %lld, SYN-ACK out %lld "
					  "(%lld retransmitted; by TSval: %lld cookie, %lld not, %lld "
					  "undecided, %lld unreadable), RST in %lld (capture, server "
					  "eth0)\n",
					  t, json_integer_value(json_object_get(ev, "syn_in")),
					  json_integer_value(json_object_get(ev, "synack_out")),
					  json_integer_value(json_object_get(ev, "synack_retrans")),
					  json_integer_value(json_object_get(m, "cookie")),
					  json_integer_value(json_object_get(m, "not_cookie")),
					  json_integer_value(json_object_get(m, "undecided")),
					  json_integer_value(json_object_get(m, "unreadable")),
					  json_integer_value(json_object_get(ev, "rst_in")));
	}
	if (!strcmp(type, "segment"))
		return 0;
	return -1;
}

const struct lab_desc lab_syn_flood = {
	.name = "syn-flood",
	.title = "SYN flood and the listen queues",
	.summary = "A raw-socket attacker floods a listener with SYNs while a client keeps "
		   "connecting: the half-open and accept queues from sock_diag, the kernel's "
		   "TcpExt counters, SYN-ACK retransmissions on the wire, and SYN cookies.",
	.params = sf_params,
	.n_params = sizeof sf_params / sizeof sf_params[0],
	.check = sf_check,
	.captures = 1,
	.run = sf_run,
	.format = sf_format,
};
