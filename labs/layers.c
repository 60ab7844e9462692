/* layers.c: the layers lab: encapsulation, ARP, the gateway and a router, shown on frames captured on every link and on the kernel's own neighbour and route reports. */
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/errqueue.h>
#include <linux/neighbour.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "capture/capture.h"
#include "decode/decode.h"
#include "lab.h"
#include "net/frame.h"
#include "net/nl.h"
#include "net/topo.h"
#include "sock.h"

/*
 * The topology: hosts A and B and the router R's eth0 on one Ethernet
 * segment (subnet 1), R's eth1 and host C on another (subnet 2), each
 * segment a bridge in a switch namespace (labs/net/topo.h). A capture on
 * every bridge port sees every frame of every link; a neighbour monitor
 * (rtnetlink, RTNLGRP_NEIGH) in every host's namespace hears every change
 * the kernel reports to its ARP cache. An observer thread reads both as they
 * come and emits them at once ("frame", "neigh"); the lab's own thread runs
 * the scenarios, makes the socket calls (reported as "syscall" events), asks
 * the kernel for routes and neighbour entries ("route", "neigh.sample": a
 * sample is a query's answer at one instant, never a transition), and
 * derives each scenario's findings from the frames the observer kept.
 *
 * What the kernel does not report is said, not invented: Linux sends no
 * notification when it creates an entry in INCOMPLETE or moves one from
 * STALE to DELAY; the ARP request on the wire and a query's sample are the
 * evidence for those.
 */

#define LAYERS_PORT 5000
#define LY_MAX_LINKS (TOPO_MAX_HOSTS * TOPO_MAX_IFS)
#define MAX_FRAMES 512    /* frames kept for the findings; later ones are only emitted */
#define FRAME_KEEP 1600   /* bytes kept of each (a 1500-byte MTU frame is 1514) */
#define HEX_MAX 1600      /* frame bytes shown as hex in an event */
#define MAX_NEIGH 256     /* neighbour reports kept */
#define WAIT_MS 3000      /* how long a scenario waits for the evidence it expects */
/* A link's delay at most: a scenario's slowest exchange (A to C and back,
 * with ARP on both subnets) crosses a delayed link about four times and must
 * fit in WAIT_MS. */
#define LY_DELAY_MAX 500

enum { S_SAME = 1, S_OTHER, S_TTL, S_FRAG, S_AGEING, S_COUNT };

static const char *const scenario_choices[] = {"all",  "same-subnet", "other-subnet", "ttl",
					       "fragment", "ageing", NULL};
static const char *const scenario_names[] = {
	[S_SAME] = "same-subnet", [S_OTHER] = "other-subnet", [S_TTL] = "ttl",
	[S_FRAG] = "fragment",	  [S_AGEING] = "ageing",
};

static const struct lab_param_def layers_params[] = {
	{"scenario", LAB_P_ENUM, "Scenario",
	 "all, or one of: same-subnet (A to B: ARP), other-subnet (A to C through the router), "
	 "ttl (a datagram that dies at the router), fragment (a datagram larger than the MTU), "
	 "ageing (the ARP cache entry going stale and being probed)",
	 NULL, "all", 0, 0, scenario_choices, 0},
	{"size", LAB_P_INT, "Payload size", "UDP payload bytes of the datagrams A sends", "bytes",
	 "32", 1, 1472, NULL, 0},
	{"ttl", LAB_P_INT, "TTL", "ttl scenario: the IP TTL of A's datagram to C (1 dies at the router)",
	 NULL, "1", 1, 64, NULL, 0},
	{"frag_size", LAB_P_INT, "Large datagram",
	 "fragment scenario: UDP payload bytes of A's datagram to C (more than one frame holds)",
	 "bytes", "3000", 1473, 65507, NULL, 0},
	{"mtu2", LAB_P_INT, "MTU of subnet 2",
	 "The MTU of the router's second segment (R to C); below 1500 the router fragments too",
	 "bytes", "1500", 576, 1500, NULL, LAB_PF_ADVANCED},
	{"reachable_ms", LAB_P_INT, "ARP reachable time",
	 "base_reachable_time of every host's ARP cache: an entry stays REACHABLE for a random "
	 "time between half and one and a half times this",
	 "ms", "1000", 200, 30000, NULL, LAB_PF_ADVANCED},
	{"delay_probe_ms", LAB_P_INT, "ARP delay before probing",
	 "delay_first_probe_time: how long a used STALE entry waits in DELAY before the kernel "
	 "probes",
	 "ms", "300", 100, 5000, NULL, LAB_PF_ADVANCED},
	{"a_delay_ms", LAB_P_INT, "A's link: delay",
	 "One-way delay socklab's relay adds to every frame on A's link, each way", "ms", "0", 0,
	 LY_DELAY_MAX, NULL, LAB_PF_ADVANCED},
	{"a_loss_pct", LAB_P_INT, "A's link: loss",
	 "Share of IP frames the relay on A's link drops, each way (ARP is never dropped)", "%",
	 "0", 0, 100, NULL, LAB_PF_ADVANCED},
	{"r2_delay_ms", LAB_P_INT, "Router's second link: delay",
	 "One-way delay socklab's relay adds to every frame on R's link to subnet 2, each way",
	 "ms", "0", 0, LY_DELAY_MAX, NULL, LAB_PF_ADVANCED},
	{"r2_loss_pct", LAB_P_INT, "Router's second link: loss",
	 "Share of IP frames the relay on R's link to subnet 2 drops, each way (ARP is never "
	 "dropped)",
	 "%", "0", 0, 100, NULL, LAB_PF_ADVANCED},
	{"seed", LAB_P_INT, "Wire seed",
	 "Seed of the relays' random decisions: the same seed and parameters drop the same "
	 "frames; 0 picks one (the topology event shows it)",
	 NULL, "0", 0, 2147483647, NULL, LAB_PF_ADVANCED},
};

/* ---- the run's state ---- */

struct link {
	int host, ifi; /* which host interface the port serves */
	struct cap *cap;
};

struct frec {
	int n;        /* frame number in the run, from 1 */
	int link;
	int to_host;  /* the bridge delivered it to the host (else the host sent it) */
	int scenario;
	int64_t t_us;
	uint32_t len, caplen;
	uint8_t data[FRAME_KEEP];
	struct frame_info fi;
	uint16_t ip_csum;
	unsigned csum_flags; /* the capture's CAP_CSUM_* (checksum offload) */
};

struct nrec {
	int host;
	uint32_t ip;
	uint16_t from, to;
	int deleted;
	int64_t t_us;
	int scenario;
	uint8_t mac[6];
	int has_mac;
};

struct lr {
	struct lab_ctx *ctx;
	struct topo *t;
	int hA, hB, hC, hR;
	struct link links[LY_MAX_LINKS];
	int n_links;
	struct nl mon[TOPO_MAX_HOSTS];
	struct cap_pcap *pcap;
	int wake_fd;
	pthread_t obs;
	int obs_started;
	int64_t t0_ns;

	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t cond;
	int stop;
	int scenario;
	uint64_t barrier_req, barrier_done;
	struct frec *frames; /* [MAX_FRAMES] */
	int n_frames, frames_total, frames_unkept;
	struct nrec neigh[MAX_NEIGH];
	int n_neigh;
	uint16_t nstate[TOPO_MAX_HOSTS][8]; /* last reported state per host and peer octet */
	uint32_t nip[TOPO_MAX_HOSTS][8];
	int monitor_overruns;
	int cap_failed; /* set up by the lab's thread before the observer starts */
};

/* ---- helpers ---- */

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
	s[2 * n] = 0;
	j = json_string(s);
	free(s);
	return j;
}

static json_t *ip_json(uint32_t a)
{
	char s[16];

	frame_ip_str(a, s);
	return json_string(s);
}

static json_t *mac_json(const uint8_t *m)
{
	char s[18];

	frame_mac_str(m, s);
	return json_string(s);
}

static const struct topo_if *link_if(const struct lr *r, int l)
{
	return &r->t->host[r->links[l].host].ifs[r->links[l].ifi];
}

/* The host (index) owning address a, or -1. */
static int host_of_addr(const struct lr *r, uint32_t a)
{
	int h, i;

	for (h = 0; h < r->t->n_hosts; h++)
		for (i = 0; i < r->t->host[h].n_ifs; i++)
			if (r->t->host[h].ifs[i].addr == a)
				return h;
	return -1;
}

static const char *host_name(const struct lr *r, int h)
{
	return h >= 0 ? r->t->host[h].name : "?";
}

