/* observer.c: one observer per lab run: captures, kernel TCP states and lab records merged in time order; states only as observed. */
#include "observer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "lab.h"
#include "net/net.h"
#include "tcpstate/tcpstate.h"

#define OBS_POLL_MS 5
#define OBS_TIMER_EVERY_MS 1000
/* Emit what is older than this: every source was read by then (a capture
 * hands frames over a ring block at a time, up to CAP_DELAY_MS late). */
#define OBS_HORIZON_NS ((int64_t)CAP_DELAY_MS * 1000000)
#define OBS_MAX_PENDING 65536
/* A lab's own records (obs_record: a program's calls, output and exit) are
 * its evidence and are never refused for want of room while the observer
 * runs: the lab thread that queues one waits for room instead (the program
 * behind it then waits for the lab), at most OBS_RECORD_WAIT_NS at a time;
 * after such a wait it may use OBS_RECORD_SPARE items beyond the bound
 * (a lab holding delivery back itself, obs_hold, must not wait forever).
 * Only past that is a record refused, and counted apart from frames
 * (obs_records_lost). */
#define OBS_RECORD_WAIT_NS (2000 * 1000000LL)
#define OBS_RECORD_SPARE 65536
/* How far behind real time a lab that has not caught up (obs_caught_up) may
 * hold delivery back. */
#define OBS_LAB_LAG_MAX_NS (500 * 1000000LL)
#define OBS_HEX_MAX 4096

static const char *const src_names[] = {
	[OBS_SRC_TRACEPOINT] = "tracepoint",
	[OBS_SRC_SOCK_DIAG] = "sock_diag",
	[OBS_SRC_TCP_INFO] = "tcp_info",
	[OBS_SRC_RFC_MODEL] = "rfc-model",
};

const char *obs_src_name(int src)
{
	return src >= 0 && src < (int)(sizeof src_names / sizeof src_names[0]) ? src_names[src] : "?";
}

/* Something observed, waiting to be delivered in timestamp order. */
struct pending {
	enum obs_kind kind;
	int64_t t_ns;
	uint64_t order; /* arrival order, for ties */
	int sock;
	union {
		struct {
			uint8_t *data;
			uint32_t caplen, len;
			struct timespec ts_real;
			int link, host, outgoing;
			unsigned csum_flags; /* CAP_CSUM_* */
		} frame;
		struct {
			int from, to;
			/* watch_later: the event as read, matched when delivered */
			struct tcpst_trace_ev raw;
		} trans;
		struct {
			int state, src, timer;
			uint32_t ms;
			int64_t listed_from_ns; /* sock_diag: when the dump that listed it began */
		} seen;
		struct {
			int64_t last_listed_ns;
			int64_t listed_from_ns; /* when the dump that last listed it began */
		} gone;
		void *rec;
		struct pcall *call;
	} u;
};

/* A socket call's record taken from the emitter (OBS_CALL). */
struct pcall {
	const char *type;
	ev_rec_format_fn fmt;
	int64_t cost_ns;
	_Alignas(16) unsigned char rec[EV_REC_MAX];
};

/* What the observer knows of one watched socket. The first block is
 * touched by whoever samples (the observer thread, then obs_stop's caller
 * once the thread is joined); the second by whoever delivers (the same). */
struct sockw {
	struct obs_sock s;
	struct obs_watch_opts opt; /* obs_watch's; zeros for cfg.socks */
	/* sampling */
	int listed;             /* in the last sock_diag sample */
	int ever_listed;
	int64_t last_listed_ns;
	int64_t listed_from_ns; /* when the dump that last listed it began */
	int64_t sample_from_ns; /* when the dump that lists it now began */
	int64_t last_tick_ns;   /* last timer event queued */
	int sample_state, sample_timer;
	uint32_t sample_ms;
	int in_sample;          /* seen in the sample being taken */
	/* delivery */
	int known, known_src;   /* the last state any kernel source gave; src -1: none */
	int64_t known_ns;
	struct {
		int64_t t_ns;
		int from;
	} recent[8]; /* the last transitions the tracepoint reported (a ring) */
	unsigned n_recent;
	int d_listed;           /* -1 never, 1 listed, 0 gone */
	const char *gone_reason;
	int d_timer;
	uint32_t d_timer_ms;
	int64_t d_last_listed_ns;
	int64_t d_listed_from_ns; /* the listing dump's start: the socket existed at some
				   * instant between this and d_last_listed_ns */
	struct obs_rst rst;     /* the last RST that reached it (t_ns 0: none) */
	int64_t syn_ns;         /* the last SYN for its addresses and ports */
};

struct obs_cap {
	struct obs *o;
	struct cap *cap;
	int host; /* NET_CLIENT, NET_SERVER, or -1 for one capture point */
};

struct obs {
	struct obs_config cfg;
	struct lab_ctx *ctx;
	struct net *net;
	struct obs_cap caps[2];
	int n_caps;
	int link;
	struct cap_pcap *pcap;
	struct tcpst_trace *trace;
	char trace_err[256];
	struct tcpst_trace_loss trace_loss; /* filled by obs_stop */
	int trace_lossed;                   /* trace_loss is filled */

	/* w[0, n_w) are watched. obs_watch fills w[n_w] and then publishes it
	 * by raising n_w (release; readers load it with acquire): an entry is
	 * never written by the watcher once published. lock serialises watchers. */
	struct sockw w[OBS_MAX_WATCH];
	int n_w;

	pthread_t tid;
	int64_t lab_ns; /* watch_later: obs_caught_up's instant (atomic) */
	int64_t holds[OBS_MAX_HOLDS]; /* obs_hold's instants, 0: free; guarded by lock */
	int running, stopped;
	int offline; /* obs_open_offline: fed by the caller */
	int stop_fd;
	int kick_fd;   /* the emitter writes it when the calls it holds pile up */
	int deferring; /* the emitter holds the lab's call records for this observer */
	int64_t last_diag_ns;
	int diag_due; /* sample now: a socket may have just become a timewait socket */
	int64_t dump_from_ns; /* when the sock_diag dump running now began */

	pthread_mutex_t lock; /* guards pend, n_pend, cap_pend, order, dropped,
			       * trans_refused, holds, records_lost, closing */
	pthread_cond_t room;  /* signalled when delivery takes items from pend */
	struct pending *pend;
	size_t n_pend, cap_pend;
	uint64_t order;
	uint64_t dropped;      /* frames or samples refused: the queue was full */
	uint64_t trans_refused; /* tracepoint transitions refused: the queue was full */
	uint64_t records_lost; /* lab records refused even after waiting (see above) */
	int closing;           /* the thread is being stopped: nobody waits for room */
};

int64_t obs_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

json_int_t obs_run_us(struct lab_ctx *ctx, int64_t t_ns)
{
	int64_t t0 = (int64_t)ctx->em->t0.tv_sec * 1000000000 + ctx->em->t0.tv_nsec;

	return (json_int_t)((t_ns - t0) / 1000);
}

