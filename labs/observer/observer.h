/* observer.h: one observer per lab run: the captures on the run's interfaces, the kernel's TCP states (tracepoint, sock_diag, TCP_INFO) and the lab's own records, merged into one time-ordered live stream. */
#ifndef SOCKLAB_OBSERVER_H
#define SOCKLAB_OBSERVER_H

#include <jansson.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/capture.h"
#include "decode/decode.h"

/*
 * A lab describes the exercise; the observer watches it. It owns:
 *  - the captures: the run's loopback (one capture point), or on two hosts
 *    each host's eth0 (every segment is seen leaving one host and reaching
 *    the other);
 *  - the kernel's TCP state sources for the sockets the lab names (struct
 *    obs_sock): the sock:inet_sock_set_state tracepoint (transitions, with
 *    the kernel's own timestamps), NETLINK_SOCK_DIAG sampled every
 *    OBS_DIAG_EVERY_MS in each host (states and timers, TIME_WAIT included)
 *    and TCP_INFO read when the lab asks (obs_tcp_info: the fallback
 *    without the tracepoint);
 *  - records the lab queues itself (obs_record);
 *  - the socket calls the lab's threads make (labs/sock.c): while a live
 *    observer runs, the emitter holds their records (event.h: deferred
 *    records) and the observer emits each `syscall` event in its place, by
 *    the time the call returned.
 * A thread reads them all and hands every item to the lab's callback in the
 * order of its timestamp (CLOCK_MONOTONIC, the run clock), a couple of
 * milliseconds behind real time so that every source has been read up to
 * that instant. So the stream has calls, segments and kernel states in the
 * order they happened (a call by when it returned, a segment and a state by
 * the kernel's stamp, t_kernel_us).
 *
 * States only as observed. The observer emits the kernel-state events
 * itself, one rule for every lab:
 *  - `state` {who, from, to, source:"tracepoint", kind:"transition"}: only
 *    the tracepoint reports transitions.
 *  - `observation` {who, state, source:"sock_diag"|"tcp_info", kind:"sample",
 *    listed:true and t_from_us (sock_diag), timer, timer_ms}: a sample saw
 *    the socket in that state (sock_diag: at some instant between t_from_us,
 *    when its dump began, and t_kernel_us, when it returned). A sample older
 *    than a transition the tracepoint reported inside that window is not
 *    shown (it would put the socket back in a state it had left).
 *    Emitted when it tells something new (the state differs from the last
 *    one any kernel source gave). Never a transition: nobody saw the change.
 *  - `observation` {who, source:"sock_diag", listed:false, last_state,
 *    reason, evidence, last_listed_us}: a socket sock_diag listed before is
 *    gone. reason: "rst" (an RST reached it after it was last listed:
 *    evidence names the segment), "timer_expired" (its timer had run out),
 *    "reused" (a SYN for the same addresses and ports), or "not_listed"
 *    (nothing this run saw explains it).
 *  - `timer` {who, state, timer, ms_left, source:"sock_diag"} about once a
 *    second while sock_diag lists the socket with a TIME_WAIT (or FIN_WAIT2)
 *    timer, and a last one {stopped:true, reason} when the socket is gone.
 * Before emitting each of these, the observer calls the lab's callback with
 * the item; what the callback returns (a new JSON object, or NULL) is added
 * to the event (the handshake lab adds the segment number it follows).
 * Frames and records are the lab's to emit (obs_segment_json builds the
 * common fields of a `segment` event).
 *
 * Threads: the callback runs on the observer's thread while it runs, then on
 * the thread that calls obs_stop (which delivers what is left). obs_tcp_info
 * and obs_record may be called from any thread.
 *
 * A lab's use, in short (labs/handshake is the full example):
 *
 *	struct obs_sock socks[] = {{"client", cli_addr, srv_addr, cport, sport, NET_CLIENT}};
 *	struct obs_config cfg = {.ctx = ctx, .filter = "tcp port 5000",
 *				 .trace_filter = "sport == 5000 || dport == 5000",
 *				 .socks = socks, .n_socks = 1, .fn = on_item, .arg = lab,
 *				 .pcap_path = ctx->pcap_path};
 *	if (obs_start(&o, &cfg) < 0)    // the error event is already emitted
 *		return -1;
 *	... the exercise; obs_tcp_info(o, 0, fd) after calls, when wanted ...
 *	obs_stop(o);                   // everything delivered
 *	... verdicts from what on_item saw; obs_final_state(o, 0, &fin) ...
 *	obs_destroy(o);
 *
 * on_item(arg, ev): OBS_FRAME -> decode is done (ev->pkt); emit a segment
 * (obs_segment_json + the lab's own fields), obs_pcap_write the frames the
 * file should hold; kernel-state kinds -> return extra fields or NULL.
 * Without sockets to watch (n_socks 0) the observer is a capture merger
 * only: no sock_diag, no tracepoint events delivered.
 */