/* The Internet checksum (RFC 1071) over n bytes. */
static uint16_t inet_csum(const uint8_t *p, size_t n)
{
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* ---- the observer thread ---- */

struct batch_item {
	int link;
	struct cap_frame f;
	uint8_t *copy;
};

/* Frames read but not taken yet. The rings hand their frames over block by
 * block (a block at the latest RING_TOV_MS after its first frame, later when
 * the machine is busy), so a frame on one link can be read before an earlier
 * one on another link: a frame is taken, in the order of the kernel's
 * stamps, only once it is HOLD_NS old, or at a barrier once every ring has
 * handed over what it captured before the barrier's pass began. */
#define BATCH_MAX 1024
#define HOLD_NS (50 * 1000000LL)

struct batch {
	struct batch_item it[BATCH_MAX];
	int n;
	int link;
};

static int on_cap(void *arg, const struct cap_frame *f)
{
	struct batch *b = arg;
	struct batch_item *it;

	if (b->n == (int)(sizeof b->it / sizeof b->it[0]))
		return -ENOBUFS; /* read the rest in the next pass */
	it = &b->it[b->n];
	it->copy = malloc(f->caplen ? f->caplen : 1);
	if (!it->copy)
		return -ENOMEM;
	memcpy(it->copy, f->data, f->caplen);
	it->f = *f;
	it->f.data = it->copy;
	it->link = b->link;
	b->n++;
	return 0;
}

static int by_time(const void *a, const void *b)
{
	const struct batch_item *x = a, *y = b;

	if (x->f.t_mono_ns != y->f.t_mono_ns)
		return x->f.t_mono_ns < y->f.t_mono_ns ? -1 : 1;
	return x->link - y->link;
}

static json_t *frame_fields(struct lr *r, const struct frec *fr, const uint8_t *data)
{
	const struct frame_info *fi = &fr->fi;
	const struct topo_if *ti = link_if(r, fr->link);
	struct dec_packet *d = malloc(sizeof *d);
	char summary[200];
	json_t *o, *dj;

	frame_summary(fi, fr->len, summary, sizeof summary);
	o = json_pack("{s:i, s:s, s:s, s:s, s:i, s:s, s:I, s:i, s:i, s:i, s:s, s:s}", "n", fr->n,
		      "port", ti->port, "host", r->t->host[r->links[fr->link].host].name, "if",
		      ti->name, "seg", ti->seg, "dir", fr->to_host ? "to_host" : "from_host",
		      "t_kernel_us", (json_int_t)fr->t_us, "len", fr->len, "caplen", fr->caplen,
		      "scenario", fr->scenario, "proto", frame_proto_name(fi), "summary", summary);
	if (!o) {
		free(d);
		return NULL;
	}
	json_object_set_new(o, "eth", json_pack("{s:o, s:o, s:i}", "dst", mac_json(fi->dst_mac),
						"src", mac_json(fi->src_mac), "type",
						fi->ethertype));
	if (fi->ethertype == FRAME_ETH_P_ARP && fi->status == FRAME_OK)
		json_object_set_new(o, "arp", json_pack("{s:i, s:o, s:o, s:o}", "op", fi->arp_op,
							"sha", mac_json(fi->arp_sha), "spa",
							ip_json(fi->arp_spa), "tpa",
							ip_json(fi->arp_tpa)));
	if (fi->is_ipv4) {
		json_t *ip = json_pack("{s:o, s:o, s:i, s:i, s:i, s:i, s:b, s:b, s:i, s:i}", "src",
				       ip_json(fi->src), "dst", ip_json(fi->dst), "ttl", fi->ttl,
				       "id", fi->ip_id, "proto", fi->proto, "frag_off",
				       fi->frag_off, "mf", fi->more_frags, "df", fi->dont_frag,
				       "total_len", fi->ip_total_len, "checksum", fr->ip_csum);
		json_object_set_new(o, "ip", ip);
		if (fi->proto == 1 && fi->frag_off == 0)
			json_object_set_new(o, "icmp", json_pack("{s:i, s:i}", "type", fi->icmp_type,
								 "code", fi->icmp_code));
		if (fi->proto == 17 && fi->has_l4)
			json_object_set_new(o, "udp", json_pack("{s:i, s:i, s:i}", "sport", fi->sport,
								"dport", fi->dport, "len",
								fi->udp_len));
	}
	json_object_set_new(o, "bytes", hex_json(data, fr->caplen < HEX_MAX ? fr->caplen : HEX_MAX));
	if (d) {
		dec_packet_rx(data, fr->caplen, fr->len, DEC_LINK_ETHERNET, fr->csum_flags, d);
		json_object_set_new(o, "checksums",
				    dec_checksums_json(&d->ip4.csum,
						       dec_has(d, DEC_L_UDP) ? &d->udp.csum : &d->tcp.csum,
						       dec_has(d, DEC_L_UDP) ? DEC_L_UDP : DEC_L_TCP));
		dj = dec_packet_json(d);
		if (dj)
			json_object_set(o, "layers", json_object_get(dj, "layers"));
		json_decref(dj);
		free(d);
	}
	return o;
}

/* Emit one captured frame, then keep it (when there is room) for the
 * scenarios' findings. Observer thread. */
static void take_frame(struct lr *r, const struct batch_item *it)
{
	struct frec *fr = calloc(1, sizeof *fr);
	struct dec_packet *d;

	if (r->pcap)
		cap_pcap_write(r->pcap, &it->f);
	if (!fr)
		return;
	pthread_mutex_lock(&r->lock);
	fr->n = ++r->frames_total;
	fr->scenario = r->scenario;
	pthread_mutex_unlock(&r->lock);
	fr->link = it->link;
	fr->to_host = it->f.outgoing; /* the port sent it: towards the host */
	fr->t_us = it->f.t_mono_ns >= 0 ? (it->f.t_mono_ns - r->t0_ns) / 1000
					: ev_now_us(r->ctx->em);
	fr->len = it->f.len;
	fr->caplen = it->f.caplen < FRAME_KEEP ? it->f.caplen : FRAME_KEEP;
	memcpy(fr->data, it->f.data, fr->caplen);
	fr->csum_flags = it->f.csum_flags;
	frame_parse(fr->data, fr->caplen, &fr->fi);
	d = malloc(sizeof *d);
	if (d) {
		if (dec_packet(fr->data, fr->caplen, fr->len, DEC_LINK_ETHERNET, d) != DEC_INVALID &&
		    dec_has(d, DEC_L_IPV4))
			fr->ip_csum = d->ip4.checksum;
		free(d);
	}
	ev_emit(r->ctx->em, "frame", frame_fields(r, fr, it->f.data));

	pthread_mutex_lock(&r->lock);
	if (r->n_frames < MAX_FRAMES) {
		r->frames[r->n_frames] = *fr;
		/* The payload pointer must point into the kept copy. */
		if (fr->fi.payload)
			r->frames[r->n_frames].fi.payload =
				r->frames[r->n_frames].data + (fr->fi.payload - fr->data);
		r->n_frames++;
	} else {
		r->frames_unkept++;
	}
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	free(fr);
}

struct mon_arg {
	struct lr *r;
	int host;
};

/* One neighbour report from host's kernel: emitted first, then made visible
 * to the scenarios, so a scenario acting on it comes after it in the stream.
 * Observer thread. */
static void on_neigh(void *arg, const struct nl_neigh *ne)
{
	struct mon_arg *m = arg;
	struct lr *r = m->r;
	struct nrec nr;
	uint16_t from = 0;
	int slot = -1, i, peer;
	json_t *o;

	pthread_mutex_lock(&r->lock);
	for (i = 0; i < 8; i++) {
		if (r->nip[m->host][i] == ne->ip) {
			slot = i;
			break;
		}
		if (slot < 0 && r->nip[m->host][i] == 0)
			slot = i;
	}
	if (slot >= 0) {
		from = r->nstate[m->host][slot];
		r->nip[m->host][slot] = ne->ip;
		r->nstate[m->host][slot] = ne->deleted ? 0 : ne->state;
	}
	memset(&nr, 0, sizeof nr);
	nr.host = m->host;
	nr.ip = ne->ip;
	nr.from = from;
	nr.to = ne->deleted ? 0 : ne->state;
	nr.deleted = ne->deleted;
	nr.scenario = r->scenario;
	nr.has_mac = ne->has_mac;
	memcpy(nr.mac, ne->mac, 6);
	pthread_mutex_unlock(&r->lock);

	peer = host_of_addr(r, ne->ip);
	o = json_pack("{s:s, s:o, s:s, s:s, s:s, s:b, s:i, s:s}", "host", r->t->host[m->host].name,
		      "ip", ip_json(ne->ip), "peer", host_name(r, peer), "from", nl_nud_name(from),
		      "to", ne->deleted ? "NONE" : nl_nud_name(ne->state), "deleted", ne->deleted,
		      "scenario", nr.scenario, "source", "kernel: rtnetlink RTM_NEWNEIGH notification");
	if (o && ne->has_mac)
		json_object_set_new(o, "mac", mac_json(ne->mac));
	nr.t_us = ev_now_us(r->ctx->em);
	ev_emit(r->ctx->em, "neigh", o);

	pthread_mutex_lock(&r->lock);
	if (r->n_neigh < MAX_NEIGH)
		r->neigh[r->n_neigh++] = nr;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void *observer(void *arg)
{
	struct lr *r = arg;
	struct pollfd pfd[LY_MAX_LINKS + TOPO_MAX_HOSTS + 1];
	struct mon_arg margs[TOPO_MAX_HOSTS];
	struct batch *b = calloc(1, sizeof *b);
	int np, i, h, stop = 0;

	if (!b)
		return NULL;
	cap_reader_priority();
	for (;;) {
		struct timespec ts;
		int64_t now, mark;
		uint64_t req, v;
		int flush, full = 0;

		np = 0;
		for (i = 0; i < r->n_links; i++)
			pfd[np++] = (struct pollfd){.fd = cap_fd(r->links[i].cap), .events = POLLIN};
		for (h = 0; h < r->t->n_hosts; h++)
			pfd[np++] = (struct pollfd){.fd = mnl_socket_get_fd(r->mon[h].sock),
						    .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = r->wake_fd, .events = POLLIN};
		/* Frames held back are due within HOLD_NS: look again soon. */
		if (!stop && poll(pfd, (nfds_t)np, b->n ? 10 : 200) < 0 && errno != EINTR)
			break;
		if (read(r->wake_fd, &v, sizeof v) < 0) {
			/* Nothing signalled: EAGAIN. */
		}
		pthread_mutex_lock(&r->lock);
		req = r->barrier_req;
		stop = r->stop;
		/* A barrier or the stop: also wait for the frames the kernel
		 * still holds in a ring block (handed over within a few ms). */
		flush = stop || r->barrier_done < req;
		pthread_mutex_unlock(&r->lock);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;

		/* Neighbour reports first: they are read as they come (their time
		 * is when socklab read them); frames carry the kernel's stamps. */
		for (h = 0; h < r->t->n_hosts; h++) {
			int rc;

			margs[h] = (struct mon_arg){r, h};
			do
				rc = nl_neigh_read(&r->mon[h], on_neigh, &margs[h]);
			while (rc >= 0);
			if (rc == -ENOBUFS) {
				pthread_mutex_lock(&r->lock);
				r->monitor_overruns++;
				pthread_mutex_unlock(&r->lock);
			}
		}
		for (i = 0; i < r->n_links; i++) {
			int rc;

			b->link = i;
			do {
				int before = b->n;
				rc = flush ? cap_flush(r->links[i].cap, on_cap, b)
					   : cap_read(r->links[i].cap, on_cap, b);
				if (b->n == before)
					break;
			} while (rc >= 0 && b->n < BATCH_MAX);
			if (b->n >= BATCH_MAX)
				full = 1;
		}
		qsort(b->it, (size_t)b->n, sizeof b->it[0], by_time);
		/* A full batch is taken whole (its order may then be off at
		 * the edges), so reading can go on. */
		mark = flush ? now : now - HOLD_NS;
		for (i = 0; i < b->n; i++) {
			if (!stop && !full && b->it[i].f.t_mono_ns >= mark)
				break;
			take_frame(r, &b->it[i]);
			free(b->it[i].copy);
		}
		memmove(b->it, b->it + i, (size_t)(b->n - i) * sizeof b->it[0]);
		b->n -= i;
		pthread_mutex_lock(&r->lock);
		/* A barrier is passed once nothing was left unread. */
		if (r->barrier_done < req && !full)
			r->barrier_done = req;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		if (stop)
			break;
	}
	for (i = 0; i < b->n; i++)
		free(b->it[i].copy);
	free(b);
	return NULL;
}

/* ---- waiting for evidence (the lab's thread) ---- */

typedef int (*pred_fn)(struct lr *r, const void *arg);

/* Wait until pred holds (checked under the lock), the run is cancelled or
 * ms pass: 1, 0 on timeout, -ECANCELED. */
static int wait_until(struct lr *r, pred_fn pred, const void *arg, int ms)
{
	struct timespec now, until;
	int64_t end_ns;
	int ok = 0;

	clock_gettime(CLOCK_MONOTONIC, &now);
	end_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec + (int64_t)ms * 1000000;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		int64_t slice;

		ok = pred(r, arg);
		if (ok)
			break;
		pthread_mutex_unlock(&r->lock);
		if (lab_cancelled(r->ctx))
			return -ECANCELED;
		pthread_mutex_lock(&r->lock);
		clock_gettime(CLOCK_MONOTONIC, &now);
		slice = end_ns - ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
		if (slice <= 0)
			break;
		if (slice > 50000000)
			slice = 50000000; /* look at the cancel fd now and then */
		slice += (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
		until.tv_sec = slice / 1000000000;
		until.tv_nsec = slice % 1000000000;
		pthread_cond_timedwait(&r->cond, &r->lock, &until);
	}
	pthread_mutex_unlock(&r->lock);
	return ok;
}

static int barrier_pred(struct lr *r, const void *arg)
{
	return r->barrier_done >= *(const uint64_t *)arg;
}

/* Let the observer read everything queued now (frames and reports). */
static void barrier(struct lr *r)
{
	uint64_t one = 1, req;

	pthread_mutex_lock(&r->lock);
	req = ++r->barrier_req;
	pthread_mutex_unlock(&r->lock);
	if (write(r->wake_fd, &one, sizeof one) < 0) {
		/* An eventfd only fails when its counter would overflow. */
	}
	wait_until(r, barrier_pred, &req, 2000);
}

/* A frame of scenario s on link (-1: any) in direction to_host (-1: any). */
struct fmatch {
	int s, link, to_host;
	int arp_op;       /* 0: not ARP; else the ARP opcode */
	uint8_t proto;    /* IPv4 protocol when not ARP (0: any IPv4) */
	uint32_t src, dst; /* IPv4 addresses when not 0 */
	int after_n;      /* only frames numbered above this */
};

static int fmatch_ok(const struct frec *f, const struct fmatch *m)
{
	const struct frame_info *fi = &f->fi;

	if (f->scenario != m->s || f->n <= m->after_n)
		return 0;
	if ((m->link >= 0 && f->link != m->link) || (m->to_host >= 0 && f->to_host != m->to_host))
		return 0;
	if (m->arp_op)
		return fi->ethertype == FRAME_ETH_P_ARP && fi->arp_op == m->arp_op &&
		       (!m->src || fi->arp_spa == m->src) && (!m->dst || fi->arp_tpa == m->dst);
	return fi->is_ipv4 && (!m->proto || fi->proto == m->proto) && (!m->src || fi->src == m->src) &&
	       (!m->dst || fi->dst == m->dst);
}

/* The first matching frame's index in r->frames, or -1. Under the lock. */
static int find_frame(const struct lr *r, const struct fmatch *m)
{
	int i;

	for (i = 0; i < r->n_frames; i++)
		if (fmatch_ok(&r->frames[i], m))
			return i;
	return -1;
}

static int frame_pred(struct lr *r, const void *arg)
{
	return find_frame(r, arg) >= 0;
}

/* A neighbour report: host's entry for ip reached state `to` in scenario s,
 * after report number after (an index into r->neigh). */
struct nmatch {
	int s, host;
	uint32_t ip;
	uint16_t to;
	int after;
};

static int find_neigh(const struct lr *r, const struct nmatch *m)
{
	int i;

	for (i = m->after; i < r->n_neigh; i++) {
		const struct nrec *n = &r->neigh[i];
		if (n->scenario == m->s && n->host == m->host && n->ip == m->ip && (n->to & m->to))
			return i;
	}
	return -1;
}

static int neigh_pred(struct lr *r, const void *arg)
{
	return find_neigh(r, arg) >= 0;
}

static int n_neigh_now(struct lr *r)
{
	int n;

	pthread_mutex_lock(&r->lock);
	n = r->n_neigh;
	pthread_mutex_unlock(&r->lock);
	return n;
}

static int last_frame_n(struct lr *r)
{
	int n;

	pthread_mutex_lock(&r->lock);
	n = r->frames_total;
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* ---- asking the kernel (the lab's thread) ---- */

static int link_of(const struct lr *r, int h, int ifi)
{
	int l;

	for (l = 0; l < r->n_links; l++)
		if (r->links[l].host == h && r->links[l].ifi == ifi)
			return l;
	return -1;
}

static const char *port_name(const struct lr *r, int l)
{
	return l >= 0 ? link_if(r, l)->port : "?";
}

static const char *ifname_of(const struct lr *r, int h, int ifindex)
{
	int i;

	for (i = 0; i < r->t->host[h].n_ifs; i++)
		if (r->t->host[h].ifs[i].ifindex == ifindex)
			return r->t->host[h].ifs[i].name;
	return ifindex == 1 ? "lo" : "?";
}

/* Host h's routing decision for dst: the table entry that matched and the
 * route resolved (gateway, interface, source), as a "route" event. Returns
 * the gateway (0: on the link) or 0 on error. */
static uint32_t ask_route(struct lr *r, int h, uint32_t dst)
{
	static const char *const scopes[] = {[0] = "global", [253] = "link", [254] = "host"};
	struct nl_route fib, res;
	char err[256], prefix[24], ip[16];
	struct nl nl;
	json_t *o;
	int rc;

	rc = topo_enter(r->t, h);
	if (rc == 0)
		rc = nl_open(&nl, err, sizeof err);
	else
		snprintf(err, sizeof err, "entering %s: %s", r->t->host[h].name, strerror(-rc));
	if (rc == 0) {
		rc = nl_route_get(&nl, dst, 1, &fib, err, sizeof err);
		if (rc == 0)
			rc = nl_route_get(&nl, dst, 0, &res, err, sizeof err);
		nl_close(&nl);
	}
	topo_enter(r->t, -1);
	if (rc < 0) {
		ev_emit(r->ctx->em, "route",
			json_pack("{s:s, s:o, s:s}", "host", r->t->host[h].name, "dst", ip_json(dst),
				  "error", err));
		return 0;
	}
	frame_ip_str(fib.dst, ip);
	snprintf(prefix, sizeof prefix, "%s/%d", ip, fib.dst_len);
	o = json_pack("{s:s, s:o, s:s, s:i, s:s, s:s, s:o, s:s, s:s}", "host", r->t->host[h].name,
		      "dst", ip_json(dst), "matched", prefix, "prefix_len", fib.dst_len, "scope",
		      fib.scope < 255 && scopes[fib.scope] ? scopes[fib.scope] : "other", "dev",
		      ifname_of(r, h, res.oif), "src", ip_json(res.prefsrc), "source",
		      "kernel: RTM_GETROUTE (RTM_F_FIB_MATCH for the table entry)", "via",
		      res.gateway ? "gateway" : "direct");
	if (o && res.gateway)
		json_object_set_new(o, "gateway", ip_json(res.gateway));
	ev_emit(r->ctx->em, "route", o);
	return res.gateway;
}

/* One sample of host h's entry for ip: a query's answer at one instant. */
static uint16_t sample_neigh(struct lr *r, int h, uint32_t ip, const char *when)
{
	struct nl_neigh ne;
	char err[256];
	struct nl nl;
	json_t *o;
	int rc;

	rc = topo_enter(r->t, h);
	if (rc == 0)
		rc = nl_open(&nl, err, sizeof err);
	if (rc == 0) {
		rc = nl_neigh_get(&nl, r->t->host[h].ifs[0].ifindex, ip, &ne, err, sizeof err);
		nl_close(&nl);
	}
	topo_enter(r->t, -1);
	o = json_pack("{s:s, s:o, s:s, s:s, s:s, s:s}", "host", r->t->host[h].name, "ip",
		      ip_json(ip), "peer", host_name(r, host_of_addr(r, ip)), "state",
		      rc == 0 ? nl_nud_name(ne.state) : "NONE", "when", when, "source",
		      "kernel: RTM_GETNEIGH query (one sample, not a transition)");
	if (o && rc == 0 && ne.has_mac)
		json_object_set_new(o, "mac", mac_json(ne.mac));
	if (o && rc < 0 && rc != -ENOENT)
		json_object_set_new(o, "error", json_string(err));
	ev_emit(r->ctx->em, "neigh.sample", o);
	return rc == 0 ? ne.state : 0;
}

static int open_udp(struct lr *r, int h, int bind_it)
{
	struct lsock_who w = {r->t->host[h].name, 0};
	struct sockaddr_in sa;
	int fd, rc;

	if (topo_enter(r->t, h) < 0)
		return -EIO;
	fd = lsock_socket(r->ctx, w, AF_INET, SOCK_DGRAM);
	if (fd >= 0 && bind_it) {
		memset(&sa, 0, sizeof sa);
		sa.sin_family = AF_INET;
		sa.sin_port = htons(LAYERS_PORT);
		sa.sin_addr.s_addr = htonl(r->t->host[h].ifs[0].addr);
		rc = lsock_bind(r->ctx, w, fd, (struct sockaddr *)&sa, sizeof sa);
		if (rc < 0) {
			close(fd);
			fd = rc;
		}
	}
	topo_enter(r->t, -1);
	return fd;
}

static ssize_t send_to(struct lr *r, int h, int fd, int to_h, size_t size)
{
	struct lsock_who w = {r->t->host[h].name, 0};
	struct sockaddr_in sa;
	char *buf = malloc(size);
	size_t i, hl;
	ssize_t n;
	char head[32];

	if (!buf)
		return -ENOMEM;
	hl = (size_t)snprintf(head, sizeof head, "from %s to %s ", r->t->host[h].name,
			      r->t->host[to_h].name);
	for (i = 0; i < size; i++)
		buf[i] = i < hl ? head[i] : (char)('a' + (i - hl) % 26);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons(LAYERS_PORT);
	sa.sin_addr.s_addr = htonl(r->t->host[to_h].ifs[0].addr);
	n = lsock_sendto(r->ctx, w, fd, buf, size, (struct sockaddr *)&sa, sizeof sa, 1000, NULL);
	free(buf);
	return n;
}

static ssize_t recv_at(struct lr *r, int h, int fd)
{
	struct lsock_who w = {r->t->host[h].name, 0};
	char *buf = malloc(65536);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = lsock_recvfrom(r->ctx, w, fd, buf, 65536, NULL, WAIT_MS, NULL);
	free(buf);
	return n;
}

/* ---- findings (the lab's thread, under the lock) ---- */

static json_t *frame_list(const struct lr *r, const struct fmatch *m)
{
	json_t *a = json_array();
	int i;

	for (i = 0; i < r->n_frames; i++)
		if (fmatch_ok(&r->frames[i], m))
			json_array_append_new(a, json_integer(r->frames[i].n));
	return a;
}

/* The ports on which frames matching m (any link, any direction) were seen
 * going to a host. */
static json_t *ports_reached(const struct lr *r, const struct fmatch *m0)
{
	struct fmatch m = *m0;
	json_t *a = json_array();
	int i;

	m.link = -1;
	m.to_host = 1;
	for (i = 0; i < r->n_frames; i++)
		if (fmatch_ok(&r->frames[i], &m))
			json_array_append_new(a, json_string(port_name(r, r->frames[i].link)));
	return a;
}

static json_t *neigh_seq(const struct lr *r, int s, int h, uint32_t ip)
{
	json_t *a = json_array();
	int i;

	for (i = 0; i < r->n_neigh; i++) {
		const struct nrec *n = &r->neigh[i];
		if (n->scenario == s && n->host == h && n->ip == ip)
			json_array_append_new(a, json_pack("{s:s, s:s, s:I}", "from", nl_nud_name(n->from),
							   "to", nl_nud_name(n->to), "t_us",
							   (json_int_t)n->t_us));
	}
	return a;
}

/* ---- the scenarios ---- */

struct sockets {
	int a, b, c;
};

static void begin(struct lr *r, int s)
{
	pthread_mutex_lock(&r->lock);
	r->scenario = s;
	pthread_mutex_unlock(&r->lock);
	ev_emit(r->ctx->em, "scenario",
		json_pack("{s:i, s:s, s:s}", "n", s, "name", scenario_names[s], "phase", "start"));
}

static void end(struct lr *r, int s, json_t *findings)
{
	ev_emit(r->ctx->em, "scenario",
		json_pack("{s:i, s:s, s:s, s:o}", "n", s, "name", scenario_names[s], "phase", "end",
			  "findings", findings ? findings : json_object()));
}

static uint32_t addr(const struct lr *r, int h, int ifi)
{
	return r->t->host[h].ifs[ifi].addr;
}

static const uint8_t *mac(const struct lr *r, int h, int ifi)
{
	return r->t->host[h].ifs[ifi].mac;
}

static json_t *ipj(const struct lr *r, int h, int ifi)
{
	return ip_json(addr(r, h, ifi));
}

static int s_same(struct lr *r, struct sockets *so)
{
	int la = link_of(r, r->hA, 0), lb = link_of(r, r->hB, 0);
	struct fmatch data = {S_SAME, lb, 1, 0, 17, addr(r, r->hA, 0), addr(r, r->hB, 0), 0};
	struct nmatch reach = {S_SAME, r->hA, addr(r, r->hB, 0), NUD_REACHABLE, 0};
	struct fmatch req = {S_SAME, la, 0, 1, 0, addr(r, r->hA, 0), addr(r, r->hB, 0), 0};
	struct fmatch rep = {S_SAME, lb, 0, 2, 0, addr(r, r->hB, 0), addr(r, r->hA, 0), 0};
	struct fmatch first = {S_SAME, la, 0, 0, 17, addr(r, r->hA, 0), addr(r, r->hB, 0), 0};
	struct fmatch seg2_arp = {S_SAME, -1, -1, 1, 0, 0, 0, 0};
	json_t *f, *seg2;
	char m[18];
	int i, j, k, n_seg2 = 0;
	ssize_t got;

	begin(r, S_SAME);
	ev_note(r->ctx->em, "layers.same.intro",
		json_pack("{s:s, s:o, s:s, s:o, s:i}", "a", "A", "a_ip", ipj(r, r->hA, 0), "b", "B",
			  "b_ip", ipj(r, r->hB, 0), "prefix", TOPO_PREFIX),
		NULL);
	ask_route(r, r->hA, addr(r, r->hB, 0));
	sample_neigh(r, r->hA, addr(r, r->hB, 0), "before A sends");
	reach.after = n_neigh_now(r);
	if (send_to(r, r->hA, so->a, r->hB, (size_t)lab_int(r->ctx->p, "size")) < 0)
		return -EIO;
	sample_neigh(r, r->hA, addr(r, r->hB, 0), "right after sendto() returned");
	got = recv_at(r, r->hB, so->b);
	if (got == -ECANCELED)
		return -ECANCELED;
	wait_until(r, frame_pred, &data, WAIT_MS);
	wait_until(r, neigh_pred, &reach, WAIT_MS);
	barrier(r);

	pthread_mutex_lock(&r->lock);
	i = find_frame(r, &req);
	j = find_frame(r, &rep);
	k = find_frame(r, &first);
	seg2 = json_array();
	for (int x = 0; x < r->n_frames; x++) {
		const struct frec *fr = &r->frames[x];
		if (fmatch_ok(fr, &seg2_arp) && link_if(r, fr->link)->seg == 1) {
			n_seg2++;
			json_array_append_new(seg2, json_integer(fr->n));
		}
	}
	f = json_pack("{s:o, s:o, s:o, s:o, s:i, s:o, s:b}", "arp_requests", frame_list(r, &req),
		      "request_reached", ports_reached(r, &req), "arp_replies", frame_list(r, &rep),
		      "reply_reached", ports_reached(r, &rep), "arp_on_other_segment", n_seg2,
		      "neigh_a_b", neigh_seq(r, S_SAME, r->hA, addr(r, r->hB, 0)), "delivered",
		      got > 0);
	json_decref(seg2);
	if (i >= 0)
		json_object_set_new(f, "request_dst", mac_json(r->frames[i].fi.dst_mac));
	if (j >= 0)
		json_object_set_new(f, "reply_sha", mac_json(r->frames[j].fi.arp_sha));
	if (k >= 0) {
		json_object_set_new(f, "first_data_frame", json_integer(r->frames[k].n));
		json_object_set_new(f, "first_data_dst", mac_json(r->frames[k].fi.dst_mac));
		json_object_set_new(f, "first_data_after_reply",
				    json_boolean(j >= 0 && r->frames[k].n > r->frames[j].n));
	}
	pthread_mutex_unlock(&r->lock);
	frame_mac_str(mac(r, r->hB, 0), m);
	{
		char ports[128] = "";
		size_t x, off = 0;
		json_t *v;

		json_array_foreach(json_object_get(f, "request_reached"), x, v)
		{
			int w = snprintf(ports + off, sizeof ports - off, "%s%s", x ? ", " : "",
					 json_string_value(v));
			if (w < 0 || (size_t)w >= sizeof ports - off)
				break;
			off += (size_t)w;
		}
		ev_note(r->ctx->em, "layers.same.arp",
			json_pack("{s:s, s:s, s:i}", "ports", ports, "b_mac", m, "other_seg", n_seg2),
			NULL);
	}
	ev_note(r->ctx->em, "layers.same.incomplete", NULL, NULL);
	end(r, S_SAME, f);
	return 0;
}

/* What the router changed: the same IP packet as it reached R (in) and as R
 * sent it on (out), compared byte for byte. Under the lock. */
static json_t *hop_diff(const struct lr *r, const struct frec *in, const struct frec *out)
{
	static const struct {
		const char *layer, *field;
		uint32_t off, len;
	} named[] = {
		{"ethernet", "destination MAC", 0, 6},
		{"ethernet", "source MAC", 6, 6},
		{"ipv4", "ttl", 22, 1},
		{"ipv4", "header checksum", 24, 2},
		{NULL, NULL, 0, 0},
	};
	json_t *changes = json_array(), *other = json_array(), *o;
	uint32_t n = in->caplen < out->caplen ? in->caplen : out->caplen, i;
	int k, ihl_in = (in->data[14] & 15) * 4, ihl_out = (out->data[14] & 15) * 4;

	for (k = 0; named[k].field; k++) {
		uint32_t off = named[k].off, len = named[k].len;
		if (off + len > n)
			continue;
		if (!memcmp(in->data + off, out->data + off, len))
			continue;
		o = json_pack("{s:s, s:s, s:i, s:i, s:o, s:o}", "layer", named[k].layer, "field",
			      named[k].field, "off", off, "len", len, "before",
			      hex_json(in->data + off, len), "after", hex_json(out->data + off, len));
		if (off == 22) {
			json_object_set_new(o, "before_value", json_integer(in->data[22]));
			json_object_set_new(o, "after_value", json_integer(out->data[22]));
		}
		json_array_append_new(changes, o);
	}
	for (i = 0; i < n; i++) {
		int inside = 0;
		for (k = 0; named[k].field; k++)
			inside |= i >= named[k].off && i < named[k].off + named[k].len;
		if (!inside && in->data[i] != out->data[i])
			json_array_append_new(other, json_integer(i));
	}
	return json_pack("{s:s, s:s, s:s, s:i, s:i, s:o, s:o, s:b, s:b, s:b}", "router",
			 r->t->host[r->hR].name, "in_port", port_name(r, in->link), "out_port",
			 port_name(r, out->link), "in_frame", in->n, "out_frame", out->n, "changes",
			 changes, "other_changed_offsets", other, "same_length",
			 in->len == out->len, "checksum_ok_in",
			 in->caplen >= 14u + (uint32_t)ihl_in && inet_csum(in->data + 14, (size_t)ihl_in) == 0,
			 "checksum_ok_out",
			 out->caplen >= 14u + (uint32_t)ihl_out &&
				 inet_csum(out->data + 14, (size_t)ihl_out) == 0);
}

static int s_other(struct lr *r, struct sockets *so)
{
	int la = link_of(r, r->hA, 0), lc = link_of(r, r->hC, 0);
	int lr0 = link_of(r, r->hR, 0), lr1 = link_of(r, r->hR, 1);
	uint32_t a = addr(r, r->hA, 0), c = addr(r, r->hC, 0);
	struct fmatch data = {S_OTHER, lc, 1, 0, 17, a, c, 0};
	struct fmatch arp_a = {S_OTHER, la, 0, 1, 0, a, 0, 0};
	struct fmatch arp_r = {S_OTHER, lr1, 0, 1, 0, addr(r, r->hR, 1), 0, 0};
	struct fmatch in = {S_OTHER, lr0, 1, 0, 17, a, c, 0};
	struct fmatch out = {S_OTHER, lr1, 0, 0, 17, a, c, 0};
	json_t *f, *targets = json_array(), *hop = NULL;
	int i, fi_in, fi_out, for_c = 0;
	ssize_t got;

	begin(r, S_OTHER);
	ev_note(r->ctx->em, "layers.other.intro",
		json_pack("{s:o, s:o, s:i}", "a_ip", ipj(r, r->hA, 0), "c_ip", ipj(r, r->hC, 0),
			  "prefix", TOPO_PREFIX),
		NULL);
	ask_route(r, r->hA, c);
	ask_route(r, r->hR, c);
	sample_neigh(r, r->hA, addr(r, r->hR, 0), "before A sends");
	if (send_to(r, r->hA, so->a, r->hC, (size_t)lab_int(r->ctx->p, "size")) < 0)
		return -EIO;
	got = recv_at(r, r->hC, so->c);
	if (got == -ECANCELED)
		return -ECANCELED;
	wait_until(r, frame_pred, &data, WAIT_MS);
	barrier(r);

	pthread_mutex_lock(&r->lock);
	for (i = 0; i < r->n_frames; i++) {
		const struct frec *fr = &r->frames[i];
		if (fmatch_ok(fr, &arp_a)) {
			json_array_append_new(targets, ip_json(fr->fi.arp_tpa));
			for_c += fr->fi.arp_tpa == c;
		}
	}
	fi_in = find_frame(r, &in);
	fi_out = -1;
	if (fi_in >= 0) {
		for (i = 0; i < r->n_frames; i++)
			if (fmatch_ok(&r->frames[i], &out) &&
			    r->frames[i].fi.ip_id == r->frames[fi_in].fi.ip_id) {
				fi_out = i;
				break;
			}
	}
	if (fi_in >= 0 && fi_out >= 0)
		hop = hop_diff(r, &r->frames[fi_in], &r->frames[fi_out]);
	f = json_pack("{s:o, s:i, s:o, s:o, s:o, s:b}", "a_arp_targets", targets, "a_arp_for_c",
		      for_c, "a_arp_frames", frame_list(r, &arp_a), "r_arp_frames",
		      frame_list(r, &arp_r), "neigh_r_c", neigh_seq(r, S_OTHER, r->hR, c),
		      "delivered", got > 0);
	if (fi_in >= 0) {
		json_object_set_new(f, "a_frame_dst", mac_json(r->frames[fi_in].fi.dst_mac));
		json_object_set_new(f, "a_frame_ip_dst", ip_json(r->frames[fi_in].fi.dst));
	}
	pthread_mutex_unlock(&r->lock);
	if (hop) {
		ev_emit(r->ctx->em, "hop", json_incref(hop));
		json_object_set_new(f, "hop", hop);
	}
	ev_note(r->ctx->em, "layers.other.gateway",
		json_pack("{s:o, s:o}", "gw", ipj(r, r->hR, 0), "c_ip", ipj(r, r->hC, 0)), NULL);
	if (hop)
		ev_note(r->ctx->em, "layers.other.hop", NULL, NULL);
	end(r, S_OTHER, f);
	return 0;
}

static int icmp_pred(struct lr *r, const void *arg)
{
	return find_frame(r, arg) >= 0;
}

/* Read one error from A's error queue (IP_RECVERR) as a "syscall" event. */
static void read_errqueue(struct lr *r, int fd, json_t *f)
{
	char ctrl[512], data[2048];
	struct iovec iov = {data, sizeof data};
	struct msghdr mh;
	struct cmsghdr *cm;
	json_t *ev, *icmp = NULL;
	ssize_t n;
	int64_t t = ev_now_us(r->ctx->em);

	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctrl;
	mh.msg_controllen = sizeof ctrl;
	do
		n = recvmsg(fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	ev = json_pack("{s:s, s:i, s:s, s:i, s:{s:s}, s:I, s:i}", "who", "A", "conn", 0, "call",
		       "recvmsg", "fd", fd, "args", "flags", "MSG_ERRQUEUE", "ret",
		       (json_int_t)(n < 0 ? -errno : n), "errno", n < 0 ? errno : 0);
	for (cm = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm; cm = CMSG_NXTHDR(&mh, cm)) {
		struct sock_extended_err ee;
		struct sockaddr_in off;

		if (cm->cmsg_level != SOL_IP || cm->cmsg_type != IP_RECVERR ||
		    cm->cmsg_len < CMSG_LEN(sizeof ee))
			continue;
		memcpy(&ee, CMSG_DATA(cm), sizeof ee);
		icmp = json_pack("{s:s, s:i, s:i, s:s}", "origin",
				 ee.ee_origin == SO_EE_ORIGIN_ICMP ? "icmp" : "other", "type",
				 ee.ee_type, "code", ee.ee_code, "errno_name", lsock_errno_name((int)ee.ee_errno));
		if (cm->cmsg_len >= CMSG_LEN(sizeof ee + sizeof off)) {
			memcpy(&off, CMSG_DATA(cm) + sizeof ee, sizeof off);
			if (off.sin_family == AF_INET)
				json_object_set_new(icmp, "offender", ip_json(ntohl(off.sin_addr.s_addr)));
		}
	}
	json_object_set_new(ev, "t_call_us", json_integer(t));
	if (icmp) {
		json_object_set_new(ev, "icmp_error", json_incref(icmp));
		json_object_set_new(f, "a_errqueue", icmp);
	}
	ev_emit(r->ctx->em, "syscall", ev);
}

static int s_ttl(struct lr *r, struct sockets *so)
{
	struct lsock_who w = {"A", 0};
	int ttl = (int)lab_int(r->ctx->p, "ttl"), fd, la = link_of(r, r->hA, 0);
	int lr0 = link_of(r, r->hR, 0), lr1 = link_of(r, r->hR, 1);
	uint32_t a = addr(r, r->hA, 0), c = addr(r, r->hC, 0);
	struct fmatch icmp = {S_TTL, la, 1, 0, 1, addr(r, r->hR, 0), a, 0};
	struct fmatch in = {S_TTL, lr0, 1, 0, 17, a, c, 0};
	struct fmatch out = {S_TTL, lr1, 0, 0, 17, a, c, 0};
	struct pollfd p[2];
	json_t *f = json_object();
	int i, rc;

	begin(r, S_TTL);
	ev_note(r->ctx->em, "layers.ttl.intro", json_pack("{s:i}", "ttl", ttl), NULL);
	fd = open_udp(r, r->hA, 0);
	if (fd < 0)
		return fd;
	lsock_setsockopt_int(r->ctx, w, fd, IPPROTO_IP, IP_TTL, ttl);
	lsock_setsockopt_int(r->ctx, w, fd, IPPROTO_IP, IP_RECVERR, 1);
	if (send_to(r, r->hA, fd, r->hC, (size_t)lab_int(r->ctx->p, "size")) < 0) {
		close(fd);
		return -EIO;
	}
	/* Either the router's ICMP error reaches A's error queue, or the
	 * datagram reaches C: whichever the kernels decide. */
	p[0] = (struct pollfd){.fd = fd, .events = 0};
	p[1] = (struct pollfd){.fd = so->c, .events = POLLIN};
	rc = lab_cancelled(r->ctx) ? -ECANCELED : poll(p, 2, WAIT_MS);
	if (rc > 0 && (p[0].revents & POLLERR)) {
		read_errqueue(r, fd, f);
		wait_until(r, icmp_pred, &icmp, WAIT_MS);
	} else if (rc > 0 && (p[1].revents & POLLIN)) {
		recv_at(r, r->hC, so->c);
		json_object_set_new(f, "delivered", json_true());
	}
	barrier(r);
	pthread_mutex_lock(&r->lock);
	i = find_frame(r, &in);
	if (i >= 0)
		json_object_set_new(f, "ttl_at_router", json_integer(r->frames[i].fi.ttl));
	json_object_set_new(f, "forwarded_frames", frame_list(r, &out));
	json_object_set_new(f, "icmp_frames", frame_list(r, &icmp));
	i = find_frame(r, &icmp);
	if (i >= 0)
		json_object_set_new(f, "icmp", json_pack("{s:i, s:i, s:o, s:o}", "type",
							 r->frames[i].fi.icmp_type, "code",
							 r->frames[i].fi.icmp_code, "src",
							 ip_json(r->frames[i].fi.src), "dst",
							 ip_json(r->frames[i].fi.dst)));
	pthread_mutex_unlock(&r->lock);
	if (json_object_get(f, "icmp"))
		ev_note(r->ctx->em, "layers.ttl.exceeded",
			json_pack("{s:o}", "router", ipj(r, r->hR, 0)), NULL);
	else if (json_object_get(f, "delivered"))
		ev_note(r->ctx->em, "layers.ttl.reached", json_pack("{s:i}", "ttl", ttl), NULL);
	lsock_close(r->ctx, w, fd);
	end(r, S_TTL, f);
	return 0;
}

static json_t *fragments(const struct lr *r, const struct fmatch *m, uint16_t id, long *bytes)
{
	json_t *a = json_array();
	int i;

	*bytes = 0;
	for (i = 0; i < r->n_frames; i++) {
		const struct frec *fr = &r->frames[i];
		if (!fmatch_ok(fr, m) || fr->fi.ip_id != id)
			continue;
		*bytes += (long)fr->fi.ip_payload_len;
		json_array_append_new(a, json_pack("{s:i, s:i, s:i, s:i, s:b, s:i}", "n", fr->n, "id",
						   fr->fi.ip_id, "offset", fr->fi.frag_off, "len",
						   (int)fr->fi.ip_payload_len, "mf",
						   fr->fi.more_frags, "frame_len", fr->len));
	}
	return a;
}

static int s_frag(struct lr *r, struct sockets *so)
{
	struct lsock_who w = {"A", 0};
	int size = (int)lab_int(r->ctx->p, "frag_size"), fd;
	uint32_t a = addr(r, r->hA, 0), c = addr(r, r->hC, 0);
	struct fmatch at_a = {S_FRAG, link_of(r, r->hA, 0), 0, 0, 17, a, c, 0};
	struct fmatch at_c = {S_FRAG, link_of(r, r->hC, 0), 1, 0, 17, a, c, 0};
	json_t *f, *fa, *fc;
	long bytes_a, bytes_c;
	ssize_t got;
	int i;

	begin(r, S_FRAG);
	ev_note(r->ctx->em, "layers.frag.intro",
		json_pack("{s:i, s:i, s:i}", "size", size, "mtu", r->t->seg_mtu[0], "mtu2",
			  r->t->seg_mtu[1]),
		NULL);
	fd = open_udp(r, r->hA, 0);
	if (fd < 0)
		return fd;
	/* Let the kernel fragment instead of refusing with EMSGSIZE. */
	lsock_setsockopt_int(r->ctx, w, fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT);
	if (send_to(r, r->hA, fd, r->hC, (size_t)size) < 0) {
		close(fd);
		return -EIO;
	}
	got = recv_at(r, r->hC, so->c);
	barrier(r);
	pthread_mutex_lock(&r->lock);
	i = find_frame(r, &at_a);
	fa = fragments(r, &at_a, i >= 0 ? r->frames[i].fi.ip_id : 0, &bytes_a);
	fc = fragments(r, &at_c, i >= 0 ? r->frames[i].fi.ip_id : 0, &bytes_c);
	pthread_mutex_unlock(&r->lock);
	f = json_pack("{s:o, s:o, s:I, s:I, s:I, s:i}", "sent_by_a", fa, "received_by_c", fc,
		      "ip_payload_a", (json_int_t)bytes_a, "ip_payload_c", (json_int_t)bytes_c,
		      "c_recvfrom", (json_int_t)got, "udp_payload", size);
	if (got > 0)
		ev_note(r->ctx->em, "layers.frag.reassembled",
			json_pack("{s:i, s:I, s:I}", "n", (int)json_array_size(fa), "bytes",
				  (json_int_t)got, "n_c", (json_int_t)json_array_size(fc)),
			NULL);
	lsock_close(r->ctx, w, fd);
	end(r, S_FRAG, f);
	return 0;
}

static int read_timers(struct lr *r, int h, struct nl_neigh_parms *pm)
{
	char err[256];
	struct nl nl;
	int rc;

	rc = topo_enter(r->t, h);
	if (rc == 0)
		rc = nl_open(&nl, err, sizeof err);
	if (rc == 0) {
		rc = nl_neightbl_get(&nl, r->t->host[h].ifs[0].ifindex, pm, err, sizeof err);
		nl_close(&nl);
	}
	topo_enter(r->t, -1);
	if (rc == 0)
		ev_emit(r->ctx->em, "neigh.timers",
			json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:s}", "host",
				  r->t->host[h].name, "if", r->t->host[h].ifs[0].name,
				  "reachable_ms", (json_int_t)pm->reachable_ms, "base_reachable_ms",
				  (json_int_t)pm->base_reachable_ms, "delay_probe_ms",
				  (json_int_t)pm->delay_probe_ms, "retrans_ms",
				  (json_int_t)pm->retrans_ms, "gc_stale_ms",
				  (json_int_t)pm->gc_stale_ms, "ucast_probes", pm->ucast_probes,
				  "mcast_probes", pm->mcast_probes, "source",
				  "kernel: RTM_GETNEIGHTBL"));
	return rc;
}

static int s_ageing(struct lr *r, struct sockets *so)
{
	struct nl_neigh_parms pm;
	uint32_t a = addr(r, r->hA, 0), b = addr(r, r->hB, 0);
	struct nmatch reach = {S_AGEING, r->hA, b, NUD_REACHABLE, 0};
	struct nmatch stale = {S_AGEING, r->hA, b, NUD_STALE, 0};
	struct nmatch probe = {S_AGEING, r->hA, b, NUD_PROBE, 0};
	struct nmatch reach2 = {S_AGEING, r->hA, b, NUD_REACHABLE, 0};
	struct fmatch uprobe = {S_AGEING, link_of(r, r->hA, 0), 0, 1, 0, a, b, 0};
	struct fmatch reply = {S_AGEING, link_of(r, r->hB, 0), 0, 2, 0, b, a, 0};
	int64_t t_send2 = 0, t_reach = 0, t_stale = 0, t_probe = 0;
	char err[256];
	struct nl nl;
	json_t *f;
	int rc, i, wait_stale;

	begin(r, S_AGEING);
	if (read_timers(r, r->hA, &pm) < 0)
		memset(&pm, 0, sizeof pm);
	ev_note(r->ctx->em, "layers.ageing.intro",
		json_pack("{s:I, s:I}", "reachable", (json_int_t)pm.reachable_ms, "delay",
			  (json_int_t)pm.delay_probe_ms),
		NULL);
	/* Start from no entry, so every state below is this scenario's. */
	rc = topo_enter(r->t, r->hA);
	if (rc == 0 && nl_open(&nl, err, sizeof err) == 0) {
		rc = nl_neigh_del(&nl, r->t->host[r->hA].ifs[0].ifindex, b, err, sizeof err);
		nl_close(&nl);
		ev_emit(r->ctx->em, "neigh.delete",
			json_pack("{s:s, s:o, s:s, s:i, s:s}", "host", "A", "ip", ip_json(b), "peer", "B",
				  "ret", rc, "source", "the lab: RTM_DELNEIGH (the kernel then reports the entry FAILED and gone)"));
	}
	topo_enter(r->t, -1);

	reach.after = stale.after = n_neigh_now(r);
	if (send_to(r, r->hA, so->a, r->hB, (size_t)lab_int(r->ctx->p, "size")) < 0)
		return -EIO;
	recv_at(r, r->hB, so->b);
	if (wait_until(r, neigh_pred, &reach, WAIT_MS) == -ECANCELED)
		return -ECANCELED;
	/* REACHABLE lasts the reachable time in force (at most 1.5 times the
	 * base), then the kernel's timer makes the entry STALE. */
	wait_stale = (int)(pm.base_reachable_ms * 3 / 2) + WAIT_MS;
	if (wait_until(r, neigh_pred, &stale, wait_stale) == -ECANCELED)
		return -ECANCELED;
	probe.after = reach2.after = n_neigh_now(r);
	uprobe.after_n = reply.after_n = last_frame_n(r);
	t_send2 = ev_now_us(r->ctx->em);
	if (send_to(r, r->hA, so->a, r->hB, (size_t)lab_int(r->ctx->p, "size")) < 0)
		return -EIO;
	sample_neigh(r, r->hA, b, "right after sendto() on the STALE entry");
	recv_at(r, r->hB, so->b);
	if (wait_until(r, neigh_pred, &probe, (int)pm.delay_probe_ms + WAIT_MS) == -ECANCELED)
		return -ECANCELED;
	wait_until(r, neigh_pred, &reach2, WAIT_MS);
	wait_until(r, frame_pred, &reply, WAIT_MS);
	barrier(r);

	pthread_mutex_lock(&r->lock);
	i = find_neigh(r, &reach);
	if (i >= 0)
		t_reach = r->neigh[i].t_us;
	i = find_neigh(r, &stale);
	if (i >= 0)
		t_stale = r->neigh[i].t_us;
	i = find_neigh(r, &probe);
	if (i >= 0)
		t_probe = r->neigh[i].t_us;
	f = json_pack("{s:o, s:o, s:o, s:I, s:I}", "neigh_a_b", neigh_seq(r, S_AGEING, r->hA, b),
		      "probe_frames", frame_list(r, &uprobe), "reply_frames", frame_list(r, &reply),
		      "reachable_ms_in_force", (json_int_t)pm.reachable_ms, "delay_probe_ms",
		      (json_int_t)pm.delay_probe_ms);
	i = find_frame(r, &uprobe);
	if (i >= 0)
		json_object_set_new(f, "probe_dst", mac_json(r->frames[i].fi.dst_mac));
	pthread_mutex_unlock(&r->lock);
	if (t_reach && t_stale)
		json_object_set_new(f, "reachable_lasted_us", json_integer(t_stale - t_reach));
	if (t_probe)
		json_object_set_new(f, "send_to_probe_us", json_integer(t_probe - t_send2));
	ev_note(r->ctx->em, "layers.ageing.delay", NULL, NULL);
	end(r, S_AGEING, f);
	return 0;
}

/* ---- setting up and tearing down ---- */

static int set_timers(struct lr *r, char *err, size_t errlen)
{
	int h, i, rc = 0;
	struct nl nl;

	for (h = 0; h < r->t->n_hosts && rc == 0; h++) {
		rc = topo_enter(r->t, h);
		if (rc == 0)
			rc = nl_open(&nl, err, errlen);
		for (i = 0; i < r->t->host[h].n_ifs && rc == 0; i++)
			rc = nl_neightbl_set(&nl, r->t->host[h].ifs[i].ifindex,
					     (uint64_t)lab_int(r->ctx->p, "reachable_ms"),
					     (uint64_t)lab_int(r->ctx->p, "delay_probe_ms"), 0, err,
					     errlen);
		if (rc == 0)
			nl_close(&nl);
	}
	topo_enter(r->t, -1);
	return rc;
}

static int open_observers(struct lr *r, char *err, size_t errlen)
{
	int h, i, rc = 0;

	for (h = 0; h < r->t->n_hosts && rc == 0; h++) {
		rc = topo_enter(r->t, h);
		if (rc == 0)
			rc = nl_neigh_monitor_open(&r->mon[h], err, errlen);
	}
	if (rc == 0)
		rc = topo_enter(r->t, -1);
	for (h = 0; h < r->t->n_hosts && rc == 0; h++) {
		for (i = 0; i < r->t->host[h].n_ifs && rc == 0; i++) {
			struct link *l = &r->links[r->n_links];
			l->host = h;
			l->ifi = i;
			rc = cap_open(&l->cap, r->t->host[h].ifs[i].port, NULL, err, errlen);
			if (rc == 0)
				r->n_links++;
			else
				r->cap_failed = 1;
		}
	}
	if (rc == 0 && r->ctx->pcap_path)
		rc = cap_pcap_open(&r->pcap, r->ctx->pcap_path, CAP_LINK_ETHERNET, err, errlen);
	return rc;
}

static json_t *links_json(const struct lr *r)
{
	json_t *a = json_array();
	int l;

	for (l = 0; l < r->n_links; l++) {
		const struct topo_if *ti = link_if(r, l);
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:i}", "port", ti->port, "host",
						   r->t->host[r->links[l].host].name, "if",
						   ti->name, "seg", ti->seg));
	}
	return a;
}