/* ---- the queue (any thread) ---- */

static void pend_free(struct obs *o, struct pending *p)
{
	if (p->kind == OBS_FRAME)
		free(p->u.frame.data);
	else if (p->kind == OBS_CALL)
		free(p->u.call);
	else if (p->kind == OBS_RECORD && o->cfg.free_rec)
		o->cfg.free_rec(p->u.rec);
}

/* Wait, with o->lock held, until the queue has room for a record or
 * OBS_RECORD_WAIT_NS has passed; 1 when it has room. Never on the
 * observer's own thread (it is what makes room), nor once it is stopping. */
static int wait_for_room(struct obs *o)
{
	struct timespec until;

	if (!o->running || o->closing || pthread_equal(pthread_self(), o->tid))
		return o->n_pend < OBS_MAX_PENDING;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += OBS_RECORD_WAIT_NS / 1000000000;
	while (o->n_pend >= OBS_MAX_PENDING && !o->closing)
		if (pthread_cond_timedwait(&o->room, &o->lock, &until) == ETIMEDOUT)
			break;
	return o->n_pend < OBS_MAX_PENDING;
}

static int pend_push(struct obs *o, struct pending *p)
{
	int rc = 0;
	size_t bound = OBS_MAX_PENDING;

	pthread_mutex_lock(&o->lock);
	if (p->kind == OBS_RECORD && o->n_pend >= OBS_MAX_PENDING && !wait_for_room(o))
		bound += OBS_RECORD_SPARE;
	if (o->n_pend == o->cap_pend) {
		size_t cap = o->cap_pend ? o->cap_pend * 2 : 256;
		struct pending *n = cap > bound ? NULL : realloc(o->pend, cap * sizeof *n);
		if (!n) {
			if (p->kind == OBS_RECORD)
				o->records_lost++;
			else if (p->kind == OBS_TRANSITION) /* the tracepoint's lane */
				o->trans_refused++;
			else if (p->kind != OBS_CALL) /* a call is emitted at once instead */
				o->dropped++;
			rc = -ENOMEM;
			goto out;
		}
		o->pend = n;
		o->cap_pend = cap;
	}
	p->order = o->order++;
	o->pend[o->n_pend++] = *p;
out:
	pthread_mutex_unlock(&o->lock);
	if (rc < 0)
		pend_free(o, p);
	return rc;
}

