/* sticky.c: the sticky-packet lab (粘包/拆包): send() calls, the segments on the wire and recv() returns on one time axis, and the framing that fixes it. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "capture/capture.h"
#include "decode/decode.h"
#include "framing/framing.h"
#include "lab.h"
#include "net/net.h"
#include "observer/observer.h"
#include "sock.h"

/*
 * The sender (the "client" host) writes count messages with one send() call
 * each (more when the kernel takes part of one), the receiver (the "server"
 * host) waits recv_delay_ms and then reads with recv(bufsize) until EOF. A
 * capture on the sender's interface records every segment it put on the
 * wire. Each lane event names the application messages its bytes belong to,
 * by stream offset: a send by the offset the program had reached, a segment
 * by its sequence number relative to the SYN's, a recv by the bytes read so
 * far. From these the lab says, from what it measured, whether boundaries
 * were lost on the wire (one segment carrying bytes of several sends) or
 * only in the receiver's buffer (one segment per send, fewer recvs).
 */

enum mode { MODE_STREAM, MODE_FRAMED, MODE_UDP, MODE_SERVER };

static const char *const mode_choices[] = {"stream", "framed", "udp", "server", NULL};
static const char *const header_choices[] = {"!I", "i", NULL};

#define MAX_COUNT 200
#define MAX_TOTAL (4u << 20)
#define MAX_SEGS 40000
#define SETTLE_MS 3000
#define MAX_SENDS (MAX_TOTAL / 64 + MAX_COUNT * 4)

static const struct lab_param_def sticky_params[] = {
	{"mode", LAB_P_ENUM, "Mode",
	 "stream: raw messages on a TCP byte stream; framed: the same messages, each with a 4-byte "
	 "header length, a JSON header and the body; udp: the same messages as datagrams; server: "
	 "a framing server for your own client",
	 NULL, "stream", 0, 0, mode_choices, 0},
	{"count", LAB_P_INT, "Messages", "How many messages the sender sends", NULL, "5", 1,
	 MAX_COUNT, NULL, 0},
	{"size", LAB_P_INT, "Message size", "Bytes in each message's body", "bytes", "20", 1, 65536,
	 NULL, 0},
	{"nodelay", LAB_P_BOOL, "TCP_NODELAY",
	 "Turn Nagle's algorithm off on the sender: small segments go out even while earlier data "
	 "is unacknowledged",
	 NULL, "false", 0, 0, NULL, 0},
	{"cork", LAB_P_BOOL, "TCP_CORK",
	 "Cork the sender: the kernel sends only full segments until the sender uncorks after the "
	 "last message",
	 NULL, "false", 0, 0, NULL, 0},
	{"gap_ms", LAB_P_INT, "Gap between sends", "The sender's pause between two messages", "ms",
	 "0", 0, 2000, NULL, 0},
	{"recv_delay_ms", LAB_P_INT, "Receiver delay",
	 "How long the receiver waits after accept before its first recv", "ms", "100", 0, 5000,
	 NULL, 0},
	{"bufsize", LAB_P_INT, "Receive buffer", "The receiver's recv(bufsize)", "bytes", "4096", 1,
	 262144, NULL, 0},
	{"mss", LAB_P_INT, "MSS",
	 "TCP_MAXSEG on the sender before connect (0: the kernel's choice from the MTU; else 88 to "
	 "32767)",
	 "bytes", "0", 0, 32767, NULL, 0},
	{"header", LAB_P_ENUM, "Header format",
	 "framed: the 4-byte header length as a Python struct code: !I network byte order, i "
	 "native (little-endian) int",
	 NULL, "!I", 0, 0, header_choices, 0},
	{"mismatch", LAB_P_BOOL, "Mismatched formats",
	 "framed: the sender packs the length with i, the receiver reads it with !I", NULL, "false",
	 0, 0, NULL, 0},
	{"idle_timeout", LAB_P_INT, "Idle timeout",
	 "mode=server: stop after this long with no client activity", "s", "60", 1, 600, NULL,
	 LAB_PF_ADVANCED},
	{"port", LAB_P_INT, "Port", "mode=server: the server's port; 0 lets the kernel choose", NULL,
	 "0", 0, 65535, NULL, LAB_PF_SERVER | LAB_PF_ADVANCED},
	{"bind", LAB_P_STRING, "Listen address",
	 "mode=server: the address the server binds (an IPv4 or IPv6 literal)", NULL, "127.0.0.1",
	 2, 45, NULL, LAB_PF_SERVER | LAB_PF_ADVANCED},
	NET_PARAMS,
};

/* One captured TCP segment (or UDP datagram), in either direction. */
struct lane_rec {
	int64_t t_ns;     /* monotonic, the kernel's stamp at the tap */
	uint64_t off;     /* c2s: stream offset of the first byte; s2c: the offset the ACK
			   * acknowledges up to (bytes of the client's stream received) */
	uint32_t len;     /* payload bytes */
	uint32_t win;     /* the window field as sent (not scaled) */
	uint16_t flags;
	uint16_t mss_opt; /* SYN: the MSS option, 0 when none */
	uint8_t s2c;      /* sent by the receiver (an ACK back to the sender) */
	uint8_t hdr_len;  /* TCP header bytes, options included */
	int8_t wscale;    /* SYN: the window scale option, -1 when none */
	uint8_t retrans;
	uint8_t ts;       /* carries the timestamp option (RFC 7323) */
	struct dec_csum csum_ip, csum_l4; /* the checksums' verdicts (decode.h) */
};

/*
 * What the sender's kernel said at one instant: getsockopt(TCP_INFO) and the
 * socket's send queue (SIOCOUTQ, SIOCOUTQNSD), read directly (not traced as
 * calls: a sample costs a few microseconds, README.md has the figures, and
 * must not disturb the timing it describes). Taken before and after every
 * send().
 */
struct tcpi_snap {
	int64_t t_ns;      /* when it was read */
	int ok;
	uint32_t cwnd;     /* tcpi_snd_cwnd, in segments */
	uint32_t in_flight;   /* tcpi_unacked: segments sent and not yet acknowledged */
	uint32_t in_flight_b; /* bytes sent and not yet acknowledged (SIOCOUTQ - SIOCOUTQNSD) */
	uint32_t notsent;  /* bytes written but not yet sent (SIOCOUTQNSD) */
	uint32_t snd_wnd;  /* tcpi_snd_wnd: the receiver's window, scaled, in bytes */
	uint32_t mss;      /* tcpi_snd_mss: the largest payload a segment carries now */
};

/* Why a segment's first bytes waited in the sender after the send() that
 * wrote them returned, as far as this run's evidence tells. */
enum hold_cause {
	HOLD_NONE,
	HOLD_NAGLE,
	HOLD_CORK,
	HOLD_CWND,
	HOLD_RWND,
	HOLD_ZERO_WINDOW,
	HOLD_UNKNOWN,
	HOLD_N
};

static const char *const hold_names[HOLD_N] = {
	[HOLD_NONE] = "none",	      [HOLD_NAGLE] = "nagle",	  [HOLD_CORK] = "cork",
	[HOLD_CWND] = "cwnd",	      [HOLD_RWND] = "rwnd",	  [HOLD_ZERO_WINDOW] = "zero_window",
	[HOLD_UNKNOWN] = "undecided",
};

/* What let a held segment go. */
enum hold_release { REL_NONE, REL_ACK, REL_UNCORK, REL_CLOSE, REL_SEND };

static const char *const release_names[] = {
	[REL_NONE] = "not seen", [REL_ACK] = "ack", [REL_UNCORK] = "uncork", [REL_CLOSE] = "close", [REL_SEND] = "send",
};

/* One held segment and its evidence (indices are segment events' "i"). */
struct hold {
	enum hold_cause cause;
	enum hold_release release;
	int seg, send, last_send; /* the segment and the sends whose bytes it carries */
	int small_seg;            /* Nagle: the earlier small segment still unacknowledged */
	int ack_seg;              /* release by ACK: the ACK captured last before the segment */
	int then_seg;             /* an earlier ACK after which the receiver's window held it */
	int rel_send;             /* release by a later send(): the call it left during */
	int64_t wait_ns;          /* from the sample to the segment's departure */
	int64_t after_rel_ns;     /* from the release to the segment's departure */
	struct tcpi_snap at;      /* the sample after send() `send` returned */
};

struct sticky {
	struct lab_ctx *ctx;
	enum mode mode;
	int count, size, nodelay, cork, gap_ms, recv_delay_ms, bufsize, mss, mismatch;
	enum frm_fmt send_fmt, recv_fmt;
	struct sockaddr_in srv;
	char srv_ip[INET_ADDRSTRLEN];
	int lfd;
	/* the messages in the stream: [start, start + len) */
	uint64_t msg_start[MAX_COUNT], msg_len[MAX_COUNT];
	uint32_t msg_hdr_len[MAX_COUNT];
	uint64_t total;
	/* the observer: the capture, delivered live in time order */
	struct obs *obs;
	int wire_incomplete; /* the capture is incomplete: no verdict from the wire */
	pthread_mutex_t lock; /* guards segs, n_segs, wire_end, the ISN and options, the
			       * sends (send_end, n_send) and the lane counters the
			       * observer's thread updates */
	struct lane_rec *segs;
	size_t n_segs, segs_lost; /* segs_lost: captured but not kept (MAX_SEGS) */
	int have_isn;
	uint32_t isn;
	int cli_wscale, srv_wscale; /* from the SYN and the SYN-ACK; -1 when absent */
	uint16_t cli_mss_opt, srv_mss_opt;
	uint64_t wire_end; /* highest stream offset seen on the wire */
	int offload_off;
	/* lanes as measured */
	int n_send, n_recv, n_recv_glued, n_msgs_split, n_seg_multi_send, n_send_split;
	int recv_msgs[MAX_COUNT]; /* recvs that carried bytes of message k */
	uint64_t send_bytes, recv_bytes, seg_bytes;
	uint64_t *send_end; /* stream offset where each send() ended */
	struct tcpi_snap *snap_before, *snap_after; /* per send() */
	int64_t t_uncork_ns;   /* when the sender uncorked (TCP_CORK 0), 0 if it did not */
	int64_t t_shutdown_ns; /* when the sender shut its side down */
	int first_glued_recv;  /* the first recv() holding bytes of several messages, -1 */
	int64_t first_glued_t_ns;
	uint64_t first_glued_off, first_glued_len;
	int framed_ok, framed_err;
	char framed_errmsg[200];
	int failed;
	int causes[HOLD_N];  /* held segments by cause */
	int merged[HOLD_N];  /* held segments carrying several sends, by cause */
};

static const struct lsock_who W_SEND = {"client", 1};
static const struct lsock_who W_RECV = {"server", 1};
static const struct lsock_who W_LISTEN = {"server", 0};

