/* udp_ping.c: the udp-ping lab: numbered UDP probes to an echo server, RTT and loss like ping(8), over any lab network. */
#include "udp_ping.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/neighbour.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lab.h"
#include "net/frame.h"
#include "net/net.h"
#include "net/nl.h"
#include "sock.h"
#include "tcp_echo.h"

/*
 * mode=both: a client thread (in the client's host) sends `count` probes with
 * sendto(), one every interval_ms, each "seq=N " plus filler, and reads the
 * replies with recvfrom() as they come; a server thread (in the server's host)
 * answers each datagram with sendto() to its source, in upper case or as is.
 * Each reply is classified as it arrives: on time, late (after its probe's
 * timeout already counted it lost), duplicate (a second copy), or out of
 * order (an earlier probe answered after a later one).
 *
 * Over a relay wire the lab also hears from the wire (a hook the relay thread
 * calls for every frame) what happened to each probe's frames: the probe's
 * event then says "the wire dropped it c2s". The wire's decisions are ground
 * truth, so a lost probe is explained, not guessed at.
 *
 * mode=server: only the echo server, on the host's network, for a student's
 * own client (nc -u, Python); it stops after idle_timeout without datagrams.
 */

#define MAX_COUNT 10000
#define BUF_MAX 65536
#define BYO_MAX_BYTES (1024 * 1024) /* mode=server: data echoed per run at most */
#define BYO_MAX_DATAGRAMS 10000
#define FRAG_MAP 256 /* IP ids of fragmented probes remembered per run */

static const char *const mode_choices[] = {"both", "server", NULL};
static const char *const transform_choices[] = {"upper", "echo", NULL};

static const struct lab_param_def ping_params[] = {
	{"mode", LAB_P_ENUM, "Mode",
	 "both: the lab runs the UDP echo server and the pinging client; server: only the echo "
	 "server, for your own client (nc -u, Python)",
	 NULL, "both", 0, 0, mode_choices, 0},
	{"count", LAB_P_INT, "Probes", "How many probes the client sends", NULL, "10", 1, MAX_COUNT,
	 NULL, 0},
	{"interval_ms", LAB_P_INT, "Interval", "Time between two probes (at least 10 ms)", "ms",
	 "200", 10, 10000, NULL, 0},
	{"size", LAB_P_INT, "Payload size",
	 "UDP payload bytes per probe; on two-hosts at most 1472 (one 1500-byte frame) unless "
	 "fragment=true",
	 "bytes", "64", PING_MIN_SIZE, PING_UDP_MAX, NULL, 0},
	{"timeout_ms", LAB_P_INT, "Timeout",
	 "How long a probe waits for its reply before it counts as lost (a reply after that is "
	 "reported as late)",
	 "ms", "1000", 10, 30000, NULL, 0},
	{"fragment", LAB_P_BOOL, "Allow IP fragments",
	 "two-hosts: send probes larger than one frame as IP fragments, and show every fragment "
	 "crossing the wire",
	 NULL, "false", 0, 0, NULL, LAB_PF_ADVANCED | LAB_PF_WIRE_TRACE},
	{"transform", LAB_P_ENUM, "Server reply",
	 "upper: answer in upper case, as the course's server does; echo: the same bytes", NULL,
	 "upper", 0, 0, transform_choices, LAB_PF_ADVANCED},
	{"idle_timeout", LAB_P_INT, "Idle timeout",
	 "mode=server: stop after this long with no datagram", "s", "60", 1, 600, NULL,
	 LAB_PF_ADVANCED},
	{"port", LAB_P_INT, "Port", "The server's UDP port; 0 lets the kernel choose", NULL, "0", 0,
	 65535, NULL, LAB_PF_SERVER | LAB_PF_ADVANCED},
	{"bind", LAB_P_STRING, "Server address",
	 "The address the server binds (an IPv4 or IPv6 literal)", NULL, "127.0.0.1", 2, 45, NULL,
	 LAB_PF_SERVER | LAB_PF_ADVANCED},
	NET_PARAMS,
};

/* ---- pure helpers ---- */

size_t ping_payload(char *out, size_t size, unsigned seq)
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyz";
	char head[24];
	size_t i, hl;
	int w = snprintf(head, sizeof head, "seq=%u ", seq);

	hl = w < 0 ? 0 : (size_t)w;
	for (i = 0; i < size; i++)
		out[i] = i < hl ? head[i] : letters[(i - hl) % 26];
	return size;
}

long ping_parse_seq(const uint8_t *p, size_t n)
{
	long v = 0;
	size_t i;

	if (n < 5 || (p[0] != 's' && p[0] != 'S') || (p[1] != 'e' && p[1] != 'E') ||
	    (p[2] != 'q' && p[2] != 'Q') || p[3] != '=')
		return -1;
	for (i = 4; i < n && i < 14 && p[i] >= '0' && p[i] <= '9'; i++)
		v = v * 10 + (p[i] - '0');
	if (i == 4 || (i < n && p[i] != ' ') || i == 14)
		return -1;
	return v;
}

int ping_max_unfragmented(int mtu)
{
	int m = mtu - 28;

	return m > PING_UDP_MAX ? PING_UDP_MAX : m;
}

int ping_fragments(int size, int mtu)
{
	int per = ((mtu - 20) / 8) * 8; /* fragment data is a multiple of 8 bytes */
	int ip_payload = size + 8;

	if (size <= ping_max_unfragmented(mtu))
		return 1;
	return (ip_payload + per - 1) / per;
}

