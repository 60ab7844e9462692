/* handshake.c: the handshake lab: a real TCP connection opened and closed per scenario, every segment captured and decoded, states from the kernel and from RFC 9293. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "capture/capture.h"
#include "decode/decode.h"
#include "lab.h"
#include "net/net.h"
#include "sock.h"
#include "tcpstate/tcpstate.h"

/*
 * One thread plays both programs (server and client) step by step, through
 * the traced socket calls, so every scenario happens the same way on every
 * run. An observer thread reads the packet capture and the kernel's state
 * tracepoint, merges what they report in the order of the kernel's own
 * timestamps, and emits it: each segment once (decoded), each state change
 * with its source, and the RFC 9293 machine's view of the same packets.
 * At the end the kernel's and the inferred state sequences are compared
 * side by side, and every disagreement is explained.
 *
 * The network: `two-hosts` (the default) puts the client and the server on
 * two hosts (namespaces) joined by a wire with a small delay; each host's
 * eth0 is captured, so every segment is seen leaving one host and arriving at
 * the other, and each side's RFC machine is fed in the order its own host
 * saw the segments. `loopback` is the run's own namespace and its lo, where
 * the client and the server each get a random 127.x.y.z address (lo answers
 * for all of 127/8); there a segment arrives the instant it leaves. Ports are
 * random on both: the tracepoint sees every namespace of the machine, so the
 * run filters it by its own addresses and ports, and two runs never see each
 * other.
 *
 * Replay (`replay=FILE`) decodes a recorded capture instead: the same segment
 * events and inferred states, no privileges needed.
 */

#define MAX_SEGS 2000          /* segments reported per run; more are counted */
#define MAX_TRANS 64           /* state changes kept per side for the comparison */
#define REPLAY_MAX_BYTES (16 * 1024 * 1024)
#define HEX_MAX 4096           /* frame bytes shown as hex in a segment event */
#define STEP_TIMEOUT_MS 5000   /* no single step of a scenario may take longer */
#define OBSERVE_POLL_MS 5
#define DIAG_EVERY_MS 100
#define TIMER_EVERY_MS 1000
#define FILL_MIN 8192          /* simultaneous: bytes that overflow the server's window */
#define SMALL_RCVBUF 4096
#define SETTLE_MS 5000         /* longest wait for the connection's end to cross the wire */

enum scenario {
	SC_CLIENT_CLOSES,
	SC_SERVER_CLOSES,
	SC_SIMULTANEOUS,
	SC_HALF_CLOSE,
	SC_REFUSED,
	SC_ABORT,
	SC_DATA_CLOSE,
};

static const char *const scenario_choices[] = {
	"client-closes", "server-closes", "simultaneous", "half-close", "refused", "abort",
	"data-close", NULL,
};

static const struct lab_param_def hs_params[] = {
	{"scenario", LAB_P_ENUM, "Scenario",
	 "client-closes: open, exchange data, the client closes first; server-closes: the server "
	 "closes first; simultaneous: both close at once (CLOSING); half-close: the client "
	 "shuts down its sending side while the server keeps sending; refused: connect to a port "
	 "nobody listens on (RST); abort: SO_LINGER 0 makes close() send RST; data-close: the "
	 "client's last data and its FIN leave in one segment",
	 NULL, "client-closes", 0, 0, scenario_choices, 0},
	{"data", LAB_P_INT, "Client data", "Bytes the client sends after connecting", "bytes", "12",
	 0, 65536, NULL, 0},
	{"reply", LAB_P_INT, "Server reply",
	 "Bytes the server sends back (half-close: after the client's FIN)", "bytes", "12", 0,
	 65536, NULL, 0},
	{"close_delay_ms", LAB_P_INT, "Passive close delay",
	 "How long the side that closes second waits after recv() returns 0: under ~40 ms its "
	 "ACK of the FIN usually rides with its own FIN (three segments), 300 ms or more gives "
	 "four",
	 "ms", "0", 0, 2000, NULL, LAB_PF_ADVANCED},
	{"observe_ms", LAB_P_INT, "Watch after close",
	 "How long to keep watching after the close: the TIME_WAIT countdown (the kernel keeps "
	 "it 60 s)",
	 "ms", "1500", 0, 65000, NULL, LAB_PF_ADVANCED},
	{"replay", LAB_P_STRING, "Replay a capture",
	 "Decode this recorded pcap or pcapng file instead of opening a connection (needs no "
	 "privileges)",
	 NULL, "", 0, 1000, NULL, LAB_PF_SERVER | LAB_PF_ADVANCED},
	/* Two hosts with a small delay each way by default: transient states
	 * last long enough to see, and two FINs can really cross. */
	NET_PARAMS_D("two-hosts", "10"),
};

enum side { SIDE_CLIENT, SIDE_SERVER, SIDE_LISTENER, SIDE_N };
static const char *const side_names[SIDE_N] = {"client", "server", "listener"};

enum source { SRC_TRACEPOINT, SRC_SOCK_DIAG, SRC_TCP_INFO, SRC_INFERRED };
static const char *const source_names[] = {
	[SRC_TRACEPOINT] = "tracepoint",
	[SRC_SOCK_DIAG] = "sock_diag",
	[SRC_TCP_INFO] = "tcp_info",
	[SRC_INFERRED] = "inferred",
};

/* A segment as the comparison needs it. */
struct seg_rec {
	int64_t t_ns;     /* when it left its sender */
	int64_t t_arr_ns; /* when it reached the receiver (loopback: t_ns); -1: not yet */
	int dir;          /* 0: client to server, 1: server to client */
	uint16_t flags;
	uint32_t seq, ack, len;
	uint16_t ip_id;
	int arrivals;
};

/* A state change as the comparison needs it. */
struct trans {
	int from, to, src;
	int64_t t_ns;
	int seg;      /* inferred: the segment that caused it (1-based) */
	int incoming; /* inferred: caused by a received segment */
	const char *why;
};

/* Something observed, waiting to be emitted in timestamp order. */
enum pend_kind { P_FRAME, P_TRACE, P_DIAG, P_TCPINFO };
struct pending {
	enum pend_kind kind;
	int64_t t_ns;
	uint64_t order; /* arrival order, for ties */
	union {
		struct {
			uint8_t *data;
			uint32_t caplen, len;
			struct timespec ts_real;
			int link;
			int host;     /* two-hosts: the capture it came from (SIDE_*); -1: loopback */
			int outgoing; /* sent by that host */
			unsigned csum_flags; /* CAP_CSUM_* */
		} frame;
		struct tcpst_trace_ev trace;
		struct {
			int side, state, timer;
			uint32_t ms;
		} diag;
		struct {
			int side, state;
		} info;
	} u;
};

struct hs_run;

/* Which capture a frame came from (the reader callbacks' argument). */
struct frame_src {
	struct hs_run *r;
	int host; /* SIDE_CLIENT or SIDE_SERVER on two hosts; -1 on loopback */
};

struct hs_run {
	struct lab_ctx *ctx;
	enum scenario sc;
	size_t data, reply;
	int close_delay_ms, observe_ms;
	int replay;

	/* The connection's endpoints (network byte order in the sockaddrs). */
	struct sockaddr_in cli, srv;
	char cli_ip[INET_ADDRSTRLEN], srv_ip[INET_ADDRSTRLEN];
	uint16_t cport, sport;

	struct net *net;     /* two-hosts, else NULL */
	struct cap *cap;     /* loopback: the one capture; two-hosts: the server's eth0 */
	struct cap *ccap;    /* two-hosts: the client's eth0 */
	struct cap_pcap *pcap;
	struct frame_src fsrc[2]; /* for cap and ccap */
	struct tcpst_trace *trace;
	char trace_err[256];
	int link;

	/* The observer thread. */
	pthread_t tid;
	int running;
	int stop_fd;

	pthread_mutex_t lock; /* guards pend, n_pend, order, settled */
	int settled;          /* both RFC machines have reached CLOSED or TIME_WAIT */
	struct pending *pend;
	size_t n_pend, cap_pend;
	uint64_t order;

	/* Emission state: touched only by whoever emits (the observer thread,
	 * or the lab thread once the observer has stopped). */
	int n_segs;           /* segments emitted */
	long long segs_dropped;
	struct seg_rec segs[MAX_SEGS];
	int isn_known[2];
	uint32_t isn[2];
	int wscale[2];        /* -1 unknown */
	int syn_seen[2];
	struct tcpst_infer inf[2];
	struct trans kern[SIDE_N][MAX_TRANS], infd[2][MAX_TRANS];
	int n_kern[SIDE_N], n_infd[2];
	int kstate[SIDE_N];      /* last state a kernel source reported */
	int kstate_before_close[SIDE_N];
	int diag_state[SIDE_N];  /* last state sock_diag reported */
	int info_state[2];       /* last state TCP_INFO reported */
	int tw_seen[2];
	uint32_t tw_ms_left[2];
	int64_t last_timer_ns;
	int64_t last_diag_ns;
	struct pending diag[2]; /* the sample being taken (observer thread) */
	int n_diag;
	int fin_seg[2], fin_ack_seg[2]; /* per sender: its FIN, the peer's ACK of it */
	long long arrivals_unmatched;   /* frames received whose sending was not seen */
	uint32_t fin_end[2];
	int closes_three;        /* -1 unknown, 0 four, 1 three */

	/* The lab thread's own descriptors (client, server, listener; -1 when
	 * closed), polled with TCP_INFO by that thread only. */
	int fds[3];
};

static int64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t t0_ns(const struct hs_run *r)
{
	return (int64_t)r->ctx->em->t0.tv_sec * 1000000000 + r->ctx->em->t0.tv_nsec;
}

/* Nanoseconds on CLOCK_MONOTONIC to the run clock (t_us). */
static json_int_t run_us(const struct hs_run *r, int64_t ns)
{
	return (json_int_t)((ns - t0_ns(r)) / 1000);
}

/* ---- the pending queue (any thread) ---- */

static int pend_push(struct hs_run *r, const struct pending *p)
{
	int rc = 0;

	pthread_mutex_lock(&r->lock);
	if (r->n_pend == r->cap_pend) {
		size_t cap = r->cap_pend ? r->cap_pend * 2 : 256;
		struct pending *n = cap > 65536 ? NULL : realloc(r->pend, cap * sizeof *n);
		if (!n) {
			rc = -ENOMEM;
			goto out;
		}
		r->pend = n;
		r->cap_pend = cap;
	}
	r->pend[r->n_pend] = *p;
	r->pend[r->n_pend].order = r->order++;
	r->n_pend++;
out:
	pthread_mutex_unlock(&r->lock);
	return rc;
}

