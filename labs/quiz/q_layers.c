/* q_layers.c: the layers lab's questions (MAC addresses, ARP's broadcast, TTL, fragments, the ARP probe), graded from the frames captured on every link. */
#include <stdio.h>
#include <string.h>

#include "quiz/quiz.h"

#define BROADCAST "ff:ff:ff:ff:ff:ff"

/* The addresses the run's topology event gives a host's first interface. */
struct host_addr {
	const char *ip, *mac, *port;
};

/* Frames are evidence only when the run ended and every link's capture
 * kept every frame. */
static int frames_complete(const json_t *events, struct quiz_truth *t)
{
	const json_t *end = quiz_run_end(events);
	const json_t *sum = json_object_get(end, "summary");
	const json_t *cap = json_object_get(sum, "capture");

	if (!quiz_ended_ok(events, t))
		return 0;
	if ((cap && !json_is_true(json_object_get(cap, "complete"))) ||
	    quiz_int(sum, "frames_not_kept", 0) > 0) {
		t->why = "*capture_incomplete";
		json_object_set_new(t->params, "drops",
				    json_integer(quiz_int(cap, "drops", 0) +
						 quiz_int(sum, "frames_not_kept", 0)));
		return 0;
	}
	return 1;
}

/* Host name's first interface (its only one, but R's eth0 on subnet 1) in
 * the topology event. 0, or -1 when the run has no such host. */
static int host(const json_t *events, const char *name, struct host_addr *out)
{
	const json_t *e, *h, *ifs;
	size_t i, j;

	json_array_foreach(events, i, e) {
		if (strcmp(quiz_ev_type(e), "topology"))
			continue;
		json_array_foreach(json_object_get(e, "hosts"), j, h) {
			if (strcmp(quiz_str(h, "name"), name))
				continue;
			ifs = json_array_get(json_object_get(h, "ifs"), 0);
			if (!ifs)
				return -1;
			out->ip = quiz_str(ifs, "addr");
			out->mac = quiz_str(ifs, "mac");
			out->port = quiz_str(ifs, "port");
			return 0;
		}
		return -1;
	}
	return -1;
}

static int is_frame(const json_t *e, const char *port, const char *dir)
{
	return !strcmp(quiz_ev_type(e), "frame") && (!port || !strcmp(quiz_str(e, "port"), port)) &&
	       (!dir || !strcmp(quiz_str(e, "dir"), dir));
}

static const char *ip_field(const json_t *e, const char *key)
{
	return quiz_str(json_object_get(e, "ip"), key);
}

static const char *eth_dst(const json_t *e)
{
	return quiz_str(json_object_get(e, "eth"), "dst");
}

/* An ARP request (opcode 1) asking for tpa (any, when NULL). */
static int is_arp_request(const json_t *e, const char *tpa)
{
	const json_t *arp = json_object_get(e, "arp");

	return arp && quiz_int(arp, "op", 0) == 1 && (!tpa || !strcmp(quiz_str(arp, "tpa"), tpa));
}

static int need_hosts(const json_t *events, struct quiz_truth *t, struct host_addr *a,
		      struct host_addr *b, struct host_addr *r, struct host_addr *c)
{
	if ((a && host(events, "A", a) < 0) || (b && host(events, "B", b) < 0) ||
	    (r && host(events, "R", r) < 0) || (c && host(events, "C", c) < 0)) {
		t->why = "no_topology";
		return 0;
	}
	return 1;
}

/* The first IPv4 frame host a sent to address dst, as captured on a's own
 * link leaving it (before any relay on that link could drop it). */
static const json_t *first_sent_to(const json_t *events, const struct host_addr *a,
				   const char *dst, long long scenario)
{
	const json_t *e;
	size_t i;

	json_array_foreach(events, i, e)
		if (is_frame(e, a->port, "from_host") && json_object_get(e, "ip") &&
		    !strcmp(ip_field(e, "src"), a->ip) && !strcmp(ip_field(e, "dst"), dst) &&
		    (scenario < 0 || quiz_int(e, "scenario", -1) == scenario))
			return e;
	return NULL;
}

/* The last ARP request a sent for tpa before frame f, and the reply to it
 * that reached a. */
static void arp_before(const json_t *events, const struct host_addr *a, const json_t *f,
		       const char *tpa, struct quiz_truth *t)
{
	const json_t *e, *req = NULL, *rep = NULL;
	size_t i;

	json_array_foreach(events, i, e) {
		if (e == f)
			break;
		if (is_frame(e, a->port, "from_host") && is_arp_request(e, tpa)) {
			req = e;
			rep = NULL;
		} else if (req && !rep && is_frame(e, a->port, "to_host") &&
			   quiz_int(json_object_get(e, "arp"), "op", 0) == 2 &&
			   !strcmp(quiz_str(json_object_get(e, "arp"), "spa"), tpa)) {
			rep = e;
		}
	}
	quiz_evidence(t, req);
	quiz_evidence(t, rep);
}