static int64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static json_int_t run_us(const struct sticky *s, int64_t ns)
{
	return (json_int_t)((ns - ((int64_t)s->ctx->em->t0.tv_sec * 1000000000 +
				   s->ctx->em->t0.tv_nsec)) / 1000);
}

/* The messages whose bytes lie in stream range [a, b): index, the part of
 * the message (from, to within it) and whether it is whole. */
static json_t *msgs_json(const struct sticky *s, uint64_t a, uint64_t b)
{
	json_t *arr = json_array();
	int k;

	for (k = 0; k < s->count; k++) {
		uint64_t ms = s->msg_start[k], me = ms + s->msg_len[k];
		uint64_t lo = a > ms ? a : ms, hi = b < me ? b : me;

		if (lo >= hi)
			continue;
		json_array_append_new(arr, json_pack("{s:i, s:I, s:I, s:b}", "msg", k,
						     "from", (json_int_t)(lo - ms), "to",
						     (json_int_t)(hi - ms), "whole",
						     lo == ms && hi == me));
	}
	return arr;
}

static int msgs_in(const struct sticky *s, uint64_t a, uint64_t b, int *first)
{
	int k, n = 0;

	for (k = 0; k < s->count; k++) {
		uint64_t ms = s->msg_start[k], me = ms + s->msg_len[k];

		if ((a > ms ? a : ms) < (b < me ? b : me)) {
			if (!n && first)
				*first = k;
			n++;
		}
	}
	return n;
}

static void fail(struct sticky *s)
{
	s->failed = 1;
	lab_abort(s->ctx);
}

/* ---- the payload ---- */

/* Message k's body: "<k>:" then letters, so a preview shows whose bytes. */
static void fill_body(uint8_t *b, int size, int k)
{
	int i, n = snprintf((char *)b, (size_t)size + 1 > 16 ? 16 : (size_t)size + 1, "<%d>", k);

	if (n < 0 || n > size)
		n = size < 16 ? size : 15;
	for (i = n; i < size; i++)
		b[i] = (uint8_t)('a' + (k + i) % 26);
}

/* Build the byte stream the sender writes (all messages, framed or not). */
static uint8_t *build_stream(struct sticky *s)
{
	uint8_t *body = malloc((size_t)s->size + 16), *out;
	uint64_t off = 0;
	int k;

	if (!body)
		return NULL;
	out = malloc(s->mode == MODE_FRAMED ? (size_t)s->count * ((size_t)s->size + 128)
					    : (size_t)s->count * (size_t)s->size);
	if (!out) {
		free(body);
		return NULL;
	}
	for (k = 0; k < s->count; k++) {
		fill_body(body, s->size, k);
		s->msg_start[k] = off;
		if (s->mode == MODE_FRAMED) {
			size_t fl;
			uint32_t hl;
			uint8_t *f = frm_encode(s->send_fmt, k, body, (size_t)s->size, &fl, &hl);

			if (!f) {
				free(body);
				free(out);
				return NULL;
			}
			memcpy(out + off, f, fl);
			free(f);
			s->msg_len[k] = fl;
			s->msg_hdr_len[k] = hl;
		} else {
			memcpy(out + off, body, (size_t)s->size);
			s->msg_len[k] = (uint64_t)s->size;
		}
		off += s->msg_len[k];
	}
	s->total = off;
	free(body);
	return out;
}

static json_t *hex_json(const uint8_t *b, size_t n)
{
	char h[3 * 8 + 1];
	size_t i, o = 0;

	for (i = 0; i < n && i < 8; i++)
		o += (size_t)snprintf(h + o, sizeof h - o, i ? " %02x" : "%02x", b[i]);
	h[o] = '\0';
	return json_string(h);
}

/* ---- capture ---- */

/* The MSS and window scale options of a SYN (0 and -1 when absent). */
static void syn_opts(const struct dec_tcp *t, uint16_t *mss, int8_t *wscale)
{
	unsigned i;

	*mss = 0;
	*wscale = -1;
	for (i = 0; i < t->n_opts; i++) {
		if (t->opt[i].status != DEC_OK)
			continue;
		if (t->opt[i].kind == 2)
			*mss = t->opt[i].u.mss;
		else if (t->opt[i].kind == 3)
			*wscale = (int8_t)t->opt[i].u.wscale;
	}
}

/* The window the receiver advertised in segment g, in bytes (RFC 7323: the
 * field is scaled in every segment but the SYN's when both sides sent the
 * window scale option). */
static uint64_t rwnd_of(const struct sticky *s, const struct lane_rec *g)
{
	if ((g->flags & DEC_TCP_SYN) || s->srv_wscale < 0 || s->cli_wscale < 0)
		return g->win;
	return (uint64_t)g->win << s->srv_wscale;
}

static int is_data(const struct lane_rec *g)
{
	return !g->s2c && g->len && !g->retrans;
}

/* Which send() call wrote stream offset off: the first whose end lies past
 * it (send_end rises), or n_send, the call still in progress, when none has
 * recorded it yet (the segment left during that call). s->lock held, or the
 * sender done. */