#define OBS_MAX_SOCKS 8
/* Sockets in all, those obs_watch adds included. */
#define OBS_MAX_WATCH 64
#define OBS_DIAG_EVERY_MS 100

/* Where a state came from. */
enum obs_src { OBS_SRC_TRACEPOINT, OBS_SRC_SOCK_DIAG, OBS_SRC_TCP_INFO, OBS_SRC_RFC_MODEL };

/* "tracepoint", "sock_diag", "tcp_info", "rfc-model". */
const char *obs_src_name(int src);

/* A socket to watch (IPv4). Addresses in network byte order, ports in host
 * order. A listener has rport 0 and raddr 0. */
struct obs_sock {
	const char *who; /* the events' "who": "client", "server", "listener" (static) */
	struct in_addr laddr, raddr;
	uint16_t lport, rport;
	int host; /* two hosts: the namespace it lives in (NET_CLIENT, NET_SERVER) */
};

/* What a lab that learns of a socket while running (obs_watch) also knows
 * of it. The tracepoint sees every namespace, so it is told which of its
 * events can be this socket's: none stamped before from_ns. A connect()'s
 * CLOSE -> SYN_SENT comes before the kernel picks the local port (sport 0):
 * such an event is matched by the peer's address and port only inside
 * [from_ns, until_ns] (the connect() call). A socket with lport 0 and
 * rport set is a connecting socket whose local port was never known (a
 * refused connect()): every event is matched by the peer, inside that
 * window. */
struct obs_watch_opts {
	int64_t from_ns, until_ns;
	unsigned flags; /* OBS_SOCK_* */
};

/* The tracepoint cannot tell this socket from one with the same addresses
 * and ports in another run's namespace (a listener on 0.0.0.0, a
 * connection between two 127.0.0.1 ends): watch it with sock_diag only,
 * which reads the run's own namespaces. */
#define OBS_SOCK_NO_TRACE 1u

enum obs_kind {
	OBS_FRAME,      /* a captured frame, decoded */
	OBS_TRANSITION, /* the tracepoint reported from -> to */
	OBS_SEEN,       /* a sample saw the socket in state `to` (from: the last state known) */
	OBS_GONE,       /* sock_diag no longer lists a socket it listed */
	OBS_TIMER,      /* sock_diag's timer for a listed socket (about once a second) */
	OBS_RECORD,     /* something the lab queued with obs_record() */
	OBS_CALL,       /* internal, never given to the lab: a socket call the lab's
			 * threads recorded (labs/sock.c), emitted by the observer */
};

/* The evidence that ended a socket: the RST that reached it. */
struct obs_rst {
	int64_t t_ns; /* when it reached the socket's host */
	uint32_t seq, ack;
	uint16_t flags;
};