static void set_s(struct quiz_truth *t, const char *k, const char *v)
{
	json_object_set_new(t->params, k, json_string(v));
}

static void set_i(struct quiz_truth *t, const char *k, long long v)
{
	json_object_set_new(t->params, k, json_integer(v));
}

/* Which destination MAC A's frame to dst carries: dst's own, the router's,
 * or broadcast; the ARP exchange that gave A that MAC is evidence too. */
static int mac_rule(const json_t *events, struct quiz_truth *t, const char *to)
{
	struct host_addr a, r, d;
	const json_t *f;
	const char *mac;

	if (!frames_complete(events, t) || !need_hosts(events, t, &a, NULL, &r, NULL))
		return 0;
	if (host(events, to, &d) < 0) {
		t->why = "no_topology";
		return 0;
	}
	f = first_sent_to(events, &a, d.ip, -1);
	if (!f) {
		t->why = "no_frame";
		set_s(t, "dst_ip", d.ip);
		return 0;
	}
	mac = eth_dst(f);
	set_i(t, "frame", quiz_int(f, "n", 0));
	set_s(t, "dst", mac);
	set_s(t, "dst_ip", d.ip);
	set_s(t, "dst_mac", d.mac);
	set_s(t, "r_mac", r.mac);
	set_s(t, "r_ip", r.ip);
	set_i(t, "ttl", quiz_int(json_object_get(f, "ip"), "ttl", 0));
	if (!strcmp(mac, d.mac))
		t->choice = !strcmp(to, "C") ? "c" : "b";
	else if (!strcmp(mac, r.mac))
		t->choice = "router";
	else if (!strcmp(mac, BROADCAST))
		t->choice = "broadcast";
	if (!t->choice) {
		t->why = "other_mac";
		quiz_evidence(t, f);
		return 0;
	}
	t->decided = 1;
	t->why = !strcmp(t->choice, "router") ? "router" : !strcmp(t->choice, "broadcast")
							   ? "broadcast"
							   : "own";
	/* A's ARP for the address it resolved: the router's for C, B's own
	 * for B (when this run's A resolved it at all). */
	arp_before(events, &a, f, !strcmp(t->choice, "router") ? r.ip : d.ip, t);
	quiz_evidence(t, f);
	return 0;
}

static int rule_mac_to_c(const json_t *events, struct quiz_truth *t)
{
	return mac_rule(events, t, "C");
}

static int rule_mac_to_b(const json_t *events, struct quiz_truth *t)
{
	return mac_rule(events, t, "B");
}

/* Which hosts receive A's (first) ARP request for B: the copies of it the
 * captures saw arriving at a host. */
static int rule_arp_heard(const json_t *events, struct quiz_truth *t)
{
	struct host_addr a, b;
	const json_t *e, *req = NULL, *got[3] = {NULL, NULL, NULL};
	static const char *const names[3] = {"B", "R", "C"};
	char ports[96] = "";
	size_t i, off = 0;
	int k;

	if (!frames_complete(events, t) || !need_hosts(events, t, &a, &b, NULL, NULL))
		return 0;
	json_array_foreach(events, i, e) {
		if (!req) {
			if (is_frame(e, a.port, "from_host") && is_arp_request(e, b.ip))
				req = e;
			continue;
		}
		if (!is_frame(e, NULL, "to_host") || !is_arp_request(e, b.ip) ||
		    quiz_int(e, "scenario", -1) != quiz_int(req, "scenario", -2) ||
		    strcmp(quiz_str(json_object_get(e, "arp"), "spa"), a.ip))
			continue;
		for (k = 0; k < 3; k++)
			if (!strcmp(quiz_str(e, "host"), names[k]) && !got[k])
				got[k] = e;
	}
	if (!req) {
		t->why = "no_request";
		return 0;
	}
	quiz_evidence(t, req);
	for (k = 0; k < 3; k++) {
		quiz_evidence(t, got[k]);
		if (got[k]) {
			int w = snprintf(ports + off, sizeof ports - off, "%s%s", off ? ", " : "",
					 quiz_str(got[k], "port"));
			if (w > 0 && (size_t)w < sizeof ports - off)
				off += (size_t)w;
		}
	}
	set_i(t, "frame", quiz_int(req, "n", 0));
	set_s(t, "dst", eth_dst(req));
	set_s(t, "ports", off ? ports : "-");
	if (!got[0]) {
		/* B never got it: lost on an impaired link, nothing to say about
		 * who a broadcast reaches. */
		t->why = "not_delivered";
		return 0;
	}
	t->decided = 1;
	t->choice = got[2] ? "all" : got[1] ? "b_r" : "b";
	t->why = t->choice;
	return 0;
}