void ping_stats_add(struct ping_stats *s, int64_t rtt)
{
	if (s->n == 0 || rtt < s->min_us)
		s->min_us = rtt;
	if (s->n == 0 || rtt > s->max_us)
		s->max_us = rtt;
	s->n++;
	s->sum += (double)rtt;
	s->sum2 += (double)rtt * (double)rtt;
}

double ping_stats_avg(const struct ping_stats *s)
{
	return s->n ? s->sum / (double)s->n : 0.0;
}

double ping_stats_mdev(const struct ping_stats *s)
{
	double avg = ping_stats_avg(s), v;

	if (!s->n)
		return 0.0;
	v = s->sum2 / (double)s->n - avg * avg;
	return v > 0 ? sqrt(v) : 0.0;
}

/* ---- the run ---- */

enum probe_state { P_UNSENT, P_PENDING, P_REPLIED, P_LOST, P_LATE };

struct probe {
	int64_t t_sent;
	enum probe_state state;
	int replies;
	/* What the wire did to this probe's frames (relay thread writes, guarded
	 * by ping_run.lock). act: the most notable wire_action + 1, 0 for none. */
	int act[2];
	int64_t delay_us[2];
	int frames[2];
	int c2s_delivered, s2c_seen, s2c_delivered; /* copies, unfragmented probes */
	int64_t rtt;      /* of the first reply (state P_REPLIED) */
};

struct ping_run {
	struct lab_ctx *ctx;
	int byo, count, interval_ms, size, timeout_ms, fragment, idle_ms;
	enum echo_transform transform;
	struct sockaddr_storage srv; /* where the server is bound */
	socklen_t srv_len;
	int sfd;
	int done_fd; /* eventfd: the client has finished, the server may stop */
	int relay, fragmented;
	uint16_t srv_port;

	pthread_mutex_t lock; /* guards probes[] wire fields, frag[], failed */
	struct probe *probes;
	struct {
		int dir;
		uint16_t id;
		int seq;
	} frag[FRAG_MAP];
	size_t frag_next;
	int failed;

	/* client thread only until it is joined */
	struct ping_stats st;
	long long sent, received, late, lost, dups, reordered, bad;
	long long lost_by[2], lost_other;
	long max_seq_seen;

	/* server thread only until it is joined */
	long long s_datagrams, s_bytes, s_replies;
	int idle_stopped;

	/* The client's neighbour entry for the server before the first probe
	 * and after the last (client thread), and the ARP frames the relay
	 * carried (relay thread, under lock): the evidence that probe 1 waited
	 * for address resolution. */
	int neigh_before, neigh_after; /* NUD_* state, 0 for no entry, -1 not read */
	int arp_frames[2];
};

static const char *const dir_names[] = {"c2s", "s2c"};

/* Wire actions by how much they matter to a probe (the event shows the worst). */
static int action_rank(int a)
{
	switch (a) {
	case WIRE_DROP:
	case WIRE_QUEUE_DROP:
		return 5;
	case WIRE_REORDER:
		return 4;
	case WIRE_DUP:
		return 3;
	case WIRE_DELAY:
		return 2;
	default:
		return 1;
	}
}

/* Relay thread: match a frame with its probe and remember what the wire did. */
static json_t *ping_hook(void *arg, const struct wire_verdict *v, const uint8_t *frame,
			 size_t len)
{
	struct ping_run *r = arg;
	struct frame_info fi;
	long seq = -1;
	size_t i;
	int delivered, dir = v->dir;
	struct probe *p;

	if (frame_parse(frame, len, &fi) != FRAME_OK)
		return NULL;
	if (fi.ethertype == FRAME_ETH_P_ARP) {
		pthread_mutex_lock(&r->lock);
		r->arp_frames[dir]++;
		pthread_mutex_unlock(&r->lock);
		return NULL;
	}
	if (!fi.is_ipv4 || fi.proto != 17)
		return NULL;
	pthread_mutex_lock(&r->lock);
	if (fi.frag_off == 0 && fi.has_l4) {
		uint16_t port = dir == WIRE_C2S ? fi.dport : fi.sport;
		if (port == r->srv_port)
			seq = ping_parse_seq(fi.payload, fi.payload_len);
		if (seq > 0 && fi.more_frags) {
			r->frag[r->frag_next % FRAG_MAP].dir = dir;
			r->frag[r->frag_next % FRAG_MAP].id = fi.ip_id;
			r->frag[r->frag_next % FRAG_MAP].seq = (int)seq;
			r->frag_next++;
		}
	} else if (fi.frag_off != 0) {
		for (i = 0; i < FRAG_MAP; i++)
			if (r->frag[i].seq > 0 && r->frag[i].dir == dir && r->frag[i].id == fi.ip_id)
				seq = r->frag[i].seq;
	}
	if (seq < 1 || seq > r->count) {
		pthread_mutex_unlock(&r->lock);
		return NULL;
	}
	p = &r->probes[seq - 1];
	p->frames[dir]++;
	if (p->act[dir] == 0 || action_rank((int)v->action) > action_rank(p->act[dir] - 1))
		p->act[dir] = (int)v->action + 1;
	if (v->delay_us > p->delay_us[dir])
		p->delay_us[dir] = v->delay_us;
	delivered = v->action == WIRE_DROP || v->action == WIRE_QUEUE_DROP ? 0
		    : v->action == WIRE_DUP					? 2
										: 1;
	if (dir == WIRE_C2S) {
		p->c2s_delivered += delivered;
	} else {
		p->s2c_seen++;
		p->s2c_delivered += delivered;
	}
	pthread_mutex_unlock(&r->lock);
	return json_pack("{s:i}", "probe", (int)seq);
}