static int send_at(const struct sticky *s, uint64_t off)
{
	int lo = 0, hi = s->n_send;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;

		if (off < s->send_end[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Emit segment i (s->lock held): its "i" is its index in s->segs, which the
 * verdict's evidence refers to. Called as each frame arrives. */
static void emit_segment(struct sticky *s, size_t i)
{
	const struct lane_rec *g = &s->segs[i];
	char fl[16];
	int sends = 0, first = 0;
	json_t *ev;

	if (s->mode != MODE_UDP && g->s2c) {
		ev = json_pack("{s:i, s:I, s:s, s:s, s:I, s:b, s:I, s:I, s:[]}", "i", (int)i,
			       "t_wire_us", run_us(s, g->t_ns), "dir", "s2c", "flags",
			       dec_tcp_flags_short(g->flags, fl, sizeof fl), "bytes",
			       (json_int_t)g->len, "retransmit", 0, "ack", (json_int_t)g->off,
			       "win", (json_int_t)rwnd_of(s, g), "msgs");
		json_object_set_new(ev, "checksums",
				    dec_checksums_json(&g->csum_ip, &g->csum_l4, DEC_L_TCP));
		ev_emit(s->ctx->em, "segment", ev);
		return;
	}
	if (is_data(g) && s->mode != MODE_UDP) {
		first = send_at(s, g->off);
		sends = send_at(s, g->off + g->len - 1) - first + 1;
		if (sends > 1)
			s->n_seg_multi_send++;
	}
	if (g->len && !g->retrans)
		s->seg_bytes += g->len;
	ev = json_pack("{s:i, s:I, s:I, s:I, s:b, s:o}", "i", (int)i, "t_wire_us",
		       run_us(s, g->t_ns), "offset", (json_int_t)g->off, "bytes", (json_int_t)g->len,
		       "retransmit", g->retrans, "msgs",
		       g->len ? msgs_json(s, g->off, g->off + g->len) : json_array());
	if (s->mode != MODE_UDP) {
		json_object_set_new(ev, "dir", json_string("c2s"));
		json_object_set_new(ev, "flags",
				    json_string(dec_tcp_flags_short(g->flags, fl, sizeof fl)));
		json_object_set_new(ev, "tcp_header", json_integer(g->hdr_len));
		if (is_data(g))
			json_object_set_new(ev, "sends", json_pack("[i, i]", first, first + sends - 1));
	}
	json_object_set_new(ev, "checksums",
			    dec_checksums_json(&g->csum_ip, &g->csum_l4,
					       s->mode == MODE_UDP ? DEC_L_UDP : DEC_L_TCP));
	ev_emit(s->ctx->em, "segment", ev);
}

/* Keep one decoded frame the sender's host sent or received (s->lock held):
 * the sender's data segments and the receiver's ACKs (an ACK is what
 * releases held data). Returns its index in s->segs, or -1 when it is not
 * one the lanes show. */
static int keep_frame(struct sticky *s, const struct dec_packet *d, int64_t t_ns)
{
	struct lane_rec rec;

	memset(&rec, 0, sizeof rec);
	rec.csum_ip = d->ip4.csum;
	rec.csum_l4 = dec_has(d, DEC_L_UDP) ? d->udp.csum : d->tcp.csum;
	rec.wscale = -1;
	rec.t_ns = t_ns;
	if (s->mode == MODE_UDP) {
		if (!dec_has(d, DEC_L_UDP))
			return -1;
		rec.len = d->udp.payload_len;
		rec.off = s->wire_end;
		s->wire_end += rec.len;
		goto keep;
	}
	if (!dec_has(d, DEC_L_TCP) || d->layer[DEC_L_TCP].span.len < 20)
		return -1;
	rec.flags = d->tcp.flags;
	rec.len = d->tcp.payload_len;
	rec.win = d->tcp.window;
	rec.hdr_len = (uint8_t)(d->tcp.doff * 4);
	rec.s2c = d->tcp.sport == ntohs(s->srv.sin_port);
	if (d->tcp.flags & DEC_TCP_SYN)
		syn_opts(&d->tcp, &rec.mss_opt, &rec.wscale);
	for (unsigned o = 0; o < d->tcp.n_opts; o++)
		rec.ts |= d->tcp.opt[o].kind == 8;
	if (rec.s2c) {
		if (!s->have_isn)
			return -1;
		if (d->tcp.flags & DEC_TCP_SYN) {
			s->srv_wscale = rec.wscale;
			s->srv_mss_opt = rec.mss_opt;
		}
		if (d->tcp.flags & DEC_TCP_ACK)
			rec.off = (uint32_t)(d->tcp.ack - s->isn - 1);
		goto keep;
	}
	if (d->tcp.flags & DEC_TCP_SYN) {
		s->isn = d->tcp.seq;
		s->have_isn = 1;
		s->cli_wscale = rec.wscale;
		s->cli_mss_opt = rec.mss_opt;
		goto keep;
	}
	if (!s->have_isn)
		return -1;
	rec.off = (uint32_t)(d->tcp.seq - s->isn - 1);
	if (rec.len && rec.off + rec.len <= s->wire_end)
		rec.retrans = 1;
	if (rec.len && rec.off + rec.len > s->wire_end)
		s->wire_end = rec.off + rec.len;
keep:
	if (s->n_segs >= MAX_SEGS) {
		s->segs_lost++;
		return -1;
	}
	s->segs[s->n_segs] = rec;
	return (int)s->n_segs++;
}

/* The observer's callback, in time order on its thread while it runs (then
 * on the thread that stops it): each frame of the sender's host is kept,
 * written to the pcap and emitted at once, so the wire lane is live. On two
 * hosts the observer also captures the receiver's host; the lanes show the
 * sender's side only. */
static json_t *on_obs(void *arg, const struct obs_event *ev)
{
	struct sticky *s = arg;
	int i;

	if (ev->kind != OBS_FRAME || (s->ctx->net && ev->host != NET_CLIENT))
		return NULL;
	obs_pcap_write(s->obs, ev->frame);
	pthread_mutex_lock(&s->lock);
	i = keep_frame(s, ev->pkt, ev->t_ns);
	if (i >= 0)
		emit_segment(s, (size_t)i);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Turn segmentation offload off on ifname, so the capture sees the segments
 * the wire carries rather than the large buffers TCP hands a GSO device.
 * Returns 1 when both are off. */
static int offload_off(const char *ifname)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ok = 1;
	__u32 cmds[] = {ETHTOOL_STSO, ETHTOOL_SGSO};
	size_t i;

	if (fd < 0)
		return 0;
	for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		struct ethtool_value ev = {.cmd = cmds[i], .data = 0};
		struct ifreq ifr;

		memset(&ifr, 0, sizeof ifr);
		snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
		ifr.ifr_data = (char *)&ev;
		if (ioctl(fd, SIOCETHTOOL, &ifr) < 0)
			ok = 0;
	}
	close(fd);
	return ok;
}

/* Start the observer on this run's segments: on two hosts it captures each
 * host's eth0, on loopback lo. Segmentation offload is switched off on the
 * sender's interface first. Leaves the calling thread in the sender's host. */
static int open_observer(struct sticky *s)
{
	struct lab_ctx *ctx = s->ctx;
	struct obs_config cfg;
	char expr[256];
	int rc;

	/* UDP: the datagrams sent; TCP: both directions, for the receiver's ACKs. */
	snprintf(expr, sizeof expr, "%s and %shost %s and %sport %u",
		 s->mode == MODE_UDP ? "udp" : "tcp", s->mode == MODE_UDP ? "dst " : "",
		 s->srv_ip, s->mode == MODE_UDP ? "dst " : "", ntohs(s->srv.sin_port));
	rc = net_enter(ctx->net, NET_CLIENT);
	if (rc < 0) {
		ev_error(ctx->em, "capture_failed", NULL, "could not enter the sender's namespace");
		return rc;
	}
	s->offload_off = offload_off(ctx->net ? NET_IFNAME : "lo");
	memset(&cfg, 0, sizeof cfg);
	cfg.ctx = ctx;
	cfg.filter = expr;
	cfg.fn = on_obs;
	cfg.arg = s;
	cfg.pcap_path = ctx->pcap_path;
	rc = obs_start(&s->obs, &cfg); /* emits the capture event, or the error */
	if (rc == 0)
		rc = net_enter(ctx->net, NET_CLIENT);
	return rc;
}

/* Wait (bounded) until the capture has seen every byte the sender sent. */
static void wait_wire(struct sticky *s, uint64_t want)
{
	int64_t end = mono_ns() + (int64_t)SETTLE_MS * 1000000;

	for (;;) {
		uint64_t got;

		pthread_mutex_lock(&s->lock);
		got = s->wire_end;
		pthread_mutex_unlock(&s->lock);
		if (got >= want || mono_ns() > end || lab_sleep_ms(s->ctx, 2) < 0)
			return;
	}
}

/* ---- the receiver ---- */

static void emit_message(struct sticky *s, const struct frm_msg *m, int64_t t_ns)
{
	int k = (int)m->index;
	int64_t v = frm_get_prefix(s->recv_fmt, m->prefix);

	ev_emit(s->ctx->em, "message",
		json_pack("{s:i, s:I, s:o, s:s, s:I, s:s, s:I, s:b}", "msg", k, "t_done_us",
			  run_us(s, t_ns), "header_hex", hex_json(m->prefix, FRM_PREFIX), "format",
			  frm_fmt_name(s->recv_fmt), "header_len", (json_int_t)v, "header",
			  m->hdr, "total_size", (json_int_t)m->total_size, "ok",
			  k >= 0 && k < s->count && m->total_size == (uint64_t)s->size &&
				  m->hdr_len == s->msg_hdr_len[k]));
	if (k >= 0 && k < s->count && m->total_size == (uint64_t)s->size)
		s->framed_ok++;
}

static void frame_error(struct sticky *s, const struct frm_dec *d)
{
	s->framed_err = 1;
	snprintf(s->framed_errmsg, sizeof s->framed_errmsg, "%s", d->errmsg);
	ev_emit(s->ctx->em, "frame_error",
		json_pack("{s:s, s:s, s:I, s:o, s:s, s:I}", "error", frm_err_name(d->err),
			  "message", d->errmsg, "value", (json_int_t)d->bad_value, "header_hex",
			  hex_json(d->cur.prefix, FRM_PREFIX), "format",
			  frm_fmt_name(s->recv_fmt), "at", (json_int_t)d->consumed));
}

static void receive_tcp(struct sticky *s, int fd)
{
	struct lab_ctx *ctx = s->ctx;
	uint8_t *buf = malloc((size_t)s->bufsize);
	struct frm_dec dec;
	uint64_t off = 0;

	if (!buf) {
		fail(s);
		return;
	}
	frm_dec_init(&dec, s->recv_fmt, 0, 0);
	for (;;) {
		int64_t t0 = mono_ns();
		ssize_t n = lsock_recv(ctx, W_RECV, fd, buf, (size_t)s->bufsize, -1);
		int first = 0, nm;

		if (n < 0) {
			if (n != -ECANCELED)
				fail(s);
			break;
		}
		if (n == 0)
			break;
		nm = msgs_in(s, off, off + (uint64_t)n, &first);
		for (int k = first; k < first + nm; k++)
			s->recv_msgs[k]++;
		s->n_recv++;
		if (nm > 1 && !s->n_recv_glued++) {
			s->first_glued_recv = s->n_recv - 1;
			s->first_glued_t_ns = t0;
			s->first_glued_off = off;
			s->first_glued_len = (uint64_t)n;
		}
		ev_emit(ctx->em, "recv",
			json_pack("{s:i, s:I, s:I, s:I, s:i, s:o}", "i", s->n_recv - 1, "t_call_us",
				  run_us(s, t0), "offset", (json_int_t)off, "bytes", (json_int_t)n,
				  "bufsize", s->bufsize, "msgs",
				  msgs_json(s, off, off + (uint64_t)n)));
		off += (uint64_t)n;
		s->recv_bytes += (uint64_t)n;
		if (s->mode == MODE_FRAMED && !s->framed_err) {
			size_t p = 0;

			while (p < (size_t)n) {
				struct frm_msg m;
				size_t used;
				int rc = frm_dec_feed(&dec, buf + p, (size_t)n - p, &used, &m);

				p += used;
				if (rc < 0) {
					frame_error(s, &dec);
					break;
				}
				if (rc == 1) {
					emit_message(s, &m, mono_ns());
					frm_msg_free(&m);
				}
			}
			if (s->framed_err)
				break; /* a real receiver gives up on this connection */
		}
	}
	if (s->mode == MODE_FRAMED && !s->framed_err && frm_dec_finish(&dec) < 0)
		frame_error(s, &dec);
	frm_dec_free(&dec);
	free(buf);
}

static void receive_udp(struct sticky *s, int fd)
{
	struct lab_ctx *ctx = s->ctx;
	uint8_t *buf = malloc((size_t)s->bufsize);
	int k;

	if (!buf) {
		fail(s);
		return;
	}
	for (k = 0; k < s->count; k++) {
		int64_t t0 = mono_ns();
		/* The first datagram waits for the sender; later ones at most 2 s. */
		ssize_t n = lsock_recvfrom(ctx, W_RECV, fd, buf, (size_t)s->bufsize, NULL,
					   k ? 2000 : 10000, NULL);
		int idx = -1;

		if (n < 0) {
			if (n != -ECANCELED && n != -ETIMEDOUT)
				fail(s);
			break;
		}
		if (n >= 3 && buf[0] == '<') {
			ssize_t j;

			for (j = 1, idx = 0; j < n && buf[j] >= '0' && buf[j] <= '9' && idx < MAX_COUNT; j++)
				idx = idx * 10 + (buf[j] - '0');
		}
		s->n_recv++;
		s->recv_bytes += (uint64_t)n;
		ev_emit(ctx->em, "recv",
			json_pack("{s:i, s:I, s:I, s:I, s:i, s:[{s:i, s:i, s:I, s:b}]}", "i", k,
				  "t_call_us", run_us(s, t0), "offset", (json_int_t)s->recv_bytes - n,
				  "bytes", (json_int_t)n, "bufsize", s->bufsize, "msgs", "msg", idx,
				  "from", 0, "to", (json_int_t)n, "whole", n == s->size));
	}
	free(buf);
}

static void *receiver(void *arg)
{
	struct sticky *s = arg;
	struct lab_ctx *ctx = s->ctx;
	int fd = s->lfd;

	if (net_enter(ctx->net, NET_SERVER) < 0) {
		fail(s);
		return NULL;
	}
	if (s->mode != MODE_UDP) {
		fd = lsock_accept(ctx, W_LISTEN, s->lfd, NULL, 10000);
		if (fd < 0) {
			if (fd != -ECANCELED)
				fail(s);
			return NULL;
		}
	}
	if (lab_sleep_ms(ctx, s->recv_delay_ms) < 0) {
		if (fd != s->lfd)
			lsock_close(ctx, W_RECV, fd);
		return NULL;
	}
	if (s->mode == MODE_UDP)
		receive_udp(s, fd);
	else
		receive_tcp(s, fd);
	if (fd != s->lfd)
		lsock_close(ctx, W_RECV, fd);
	return NULL;
}

/* ---- the sender ---- */

/* Linux's struct tcp_info (uapi <linux/tcp.h>) up to tcpi_snd_wnd (Linux
 * 6.2): glibc's <netinet/tcp.h> declares only the part up to
 * tcpi_total_retrans, and the two headers cannot both be included. */
struct tcp_info_ext {
	struct tcp_info base;
	uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
	uint32_t segs_out, segs_in, notsent_bytes, min_rtt, data_segs_in, data_segs_out;
	uint64_t delivery_rate, busy_time, rwnd_limited, sndbuf_limited;
	uint32_t delivered, delivered_ce;
	uint64_t bytes_sent, bytes_retrans;
	uint32_t dsack_dups, reord_seen, rcv_ooopack, snd_wnd;
};

_Static_assert(sizeof(struct tcp_info) == 104 && offsetof(struct tcp_info_ext, snd_wnd) == 228,
	       "the uapi layout of struct tcp_info");

/* Read the sender's TCP_INFO and send queue now (see struct tcpi_snap). A
 * kernel too old to report the receiver's window gives no sample. */

static void snap(int fd, struct tcpi_snap *o)
{
	struct tcp_info_ext ti;
	socklen_t l = sizeof ti;
	int outq = 0, nsd = 0;

	memset(o, 0, sizeof *o);
	memset(&ti, 0, sizeof ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0 && l >= sizeof ti &&
	    ioctl(fd, SIOCOUTQ, &outq) == 0 && ioctl(fd, SIOCOUTQNSD, &nsd) == 0) {
		o->ok = 1;
		o->cwnd = ti.base.tcpi_snd_cwnd;
		o->in_flight = ti.base.tcpi_unacked;
		o->in_flight_b = outq > nsd ? (uint32_t)(outq - nsd) : 0;
		o->notsent = nsd > 0 ? (uint32_t)nsd : 0;
		o->snd_wnd = ti.snd_wnd;
		o->mss = ti.base.tcpi_snd_mss;
	}
	o->t_ns = mono_ns();
}

static json_t *snap_json(const struct sticky *s, const struct tcpi_snap *o)
{
	if (!o->ok)
		return json_null();
	return json_pack("{s:I, s:i, s:i, s:i, s:i, s:i, s:i}", "t_us", run_us(s, o->t_ns),
			 "cwnd", (int)o->cwnd, "in_flight", (int)o->in_flight, "in_flight_bytes",
			 (int)o->in_flight_b, "notsent_bytes", (int)o->notsent, "snd_wnd",
			 (int)o->snd_wnd, "mss", (int)o->mss);
}

static int sender(struct sticky *s, const uint8_t *stream)
{
	struct lab_ctx *ctx = s->ctx;
	int udp = s->mode == MODE_UDP;
	int fd, k, rc = 0;

	fd = lsock_socket(ctx, W_SEND, AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM);
	if (fd < 0)
		return fd;
	if (!udp) {
		if (s->nodelay)
			rc = lsock_setsockopt_int(ctx, W_SEND, fd, IPPROTO_TCP, TCP_NODELAY, 1);
		if (rc == 0 && s->cork)
			rc = lsock_setsockopt_int(ctx, W_SEND, fd, IPPROTO_TCP, TCP_CORK, 1);
		if (rc == 0 && s->mss)
			rc = lsock_setsockopt_int(ctx, W_SEND, fd, IPPROTO_TCP, TCP_MAXSEG, s->mss);
		if (rc == 0)
			rc = lsock_connect(ctx, W_SEND, fd, (struct sockaddr *)&s->srv,
					   sizeof s->srv, 10000);
	}
	for (k = 0; rc >= 0 && k < s->count; k++) {
		uint64_t done = 0;

		if (k && s->gap_ms && (rc = lab_sleep_ms(ctx, s->gap_ms)) < 0)
			break;
		while (done < s->msg_len[k] && s->n_send < (int)MAX_SENDS) {
			uint64_t off = s->msg_start[k] + done;
			struct tcpi_snap *before = &s->snap_before[s->n_send];
			struct tcpi_snap *after = &s->snap_after[s->n_send];
			int64_t t0;
			ssize_t n;
			json_t *ev;

			if (!udp)
				snap(fd, before);
			t0 = mono_ns();
			n = udp ? lsock_sendto(ctx, W_SEND, fd, stream + off, s->msg_len[k],
					       (struct sockaddr *)&s->srv, sizeof s->srv, 10000, NULL)
				: lsock_send(ctx, W_SEND, fd, stream + off, s->msg_len[k] - done,
					     10000);
			if (n < 0) {
				rc = (int)n;
				break;
			}
			if (!udp)
				snap(fd, after);
			pthread_mutex_lock(&s->lock);
			s->send_end[s->n_send] = off + (uint64_t)n;
			s->n_send++;
			pthread_mutex_unlock(&s->lock);
			s->send_bytes += (uint64_t)n;
			ev = json_pack("{s:i, s:I, s:I, s:I, s:o}", "i", s->n_send - 1, "t_call_us",
				       run_us(s, t0), "offset", (json_int_t)off, "bytes",
				       (json_int_t)n, "msgs", msgs_json(s, off, off + (uint64_t)n));
			if (!udp)
				json_object_set_new(ev, "tcp_info",
						    json_pack("{s:o, s:o}", "before",
							      snap_json(s, before), "after",
							      snap_json(s, after)));
			ev_emit(ctx->em, "send", ev);
			done += (uint64_t)n;
		}
	}
	if (rc >= 0 && !udp && s->cork) {
		s->t_uncork_ns = mono_ns();
		rc = lsock_setsockopt_int(ctx, W_SEND, fd, IPPROTO_TCP, TCP_CORK, 0);
	}
	/* A FIN pushes out whatever the kernel still holds (Nagle does not apply
	 * to it), which would hide why the bytes were held: close only after the
	 * capture has seen every byte leave (bounded by SETTLE_MS). */
	if (rc >= 0 && !udp)
		wait_wire(s, s->send_bytes);
	if (rc >= 0 && !udp) {
		s->t_shutdown_ns = mono_ns();
		rc = lsock_shutdown(ctx, W_SEND, fd, SHUT_WR);
	}
	lsock_close(ctx, W_SEND, fd);
	return rc < 0 ? rc : 0;
}

/* ---- after the run: the wire lane and the verdict ---- */

/* Which send() call wrote stream offset off, once the sender is done. */
static int send_of(const struct sticky *s, uint64_t off)
{
	int i = send_at(s, off);

	return i < s->n_send ? i : s->n_send - 1;
}

static int data_segments(const struct sticky *s)
{
	size_t i;
	int n = 0;

	for (i = 0; i < s->n_segs; i++)
		n += s->mode == MODE_UDP ? s->segs[i].len > 0 : is_data(&s->segs[i]);
	return n;
}

/* ---- the evidence: why a segment's bytes waited ---- */

/* Frames a capture may deliver out of their stamps' order (readers on
 * several CPUs); a search that starts at a segment looks this far past it. */
#define ORDER_SLACK 64

/* Nagle in Linux (Minshall's variant, tcp_nagle_check): a segment smaller
 * than the MSS waits while an earlier small segment is unacknowledged. The
 * last small data segment sent before t, if no captured ACK before t covers
 * it; else -1. */
static int small_unacked(const struct sticky *s, int64_t t, uint32_t mss, size_t near)
{
	size_t j, lim = near + ORDER_SLACK < s->n_segs ? near + ORDER_SLACK : s->n_segs;
	int64_t i;
	uint64_t end;

	for (i = (int64_t)lim - 1; i >= 0; i--) {
		const struct lane_rec *g = &s->segs[i];

		if (g->t_ns <= t && is_data(g) && g->len < mss)
			break;
	}
	if (i < 0)
		return -1;
	end = s->segs[i].off + s->segs[i].len;
	for (j = 0; j < lim; j++) {
		const struct lane_rec *a = &s->segs[j];

		if (a->s2c && a->t_ns <= t && (a->flags & DEC_TCP_ACK) && a->off >= end)
			return -1;
	}
	return (int)i;
}

/* The last ACK from the receiver captured in (from, to], or -1. The capture
 * keeps frames in time order, so the search starts near index near (the
 * segment whose departure is `to`), not at the end: each lookup costs the
 * distance to the previous ACK, not the whole run. */
static int last_ack(const struct sticky *s, int64_t from, int64_t to, size_t near)
{
	int64_t i = (int64_t)(near + ORDER_SLACK < s->n_segs ? near + ORDER_SLACK : s->n_segs) - 1;

	for (; i >= 0; i--) {
		const struct lane_rec *a = &s->segs[i];

		if (a->t_ns > to || !a->s2c || !(a->flags & DEC_TCP_ACK))
			continue;
		return a->t_ns > from ? (int)i : -1;
	}
	return -1;
}

/* Decide why data segment gi's first byte was still unsent when the send()
 * that wrote it returned, from the TCP_INFO sample taken then and the
 * capture. Returns 0 and fills h, or -1 when the bytes left during the call
 * (nothing was held) or there is no sample. */
static int explain_hold(const struct sticky *s, size_t gi, struct hold *h)
{
	const struct lane_rec *g = &s->segs[gi];
	int fi = send_of(s, g->off);
	const struct tcpi_snap *S = &s->snap_after[fi];
	uint32_t need;
	int k;

	if (!S->ok || !S->notsent || g->off < s->send_end[fi] - S->notsent ||
	    g->off >= s->send_end[fi])
		return -1;
	memset(h, 0, sizeof *h);
	h->seg = (int)gi;
	h->send = fi;
	h->last_send = send_of(s, g->off + g->len - 1);
	h->small_seg = h->ack_seg = h->then_seg = h->rel_send = -1;
	h->at = *S;
	h->wait_ns = g->t_ns - S->t_ns;
	need = S->notsent < S->mss ? S->notsent : S->mss;
	if (S->snd_wnd == 0)
		h->cause = HOLD_ZERO_WINDOW;
	else if ((uint64_t)S->in_flight_b + need > S->snd_wnd)
		h->cause = HOLD_RWND;
	else if (S->cwnd && S->in_flight >= S->cwnd)
		h->cause = HOLD_CWND;
	else if (s->cork && S->notsent < S->mss)
		h->cause = HOLD_CORK;
	else if (!s->nodelay && S->notsent < S->mss &&
		 (h->small_seg = small_unacked(s, S->t_ns, S->mss, gi)) >= 0)
		h->cause = HOLD_NAGLE;
	else
		h->cause = HOLD_UNKNOWN;
	/* What let it go: a later send() whose bytes it carries and during which
	 * it left (no ACK came in between: the new bytes made the segment one
	 * the kernel sends), the uncork call, an ACK that arrived while it
	 * waited, or the sender's FIN. */
	for (k = h->last_send; k > fi && h->rel_send < 0; k--) {
		const struct tcpi_snap *b = &s->snap_before[k], *e = &s->snap_after[k];

		if (b->ok && e->ok && g->t_ns >= b->t_ns && g->t_ns <= e->t_ns &&
		    last_ack(s, b->t_ns, g->t_ns, gi) < 0)
			h->rel_send = k;
	}
	if (h->rel_send >= 0) {
		h->release = REL_SEND;
		h->after_rel_ns = g->t_ns - s->snap_before[h->rel_send].t_ns;
	} else if (h->cause == HOLD_CORK && s->t_uncork_ns && g->t_ns >= s->t_uncork_ns) {
		h->release = REL_UNCORK;
		h->after_rel_ns = g->t_ns - s->t_uncork_ns;
	} else if ((h->ack_seg = last_ack(s, S->t_ns, g->t_ns, gi)) >= 0) {
		const struct lane_rec *a = &s->segs[h->ack_seg];
		int prev = last_ack(s, S->t_ns, a->t_ns - 1, (size_t)h->ack_seg);

		h->release = REL_ACK;
		h->after_rel_ns = g->t_ns - a->t_ns;
		/* An earlier ACK that let nothing go: if the segment did not fit
		 * in the window it offered, the receiver's window held it from
		 * then on, whatever held it first. */
		if (prev >= 0 && h->cause != HOLD_RWND && h->cause != HOLD_ZERO_WINDOW &&
		    s->segs[prev].off + rwnd_of(s, &s->segs[prev]) < g->off + g->len)
			h->then_seg = prev;
	} else if ((g->flags & DEC_TCP_FIN) ||
		   (s->t_shutdown_ns && g->t_ns >= s->t_shutdown_ns)) {
		h->release = REL_CLOSE;
		h->after_rel_ns = s->t_shutdown_ns ? g->t_ns - s->t_shutdown_ns : 0;
	}
	return 0;
}

/* A run time in milliseconds as a note shows it ("143.326"). */
static json_t *ms_of(const struct sticky *s, int64_t ns)
{
	char b[32];

	snprintf(b, sizeof b, "%.3f", (double)run_us(s, ns) / 1000.0);
	return json_string(b);
}

/* The evidence of one hold as note parameters. */
static json_t *hold_json(const struct sticky *s, const struct hold *h)
{
	json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:o, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:I}",
			      "cause", hold_names[h->cause], "seg", h->seg, "send", h->send,
			      "last_send", h->last_send, "t_ms", ms_of(s, h->at.t_ns), "held",
			      (int)h->at.notsent, "mss", (int)h->at.mss, "cwnd", (int)h->at.cwnd,
			      "in_flight", (int)h->at.in_flight, "in_flight_bytes",
			      (int)h->at.in_flight_b, "snd_wnd", (int)h->at.snd_wnd, "release",
			      release_names[h->release], "wait_us",
			      (json_int_t)(h->wait_ns / 1000));

	json_object_set_new(j, "seg_ms", ms_of(s, s->segs[h->seg].t_ns));
	json_object_set_new(j, "seg_bytes", json_integer(s->segs[h->seg].len));
	if (h->small_seg >= 0) {
		const struct lane_rec *p = &s->segs[h->small_seg];

		json_object_set_new(j, "small_seg", json_integer(h->small_seg));
		json_object_set_new(j, "small_bytes", json_integer(p->len));
		json_object_set_new(j, "small_end", json_integer((json_int_t)(p->off + p->len)));
	}
	if (h->ack_seg >= 0) {
		const struct lane_rec *a = &s->segs[h->ack_seg];

		json_object_set_new(j, "ack_seg", json_integer(h->ack_seg));
		json_object_set_new(j, "ack", json_integer((json_int_t)a->off));
		json_object_set_new(j, "ack_win", json_integer((json_int_t)rwnd_of(s, a)));
		json_object_set_new(j, "ack_ms", ms_of(s, a->t_ns));
	}
	if (h->release != REL_NONE)
		json_object_set_new(j, "after_us", json_integer((json_int_t)(h->after_rel_ns / 1000)));
	if (h->rel_send >= 0) {
		json_object_set_new(j, "rel_send", json_integer(h->rel_send));
		json_object_set_new(j, "full", json_boolean(s->segs[h->seg].len == h->at.mss));
	}
	if (h->then_seg >= 0) {
		const struct lane_rec *a = &s->segs[h->then_seg];

		json_object_set_new(j, "then_seg", json_integer(h->then_seg));
		json_object_set_new(j, "then_ack", json_integer((json_int_t)a->off));
		json_object_set_new(j, "then_win", json_integer((json_int_t)rwnd_of(s, a)));
		json_object_set_new(j, "then_ms", ms_of(s, a->t_ns));
	}
	return j;
}