static int pend_cmp(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;

	if (x->t_ns != y->t_ns)
		return x->t_ns < y->t_ns ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* ---- segments ---- */

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

json_t *obs_segment_json(struct lab_ctx *ctx, const struct cap_frame *f,
			 const struct dec_packet *d, int64_t t_ns)
{
	const struct dec_tcp *t = &d->tcp;
	int fam = dec_has(d, DEC_L_IPV6) ? AF_INET6 : AF_INET;
	const uint8_t *sa = fam == AF_INET6 ? d->ip6.src : d->ip4.src;
	const uint8_t *da = fam == AF_INET6 ? d->ip6.dst : d->ip4.dst;
	char fl[16];
	json_t *j, *dj;

	j = json_pack("{s:I, s:o, s:o}", "t_kernel_us", obs_run_us(ctx, t_ns), "src",
		      addr_json(fam, sa, t->sport), "dst", addr_json(fam, da, t->dport));
	json_object_set_new(j, "flags", flags_json(t->flags));
	json_object_set_new(j, "flags_raw", json_integer(t->flags));
	json_object_set_new(j, "flags_short",
			    json_string(dec_tcp_flags_short(t->flags, fl, sizeof fl)));
	/* "seq" is the envelope's event number: the TCP numbers are seq_raw and
	 * ack_raw, as tshark names them. */
	json_object_set_new(j, "seq_raw", json_integer(t->seq));
	json_object_set_new(j, "ack_raw", json_integer(t->ack));
	json_object_set_new(j, "len", json_integer(t->payload_len));
	json_object_set_new(j, "win", json_integer(t->window));
	json_object_set_new(j, "options", dec_tcp_options_json(t));
	json_object_set_new(j, "checksums", dec_checksums_json(&d->ip4.csum, &t->csum, DEC_L_TCP));
	json_object_set_new(j, "status", json_string(dec_status_name(d->status)));
	if (d->why)
		json_object_set_new(j, "why", json_string(d->why));
	json_object_set_new(j, "caplen", json_integer(f->caplen));
	json_object_set_new(j, "wirelen", json_integer(f->len));
	json_object_set_new(j, "bytes",
			    hex_json(f->data, f->caplen < OBS_HEX_MAX ? f->caplen : OBS_HEX_MAX));
	if (f->caplen > OBS_HEX_MAX)
		json_object_set_new(j, "bytes_truncated", json_true());
	dj = dec_packet_json(d);
	json_object_set(j, "layers", json_object_get(dj, "layers"));
	json_decref(dj);
	return j;
}

/* ---- matching items to watched sockets ---- */

/* How many sockets are watched (see struct obs). */
static int n_watched(const struct obs *o)
{
	return __atomic_load_n(&o->n_w, __ATOMIC_ACQUIRE);
}

/* Whether tracepoint event ev can be watched socket s's (struct obs_sock
 * says when). */
static int trace_match(const struct sockw *w, const struct tcpst_trace_ev *ev)
{
	const struct obs_sock *s = &w->s;
	const struct obs_watch_opts *op = &w->opt;
	int64_t t = ev->t_mono_ns;
	int in_window = t >= op->from_ns && (!op->until_ns || t <= op->until_ns);
	int laddr_ok = s->laddr.s_addr == 0 || !memcmp(ev->saddr, &s->laddr, 4);

	if ((op->flags & OBS_SOCK_NO_TRACE) || (op->from_ns && t < op->from_ns))
		return 0;
	if (s->rport == 0)
		return ev->dport == 0 && ev->sport == s->lport && !memcmp(ev->saddr, &s->laddr, 4);
	if (ev->dport != s->rport || memcmp(ev->daddr, &s->raddr, 4) != 0)
		return 0;
	if (s->lport == 0)
		return in_window && laddr_ok;
	if (ev->sport == 0 && ev->newstate == TCPST_SYN_SENT)
		return (op->from_ns ? in_window : 1) && laddr_ok;
	return ev->sport == s->lport && !memcmp(ev->saddr, &s->laddr, 4);
}

/* The watched socket a tracepoint event is about: of those it can be, the
 * one watched from the latest instant (a later socket with the same
 * addresses, or the later of two connects to one peer). */
static int trace_sock(const struct obs *o, const struct tcpst_trace_ev *ev)
{
	int i, n = n_watched(o), best = -1;

	if (ev->family != AF_INET)
		return -1;
	for (i = 0; i < n; i++)
		if (trace_match(&o->w[i], ev) &&
		    (best < 0 || o->w[i].opt.from_ns >= o->w[best].opt.from_ns))
			best = i;
	return best;
}

static int diag_sock(const struct obs *o, const struct tcpst_diag_sock *d)
{
	int i, n = n_watched(o);

	if (d->family != AF_INET)
		return -1;
	for (i = 0; i < n; i++) {
		const struct obs_sock *s = &o->w[i].s;
		if (d->sport != s->lport || memcmp(d->src, &s->laddr, 4) != 0)
			continue;
		if (s->rport == 0 ? d->dport == 0 && d->state == TCPST_LISTEN
				  : d->dport == s->rport && !memcmp(d->dst, &s->raddr, 4))
			return i;
	}
	return -1;
}

/* ---- emitting the kernel-state events ---- */

static json_t *ask_lab(struct obs *o, const struct obs_event *ev)
{
	return o->cfg.fn ? o->cfg.fn(o->cfg.arg, ev) : NULL;
}

static void emit_with(struct obs *o, const char *type, json_t *f, json_t *extra)
{
	if (extra) {
		json_object_update(f, extra);
		json_decref(extra);
	}
	ev_emit(o->ctx->em, type, f);
}

/* A frame: note RSTs reaching a watched socket and SYNs reusing its
 * addresses (the evidence for why a socket is gone), then hand it over. */
static void deliver_frame(struct obs *o, const struct pending *p)
{
	struct dec_packet *d = malloc(sizeof *d);
	struct cap_frame cf = {.ts_real = p->u.frame.ts_real,
			       .t_mono_ns = p->t_ns,
			       .data = p->u.frame.data,
			       .caplen = p->u.frame.caplen,
			       .len = p->u.frame.len,
			       .outgoing = p->u.frame.outgoing,
			       .link = p->u.frame.link,
			       .csum_flags = p->u.frame.csum_flags};
	struct obs_event ev;
	int i, n = n_watched(o);

	if (!d)
		return;
	dec_packet_rx(cf.data, cf.caplen, cf.len, cf.link, cf.csum_flags, d);
	/* A frame with a bad checksum never reaches its receiver's TCP (the
	 * kernel discards it): it is no evidence of what happened to a socket. */
	if (dec_has(d, DEC_L_TCP) && dec_has(d, DEC_L_IPV4) && d->layer[DEC_L_TCP].span.len >= 20 &&
	    d->ip4.csum.status != DEC_CSUM_BAD && d->tcp.csum.status != DEC_CSUM_BAD) {
		const struct dec_tcp *t = &d->tcp;
		for (i = 0; i < n; i++) {
			struct sockw *w = &o->w[i];
			int to_it = t->dport == w->s.lport && t->sport == w->s.rport &&
				    !memcmp(d->ip4.dst, &w->s.laddr, 4) &&
				    !memcmp(d->ip4.src, &w->s.raddr, 4);
			int from_it = t->sport == w->s.lport && t->dport == w->s.rport &&
				      !memcmp(d->ip4.src, &w->s.laddr, 4) &&
				      !memcmp(d->ip4.dst, &w->s.raddr, 4);
			/* Reaching it: on its own host's capture, arriving (or at
			 * the one capture point). */
			int here = p->u.frame.host < 0 ||
				   (p->u.frame.host == w->s.host && !p->u.frame.outgoing);

			if (w->s.rport == 0)
				continue;
			/* The first RST since sock_diag last listed it. */
			if (to_it && here && (t->flags & DEC_TCP_RST) &&
			    (!w->rst.t_ns || w->rst.t_ns < w->d_listed_from_ns))
				w->rst = (struct obs_rst){p->t_ns, t->seq, t->ack, t->flags};
			/* A FIN or RST that reached a socket sock_diag lists can
			 * change or end it (a timewait socket's only trace): the
			 * kernel has handled it by now, so look at once. */
			if (to_it && here && w->listed && (t->flags & (DEC_TCP_FIN | DEC_TCP_RST)))
				o->diag_due = 1;
			if ((to_it || from_it) && (t->flags & DEC_TCP_SYN) && !(t->flags & DEC_TCP_ACK))
				w->syn_ns = p->t_ns;
		}
	}
	memset(&ev, 0, sizeof ev);
	ev.kind = OBS_FRAME;
	ev.t_ns = p->t_ns;
	ev.frame = &cf;
	ev.pkt = d;
	ev.host = p->u.frame.host;
	ev.sock = -1;
	ask_lab(o, &ev);
	free(d);
}

static void deliver_transition(struct obs *o, const struct pending *p)
{
	int sock = p->sock >= 0 ? p->sock : trace_sock(o, &p->u.trans.raw);
	struct obs_event ev = {.kind = OBS_TRANSITION, .t_ns = p->t_ns, .sock = sock,
			       .from = p->u.trans.from, .to = p->u.trans.to,
			       .src = OBS_SRC_TRACEPOINT, .host = -1};
	struct sockw *w;
	json_t *f;

	/* watch_later: matched now, or about no socket the lab watches. */
	if (sock < 0)
		return;
	w = &o->w[sock];

	w->recent[w->n_recent % 8].t_ns = p->t_ns;
	w->recent[w->n_recent % 8].from = p->u.trans.from;
	w->n_recent++;
	w->known = p->u.trans.to;
	w->known_src = OBS_SRC_TRACEPOINT;
	w->known_ns = p->t_ns;
	f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "who", w->s.who, "from",
		      tcpst_name(p->u.trans.from), "to", tcpst_name(p->u.trans.to), "source",
		      "tracepoint", "kind", "transition", "t_kernel_us", obs_run_us(o->ctx, p->t_ns));
	emit_with(o, "state", f, ask_lab(o, &ev));
}

/* A sample saw the socket at some instant between the start of its dump
 * and its stamp (the dump's return). When the tracepoint reported a change
 * out of the sampled state inside that window, the sample is older than
 * that change: it says nothing new, and shown at its stamp it would put the
 * socket back in a state it had left. */
static int stale(const struct sockw *w, const struct pending *p)
{
	unsigned i, n = w->n_recent < 8 ? w->n_recent : 8;

	for (i = 0; i < n; i++) {
		unsigned k = (w->n_recent - 1 - i) % 8;
		if (w->recent[k].t_ns >= p->u.seen.listed_from_ns && w->recent[k].t_ns <= p->t_ns &&
		    w->recent[k].from == p->u.seen.state)
			return 1;
	}
	return 0;
}