static void stop_observer(struct lr *r)
{
	uint64_t one = 1;

	if (!r->obs_started)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = 1;
	pthread_mutex_unlock(&r->lock);
	if (write(r->wake_fd, &one, sizeof one) < 0) {
		/* See barrier(). */
	}
	pthread_join(r->obs, NULL);
	r->obs_started = 0;
}

static void lr_free(struct lr *r)
{
	int i;

	stop_observer(r);
	for (i = 0; i < r->n_links; i++)
		cap_close(r->links[i].cap);
	for (i = 0; i < TOPO_MAX_HOSTS; i++)
		if (r->mon[i].sock)
			nl_close(&r->mon[i]);
	cap_pcap_close(r->pcap);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	topo_destroy(r->t);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r->frames);
	free(r);
}

/* The link impairments asked for: A's eth0 and R's eth1, the same each way. */
static void impair_spec(const struct lab_params *p, struct topo_spec *spec)
{
	static const struct {
		const char *host, *delay, *loss;
		int ifi;
	} links[] = {{"A", "a_delay_ms", "a_loss_pct", 0}, {"R", "r2_delay_ms", "r2_loss_pct", 1}};
	size_t k;
	int h, d;

	spec->seed = (uint64_t)lab_int(p, "seed");
	while (!spec->seed && getrandom(&spec->seed, sizeof spec->seed, 0) == sizeof spec->seed)
		spec->seed &= 0x7fffffff;
	if (!spec->seed)
		spec->seed = (uint64_t)getpid();
	for (k = 0; k < sizeof links / sizeof links[0]; k++)
		for (h = 0; h < spec->n_hosts; h++) {
			if (strcmp(spec->host[h].name, links[k].host))
				continue;
			for (d = 0; d < 2; d++) {
				spec->host[h].impair[links[k].ifi][d].delay_ms = (int)lab_int(p, links[k].delay);
				spec->host[h].impair[links[k].ifi][d].loss_pct = (int)lab_int(p, links[k].loss);
			}
		}
}