/* Does A's datagram to C with the lab's TTL reach C (scenario 3)? */
static int rule_ttl_reaches_c(const json_t *events, struct quiz_truth *t)
{
	struct host_addr a, c;
	const json_t *e, *sent, *at_c = NULL, *icmp = NULL;
	size_t i;

	if (!frames_complete(events, t) || !need_hosts(events, t, &a, NULL, NULL, &c))
		return 0;
	sent = first_sent_to(events, &a, c.ip, 3);
	if (!sent) {
		t->why = "no_frame";
		return 0;
	}
	json_array_foreach(events, i, e) {
		const json_t *ip = json_object_get(e, "ip");
		if (!ip || quiz_int(e, "scenario", -1) != 3)
			continue;
		if (!at_c && is_frame(e, c.port, "to_host") &&
		    quiz_int(ip, "id", -1) == quiz_int(json_object_get(sent, "ip"), "id", -2) &&
		    !strcmp(quiz_str(ip, "src"), a.ip))
			at_c = e;
		if (!icmp && is_frame(e, a.port, "to_host") && json_object_get(e, "icmp") &&
		    quiz_int(json_object_get(e, "icmp"), "type", -1) == 11)
			icmp = e;
	}
	set_i(t, "frame", quiz_int(sent, "n", 0));
	set_i(t, "ttl", quiz_int(json_object_get(sent, "ip"), "ttl", 0));
	quiz_evidence(t, sent);
	if (at_c) {
		t->decided = 1;
		t->choice = "yes";
		t->why = "yes";
		set_i(t, "c_frame", quiz_int(at_c, "n", 0));
		set_i(t, "ttl_at_c", quiz_int(json_object_get(at_c, "ip"), "ttl", 0));
		quiz_evidence(t, at_c);
	} else if (icmp) {
		t->decided = 1;
		t->choice = "no";
		t->why = "no";
		set_i(t, "icmp_frame", quiz_int(icmp, "n", 0));
		set_s(t, "router", ip_field(icmp, "src"));
		set_i(t, "code", quiz_int(json_object_get(icmp, "icmp"), "code", 0));
		quiz_evidence(t, icmp);
	} else {
		t->why = "lost";
	}
	return 0;
}

/* How many fragments A sends for its big datagram to C (scenario 4): the
 * frames leaving A with that datagram's IP ID. */
static int rule_fragments(const json_t *events, struct quiz_truth *t)
{
	struct host_addr a, c;
	const json_t *e, *first, *last = NULL;
	char offs[200] = "";
	size_t i, off = 0;
	long long n = 0, id, max_len = 0;

	if (!frames_complete(events, t) || !need_hosts(events, t, &a, NULL, NULL, &c))
		return 0;
	first = first_sent_to(events, &a, c.ip, 4);
	if (!first) {
		t->why = "no_frame";
		return 0;
	}
	id = quiz_int(json_object_get(first, "ip"), "id", -1);
	json_array_foreach(events, i, e) {
		const json_t *ip = json_object_get(e, "ip");
		long long payload;
		if (!is_frame(e, a.port, "from_host") || !ip || quiz_int(e, "scenario", -1) != 4 ||
		    quiz_int(ip, "id", -2) != id || strcmp(quiz_str(ip, "dst"), c.ip))
			continue;
		n++;
		last = e;
		quiz_evidence(t, e);
		payload = quiz_int(ip, "total_len", 0) - 20;
		if (payload > max_len)
			max_len = payload;
		if (off < sizeof offs - 16) {
			int w = snprintf(offs + off, sizeof offs - off, "%s%lld", off ? ", " : "",
					 quiz_int(ip, "frag_off", 0));
			if (w > 0 && (size_t)w < sizeof offs - off)
				off += (size_t)w;
		}
	}
	t->decided = 1;
	t->num = n;
	t->why = n > 1 ? "split" : "whole";
	set_i(t, "n", n);
	set_i(t, "id", id);
	set_s(t, "offsets", offs);
	set_i(t, "max_payload", max_len);
	set_i(t, "last_len", last ? quiz_int(json_object_get(last, "ip"), "total_len", 20) - 20 : 0);
	set_i(t, "size", quiz_int(quiz_run_params(events), "frag_size", 0));
	return 0;
}

