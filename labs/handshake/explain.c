/* explain.c: the handshake lab's explanation: the kernel's states next to the RFC 9293 model's, each disagreement explained, the close pattern, and the summary with every state's source. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs.h"

/* Would segment b cause what segment a caused: the same SYN, FIN and RST
 * bits, and for an ACK-driven change the same acknowledgment? */
static int same_cause(const struct hs_seg *a, const struct hs_seg *b)
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
static int same_packet(const struct hs_run *r, int side, const struct hs_trans *inf,
		       const struct hs_trans *k)
{
	int seg = inf->seg, i, at = 0;
	int dir_in = side == SIDE_CLIENT ? 1 : 0; /* the direction this side receives */
	int64_t best = 0;

	if (seg < 1 || seg > r->n_segs)
		return 0;
	for (i = 0; i < r->n_segs; i++) {
		const struct hs_seg *sg = &r->segs[i];
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
enum diff_kind { DIFF_TIME_WAIT, DIFF_SYN_RECV, DIFF_UNSENT_FIN, DIFF_SAMPLE, DIFF_OTHER, DIFF_N };

static const char *const diff_keys[DIFF_N] = {
	[DIFF_TIME_WAIT] = "handshake.diff.time_wait",
	[DIFF_SYN_RECV] = "handshake.diff.syn_recv",
	[DIFF_UNSENT_FIN] = "handshake.diff.unsent_fin",
	[DIFF_SAMPLE] = "handshake.diff.sample",
	[DIFF_OTHER] = "handshake.diff.other",
};

static json_t *trans_json(const struct hs_run *r, const struct hs_trans *t)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:I}", "from", tcpst_name(t->from), "to",
			      tcpst_name(t->to), "source", obs_src_name(t->src), "t_kernel_us",
			      obs_run_us(r->ctx, t->t_ns));

	if (t->src == OBS_SRC_RFC_MODEL)
		json_object_set_new(j, "seg", json_integer(t->seg));
	else
		json_object_set_new(j, "after_seg", json_integer(t->seg));
	return j;
}

/* An observation: the state a sample saw (CLOSED and listed false when
 * sock_diag no longer lists the socket). */
static json_t *seen_json(const struct hs_run *r, const struct hs_trans *t)
{
	json_t *j = json_pack("{s:s, s:s, s:b, s:I, s:i}", "state", tcpst_name(t->to), "source",
			      obs_src_name(t->src), "listed", !t->gone, "t_kernel_us",
			      obs_run_us(r->ctx, t->t_ns), "after_seg", t->seg);

	if (t->gone) {
		json_object_set_new(j, "last_state", json_string(tcpst_name(t->from)));
		json_object_set_new(j, "reason", json_string(t->reason ? t->reason : "not_listed"));
		if (t->reason && !strcmp(t->reason, "rst")) {
			json_object_set_new(j, "evidence", json_pack("{s:I}", "seq_raw", (json_int_t)t->rst_seq));
			if (t->rst_seg)
				json_object_set_new(j, "evidence_seg", json_integer(t->rst_seg));
		}
	}
	return j;
}

/* Was the RFC model in state st at some instant in [from_ns, t_ns]? */
static int model_was_in(const struct hs_run *r, int side, int st, int64_t from_ns, int64_t t_ns);

/* The RFC model's state for side at t_ns (the last change at or before it). */
static int model_state_at(const struct hs_run *r, int side, int64_t t_ns)
{
	int i, st = side == SIDE_CLIENT || r->sc == SC_REFUSED ? TCPST_CLOSE : TCPST_LISTEN;

	for (i = 0; i < r->n_infd[side]; i++) {
		if (r->infd[side][i].t_ns > t_ns)
			break;
		st = r->infd[side][i].to;
	}
	return st;
}

static int model_was_in(const struct hs_run *r, int side, int st, int64_t from_ns, int64_t t_ns)
{
	int i;

	if (model_state_at(r, side, from_ns) == st)
		return 1;
	for (i = 0; i < r->n_infd[side]; i++)
		if (r->infd[side][i].t_ns > from_ns && r->infd[side][i].t_ns <= t_ns &&
		    r->infd[side][i].to == st)
			return 1;
	return 0;
}

/* Append name to the array of source names unless it is there already. */
static void add_source(json_t *names, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(names, i, v)
		if (!strcmp(json_string_value(v), name))
			return;
	json_array_append_new(names, json_string(name));
}

struct row {
	int64_t t_ns;
	int k, i, o; /* indexes into the kernel, model and observation lists, -1 when absent */
};

static int row_first(const struct row *x)
{
	return x->k >= 0 ? x->k : x->i >= 0 ? x->i : x->o;
}

static int row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	if (x->t_ns != y->t_ns)
		return x->t_ns < y->t_ns ? -1 : 1;
	return row_first(x) - row_first(y);
}