/* {"c2s":{"action":"drop","frames":1},"s2c":{...}} for a probe (lock held). */
static json_t *wire_of(const struct probe *p)
{
	json_t *o = json_object();
	int d;

	for (d = 0; d < 2; d++) {
		json_t *x;
		if (!p->frames[d])
			continue;
		x = json_pack("{s:s, s:i}", "action", wire_action_name((enum wire_action)(p->act[d] - 1)),
			      "frames", p->frames[d]);
		if (p->delay_us[d] > 0)
			json_object_set_new(x, "delay_us", json_integer(p->delay_us[d]));
		json_object_set_new(o, dir_names[d], x);
	}
	return o;
}

static void fail(struct ping_run *r)
{
	pthread_mutex_lock(&r->lock);
	r->failed = 1;
	pthread_mutex_unlock(&r->lock);
}

/* ---- the server ---- */

static int open_server(struct ping_run *r)
{
	struct lab_ctx *ctx = r->ctx;
	struct lsock_who w = {"server", 0};
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, rc;
	char err[200];
	json_t *a;

	if (net_server_addr(ctx, &ss, &sl) < 0)
		return -EINVAL; /* check() already refused this */
	fd = lsock_socket(ctx, w, ss.ss_family, SOCK_DGRAM);
	if (fd < 0)
		return fd;
	rc = lsock_bind(ctx, w, fd, (struct sockaddr *)&ss, sl);
	if (rc < 0) {
		snprintf(err, sizeof err, "the server could not bind %s port %lld: %s",
			 ctx->net ? "its address" : lab_str(ctx->p, "bind"), lab_int(ctx->p, "port"),
			 strerror(-rc));
		ev_error(ctx->em, rc == -EADDRINUSE ? "port_in_use" : "bind_failed",
			 rc == -EADDRINUSE ? "port" : NULL, err);
		lsock_close(ctx, w, fd);
		return rc;
	}
	r->srv_len = sizeof r->srv;
	getsockname(fd, (struct sockaddr *)&r->srv, &r->srv_len);
	r->srv_port = ntohs(((struct sockaddr_in *)&r->srv)->sin_port);
	r->sfd = fd;
	a = lsock_addr_json((struct sockaddr *)&r->srv);
	json_object_set_new(a, "who", json_string("server"));
	json_object_set_new(a, "proto", json_string("udp"));
	json_object_set_new(a, "idle_timeout_s", json_integer(r->idle_ms / 1000));
	json_object_set_new(a, "byo", json_boolean(r->byo));
	ev_emit(ctx->em, "listening", a);
	return 0;
}

static void *server_thread(void *arg)
{
	struct ping_run *r = arg;
	struct lab_ctx *ctx = r->ctx;
	struct lsock_who w = {"server", 0};
	char *buf = malloc(BUF_MAX);

	if (!buf || net_enter(ctx->net, NET_SERVER) < 0) {
		fail(r);
		lab_abort(ctx);
		free(buf);
		return NULL;
	}
	for (;;) {
		struct sockaddr_storage from;
		struct lsock_io io = {.wake_fd = r->done_fd};
		socklen_t fl;
		ssize_t n = lsock_recvfrom(ctx, w, r->sfd, buf, BUF_MAX, &from,
					   r->byo ? r->idle_ms : -1, &io);

		if (n == -EINTR || n == -ECANCELED)
			break; /* the client is done, or the run is over */
		if (n == -ETIMEDOUT) {
			r->idle_stopped = 1;
			ev_note(ctx->em, "ping.idle_stop",
				json_pack("{s:i}", "idle_s", r->idle_ms / 1000),
				NULL);
			break;
		}
		if (n < 0) {
			if (!r->byo) {
				fail(r);
				lab_abort(ctx);
			}
			break;
		}
		r->s_datagrams++;
		r->s_bytes += n;
		if (r->byo && (r->s_bytes > BYO_MAX_BYTES || r->s_datagrams > BYO_MAX_DATAGRAMS)) {
			ev_note(ctx->em, "ping.byo_limit",
				json_pack("{s:i, s:i}", "max_bytes", BYO_MAX_BYTES, "max_datagrams",
					  BYO_MAX_DATAGRAMS),
				NULL);
			break;
		}
		echo_transform(buf, (size_t)n, r->transform);
		fl = from.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						: sizeof(struct sockaddr_in);
		if (lsock_sendto(ctx, w, r->sfd, buf, (size_t)n, (struct sockaddr *)&from, fl, 1000,
				 NULL) >= 0)
			r->s_replies++;
	}
	free(buf);
	return NULL;
}

/* ---- the client ---- */