/* The note naming one cause, with the evidence of its first segment. The
 * keys are literal so the translation check finds them. */
static void cause_note(struct sticky *s, const struct hold *h, int n)
{
	struct ev_emitter *em = s->ctx->em;
	json_t *p = hold_json(s, h);

	json_object_set_new(p, "count", json_integer(n));
	switch (h->cause) {
	case HOLD_NAGLE:
		ev_note(em, "sticky.cause.nagle", p, NULL);
		break;
	case HOLD_CORK:
		ev_note(em, "sticky.cause.cork", p, NULL);
		break;
	case HOLD_CWND:
		ev_note(em, "sticky.cause.cwnd", p, NULL);
		break;
	case HOLD_RWND:
		ev_note(em, "sticky.cause.rwnd", p, NULL);
		break;
	case HOLD_ZERO_WINDOW:
		ev_note(em, "sticky.cause.zero_window", p, NULL);
		break;
	default:
		ev_note(em, "sticky.cause.undecided", p, NULL);
		break;
	}
	p = hold_json(s, h);
	switch (h->release) {
	case REL_ACK:
		ev_note(em, "sticky.release.ack", p, NULL);
		break;
	case REL_UNCORK:
		ev_note(em, "sticky.release.uncork", p, NULL);
		break;
	case REL_CLOSE:
		ev_note(em, "sticky.release.close", p, NULL);
		break;
	case REL_SEND:
		if (s->segs[h->seg].len == h->at.mss)
			ev_note(em, "sticky.release.send_full", p, NULL);
		else
			ev_note(em, "sticky.release.send", p, NULL);
		break;
	default:
		ev_note(em, "sticky.release.none", p, NULL);
		break;
	}
	if (h->then_seg >= 0)
		ev_note(em, "sticky.release.then_window", hold_json(s, h), NULL);
}