static int pend_cmp(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;

	if (x->t_ns != y->t_ns)
		return x->t_ns < y->t_ns ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* ---- emitting: segments ---- */

static json_t *hex_json(const uint8_t *b, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char *s = malloc(2 * n + 1);
	json_t *j;
	size_t i;

	if (!s)
		return json_string("");
	for (i = 0; i < n; i++) {
		s[2 * i] = hex[b[i] >> 4];
		s[2 * i + 1] = hex[b[i] & 15];
	}
	j = json_stringn(s, 2 * n);
	free(s);
	return j;
}

static json_t *flags_json(uint16_t flags)
{
	static const struct {
		uint16_t bit;
		const char *name;
	} names[] = {{DEC_TCP_SYN, "SYN"}, {DEC_TCP_FIN, "FIN"}, {DEC_TCP_RST, "RST"},
		     {DEC_TCP_PSH, "PSH"}, {DEC_TCP_ACK, "ACK"}, {DEC_TCP_URG, "URG"},
		     {DEC_TCP_ECE, "ECE"}, {DEC_TCP_CWR, "CWR"}, {DEC_TCP_AE, "AE"},
		     {0, NULL}};
	json_t *a = json_array();
	int i;

	for (i = 0; names[i].name; i++)
		if (flags & names[i].bit)
			json_array_append_new(a, json_string(names[i].name));
	return a;
}

static json_t *addr_json(int family, const uint8_t *a, uint16_t port)
{
	char s[INET6_ADDRSTRLEN] = "?";

	inet_ntop(family, a, s, sizeof s);
	return json_pack("{s:s, s:i}", "addr", s, "port", port);
}

static void emit_state(struct hs_run *r, int side, int from, int to, int src, int64_t t_ns,
		       json_t *extra)
{
	json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:I}", "who", side_names[side], "from",
			      tcpst_name(from), "to", tcpst_name(to), "source", source_names[src],
			      "t_kernel_us", run_us(r, t_ns));

	if (extra) {
		json_object_update(f, extra);
		json_decref(extra);
	}
	ev_emit(r->ctx->em, "state", f);
}

/* Record a kernel-reported change for the comparison. */
static void kern_add(struct hs_run *r, int side, int from, int to, int src, int64_t t_ns)
{
	struct trans *t;

	if (r->n_kern[side] == MAX_TRANS)
		return;
	t = &r->kern[side][r->n_kern[side]++];
	memset(t, 0, sizeof *t);
	t->from = from;
	t->to = to;
	t->src = src;
	t->t_ns = t_ns;
	t->seg = r->n_segs; /* the last segment emitted before it */
}

/* Notice the close pattern: who sent a FIN, and whether the passive side's
 * FIN carried the ACK of the first FIN (three segments) or a separate ACK
 * came first (four). */
static void track_close(struct hs_run *r, int dir, const struct dec_tcp *t, int n)
{
	int other = !dir;

	if ((t->flags & DEC_TCP_ACK) && r->fin_seg[other] && !r->fin_ack_seg[other] &&
	    (int32_t)(t->ack - r->fin_end[other]) >= 0)
		r->fin_ack_seg[other] = n;
	if ((t->flags & DEC_TCP_FIN) && !r->fin_seg[dir]) {
		r->fin_seg[dir] = n;
		r->fin_end[dir] = t->seq + t->payload_len + 1 + ((t->flags & DEC_TCP_SYN) ? 1 : 0);
		/* The second FIN of the connection: did it also ACK the first? */
		if (r->fin_seg[other] && r->fin_seg[other] < n && r->closes_three < 0)
			r->closes_three = r->fin_ack_seg[other] == n;
	}
}

/* Feed one side's RFC machine a segment it sent or received (segment n, at
 * t_ns on that side) and emit the changes. */
static void feed(struct hs_run *r, int side, int outgoing, const struct seg_rec *sg, int n,
		 int64_t t_ns)
{
	struct tcpst_change ch[2];
	int k, m;

	m = tcpst_infer_segment(&r->inf[side], outgoing, sg->flags, sg->seq, sg->ack, sg->len, ch);
	for (k = 0; k < m; k++) {
		if (r->n_infd[side] < MAX_TRANS) {
			struct trans *tr = &r->infd[side][r->n_infd[side]++];
			memset(tr, 0, sizeof *tr);
			tr->from = ch[k].from;
			tr->to = ch[k].to;
			tr->src = SRC_INFERRED;
			tr->t_ns = t_ns;
			tr->seg = n;
			tr->incoming = !outgoing;
			tr->why = ch[k].why;
		}
		emit_state(r, side, ch[k].from, ch[k].to, SRC_INFERRED, t_ns,
			   json_pack("{s:i, s:s}", "seg", n, "why", ch[k].why));
	}
}

/* A frame with a bad IPv4 or TCP checksum never reaches its receiver's TCP:
 * the receiving kernel discards it. Then the receiver's RFC 9293 machine
 * must not see it either, and a note says why (once per segment). Returns 1
 * when it was discarded. */
static int csum_dropped(struct hs_run *r, const struct dec_packet *d, int n)
{
	if (d->ip4.csum.status != DEC_CSUM_BAD && d->tcp.csum.status != DEC_CSUM_BAD)
		return 0;
	ev_note(r->ctx->em, "handshake.csum_dropped", json_pack("{s:i}", "seg", n), NULL);
	return 1;
}

/* The segment's direction in this run's connection, or -1 for another
 * connection. A replay names the connection from its first segment. */
static int seg_dir(struct hs_run *r, const struct dec_packet *d)
{
	const struct dec_tcp *t = &d->tcp;
	int fam = dec_has(d, DEC_L_IPV6) ? AF_INET6 : AF_INET;
	const uint8_t *sa = fam == AF_INET6 ? d->ip6.src : d->ip4.src;
	const uint8_t *da = fam == AF_INET6 ? d->ip6.dst : d->ip4.dst;

	if (r->replay && r->n_segs == 0 && !r->cport) {
		/* The first segment names the connection: its sender is the client,
		 * unless it answers a SYN. */
		int answer = (t->flags & DEC_TCP_SYN) && (t->flags & DEC_TCP_ACK);
		r->cport = answer ? t->dport : t->sport;
		r->sport = answer ? t->sport : t->dport;
		inet_ntop(fam, answer ? da : sa, r->cli_ip, sizeof r->cli_ip);
		inet_ntop(fam, answer ? sa : da, r->srv_ip, sizeof r->srv_ip);
		tcpst_infer_init(&r->inf[SIDE_CLIENT], (t->flags & DEC_TCP_SYN) ? TCPST_CLOSE
									 : TCPST_ESTABLISHED);
		tcpst_infer_init(&r->inf[SIDE_SERVER], (t->flags & DEC_TCP_SYN) ? TCPST_LISTEN
									 : TCPST_ESTABLISHED);
	}
	if (t->sport == r->cport && t->dport == r->sport)
		return 0;
	if (t->sport == r->sport && t->dport == r->cport)
		return 1;
	return -1;
}

/* A segment that left its sender: number it, emit it, and let the sender's
 * machine see it go (and, on loopback or in a replay, where it arrives the
 * same instant, the receiver's machine see it come). */
static void emit_send(struct hs_run *r, const struct pending *p, const struct dec_packet *d,
		      int dir, int arrives_now)
{
	const struct dec_tcp *t = &d->tcp;
	int fam = dec_has(d, DEC_L_IPV6) ? AF_INET6 : AF_INET;
	const uint8_t *sa = fam == AF_INET6 ? d->ip6.src : d->ip4.src;
	const uint8_t *da = fam == AF_INET6 ? d->ip6.dst : d->ip4.dst;
	struct seg_rec *sg;
	json_t *f, *dj;
	char fl[16];
	int n;

	if (r->n_segs == MAX_SEGS) {
		r->segs_dropped++;
		return;
	}
	if (r->pcap) {
		struct cap_frame cf = {.ts_real = p->u.frame.ts_real,
				       .t_mono_ns = p->t_ns,
				       .data = p->u.frame.data,
				       .caplen = p->u.frame.caplen,
				       .len = p->u.frame.len,
				       .link = p->u.frame.link};
		cap_pcap_write(r->pcap, &cf);
	}
	n = ++r->n_segs;
	sg = &r->segs[n - 1];
	memset(sg, 0, sizeof *sg);
	sg->t_ns = p->t_ns;
	sg->t_arr_ns = arrives_now ? p->t_ns : -1;
	sg->arrivals = arrives_now;
	sg->dir = dir;
	sg->flags = t->flags;
	sg->seq = t->seq;
	sg->ack = t->ack;
	sg->len = t->payload_len;
	sg->ip_id = dec_has(d, DEC_L_IPV4) ? d->ip4.id : 0;
	if ((t->flags & DEC_TCP_SYN) && !r->isn_known[dir]) {
		r->isn_known[dir] = 1;
		r->isn[dir] = t->seq;
	}
	if (t->flags & DEC_TCP_SYN) {
		unsigned i;
		r->syn_seen[dir] = 1;
		for (i = 0; i < t->n_opts; i++)
			if (t->opt[i].kind == DEC_TCPOPT_WSCALE && t->opt[i].status == DEC_OK)
				r->wscale[dir] = t->opt[i].u.wscale > 14 ? 14 : t->opt[i].u.wscale;
	}
	f = json_pack("{s:i, s:s, s:s, s:s, s:I, s:o, s:o}", "n", n, "dir", dir ? "s2c" : "c2s",
		      "from", dir ? "server" : "client", "to", dir ? "client" : "server",
		      "t_kernel_us", run_us(r, p->t_ns), "src", addr_json(fam, sa, t->sport), "dst",
		      addr_json(fam, da, t->dport));
	json_object_set_new(f, "flags", flags_json(t->flags));
	json_object_set_new(f, "flags_raw", json_integer(t->flags));
	json_object_set_new(f, "flags_short", json_string(dec_tcp_flags_short(t->flags, fl, sizeof fl)));
	/* "seq" is the envelope's event number: the TCP numbers are seq_raw and
	 * ack_raw (as tshark names them), and relative to each side's ISN. */
	json_object_set_new(f, "seq_raw", json_integer(t->seq));
	json_object_set_new(f, "ack_raw", json_integer(t->ack));
	json_object_set_new(f, "rel_seq", r->isn_known[dir] ? json_integer((uint32_t)(t->seq - r->isn[dir]))
							   : json_null());
	json_object_set_new(f, "rel_ack", (t->flags & DEC_TCP_ACK) && r->isn_known[!dir]
						  ? json_integer((uint32_t)(t->ack - r->isn[!dir]))
						  : json_null());
	json_object_set_new(f, "len", json_integer(t->payload_len));
	json_object_set_new(f, "win", json_integer(t->window));
	/* The window in bytes: scaled, except in a SYN (RFC 7323 2.2), and only
	 * when both SYNs carried the option. */
	if (!(t->flags & DEC_TCP_SYN) && r->syn_seen[0] && r->syn_seen[1])
		json_object_set_new(f, "win_bytes",
				    json_integer((json_int_t)t->window
						 << (r->wscale[dir] >= 0 && r->wscale[!dir] >= 0
							     ? r->wscale[dir]
							     : 0)));
	json_object_set_new(f, "options", dec_tcp_options_json(t));
	json_object_set_new(f, "checksums", dec_checksums_json(&d->ip4.csum, &t->csum, DEC_L_TCP));
	json_object_set_new(f, "status", json_string(dec_status_name(d->status)));
	if (d->why)
		json_object_set_new(f, "why", json_string(d->why));
	json_object_set_new(f, "caplen", json_integer(p->u.frame.caplen));
	json_object_set_new(f, "wirelen", json_integer(p->u.frame.len));
	json_object_set_new(f, "bytes", hex_json(p->u.frame.data, p->u.frame.caplen < HEX_MAX
								    ? p->u.frame.caplen
								    : HEX_MAX));
	if (p->u.frame.caplen > HEX_MAX)
		json_object_set_new(f, "bytes_truncated", json_true());
	dj = dec_packet_json(d);
	json_object_set(f, "layers", json_object_get(dj, "layers"));
	json_decref(dj);
	if (p->u.frame.host >= 0)
		json_object_set_new(f, "captured_at", json_string(side_names[p->u.frame.host]));
	ev_emit(r->ctx->em, "segment", f);
	track_close(r, dir, t, n);
	feed(r, dir == 0 ? SIDE_CLIENT : SIDE_SERVER, 1, sg, n, p->t_ns);
	if (arrives_now && !csum_dropped(r, d, n))
		feed(r, dir == 0 ? SIDE_SERVER : SIDE_CLIENT, 0, sg, n, p->t_ns);
}