static int layers_run(struct lab_ctx *ctx)
{
	static const struct topo_spec base = {
		.n_segs = 2,
		.n_hosts = 4,
		.host = {{"R", 2, {0, 1}}, {"A", 1, {0}}, {"B", 1, {0}}, {"C", 1, {1}}},
	};
	int (*const run_s[S_COUNT])(struct lr *, struct sockets *) = {
		[S_SAME] = s_same, [S_OTHER] = s_other, [S_TTL] = s_ttl,
		[S_FRAG] = s_frag, [S_AGEING] = s_ageing,
	};
	struct topo_spec spec = base;
	struct sockets so = {-1, -1, -1};
	struct pthread_condattr_t_holder {
		pthread_condattr_t a;
	} ca;
	struct lr *r = calloc(1, sizeof *r);
	char err[512] = "";
	int rc, s, which = (int)lab_int(ctx->p, "scenario");
	json_t *links = NULL;

	if (!r) {
		ev_error(ctx->em, "internal", NULL, "out of memory");
		return -ENOMEM;
	}
	r->ctx = ctx;
	r->wake_fd = -1;
	r->t0_ns = (int64_t)ctx->em->t0.tv_sec * 1000000000 + ctx->em->t0.tv_nsec;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&ca.a);
	pthread_condattr_setclock(&ca.a, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca.a);
	pthread_condattr_destroy(&ca.a);
	r->frames = calloc(MAX_FRAMES, sizeof *r->frames);
	spec.mtu[0] = 1500;
	spec.mtu[1] = (int)lab_int(ctx->p, "mtu2");
	impair_spec(ctx->p, &spec);

	rc = r->frames ? topo_create(&r->t, &spec, err, sizeof err) : -ENOMEM;
	if (rc < 0) {
		ev_error(ctx->em, "network_unavailable", NULL, err[0] ? err : "out of memory");
		goto out;
	}
	r->hR = topo_host_index(r->t, "R");
	r->hA = topo_host_index(r->t, "A");
	r->hB = topo_host_index(r->t, "B");
	r->hC = topo_host_index(r->t, "C");
	rc = set_timers(r, err, sizeof err);
	if (rc == 0)
		rc = open_observers(r, err, sizeof err);
	if (rc == 0) {
		r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		rc = r->wake_fd < 0 ? -errno : 0;
		if (rc < 0)
			snprintf(err, sizeof err, "eventfd: %s", strerror(-rc));
	}
	if (rc < 0) {
		ev_error(ctx->em, r->cap_failed && rc == -EPERM ? "no_capture_privilege"
							     : "network_unavailable",
			 NULL, err);
		goto out;
	}
	links = links_json(r);
	{
		json_t *topo = topo_describe(r->t);
		json_object_set_new(topo, "links", links);
		json_object_set_new(topo, "source",
				    json_string("built by this run over rtnetlink; captures on every "
						"host's port (an impaired link's port is the host "
						"side of socklab's relay)"));
		ev_emit(ctx->em, "topology", topo);
	}
	rc = topo_start(r->t, ctx->em, err, sizeof err);
	if (rc < 0) {
		ev_error(ctx->em, "network_unavailable", NULL, err);
		goto out;
	}
	rc = pthread_create(&r->obs, NULL, observer, r);
	if (rc != 0) {
		ev_error(ctx->em, "internal", NULL, "cannot start the observer thread");
		rc = -rc;
		goto out;
	}
	r->obs_started = 1;
	ev_note(ctx->em, "layers.header", NULL, NULL);

	so.a = open_udp(r, r->hA, 0);
	so.b = open_udp(r, r->hB, 1);
	so.c = open_udp(r, r->hC, 1);
	if (so.a < 0 || so.b < 0 || so.c < 0) {
		ev_error(ctx->em, "socket", NULL, "could not open the hosts' UDP sockets");
		rc = -EIO;
		goto out;
	}
	for (s = S_SAME; s < S_COUNT && rc == 0; s++) {
		if (which != 0 && which != s)
			continue;
		rc = run_s[s](r, &so);
		if (rc == -ECANCELED)
			break;
		if (rc < 0)
			ev_error(ctx->em, "scenario", "scenario", scenario_names[s]);
	}
	barrier(r);
	stop_observer(r);
	{
		json_t *drops = json_object(), *wires = topo_stop(r->t);
		struct cap *caps[LY_MAX_LINKS];
		int l;

		if (wires)
			json_object_set_new(ctx->summary, "wire", wires);

		for (l = 0; l < r->n_links; l++)
			caps[l] = r->links[l].cap;
		cap_report(caps, r->n_links, 0, ctx->em, ctx->summary);
		for (l = 0; l < r->n_links; l++) {
			struct cap_stats st;
			cap_get_stats(r->links[l].cap, &st);
			json_object_set_new(drops, port_name(r, l), json_integer((json_int_t)st.kernel_drops));
		}
		json_object_set_new(ctx->summary, "frames", json_integer(r->frames_total));
		json_object_set_new(ctx->summary, "frames_not_kept", json_integer(r->frames_unkept));
		json_object_set_new(ctx->summary, "neigh_reports", json_integer(r->n_neigh));
		json_object_set_new(ctx->summary, "monitor_overruns",
				    json_integer(r->monitor_overruns));
		json_object_set_new(ctx->summary, "capture_drops", drops);
	}
	if (rc == -ECANCELED)
		rc = 0; /* the front end reports the cancel */
