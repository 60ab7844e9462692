/* tcpstate.h: TCP states from the kernel (tracepoint, sock_diag, TCP_INFO) and inferred from packets (RFC 9293). */
#ifndef SOCKLAB_TCPSTATE_H
#define SOCKLAB_TCPSTATE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Four sources, each honest about what it can see:
 *  - the sock:inet_sock_set_state tracepoint, read from a private tracefs
 *    instance (one of a pool, reused run after run): every state change of
 *    a full socket with the kernel's timestamp. Never TIME_WAIT: the kernel replaces a socket that enters
 *    TIME_WAIT with a small timewait socket and reports the full socket's
 *    end as FIN_WAIT2 (or CLOSING) -> CLOSE. The tracepoint is global across
 *    network namespaces: a reader filters by its own addresses and ports.
 *  - NETLINK_SOCK_DIAG (inet_diag): the sockets of the caller's namespace
 *    with their state and timer, including TIME_WAIT and orphaned FIN_WAIT2
 *    sockets that no descriptor refers to any more; its timer gives the real
 *    TIME_WAIT countdown.
 *  - getsockopt(TCP_INFO) on a descriptor the lab holds: only while it holds
 *    it, and only what a poll happens to catch.
 *  - inference: the RFC 9293 state machine driven by the captured segments.
 */

/* The kernel's state numbers (include/net/tcp_states.h). */
enum tcpst_state {
	TCPST_UNKNOWN = 0,
	TCPST_ESTABLISHED = 1,
	TCPST_SYN_SENT,
	TCPST_SYN_RECV,
	TCPST_FIN_WAIT1,
	TCPST_FIN_WAIT2,
	TCPST_TIME_WAIT,
	TCPST_CLOSE,
	TCPST_CLOSE_WAIT,
	TCPST_LAST_ACK,
	TCPST_LISTEN,
	TCPST_CLOSING,
	TCPST_NEW_SYN_RECV,
	TCPST_COUNT,
};

/* "ESTABLISHED", "FIN_WAIT_1", "CLOSED", ... (RFC 9293 names, with
 * underscores); "?" for numbers outside the table. */
const char *tcpst_name(int state);

/* The number for a kernel name as the tracepoint prints it ("TCP_FIN_WAIT1"),
 * or TCPST_UNKNOWN. */
int tcpst_from_kernel_name(const char *s, size_t len);

/* ---- inference (pure) ---- */

/* One endpoint's RFC 9293 state machine, fed every segment it sent or
 * received. */
struct tcpst_infer {
	int state;
	int syn_sent;      /* we sent a SYN ending at syn_end */
	uint32_t syn_end;
	int fin_sent;      /* we sent a FIN ending at fin_end */
	uint32_t fin_end;
	int listener;      /* started in LISTEN (a passive open) */
};

struct tcpst_change {
	int from, to;
	const char *why; /* English, static: "sent SYN", "received FIN, our FIN not yet ACKed" */
};

void tcpst_infer_init(struct tcpst_infer *m, int initial_state);

/* Feed one segment: outgoing when this endpoint sent it. flags are TCP flag
 * bits (decode.h DEC_TCP_*), len the payload length. Writes up to two
 * changes (one segment can carry the ACK of our FIN and the peer's FIN) and
 * returns how many. */
int tcpst_infer_segment(struct tcpst_infer *m, int outgoing, uint16_t flags, uint32_t seq,
			uint32_t ack, uint32_t len, struct tcpst_change out[2]);

/* ---- the tracepoint (tracefs instance) ---- */

struct tcpst_trace_ev {
	int64_t t_mono_ns; /* the event's timestamp; the instance uses trace_clock mono */
	int family;        /* AF_INET or AF_INET6 */
	uint16_t sport, dport;
	uint8_t saddr[16], daddr[16]; /* 4 bytes used for AF_INET */
	int oldstate, newstate;
};

/* Parse one line of trace_pipe text. 1 when it is an inet_sock_set_state
 * event for TCP (filled in ev), 0 for other lines, negative when it is
 * malformed. Pure. */
int tcpst_trace_parse(const char *line, size_t len, struct tcpst_trace_ev *ev);

struct tcpst_trace;

/* Slots kept for reuse when released; beyond them a slot is removed when its
 * owner ends. */
#define TCPST_TRACE_POOL_KEEP 16

/* Take a tracefs instance from the pool instances/socklab-slot-K (the
 * prefix is SOCKLAB_TRACE_POOL's when set: a separate pool, for tests; it
 * must start with socklab-slot-), mounting tracefs at /sys/kernel/tracing
 * first if it is not there, and making a slot (clock mono, 128 KiB per
 * CPU) when every existing one is taken. Then: wake readers on every event,
 * filter the event by filter (ftrace syntax, e.g. "sport == 40000 ||
 * dport == 40000"), throw away what a previous owner left, enable the
 * event and open trace_pipe. Events stamped before this call are never
 * delivered. On failure returns -errno and the reason in err (-EACCES or
 * -EPERM: not privileged; -ENOENT: no tracefs or no such tracepoint). */
int tcpst_trace_open(struct tcpst_trace **out, const char *filter, char *err, size_t errlen);

/* The trace_pipe descriptor to poll for POLLIN. */
int tcpst_trace_fd(const struct tcpst_trace *t);

/* The instance's directory (for messages and tests). */
const char *tcpst_trace_dir(const struct tcpst_trace *t);