struct obs_event {
	enum obs_kind kind;
	int64_t t_ns; /* CLOCK_MONOTONIC: the kernel's stamp, or when a sample returned */
	/* OBS_FRAME */
	const struct cap_frame *frame;
	const struct dec_packet *pkt;
	int host; /* two hosts: the capture's host (NET_CLIENT, NET_SERVER); -1: one capture point */
	/* kernel states */
	int sock; /* index into the lab's obs_sock array */
	int from, to, src;
	int timer;         /* TCPST_TIMER_* */
	uint32_t timer_ms; /* time left on it */
	int64_t from_ns;   /* OBS_SEEN: the sample saw it somewhere in [from_ns, t_ns] */
	/* OBS_GONE and a stopped timer */
	int last_state;
	const char *reason; /* "rst", "timer_expired", "reused", "not_listed" */
	const struct obs_rst *rst; /* reason "rst": the segment, else NULL */
	int64_t last_listed_ns;
	/* OBS_RECORD */
	void *rec;
};

/* Called in timestamp order for every item. For kernel-state items the
 * return value (a new JSON object, or NULL) is merged into the event the
 * observer emits; for frames and records return NULL. */
typedef json_t *(*obs_fn)(void *arg, const struct obs_event *ev);

/* Frees a record queued with obs_record once delivered (or never delivered). */
typedef void (*obs_free_fn)(void *rec);

struct lab_ctx;

struct obs_config {
	struct lab_ctx *ctx;     /* the run: its emitter, its network (ctx->net: two hosts) */
	const char *filter;      /* capture filter, tcpdump syntax */
	const char *trace_filter; /* tracepoint filter, ftrace syntax; NULL: no tracepoint */
	const char *trace_filter_wide; /* tried when the kernel refuses trace_filter; may be NULL */
	const struct obs_sock *socks; /* copied */
	size_t n_socks;          /* at most OBS_MAX_SOCKS */
	obs_fn fn;
	void *arg;
	obs_free_fn free_rec;    /* may be NULL */
	const char *pcap_path;   /* a pcap file for obs_pcap_write (usually ctx->pcap_path); NULL: none */
	/* How far behind real time items are delivered (0: 2 ms, enough for the
	 * observer's own sources). A lab whose records come from another process
	 * (the own lab's shim) waits longer, so they still merge in time order. */
	int horizon_ms;
	/* 1: the lab adds sockets with obs_watch while the observer runs. Then
	 * tracepoint events are matched to sockets when they are delivered
	 * (horizon_ms after they happened), not when they are read, so a
	 * socket watched within that time is still given the transitions it made
	 * before the lab knew its addresses. */
	int watch_later;
};

struct obs;

/* Open the captures and the kernel sources and start the thread. Emits a
 * `capture` event (interfaces, filter) and, when the tracepoint is not
 * available, remembers why (obs_trace_error). On failure returns -errno
 * after emitting an `error` event (-EPERM: "no_capture_privilege") and
 * *out is NULL. */
int obs_start(struct obs **out, const struct obs_config *cfg);

/* Stop the thread, read every source one last time, take a last sock_diag
 * sample and deliver everything still queued. Safe to call twice. */
void obs_stop(struct obs *o);

/* Close everything. NULL is fine. */
void obs_destroy(struct obs *o);

/* 1 when the tracepoint reports transitions in this run. */
int obs_has_tracepoint(const struct obs *o);

/* Why the tracepoint is not available ("" when it is). */
const char *obs_trace_error(const struct obs *o);

/* The captures' link type (CAP_LINK_*). */
int obs_link(const struct obs *o);

/* Append a frame to the run's pcap file (cfg.pcap_path), flushed: the lab
 * chooses which frames (on two hosts, one copy of each). 0, or -EIO. */
int obs_pcap_write(struct obs *o, const struct cap_frame *f);

/* Frames the kernel dropped before any capture could read them. */
uint64_t obs_capture_drops(struct obs *o);