out:
	if (so.a >= 0)
		close(so.a);
	if (so.b >= 0)
		close(so.b);
	if (so.c >= 0)
		close(so.c);
	lr_free(r);
	return rc < 0 ? -1 : 0;
}

static int layers_check(const struct lab_params *p, const char **param, char *err, size_t errlen)
{
	long long reach = lab_int(p, "reachable_ms"), delay = lab_int(p, "delay_probe_ms");
	long long frag = lab_int(p, "frag_size"), mtu2 = lab_int(p, "mtu2");

	if (delay * 2 >= reach) {
		*param = "delay_probe_ms";
		snprintf(err, errlen,
			 "parameter 'delay_probe_ms': must be less than half of reachable_ms (%lld ms): "
			 "an entry whose REACHABLE time ends within the delay goes to DELAY, not STALE",
			 reach);
		return -EINVAL;
	}
	(void)frag;
	(void)mtu2;
	return 0;
}

static enum lab_net layers_network(const struct lab_params *p)
{
	return LAB_NET_TOPOLOGY;
}

static const char *js(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

static long long ji(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static int clip(int n, size_t len)
{
	return n < 0 ? 0 : (size_t)n >= len ? (int)len - 1 : n;
}

/* The CLI's readable lines: one per frame (like tcpdump, with the link),
 * neighbour report, route and scenario. */
static int layers_format(const struct lab_params *p, const json_t *ev, char *buf, size_t len)
{
	const char *type = js(ev, "type");
	double ms = (double)ji(ev, "t_us") / 1000.0;

	if (!strcmp(type, "frame")) {
		const json_t *eth = json_object_get(ev, "eth");
		return clip(snprintf(buf, len, "%10.3f  #%-3lld %-7s %s %s > %s  %s\n",
				     (double)ji(ev, "t_kernel_us") / 1000.0, ji(ev, "n"),
				     js(ev, "port"), strcmp(js(ev, "dir"), "to_host") ? "<-" : "->",
				     js(eth, "src"), js(eth, "dst"), js(ev, "summary")),
			    len);
	}
	if (!strcmp(type, "neigh"))
		return clip(snprintf(buf, len, "%10.3f  kernel: %s's ARP entry for %s (%s): %s -> %s\n",
				     ms, js(ev, "host"), js(ev, "ip"), js(ev, "peer"), js(ev, "from"),
				     js(ev, "to")),
			    len);
	if (!strcmp(type, "neigh.sample"))
		return clip(snprintf(buf, len, "%10.3f  query: %s's ARP entry for %s is %s (%s)\n", ms,
				     js(ev, "host"), js(ev, "ip"), js(ev, "state"), js(ev, "when")),
			    len);
	if (!strcmp(type, "neigh.delete"))
		return clip(snprintf(buf, len,
				     ji(ev, "ret") == 0 ? "%10.3f  lab: removed %s's ARP entry for %s\n"
							: "%10.3f  lab: %s had no ARP entry for %s to remove\n",
				     ms, js(ev, "host"), js(ev, "ip")),
			    len);
	if (!strcmp(type, "route"))
		return clip(snprintf(buf, len, "%10.3f  route: %s to %s uses %s %s%s dev %s src %s\n",
				     ms, js(ev, "host"), js(ev, "dst"), js(ev, "matched"),
				     json_object_get(ev, "gateway") ? "via " : "(on the link)",
				     js(ev, "gateway"), js(ev, "dev"), js(ev, "src")),
			    len);
	if (!strcmp(type, "scenario"))
		return clip(snprintf(buf, len, "%s scenario %lld: %s\n",
				     strcmp(js(ev, "phase"), "start") ? "--- end of" : "===",
				     ji(ev, "n"), js(ev, "name")),
			    len);
	if (!strcmp(type, "hop")) {
		const json_t *c;
		size_t i, off = 0;
		int w = snprintf(buf, len, "%10.3f  router %s, %s -> %s changed:", ms,
				 js(ev, "router"), js(ev, "in_port"), js(ev, "out_port"));
		off = (size_t)clip(w, len);
		json_array_foreach(json_object_get(ev, "changes"), i, c)
		{
			w = snprintf(buf + off, len - off, " %s %s->%s;", js(c, "field"), js(c, "before"),
				     js(c, "after"));
			off += (size_t)clip(w, len - off);
		}
		w = snprintf(buf + off, len - off, " %zu other bytes\n",
			     json_array_size(json_object_get(ev, "other_changed_offsets")));
		off += (size_t)clip(w, len - off);
		return (int)off;
	}
	if (!strcmp(type, "topology") || !strcmp(type, "neigh.timers"))
		return -1;
	return -1;
}

const struct lab_desc lab_layers = {
	.name = "layers",
	.title = "Layers, ARP and a router",
	.summary = "Hosts on an Ethernet segment and a router to another subnet: ARP, the gateway, "
		   "TTL, fragments and the ARP cache, on frames captured on every link.",
	.params = layers_params,
	.n_params = sizeof layers_params / sizeof layers_params[0],
	.check = layers_check,
	.network = layers_network,
	.captures = 1,
	.run = layers_run,
	.format = layers_format,
};