/* Boundaries lost on the wire: every held segment is reported in a "hold" event with
 * its evidence; each cause of a merged segment in a note. */
static void explain_wire(struct sticky *s)
{
	struct hold first[HOLD_N], h;
	int *merged = s->merged;
	size_t i;
	int c;

	for (i = 0; i < s->n_segs; i++) {
		if (!is_data(&s->segs[i]) || explain_hold(s, i, &h) < 0)
			continue;
		s->causes[h.cause]++;
		ev_emit(s->ctx->em, "hold", hold_json(s, &h));
		if (h.last_send > h.send && !merged[h.cause]++)
			first[h.cause] = h;
	}
	for (c = HOLD_NAGLE; c < HOLD_N; c++)
		if (merged[c])
			cause_note(s, &first[c], merged[c]);
	if (s->n_seg_multi_send && !merged[HOLD_NAGLE] && !s->nodelay)
		ev_note(s->ctx->em, "sticky.cause.not_nagle_wire", NULL, NULL);
}

/* Boundaries lost only in the receiver: the first glued recv() and the
 * segments that carried its bytes, all sent one per send(). */
static void explain_receiver(struct sticky *s)
{
	uint64_t a = s->first_glued_off, b = a + s->first_glued_len;
	int64_t first = -1, last = -1;
	size_t i;
	int m0 = 0, nm;

	if (s->first_glued_recv < 0)
		return;
	for (i = 0; i < s->n_segs; i++) {
		const struct lane_rec *g = &s->segs[i];

		if (!is_data(g) || g->off + g->len <= a || g->off >= b)
			continue;
		if (first < 0)
			first = (int64_t)i;
		last = (int64_t)i;
	}
	nm = msgs_in(s, a, b, &m0);
	if (first < 0)
		return;
	ev_note(s->ctx->em, "sticky.evidence.receiver",
		json_pack("{s:i, s:o, s:I, s:i, s:i, s:i, s:i, s:o, s:o}", "recv",
			  s->first_glued_recv, "t_ms", ms_of(s, s->first_glued_t_ns), "bytes",
			  (json_int_t)s->first_glued_len, "first_msg", m0, "last_msg", m0 + nm - 1,
			  "first_seg", (int)first, "last_seg", (int)last, "first_ms",
			  ms_of(s, s->segs[first].t_ns), "last_ms", ms_of(s, s->segs[last].t_ns)),
		NULL);
}

/* What decided a data segment's size. */
enum seg_size {
	SZ_OPTIONS, /* the MSS less the timestamp option */
	SZ_EXACT,   /* the MSS, no options */
	SZ_HALF,    /* half the receiver's largest window so far */
	SZ_EDGE,    /* ended at the receiver's window edge */
	SZ_OTHER,   /* shorter, for a reason the evidence does not show */
	SZ_TAIL,    /* ended where a send() ended: the bytes written so far */
	SZ_N
};

/* Segment sizes against the MSS: the bytes options take from it, and
 * segments cut short of it while more bytes were waiting. One note per kind,
 * with its first segment as the example. */
static void explain_sizes(struct sticky *s)
{
	int first[SZ_N], n[SZ_N] = {0}, k, c;
	uint64_t maxwin = 0, win_at[SZ_N] = {0};
	uint32_t limit;
	size_t i;

	if (!s->srv_mss_opt)
		return;
	limit = s->srv_mss_opt;
	if (s->mss && (uint32_t)s->mss < limit)
		limit = (uint32_t)s->mss;
	for (i = 0; i < s->n_segs; i++) {
		const struct lane_rec *g = &s->segs[i];
		uint32_t opts = g->hdr_len > 20 ? g->hdr_len - 20u : 0;
		int ai;

		if (g->s2c && (g->flags & DEC_TCP_ACK) && rwnd_of(s, g) > maxwin)
			maxwin = rwnd_of(s, g);
		if (!is_data(g))
			continue;
		for (k = 0; k < s->n_send && s->send_end[k] != g->off + g->len; k++)
			;
		ai = last_ack(s, 0, g->t_ns, i);
		if (g->ts && opts == 12 && g->len + opts == limit)
			c = SZ_OPTIONS;
		else if (!opts && g->len == limit)
			c = SZ_EXACT;
		else if (maxwin > 536 && g->len == maxwin / 2)
			c = SZ_HALF;
		else if (k < s->n_send)
			c = SZ_TAIL;
		else if (ai >= 0 && s->segs[ai].off + rwnd_of(s, &s->segs[ai]) == g->off + g->len)
			c = SZ_EDGE;
		else
			c = SZ_OTHER;
		if (!n[c]++) {
			first[c] = (int)i;
			win_at[c] = maxwin;
		}
	}
	for (c = 0; c < SZ_TAIL; c++) {
		const struct lane_rec *g;
		int ai;
		json_t *p;

		if (!n[c])
			continue;
		g = &s->segs[first[c]];
		p = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I}", "seg", first[c],
			      "segments", n[c], "payload", (int)g->len, "mss", (int)limit,
			      "options", g->hdr_len > 20 ? g->hdr_len - 20 : 0, "header",
			      (int)g->hdr_len, "syn_ack_mss", (int)s->srv_mss_opt, "maxseg", s->mss,
			      "maxwin", (json_int_t)win_at[c]);
		ai = last_ack(s, 0, g->t_ns, (size_t)first[c]);
		if (ai >= 0) {
			json_object_set_new(p, "ack_seg", json_integer(ai));
			json_object_set_new(p, "ack", json_integer((json_int_t)s->segs[ai].off));
			json_object_set_new(p, "win",
					    json_integer((json_int_t)rwnd_of(s, &s->segs[ai])));
			json_object_set_new(p, "edge", json_integer((json_int_t)(g->off + g->len)));
		}
		switch (c) {
		case SZ_OPTIONS:
			if (s->mss && (uint32_t)s->mss == limit)
				ev_note(s->ctx->em, "sticky.mss.options_maxseg", p, NULL);
			else
				ev_note(s->ctx->em, "sticky.mss.options", p, NULL);
			break;
		case SZ_EXACT:
			ev_note(s->ctx->em, "sticky.mss.exact", p, NULL);
			break;
		case SZ_HALF:
			ev_note(s->ctx->em, "sticky.mss.cut_half_window", p, NULL);
			break;
		case SZ_EDGE:
			ev_note(s->ctx->em, "sticky.mss.cut_window", p, NULL);
			break;
		default:
			ev_note(s->ctx->em, "sticky.mss.cut_unknown", p, NULL);
			break;
		}
	}
}