/* Why a probe is lost, from what the wire did to it (lock held). */
static const char *lost_cause(const struct probe *p, int *by)
{
	*by = -1;
	if (p->act[WIRE_C2S] - 1 == WIRE_DROP || p->act[WIRE_C2S] - 1 == WIRE_QUEUE_DROP) {
		*by = WIRE_C2S;
		return p->act[WIRE_C2S] - 1 == WIRE_DROP ? "the wire dropped it c2s"
							 : "the wire's c2s queue was full";
	}
	if (p->act[WIRE_S2C] - 1 == WIRE_DROP || p->act[WIRE_S2C] - 1 == WIRE_QUEUE_DROP) {
		*by = WIRE_S2C;
		return p->act[WIRE_S2C] - 1 == WIRE_DROP ? "the wire dropped the reply s2c"
							 : "the wire's s2c queue was full";
	}
	if (p->act[WIRE_C2S] - 1 == WIRE_REORDER || p->act[WIRE_S2C] - 1 == WIRE_REORDER)
		return "the wire is holding it back to reorder it";
	if (p->frames[WIRE_C2S] || p->frames[WIRE_S2C])
		return "the wire delayed it past the timeout";
	return "no reply within the timeout";
}

static void emit_probe(struct ping_run *r, const char *status, long seq, ssize_t bytes,
		       int64_t rtt, const struct sockaddr_storage *from, int ok, int reordered)
{
	struct probe *p = &r->probes[seq - 1];
	json_t *f = json_pack("{s:i, s:s, s:I}", "probe", (int)seq, "status", status, "t_sent_us",
			      (json_int_t)p->t_sent);

	if (bytes >= 0)
		json_object_set_new(f, "bytes", json_integer(bytes));
	if (rtt >= 0)
		json_object_set_new(f, "rtt_us", json_integer(rtt));
	if (from)
		json_object_set_new(f, "from", lsock_addr_json((const struct sockaddr *)from));
	if (bytes >= 0)
		json_object_set_new(f, "ok", json_boolean(ok));
	if (!strcmp(status, "reply"))
		json_object_set_new(f, "reordered", json_boolean(reordered));
	if (!strcmp(status, "lost")) {
		int by;
		const char *cause;
		pthread_mutex_lock(&r->lock);
		cause = lost_cause(p, &by);
		pthread_mutex_unlock(&r->lock);
		json_object_set_new(f, "cause", json_string(cause));
		json_object_set_new(f, "lost_by", by < 0 ? json_null() : json_string(dir_names[by]));
		json_object_set_new(f, "timeout_ms", json_integer(r->timeout_ms));
		if (by >= 0)
			r->lost_by[by]++;
		else
			r->lost_other++;
	}
	if (r->relay) {
		pthread_mutex_lock(&r->lock);
		json_object_set_new(f, "wire", wire_of(p));
		pthread_mutex_unlock(&r->lock);
	}
	ev_emit(r->ctx->em, "probe", f);
}

/* Copies of probes the wire has put on their way but the client has not yet
 * received (unfragmented probes over the relay), so the client waits for
 * duplicates instead of guessing how long they take. */
static int copies_in_flight(struct ping_run *r)
{
	int i, n = 0;

	if (!r->relay || r->fragmented)
		return 0;
	pthread_mutex_lock(&r->lock);
	for (i = 0; i < r->count; i++) {
		const struct probe *p = &r->probes[i];
		if (p->state == P_UNSENT)
			continue;
		if (p->c2s_delivered > p->s2c_seen)
			n += p->c2s_delivered - p->s2c_seen;
		if (p->s2c_delivered > p->replies)
			n += p->s2c_delivered - p->replies;
	}
	pthread_mutex_unlock(&r->lock);
	return n;
}

static void handle_reply(struct ping_run *r, const char *buf, ssize_t n,
			 const struct sockaddr_storage *from, int64_t t_ret, char *want)
{
	long seq = ping_parse_seq((const uint8_t *)buf, (size_t)n);
	struct probe *p;
	int ok;

	if (seq < 1 || seq > r->count || r->probes[seq - 1].state == P_UNSENT) {
		r->bad++;
		ev_emit(r->ctx->em, "probe",
			json_pack("{s:s, s:I, s:o, s:o}", "status", "unexpected", "bytes",
				  (json_int_t)n, "from", lsock_addr_json((const struct sockaddr *)from),
				  "data", lsock_preview(buf, (size_t)n, 64)));
		return;
	}
	p = &r->probes[seq - 1];
	ping_payload(want, (size_t)r->size, (unsigned)seq);
	echo_transform(want, (size_t)r->size, r->transform);
	ok = n == r->size && memcmp(want, buf, (size_t)n) == 0;
	pthread_mutex_lock(&r->lock);
	p->replies++;
	pthread_mutex_unlock(&r->lock);
	if (p->replies > 1) {
		r->dups++;
		emit_probe(r, "dup", seq, n, t_ret - p->t_sent, from, ok, 0);
	} else if (p->state == P_LOST) {
		p->state = P_LATE;
		r->late++;
		r->lost--;
		emit_probe(r, "late", seq, n, t_ret - p->t_sent, from, ok, 0);
	} else {
		int reordered = seq < r->max_seq_seen;
		p->state = P_REPLIED;
		r->received++;
		if (reordered)
			r->reordered++;
		ping_stats_add(&r->st, t_ret - p->t_sent);
		p->rtt = t_ret - p->t_sent;
		emit_probe(r, "reply", seq, n, t_ret - p->t_sent, from, ok, reordered);
	}
	if (seq > r->max_seq_seen)
		r->max_seq_seen = seq;
}

/* The NUD_* state of the calling thread's namespace's neighbour entry for
 * the server on the lab interface: 0 when there is none, -1 when it could not
 * be read (loopback runs have no neighbours). */