/* Why a row disagrees. */
static enum diff_kind explain(const struct hs_run *r, int side, const struct row *rw)
{
	const struct hs_trans *k = rw->k >= 0 ? &r->kern[side][rw->k] : NULL;
	const struct hs_trans *f = rw->i >= 0 ? &r->infd[side][rw->i] : NULL;
	int j;

	if (rw->o >= 0)
		return DIFF_SAMPLE;
	if (k && f)
		return f->to == TCPST_SYN_RECV ? DIFF_SYN_RECV : DIFF_OTHER;
	if (k && k->to == TCPST_CLOSE && (k->from == TCPST_FIN_WAIT2 || k->from == TCPST_CLOSING))
		return DIFF_TIME_WAIT;
	if (f && f->from == TCPST_TIME_WAIT)
		return DIFF_TIME_WAIT; /* a timewait socket's end is no transition */
	if (f && f->to == TCPST_TIME_WAIT)
		for (j = 0; j < r->n_kern[side]; j++)
			if (r->kern[side][j].to == TCPST_CLOSE && r->kern[side][j].from == f->from)
				return DIFF_TIME_WAIT;
	if (r->sc == SC_SIMULTANEOUS && !r->replay && !r->net && side == SIDE_CLIENT)
		return DIFF_UNSENT_FIN;
	return DIFF_OTHER;
}

/* One note per kind of disagreement (the texts are in web/i18n; the keys
 * are literals here so the translation test finds every one). */
static void explain_note(struct hs_run *r, enum diff_kind kind, int side)
{
	struct ev_emitter *em = r->ctx->em;
	json_t *p = json_pack("{s:s, s:s}", "who", hs_side_names[side], "who_key", hs_side_keys[side]);

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
	case DIFF_SAMPLE:
		ev_note(em, "handshake.diff.sample", p, NULL);
		break;
	default:
		ev_note(em, "handshake.diff.other", p, NULL);
		break;
	}
}

/* Compare one side's kernel reports with the RFC model. Transitions (the
 * tracepoint's only) are matched in order with the model's: what only the
 * kernel reported, what only the packets imply, and matches the kernel made
 * at a different packet. Without the tracepoint the model's changes have no
 * kernel transition to match ("unobserved", not a disagreement). Each
 * observation (a sample) is checked against the model's state at that
 * instant. Emits state.compare and one note per kind of disagreement.
 * Returns the number of disagreements. */
int hs_compare_side(struct hs_run *r, int side)
{
	struct hs_trans *k = r->kern[side], *f = r->infd[side], *o = r->seen[side];
	int nk = r->n_kern[side], nf = r->n_infd[side], no = r->n_seen[side];
	int kmatch[HS_MAX_TRANS], i, j, next = 0, n = 0, diffs = 0;
	int explained[DIFF_N] = {0};
	struct row rows[3 * HS_MAX_TRANS];
	json_t *jrows = json_array(), *samples = json_array();

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
			rows[n++] = (struct row){k[found].t_ns, found, i, -1};
		} else {
			rows[n++] = (struct row){f[i].t_ns, -1, i, -1};
		}
	}
	for (j = 0; j < nk; j++)
		if (kmatch[j] < 0)
			rows[n++] = (struct row){k[j].t_ns, j, -1, -1};
	for (j = 0; j < no; j++)
		rows[n++] = (struct row){o[j].t_ns, -1, -1, j};
	qsort(rows, (size_t)n, sizeof rows[0], row_cmp);
	for (i = 0; i < n; i++) {
		json_t *row = json_object();
		const char *match;
		int counts = 1;

		if (rows[i].o >= 0) {
			const struct hs_trans *ob = &o[rows[i].o];
			int model = model_state_at(r, side, ob->t_ns);
			match = model_was_in(r, side, ob->to, ob->t_from_ns, ob->t_ns) ? "consistent"
										    : "inconsistent";
			json_object_set_new(row, "observed", seen_json(r, ob));
			json_object_set_new(row, "model_state", json_string(tcpst_name(model)));
			add_source(samples, obs_src_name(ob->src));
			counts = strcmp(match, "consistent") != 0;
		} else if (rows[i].k >= 0 && rows[i].i >= 0) {
			match = same_packet(r, side, &f[rows[i].i], &k[rows[i].k]) ? "same"
										: "different_packet";
			counts = strcmp(match, "same") != 0;
		} else if (rows[i].k >= 0) {
			match = "kernel_only";
		} else if (r->trace) {
			match = "inferred_only";
		} else {
			/* No source of transitions: nothing to compare with. */
			match = "unobserved";
			counts = 0;
		}
		json_object_set_new(row, "match", json_string(match));
		if (rows[i].k >= 0)
			json_object_set_new(row, "kernel", trans_json(r, &k[rows[i].k]));
		if (rows[i].i >= 0)
			json_object_set_new(row, "inferred", trans_json(r, &f[rows[i].i]));
		if (counts) {
			enum diff_kind d = explain(r, side, &rows[i]);
			json_object_set_new(row, "key", json_string(diff_keys[d]));
			explained[d]++;
			diffs++;
		}
		json_array_append_new(jrows, row);
	}
	/* Explain each kind of disagreement once. */
	for (i = 0; i < DIFF_N; i++)
		if (explained[i])
			explain_note(r, (enum diff_kind)i, side);
	ev_emit(r->ctx->em, "state.compare",
		json_pack("{s:s, s:b, s:i, s:o, s:s, s:o}", "who", hs_side_names[side], "agree",
			  diffs == 0, "differences", diffs, "rows", jrows, "kernel_source",
			  r->trace ? "tracepoint" : "none", "samples", samples));
	return diffs;
}