/* A segment reaching its receiver (two hosts): find it among those sent (the
 * same direction, IP id, numbers, flags and length), say when it arrived,
 * and let the receiver's machine see it. A second arrival is a duplicate the
 * wire made. */
static void emit_arrival(struct hs_run *r, const struct pending *p, const struct dec_packet *d,
			 int dir)
{
	const struct dec_tcp *t = &d->tcp;
	uint16_t id = dec_has(d, DEC_L_IPV4) ? d->ip4.id : 0;
	int i, n = 0;
	struct seg_rec *sg;

	for (i = 0; i < r->n_segs; i++) {
		sg = &r->segs[i];
		if (sg->dir == dir && sg->ip_id == id && sg->seq == t->seq && sg->ack == t->ack &&
		    sg->flags == t->flags && sg->len == t->payload_len) {
			n = i + 1;
			if (!sg->arrivals)
				break; /* the first copy not yet arrived */
		}
	}
	if (!n) {
		r->arrivals_unmatched++;
		return;
	}
	sg = &r->segs[n - 1];
	sg->arrivals++;
	ev_emit(r->ctx->em, "arrival",
		json_pack("{s:i, s:s, s:I, s:I, s:b, s:o}", "n", n, "who", dir ? "client" : "server",
			  "t_kernel_us", run_us(r, p->t_ns), "wire_us",
			  (json_int_t)((p->t_ns - sg->t_ns) / 1000), "duplicate", sg->arrivals > 1,
			  "checksums", dec_checksums_json(&d->ip4.csum, &t->csum, DEC_L_TCP)));
	if (sg->arrivals > 1)
		return; /* the kernel drops a duplicate as old data; the machine need not see it */
	if (csum_dropped(r, d, n)) {
		sg->arrivals--; /* discarded: a good copy may still arrive */
		return;
	}
	sg->t_arr_ns = p->t_ns;
	feed(r, dir == 0 ? SIDE_SERVER : SIDE_CLIENT, 0, sg, n, p->t_ns);
}

/* After each segment: has the connection ended on both sides (as far as the
 * packets tell)? The lab waits for this before it stops watching, so the
 * last segments still on the wire are seen. */
static void note_settled(struct hs_run *r)
{
	int c = r->inf[SIDE_CLIENT].state, s = r->inf[SIDE_SERVER].state;
	int done = (c == TCPST_CLOSE || c == TCPST_TIME_WAIT) &&
		   (s == TCPST_CLOSE || s == TCPST_TIME_WAIT) && r->n_segs > 0;

	pthread_mutex_lock(&r->lock);
	r->settled = done;
	pthread_mutex_unlock(&r->lock);
}

static void emit_frame(struct hs_run *r, const struct pending *p)
{
	struct dec_packet *d = malloc(sizeof *d);
	int dir;

	if (!d)
		return;
	dec_packet_rx(p->u.frame.data, p->u.frame.caplen, p->u.frame.len, p->u.frame.link,
		      p->u.frame.csum_flags, d);
	if (!dec_has(d, DEC_L_TCP) || d->layer[DEC_L_TCP].span.len < 20) {
		/* Not a TCP segment we can place: shown raw, counted apart. */
		if (p->u.frame.host < 0 || p->u.frame.outgoing) {
			json_t *j = dec_packet_json(d);
			json_object_set_new(j, "t_kernel_us", json_integer(run_us(r, p->t_ns)));
			json_object_set_new(j, "bytes",
					    hex_json(p->u.frame.data, p->u.frame.caplen < HEX_MAX
									 ? p->u.frame.caplen
									 : HEX_MAX));
			ev_emit(r->ctx->em, "packet", j);
		}
		free(d);
		return;
	}
	dir = seg_dir(r, d);
	if (dir < 0)
		r->segs_dropped++; /* another connection in a replayed file */
	else if (p->u.frame.host < 0)
		emit_send(r, p, d, dir, 1); /* loopback or a replay: it arrives as it leaves */
	else if (p->u.frame.outgoing)
		emit_send(r, p, d, dir, 0);
	else
		emit_arrival(r, p, d, dir);
	free(d);
	note_settled(r);
}

/* ---- emitting: kernel states ---- */

/* Which of the run's sockets a tracepoint event is about, or -1. */
static int trace_side(const struct hs_run *r, const struct tcpst_trace_ev *ev)
{
	if (ev->family != AF_INET)
		return -1;
	if (ev->sport == r->cport && ev->dport == r->sport &&
	    !memcmp(ev->saddr, &r->cli.sin_addr, 4) && !memcmp(ev->daddr, &r->srv.sin_addr, 4))
		return SIDE_CLIENT;
	if (ev->sport == r->sport && ev->dport == r->cport &&
	    !memcmp(ev->saddr, &r->srv.sin_addr, 4) && !memcmp(ev->daddr, &r->cli.sin_addr, 4))
		return SIDE_SERVER;
	if (ev->sport == r->sport && ev->dport == 0 && !memcmp(ev->saddr, &r->srv.sin_addr, 4))
		return SIDE_LISTENER;
	return -1;
}

static void emit_trace(struct hs_run *r, const struct pending *p)
{
	const struct tcpst_trace_ev *ev = &p->u.trace;
	int side = trace_side(r, ev);

	if (side < 0)
		return;
	if (ev->newstate == TCPST_CLOSE)
		r->kstate_before_close[side] = ev->oldstate;
	r->kstate[side] = ev->newstate;
	kern_add(r, side, ev->oldstate, ev->newstate, SRC_TRACEPOINT, p->t_ns);
	emit_state(r, side, ev->oldstate, ev->newstate, SRC_TRACEPOINT, p->t_ns,
		   json_pack("{s:i}", "after_seg", r->n_segs));
}

static void emit_diag(struct hs_run *r, const struct pending *p)
{
	int side = p->u.diag.side, st = p->u.diag.state;
	int from;
	json_t *extra;

	if (st == r->diag_state[side])
		return;
	r->diag_state[side] = st;
	/* TIME_WAIT is what only sock_diag can show; other states only matter
	 * when the tracepoint is not there to report them. */
	if (st != TCPST_TIME_WAIT && r->trace)
		return;
	from = r->kstate[side];
	if (st == TCPST_TIME_WAIT && from == TCPST_CLOSE && r->kstate_before_close[side])
		from = r->kstate_before_close[side]; /* the full socket's last state */
	if (from == st)
		return;
	extra = json_pack("{s:i}", "after_seg", r->n_segs);
	if (p->u.diag.timer) {
		json_object_set_new(extra, "timer", json_string(tcpst_timer_name(p->u.diag.timer)));
		json_object_set_new(extra, "timer_ms", json_integer(p->u.diag.ms));
	}
	if (st == TCPST_TIME_WAIT && side <= SIDE_SERVER) {
		r->tw_seen[side] = 1;
		r->tw_ms_left[side] = p->u.diag.ms;
	}
	kern_add(r, side, from, st, SRC_SOCK_DIAG, p->t_ns);
	r->kstate[side] = st;
	emit_state(r, side, from, st, SRC_SOCK_DIAG, p->t_ns, extra);
}

static void emit_tcpinfo(struct hs_run *r, const struct pending *p)
{
	int side = p->u.info.side, st = p->u.info.state;
	int from = r->info_state[side];

	if (st == from)
		return;
	r->info_state[side] = st;
	kern_add(r, side, from, st, SRC_TCP_INFO, p->t_ns);
	r->kstate[side] = st;
	emit_state(r, side, from, st, SRC_TCP_INFO, p->t_ns, json_pack("{s:i}", "after_seg", r->n_segs));
}

/* Emit every pending item stamped before horizon, in timestamp order. */
static void emit_until(struct hs_run *r, int64_t horizon)
{
	struct pending *batch = NULL;
	size_t n = 0, i, keep = 0;

	pthread_mutex_lock(&r->lock);
	if (r->n_pend) {
		batch = malloc(r->n_pend * sizeof *batch);
		if (batch) {
			for (i = 0; i < r->n_pend; i++) {
				if (r->pend[i].t_ns <= horizon)
					batch[n++] = r->pend[i];
				else
					r->pend[keep++] = r->pend[i];
			}
			r->n_pend = keep;
		}
	}
	pthread_mutex_unlock(&r->lock);
	if (!batch)
		return;
	qsort(batch, n, sizeof *batch, pend_cmp);
	for (i = 0; i < n; i++) {
		switch (batch[i].kind) {
		case P_FRAME:
			emit_frame(r, &batch[i]);
			free(batch[i].u.frame.data);
			break;
		case P_TRACE:
			emit_trace(r, &batch[i]);
			break;
		case P_DIAG:
			emit_diag(r, &batch[i]);
			break;
		case P_TCPINFO:
			emit_tcpinfo(r, &batch[i]);
			break;
		}
	}
	free(batch);
}

/* ---- the observer thread ---- */

static int on_frame(void *arg, const struct cap_frame *f)
{
	const struct frame_src *src = arg;
	struct hs_run *r = src->r;
	struct pending p;

	memset(&p, 0, sizeof p);
	p.kind = P_FRAME;
	p.t_ns = f->t_mono_ns;
	p.u.frame.data = malloc(f->caplen ? f->caplen : 1);
	if (!p.u.frame.data)
		return -ENOMEM;
	memcpy(p.u.frame.data, f->data, f->caplen);
	p.u.frame.caplen = f->caplen;
	p.u.frame.len = f->len;
	p.u.frame.ts_real = f->ts_real;
	p.u.frame.link = f->link;
	p.u.frame.host = src->host;
	p.u.frame.outgoing = f->outgoing;
	p.u.frame.csum_flags = f->csum_flags;
	if (pend_push(r, &p) < 0) {
		free(p.u.frame.data);
		return -ENOMEM;
	}
	return 0;
}