static void deliver_seen(struct obs *o, const struct pending *p)
{
	struct sockw *w = &o->w[p->sock];
	struct obs_event ev = {.kind = OBS_SEEN, .t_ns = p->t_ns, .sock = p->sock,
			       .from = w->known_src >= 0 ? w->known : TCPST_UNKNOWN,
			       .to = p->u.seen.state, .src = p->u.seen.src,
			       .timer = p->u.seen.timer, .timer_ms = p->u.seen.ms, .host = -1,
			       .from_ns = p->u.seen.listed_from_ns};
	json_t *f;

	if (p->u.seen.src == OBS_SRC_SOCK_DIAG) {
		w->d_listed = 1;
		w->d_last_listed_ns = p->t_ns;
		w->d_listed_from_ns = p->u.seen.listed_from_ns;
		w->d_timer = p->u.seen.timer;
		w->d_timer_ms = p->u.seen.ms;
	}
	/* Only what is new: the last state any kernel source gave stands
	 * until a source says otherwise. */
	if (w->known_src >= 0 && w->known == p->u.seen.state)
		return;
	if (stale(w, p))
		return;
	w->known = p->u.seen.state;
	w->known_src = p->u.seen.src;
	w->known_ns = p->t_ns;
	f = json_pack("{s:s, s:s, s:s, s:s, s:I}", "who", w->s.who, "state",
		      tcpst_name(p->u.seen.state), "source", obs_src_name(p->u.seen.src), "kind",
		      "sample", "t_kernel_us", obs_run_us(o->ctx, p->t_ns));
	if (p->u.seen.src == OBS_SRC_SOCK_DIAG) {
		json_object_set_new(f, "listed", json_true());
		/* The dump walked the tables somewhere in [t_from_us, t_kernel_us]. */
		json_object_set_new(f, "t_from_us", json_integer(obs_run_us(o->ctx, p->u.seen.listed_from_ns)));
	}
	if (p->u.seen.timer) {
		json_object_set_new(f, "timer", json_string(tcpst_timer_name(p->u.seen.timer)));
		json_object_set_new(f, "timer_ms", json_integer(p->u.seen.ms));
	}
	emit_with(o, "observation", f, ask_lab(o, &ev));
}

static void deliver_timer(struct obs *o, const struct pending *p)
{
	struct sockw *w = &o->w[p->sock];
	struct obs_event ev = {.kind = OBS_TIMER, .t_ns = p->t_ns, .sock = p->sock,
			       .to = p->u.seen.state, .src = OBS_SRC_SOCK_DIAG,
			       .timer = p->u.seen.timer, .timer_ms = p->u.seen.ms, .host = -1};
	json_t *f;

	if (w->d_listed != 1)
		return;
	f = json_pack("{s:s, s:s, s:s, s:I, s:s, s:I}", "who", w->s.who, "state",
		      tcpst_name(p->u.seen.state), "timer", tcpst_timer_name(p->u.seen.timer),
		      "ms_left", (json_int_t)p->u.seen.ms, "source", "sock_diag", "t_kernel_us",
		      obs_run_us(o->ctx, p->t_ns));
	emit_with(o, "timer", f, ask_lab(o, &ev));
}

/* Why a socket sock_diag listed is gone, from this run's evidence. A dump
 * walks the kernel's tables at some instant between its start (from_ns) and
 * its return (last_ns): an RST that reached the socket after the start of
 * the last dump that listed it can be what ended it. */
static const char *gone_reason(const struct sockw *w, int64_t t_ns, int64_t last_ns,
			       int64_t from_ns)
{
	if (w->rst.t_ns && w->rst.t_ns >= from_ns)
		return "rst";
	if (w->syn_ns && w->syn_ns >= last_ns)
		return "reused";
	if (w->d_timer && (int64_t)w->d_timer_ms * 1000000 <= t_ns - last_ns)
		return "timer_expired";
	return "not_listed";
}

static void deliver_gone(struct obs *o, const struct pending *p)
{
	struct sockw *w = &o->w[p->sock];
	int64_t last = p->u.gone.last_listed_ns;
	const char *reason;
	struct obs_event ev;
	json_t *f, *extra;

	w->d_listed = 0;
	/* The tracepoint already reported its end: nothing new. */
	if (w->known_src == OBS_SRC_TRACEPOINT && w->known == TCPST_CLOSE)
		return;
	reason = gone_reason(w, p->t_ns, last, p->u.gone.listed_from_ns);
	w->gone_reason = reason;
	memset(&ev, 0, sizeof ev);
	ev.kind = OBS_GONE;
	ev.t_ns = p->t_ns;
	ev.sock = p->sock;
	ev.host = -1;
	ev.src = OBS_SRC_SOCK_DIAG;
	ev.last_state = w->known;
	ev.reason = reason;
	ev.rst = !strcmp(reason, "rst") ? &w->rst : NULL;
	ev.last_listed_ns = last;
	ev.timer = w->d_timer;
	ev.timer_ms = w->d_timer_ms;
	f = json_pack("{s:s, s:n, s:s, s:s, s:b, s:s, s:s, s:I, s:I}", "who", w->s.who, "state",
		      "source", "sock_diag", "kind", "sample", "listed", 0, "last_state",
		      tcpst_name(w->known), "reason", reason, "last_listed_us",
		      obs_run_us(o->ctx, last), "t_kernel_us", obs_run_us(o->ctx, p->t_ns));
	if (ev.rst)
		json_object_set_new(f, "evidence",
				    json_pack("{s:s, s:I, s:I, s:I}", "segment", "RST", "seq_raw",
					      (json_int_t)w->rst.seq, "ack_raw", (json_int_t)w->rst.ack,
					      "t_kernel_us", obs_run_us(o->ctx, w->rst.t_ns)));
	extra = ask_lab(o, &ev);
	if (w->d_timer) {
		json_t *tm = json_pack("{s:s, s:s, s:s, s:b, s:s, s:I, s:s, s:I}", "who", w->s.who,
				       "state", tcpst_name(w->known), "timer",
				       tcpst_timer_name(w->d_timer), "stopped", 1, "reason", reason,
				       "ms_left_last", (json_int_t)w->d_timer_ms, "source",
				       "sock_diag", "t_kernel_us", obs_run_us(o->ctx, p->t_ns));
		if (extra)
			json_object_update(tm, extra);
		emit_with(o, "observation", f, extra);
		ev_emit(o->ctx->em, "timer", tm);
	} else {
		emit_with(o, "observation", f, extra);
	}
	w->known = TCPST_CLOSE;
	w->known_src = OBS_SRC_SOCK_DIAG;
	w->known_ns = p->t_ns;
}

/* A call record the emitter held (ev_defer_take): queued by its time. */
static void on_call(void *arg, uint64_t t_ns, const char *type, ev_rec_format_fn fmt,
		    const void *rec, int64_t cost_ns)
{
	struct obs *o = arg;
	struct pending p = {.kind = OBS_CALL, .t_ns = (int64_t)t_ns, .sock = -1};
	struct pcall *c = malloc(sizeof *c);

	if (!c) {
		/* Never lose a call: emit it now, out of place. */
		ev_rec_emit(o->ctx->em, type, fmt, t_ns, rec, cost_ns);
		return;
	}
	c->type = type;
	c->fmt = fmt;
	c->cost_ns = cost_ns;
	memcpy(c->rec, rec, EV_REC_MAX);
	p.u.call = c;
	if (pend_push(o, &p) < 0)
		ev_rec_emit(o->ctx->em, type, fmt, t_ns, rec, cost_ns);
}