typedef void (*tcpst_trace_fn)(void *arg, const struct tcpst_trace_ev *ev);

/* Read what the pipe holds now (non-blocking) and call fn for each event.
 * Returns the number of events, or -errno. */
int tcpst_trace_read(struct tcpst_trace *t, tcpst_trace_fn fn, void *arg);

/* The kernel's counters of one CPU's ring (per_cpu/cpuN/stats). */
struct tcpst_ring_stats {
	uint64_t entries;        /* events in the ring now, unread */
	uint64_t overrun;        /* events overwritten before they were read (overwrite mode) */
	uint64_t commit_overrun; /* events lost while writes nested (an interrupt's) */
	uint64_t dropped;        /* "dropped events": refused, the ring full (no-overwrite mode) */
	uint64_t read;           /* "read events": events a reader consumed */
};

/* Parse the text of a per_cpu/cpuN/stats file ("entries: 0\noverrun:
 * 26\ncommit overrun: 0\n...dropped events: 0\nread events: 12\n", as
 * kernel 6.18 prints it) into st. 0 when it holds the "overrun" line (the
 * one every kernel has; an absent line counts 0), -1 otherwise. Pure. */
int tcpst_trace_parse_stats(const char *text, struct tcpst_ring_stats *st);

/* Parse one trace_pipe line saying the ring lost events: "CPU:3 [LOST 17
 * EVENTS]" (1, *n = 17) or "CPU:3 [LOST EVENTS]" (2: a number the kernel
 * did not know, *n = 0). 0 for any other line. Pure. */
int tcpst_trace_parse_lost(const char *line, size_t len, uint64_t *n);

/* What the tracepoint lost while this owner had the slot: the rings'
 * counters read when the slot was taken and now, summed over CPUs (a slot
 * is reused, so only the difference is this owner's), the LOST lines
 * trace_pipe printed, and the lines the reader could not parse. */
struct tcpst_trace_loss {
	uint64_t events;     /* inet_sock_set_state events read and delivered */
	uint64_t overrun;    /* overrun + commit overrun since the slot was taken */
	uint64_t dropped;    /* dropped events since then */
	uint64_t lost_lines; /* the sum of trace_pipe's "[LOST n EVENTS]" lines */
	uint64_t unreadable; /* inet_sock_set_state lines the parser rejected */
	uint64_t lost;       /* max(overrun + dropped, lost_lines) + unreadable */
	int uncounted;       /* a loss of unknown size: a "[LOST EVENTS]" line, or
			      * counters that went back (the ring was reset) */
	int stats;           /* 1: the counters were read both times */
	int ring_kib;        /* the ring's size per CPU (buffer_size_kb) */
};

/* Read the counters now and fill out. Call after the last tcpst_trace_read. */
void tcpst_trace_loss(struct tcpst_trace *t, struct tcpst_trace_loss *out);

/* A test knob, SOCKLAB_TRACE_TEST_FLOOD_KB (1..65536): the owner reads
 * nothing until tcpst_trace_read_last, which first writes that many KiB of
 * trace_marker text into the slot's ring on every CPU the process may run
 * on, overwriting the run's unread events: a real overrun the counters
 * report, made on purpose. 1 while reading is held back. */
int tcpst_trace_stalled(const struct tcpst_trace *t);

/* The owner's last read: the flood of the test knob (when set), then
 * tcpst_trace_read. */
int tcpst_trace_read_last(struct tcpst_trace *t, tcpst_trace_fn fn, void *arg);

/* Disable the event, close the pipe and give the slot back (a slot beyond
 * the TCPST_TRACE_POOL_KEEP kept is removed). NULL is fine. */
void tcpst_trace_close(struct tcpst_trace *t);

/* Remove the slots no process holds: with all, every one (`socklab serve`
 * at exit, `socklab cleanup`); without, only those beyond the kept ones (a
 * killed run's). Also removes instances named socklab-RUNID-PID-START that
 * builds before the pool left when killed. Returns how many were removed.
 * Harmless without privileges. */
int tcpst_trace_cleanup(int all);

/* ---- socket diagnostics (NETLINK_SOCK_DIAG) and TCP_INFO ---- */

/* inet_diag timer codes. */
enum {
	TCPST_TIMER_NONE = 0,
	TCPST_TIMER_RETRANS = 1,
	TCPST_TIMER_KEEPALIVE = 2, /* also FIN_WAIT2's timeout */
	TCPST_TIMER_TIME_WAIT = 3,
	TCPST_TIMER_PROBE = 4,
};

struct tcpst_diag_sock {
	int family;
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
	int state;
	int timer;           /* TCPST_TIMER_* */
	uint32_t expires_ms; /* time left on the timer */
	uint32_t rqueue, wqueue;
	uint64_t inode;      /* 0 when no descriptor refers to the socket */
};

/* "time_wait", "retransmit", ... for a timer code. */
const char *tcpst_timer_name(int timer);

typedef void (*tcpst_diag_fn)(void *arg, const struct tcpst_diag_sock *s);

/* Dump every TCP socket of family (AF_INET or AF_INET6) in the caller's
 * network namespace, in every state. Returns the number reported, or -errno
 * with a message in err. */
int tcpst_diag_dump(int family, tcpst_diag_fn fn, void *arg, char *err, size_t errlen);

/* The state of the socket fd (TCP_INFO), or -errno. */
int tcpst_tcp_info_state(int fd);

#endif