static void on_trace(void *arg, const struct tcpst_trace_ev *ev)
{
	struct hs_run *r = arg;
	struct pending p;

	if (trace_side(r, ev) < 0)
		return;
	memset(&p, 0, sizeof p);
	p.kind = P_TRACE;
	p.t_ns = ev->t_mono_ns;
	p.u.trace = *ev;
	pend_push(r, &p);
}

struct diag_ctx {
	struct hs_run *r;
	int64_t t_ns;
};

static void on_diag(void *arg, const struct tcpst_diag_sock *s)
{
	struct diag_ctx *d = arg;
	struct hs_run *r = d->r;
	struct pending p;
	int side = -1;

	if (s->family != AF_INET)
		return;
	if (s->sport == r->cport && s->dport == r->sport && !memcmp(s->src, &r->cli.sin_addr, 4) &&
	    !memcmp(s->dst, &r->srv.sin_addr, 4))
		side = SIDE_CLIENT;
	else if (s->sport == r->sport && s->dport == r->cport &&
		 !memcmp(s->src, &r->srv.sin_addr, 4) && !memcmp(s->dst, &r->cli.sin_addr, 4))
		side = SIDE_SERVER;
	if (side < 0)
		return;
	if (r->n_diag == 2)
		return;
	memset(&p, 0, sizeof p);
	p.kind = P_DIAG;
	p.u.diag.side = side;
	p.u.diag.state = s->state;
	p.u.diag.timer = s->timer;
	p.u.diag.ms = s->expires_ms;
	r->diag[r->n_diag++] = p;
}

/* Queue the sample's sockets, stamped with the time the dump returned. */
static void flush_diag(struct hs_run *r, int64_t t_ns)
{
	int i;

	for (i = 0; i < r->n_diag; i++) {
		r->diag[i].t_ns = t_ns;
		pend_push(r, &r->diag[i]);
	}
	r->n_diag = 0;
}

/* One sock_diag sample. Its time is when the dump returned: the kernel
 * walked its socket tables somewhere during the call, so every state it
 * reports was reached by then (the start would put it too early). */
/* sock_diag lists the sockets of the caller's namespace: on two hosts, ask
 * in each (this thread moves between them). */
static void diag_each_host(struct hs_run *r, tcpst_diag_fn fn, void *arg)
{
	char err[128];

	if (!r->net) {
		tcpst_diag_dump(AF_INET, fn, arg, err, sizeof err);
		return;
	}
	if (net_enter(r->net, NET_CLIENT) == 0)
		tcpst_diag_dump(AF_INET, fn, arg, err, sizeof err);
	if (net_enter(r->net, NET_SERVER) == 0)
		tcpst_diag_dump(AF_INET, fn, arg, err, sizeof err);
}

static void sample_diag(struct hs_run *r)
{
	struct diag_ctx d = {r, 0};

	r->n_diag = 0;
	diag_each_host(r, on_diag, &d);
	d.t_ns = mono_ns();
	flush_diag(r, d.t_ns);
	r->last_diag_ns = d.t_ns;
}

/* While a side sits in TIME_WAIT, say how long the kernel's timer has left
 * (read again from sock_diag), about once a second. */
static void emit_timers(struct hs_run *r)
{
	int side;

	for (side = SIDE_CLIENT; side <= SIDE_SERVER; side++) {
		if (r->diag_state[side] != TCPST_TIME_WAIT)
			continue;
		ev_emit(r->ctx->em, "timer",
			json_pack("{s:s, s:s, s:s, s:I, s:s}", "who", side_names[side], "state",
				  "TIME_WAIT", "timer", "time_wait", "ms_left",
				  (json_int_t)r->tw_ms_left[side], "source", "sock_diag"));
	}
}

/* Read what both captures hold now. */
static void read_captures(struct hs_run *r)
{
	if (r->cap)
		cap_read(r->cap, on_frame, &r->fsrc[0]);
	if (r->ccap)
		cap_read(r->ccap, on_frame, &r->fsrc[1]);
}

static void observe_once(struct hs_run *r)
{
	int64_t now;

	read_captures(r);
	if (r->trace)
		tcpst_trace_read(r->trace, on_trace, r);
	now = mono_ns();
	if (now - r->last_diag_ns >= (int64_t)DIAG_EVERY_MS * 1000000)
		sample_diag(r);
	/* Everything stamped up to a moment ago has been read from both the
	 * capture and the trace buffer: emit it, in timestamp order. */
	emit_until(r, now - 2000000);
}

/* diag sampling also keeps the TIME_WAIT countdown fresh. */
static void note_tw_left(struct hs_run *r)
{
	int64_t now = mono_ns();

	if (now - r->last_timer_ns >= (int64_t)TIMER_EVERY_MS * 1000000 &&
	    (r->diag_state[SIDE_CLIENT] == TCPST_TIME_WAIT ||
	     r->diag_state[SIDE_SERVER] == TCPST_TIME_WAIT)) {
		r->last_timer_ns = now;
		emit_timers(r);
	}
}

static void on_diag_tw(void *arg, const struct tcpst_diag_sock *s)
{
	struct hs_run *r = arg;
	int side = -1;

	if (s->family != AF_INET || s->state != TCPST_TIME_WAIT)
		return;
	if (s->sport == r->cport && s->dport == r->sport)
		side = SIDE_CLIENT;
	else if (s->sport == r->sport && s->dport == r->cport)
		side = SIDE_SERVER;
	if (side >= 0)
		r->tw_ms_left[side] = s->expires_ms;
}

static void *observer(void *arg)
{
	struct hs_run *r = arg;

	for (;;) {
		struct pollfd p[4];
		int n = 0;
		uint64_t v;

		p[n++] = (struct pollfd){r->stop_fd, POLLIN, 0};
		if (r->cap)
			p[n++] = (struct pollfd){cap_fd(r->cap), POLLIN, 0};
		if (r->ccap)
			p[n++] = (struct pollfd){cap_fd(r->ccap), POLLIN, 0};
		if (r->trace)
			p[n++] = (struct pollfd){tcpst_trace_fd(r->trace), POLLIN, 0};
		poll(p, (nfds_t)n, OBSERVE_POLL_MS);
		observe_once(r);
		if (r->diag_state[SIDE_CLIENT] == TCPST_TIME_WAIT ||
		    r->diag_state[SIDE_SERVER] == TCPST_TIME_WAIT) {
			if (mono_ns() - r->last_timer_ns >= (int64_t)TIMER_EVERY_MS * 1000000)
				diag_each_host(r, on_diag_tw, r);
			note_tw_left(r);
		}
		if (read(r->stop_fd, &v, sizeof v) == sizeof v)
			break;
	}
	return NULL;
}

/* ---- TCP_INFO (the fallback when the tracepoint is not available) ---- */

static void poll_tcp_info(struct hs_run *r)
{
	int side;

	if (r->trace || r->replay)
		return;
	for (side = SIDE_CLIENT; side <= SIDE_SERVER; side++) {
		struct pending p;
		int st;

		if (r->fds[side] < 0)
			continue;
		st = tcpst_tcp_info_state(r->fds[side]);
		if (st <= 0)
			continue;
		memset(&p, 0, sizeof p);
		p.kind = P_TCPINFO;
		p.t_ns = mono_ns();
		p.u.info.side = side;
		p.u.info.state = st;
		pend_push(r, &p);
	}
}

/* ---- the comparison ---- */

/* Would segment b cause what segment a caused: the same SYN, FIN and RST
 * bits, and for an ACK-driven change the same acknowledgment? */
static int same_cause(const struct seg_rec *a, const struct seg_rec *b)
{
	const uint16_t bits = DEC_TCP_SYN | DEC_TCP_FIN | DEC_TCP_RST;

	if ((a->flags & bits) != (b->flags & bits) || a->dir != b->dir)
		return 0;
	if (!(a->flags & bits))
		return (b->flags & DEC_TCP_ACK) && a->ack == b->ack;
	return 1;
}

/* Does a kernel change sit at the packet the inferred one names as its
 * cause? The kernel's change is placed at the last segment the side
 * received before it (for a change a received segment caused) or the first
 * segment it sent after it (for one a sent segment caused), with one
 * microsecond of slack (the tracepoint's stamps have microseconds). A
 * different segment that would have caused the same change (an ACK
 * processed late, from the socket's backlog, next to a later one with the
 * same acknowledgment) counts as the same. */
static int same_packet(const struct hs_run *r, int side, const struct trans *inf,
		       const struct trans *k)
{
	int seg = inf->seg, i, at = 0;
	int dir_in = side == SIDE_CLIENT ? 1 : 0; /* the direction this side receives */
	int64_t best = 0;

	if (seg < 1 || seg > r->n_segs)
		return 0;
	for (i = 0; i < r->n_segs; i++) {
		const struct seg_rec *sg = &r->segs[i];
		if (inf->incoming) {
			/* The last one to arrive here before the change (by arrival
			 * time: a wire may reorder). */
			if (sg->dir == dir_in && sg->t_arr_ns >= 0 && sg->t_arr_ns <= k->t_ns + 1000 &&
			    (!at || sg->t_arr_ns >= best)) {
				at = i + 1;
				best = sg->t_arr_ns;
			}
		} else if (sg->dir != dir_in && sg->t_ns >= k->t_ns - 1000 && (!at || sg->t_ns < best)) {
			/* The first one this side sent after the change. */
			at = i + 1;
			best = sg->t_ns;
		}
	}
	if (at == seg)
		return 1;
	return at > 0 && same_cause(&r->segs[seg - 1], &r->segs[at - 1]);
}

/* The kinds of disagreement; each has a note explaining it. */
enum diff_kind { DIFF_TIME_WAIT, DIFF_SYN_RECV, DIFF_UNSENT_FIN, DIFF_TCP_INFO, DIFF_OTHER };

struct diff_text {
	const char *key;
	enum diff_kind kind;
};

static const struct diff_text diff_timewait = {"handshake.diff.time_wait", DIFF_TIME_WAIT};
static const struct diff_text diff_synrecv = {"handshake.diff.syn_recv", DIFF_SYN_RECV};
static const struct diff_text diff_unsent_fin = {"handshake.diff.unsent_fin", DIFF_UNSENT_FIN};
static const struct diff_text diff_generic = {"handshake.diff.other", DIFF_OTHER};

static json_t *trans_json(const struct hs_run *r, const struct trans *t)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:I}", "from", tcpst_name(t->from), "to",
			      tcpst_name(t->to), "source", source_names[t->src], "t_kernel_us",
			      run_us(r, t->t_ns));

	if (t->src == SRC_INFERRED)
		json_object_set_new(j, "seg", json_integer(t->seg));
	else
		json_object_set_new(j, "after_seg", json_integer(t->seg));
	return j;
}

static const struct diff_text diff_tcp_info = {"handshake.diff.tcp_info", DIFF_TCP_INFO};

struct row {
	int64_t t_ns;
	int k, i; /* indexes into the kernel and inferred lists, -1 when absent */
};

static int row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	if (x->t_ns != y->t_ns)
		return x->t_ns < y->t_ns ? -1 : 1;
	return (x->k >= 0 ? x->k : x->i) - (y->k >= 0 ? y->k : y->i);
}