/* When A sends on its STALE entry for B (scenario 5), where does the ARP
 * probe that follows go: the first ARP request for B leaving A after A's
 * last send to B. */
static int rule_probe_dst(const json_t *events, struct quiz_truth *t)
{
	struct host_addr a, b;
	const json_t *e, *send = NULL, *probe = NULL, *reported = NULL, *to = NULL;
	size_t i;

	if (!frames_complete(events, t) || !need_hosts(events, t, &a, &b, NULL, NULL))
		return 0;
	json_array_foreach(events, i, e) {
		if (!strcmp(quiz_ev_type(e), "syscall") && !strcmp(quiz_str(e, "who"), "A") &&
		    !strcmp(quiz_str(e, "call"), "sendto") &&
		    !strcmp(quiz_str(json_object_get(json_object_get(e, "args"), "to"), "addr"), b.ip))
			send = e;
		if (!strcmp(quiz_ev_type(e), "neigh") && !strcmp(quiz_str(e, "host"), "A") &&
		    !strcmp(quiz_str(e, "ip"), b.ip) && !strcmp(quiz_str(e, "to"), "PROBE"))
			reported = e;
	}
	if (!send || !reported) {
		/* The kernel never put A's entry for B in PROBE: no probe to
		 * ask about. */
		t->why = "no_probe";
		return 0;
	}
	json_array_foreach(events, i, e) {
		if (is_frame(e, a.port, "from_host") && is_arp_request(e, b.ip) &&
		    quiz_int(e, "t_kernel_us", -1) >= quiz_int(send, "t_call_us", 0)) {
			probe = e;
			break;
		}
	}
	if (!probe) {
		t->why = "no_probe";
		return 0;
	}
	json_array_foreach(events, i, e) {
		if (is_frame(e, a.port, "to_host") &&
		    quiz_int(json_object_get(e, "arp"), "op", 0) == 2 &&
		    !strcmp(quiz_str(json_object_get(e, "arp"), "spa"), b.ip) &&
		    quiz_int(e, "n", 0) > quiz_int(probe, "n", 0)) {
			to = e;
			break;
		}
	}
	t->decided = 1;
	t->choice = !strcmp(eth_dst(probe), BROADCAST) ? "broadcast" : "unicast";
	t->why = t->choice;
	quiz_evidence(t, send);
	quiz_evidence(t, reported);
	quiz_evidence(t, probe);
	quiz_evidence(t, to);
	set_i(t, "frame", quiz_int(probe, "n", 0));
	set_s(t, "dst", eth_dst(probe));
	set_s(t, "b_mac", b.mac);
	set_i(t, "reply", to ? quiz_int(to, "n", 0) : -1);
	return 0;
}

static const char *const to_c[] = {"router", "c", "broadcast", NULL};
static const char *const to_b[] = {"b", "router", "broadcast", NULL};
static const char *const heard[] = {"b", "b_r", "all", NULL};
static const char *const yes_no[] = {"yes", "no", NULL};
static const char *const cast[] = {"broadcast", "unicast", NULL};
static const char *const sc_other[] = {"all", "other-subnet", NULL};
static const char *const sc_same[] = {"all", "same-subnet", NULL};
static const char *const sc_ttl[] = {"all", "ttl", NULL};
static const char *const sc_frag[] = {"all", "fragment", NULL};
static const char *const sc_ageing[] = {"all", "ageing", NULL};

static const struct quiz_question questions[] = {
	{.id = "mac_to_c", .kind = QUIZ_CHOICE, .choices = to_c, .when_param = "scenario",
	 .when_in = sc_other, .rule = rule_mac_to_c},
	{.id = "mac_to_b", .kind = QUIZ_CHOICE, .choices = to_b, .when_param = "scenario",
	 .when_in = sc_same, .rule = rule_mac_to_b},
	{.id = "arp_heard", .kind = QUIZ_CHOICE, .choices = heard, .when_param = "scenario",
	 .when_in = sc_same, .rule = rule_arp_heard},
	{.id = "ttl_reaches_c", .kind = QUIZ_CHOICE, .choices = yes_no, .when_param = "scenario",
	 .when_in = sc_ttl, .rule = rule_ttl_reaches_c},
	{.id = "fragments", .kind = QUIZ_NUMBER, .min = 1, .max = 64, .unit = "fragments",
	 .when_param = "scenario", .when_in = sc_frag, .rule = rule_fragments},
	{.id = "probe_dst", .kind = QUIZ_CHOICE, .choices = cast, .when_param = "scenario",
	 .when_in = sc_ageing, .rule = rule_probe_dst},
};

const struct quiz_bank quiz_bank_layers = {"layers", questions,
					   sizeof questions / sizeof questions[0]};