/* Take the calls the emitter holds; returns the time before which every
 * call has been taken (a call still being recorded holds the horizon). */
static int64_t take_calls(struct obs *o)
{
	int64_t hold = INT64_MAX;

	if (o->deferring)
		ev_defer_take(o->ctx->em, on_call, o, &hold);
	return hold;
}

/* The earliest of hold and the lab's holds (obs_hold). */
static int64_t lab_hold(struct obs *o, int64_t hold)
{
	int i;

	pthread_mutex_lock(&o->lock);
	for (i = 0; i < OBS_MAX_HOLDS; i++)
		if (o->holds[i] && o->holds[i] < hold)
			hold = o->holds[i];
	pthread_mutex_unlock(&o->lock);
	return hold;
}

/* Deliver every queued item stamped at or before horizon, in time order. */
static void deliver_until(struct obs *o, int64_t horizon)
{
	struct pending *batch = NULL;
	size_t n = 0, i, keep = 0;

	pthread_mutex_lock(&o->lock);
	if (o->n_pend) {
		batch = malloc(o->n_pend * sizeof *batch);
		if (batch) {
			for (i = 0; i < o->n_pend; i++) {
				if (o->pend[i].t_ns <= horizon)
					batch[n++] = o->pend[i];
				else
					o->pend[keep++] = o->pend[i];
			}
			o->n_pend = keep;
			if (n)
				pthread_cond_broadcast(&o->room);
		}
	}
	pthread_mutex_unlock(&o->lock);
	if (!batch)
		return;
	qsort(batch, n, sizeof *batch, pend_cmp);
	for (i = 0; i < n; i++) {
		struct obs_event ev;

		switch (batch[i].kind) {
		case OBS_FRAME:
			deliver_frame(o, &batch[i]);
			break;
		case OBS_TRANSITION:
			deliver_transition(o, &batch[i]);
			break;
		case OBS_SEEN:
			deliver_seen(o, &batch[i]);
			break;
		case OBS_TIMER:
			deliver_timer(o, &batch[i]);
			break;
		case OBS_GONE:
			deliver_gone(o, &batch[i]);
			break;
		case OBS_CALL:
			ev_rec_emit(o->ctx->em, batch[i].u.call->type, batch[i].u.call->fmt,
				    (uint64_t)batch[i].t_ns, batch[i].u.call->rec,
				    batch[i].u.call->cost_ns);
			break;
		case OBS_RECORD:
			memset(&ev, 0, sizeof ev);
			ev.kind = OBS_RECORD;
			ev.t_ns = batch[i].t_ns;
			ev.sock = -1;
			ev.host = -1;
			ev.rec = batch[i].u.rec;
			ask_lab(o, &ev);
			break;
		}
		pend_free(o, &batch[i]);
	}
	free(batch);
}

/* ---- reading the sources ---- */

static int on_frame(void *arg, const struct cap_frame *f)
{
	struct obs_cap *c = arg;
	struct pending p;

	memset(&p, 0, sizeof p);
	p.kind = OBS_FRAME;
	p.t_ns = f->t_mono_ns;
	p.sock = -1;
	p.u.frame.data = malloc(f->caplen ? f->caplen : 1);
	if (!p.u.frame.data)
		return -ENOMEM;
	memcpy(p.u.frame.data, f->data, f->caplen);
	p.u.frame.caplen = f->caplen;
	p.u.frame.len = f->len;
	p.u.frame.ts_real = f->ts_real;
	p.u.frame.link = f->link;
	p.u.frame.host = c->host;
	p.u.frame.outgoing = f->outgoing;
	p.u.frame.csum_flags = f->csum_flags;
	return pend_push(c->o, &p) < 0 ? -ENOMEM : 0;
}

static void on_trace(void *arg, const struct tcpst_trace_ev *ev)
{
	struct obs *o = arg;
	struct pending p;
	/* watch_later: matched when delivered, when the lab may know more. */
	int s = o->cfg.watch_later ? -1 : trace_sock(o, ev);

	if (s < 0 && !o->cfg.watch_later)
		return;
	memset(&p, 0, sizeof p);
	p.kind = OBS_TRANSITION;
	p.t_ns = ev->t_mono_ns;
	p.sock = s;
	p.u.trans.from = ev->oldstate;
	p.u.trans.to = ev->newstate;
	p.u.trans.raw = *ev;
	pend_push(o, &p);
	/* A full socket leaving FIN_WAIT2 or CLOSING for CLOSE has usually
	 * become a timewait socket, which only sock_diag shows, and which an
	 * RST can end within milliseconds: look now. */
	if (ev->newstate == TCPST_CLOSE &&
	    (ev->oldstate == TCPST_FIN_WAIT2 || ev->oldstate == TCPST_CLOSING))
		o->diag_due = 1;
}

static void on_diag(void *arg, const struct tcpst_diag_sock *d)
{
	struct obs *o = arg;
	int s = diag_sock(o, d);

	if (s < 0)
		return;
	o->w[s].in_sample = 1;
	o->w[s].sample_from_ns = o->dump_from_ns;
	o->w[s].sample_state = d->state;
	o->w[s].sample_timer = d->timer;
	o->w[s].sample_ms = d->expires_ms;
}

/* One sock_diag sample of every host. Its time is when the dumps returned:
 * the kernel walked its tables somewhere during the call, so every state it
 * reports was reached by then. Then: an observation for each watched
 * socket listed, a timer about once a second, and "gone" for a socket
 * listed before and not now. */
static void sample_begin(struct obs *o)
{
	int i, n = n_watched(o);

	for (i = 0; i < n; i++)
		o->w[i].in_sample = 0;
}

static void sample_end(struct obs *o, int64_t t)
{
	int i, n = n_watched(o);

	o->last_diag_ns = t;
	for (i = 0; i < n; i++) {
		struct sockw *w = &o->w[i];
		struct pending p;

		memset(&p, 0, sizeof p);
		p.t_ns = t;
		p.sock = i;
		if (w->in_sample) {
			p.kind = OBS_SEEN;
			p.u.seen.state = w->sample_state;
			p.u.seen.src = OBS_SRC_SOCK_DIAG;
			p.u.seen.timer = w->sample_timer;
			p.u.seen.ms = w->sample_ms;
			p.u.seen.listed_from_ns = w->sample_from_ns;
			pend_push(o, &p);
			if ((w->sample_timer == TCPST_TIMER_TIME_WAIT ||
			     (w->sample_state == TCPST_FIN_WAIT2 && w->sample_timer)) &&
			    t - w->last_tick_ns >= (int64_t)OBS_TIMER_EVERY_MS * 1000000) {
				w->last_tick_ns = t;
				p.kind = OBS_TIMER;
				pend_push(o, &p);
			}
			w->listed = w->ever_listed = 1;
			w->last_listed_ns = t;
			w->listed_from_ns = w->sample_from_ns;
		} else if (w->listed) {
			w->listed = 0;
			p.kind = OBS_GONE;
			p.u.gone.last_listed_ns = w->last_listed_ns;
			p.u.gone.listed_from_ns = w->listed_from_ns;
			pend_push(o, &p);
		}
	}
}

