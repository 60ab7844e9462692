/* watch.c: the handshake lab's reading of the observer's stream: segments numbered and matched to their arrivals, each side's RFC 9293 model fed, the kernel's reports kept for comparison. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "hs.h"
#include "net/net.h"

static void emit_state(struct hs_run *r, int side, int from, int to, int64_t t_ns, json_t *extra)
{
	json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "who", hs_side_names[side], "from",
			      tcpst_name(from), "to", tcpst_name(to), "source",
			      obs_src_name(OBS_SRC_RFC_MODEL), "kind", "model", "t_kernel_us",
			      obs_run_us(r->ctx, t_ns));

	if (extra) {
		json_object_update(f, extra);
		json_decref(extra);
	}
	ev_emit(r->ctx->em, "state", f);
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
static void feed(struct hs_run *r, int side, int outgoing, const struct hs_seg *sg, int n,
		 int64_t t_ns)
{
	struct tcpst_change ch[2];
	int k, m;

	m = tcpst_infer_segment(&r->inf[side], outgoing, sg->flags, sg->seq, sg->ack, sg->len, ch);
	for (k = 0; k < m; k++) {
		if (r->n_infd[side] < HS_MAX_TRANS) {
			struct hs_trans *tr = &r->infd[side][r->n_infd[side]++];
			memset(tr, 0, sizeof *tr);
			tr->from = ch[k].from;
			tr->to = ch[k].to;
			tr->src = OBS_SRC_RFC_MODEL;
			tr->t_ns = t_ns;
			tr->seg = n;
			tr->incoming = !outgoing;
			tr->why = ch[k].why;
		}
		emit_state(r, side, ch[k].from, ch[k].to, t_ns,
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
static void emit_send(struct hs_run *r, const struct obs_event *ev, int dir, int arrives_now)
{
	const struct dec_packet *d = ev->pkt;
	const struct dec_tcp *t = &d->tcp;
	struct hs_seg *sg;
	json_t *f;
	int n;

	if (r->n_segs == HS_MAX_SEGS) {
		r->segs_dropped++;
		return;
	}
	if (r->pcap)
		cap_pcap_write(r->pcap, ev->frame); /* a replay */
	else
		obs_pcap_write(r->obs, ev->frame);
	n = ++r->n_segs;
	sg = &r->segs[n - 1];
	memset(sg, 0, sizeof *sg);
	sg->t_ns = ev->t_ns;
	sg->t_arr_ns = arrives_now ? ev->t_ns : -1;
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
	f = obs_segment_json(r->ctx, ev->frame, d, ev->t_ns);
	json_object_set_new(f, "n", json_integer(n));
	json_object_set_new(f, "dir", json_string(dir ? "s2c" : "c2s"));
	json_object_set_new(f, "from", json_string(dir ? "server" : "client"));
	json_object_set_new(f, "to", json_string(dir ? "client" : "server"));
	json_object_set_new(f, "rel_seq", r->isn_known[dir] ? json_integer((uint32_t)(t->seq - r->isn[dir]))
							   : json_null());
	json_object_set_new(f, "rel_ack", (t->flags & DEC_TCP_ACK) && r->isn_known[!dir]
						  ? json_integer((uint32_t)(t->ack - r->isn[!dir]))
						  : json_null());
	/* The window in bytes: scaled, except in a SYN (RFC 7323 2.2), and only
	 * when both SYNs carried the option. */
	if (!(t->flags & DEC_TCP_SYN) && r->syn_seen[0] && r->syn_seen[1])
		json_object_set_new(f, "win_bytes",
				    json_integer((json_int_t)t->window
						 << (r->wscale[dir] >= 0 && r->wscale[!dir] >= 0
							     ? r->wscale[dir]
							     : 0)));
	if (ev->host >= 0)
		json_object_set_new(f, "captured_at",
				    json_string(ev->host == NET_CLIENT ? "client" : "server"));
	ev_emit(r->ctx->em, "segment", f);
	track_close(r, dir, t, n);
	feed(r, dir == 0 ? SIDE_CLIENT : SIDE_SERVER, 1, sg, n, ev->t_ns);
	if (arrives_now && !csum_dropped(r, d, n))
		feed(r, dir == 0 ? SIDE_SERVER : SIDE_CLIENT, 0, sg, n, ev->t_ns);
}

/* A segment reaching its receiver (two hosts): find it among those sent (the
 * same direction, IP id, numbers, flags and length), say when it arrived,
 * and let the receiver's machine see it. A second arrival is a duplicate the
 * wire made. */