static int server_neigh(struct ping_run *r)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&r->srv;
	struct nl_neigh ne;
	struct nl nl;
	int ifindex = (int)if_nametoindex(NET_IFNAME), rc;

	if (!r->ctx->net || r->srv.ss_family != AF_INET || !ifindex)
		return -1;
	if (nl_open(&nl, NULL, 0) < 0)
		return -1;
	rc = nl_neigh_get(&nl, ifindex, ntohl(sin->sin_addr.s_addr), &ne, NULL, 0);
	nl_close(&nl);
	return rc == -ENOENT ? 0 : rc < 0 ? -1 : ne.state;
}

static int client_run(struct ping_run *r)
{
	struct lab_ctx *ctx = r->ctx;
	struct lsock_who w = {"client", 0};
	char *out = malloc((size_t)r->size), *buf = malloc(BUF_MAX), *want = malloc(BUF_MAX);
	int64_t t0, next_send, last_sent = 0, linger_until = -1;
	int fd = -1, rc = 0, oldest = 0;

	if (!out || !buf || !want) {
		rc = -ENOMEM;
		goto out;
	}
	rc = net_enter(ctx->net, NET_CLIENT);
	if (rc < 0)
		goto out;
	fd = lsock_socket(ctx, w, AF_INET == r->srv.ss_family ? AF_INET : AF_INET6, SOCK_DGRAM);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	if (ctx->net) {
		/* Say what the program wants when a datagram is larger than the
		 * path: DO refuses it (EMSGSIZE), DONT lets the kernel fragment. */
		rc = lsock_setsockopt_int(ctx, w, fd, IPPROTO_IP, IP_MTU_DISCOVER,
					  r->fragment ? IP_PMTUDISC_DONT : IP_PMTUDISC_DO);
		if (rc < 0)
			goto out;
	}
	r->neigh_before = server_neigh(r);
	t0 = next_send = ev_now_us(ctx->em);
	for (;;) {
		int64_t now = ev_now_us(ctx->em), wake = -1;
		struct sockaddr_storage from;
		struct lsock_io io = {.wake_fd = -1};
		ssize_t n;

		if (r->sent < r->count && now >= next_send) {
			struct probe *p = &r->probes[r->sent];
			ping_payload(out, (size_t)r->size, (unsigned)(r->sent + 1));
			pthread_mutex_lock(&r->lock);
			p->state = P_PENDING;
			p->t_sent = now;
			pthread_mutex_unlock(&r->lock);
			n = lsock_sendto(ctx, w, fd, out, (size_t)r->size, (struct sockaddr *)&r->srv,
					 r->srv_len, 1000, &io);
			if (n < 0) {
				rc = (int)n;
				goto out;
			}
			p->t_sent = io.call_us;
			last_sent = io.call_us;
			r->sent++;
			next_send = t0 + (int64_t)r->sent * r->interval_ms * 1000;
			continue;
		}
		/* Probes whose time is up count as lost (a reply may still come late). */
		while (oldest < r->sent && r->probes[oldest].state != P_PENDING)
			oldest++;
		for (int i = oldest; i < r->sent; i++) {
			struct probe *p = &r->probes[i];
			if (p->state != P_PENDING)
				continue;
			if (now >= p->t_sent + (int64_t)r->timeout_ms * 1000) {
				p->state = P_LOST;
				r->lost++;
				emit_probe(r, "lost", i + 1, -1, -1, NULL, 0, 0);
			} else if (wake < 0 || p->t_sent + (int64_t)r->timeout_ms * 1000 < wake) {
				wake = p->t_sent + (int64_t)r->timeout_ms * 1000;
			}
		}
		if (r->sent < r->count) {
			if (wake < 0 || next_send < wake)
				wake = next_send;
		} else if (wake < 0) {
			/* Every probe is answered or timed out: wait only for copies the
			 * wire has still on their way, at most one more timeout. */
			if (linger_until < 0)
				linger_until = last_sent + 2 * (int64_t)r->timeout_ms * 1000;
			if (copies_in_flight(r) == 0 || now >= linger_until)
				break;
			wake = now + 5000 < linger_until ? now + 5000 : linger_until;
		}
		n = lsock_recvfrom(ctx, w, fd, buf, BUF_MAX, &from,
				   (int)((wake - now + 999) / 1000), &io);
		if (n == -ETIMEDOUT)
			continue;
		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		handle_reply(r, buf, n, &from, io.ret_us, want);
	}
	rc = 0;
	r->neigh_after = server_neigh(r);
out:
	if (fd >= 0)
		lsock_close(ctx, w, fd);
	free(out);
	free(buf);
	free(want);
	return rc;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static json_t *ms_text(int64_t us)
{
	char b[32];

	snprintf(b, sizeof b, "%.3f", (double)us / 1000.0);
	return json_string(b);
}

/* Probe 1 of a two-hosts run usually waits for ARP: the client has no
 * neighbour entry for the server yet, so the kernel queues the datagram,
 * broadcasts a request and sends it when the reply arrives. Said only when
 * this run shows it: the entry was missing before the first probe, probe 1
 * is the slowest reply by far (over 1.5 times the others' median), and, on
 * the relay, ARP frames crossed the wire. */
static void first_probe_note(struct ping_run *r)
{
	int64_t *rest, med, rtt1;
	int i, n = 0;
	json_t *p;

	if (!r->ctx->net || r->count < 2 || r->probes[0].state != P_REPLIED ||
	    (r->neigh_before != 0 && !(r->neigh_before & (NUD_INCOMPLETE | NUD_FAILED))))
		return;
	rest = calloc((size_t)r->count, sizeof *rest);
	if (!rest)
		return;
	for (i = 1; i < r->count; i++)
		if (r->probes[i].state == P_REPLIED)
			rest[n++] = r->probes[i].rtt;
	rtt1 = r->probes[0].rtt;
	if (n) {
		qsort(rest, (size_t)n, sizeof *rest, cmp_i64);
		med = rest[n / 2];
	}
	free(rest);
	if (!n || rtt1 * 2 <= med * 3)
		return;
	pthread_mutex_lock(&r->lock);
	p = json_pack("{s:o, s:o, s:o, s:s, s:s, s:i, s:i}", "first_ms", ms_text(rtt1),
		      "median_ms", ms_text(med), "extra_ms", ms_text(rtt1 - med), "before",
		      nl_nud_name((uint16_t)r->neigh_before), "after",
		      r->neigh_after > 0 ? nl_nud_name((uint16_t)r->neigh_after) : "NONE",
		      "arp_out", r->arp_frames[WIRE_C2S], "arp_back", r->arp_frames[WIRE_S2C]);
	pthread_mutex_unlock(&r->lock);
	if (r->relay && r->arp_frames[WIRE_C2S] && r->arp_frames[WIRE_S2C])
		ev_note(r->ctx->em, "ping.first_arp_wire", p, NULL);
	else if (!r->relay)
		ev_note(r->ctx->em, "ping.first_arp", p, NULL);
	else
		json_decref(p);
}

static json_t *summary(struct ping_run *r)
{
	char host[64];
	json_t *s, *a;

	a = lsock_addr_json((struct sockaddr *)&r->srv);
	snprintf(host, sizeof host, "%s", json_string_value(json_object_get(a, "addr")));
	if (r->byo) {
		s = json_pack("{s:s, s:i, s:I, s:I, s:I, s:b}", "server", host, "port",
			      (int)json_integer_value(json_object_get(a, "port")), "datagrams",
			      (json_int_t)r->s_datagrams, "bytes", (json_int_t)r->s_bytes, "replies",
			      (json_int_t)r->s_replies, "idle_stop", r->idle_stopped);
		json_decref(a);
		return s;
	}
	s = json_pack("{s:s, s:i, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I}", "server", host, "port",
		      (int)json_integer_value(json_object_get(a, "port")), "sent",
		      (json_int_t)r->sent, "received", (json_int_t)r->received, "late",
		      (json_int_t)r->late, "lost", (json_int_t)r->lost, "loss_pct",
		      r->sent ? 100.0 * (double)r->lost / (double)r->sent : 0.0, "duplicates",
		      (json_int_t)r->dups, "reordered", (json_int_t)r->reordered, "unexpected",
		      (json_int_t)r->bad);
	json_decref(a);
	if (r->st.n) {
		json_object_set_new(s, "rtt_min_us", json_integer(r->st.min_us));
		json_object_set_new(s, "rtt_avg_us", json_integer((json_int_t)llround(ping_stats_avg(&r->st))));
		json_object_set_new(s, "rtt_max_us", json_integer(r->st.max_us));
		json_object_set_new(s, "rtt_mdev_us", json_integer((json_int_t)llround(ping_stats_mdev(&r->st))));
	}
	if (r->relay) {
		json_object_set_new(s, "lost_c2s", json_integer(r->lost_by[WIRE_C2S]));
		json_object_set_new(s, "lost_s2c", json_integer(r->lost_by[WIRE_S2C]));
	}
	json_object_set_new(s, "server_datagrams", json_integer(r->s_datagrams));
	return s;
}

static int ping_run(struct lab_ctx *ctx)
{
	const struct lab_params *p = ctx->p;
	struct ping_run r;
	pthread_t srv;
	int rc, srv_started = 0;

	memset(&r, 0, sizeof r);
	r.ctx = ctx;
	r.byo = lab_int(p, "mode") == 1;
	r.count = (int)lab_int(p, "count");
	r.interval_ms = (int)lab_int(p, "interval_ms");
	r.size = (int)lab_int(p, "size");
	r.timeout_ms = (int)lab_int(p, "timeout_ms");
	r.fragment = (int)lab_int(p, "fragment");
	r.transform = lab_int(p, "transform") == 0 ? ECHO_UPPER : ECHO_PLAIN;
	r.idle_ms = (int)lab_int(p, "idle_timeout") * 1000;
	r.sfd = -1;
	r.relay = net_has_relay(ctx->net);
	r.fragmented = ping_fragments(r.size, net_mtu(ctx->net)) > 1;
	pthread_mutex_init(&r.lock, NULL);
	r.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r.probes = calloc((size_t)r.count, sizeof *r.probes);
	if (r.done_fd < 0 || !r.probes) {
		rc = -ENOMEM;
		ev_error(ctx->em, "internal", NULL, "out of memory");
		goto out;
	}
	rc = open_server(&r);
	if (rc < 0)
		goto out;
	if (r.byo) {
		ev_note(ctx->em, "ping.byo_ready",
			json_pack("{s:s, s:i}", "addr", lab_str(p, "bind"), "port", r.srv_port),
			NULL);
	} else if (r.fragmented) {
		ev_note(ctx->em, "ping.fragments",
			json_pack("{s:i, s:i, s:i}", "size", r.size, "mtu", net_mtu(ctx->net),
				  "fragments", ping_fragments(r.size, net_mtu(ctx->net))),
			NULL);
	}
	if (r.relay && !r.byo)
		net_set_frame_hook(ctx->net, ping_hook, &r);
	if (pthread_create(&srv, NULL, server_thread, &r) != 0) {
		rc = -EAGAIN;
		ev_error(ctx->em, "internal", NULL, "could not start the server thread");
		goto out;
	}
	srv_started = 1;
	if (!r.byo) {
		rc = client_run(&r);
		lab_wake(ctx, r.done_fd);
	}
	pthread_join(srv, NULL);
	net_set_frame_hook(ctx->net, NULL, NULL);
	if (rc == 0 && !r.byo)
		first_probe_note(&r);
	if (!r.byo && rc >= 0 && !r.failed && !lab_cancelled(ctx) && r.st.n > 0) {
		/* What recording the calls added to the round trips shown: two
		 * recorded calls lie between a probe's two clock reads, the
		 * client's sendto and the server's recvfrom (the client's
		 * recvfrom is recorded after its return time was read, the
		 * server's sendto after the reply left). */
		json_t *cost = lsock_trace_cost(ctx, 2, llround(ping_stats_avg(&r.st)));
		if (cost)
			ev_note(ctx->em, "ping.trace_cost", cost, NULL);
	}
	if (rc == -ECANCELED || lab_cancelled(ctx))
		rc = 0; /* the front end reports the cancel or the timeout */
	else if (rc < 0 || r.failed) {
		char msg[160];
		snprintf(msg, sizeof msg, "a socket call failed unexpectedly (%s); see the failed call above",
			 rc < 0 ? strerror(-rc) : "server");
		ev_error(ctx->em, "lab_failed", NULL, msg);
		rc = -EIO;
	}
out:
	if (r.sfd >= 0)
		lsock_close(ctx, (struct lsock_who){"server", 0}, r.sfd);
	if (r.sfd >= 0 || srv_started) {
		json_t *s = summary(&r);
		json_object_update(ctx->summary, s);
		json_decref(s);
	}
	if (r.done_fd >= 0)
		close(r.done_fd);
	free(r.probes);
	pthread_mutex_destroy(&r.lock);
	return rc;
}

static int ping_check(const struct lab_params *p, const char **param, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *bind = lab_str(p, "bind");
	int byo = lab_int(p, "mode") == 1, two = lab_int(p, "network") == 1;
	int fragment = (int)lab_int(p, "fragment");
	long long size = lab_int(p, "size"), max;

	if (lsock_parse_addr(bind, 0, &ss, &sl) < 0) {
		*param = "bind";
		snprintf(err, errlen,
			 "parameter 'bind': must be an IPv4 or IPv6 address literal (got \"%.45s\")",
			 bind);
		return -EINVAL;
	}
	if (net_params_check(p, param, err, errlen) < 0)
		return -EINVAL;
	if (byo && two) {
		*param = "network";
		snprintf(err, errlen,
			 "parameter 'network': mode=server runs on the host's network so that your "
			 "own client can reach it; use network=loopback");
		return -EINVAL;
	}
	if (byo && lab_is_set(p, "count")) {
		*param = "count";
		snprintf(err, errlen,
			 "parameter 'count': not used with mode=server (your own client sends "
			 "instead)");
		return -EINVAL;
	}
	if (two && lab_is_set(p, "bind")) {
		*param = "bind";
		snprintf(err, errlen,
			 "parameter 'bind': with network=two-hosts the server binds its own host's "
			 "address (shown in run.start)");
		return -EINVAL;
	}
	if (fragment && !two) {
		*param = "fragment";
		snprintf(err, errlen,
			 "parameter 'fragment': needs network=two-hosts; loopback's MTU is 65536, so "
			 "no UDP datagram is ever fragmented there");
		return -EINVAL;
	}
	max = two && !fragment ? ping_max_unfragmented(NET_MTU) : PING_UDP_MAX;
	if (size > max) {
		*param = "size";
		snprintf(err, errlen,
			 "parameter 'size': at most %lld bytes fit in one %d-byte IP packet on "
			 "network=two-hosts (20 bytes of IPv4 header and 8 of UDP header); set "
			 "fragment=true to send %lld bytes as IP fragments",
			 max, NET_MTU, size);
		return -EINVAL;
	}
	if (!byo && lab_int(p, "count") * lab_int(p, "interval_ms") > 3600LL * 1000) {
		*param = "count";
		snprintf(err, errlen,
			 "parameter 'count': count x interval_ms must stay within one hour (got "
			 "%lld x %lld ms)",
			 lab_int(p, "count"), lab_int(p, "interval_ms"));
		return -EINVAL;
	}
	return 0;
}

static enum lab_net ping_network(const struct lab_params *p)
{
	return lab_int(p, "mode") == 1 ? LAB_NET_HOST : LAB_NET_PRIVATE;
}

/* ---- the CLI's ping-style lines ---- */

static const char *jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static long long jint(const json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static int clip(int n, size_t len)
{
	if (n < 0)
		return 0;
	return (size_t)n < len ? n : (int)len - 1;
}

static int ping_format(const struct lab_params *p, const json_t *ev, char *buf, size_t len)
{
	const char *type = jstr(ev, "type");
	int byo = lab_int(p, "mode") == 1;
	const json_t *from = json_object_get(ev, "from");

	if (!strcmp(type, "listening")) {
		if (byo)
			return clip(snprintf(buf, len,
					     "UDP echo server on %s:%lld; send it datagrams:\n"
					     "    nc -u %s %lld\n",
					     jstr(ev, "addr"), jint(ev, "port"), jstr(ev, "addr"),
					     jint(ev, "port")),
				    len);
		return clip(snprintf(buf, len, "PING %s:%lld (UDP): %lld data bytes, every %lld ms\n",
				     jstr(ev, "addr"), jint(ev, "port"), lab_int(p, "size"),
				     lab_int(p, "interval_ms")),
			    len);
	}
	if (!strcmp(type, "syscall")) {
		const char *call = jstr(ev, "call");
		if (!byo || jint(ev, "ret") < 0)
			return jint(ev, "ret") < 0 ? -1 : 0;
		if (!strcmp(call, "recvfrom"))
			return clip(snprintf(buf, len, "%10.3f  datagram from %s:%lld, %lld bytes: \"%.60s\"\n",
					     (double)jint(ev, "t_us") / 1000.0, jstr(from, "addr"),
					     jint(from, "port"), jint(ev, "bytes"), jstr(ev, "data")),
				    len);
		if (!strcmp(call, "sendto"))
			return clip(snprintf(buf, len, "%10.3f  echoed %lld bytes back\n",
					     (double)jint(ev, "t_us") / 1000.0, jint(ev, "bytes")),
				    len);
		return 0;
	}
	if (!strcmp(type, "wire"))
		return 0; /* each probe's line says what the wire did to it */
	if (!strcmp(type, "probe")) {
		const char *st = jstr(ev, "status");
		double ms = (double)jint(ev, "rtt_us") / 1000.0;
		if (!strcmp(st, "lost"))
			return clip(snprintf(buf, len, "seq=%lld lost (%s)\n", jint(ev, "probe"),
					     jstr(ev, "cause")),
				    len);
		if (!strcmp(st, "unexpected"))
			return clip(snprintf(buf, len, "%lld bytes from %s:%lld: not a probe of ours\n",
					     jint(ev, "bytes"), jstr(from, "addr"), jint(from, "port")),
				    len);
		return clip(snprintf(buf, len, "%lld bytes from %s:%lld: seq=%lld time=%.3f ms%s%s%s\n",
				     jint(ev, "bytes"), jstr(from, "addr"), jint(from, "port"),
				     jint(ev, "probe"), ms,
				     !strcmp(st, "dup") ? " (DUP!)" : "",
				     !strcmp(st, "late") ? " (late: after its timeout)" : "",
				     json_is_true(json_object_get(ev, "reordered")) ? " (out of order)"
										    : ""),
			    len);
	}
	if (!strcmp(type, "run.end")) {
		const json_t *s = json_object_get(ev, "summary");
		const json_t *w = json_object_get(s, "wire");
		int n = 0, k;
		if (byo || !json_object_get(s, "sent"))
			return -1;
		k = snprintf(buf, len,
			     "--- %s udp-ping statistics (%s) ---\n"
			     "%lld probes sent, %lld received, %lld late, %.1f%% loss, %lld duplicates, "
			     "%lld reordered, time %.0f ms\n",
			     jstr(s, "server"), jstr(ev, "status"), jint(s, "sent"),
			     jint(s, "received"), jint(s, "late"),
			     json_number_value(json_object_get(s, "loss_pct")), jint(s, "duplicates"),
			     jint(s, "reordered"), (double)jint(ev, "t_us") / 1000.0);
		n += clip(k, len);
		if (json_object_get(s, "rtt_min_us") && (size_t)n < len) {
			k = snprintf(buf + n, len - (size_t)n,
				     "rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n",
				     (double)jint(s, "rtt_min_us") / 1000.0,
				     (double)jint(s, "rtt_avg_us") / 1000.0,
				     (double)jint(s, "rtt_max_us") / 1000.0,
				     (double)jint(s, "rtt_mdev_us") / 1000.0);
			n += clip(k, len - (size_t)n);
		}
		for (k = 0; w && k < 2 && (size_t)n < len; k++) {
			const json_t *d = json_object_get(w, dir_names[k]);
			int m = snprintf(buf + n, len - (size_t)n,
					 "wire %s: %lld frames, %lld dropped, %lld duplicated, %lld "
					 "reordered, %lld delayed, %lld queue drops\n",
					 dir_names[k], jint(d, "frames"), jint(d, "dropped"),
					 jint(d, "duplicated"), jint(d, "reordered"), jint(d, "delayed"),
					 jint(d, "queue_drops"));
			n += clip(m, len - (size_t)n);
		}
		return n;
	}
	return -1;
}

const struct lab_desc lab_udp_ping = {
	.name = "udp-ping",
	.title = "UDP ping",
	.summary = "Numbered UDP probes to an echo server: round-trip times, loss, duplicates and "
		   "reordering like ping(8), over a wire you can make lossy and slow.",
	.params = ping_params,
	.n_params = sizeof ping_params / sizeof ping_params[0],
	.check = ping_check,
	.network = ping_network,
	.run = ping_run,
	.format = ping_format,
};