static void sample_diag(struct obs *o)
{
	char err[128];

	sample_begin(o);
	if (!o->net) {
		o->dump_from_ns = obs_now_ns();
		tcpst_diag_dump(AF_INET, on_diag, o, err, sizeof err);
	} else {
		if (net_enter(o->net, NET_CLIENT) == 0) {
			o->dump_from_ns = obs_now_ns();
			tcpst_diag_dump(AF_INET, on_diag, o, err, sizeof err);
		}
		if (net_enter(o->net, NET_SERVER) == 0) {
			o->dump_from_ns = obs_now_ns();
			tcpst_diag_dump(AF_INET, on_diag, o, err, sizeof err);
		}
	}
	sample_end(o, obs_now_ns());
}

/* Read what every source holds now; flush: also wait for the frames a
 * capture's kernel still holds in a ring block (the last read of a run). */
static void read_sources(struct obs *o, int flush)
{
	int i;

	for (i = 0; i < o->n_caps; i++) {
		if (flush)
			cap_flush(o->caps[i].cap, on_frame, &o->caps[i]);
		else
			cap_read(o->caps[i].cap, on_frame, &o->caps[i]);
	}
	if (o->trace) {
		if (flush)
			tcpst_trace_read_last(o->trace, on_trace, o);
		else
			tcpst_trace_read(o->trace, on_trace, o);
	}
}

static void *obs_thread(void *arg)
{
	struct obs *o = arg;

	cap_reader_priority();
	for (;;) {
		struct pollfd p[5];
		nfds_t n = 0;
		uint64_t v;
		int64_t now, horizon, hold;
		int i;

		p[n++] = (struct pollfd){o->stop_fd, POLLIN, 0};
		if (o->kick_fd >= 0)
			p[n++] = (struct pollfd){o->kick_fd, POLLIN, 0};
		for (i = 0; i < o->n_caps; i++)
			p[n++] = (struct pollfd){cap_fd(o->caps[i].cap), POLLIN, 0};
		/* Held back by the test knob: nothing is read, so not polled. */
		if (o->trace && !tcpst_trace_stalled(o->trace))
			p[n++] = (struct pollfd){tcpst_trace_fd(o->trace), POLLIN, 0};
		poll(p, n, OBS_POLL_MS);
		read_sources(o, 0);
		now = obs_now_ns();
		if (n_watched(o) && (o->diag_due ||
				 now - o->last_diag_ns >= (int64_t)OBS_DIAG_EVERY_MS * 1000000)) {
			o->diag_due = 0;
			sample_diag(o);
		}
		/* Everything stamped up to a moment ago has been read from every
		 * source (and, watch_later, by the lab): deliver it, in timestamp
		 * order. A call still being recorded holds back what came after
		 * it. */
		if (o->kick_fd >= 0 && read(o->kick_fd, &v, sizeof v) < 0) {
			/* not kicked */
		}
		hold = take_calls(o);
		hold = lab_hold(o, hold);
		horizon = now - (o->cfg.horizon_ms > 0 ? (int64_t)o->cfg.horizon_ms * 1000000
						       : OBS_HORIZON_NS);
		if (o->cfg.watch_later && __atomic_load_n(&o->lab_ns, __ATOMIC_ACQUIRE) < now) {
			int64_t lag = now - __atomic_load_n(&o->lab_ns, __ATOMIC_ACQUIRE);

			/* At most OBS_LAB_LAG_MAX_NS: a lab starved of CPU for longer
			 * must not stop delivery until the queue is full. */
			horizon -= lag < OBS_LAB_LAG_MAX_NS ? lag : OBS_LAB_LAG_MAX_NS;
		}
		deliver_until(o, hold <= horizon ? hold - 1 : horizon);
		if (read(o->stop_fd, &v, sizeof v) == sizeof v)
			break;
	}
	return NULL;
}

/* ---- life cycle ---- */

static void sockw_init(struct sockw *w, const struct obs_sock *s, const struct obs_watch_opts *opt)
{
	memset(w, 0, sizeof *w);
	w->s = *s;
	if (opt)
		w->opt = *opt;
	w->known = TCPST_CLOSE;
	w->known_src = -1;
	w->d_listed = -1;
}

static struct obs *obs_alloc(const struct obs_config *cfg)
{
	struct obs *o = calloc(1, sizeof *o);
	int i;

	if (!o)
		return NULL;
	o->cfg = *cfg;
	o->ctx = cfg->ctx;
	o->net = cfg->ctx->net;
	o->stop_fd = -1;
	o->kick_fd = -1;
	pthread_mutex_init(&o->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&o->room, &ca);
		pthread_condattr_destroy(&ca);
	}
	o->n_w = (int)cfg->n_socks;
	for (i = 0; i < o->n_w; i++)
		sockw_init(&o->w[i], &cfg->socks[i], NULL);
	o->cfg.socks = NULL; /* copied into w */
	o->caps[0] = (struct obs_cap){o, NULL, -1};
	o->caps[1] = (struct obs_cap){o, NULL, NET_CLIENT};
	return o;
}