/* 1 when the capture saw everything: the observer's capture report found
 * it complete, no frame was dropped by the kernel, none left out for lack of
 * room, every byte sent seen on the wire. Else a note says what is missing,
 * and no verdict is drawn from the lanes. */
static int capture_complete(struct sticky *s)
{
	uint64_t drops = obs_capture_drops(s->obs);

	if (!s->wire_incomplete && !drops && !s->segs_lost && s->seg_bytes >= s->send_bytes)
		return 1;
	ev_note(s->ctx->em, "sticky.verdict.incomplete",
		json_pack("{s:I, s:I, s:I, s:I}", "drops", (json_int_t)drops, "lost",
			  (json_int_t)s->segs_lost, "wire_bytes", (json_int_t)s->seg_bytes,
			  "send_bytes", (json_int_t)s->send_bytes),
		NULL);
	return 0;
}

static void verdict(struct sticky *s)
{
	struct lab_ctx *ctx = s->ctx;
	int segs = data_segments(s), k;
	json_t *np;

	for (k = 0; k < s->count; k++)
		if (s->recv_msgs[k] > 1)
			s->n_msgs_split++;
	np = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "messages", s->count, "sends",
		       s->n_send, "segments", segs, "recvs", s->n_recv, "glued", s->n_recv_glued,
		       "split", s->n_msgs_split, "coalesced", s->n_seg_multi_send);
	if (!capture_complete(s)) {
		s->wire_incomplete = 1;
		json_decref(np);
		return;
	}
	if (s->mode == MODE_UDP) {
		if (s->n_recv == s->n_send)
			ev_note(ctx->em, "sticky.udp.kept", np, NULL);
		else
			ev_note(ctx->em, "sticky.udp.lost", np, NULL);
		return;
	}
	if (s->n_seg_multi_send > 0) {
		ev_note(ctx->em, "sticky.verdict.wire", json_incref(np), NULL);
		explain_wire(s);
	} else {
		explain_wire(s); /* hold events only: no merged segment, no cause note */
		if (s->n_recv_glued > 0) {
			ev_note(ctx->em, "sticky.verdict.receiver", json_incref(np), NULL);
			explain_receiver(s);
			if (!s->nodelay)
				ev_note(ctx->em, "sticky.cause.not_nagle", NULL, NULL);
		}
	}
	if (segs > s->n_send)
		ev_note(ctx->em, "sticky.verdict.segmented",
			json_pack("{s:i, s:i}", "sends", s->n_send, "segments", segs), NULL);
	explain_sizes(s);
	if (s->n_msgs_split > 0)
		ev_note(ctx->em, "sticky.verdict.split", json_incref(np), NULL);
	if (!s->n_seg_multi_send && !s->n_recv_glued && !s->n_msgs_split)
		ev_note(ctx->em, "sticky.verdict.kept", json_incref(np), NULL);
	json_decref(np);
	if (s->mode == MODE_FRAMED) {
		if (s->framed_err && s->mismatch)
			ev_note(ctx->em, "sticky.framed.mismatch",
				json_pack("{s:s}", "error", s->framed_errmsg), NULL);
		else if (s->framed_err)
			ev_note(ctx->em, "sticky.framed.error",
				json_pack("{s:s}", "error", s->framed_errmsg), NULL);
		else
			ev_note(ctx->em, "sticky.framed.ok",
				json_pack("{s:i, s:i}", "messages", s->framed_ok, "recvs",
					  s->n_recv), NULL);
	}
}

static void fill_summary(struct sticky *s)
{
	json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I}",
			      "mode", mode_choices[s->mode], "network",
			      s->ctx->net ? "two-hosts" : "loopback", "messages", s->count,
			      "sends", s->n_send, "segments", data_segments(s), "recvs", s->n_recv,
			      "glued_recvs", s->n_recv_glued, "split_messages", s->n_msgs_split,
			      "coalesced_segments", s->n_seg_multi_send, "stream_bytes",
			      (json_int_t)s->total, "send_bytes", (json_int_t)s->send_bytes,
			      "wire_bytes", (json_int_t)s->seg_bytes, "recv_bytes",
			      (json_int_t)s->recv_bytes);

	if (s->mode != MODE_UDP)
		json_object_set_new(j, "boundaries_lost",
				    json_string(s->wire_incomplete ? "unknown"
						: s->n_seg_multi_send ? "wire"
						: s->n_recv_glued ? "receiver"
						: s->n_msgs_split ? "split" : "none"));
	if (s->mode == MODE_FRAMED) {
		json_object_set_new(j, "framed_messages", json_integer(s->framed_ok));
		if (s->framed_err)
			json_object_set_new(j, "framing_error", json_string(s->framed_errmsg));
	}
	if (s->mode != MODE_UDP) {
		json_t *held = json_object(), *wire = json_object();
		int c;

		for (c = HOLD_NAGLE; c < HOLD_N; c++) {
			if (s->causes[c])
				json_object_set_new(held, hold_names[c], json_integer(s->causes[c]));
			if (s->merged[c])
				json_object_set_new(wire, hold_names[c], json_integer(s->merged[c]));
		}
		json_object_set_new(j, "held_segments", held);
		json_object_set_new(j, "wire_causes", wire);
	}
	if (s->mode != MODE_UDP && s->mode != MODE_SERVER)
		json_object_set_new(j, "offload_off", json_boolean(s->offload_off));
	if (s->ctx->pcap_path)
		json_object_set_new(j, "pcap", json_string(s->ctx->pcap_path));
	json_object_update(s->ctx->summary, j);
	json_decref(j);
}

static int pick_server(struct sticky *s)
{
	uint8_t rnd[3];

	memset(&s->srv, 0, sizeof s->srv);
	s->srv.sin_family = AF_INET;
	if (s->ctx->net) {
		s->srv.sin_addr.s_addr = htonl(net_addr(s->ctx->net, NET_SERVER));
	} else {
		if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
			return -EIO;
		/* A random 127.x.y.z: the capture's filter names this run alone. */
		s->srv.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(1 + rnd[0] % 254) << 16 |
					       (uint32_t)(1 + rnd[1] % 254) << 8 |
					       (1 + rnd[2] % 254));
	}
	inet_ntop(AF_INET, &s->srv.sin_addr, s->srv_ip, sizeof s->srv_ip);
	return 0;
}

static int open_listener(struct sticky *s)
{
	struct lab_ctx *ctx = s->ctx;
	socklen_t sl = sizeof s->srv;
	int rc;

	rc = net_enter(ctx->net, NET_SERVER);
	if (rc == 0)
		rc = s->lfd = lsock_socket(ctx, W_LISTEN, AF_INET,
					   s->mode == MODE_UDP ? SOCK_DGRAM : SOCK_STREAM);
	if (rc >= 0)
		rc = lsock_bind(ctx, W_LISTEN, s->lfd, (struct sockaddr *)&s->srv, sizeof s->srv);
	if (rc >= 0 && s->mode != MODE_UDP)
		rc = lsock_listen(ctx, W_LISTEN, s->lfd, 4);
	if (rc >= 0 && getsockname(s->lfd, (struct sockaddr *)&s->srv, &sl) < 0)
		rc = -errno;
	return rc < 0 ? rc : 0;
}

/* ---- mode=server: a framing server for a student's own client ---- */

#define BYO_MAX_CONNS 50
#define BYO_BUF 4096
#define BYO_MAX_REQS 64

/* Answer one request: a framed reply that reports what was received. The
 * request is data, never a command: nothing is executed. */
static int byo_reply(struct sticky *s, int fd, int conn, int req, const uint8_t *data, size_t n,
		     int recv_i)
{
	struct lab_ctx *ctx = s->ctx;
	json_t *body = json_pack("{s:i, s:i, s:I, s:o, s:s}", "request", req, "recv", recv_i,
				 "bytes", (json_int_t)n, "text", lsock_preview(data, n, 200), "note",
				 "socklab never runs requests as commands; this reply reports what "
				 "it received");
	char *btxt = json_dumps(body, JSON_COMPACT);
	char hdr[160];
	uint8_t pre[FRM_PREFIX];
	size_t bl, total;
	int hl;
	uint8_t *out;
	ssize_t w;

	json_decref(body);
	if (!btxt)
		return -ENOMEM;
	bl = strlen(btxt);
	hl = snprintf(hdr, sizeof hdr,
		      "{\"total_size\":%zu,\"request\":%d,\"format\":\"%s\",\"content_type\":"
		      "\"application/json\"}", bl, req, frm_fmt_name(s->send_fmt));
	frm_put_prefix(s->send_fmt, (uint32_t)hl, pre);
	total = FRM_PREFIX + (size_t)hl + bl;
	out = malloc(total);
	if (!out) {
		free(btxt);
		return -ENOMEM;
	}
	memcpy(out, pre, FRM_PREFIX);
	memcpy(out + FRM_PREFIX, hdr, (size_t)hl);
	memcpy(out + FRM_PREFIX + hl, btxt, bl);
	free(btxt);
	w = lsock_send_all(ctx, (struct lsock_who){"server", conn}, fd, out, total, 10000);
	free(out);
	ev_emit(ctx->em, "reply",
		json_pack("{s:i, s:i, s:o, s:s, s:i, s:s, s:I}", "conn", conn, "request", req,
			  "header_hex", hex_json(pre, FRM_PREFIX), "format",
			  frm_fmt_name(s->send_fmt), "header_len", hl, "header", hdr, "total_size",
			  (json_int_t)bl));
	return w < 0 ? (int)w : 0;
}

/* One connection: every recv() return is shown; its bytes are split into
 * requests at newlines, and bytes without a newline form one request (the
 * notes' client sends a bare command and waits). Two requests in one recv()
 * are glued: the view says so. */