/* Why a row disagrees. */
static const struct diff_text *explain(const struct hs_run *r, int side, const struct row *rw)
{
	const struct trans *k = rw->k >= 0 ? &r->kern[side][rw->k] : NULL;
	const struct trans *f = rw->i >= 0 ? &r->infd[side][rw->i] : NULL;
	int j;

	if (k && f)
		return f->to == TCPST_SYN_RECV ? &diff_synrecv : &diff_generic;
	if (k && k->src == SRC_TRACEPOINT && k->to == TCPST_CLOSE &&
	    (k->from == TCPST_FIN_WAIT2 || k->from == TCPST_CLOSING))
		return &diff_timewait;
	if (f && f->to == TCPST_TIME_WAIT)
		for (j = 0; j < r->n_kern[side]; j++)
			if (r->kern[side][j].to == TCPST_CLOSE && r->kern[side][j].from == f->from)
				return &diff_timewait;
	if (r->sc == SC_SIMULTANEOUS && !r->replay && !r->net && side == SIDE_CLIENT)
		return &diff_unsent_fin;
	if (f && !r->trace && !r->replay)
		return &diff_tcp_info;
	return &diff_generic;
}

/* One note per kind of disagreement (the texts are in web/i18n). */
static void explain_note(struct hs_run *r, enum diff_kind kind, int side)
{
	struct ev_emitter *em = r->ctx->em;
	json_t *p = json_pack("{s:s}", "who", side_names[side]);

	switch (kind) {
	case DIFF_TIME_WAIT:
		ev_note(em, "handshake.diff.time_wait", p, NULL);
		break;
	case DIFF_SYN_RECV:
		ev_note(em, "handshake.diff.syn_recv", p, NULL);
		break;
	case DIFF_UNSENT_FIN:
		ev_note(em, "handshake.diff.unsent_fin", p, NULL);
		break;
	case DIFF_TCP_INFO:
		ev_note(em, "handshake.diff.tcp_info", p, NULL);
		break;
	default:
		ev_note(em, "handshake.diff.other", p, NULL);
		break;
	}
}

/* Compare one side's kernel and inferred sequences: changes matched in
 * order; what only the kernel reported, what only the packets imply, and
 * matches the kernel made at a different packet. Emits state.compare and
 * one note per kind of disagreement. Returns the number of disagreements. */
static int compare_side(struct hs_run *r, int side)
{
	struct trans *k = r->kern[side], *f = r->infd[side];
	int nk = r->n_kern[side], nf = r->n_infd[side];
	int kmatch[MAX_TRANS], i, j, next = 0, n = 0, diffs = 0, n_seen = 0;
	struct row rows[2 * MAX_TRANS];
	const struct diff_text *seen[2 * MAX_TRANS];
	json_t *jrows = json_array();

	for (j = 0; j < nk; j++)
		kmatch[j] = -1;
	for (i = 0; i < nf; i++) {
		int found = -1;
		for (j = next; j < nk; j++)
			if (k[j].from == f[i].from && k[j].to == f[i].to) {
				found = j;
				break;
			}
		if (found >= 0) {
			kmatch[found] = i;
			next = found + 1;
			rows[n++] = (struct row){k[found].t_ns, found, i};
		} else {
			rows[n++] = (struct row){f[i].t_ns, -1, i};
		}
	}
	for (j = 0; j < nk; j++)
		if (kmatch[j] < 0)
			rows[n++] = (struct row){k[j].t_ns, j, -1};
	qsort(rows, (size_t)n, sizeof rows[0], row_cmp);
	for (i = 0; i < n; i++) {
		json_t *row = json_object();
		const char *match;

		if (rows[i].k >= 0 && rows[i].i >= 0)
			match = same_packet(r, side, &f[rows[i].i], &k[rows[i].k]) ? "same"
										: "different_packet";
		else
			match = rows[i].k >= 0 ? "kernel_only" : "inferred_only";
		json_object_set_new(row, "match", json_string(match));
		if (rows[i].k >= 0)
			json_object_set_new(row, "kernel", trans_json(r, &k[rows[i].k]));
		if (rows[i].i >= 0)
			json_object_set_new(row, "inferred", trans_json(r, &f[rows[i].i]));
		if (strcmp(match, "same") != 0) {
			const struct diff_text *d = explain(r, side, &rows[i]);
			json_object_set_new(row, "key", json_string(d->key));
			seen[n_seen++] = d;
			diffs++;
		}
		json_array_append_new(jrows, row);
	}
	/* Explain each kind of disagreement once. */
	for (i = 0; i < n_seen; i++) {
		int dup = 0;
		for (j = 0; j < i; j++)
			if (seen[j] == seen[i])
				dup = 1;
		if (!dup)
			explain_note(r, seen[i]->kind, side);
	}
	ev_emit(r->ctx->em, "state.compare",
		json_pack("{s:s, s:b, s:i, s:o, s:s}", "who", side_names[side], "agree", diffs == 0,
			  "differences", diffs, "rows", jrows, "kernel_source",
			  r->replay ? "none" : r->trace ? "tracepoint" : "tcp_info"));
	return diffs;
}

/* ---- the scenario: both programs, one step at a time ---- */

static const struct lsock_who W_SERVER = {"server", 1};
static const struct lsock_who W_CLIENT = {"client", 1};
static const struct lsock_who W_LISTENER = {"server", 0};

/* A payload of n bytes of readable text. */
static char *payload(size_t n, const char *text)
{
	char *b = malloc(n ? n : 1);
	size_t i, tl = strlen(text);

	if (!b)
		return NULL;
	for (i = 0; i < n; i++)
		b[i] = text[i % tl];
	return b;
}

/* recv() until n bytes arrived; the byte count, or negative. */
static ssize_t recv_n(struct hs_run *r, struct lsock_who w, int fd, size_t n)
{
	char *buf = malloc(n ? n : 1);
	size_t have = 0;
	ssize_t rc = 0;

	if (!buf)
		return -ENOMEM;
	while (have < n) {
		rc = lsock_recv(r->ctx, w, fd, buf + have, n - have, STEP_TIMEOUT_MS);
		if (rc <= 0)
			break;
		have += (size_t)rc;
	}
	free(buf);
	return rc < 0 ? rc : (ssize_t)have;
}

/* recv() until it returns 0 (the peer's FIN): 0, or negative. Data still
 * arriving before the FIN is read too. */
static ssize_t recv_eof(struct hs_run *r, struct lsock_who w, int fd)
{
	char buf[16384];
	int i;

	for (i = 0; i < 1024; i++) {
		ssize_t n = lsock_recv(r->ctx, w, fd, buf, sizeof buf, STEP_TIMEOUT_MS);
		if (n <= 0)
			return n;
	}
	return -EPROTO;
}

static void closefd(struct hs_run *r, struct lsock_who w, int side)
{
	if (r->fds[side] < 0)
		return;
	lsock_close(r->ctx, w, r->fds[side]);
	r->fds[side] = -1;
	poll_tcp_info(r);
}

static int close_delay(struct hs_run *r)
{
	return r->close_delay_ms ? lab_sleep_ms(r->ctx, r->close_delay_ms) : 0;
}



/* What the scenario will show (the texts are in web/i18n). */
static void scenario_note(struct hs_run *r)
{
	struct ev_emitter *em = r->ctx->em;
	json_t *p = json_pack("{s:s}", "scenario", scenario_choices[r->sc]);

	switch (r->sc) {
	case SC_CLIENT_CLOSES:
		ev_note(em, "handshake.scenario.client_closes", p, NULL);
		break;
	case SC_SERVER_CLOSES:
		ev_note(em, "handshake.scenario.server_closes", p, NULL);
		break;
	case SC_SIMULTANEOUS:
		if (r->net)
			ev_note(em, "handshake.scenario.simultaneous_wire", p, NULL);
		else
			ev_note(em, "handshake.scenario.simultaneous", p, NULL);
		break;
	case SC_HALF_CLOSE:
		ev_note(em, "handshake.scenario.half_close", p, NULL);
		break;
	case SC_REFUSED:
		ev_note(em, "handshake.scenario.refused", p, NULL);
		break;
	case SC_ABORT:
		ev_note(em, "handshake.scenario.abort", p, NULL);
		break;
	default:
		ev_note(em, "handshake.scenario.data_close", p, NULL);
		break;
	}
}

/* Keep the client sending until some of its data cannot leave (the server's
 * window is full): its FIN will then wait behind that data. */
static int fill_window(struct hs_run *r, int cfd)
{
	char *chunk = payload(4096, "window ");
	size_t sent = 0;
	int rc = 0, unsent = 0;

	if (!chunk)
		return -ENOMEM;
	while (sent < 256 * 1024) {
		ssize_t n = lsock_send(r->ctx, W_CLIENT, cfd, chunk, 4096, STEP_TIMEOUT_MS);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		sent += (size_t)n;
		if (ioctl(cfd, SIOCOUTQNSD, &unsent) == 0 && unsent > 0 && sent >= FILL_MIN)
			break;
	}
	free(chunk);
	if (rc == 0)
		ev_emit(r->ctx->em, "metric",
			json_pack("{s:s, s:s, s:i, s:s}", "name", "unsent_bytes", "who", "client",
				  "value", unsent, "unit", "bytes"));
	return rc;
}

static int fail_step(struct hs_run *r, const char *what, int rc)
{
	char msg[256];

	if (rc == -ECANCELED)
		return rc;
	snprintf(msg, sizeof msg, "%s failed unexpectedly: %s (see the call above)", what,
		 strerror(rc < 0 ? -rc : EIO));
	ev_error(r->ctx->em, "lab_failed", NULL, msg);
	return rc < 0 ? rc : -EIO;
}