/* The captures' counters in run.end's summary and, when frames were
 * missed, the note capture.incomplete: cap_report() over this observer's
 * captures, items its own full queue refused counted as drops. After
 * obs_stop(). 1 complete, 0 frames missed (draw no verdict from the
 * segments), -1 no capture (a replay). */
int obs_capture_report(struct obs *o, struct ev_emitter *em, json_t *summary);

/* The tracepoint's lane, after obs_stop: 1 complete (it lost nothing), 0
 * incomplete (the kernel overwrote or dropped events in the slot's ring
 * before they were read, the reader could not parse some, or the
 * observer's full queue refused some: a transition may be missing, so
 * draw no conclusion from the transitions), -1 no tracepoint. */
int obs_trace_complete(struct obs *o);

/* run.end's summary field "tracepoint" ({available, events, lost, counted,
 * overrun, dropped, unreadable, refused, ring_stats, ring_kib, complete};
 * without the tracepoint {available: false, reason, lost: null, complete:
 * null}) and, when it lost events, the note tracepoint.incomplete (or
 * tracepoint.incomplete_uncounted when the kernel could not say how many).
 * After obs_stop. Returns what obs_trace_complete does. */
int obs_trace_report(struct obs *o, struct ev_emitter *em, json_t *summary);

/* Sample socket `sock` (open descriptor fd) with TCP_INFO now. Only without
 * the tracepoint (it is the fallback): a no-op when the tracepoint runs. */
void obs_tcp_info(struct obs *o, int sock, int fd);

/* Queue rec, stamped t_ns, to be delivered in time order (OBS_RECORD). The
 * observer owns rec from now on. A record is the lab's own evidence: when the
 * queue is full the calling thread waits for room (so whatever feeds the lab
 * waits too) rather than lose it. 0, or -ENOMEM (rec freed, counted in
 * obs_records_lost) only when even a wait of seconds and a spare allowance
 * did not make room. */
int obs_record(struct obs *o, int64_t t_ns, void *rec);

/* Records obs_record refused (see there): 0 unless the observer was stuck. */
uint64_t obs_records_lost(struct obs *o);

/* Watch one more socket, from now on, like one of cfg.socks (opts may be NULL;
 * cfg.watch_later
 * must be set). Any thread, while the observer runs (or offline). Returns
 * its index, the obs_event's sock for everything about it, or -ENOSPC when
 * OBS_MAX_WATCH sockets are watched already (the lab says so: its states go
 * unobserved), -EINVAL without watch_later. */
int obs_watch(struct obs *o, const struct obs_sock *s, const struct obs_watch_opts *opts);

/* A lab whose sockets come from another process's records (cfg.watch_later)
 * says up to when it has read every record sent: items are delivered
 * horizon_ms behind that instant (not behind now; at most 500 ms further
 * back, so a lab starved of CPU does not fill the queue), so a record may
 * reach the lab up to horizon_ms after its stamp and its socket is still
 * watched before its transitions are matched. Until the first call nothing is delivered; obs_stop delivers
 * everything. Any thread. */
void obs_caught_up(struct obs *o, int64_t t_ns);

/* A lab whose own threads learn their sockets' ports from the calls that
 * make them (a connect() or accept() returns them; cfg.watch_later) holds
 * delivery back from the instant such a call begins until it has watched
 * the socket: nothing stamped at or after t_ns is delivered (its
 * tracepoint events are matched when delivered) until obs_release(o, h).
 * A lab that does this and has no records from elsewhere says once that it
 * is always caught up: obs_caught_up(o, INT64_MAX). Returns the hold h, or
 * -ENOSPC when OBS_MAX_HOLDS are held (the lab's items are then matched as
 * they come: a socket watched late misses the transitions it made before).
 * Any thread. obs_stop delivers everything, held or not. */
#define OBS_MAX_HOLDS 8
int obs_hold(struct obs *o, int64_t t_ns);
void obs_release(struct obs *o, int h);