static int byo_conn(struct sticky *s, int fd, int conn, int64_t *last_us)
{
	struct lab_ctx *ctx = s->ctx;
	struct lsock_who w = {"server", conn};
	uint8_t buf[BYO_BUF];
	int recv_i = 0, req = 0, rc = 0;

	for (;;) {
		ssize_t n = lsock_recv(ctx, w, fd, buf, sizeof buf, (int)lab_int(ctx->p, "idle_timeout") * 1000);
		size_t a = 0, i;
		int nreq = 0;
		json_t *reqs;

		if (n <= 0) {
			rc = n == 0 || n == -ETIMEDOUT || n == -ECONNRESET ? 0 : (int)n;
			break;
		}
		*last_us = ev_now_us(ctx->em);
		reqs = json_array();
		for (i = 0; i <= (size_t)n; i++) {
			if (i < (size_t)n && buf[i] != '\n')
				continue;
			{
				size_t e = i, b = a;

				if (e > b && buf[e - 1] == '\r')
					e--;
				if (e > b && nreq < BYO_MAX_REQS) {
					json_array_append_new(reqs, json_pack("{s:I, s:I, s:o}", "from",
									      (json_int_t)b, "to",
									      (json_int_t)e, "text",
									      lsock_preview(buf + b, e - b, 80)));
					nreq++;
				}
			}
			a = i + 1;
		}
		ev_emit(ctx->em, "request",
			json_pack("{s:i, s:i, s:I, s:O, s:b}", "conn", conn, "recv", recv_i, "bytes",
				  (json_int_t)n, "requests", reqs, "glued", nreq > 1));
		if (nreq > 1)
			ev_note(ctx->em, "sticky.byo.glued",
				json_pack("{s:i, s:i, s:i}", "conn", conn, "recv", recv_i,
					  "requests", nreq), NULL);
		for (i = 0; i < json_array_size(reqs); i++) {
			json_t *r = json_array_get(reqs, i);
			size_t b = (size_t)json_integer_value(json_object_get(r, "from"));
			size_t e = (size_t)json_integer_value(json_object_get(r, "to"));

			rc = byo_reply(s, fd, conn, req++, buf + b, e - b, recv_i);
			if (rc < 0)
				break;
		}
		json_decref(reqs);
		recv_i++;
		if (rc < 0)
			break;
	}
	lsock_close(ctx, w, fd);
	return rc == -ECANCELED ? rc : 0;
}

static int byo_run(struct sticky *s)
{
	struct lab_ctx *ctx = s->ctx;
	struct sockaddr_storage ss;
	socklen_t sl;
	int idle_ms = (int)lab_int(ctx->p, "idle_timeout") * 1000, conns = 0, rc;
	int64_t last_us;
	char err[200];

	if (net_server_addr(ctx, &ss, &sl) < 0)
		return -EINVAL; /* check() already refused this */
	s->lfd = lsock_socket(ctx, W_LISTEN, ss.ss_family, SOCK_STREAM);
	if (s->lfd < 0)
		return s->lfd;
	lsock_setsockopt_int(ctx, W_LISTEN, s->lfd, SOL_SOCKET, SO_REUSEADDR, 1);
	rc = lsock_bind(ctx, W_LISTEN, s->lfd, (struct sockaddr *)&ss, sl);
	if (rc == 0)
		rc = lsock_listen(ctx, W_LISTEN, s->lfd, 4);
	if (rc < 0) {
		snprintf(err, sizeof err, "the server could not listen on %s port %lld: %s",
			 lab_str(ctx->p, "bind"), lab_int(ctx->p, "port"), strerror(-rc));
		ev_error(ctx->em, rc == -EADDRINUSE ? "port_in_use" : "listen_failed",
			 rc == -EADDRINUSE ? "port" : NULL, err);
		return rc;
	}
	sl = sizeof ss;
	getsockname(s->lfd, (struct sockaddr *)&ss, &sl);
	{
		json_t *a = lsock_addr_json((struct sockaddr *)&ss);

		json_object_set_new(a, "who", json_string("server"));
		json_object_set_new(a, "byo", json_true());
		json_object_set_new(a, "format", json_string(frm_fmt_name(s->send_fmt)));
		ev_emit(ctx->em, "listening", a);
	}
	ev_note(ctx->em, "sticky.byo.ready",
		json_pack("{s:s, s:I, s:s}", "addr", lab_str(ctx->p, "bind"), "port",
			  (json_int_t)ntohs(((struct sockaddr_in *)&ss)->sin_port), "format",
			  frm_fmt_name(s->send_fmt)), NULL);
	ev_note(ctx->em, "sticky.byo.no_exec", NULL, NULL);
	last_us = ev_now_us(ctx->em);
	while (conns < BYO_MAX_CONNS) {
		int left = idle_ms - (int)((ev_now_us(ctx->em) - last_us) / 1000), fd;

		if (left <= 0) {
			ev_note(ctx->em, "sticky.byo.idle_stop",
				json_pack("{s:i}", "idle_s", idle_ms / 1000), NULL);
			break;
		}
		rc = lab_wait_fd(ctx, s->lfd, POLLIN, left);
		if (rc == 0)
			continue;
		if (rc < 0)
			return rc;
		fd = lsock_accept(ctx, W_LISTEN, s->lfd, NULL, 1000);
		if (fd < 0)
			continue;
		conns++;
		rc = byo_conn(s, fd, conns, &last_us);
		if (rc < 0)
			return rc;
		last_us = ev_now_us(ctx->em);
	}
	json_object_set_new(ctx->summary, "connections", json_integer(conns));
	return 0;
}

static int sticky_run(struct lab_ctx *ctx)
{
	const struct lab_params *p = ctx->p;
	struct sticky *s = calloc(1, sizeof *s);
	uint8_t *stream = NULL;
	pthread_t rt;
	int rc, started = 0;

	if (!s) {
		ev_error(ctx->em, "internal", NULL, "out of memory");
		return -ENOMEM;
	}
	s->ctx = ctx;
	s->lfd = -1;
	s->mode = (enum mode)lab_int(p, "mode");
	s->count = (int)lab_int(p, "count");
	s->size = (int)lab_int(p, "size");
	s->nodelay = (int)lab_int(p, "nodelay");
	s->cork = (int)lab_int(p, "cork");
	s->gap_ms = (int)lab_int(p, "gap_ms");
	s->recv_delay_ms = (int)lab_int(p, "recv_delay_ms");
	s->bufsize = (int)lab_int(p, "bufsize");
	s->mss = (int)lab_int(p, "mss");
	s->mismatch = (int)lab_int(p, "mismatch");
	s->recv_fmt = (enum frm_fmt)lab_int(p, "header");
	s->send_fmt = s->mismatch ? FRM_NATIVE : s->recv_fmt;
	if (s->mismatch)
		s->recv_fmt = FRM_NET;
	pthread_mutex_init(&s->lock, NULL);
	if (s->mode == MODE_SERVER) {
		rc = byo_run(s);
		if (s->lfd >= 0)
			lsock_close(ctx, W_LISTEN, s->lfd);
		json_object_set_new(ctx->summary, "mode", json_string("server"));
		pthread_mutex_destroy(&s->lock);
		free(s);
		return rc == -ECANCELED ? 0 : rc;
	}
	s->segs = calloc(MAX_SEGS, sizeof *s->segs);
	/* A send() may take part of a message: at most one call per MSS-ish piece. */
	s->send_end = calloc(MAX_SENDS, sizeof *s->send_end);
	s->snap_before = calloc(MAX_SENDS, sizeof *s->snap_before);
	s->snap_after = calloc(MAX_SENDS, sizeof *s->snap_after);
	s->cli_wscale = s->srv_wscale = -1;
	s->first_glued_recv = -1;
	stream = s->segs && s->send_end && s->snap_before && s->snap_after ? build_stream(s)
									     : NULL;
	if (!stream) {
		rc = -ENOMEM;
		ev_error(ctx->em, "internal", NULL, "out of memory");
		goto out;
	}
	rc = pick_server(s);
	if (rc == 0)
		rc = open_listener(s);
	if (rc < 0) {
		if (rc != -ECANCELED)
			ev_error(ctx->em, "lab_failed", NULL, "could not open the receiver's socket");
		goto out;
	}
	if (s->mode == MODE_FRAMED) {
		json_t *fp = json_pack("{s:s, s:s}", "send", frm_fmt_name(s->send_fmt), "recv",
				       frm_fmt_name(s->recv_fmt));

		if (s->mismatch)
			ev_note(ctx->em, "sticky.framed.mismatch_setup", fp, NULL);
		else
			ev_note(ctx->em, "sticky.framed.setup", fp, NULL);
	}
	rc = open_observer(s);
	if (rc < 0)
		goto out;
	if (pthread_create(&rt, NULL, receiver, s) != 0) {
		rc = -EAGAIN;
		ev_error(ctx->em, "internal", NULL, "could not start the receiver thread");
		goto out;
	}
	started = 1;
	/* This thread is the sender, on the client host (open_observer entered it). */
	rc = sender(s, stream);
	if (rc < 0 && rc != -ECANCELED)
		fail(s);
	pthread_join(rt, NULL);
	started = 0;
	if (s->failed && !lab_cancelled(ctx)) {
		rc = -EIO;
		ev_error(ctx->em, "lab_failed", NULL,
			 "a socket call failed unexpectedly; see the failed call above");
		goto out;
	}
	if (lab_cancelled(ctx)) {
		rc = -ECANCELED;
		goto out;
	}
	wait_wire(s, s->send_bytes);
	obs_stop(s->obs); /* the last frames, delivered before the verdict */
	s->wire_incomplete = obs_capture_report(s->obs, ctx->em, ctx->summary) == 0;
	verdict(s);
out:
	if (started)
		pthread_join(rt, NULL);
	obs_destroy(s->obs);
	if (s->lfd >= 0)
		lsock_close(ctx, W_LISTEN, s->lfd);
	fill_summary(s);
	pthread_mutex_destroy(&s->lock);
	free(stream);
	free(s->segs);
	free(s->send_end);
	free(s->snap_before);
	free(s->snap_after);
	free(s);
	return rc == -ECANCELED ? 0 : rc;
}