void hs_close_note(struct hs_run *r)
{
	int first = r->fin_seg[0] && (!r->fin_seg[1] || r->fin_seg[0] < r->fin_seg[1]) ? 0 : 1;
	const char *active = first == 0 ? "client" : "server";
	const char *passive = first == 0 ? "server" : "client";

	/* A simultaneous close is neither pattern: each side ACKs a FIN. */
	if (r->closes_three < 0 || (r->sc == SC_SIMULTANEOUS && !r->replay))
		return;
	if (r->closes_three)
		ev_note(r->ctx->em, "handshake.close_three",
			json_pack("{s:s, s:s, s:s, s:s, s:i}", "active", active, "active_key",
				  first == 0 ? "role.client" : "role.server", "passive", passive,
				  "passive_key", first == 0 ? "role.server" : "role.client", "fin_seg",
				  r->fin_seg[!first]), NULL);
	else
		ev_note(r->ctx->em, "handshake.close_four",
			json_pack("{s:s, s:s, s:s, s:s}", "active", active, "active_key",
				  first == 0 ? "role.client" : "role.server", "passive", passive,
				  "passive_key", first == 0 ? "role.server" : "role.client"), NULL);
}

/* The observation that ended side's TIME_WAIT, or NULL. */
static const struct hs_trans *tw_end(const struct hs_run *r, int side)
{
	int i;

	for (i = r->n_seen[side] - 1; i >= 0; i--)
		if (r->seen[side][i].gone && (r->seen[side][i].from == TCPST_TIME_WAIT ||
					      r->seen[side][i].timer == TCPST_TIMER_TIME_WAIT))
			return &r->seen[side][i];
	return NULL;
}

/* How each side's TIME_WAIT ended, or that it still runs, by the kernel's
 * own reports. Without the tracepoint, a note that the kernel's states are
 * samples. */
void hs_end_notes(struct hs_run *r)
{
	int i;

	if (!r->obs)
		return;
	if (!r->trace)
		ev_note(r->ctx->em, "handshake.samples_only", NULL, NULL);
	for (i = SIDE_CLIENT; i <= SIDE_SERVER; i++) {
		struct obs_final fin;
		const struct hs_trans *end = tw_end(r, i);

		obs_final_state(r->obs, i, &fin);
		if (fin.listed_at_end && fin.state == TCPST_TIME_WAIT) {
			ev_note(r->ctx->em, "handshake.time_wait_left",
				json_pack("{s:s, s:s, s:i, s:s}", "who", hs_side_names[i], "who_key",
					  hs_side_keys[i], "ms_left",
					  (int)fin.timer_ms, "source", "sock_diag"), NULL);
		} else if (end && end->reason && !strcmp(end->reason, "rst")) {
			json_t *p = json_pack("{s:s, s:s, s:I, s:I}", "who", hs_side_names[i], "who_key",
					      hs_side_keys[i], "seq_raw",
					      (json_int_t)end->rst_seq, "t_ms",
					      obs_run_us(r->ctx, end->t_ns) / 1000);
			int dir = i == SIDE_CLIENT ? 1 : 0;
			json_object_set_new(p, "seg", json_integer(end->rst_seg));
			json_object_set_new(p, "rel_seq",
					    r->isn_known[dir]
						    ? json_integer((uint32_t)(end->rst_seq - r->isn[dir]))
						    : json_null());
			ev_note(r->ctx->em, "handshake.time_wait_ended.rst", p, NULL);
		} else if (end) {
			json_t *p = json_pack("{s:s, s:s, s:I}", "who", hs_side_names[i], "who_key",
					      hs_side_keys[i], "t_ms",
					      obs_run_us(r->ctx, end->t_ns) / 1000);
			const char *why = end->reason ? end->reason : "not_listed";

			if (!strcmp(why, "timer_expired"))
				ev_note(r->ctx->em, "handshake.time_wait_ended.timer_expired", p, NULL);
			else if (!strcmp(why, "reused"))
				ev_note(r->ctx->em, "handshake.time_wait_ended.reused", p, NULL);
			else
				ev_note(r->ctx->em, "handshake.time_wait_ended.not_listed", p, NULL);
		}
	}
}

