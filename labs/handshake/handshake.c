/* handshake.c: the handshake lab: a real TCP connection opened and closed per scenario, every segment captured and decoded, the kernel's states (each with its source) next to what RFC 9293 predicts. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "hs.h"
#include "net/net.h"

/*
 * One thread plays both programs (server and client) step by step, through
 * the traced socket calls (scenario.c), so every scenario happens the same
 * way on every run. The toolkit's observer (labs/observer) watches: the
 * captures, the kernel's state tracepoint, sock_diag and TCP_INFO, merged
 * in the order of the kernel's own timestamps. The lab reads that stream
 * (watch.c): each segment once (decoded), the RFC 9293 machine's view of
 * the same packets. At the end the kernel's and the model's states are
 * compared side by side, and every disagreement is explained (explain.c).
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
 * events and RFC model states, no privileges needed.
 */

#define REPLAY_MAX_BYTES (16 * 1024 * 1024)
#define SETTLE_MS 5000 /* longest wait for the connection's end to cross the wire */

const char *const hs_scenario_choices[] = {
	"client-closes", "server-closes", "simultaneous", "half-close", "refused", "abort",
	"data-close", NULL,
};

const char *const hs_side_names[SIDE_N] = {"client", "server", "listener"};
const char *const hs_side_keys[SIDE_N] = {"role.client", "role.server", "role.listener"};