static void emit_arrival(struct hs_run *r, const struct obs_event *ev, int dir)
{
	const struct dec_packet *d = ev->pkt;
	const struct dec_tcp *t = &d->tcp;
	uint16_t id = dec_has(d, DEC_L_IPV4) ? d->ip4.id : 0;
	int i, n = 0;
	struct hs_seg *sg;

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
			  "t_kernel_us", obs_run_us(r->ctx, ev->t_ns), "wire_us",
			  (json_int_t)((ev->t_ns - sg->t_ns) / 1000), "duplicate", sg->arrivals > 1,
			  "checksums", dec_checksums_json(&d->ip4.csum, &t->csum, DEC_L_TCP)));
	if (sg->arrivals > 1)
		return; /* the kernel drops a duplicate as old data; the machine need not see it */
	if (csum_dropped(r, d, n)) {
		sg->arrivals--; /* discarded: a good copy may still arrive */
		return;
	}
	sg->t_arr_ns = ev->t_ns;
	feed(r, dir == 0 ? SIDE_SERVER : SIDE_CLIENT, 0, sg, n, ev->t_ns);
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

void hs_frame(struct hs_run *r, const struct obs_event *ev)
{
	const struct dec_packet *d = ev->pkt;
	int dir;

	if (!dec_has(d, DEC_L_TCP) || d->layer[DEC_L_TCP].span.len < 20) {
		/* Not a TCP segment we can place: shown raw, counted apart. */
		if (ev->host < 0 || ev->frame->outgoing) {
			json_t *j = dec_packet_json(d);
			json_object_set_new(j, "t_kernel_us", json_integer(obs_run_us(r->ctx, ev->t_ns)));
			ev_emit(r->ctx->em, "packet", j);
		}
		return;
	}
	dir = seg_dir(r, d);
	if (dir < 0)
		r->segs_dropped++; /* another connection in a replayed file */
	else if (ev->host < 0)
		emit_send(r, ev, dir, 1); /* loopback or a replay: it arrives as it leaves */
	else if (ev->frame->outgoing)
		emit_send(r, ev, dir, 0);
	else
		emit_arrival(r, ev, dir);
	note_settled(r);
}

static struct hs_trans *add(struct hs_trans *list, int *n, const struct obs_event *ev, int seg)
{
	struct hs_trans *t;

	if (*n == HS_MAX_TRANS)
		return NULL;
	t = &list[(*n)++];
	memset(t, 0, sizeof *t);
	t->from = ev->from;
	t->to = ev->to;
	t->src = ev->src;
	t->t_ns = ev->t_ns;
	t->t_from_ns = ev->from_ns ? ev->from_ns : ev->t_ns;
	t->seg = seg;
	t->timer = ev->timer;
	return t;
}

/* The segment that carried the RST which ended side's socket. */
static int rst_segment(const struct hs_run *r, int side, const struct obs_rst *rst)
{
	int i, dir_in = side == SIDE_CLIENT ? 1 : 0;

	int any = 0;

	for (i = 0; i < r->n_segs; i++)
		if (r->segs[i].dir == dir_in && (r->segs[i].flags & DEC_TCP_RST) &&
		    r->segs[i].seq == rst->seq) {
			if (r->segs[i].t_arr_ns == rst->t_ns)
				return i + 1; /* the copy that reached it then */
			if (!any)
				any = i + 1;
		}
	return any;
}

json_t *hs_on_observed(void *arg, const struct obs_event *ev)
{
	struct hs_run *r = arg;
	struct hs_trans *t;
	json_t *extra;

	switch (ev->kind) {
	case OBS_FRAME:
		hs_frame(r, ev);
		return NULL;
	case OBS_TRANSITION:
		add(r->kern[ev->sock], &r->n_kern[ev->sock], ev, r->n_segs);
		return json_pack("{s:i}", "after_seg", r->n_segs);
	case OBS_SEEN:
		add(r->seen[ev->sock], &r->n_seen[ev->sock], ev, r->n_segs);
		return json_pack("{s:i}", "after_seg", r->n_segs);
	case OBS_GONE:
		t = add(r->seen[ev->sock], &r->n_seen[ev->sock], ev, r->n_segs);
		extra = json_pack("{s:i}", "after_seg", r->n_segs);
		if (t) {
			t->to = TCPST_CLOSE;
			t->from = ev->last_state;
			t->gone = 1;
			t->reason = ev->reason;
		}
		if (ev->rst && ev->sock <= SIDE_SERVER) {
			int n = rst_segment(r, ev->sock, ev->rst);
			if (t) {
				t->rst_seg = n;
				t->rst_seq = ev->rst->seq;
			}
			if (n)
				json_object_set_new(extra, "evidence_seg", json_integer(n));
		}
		return extra;
	default:
		return NULL;
	}
}