static int sticky_check(const struct lab_params *p, const char **param, char *err, size_t errlen)
{
	int mode = (int)lab_int(p, "mode");
	long long mss = lab_int(p, "mss");

	if (lab_int(p, "count") * lab_int(p, "size") > (long long)MAX_TOTAL) {
		*param = "size";
		snprintf(err, errlen, "parameter 'size': count x size must stay within %u bytes",
			 MAX_TOTAL);
		return -EINVAL;
	}
	if (mss > 0 && mss < 88) {
		*param = "mss";
		snprintf(err, errlen, "parameter 'mss': 0 (the kernel's choice) or 88 to 32767");
		return -EINVAL;
	}
	if (mode == MODE_UDP && lab_int(p, "size") > 65507) {
		*param = "size";
		snprintf(err, errlen, "parameter 'size': a UDP datagram carries at most 65507 bytes");
		return -EINVAL;
	}
	if (mode == MODE_UDP && (lab_int(p, "nodelay") || lab_int(p, "cork") || mss)) {
		*param = lab_int(p, "nodelay") ? "nodelay" : lab_int(p, "cork") ? "cork" : "mss";
		snprintf(err, errlen, "parameter '%s': a TCP option; mode=udp has no TCP", *param);
		return -EINVAL;
	}
	if (mode == MODE_SERVER) {
		struct sockaddr_storage ss;
		socklen_t sl;

		if (lsock_parse_addr(lab_str(p, "bind"), 0, &ss, &sl) < 0) {
			*param = "bind";
			snprintf(err, errlen, "parameter 'bind': must be an IPv4 or IPv6 address "
				 "literal");
			return -EINVAL;
		}
		if (lab_int(p, "network") != 0) {
			*param = "network";
			snprintf(err, errlen, "parameter 'network': mode=server runs on the host's "
				 "network so that your own client can reach it; use network=loopback");
			return -EINVAL;
		}
		if (lab_int(p, "mismatch")) {
			*param = "mismatch";
			snprintf(err, errlen, "parameter 'mismatch': not used with mode=server (your "
				 "client chooses how it reads the header)");
			return -EINVAL;
		}
		return net_params_check(p, param, err, errlen) < 0 ? -EINVAL : 0;
	}
	if (lab_int(p, "port") || lab_is_set(p, "bind")) {
		*param = lab_int(p, "port") ? "port" : "bind";
		snprintf(err, errlen, "parameter '%s': only with mode=server", *param);
		return -EINVAL;
	}
	if (mode != MODE_FRAMED && (lab_int(p, "mismatch") || lab_int(p, "header") != 0)) {
		*param = lab_int(p, "mismatch") ? "mismatch" : "header";
		snprintf(err, errlen, "parameter '%s': only with mode=framed", *param);
		return -EINVAL;
	}
	if (lab_int(p, "mismatch") && lab_int(p, "header") != 0) {
		*param = "header";
		snprintf(err, errlen, "parameter 'header': mismatch=true sends i and reads !I; "
			 "leave header at !I");
		return -EINVAL;
	}
	if (net_params_check(p, param, err, errlen) < 0)
		return -EINVAL;
	return 0;
}

/* ---- the CLI's text lanes ---- */

static void msgs_text(const json_t *msgs, char *buf, size_t len)
{
	size_t i, off = 0;
	const json_t *m;

	buf[0] = '\0';
	json_array_foreach(msgs, i, m) {
		long long k = json_integer_value(json_object_get(m, "msg"));
		int whole = json_is_true(json_object_get(m, "whole"));
		int n;

		if (whole)
			n = snprintf(buf + off, len - off, "%s#%lld", i ? " " : "", k);
		else
			n = snprintf(buf + off, len - off, "%s#%lld[%lld..%lld)", i ? " " : "", k,
				     json_integer_value(json_object_get(m, "from")),
				     json_integer_value(json_object_get(m, "to")));
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
}

static int sticky_format(const struct lab_params *p, const json_t *ev, char *buf, size_t len)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	char m[512], ck[256];
	long long t;

	if (!type)
		return -1;
	if (!strcmp(type, "syscall")) {
		const char *call = json_string_value(json_object_get(ev, "call"));
		/* The lanes say what send/recv did; keep the set-up calls. */
		if (call && (!strcmp(call, "send") || !strcmp(call, "recv") ||
			     !strcmp(call, "sendto") || !strcmp(call, "recvfrom")))
			return 0;
		return -1;
	}
	if (!strcmp(type, "message"))
		return snprintf(buf, len, "%10.3f  framing message #%lld: header %s read as %s = %lld, "
				"%s, body %lld bytes%s\n",
				(double)json_integer_value(json_object_get(ev, "t_us")) / 1000.0,
				json_integer_value(json_object_get(ev, "msg")),
				json_string_value(json_object_get(ev, "header_hex")),
				json_string_value(json_object_get(ev, "format")),
				json_integer_value(json_object_get(ev, "header_len")),
				json_string_value(json_object_get(ev, "header")),
				json_integer_value(json_object_get(ev, "total_size")),
				json_is_true(json_object_get(ev, "ok")) ? "" : " (not as sent)");
	if (!strcmp(type, "request")) {
		const json_t *rq = json_object_get(ev, "requests");
		size_t i, off;
		const json_t *r;

		off = (size_t)snprintf(buf, len, "%10.3f  server  conn %lld recv %lld: %lld bytes, %zu "
				       "request%s%s\n",
				       (double)json_integer_value(json_object_get(ev, "t_us")) / 1000.0,
				       json_integer_value(json_object_get(ev, "conn")),
				       json_integer_value(json_object_get(ev, "recv")),
				       json_integer_value(json_object_get(ev, "bytes")),
				       json_array_size(rq), json_array_size(rq) == 1 ? "" : "s",
				       json_is_true(json_object_get(ev, "glued")) ? " (glued)" : "");
		json_array_foreach(rq, i, r) {
			int n;

			if (off >= len)
				break;
			n = snprintf(buf + off, len - off, "                    request: %s\n",
				     json_string_value(json_object_get(r, "text")));
			if (n < 0)
				break;
			off += (size_t)n;
		}
		return off < len ? (int)off : (int)len - 1;
	}
	if (!strcmp(type, "reply"))
		return snprintf(buf, len, "%10.3f  server  conn %lld reply to request %lld: header %s "
				"(%s) = %lld, %s, body %lld bytes\n",
				(double)json_integer_value(json_object_get(ev, "t_us")) / 1000.0,
				json_integer_value(json_object_get(ev, "conn")),
				json_integer_value(json_object_get(ev, "request")),
				json_string_value(json_object_get(ev, "header_hex")),
				json_string_value(json_object_get(ev, "format")),
				json_integer_value(json_object_get(ev, "header_len")),
				json_string_value(json_object_get(ev, "header")),
				json_integer_value(json_object_get(ev, "total_size")));
	if (!strcmp(type, "frame_error"))
		return snprintf(buf, len, "%10.3f  framing error at byte %lld: header %s read as %s: "
				"%s\n",
				(double)json_integer_value(json_object_get(ev, "t_us")) / 1000.0,
				json_integer_value(json_object_get(ev, "at")),
				json_string_value(json_object_get(ev, "header_hex")),
				json_string_value(json_object_get(ev, "format")),
				json_string_value(json_object_get(ev, "message")));
	if (!strcmp(type, "hold")) {
		const char *rel = json_string_value(json_object_get(ev, "release"));
		char by[48];

		if (rel && !strcmp(rel, "ack"))
			snprintf(by, sizeof by, "ACK segment %lld",
				 json_integer_value(json_object_get(ev, "ack_seg")));
		else
			snprintf(by, sizeof by, "%s", rel ? rel : "?");
		return snprintf(buf, len, "%10s  held    segment %-3lld waited %lld us after send %lld: "
				"%s (cwnd %lld, in flight %lld, not sent %lld, window %lld, mss %lld); "
				"released by %s\n",
				json_string_value(json_object_get(ev, "seg_ms")),
				json_integer_value(json_object_get(ev, "seg")),
				json_integer_value(json_object_get(ev, "wait_us")),
				json_integer_value(json_object_get(ev, "send")),
				json_string_value(json_object_get(ev, "cause")),
				json_integer_value(json_object_get(ev, "cwnd")),
				json_integer_value(json_object_get(ev, "in_flight")),
				json_integer_value(json_object_get(ev, "held")),
				json_integer_value(json_object_get(ev, "snd_wnd")),
				json_integer_value(json_object_get(ev, "mss")), by);
	}
	if (strcmp(type, "send") && strcmp(type, "segment") && strcmp(type, "recv"))
		return -1;
	dec_checksums_text(json_object_get(ev, "checksums"), ck, sizeof ck);
	if (!strcmp(type, "segment") && json_is_string(json_object_get(ev, "dir")) &&
	    !strcmp(json_string_value(json_object_get(ev, "dir")), "s2c"))
		return snprintf(buf, len, "%10.3f  wire    ack     %-3lld %-4s ack %-7lld win %lld%s%s%s\n",
				(double)json_integer_value(json_object_get(ev, "t_wire_us")) / 1000.0,
				json_integer_value(json_object_get(ev, "i")),
				json_string_value(json_object_get(ev, "flags")),
				json_integer_value(json_object_get(ev, "ack")),
				json_integer_value(json_object_get(ev, "win")), ck[0] ? "  [" : "", ck,
				ck[0] ? "]" : "");
	msgs_text(json_object_get(ev, "msgs"), m, sizeof m);
	t = json_integer_value(json_object_get(ev, !strcmp(type, "segment") ? "t_wire_us"
							    : "t_call_us"));
	if (!strcmp(type, "segment"))
		return snprintf(buf, len, "%10.3f  wire    segment %-3lld %-4s %6lld bytes at %-7lld %s%s%s%s%s\n",
				(double)t / 1000.0, json_integer_value(json_object_get(ev, "i")),
				json_string_value(json_object_get(ev, "flags"))
					? json_string_value(json_object_get(ev, "flags")) : "udp",
				json_integer_value(json_object_get(ev, "bytes")),
				json_integer_value(json_object_get(ev, "offset")), m,
				json_is_true(json_object_get(ev, "retransmit")) ? " (retransmit)"
										 : "",
				ck[0] ? "  [" : "", ck, ck[0] ? "]" : "");
	return snprintf(buf, len, "%10.3f  %-7s %-7s %-3lld %6lld bytes at %-7lld %s\n",
			(double)t / 1000.0, !strcmp(type, "send") ? "sender" : "receiver", type,
			json_integer_value(json_object_get(ev, "i")),
			json_integer_value(json_object_get(ev, "bytes")),
			json_integer_value(json_object_get(ev, "offset")), m);
}

static enum lab_net sticky_network(const struct lab_params *p)
{
	return lab_int(p, "mode") == MODE_SERVER ? LAB_NET_HOST : LAB_NET_PRIVATE;
}

const struct lab_desc lab_sticky = {
	.name = "sticky",
	.title = "Sticky packets (message boundaries)",
	.summary = "Several send() calls, the TCP segments on the wire and the receiver's recv() "
		   "returns on one time axis: where message boundaries are lost, and framing that "
		   "restores them.",
	.params = sticky_params,
	.n_params = sizeof sticky_params / sizeof sticky_params[0],
	.check = sticky_check,
	.network = sticky_network,
	.captures = 1,
	.run = sticky_run,
	.format = sticky_format,
};