static const struct lab_param_def hs_params[] = {
	{"scenario", LAB_P_ENUM, "Scenario",
	 "client-closes: open, exchange data, the client closes first; server-closes: the server "
	 "closes first; simultaneous: both close at once (CLOSING); half-close: the client "
	 "shuts down its sending side while the server keeps sending; refused: connect to a port "
	 "nobody listens on (RST); abort: SO_LINGER 0 makes close() send RST; data-close: the "
	 "client's last data and its FIN leave in one segment",
	 NULL, "client-closes", 0, 0, hs_scenario_choices, 0},
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

/* Watch exactly this connection: its segments on the run's interfaces, and
 * the client, server and listener sockets in the kernel. */
static int start_observer(struct hs_run *r)
{
	struct lab_ctx *ctx = r->ctx;
	char expr[512], filter[256];
	struct obs_sock socks[SIDE_N];
	struct obs_config cfg;
	int rc;

	snprintf(expr, sizeof expr,
		 "tcp and ((src host %s and src port %u and dst host %s and dst port %u) or "
		 "(src host %s and src port %u and dst host %s and dst port %u))",
		 r->cli_ip, r->cport, r->srv_ip, r->sport, r->srv_ip, r->sport, r->cli_ip, r->cport);
	snprintf(filter, sizeof filter, "(sport == %u && dport == %u) || (sport == %u && (dport == %u "
		 "|| dport == 0))", r->cport, r->sport, r->sport, r->cport);
	memset(socks, 0, sizeof socks);
	socks[SIDE_CLIENT] = (struct obs_sock){"client", r->cli.sin_addr, r->srv.sin_addr, r->cport,
					       r->sport, NET_CLIENT};
	socks[SIDE_SERVER] = (struct obs_sock){"server", r->srv.sin_addr, r->cli.sin_addr, r->sport,
					       r->cport, NET_SERVER};
	socks[SIDE_LISTENER] = (struct obs_sock){"listener", r->srv.sin_addr, {0}, r->sport, 0,
						 NET_SERVER};
	memset(&cfg, 0, sizeof cfg);
	cfg.ctx = ctx;
	cfg.filter = expr;
	cfg.trace_filter = filter;
	cfg.socks = socks;
	cfg.n_socks = SIDE_N;
	cfg.fn = hs_on_observed;
	cfg.arg = r;
	cfg.pcap_path = ctx->pcap_path;
	rc = obs_start(&r->obs, &cfg);
	if (rc < 0)
		return rc;
	r->trace = obs_has_tracepoint(r->obs);
	if (!r->trace)
		ev_note(ctx->em, "handshake.no_tracepoint",
			json_pack("{s:s}", "reason", obs_trace_error(r->obs)), NULL);
	return 0;
}

/* The programs are done, but over a wire the last segments may still be
 * travelling: wait until both sides' machines have ended (CLOSED or
 * TIME_WAIT), at most SETTLE_MS (a lossy wire may take retransmissions). */
static void wait_settled(struct hs_run *r)
{
	int64_t end = obs_now_ns() + (int64_t)SETTLE_MS * 1000000;

	for (;;) {
		int done;

		pthread_mutex_lock(&r->lock);
		done = r->settled;
		pthread_mutex_unlock(&r->lock);
		if (done || obs_now_ns() >= end || lab_sleep_ms(r->ctx, 5) < 0)
			return;
	}
}

/* ---- replay ---- */

static int run_replay(struct hs_run *r, const char *path)
{
	struct lab_ctx *ctx = r->ctx;
	struct cap_file *f = NULL;
	struct cap_frame fr;
	struct dec_packet *d = malloc(sizeof *d);
	int64_t t0 = (int64_t)ctx->em->t0.tv_sec * 1000000000 + ctx->em->t0.tv_nsec;
	char err[512];
	int64_t first = -1;
	long long frames = 0;
	int rc;

	if (!d) {
		ev_error(ctx->em, "internal", NULL, "out of memory");
		return -ENOMEM;
	}
	rc = cap_file_open(&f, path, REPLAY_MAX_BYTES, err, sizeof err);
	if (rc < 0) {
		ev_error(ctx->em, "replay_failed", "replay", err);
		free(d);
		return rc;
	}
	if (ctx->pcap_path && cap_pcap_open(&r->pcap, ctx->pcap_path, cap_file_link(f), err,
					    sizeof err) < 0) {
		ev_error(ctx->em, "pcap_failed", NULL, err);
		cap_file_close(f);
		free(d);
		return -EIO;
	}
	ev_note(ctx->em, "handshake.replay", NULL, NULL);
	while ((rc = cap_file_next(f, &fr, err, sizeof err)) == 1) {
		struct obs_event ev;
		int64_t ts = (int64_t)fr.ts_real.tv_sec * 1000000000 + fr.ts_real.tv_nsec;

		if (lab_cancelled(ctx)) {
			rc = -ECANCELED;
			break;
		}
		if (first < 0)
			first = ts;
		frames++;
		dec_packet(fr.data, fr.caplen, fr.len, fr.link, d);
		memset(&ev, 0, sizeof ev);
		ev.kind = OBS_FRAME;
		/* The file's time since its first frame, on the run's clock. */
		ev.t_ns = t0 + (ts - first);
		fr.t_mono_ns = ev.t_ns;
		ev.frame = &fr;
		ev.pkt = d;
		ev.host = -1; /* one capture point: each frame leaves and arrives */
		ev.sock = -1;
		hs_frame(r, &ev);
	}
	cap_file_close(f);
	free(d);
	if (rc < 0 && rc != -ECANCELED) {
		ev_error(ctx->em, "replay_failed", "replay", err);
		return rc;
	}
	json_object_set_new(ctx->summary, "frames", json_integer(frames));
	return rc < 0 ? rc : 0;
}

/* ---- the run ---- */

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
	r->sc = (enum hs_scenario)lab_int(p, "scenario");
	r->data = (size_t)lab_int(p, "data");
	r->reply = (size_t)lab_int(p, "reply");
	r->close_delay_ms = (int)lab_int(p, "close_delay_ms");
	r->observe_ms = (int)lab_int(p, "observe_ms");
	r->replay = replay[0] != '\0';
	r->closes_three = -1;
	r->wscale[0] = r->wscale[1] = -1;
	for (i = 0; i < SIDE_N; i++)
		r->fds[i] = -1;
	pthread_mutex_init(&r->lock, NULL);
	tcpst_infer_init(&r->inf[SIDE_CLIENT], TCPST_CLOSE);
	tcpst_infer_init(&r->inf[SIDE_SERVER], r->sc == SC_REFUSED ? TCPST_CLOSE : TCPST_LISTEN);

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
	rc = start_observer(r);
	if (rc < 0)
		goto done;
	rc = hs_run_scenario(r);
	if (rc == 0)
		wait_settled(r);
	if (rc == 0 && r->observe_ms > 0 && r->sc != SC_REFUSED && r->sc != SC_ABORT)
		lab_sleep_ms(ctx, r->observe_ms);
	obs_stop(r->obs);
	r->wire_incomplete = obs_capture_report(r->obs, ctx->em, ctx->summary) == 0;
	/* Its note says no conclusion is drawn from the transitions: the
	 * comparison with the model rests on them, so there is none. */
	r->trace_incomplete = obs_trace_report(r->obs, ctx->em, ctx->summary) == 0;
	if (rc == 0 && !lab_cancelled(ctx)) {
		if (r->wire_incomplete) {
			cap_report_no_verdict(ctx->em);
		} else if (r->trace_incomplete) {
			hs_close_note(r);
		} else {
			hs_close_note(r);
			diffs[0] = hs_compare_side(r, SIDE_CLIENT);
			if (r->sc != SC_REFUSED)
				diffs[1] = hs_compare_side(r, SIDE_SERVER);
		}
		hs_end_notes(r);
	}
done:
	obs_stop(r->obs);
	if (!r->replay || rc == 0)
		hs_summary(r, diffs);
	obs_destroy(r->obs);
	cap_pcap_close(r->pcap);
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