/* A side's final state: the kernel's (with its source, and whether
 * sock_diag still lists it) apart from the RFC model's. */
static json_t *final_json(const struct hs_run *r, int side)
{
	json_t *j = json_object();

	if (r->obs) {
		struct obs_final fin;
		json_t *k;

		obs_final_state(r->obs, side, &fin);
		if (fin.src >= 0) {
			k = json_pack("{s:s, s:s, s:I}", "state", tcpst_name(fin.state), "source",
				      obs_src_name(fin.src), "t_kernel_us", obs_run_us(r->ctx, fin.t_ns));
			json_object_set_new(k, "listed_at_end", json_boolean(fin.listed_at_end));
			/* The tracepoint's last word, from a lane with gaps. */
			if (fin.trace_incomplete)
				json_object_set_new(k, "complete", json_false());
			if (fin.reason)
				json_object_set_new(k, "reason", json_string(fin.reason));
			if (fin.listed_at_end && fin.timer)
				json_object_set_new(k, "timer_ms", json_integer(fin.timer_ms));
		} else {
			k = json_null();
		}
		json_object_set_new(j, "kernel", k);
	}
	if (side <= SIDE_SERVER)
		json_object_set_new(j, "rfc_model",
				    json_pack("{s:s, s:s}", "state", tcpst_name(r->inf[side].state),
					      "source", obs_src_name(OBS_SRC_RFC_MODEL)));
	return j;
}

void hs_summary(struct hs_run *r, const int diffs[2])
{
	json_t *s = r->ctx->summary;
	int i, c2s = 0, s2c = 0;

	for (i = 0; i < r->n_segs; i++) {
		if (r->segs[i].dir)
			s2c++;
		else
			c2s++;
	}
	json_object_set_new(s, "scenario",
			    json_string(r->replay ? "replay" : hs_scenario_choices[r->sc]));
	if (!r->replay)
		json_object_set_new(s, "network", json_string(r->net ? "two-hosts" : "loopback"));
	if (r->arrivals_unmatched)
		json_object_set_new(s, "arrivals_unmatched", json_integer(r->arrivals_unmatched));
	json_object_set_new(s, "segments", json_integer(r->n_segs));
	json_object_set_new(s, "client_to_server", json_integer(c2s));
	json_object_set_new(s, "server_to_client", json_integer(s2c));
	if (r->segs_dropped)
		json_object_set_new(s, "segments_not_shown", json_integer(r->segs_dropped));
	if (r->wire_incomplete)
		json_object_set_new(s, "close", json_null());
	else if (r->sc == SC_SIMULTANEOUS && !r->replay)
		json_object_set_new(s, "close", json_string("simultaneous"));
	else
		json_object_set_new(s, "close",
				    r->closes_three < 0 ? json_null()
							: json_string(r->closes_three ? "three segments"
										  : "four segments"));
	json_object_set_new(s, "client_state", final_json(r, SIDE_CLIENT));
	json_object_set_new(s, "server_state", final_json(r, SIDE_SERVER));
	if (!r->replay) {
		json_t *samples = json_array();
		json_array_append_new(samples, json_string("sock_diag"));
		if (!r->trace)
			json_array_append_new(samples, json_string("tcp_info"));
		json_object_set_new(s, "kernel_transitions",
				    json_string(r->trace ? "tracepoint" : "none"));
		json_object_set_new(s, "kernel_samples", samples);
		json_object_set_new(s, "disagreements",
				    r->wire_incomplete || r->trace_incomplete ? json_null()
						       : json_pack("{s:i, s:i}", "client", diffs[0],
								   "server", diffs[1]));
		for (i = SIDE_CLIENT; i <= SIDE_SERVER; i++) {
			struct obs_final fin;
			obs_final_state(r->obs, i, &fin);
			if (fin.listed_at_end && fin.state == TCPST_TIME_WAIT)
				json_object_set_new(s, i ? "server_time_wait_ms_left"
							 : "client_time_wait_ms_left",
						    json_integer(fin.timer_ms));
		}
		json_object_set_new(s, "client", json_pack("{s:s, s:i}", "addr", r->cli_ip, "port", r->cport));
		json_object_set_new(s, "server", json_pack("{s:s, s:i}", "addr", r->srv_ip, "port", r->sport));
	}
	if (r->ctx->pcap_path)
		json_object_set_new(s, "pcap", json_string(r->ctx->pcap_path));
}
