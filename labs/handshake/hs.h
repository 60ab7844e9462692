/* hs.h: the handshake lab's parts (scenario, watching, explanation, CLI lines) and the run they share. */
#ifndef SOCKLAB_HS_H
#define SOCKLAB_HS_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>

#include "capture/capture.h"
#include "decode/decode.h"
#include "lab.h"
#include "observer/observer.h"
#include "tcpstate/tcpstate.h"

/*
 * The lab's files, by job:
 *  - handshake.c: the descriptor, parameters, set-up and the run;
 *  - scenario.c: both programs (server and client), step by step, through
 *    the traced socket calls;
 *  - watch.c: what the lab makes of the observer's stream (labs/observer):
 *    numbering segments, matching arrivals, the RFC 9293 model of each
 *    side, the kernel's transitions and observations kept for comparison;
 *  - explain.c: the comparison of the kernel and the RFC model, the notes
 *    and the summary;
 *  - format.c: the CLI's readable lines.
 */

#define HS_MAX_SEGS 2000 /* segments reported per run; more are counted */
#define HS_MAX_TRANS 64  /* state changes (and observations) kept per side */
#define HS_STEP_TIMEOUT_MS 5000

enum hs_scenario {
	SC_CLIENT_CLOSES,
	SC_SERVER_CLOSES,
	SC_SIMULTANEOUS,
	SC_HALF_CLOSE,
	SC_REFUSED,
	SC_ABORT,
	SC_DATA_CLOSE,
};

extern const char *const hs_scenario_choices[];

/* The sockets, in this order in the observer's list too. */
enum hs_side { SIDE_CLIENT, SIDE_SERVER, SIDE_LISTENER, SIDE_N };
extern const char *const hs_side_names[SIDE_N];
/* Their message ids, sent as a note's who_key: the page says the role in its language. */
extern const char *const hs_side_keys[SIDE_N];

/* A segment as the comparison needs it. */
struct hs_seg {
	int64_t t_ns;     /* when it left its sender */
	int64_t t_arr_ns; /* when it reached the receiver (loopback: t_ns); -1: not yet */
	int dir;          /* 0: client to server, 1: server to client */
	uint16_t flags;
	uint32_t seq, ack, len;
	uint16_t ip_id;
	int arrivals;
};

/* A state change (tracepoint or RFC model), or an observation (a sample:
 * `to` is the state seen, `from` unused; gone: to is CLOSED, gone set). */
struct hs_trans {
	int from, to, src; /* src: OBS_SRC_* */
	int64_t t_ns;
	int64_t t_from_ns; /* observation: seen somewhere in [t_from_ns, t_ns] */
	int seg;      /* RFC model: the segment that caused it (1-based); kernel: the last emitted */
	int incoming; /* RFC model: caused by a received segment */
	const char *why;
	int gone;            /* observation: no longer listed */
	const char *reason;  /* gone: why */
	int rst_seg;         /* gone by an RST: that segment (0: unknown) */
	int timer;           /* observation: the kernel's timer (TCPST_TIMER_*) */
	uint32_t rst_seq;
};

struct hs_run {
	struct lab_ctx *ctx;
	enum hs_scenario sc;
	size_t data, reply;
	int close_delay_ms, observe_ms;
	int replay;
	int wire_incomplete; /* the capture missed frames: no comparison from segments */
	int trace_incomplete; /* the tracepoint lost events: no comparison of transitions */

	/* The connection's endpoints (network byte order in the sockaddrs). */
	struct sockaddr_in cli, srv;
	char cli_ip[INET_ADDRSTRLEN], srv_ip[INET_ADDRSTRLEN];
	uint16_t cport, sport;

	struct net *net; /* two-hosts, else NULL */
	struct obs *obs; /* NULL in a replay */
	struct cap_pcap *pcap; /* a replay's copy; live runs write through the observer */
	int trace;       /* the tracepoint reports transitions */

	pthread_mutex_t lock; /* guards settled */
	int settled;          /* both RFC machines have reached CLOSED or TIME_WAIT */

	/* Emission state: touched only by whoever the observer delivers on. */
	int n_segs;
	long long segs_dropped;
	struct hs_seg segs[HS_MAX_SEGS];
	int isn_known[2];
	uint32_t isn[2];
	int wscale[2]; /* -1 unknown */
	int syn_seen[2];
	struct tcpst_infer inf[2];
	struct hs_trans kern[SIDE_N][HS_MAX_TRANS], infd[2][HS_MAX_TRANS];
	struct hs_trans seen[SIDE_N][HS_MAX_TRANS];
	int n_kern[SIDE_N], n_infd[2], n_seen[SIDE_N];
	int fin_seg[2], fin_ack_seg[2]; /* per sender: its FIN, the peer's ACK of it */
	long long arrivals_unmatched;   /* frames received whose sending was not seen */
	uint32_t fin_end[2];
	int closes_three; /* -1 unknown, 0 four, 1 three */

	/* The lab thread's own descriptors (client, server, listener; -1 when
	 * closed). */
	int fds[3];
};

/* scenario.c */
int hs_run_scenario(struct hs_run *r);
void hs_scenario_note(struct hs_run *r);

/* watch.c: the observer's callback, and a replayed frame. */
json_t *hs_on_observed(void *arg, const struct obs_event *ev);
void hs_frame(struct hs_run *r, const struct obs_event *ev);

/* explain.c */
int hs_compare_side(struct hs_run *r, int side);
void hs_close_note(struct hs_run *r);
void hs_end_notes(struct hs_run *r);
void hs_summary(struct hs_run *r, const int diffs[2]);

/* format.c */
int hs_format(const struct lab_params *p, const json_t *ev, char *buf, size_t len);

#endif