int obs_start(struct obs **out, const struct obs_config *cfg)
{
	struct lab_ctx *ctx = cfg->ctx;
	struct obs *o;
	char err[512] = "";
	int rc;

	*out = NULL;
	if (cfg->n_socks > OBS_MAX_SOCKS) {
		ev_error(ctx->em, "internal", NULL, "too many sockets to watch");
		return -EINVAL;
	}
	o = obs_alloc(cfg);
	if (!o) {
		ev_error(ctx->em, "internal", NULL, "out of memory");
		return -ENOMEM;
	}
	*out = o;

	/* Two hosts: each host's eth0 (a capture opens in the namespace of the
	 * thread that makes it), so each segment is seen leaving and arriving.
	 * Loopback: lo. */
	o->caps[0] = (struct obs_cap){o, NULL, o->net ? NET_SERVER : -1};
	o->caps[1] = (struct obs_cap){o, NULL, NET_CLIENT};
	rc = net_enter(o->net, NET_SERVER);
	if (rc == 0)
		rc = cap_open(&o->caps[0].cap, o->net ? NET_IFNAME : "lo", cfg->filter, err,
			      sizeof err);
	if (rc == 0)
		o->n_caps = 1;
	if (rc == 0 && o->net) {
		rc = net_enter(o->net, NET_CLIENT);
		if (rc == 0)
			rc = cap_open(&o->caps[1].cap, NET_IFNAME, cfg->filter, err, sizeof err);
		if (rc == 0)
			o->n_caps = 2;
	}
	if (rc < 0) {
		if (!err[0] || rc == -EBADF)
			snprintf(err, sizeof err, "entering a host's namespace: %s", strerror(-rc));
		ev_error(ctx->em, rc == -EPERM ? "no_capture_privilege" : "capture_failed", NULL, err);
		goto fail;
	}
	o->link = cap_link(o->caps[0].cap);
	ev_emit(ctx->em, "capture",
		json_pack("{s:s, s:[s, s*], s:s, s:s, s:b}", "interface", o->net ? NET_IFNAME : "lo",
			  "hosts", o->net ? "client" : "loopback", o->net ? "server" : NULL, "filter",
			  cfg->filter ? cfg->filter : "", "link",
			  o->link == CAP_LINK_ETHERNET ? "ethernet" : "raw", "pcap",
			  ctx->pcap_path != NULL));
	if (cfg->pcap_path) {
		rc = cap_pcap_open(&o->pcap, cfg->pcap_path, o->link, err, sizeof err);
		if (rc < 0) {
			ev_error(ctx->em, "pcap_failed", NULL, err);
			goto fail;
		}
	}
	if (cfg->trace_filter) {
		rc = tcpst_trace_open(&o->trace, cfg->trace_filter, o->trace_err,
				      sizeof o->trace_err);
		if (rc == -EINVAL && cfg->trace_filter_wide)
			rc = tcpst_trace_open(&o->trace, cfg->trace_filter_wide, o->trace_err,
					      sizeof o->trace_err);
		if (rc < 0)
			o->trace = NULL;
	} else {
		snprintf(o->trace_err, sizeof o->trace_err, "not asked for");
	}
	o->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (o->stop_fd < 0) {
		rc = -errno;
		ev_error(ctx->em, "internal", NULL, "no eventfd for the observer");
		goto fail;
	}
	/* The lab's socket calls are merged with the rest by time (without a
	 * writer thread, or without the eventfd, they are emitted as they are
	 * made, as before). */
	o->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (o->kick_fd >= 0 && ev_defer_start(ctx->em, o->kick_fd) == 0)
		o->deferring = 1;
	rc = pthread_create(&o->tid, NULL, obs_thread, o);
	if (rc != 0) {
		rc = -rc;
		ev_error(ctx->em, "internal", NULL, "could not start the observer thread");
		goto fail;
	}
	o->running = 1;
	return 0;
fail:
	obs_destroy(o);
	*out = NULL;
	return rc;
}

/* No lab thread waits for room once the observer's thread is stopping. */
static void stop_waiters(struct obs *o)
{
	pthread_mutex_lock(&o->lock);
	o->closing = 1;
	pthread_cond_broadcast(&o->room);
	pthread_mutex_unlock(&o->lock);
}

void obs_stop(struct obs *o)
{
	uint64_t one = 1;

	if (!o)
		return;
	if (o->offline) {
		deliver_until(o, INT64_MAX);
		return;
	}
	if (o->stopped)
		return;
	if (o->running) {
		stop_waiters(o);
		if (write(o->stop_fd, &one, sizeof one) < 0) {
			/* eventfd writes do not fail with a counter this small */
		}
		pthread_join(o->tid, NULL);
		o->running = 0;
	}
	read_sources(o, 1);
	/* Every transition has been read: what the tracepoint lost is known. */
	if (o->trace) {
		tcpst_trace_loss(o->trace, &o->trace_loss);
		o->trace_lossed = 1;
	}
	if (n_watched(o))
		sample_diag(o);
	/* The calls still held, then calls go to the stream directly again. */
	if (o->deferring) {
		ev_defer_stop(o->ctx->em, on_call, o);
		o->deferring = 0;
	}
	deliver_until(o, INT64_MAX);
	o->stopped = 1;
}

void obs_destroy(struct obs *o)
{
	size_t i;
	int k;

	if (!o)
		return;
	if (o->running) {
		uint64_t one = 1;
		stop_waiters(o);
		if (write(o->stop_fd, &one, sizeof one) < 0) {
			/* as above */
		}
		pthread_join(o->tid, NULL);
		o->running = 0;
	}
	if (o->deferring) {
		/* Never stopped (a failed start): the held calls go out now. */
		ev_defer_stop(o->ctx->em, NULL, NULL);
		o->deferring = 0;
	}
	tcpst_trace_close(o->trace);
	for (k = 0; k < 2; k++)
		cap_close(o->caps[k].cap);
	cap_pcap_close(o->pcap);
	if (o->stop_fd >= 0)
		close(o->stop_fd);
	if (o->kick_fd >= 0)
		close(o->kick_fd);
	for (i = 0; i < o->n_pend; i++)
		pend_free(o, &o->pend[i]);
	free(o->pend);
	pthread_cond_destroy(&o->room);
	pthread_mutex_destroy(&o->lock);
	free(o);
}

int obs_has_tracepoint(const struct obs *o)
{
	return o && o->trace != NULL;
}

const char *obs_trace_error(const struct obs *o)
{
	return o && !o->trace ? o->trace_err : "";
}

int obs_link(const struct obs *o)
{
	return o->link;
}

int obs_pcap_write(struct obs *o, const struct cap_frame *f)
{
	return o && o->pcap ? cap_pcap_write(o->pcap, f) : 0;
}

uint64_t obs_capture_drops(struct obs *o)
{
	uint64_t drops = 0;
	int i;

	for (i = 0; i < o->n_caps; i++) {
		struct cap_stats st;
		cap_get_stats(o->caps[i].cap, &st);
		drops += st.kernel_drops;
	}
	return drops + o->dropped;
}

int obs_capture_report(struct obs *o, struct ev_emitter *em, json_t *summary)
{
	struct cap *caps[2] = {NULL, NULL};
	uint64_t lost;
	int i;

	if (!o)
		return -1;
	for (i = 0; i < o->n_caps && i < 2; i++)
		caps[i] = o->caps[i].cap;
	pthread_mutex_lock(&o->lock);
	lost = o->dropped;
	pthread_mutex_unlock(&o->lock);
	return cap_report(caps, i, lost, em, summary);
}

/* 1 when the tracepoint ran and lost nothing, 0 when it lost events, -1
 * when there was none (or obs_stop has not read it to the end). */
int obs_trace_complete(struct obs *o)
{
	uint64_t refused;

	if (!o || !o->trace || !o->trace_lossed)
		return -1;
	pthread_mutex_lock(&o->lock);
	refused = o->trans_refused;
	pthread_mutex_unlock(&o->lock);
	return o->trace_loss.lost == 0 && !o->trace_loss.uncounted && refused == 0;
}