static int run_scenario(struct hs_run *r)
{
	struct lab_ctx *ctx = r->ctx;
	char *data = NULL, *reply = NULL;
	int rc = 0;
	ssize_t n;

	scenario_note(r);
	data = payload(r->data, "hello, server! ");
	reply = payload(r->reply, "hello, client! ");
	if (!data || !reply) {
		rc = -ENOMEM;
		goto out;
	}
	/* A socket belongs to the namespace (host) where it is made, whichever
	 * thread uses it later: make each on its own host. */
	if (r->sc != SC_REFUSED) {
		int lfd;

		if ((rc = net_enter(r->net, NET_SERVER)) < 0) {
			rc = fail_step(r, "entering the server's host", rc);
			goto out;
		}
		lfd = lsock_socket(ctx, W_LISTENER, AF_INET, SOCK_STREAM);
		if (lfd < 0) {
			rc = fail_step(r, "socket()", lfd);
			goto out;
		}
		r->fds[SIDE_LISTENER] = lfd;
		lsock_setsockopt_int(ctx, W_LISTENER, lfd, SOL_SOCKET, SO_REUSEADDR, 1);
		if (r->sc == SC_SIMULTANEOUS)
			lsock_setsockopt_int(ctx, W_LISTENER, lfd, SOL_SOCKET, SO_RCVBUF, SMALL_RCVBUF);
		rc = lsock_bind(ctx, W_LISTENER, lfd, (struct sockaddr *)&r->srv, sizeof r->srv);
		if (rc == 0)
			rc = lsock_listen(ctx, W_LISTENER, lfd, 1);
		if (rc < 0) {
			rc = fail_step(r, "the server's bind()/listen()", rc);
			goto out;
		}
	}
	if ((rc = net_enter(r->net, NET_CLIENT)) < 0) {
		rc = fail_step(r, "entering the client's host", rc);
		goto out;
	}
	r->fds[SIDE_CLIENT] = lsock_socket(ctx, W_CLIENT, AF_INET, SOCK_STREAM);
	if (r->fds[SIDE_CLIENT] < 0) {
		rc = fail_step(r, "socket()", r->fds[SIDE_CLIENT]);
		goto out;
	}
	/* A fixed local address and port: the tracepoint reports the client's
	 * SYN_SENT with its port only when the socket was bound before connect. */
	rc = lsock_bind(ctx, W_CLIENT, r->fds[SIDE_CLIENT], (struct sockaddr *)&r->cli,
			sizeof r->cli);
	if (rc < 0) {
		rc = fail_step(r, "the client's bind()", rc);
		goto out;
	}
	rc = lsock_connect(ctx, W_CLIENT, r->fds[SIDE_CLIENT], (struct sockaddr *)&r->srv,
			   sizeof r->srv, STEP_TIMEOUT_MS);
	poll_tcp_info(r);
	if (r->sc == SC_REFUSED) {
		if (rc != -ECONNREFUSED) {
			rc = fail_step(r, "connect() to a port nobody listens on", rc ? rc : -EISCONN);
			goto out;
		}
		rc = 0;
		closefd(r, W_CLIENT, SIDE_CLIENT);
		goto out;
	}
	if (rc < 0) {
		rc = fail_step(r, "connect()", rc);
		goto out;
	}
	r->fds[SIDE_SERVER] = lsock_accept(ctx, W_LISTENER, r->fds[SIDE_LISTENER], NULL,
					   STEP_TIMEOUT_MS);
	if (r->fds[SIDE_SERVER] < 0) {
		rc = fail_step(r, "accept()", r->fds[SIDE_SERVER]);
		goto out;
	}
	poll_tcp_info(r);
	if (r->sc == SC_DATA_CLOSE) {
		lsock_setsockopt_int(ctx, W_CLIENT, r->fds[SIDE_CLIENT], IPPROTO_TCP, TCP_CORK, 1);
		n = lsock_send_all(ctx, W_CLIENT, r->fds[SIDE_CLIENT], data, r->data, STEP_TIMEOUT_MS);
		if (n < 0) {
			rc = fail_step(r, "send()", (int)n);
			goto out;
		}
		closefd(r, W_CLIENT, SIDE_CLIENT);
		n = recv_n(r, W_SERVER, r->fds[SIDE_SERVER], r->data);
		if (n >= 0)
			n = recv_eof(r, W_SERVER, r->fds[SIDE_SERVER]);
		if (n != 0) {
			rc = fail_step(r, "the server's recv()", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		if ((rc = close_delay(r)) < 0)
			goto out;
		closefd(r, W_SERVER, SIDE_SERVER);
		goto out;
	}
	if (r->data) {
		n = lsock_send_all(ctx, W_CLIENT, r->fds[SIDE_CLIENT], data, r->data, STEP_TIMEOUT_MS);
		if (n >= 0)
			n = recv_n(r, W_SERVER, r->fds[SIDE_SERVER], r->data);
		if (n < 0) {
			rc = fail_step(r, "sending the client's data", (int)n);
			goto out;
		}
	}
	if (r->reply && r->sc != SC_HALF_CLOSE) {
		n = lsock_send_all(ctx, W_SERVER, r->fds[SIDE_SERVER], reply, r->reply,
				   STEP_TIMEOUT_MS);
		if (n >= 0)
			n = recv_n(r, W_CLIENT, r->fds[SIDE_CLIENT], r->reply);
		if (n < 0) {
			rc = fail_step(r, "sending the server's reply", (int)n);
			goto out;
		}
	}
	poll_tcp_info(r);
	switch (r->sc) {
	case SC_CLIENT_CLOSES:
	case SC_SERVER_CLOSES: {
		int first = r->sc == SC_CLIENT_CLOSES ? SIDE_CLIENT : SIDE_SERVER;
		int second = first == SIDE_CLIENT ? SIDE_SERVER : SIDE_CLIENT;
		struct lsock_who w1 = first == SIDE_CLIENT ? W_CLIENT : W_SERVER;
		struct lsock_who w2 = first == SIDE_CLIENT ? W_SERVER : W_CLIENT;

		closefd(r, w1, first);
		n = recv_eof(r, w2, r->fds[second]);
		poll_tcp_info(r);
		if (n != 0) {
			rc = fail_step(r, "waiting for the FIN", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		if ((rc = close_delay(r)) < 0)
			goto out;
		closefd(r, w2, second);
		break;
	}
	case SC_SIMULTANEOUS:
		if (r->net) {
			/* Over the wire: both close, one right after the other; the
			 * FINs cross. */
			closefd(r, W_CLIENT, SIDE_CLIENT);
			closefd(r, W_SERVER, SIDE_SERVER);
			break;
		}
		rc = fill_window(r, r->fds[SIDE_CLIENT]);
		if (rc < 0) {
			rc = fail_step(r, "filling the server's window", rc);
			goto out;
		}
		closefd(r, W_CLIENT, SIDE_CLIENT);
		lsock_shutdown(ctx, W_SERVER, r->fds[SIDE_SERVER], SHUT_WR);
		poll_tcp_info(r);
		n = recv_eof(r, W_SERVER, r->fds[SIDE_SERVER]);
		if (n != 0) {
			rc = fail_step(r, "the server's reading", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		closefd(r, W_SERVER, SIDE_SERVER);
		break;
	case SC_HALF_CLOSE:
		lsock_shutdown(ctx, W_CLIENT, r->fds[SIDE_CLIENT], SHUT_WR);
		poll_tcp_info(r);
		n = recv_eof(r, W_SERVER, r->fds[SIDE_SERVER]);
		if (n == 0 && r->reply) {
			n = lsock_send_all(ctx, W_SERVER, r->fds[SIDE_SERVER], reply, r->reply,
					   STEP_TIMEOUT_MS);
			if (n >= 0)
				n = recv_n(r, W_CLIENT, r->fds[SIDE_CLIENT], r->reply);
			if (n >= 0)
				n = 0;
		}
		if (n != 0) {
			rc = fail_step(r, "the half-closed exchange", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		closefd(r, W_SERVER, SIDE_SERVER);
		n = recv_eof(r, W_CLIENT, r->fds[SIDE_CLIENT]);
		if (n != 0) {
			rc = fail_step(r, "waiting for the server's FIN", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		closefd(r, W_CLIENT, SIDE_CLIENT);
		break;
	case SC_ABORT:
		lsock_setsockopt_linger(ctx, W_CLIENT, r->fds[SIDE_CLIENT], 1, 0);
		closefd(r, W_CLIENT, SIDE_CLIENT);
		n = lsock_recv(ctx, W_SERVER, r->fds[SIDE_SERVER], data, r->data ? r->data : 1,
			       STEP_TIMEOUT_MS);
		if (n != -ECONNRESET) {
			rc = fail_step(r, "the server's recv() after the RST", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		closefd(r, W_SERVER, SIDE_SERVER);
		break;
	default:
		break;
	}
out:
	if (r->fds[SIDE_SERVER] >= 0)
		closefd(r, W_SERVER, SIDE_SERVER);
	if (r->fds[SIDE_CLIENT] >= 0)
		closefd(r, W_CLIENT, SIDE_CLIENT);
	if (r->fds[SIDE_LISTENER] >= 0) {
		lsock_close(ctx, W_LISTENER, r->fds[SIDE_LISTENER]);
		r->fds[SIDE_LISTENER] = -1;
	}
	free(data);
	free(reply);
	return rc;
}

/* ---- set-up ---- */

/* Random 127.a.b.c addresses (distinct) and random ports for this run. */
static int pick_endpoints(struct hs_run *r)
{
	uint8_t rnd[10];
	size_t got = 0;

	while (got < sizeof rnd) {
		ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	memset(&r->cli, 0, sizeof r->cli);
	memset(&r->srv, 0, sizeof r->srv);
	r->cli.sin_family = r->srv.sin_family = AF_INET;
	if (r->net) {
		/* Two hosts: their own addresses, leased for this run alone. */
		r->srv.sin_addr.s_addr = htonl(net_addr(r->net, NET_SERVER));
		r->cli.sin_addr.s_addr = htonl(net_addr(r->net, NET_CLIENT));
	} else {
		/* 127.x.y.z with y, z in 1..254: never a network or broadcast-looking
		 * address, and x > 0 keeps clear of the busy 127.0.0.0/16. */
		r->srv.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(1 + rnd[0] % 254) << 16 |
					       (uint32_t)(1 + rnd[1] % 254) << 8 | (1 + rnd[2] % 254));
		r->cli.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(1 + rnd[3] % 254) << 16 |
					       (uint32_t)(1 + rnd[4] % 254) << 8 | (1 + rnd[5] % 254));
		if (r->cli.sin_addr.s_addr == r->srv.sin_addr.s_addr)
			r->cli.sin_addr.s_addr ^= htonl(1);
	}
	r->sport = (uint16_t)(20000 + (rnd[6] << 8 | rnd[7]) % 10000);
	r->cport = (uint16_t)(30000 + (rnd[8] << 8 | rnd[9]) % 30000);
	r->srv.sin_port = htons(r->sport);
	r->cli.sin_port = htons(r->cport);
	inet_ntop(AF_INET, &r->cli.sin_addr, r->cli_ip, sizeof r->cli_ip);
	inet_ntop(AF_INET, &r->srv.sin_addr, r->srv_ip, sizeof r->srv_ip);
	return 0;
}

static int start_observers(struct hs_run *r)
{
	struct lab_ctx *ctx = r->ctx;
	char expr[512], filter[256], err[512] = "";
	int rc;

	tcpst_trace_cleanup_stale();
	/* Exactly this connection, both directions. */
	snprintf(expr, sizeof expr,
		 "tcp and ((src host %s and src port %u and dst host %s and dst port %u) or "
		 "(src host %s and src port %u and dst host %s and dst port %u))",
		 r->cli_ip, r->cport, r->srv_ip, r->sport, r->srv_ip, r->sport, r->cli_ip, r->cport);
	/* Two hosts: each host's eth0 (a capture opens in the namespace of the
	 * thread that makes it), so each segment is seen leaving and arriving.
	 * Loopback: lo. */
	r->fsrc[0] = (struct frame_src){r, r->net ? SIDE_SERVER : -1};
	r->fsrc[1] = (struct frame_src){r, SIDE_CLIENT};
	rc = net_enter(r->net, NET_SERVER);
	if (rc == 0)
		rc = cap_open(&r->cap, r->net ? NET_IFNAME : "lo", expr, err, sizeof err);
	if (rc == 0 && r->net) {
		rc = net_enter(r->net, NET_CLIENT);
		if (rc == 0)
			rc = cap_open(&r->ccap, NET_IFNAME, expr, err, sizeof err);
	}
	if (rc < 0) {
		if (!err[0] || rc == -EBADF)
			snprintf(err, sizeof err, "entering a host's namespace: %s", strerror(-rc));
		ev_error(ctx->em, rc == -EPERM ? "no_capture_privilege" : "capture_failed", NULL, err);
		return rc;
	}
	r->link = cap_link(r->cap);
	if (ctx->pcap_path) {
		rc = cap_pcap_open(&r->pcap, ctx->pcap_path, r->link, err, sizeof err);
		if (rc < 0) {
			ev_error(ctx->em, "pcap_failed", NULL, err);
			return rc;
		}
	}
	ev_emit(ctx->em, "capture",
		json_pack("{s:s, s:[s, s*], s:s, s:s, s:b}", "interface", r->net ? NET_IFNAME : "lo",
			  "hosts", r->net ? "client" : "loopback", r->net ? "server" : NULL, "filter",
			  expr, "link", r->link == CAP_LINK_ETHERNET ? "ethernet" : "raw", "pcap",
			  ctx->pcap_path != NULL));
	snprintf(filter, sizeof filter, "(sport == %u && dport == %u) || (sport == %u && (dport == %u "
		 "|| dport == 0))", r->cport, r->sport, r->sport, r->cport);
	rc = tcpst_trace_open(&r->trace, r->ctx->em->run_id, filter, r->trace_err,
			      sizeof r->trace_err);
	if (rc < 0) {
		r->trace = NULL;
		ev_note(ctx->em, "handshake.no_tracepoint", json_pack("{s:s}", "reason", r->trace_err), NULL);
	}
	r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->stop_fd < 0)
		return -errno;
	rc = pthread_create(&r->tid, NULL, observer, r);
	if (rc != 0) {
		ev_error(ctx->em, "internal", NULL, "could not start the observer thread");
		return -rc;
	}
	r->running = 1;
	return 0;
}

/* Stop the observer and emit everything it has not emitted yet. */
static void stop_observers(struct hs_run *r)
{
	uint64_t one = 1;

	if (r->running) {
		if (write(r->stop_fd, &one, sizeof one) < 0) {
			/* eventfd writes do not fail with a counter this small */
		}
		pthread_join(r->tid, NULL);
		r->running = 0;
	}
	read_captures(r);
	if (r->trace)
		tcpst_trace_read(r->trace, on_trace, r);
	if (r->cap)
		sample_diag(r);
	emit_until(r, INT64_MAX);
}

/* The programs are done, but over a wire the last segments may still be
 * travelling: wait until both sides' machines have ended (CLOSED or
 * TIME_WAIT), at most SETTLE_MS (a lossy wire may take retransmissions). */
static void wait_settled(struct hs_run *r)
{
	int64_t end = mono_ns() + (int64_t)SETTLE_MS * 1000000;

	for (;;) {
		int done;

		pthread_mutex_lock(&r->lock);
		done = r->settled;
		pthread_mutex_unlock(&r->lock);
		if (done || mono_ns() >= end || lab_sleep_ms(r->ctx, 5) < 0)
			return;
	}
}

/* ---- replay ---- */

static int run_replay(struct hs_run *r, const char *path)
{
	struct lab_ctx *ctx = r->ctx;
	struct cap_file *f = NULL;
	struct cap_frame fr;
	char err[512];
	int64_t first = -1;
	long long frames = 0;
	int rc;

	rc = cap_file_open(&f, path, REPLAY_MAX_BYTES, err, sizeof err);
	if (rc < 0) {
		ev_error(ctx->em, "replay_failed", "replay", err);
		return rc;
	}
	if (ctx->pcap_path && cap_pcap_open(&r->pcap, ctx->pcap_path, cap_file_link(f), err,
					    sizeof err) < 0) {
		ev_error(ctx->em, "pcap_failed", NULL, err);
		cap_file_close(f);
		return -EIO;
	}
	ev_note(ctx->em, "handshake.replay", NULL, NULL);
	while ((rc = cap_file_next(f, &fr, err, sizeof err)) == 1) {
		struct pending p;
		int64_t ts = (int64_t)fr.ts_real.tv_sec * 1000000000 + fr.ts_real.tv_nsec;

		if (lab_cancelled(ctx)) {
			rc = -ECANCELED;
			break;
		}
		if (first < 0)
			first = ts;
		frames++;
		memset(&p, 0, sizeof p);
		p.kind = P_FRAME;
		/* The file's time since its first frame, on the run's clock. */
		p.t_ns = t0_ns(r) + (ts - first);
		p.u.frame.data = (uint8_t *)fr.data;
		p.u.frame.caplen = fr.caplen;
		p.u.frame.len = fr.len;
		p.u.frame.ts_real = fr.ts_real;
		p.u.frame.link = fr.link;
		p.u.frame.host = -1; /* one capture point: each frame leaves and arrives */
		emit_frame(r, &p);
	}
	cap_file_close(f);
	if (rc < 0 && rc != -ECANCELED) {
		ev_error(ctx->em, "replay_failed", "replay", err);
		return rc;
	}
	json_object_set_new(ctx->summary, "frames", json_integer(frames));
	return rc < 0 ? rc : 0;
}

/* ---- the run ---- */

static void close_note(struct hs_run *r)
{
	int first = r->fin_seg[0] && (!r->fin_seg[1] || r->fin_seg[0] < r->fin_seg[1]) ? 0 : 1;
	const char *active = first == 0 ? "client" : "server";
	const char *passive = first == 0 ? "server" : "client";

	/* A simultaneous close is neither pattern: each side ACKs a FIN. */
	if (r->closes_three < 0 || (r->sc == SC_SIMULTANEOUS && !r->replay))
		return;
	if (r->closes_three)
		ev_note(r->ctx->em, "handshake.close_three",
			json_pack("{s:s, s:s, s:i}", "active", active, "passive", passive, "fin_seg",
				  r->fin_seg[!first]), NULL);
	else
		ev_note(r->ctx->em, "handshake.close_four",
			json_pack("{s:s, s:s}", "active", active, "passive", passive), NULL);
}

static void summary(struct hs_run *r, const int diffs[2])
{
	json_t *s = r->ctx->summary;
	int i, c2s = 0, s2c = 0;

	for (i = 0; i < r->n_segs; i++) {
		if (r->segs[i].dir)
			s2c++;
		else
			c2s++;
	}
	json_object_set_new(s, "scenario", json_string(r->replay ? "replay" : scenario_choices[r->sc]));
	if (!r->replay)
		json_object_set_new(s, "network", json_string(r->net ? "two-hosts" : "loopback"));
	if (r->arrivals_unmatched)
		json_object_set_new(s, "arrivals_unmatched", json_integer(r->arrivals_unmatched));
	json_object_set_new(s, "segments", json_integer(r->n_segs));
	json_object_set_new(s, "client_to_server", json_integer(c2s));
	json_object_set_new(s, "server_to_client", json_integer(s2c));
	if (r->segs_dropped)
		json_object_set_new(s, "segments_not_shown", json_integer(r->segs_dropped));
	if (r->sc == SC_SIMULTANEOUS && !r->replay)
		json_object_set_new(s, "close", json_string("simultaneous"));
	else
		json_object_set_new(s, "close",
				    r->closes_three < 0 ? json_null()
							: json_string(r->closes_three ? "three segments"
										  : "four segments"));
	json_object_set_new(s, "client_state", json_string(tcpst_name(r->inf[SIDE_CLIENT].state)));
	json_object_set_new(s, "server_state", json_string(tcpst_name(r->inf[SIDE_SERVER].state)));
	if (!r->replay) {
		struct cap_stats st;
		json_object_set_new(s, "kernel_states", json_string(r->trace ? "tracepoint" : "tcp_info"));
		json_object_set_new(s, "disagreements",
				    json_pack("{s:i, s:i}", "client", diffs[0], "server", diffs[1]));
		if (r->cap) {
			uint64_t drops;
			cap_get_stats(r->cap, &st);
			drops = st.kernel_drops;
			if (r->ccap) {
				cap_get_stats(r->ccap, &st);
				drops += st.kernel_drops;
			}
			json_object_set_new(s, "capture_drops", json_integer((json_int_t)drops));
		}
		for (i = SIDE_CLIENT; i <= SIDE_SERVER; i++)
			if (r->tw_seen[i])
				json_object_set_new(s, i ? "server_time_wait_ms_left" : "client_time_wait_ms_left",
						    json_integer(r->tw_ms_left[i]));
		json_object_set_new(s, "client", json_pack("{s:s, s:i}", "addr", r->cli_ip, "port", r->cport));
		json_object_set_new(s, "server", json_pack("{s:s, s:i}", "addr", r->srv_ip, "port", r->sport));
	}
	if (r->ctx->pcap_path)
		json_object_set_new(s, "pcap", json_string(r->ctx->pcap_path));
}

static int hs_run(struct lab_ctx *ctx)
{
	const struct lab_params *p = ctx->p;
	struct hs_run *r = calloc(1, sizeof *r);
	const char *replay = lab_str(p, "replay");
	int diffs[2] = {0, 0};
	int rc = 0, i;

	if (!r) {
		ev_error(ctx->em, "internal", NULL, "out of memory");
		return -ENOMEM;
	}
	r->ctx = ctx;
	r->net = ctx->net;
	r->sc = (enum scenario)lab_int(p, "scenario");
	r->data = (size_t)lab_int(p, "data");
	r->reply = (size_t)lab_int(p, "reply");
	r->close_delay_ms = (int)lab_int(p, "close_delay_ms");
	r->observe_ms = (int)lab_int(p, "observe_ms");
	r->replay = replay[0] != '\0';
	r->stop_fd = -1;
	r->closes_three = -1;
	r->wscale[0] = r->wscale[1] = -1;
	for (i = 0; i < SIDE_N; i++)
		r->fds[i] = -1;
	pthread_mutex_init(&r->lock, NULL);
	tcpst_infer_init(&r->inf[SIDE_CLIENT], TCPST_CLOSE);
	tcpst_infer_init(&r->inf[SIDE_SERVER], r->sc == SC_REFUSED ? TCPST_CLOSE : TCPST_LISTEN);
	for (i = 0; i < SIDE_N; i++)
		r->kstate[i] = r->diag_state[i] = TCPST_CLOSE;
	r->info_state[0] = r->info_state[1] = TCPST_CLOSE;

	if (r->replay) {
		rc = run_replay(r, replay);
		goto done;
	}
	rc = pick_endpoints(r);
	if (rc < 0) {
		ev_error(ctx->em, "internal", NULL, "no random numbers for the run's addresses");
		goto done;
	}
	{
		json_t *ap = json_pack("{s:s, s:i, s:s, s:i}", "client", r->cli_ip, "client_port",
				       r->cport, "server", r->srv_ip, "server_port", r->sport);
		if (r->net)
			ev_note(ctx->em, "handshake.addresses.hosts", ap, NULL);
		else
			ev_note(ctx->em, "handshake.addresses", ap, NULL);
	}
	rc = start_observers(r);
	if (rc < 0)
		goto done;
	rc = run_scenario(r);
	if (rc == 0)
		wait_settled(r);
	if (rc == 0 && r->observe_ms > 0 && r->sc != SC_REFUSED && r->sc != SC_ABORT)
		lab_sleep_ms(ctx, r->observe_ms);
	stop_observers(r);
	if (rc == 0 && !lab_cancelled(ctx)) {
		close_note(r);
		diffs[0] = compare_side(r, SIDE_CLIENT);
		if (r->sc != SC_REFUSED)
			diffs[1] = compare_side(r, SIDE_SERVER);
		for (i = SIDE_CLIENT; i <= SIDE_SERVER; i++)
			if (r->tw_seen[i])
				ev_note(ctx->em, "handshake.time_wait_left",
					json_pack("{s:s, s:i}", "who", side_names[i], "ms_left",
						  (int)r->tw_ms_left[i]), NULL);
	}
done:
	stop_observers(r);
	if (!r->replay || rc == 0)
		summary(r, diffs);
	tcpst_trace_close(r->trace);
	cap_close(r->cap);
	cap_close(r->ccap);
	cap_pcap_close(r->pcap);
	if (r->stop_fd >= 0)
		close(r->stop_fd);
	for (i = 0; i < (int)r->n_pend; i++)
		if (r->pend[i].kind == P_FRAME)
			free(r->pend[i].u.frame.data);
	free(r->pend);
	pthread_mutex_destroy(&r->lock);
	free(r);
	if (rc == -ECANCELED)
		return 0; /* the front end reports the cancellation */
	return rc;
}

/* A replay reads a file: it needs no network at all (no namespaces, no
 * privileges). */
static enum lab_net hs_network(const struct lab_params *p)
{
	return lab_str(p, "replay")[0] ? LAB_NET_NONE : LAB_NET_PRIVATE;
}

static int hs_check(const struct lab_params *p, const char **param, char *err, size_t errlen)
{
	const char *replay = lab_str(p, "replay");
	int sc = (int)lab_int(p, "scenario");

	if (replay[0]) {
		static const char *const live_only[] = {"scenario", "data", "reply", "close_delay_ms",
							"observe_ms", "network", "c2s_delay_ms",
							"s2c_delay_ms", NULL};
		int i;
		if (access(replay, R_OK) < 0) {
			/* The file by its name alone: on a server it is the run's
			 * upload, under a data directory students need not see. */
			const char *name = strrchr(replay, '/');
			*param = "replay";
			snprintf(err, errlen, "parameter 'replay': cannot read %.200s: %s",
				 name && name[1] ? name + 1 : replay, strerror(errno));
			return -EINVAL;
		}
		for (i = 0; live_only[i]; i++)
			if (lab_is_set(p, live_only[i])) {
				*param = live_only[i];
				snprintf(err, errlen,
					 "parameter '%s': a replay decodes a recorded capture; "
					 "'%s' applies only to a live connection",
					 live_only[i], live_only[i]);
				return -EINVAL;
			}
		return 0;
	}
	if (lab_int(p, "network") == 0) {
		/* On loopback the two-hosts default delay is no impairment: only
		 * a delay asked for explicitly is refused (no wire to delay). */
		struct lab_params *q = malloc(sizeof *q);
		int rc;

		if (!q)
			return -ENOMEM;
		*q = *p;
		if (!lab_is_set(p, "c2s_delay_ms"))
			q->v[lab_param_index(p->lab, "c2s_delay_ms")].i = 0;
		if (!lab_is_set(p, "s2c_delay_ms"))
			q->v[lab_param_index(p->lab, "s2c_delay_ms")].i = 0;
		rc = net_params_check(q, param, err, errlen);
		free(q);
		if (rc < 0)
			return rc;
	} else if (net_params_check(p, param, err, errlen) < 0) {
		return -EINVAL;
	}
	if (sc == SC_DATA_CLOSE && lab_int(p, "data") < 1) {
		*param = "data";
		snprintf(err, errlen, "parameter 'data': the data-close scenario needs at least 1 byte "
				      "of data to carry the FIN");
		return -EINVAL;
	}
	if (sc == SC_HALF_CLOSE && lab_int(p, "reply") < 1) {
		*param = "reply";
		snprintf(err, errlen, "parameter 'reply': the half-close scenario needs the server to "
				      "send at least 1 byte after the client's FIN");
		return -EINVAL;
	}
	return 0;
}


/* ---- the CLI's readable lines (lab_desc.format) ---- */

static const char *js(const json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

static long long ji(const json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

/* Append printf-style text to buf at *off, never past len. */
static void put(char *buf, size_t len, size_t *off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void put(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (*off >= len)
		return;
	va_start(ap, fmt);
	w = vsnprintf(buf + *off, len - *off, fmt, ap);
	va_end(ap);
	if (w > 0)
		*off = *off + (size_t)w < len ? *off + (size_t)w : len - 1;
}

/* tcpdump's option list: "mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7". */
static void fmt_options(const json_t *opts, char *buf, size_t len)
{
	size_t i, off = 0;
	const json_t *o;

	buf[0] = '\0';
	json_array_foreach(opts, i, o) {
		const char *name = js(o, "name");
		const json_t *v = json_object_get(o, "value");

		put(buf, len, &off, "%s", i ? "," : "");
		if (!strcmp(name, "mss") || !strcmp(name, "wscale"))
			put(buf, len, &off, "%s %lld", name, (long long)json_integer_value(v));
		else if (!strcmp(name, "sack_perm"))
			put(buf, len, &off, "sackOK");
		else if (!strcmp(name, "timestamp"))
			put(buf, len, &off, "TS val %lld ecr %lld", ji(v, "val"), ji(v, "ecr"));
		else if (!strcmp(name, "sack"))
			put(buf, len, &off, "sack %zu", json_array_size(v));
		else if (!strcmp(name, "nop") || !strcmp(name, "eol"))
			put(buf, len, &off, "%s", name);
		else
			put(buf, len, &off, "%s (kind %lld)", name, ji(o, "kind"));
	}
}

static int hs_format(const struct lab_params *p, const json_t *ev, char *buf, size_t len)
{
	const char *type = js(ev, "type");
	double ms = (double)ji(ev, "t_kernel_us") / 1000.0;
	size_t off = 0;

	(void)p;
	if (!strcmp(type, "segment")) {
		const json_t *ra = json_object_get(ev, "rel_ack");
		char opts[400];

		fmt_options(json_object_get(ev, "options"), opts, sizeof opts);
		put(buf, len, &off, "%10.3f  %-10s #%lld %s > %s  Flags [%s], seq %lld", ms, "packet",
		    ji(ev, "n"), js(ev, "from"), js(ev, "to"), js(ev, "flags_short"), ji(ev, "rel_seq"));
		if (json_is_integer(ra))
			put(buf, len, &off, ", ack %lld", (long long)json_integer_value(ra));
		put(buf, len, &off, ", win %lld", ji(ev, "win"));
		if (opts[0])
			put(buf, len, &off, ", options [%s]", opts);
		put(buf, len, &off, ", length %lld", ji(ev, "len"));
		if (strcmp(js(ev, "status"), "ok") != 0)
			put(buf, len, &off, "  [%s: %s]", js(ev, "status"), js(ev, "why"));
		if (dec_checksums_text(json_object_get(ev, "checksums"), opts, sizeof opts)[0])
			put(buf, len, &off, "  [%s]", opts);
		put(buf, len, &off, "\n");
	} else if (!strcmp(type, "state") && !strcmp(js(ev, "source"), "inferred")) {
		put(buf, len, &off, "%10.3f  %-10s   rfc 9293: %s -> %s  (segment #%lld: %s)\n", ms,
		    js(ev, "who"), js(ev, "from"), js(ev, "to"), ji(ev, "seg"), js(ev, "why"));
	} else if (!strcmp(type, "state")) {
		put(buf, len, &off, "%10.3f  %-10s state %s -> %s  (kernel: %s", ms, js(ev, "who"),
		    js(ev, "from"), js(ev, "to"), js(ev, "source"));
		if (json_object_get(ev, "timer_ms"))
			put(buf, len, &off, ", timer %s %.1f s", js(ev, "timer"),
			    (double)ji(ev, "timer_ms") / 1000.0);
		put(buf, len, &off, ")\n");
	} else if (!strcmp(type, "timer")) {
		put(buf, len, &off, "%10.3f  %-10s %s: %.1f s left on the kernel's timer (%s)\n",
		    (double)ji(ev, "t_us") / 1000.0, js(ev, "who"), js(ev, "state"),
		    (double)ji(ev, "ms_left") / 1000.0, js(ev, "source"));
	} else if (!strcmp(type, "capture")) {
		put(buf, len, &off, "%10.3f  capturing on %s%s: %s\n", (double)ji(ev, "t_us") / 1000.0,
		    js(ev, "interface"),
		    json_array_size(json_object_get(ev, "hosts")) > 1 ? " of both hosts" : "",
		    js(ev, "filter"));
	} else if (!strcmp(type, "arrival")) {
		put(buf, len, &off, "%10.3f  %-10s #%lld reached the %s after %.3f ms on the wire%s\n", ms,
		    "packet", ji(ev, "n"), js(ev, "who"), (double)ji(ev, "wire_us") / 1000.0,
		    json_is_true(json_object_get(ev, "duplicate")) ? " (a duplicate)" : "");
	} else if (!strcmp(type, "wire") && !strcmp(js(ev, "action"), "delay")) {
		return 0; /* every frame is delayed: the arrival lines say by how much */
	} else if (!strcmp(type, "state.compare")) {
		size_t i;
		const json_t *row;

		put(buf, len, &off, "            %s: kernel (%s) vs RFC 9293 from the packets: %s\n",
		    js(ev, "who"), js(ev, "kernel_source"),
		    json_is_true(json_object_get(ev, "agree")) ? "they agree" : "they differ");
		json_array_foreach(json_object_get(ev, "rows"), i, row) {
			const json_t *k = json_object_get(row, "kernel");
			const json_t *f = json_object_get(row, "inferred");
			char kt[64] = "-", ft[64] = "-";

			if (k)
				snprintf(kt, sizeof kt, "%s -> %s", js(k, "from"), js(k, "to"));
			if (f)
				snprintf(ft, sizeof ft, "%s -> %s", js(f, "from"), js(f, "to"));
			put(buf, len, &off, "              %-28s %-28s %s\n", kt, ft, js(row, "match"));
		}
	} else {
		return -1;
	}
	return (int)off;
}

const struct lab_desc lab_handshake = {
	.name = "handshake",
	.title = "TCP handshake and close",
	.summary = "Open and close a real TCP connection: every segment captured and decoded, the "
		   "kernel's TCP states next to what RFC 9293 predicts.",
	.params = hs_params,
	.n_params = sizeof hs_params / sizeof hs_params[0],
	.check = hs_check,
	.network = hs_network,
	.captures = 1,
	.run = hs_run,
	.format = hs_format,
};