/* CPU time the observer's thread has used so far (ns), while it runs; -1
 * once stopped or when it cannot be read. What watching costs a run's CPUs. */
int64_t obs_cpu_ns(struct obs *o);

/* What the kernel sources last said of socket sock: the last state any of
 * them gave (src OBS_SRC_*, -1: none ever did) and when, whether the last
 * sock_diag sample (obs_stop takes one) still listed it, and when a socket
 * sock_diag had listed is gone, why. Read it once obs_stop has returned. */
struct obs_final {
	int state, src;
	int64_t t_ns;
	int listed_at_end;  /* 1: in the last sock_diag sample; 0: not */
	int ever_listed;
	const char *reason; /* gone: "rst", "timer_expired", "reused", "not_listed"; else NULL */
	int timer;          /* its last timer seen by sock_diag (TCPST_TIMER_*) */
	uint32_t timer_ms;
	int trace_incomplete; /* state came from the tracepoint, which lost events in
			       * this run: a later transition may be missing */
};
void obs_final_state(const struct obs *o, int sock, struct obs_final *out);

/* The common fields of a `segment` event for a decoded TCP frame (src, dst,
 * flags, flags_raw, flags_short, seq_raw, ack_raw, len, win, options,
 * checksums, status, why, caplen, wirelen, bytes as hex, layers, t_kernel_us). New
 * reference. */
json_t *obs_segment_json(struct lab_ctx *ctx, const struct cap_frame *f,
			 const struct dec_packet *d, int64_t t_ns);

/* ---- a seam for tests and recorded data: an observer with no sources ----
 * Everything a live observer would read is fed by the caller; items are
 * queued and delivered (with the same rules) by obs_deliver or obs_stop, on
 * the caller's thread. */

struct tcpst_diag_sock;
struct tcpst_trace_ev;

/* An observer with no captures, no tracepoint and no thread. 0 or -errno. */
int obs_open_offline(struct obs **out, const struct obs_config *cfg);

/* A captured frame, as if a capture on host had read it. 0 or -ENOMEM. */
int obs_feed_frame(struct obs *o, const struct cap_frame *f, int host);

/* A tracepoint event for watched socket sock. */
void obs_feed_transition(struct obs *o, int64_t t_ns, int sock, int from, int to);

/* A tracepoint event as read from the kernel (matched to a watched socket
 * as a live one would be). */
void obs_feed_trace(struct obs *o, const struct tcpst_trace_ev *ev);

/* One sock_diag sample whose dump began at from_ns and returned at t_ns:
 * the n sockets it listed (unwatched ones are ignored; a watched socket
 * absent from it is not listed). */
void obs_feed_diag(struct obs *o, int64_t from_ns, int64_t t_ns, const struct tcpst_diag_sock *socks,
		   size_t n);

/* Deliver every queued item stamped at or before horizon_ns (and before
 * any obs_hold). */
void obs_deliver(struct obs *o, int64_t horizon_ns);

/* Nanoseconds on CLOCK_MONOTONIC to the run clock's microseconds. */
json_int_t obs_run_us(struct lab_ctx *ctx, int64_t t_ns);

/* CLOCK_MONOTONIC now, in nanoseconds. */
int64_t obs_now_ns(void);

/* The CLI's text for one of the observer's kernel-state events (type
 * "state" from a kernel source, "observation", "timer"), without the time
 * and the socket's name: "state SYN_SENT -> ESTABLISHED  (kernel:
 * tracepoint)", "seen in TIME_WAIT  (sock_diag sample, timer time_wait
 * 59.9 s)", "gone: ...". Its length, or -1 for any other event. */
int obs_state_text(const json_t *ev, char *buf, size_t len);

/* Append printf-style text to buf at *off, never past len (the labs' CLI
 * formatters build their lines with it). */
void obs_put(char *buf, size_t len, size_t *off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