int obs_trace_report(struct obs *o, struct ev_emitter *em, json_t *summary)
{
	const struct tcpst_trace_loss *l;
	uint64_t refused, lost;
	int complete = obs_trace_complete(o);
	json_t *params;

	if (!o)
		return -1;
	if (complete < 0) {
		if (summary && !o->offline)
			json_object_set_new(summary, "tracepoint",
					    json_pack("{s:b, s:s, s:n, s:n}", "available", 0, "reason",
						      o->trace ? "not read to the end" : o->trace_err,
						      "lost", "complete"));
		return -1;
	}
	l = &o->trace_loss;
	pthread_mutex_lock(&o->lock);
	refused = o->trans_refused;
	pthread_mutex_unlock(&o->lock);
	lost = l->lost + refused;
	if (summary)
		json_object_set_new(summary, "tracepoint",
				    json_pack("{s:b, s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:b, s:i, s:b}",
					      "available", 1, "events", (json_int_t)l->events,
					      "lost", (json_int_t)lost, "counted", !l->uncounted,
					      "overrun", (json_int_t)l->overrun, "dropped",
					      (json_int_t)l->dropped, "unreadable",
					      (json_int_t)l->unreadable, "refused", (json_int_t)refused,
					      "ring_stats", l->stats, "ring_kib", l->ring_kib,
					      "complete", complete == 1));
	if (complete == 1)
		return 1;
	params = json_pack("{s:I, s:I, s:I, s:I, s:I, s:i, s:I}", "lost", (json_int_t)lost,
			   "overrun", (json_int_t)(l->overrun + l->dropped), "unreadable",
			   (json_int_t)l->unreadable, "refused", (json_int_t)refused, "events",
			   (json_int_t)l->events, "ring_kib", l->ring_kib, "lost_lines",
			   (json_int_t)l->lost_lines);
	if (l->uncounted)
		ev_note(em, "tracepoint.incomplete_uncounted", params, NULL);
	else
		ev_note(em, "tracepoint.incomplete", params, NULL);
	return 0;
}

void obs_tcp_info(struct obs *o, int sock, int fd)
{
	struct pending p;
	int st;

	if (!o || o->trace || sock < 0 || sock >= n_watched(o) || fd < 0)
		return;
	st = tcpst_tcp_info_state(fd);
	if (st <= 0)
		return;
	memset(&p, 0, sizeof p);
	p.kind = OBS_SEEN;
	p.t_ns = obs_now_ns();
	p.sock = sock;
	p.u.seen.state = st;
	p.u.seen.src = OBS_SRC_TCP_INFO;
	p.u.seen.listed_from_ns = p.t_ns;
	pend_push(o, &p);
}

uint64_t obs_records_lost(struct obs *o)
{
	uint64_t n;

	if (!o)
		return 0;
	pthread_mutex_lock(&o->lock);
	n = o->records_lost;
	pthread_mutex_unlock(&o->lock);
	return n;
}

int obs_record(struct obs *o, int64_t t_ns, void *rec)
{
	struct pending p;

	memset(&p, 0, sizeof p);
	p.kind = OBS_RECORD;
	p.t_ns = t_ns;
	p.sock = -1;
	p.u.rec = rec;
	return pend_push(o, &p);
}

void obs_caught_up(struct obs *o, int64_t t_ns)
{
	if (o)
		__atomic_store_n(&o->lab_ns, t_ns, __ATOMIC_RELEASE);
}

int obs_hold(struct obs *o, int64_t t_ns)
{
	int i;

	if (!o)
		return -EINVAL;
	pthread_mutex_lock(&o->lock);
	i = 0;
	while (i < OBS_MAX_HOLDS && o->holds[i])
		i++;
	if (i < OBS_MAX_HOLDS)
		o->holds[i] = t_ns > 0 ? t_ns : 1;
	pthread_mutex_unlock(&o->lock);
	return i < OBS_MAX_HOLDS ? i : -ENOSPC;
}

int64_t obs_cpu_ns(struct obs *o)
{
	clockid_t cid;
	struct timespec ts;

	if (!o || !o->running || pthread_getcpuclockid(o->tid, &cid) != 0 ||
	    clock_gettime(cid, &ts) < 0)
		return -1;
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void obs_release(struct obs *o, int h)
{
	if (!o || h < 0 || h >= OBS_MAX_HOLDS)
		return;
	pthread_mutex_lock(&o->lock);
	o->holds[h] = 0;
	pthread_mutex_unlock(&o->lock);
}

int obs_watch(struct obs *o, const struct obs_sock *s, const struct obs_watch_opts *opts)
{
	int n;

	if (!o || !s || !o->cfg.watch_later)
		return -EINVAL;
	pthread_mutex_lock(&o->lock);
	n = o->n_w;
	if (n < OBS_MAX_WATCH) {
		sockw_init(&o->w[n], s, opts);
		__atomic_store_n(&o->n_w, n + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&o->lock);
	return n < OBS_MAX_WATCH ? n : -ENOSPC;
}

void obs_final_state(const struct obs *o, int sock, struct obs_final *out)
{
	const struct sockw *w;

	memset(out, 0, sizeof *out);
	out->src = -1;
	if (!o || sock < 0 || sock >= n_watched(o))
		return;
	w = &o->w[sock];
	out->state = w->known;
	out->src = w->known_src;
	out->t_ns = w->known_ns;
	out->listed_at_end = w->listed;
	out->ever_listed = w->ever_listed;
	out->reason = w->d_listed == 0 ? w->gone_reason : NULL;
	out->timer = w->d_timer;
	out->timer_ms = w->d_timer_ms;
	out->trace_incomplete = w->known_src == OBS_SRC_TRACEPOINT &&
				obs_trace_complete((struct obs *)o) == 0;
}

/* ---- the offline seam ---- */

int obs_open_offline(struct obs **out, const struct obs_config *cfg)
{
	*out = NULL;
	if (cfg->n_socks > OBS_MAX_SOCKS)
		return -EINVAL;
	*out = obs_alloc(cfg);
	if (!*out)
		return -ENOMEM;
	snprintf((*out)->trace_err, sizeof (*out)->trace_err, "offline");
	(*out)->offline = 1; /* nothing to stop: obs_stop only delivers */
	return 0;
}

int obs_feed_frame(struct obs *o, const struct cap_frame *f, int host)
{
	struct obs_cap c = {o, NULL, host};

	return on_frame(&c, f);
}

void obs_feed_transition(struct obs *o, int64_t t_ns, int sock, int from, int to)
{
	struct pending p;

	if (sock < 0 || sock >= n_watched(o))
		return;
	memset(&p, 0, sizeof p);
	p.kind = OBS_TRANSITION;
	p.t_ns = t_ns;
	p.sock = sock;
	p.u.trans.from = from;
	p.u.trans.to = to;
	pend_push(o, &p);
}

void obs_feed_trace(struct obs *o, const struct tcpst_trace_ev *ev)
{
	on_trace(o, ev);
}

void obs_feed_diag(struct obs *o, int64_t from_ns, int64_t t_ns, const struct tcpst_diag_sock *socks,
		   size_t n)
{
	size_t i;

	sample_begin(o);
	o->dump_from_ns = from_ns;
	for (i = 0; i < n; i++)
		on_diag(o, &socks[i]);
	sample_end(o, t_ns);
}

void obs_deliver(struct obs *o, int64_t horizon_ns)
{
	int64_t hold = lab_hold(o, INT64_MAX);

	deliver_until(o, hold <= horizon_ns ? hold - 1 : horizon_ns);
}
