/* test_observer.c: the observer's rules, fed offline: samples are observations (never transitions), a socket sock_diag stops listing is gone with the reason the evidence gives, the countdown stops, items are delivered in time order. */
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event.h"
#include "lab.h"
#include "observer/observer.h"
#include "tcpstate/tcpstate.h"

#define MS 1000000LL

struct run {
	struct ev_emitter em;
	struct lab_ctx ctx;
	json_t *events;
	struct obs *o;
	int64_t t0;
	int calls;
};

static int sink(void *arg, const json_t *ev, const char *line)
{
	struct run *r = arg;

	(void)line;
	json_array_append(r->events, (json_t *)ev);
	return 0;
}

static json_t *on_item(void *arg, const struct obs_event *ev)
{
	struct run *r = arg;

	r->calls++;
	return ev->kind == OBS_GONE && ev->rst ? json_pack("{s:i}", "lab_field", 7) : NULL;
}

/* The client 10.0.0.1:40000 talking to the server 10.0.0.2:80. */
static const struct obs_sock client_sock = {"client", {0}, {0}, 40000, 80, 1};

static void start(struct run *r)
{
	struct obs_config cfg;
	struct obs_sock s = client_sock;

	memset(r, 0, sizeof *r);
	assert_int_equal(ev_init(&r->em, "0123456789abcdef", "test"), 0);
	r->events = json_array();
	ev_add_sink(&r->em, sink, r);
	r->ctx.em = &r->em;
	r->ctx.summary = json_object();
	r->t0 = (int64_t)r->em.t0.tv_sec * 1000000000 + r->em.t0.tv_nsec;
	inet_pton(AF_INET, "10.0.0.1", &s.laddr);
	inet_pton(AF_INET, "10.0.0.2", &s.raddr);
	memset(&cfg, 0, sizeof cfg);
	cfg.ctx = &r->ctx;
	cfg.socks = &s;
	cfg.n_socks = 1;
	cfg.fn = on_item;
	cfg.arg = r;
	assert_int_equal(obs_open_offline(&r->o, &cfg), 0);
}

static void finish(struct run *r)
{
	obs_destroy(r->o);
	ev_cleanup(&r->em);
	json_decref(r->events);
	json_decref(r->ctx.summary);
}

/* The client's socket as sock_diag lists it. */
static struct tcpst_diag_sock listed(int state, int timer, uint32_t ms)
{
	struct tcpst_diag_sock d;

	memset(&d, 0, sizeof d);
	d.family = AF_INET;
	inet_pton(AF_INET, "10.0.0.1", d.src);
	inet_pton(AF_INET, "10.0.0.2", d.dst);
	d.sport = 40000;
	d.dport = 80;
	d.state = state;
	d.timer = timer;
	d.expires_ms = ms;
	return d;
}

/* The Internet checksum (RFC 1071) of n bytes, starting from sum. */
static uint16_t csum(const uint8_t *b, size_t n, uint32_t sum)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1)
		sum += (uint32_t)(b[n - 1] << 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* An IPv4 + TCP segment from the server to the client with flags, its
 * checksums right (a bad one is no evidence: the kernel drops it). */
static void feed_segment(struct run *r, int64_t t_ns, uint8_t flags, uint32_t seq)
{
	uint8_t b[40] = {0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1,
			 0, 80, 0x9c, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0, 0, 0, 0, 0, 0, 0};
	struct cap_frame f;

	b[24] = (uint8_t)(seq >> 24);
	b[25] = (uint8_t)(seq >> 16);
	b[26] = (uint8_t)(seq >> 8);
	b[27] = (uint8_t)seq;
	b[33] = flags;
	{
		/* Pseudo-header (RFC 9293 3.1): addresses, protocol, TCP length. */
		uint8_t ph[12 + 20];
		uint16_t c = csum(b, 20, 0);

		b[10] = (uint8_t)(c >> 8);
		b[11] = (uint8_t)c;
		memcpy(ph, b + 12, 8);
		ph[8] = 0;
		ph[9] = 6;
		ph[10] = 0;
		ph[11] = 20;
		memcpy(ph + 12, b + 20, 20);
		c = csum(ph, sizeof ph, 0);
		b[36] = (uint8_t)(c >> 8);
		b[37] = (uint8_t)c;
	}
	memset(&f, 0, sizeof f);
	f.t_mono_ns = t_ns;
	f.data = b;
	f.caplen = f.len = sizeof b;
	f.link = CAP_LINK_RAW;
	assert_int_equal(obs_feed_frame(r->o, &f, -1), 0);
}

static json_t *events_of(struct run *r, const char *type)
{
	json_t *out = json_array(), *ev;
	size_t i;

	json_array_foreach(r->events, i, ev)
		if (!strcmp(json_string_value(json_object_get(ev, "type")), type))
			json_array_append(out, ev);
	return out;
}

static const char *str(const json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

static void samples_are_observations_never_transitions(void **state)
{
	struct run r;
	struct tcpst_diag_sock d;
	json_t *obs, *st, *tm;

	(void)state;
	start(&r);
	d = listed(TCPST_ESTABLISHED, 0, 0);
	obs_feed_diag(r.o, r.t0 + 10 * MS, r.t0 + 10 * MS, &d, 1);
	obs_feed_diag(r.o, r.t0 + 20 * MS, r.t0 + 20 * MS, &d, 1); /* nothing new: no event */
	d = listed(TCPST_TIME_WAIT, TCPST_TIMER_TIME_WAIT, 59000);
	obs_feed_diag(r.o, r.t0 + 30 * MS, r.t0 + 30 * MS, &d, 1);
	obs_stop(r.o);
	obs = events_of(&r, "observation");
	st = events_of(&r, "state");
	tm = events_of(&r, "timer");
	assert_int_equal(json_array_size(st), 0);
	assert_int_equal(json_array_size(obs), 2);
	assert_string_equal(str(json_array_get(obs, 0), "state"), "ESTABLISHED");
	assert_string_equal(str(json_array_get(obs, 1), "state"), "TIME_WAIT");
	assert_string_equal(str(json_array_get(obs, 1), "source"), "sock_diag");
	assert_string_equal(str(json_array_get(obs, 1), "kind"), "sample");
	assert_null(json_object_get(json_array_get(obs, 1), "from"));
	assert_int_equal(json_integer_value(json_object_get(json_array_get(obs, 1), "timer_ms")), 59000);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(obs, 1), "t_kernel_us")), 30000);
	assert_int_equal(json_array_size(tm), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(tm, 0), "ms_left")), 59000);
	json_decref(obs);
	json_decref(st);
	json_decref(tm);
	finish(&r);
}

static void an_rst_ends_time_wait_and_is_named(void **state)
{
	struct run r;
	struct tcpst_diag_sock d = listed(TCPST_TIME_WAIT, TCPST_TIMER_TIME_WAIT, 60000);
	struct obs_final fin;
	json_t *obs, *tm, *g;

	(void)state;
	start(&r);
	obs_feed_diag(r.o, r.t0 + 10 * MS, r.t0 + 10 * MS, &d, 1);
	feed_segment(&r, r.t0 + 15 * MS, 0x04, 123456789);
	obs_feed_diag(r.o, r.t0 + 20 * MS, r.t0 + 20 * MS, NULL, 0);
	obs_stop(r.o);
	obs = events_of(&r, "observation");
	tm = events_of(&r, "timer");
	assert_int_equal(json_array_size(obs), 2);
	g = json_array_get(obs, 1);
	assert_true(json_is_false(json_object_get(g, "listed")));
	assert_true(json_is_null(json_object_get(g, "state")));
	assert_string_equal(str(g, "last_state"), "TIME_WAIT");
	assert_string_equal(str(g, "reason"), "rst");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(g, "evidence"), "seq_raw")),
			 123456789);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(g, "evidence"), "t_kernel_us")),
			 15000);
	assert_int_equal(json_integer_value(json_object_get(g, "lab_field")), 7);
	/* The countdown: one reading, then stopped with the reason. */
	assert_int_equal(json_array_size(tm), 2);
	assert_true(json_is_true(json_object_get(json_array_get(tm, 1), "stopped")));
	assert_string_equal(str(json_array_get(tm, 1), "reason"), "rst");
	obs_final_state(r.o, 0, &fin);
	assert_int_equal(fin.state, TCPST_CLOSE);
	assert_int_equal(fin.src, OBS_SRC_SOCK_DIAG);
	assert_int_equal(fin.listed_at_end, 0);
	assert_string_equal(fin.reason, "rst");
	json_decref(obs);
	json_decref(tm);
	finish(&r);
}

/* Why a socket is gone when no RST ended it: its timer had run out, or
 * nothing this run saw explains it. An RST that reached it before a dump
 * that still listed it did not end it. */
static void gone_without_an_rst(void **state)
{
	static const struct {
		uint32_t timer_ms;
		int rst_at_ms; /* 0: none */
		int relisted;  /* listed once more at 14 ms, after the RST */
		const char *reason;
	} cases[] = {{50, 0, 0, "timer_expired"}, {60000, 0, 0, "not_listed"},
		     {60000, 5, 0, "not_listed"}, {60000, 12, 1, "not_listed"}, {60000, 12, 0, "rst"}};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct run r;
		struct tcpst_diag_sock d = listed(TCPST_TIME_WAIT, TCPST_TIMER_TIME_WAIT, cases[i].timer_ms);
		json_t *obs;

		start(&r);
		obs_feed_diag(r.o, r.t0 + 10 * MS, r.t0 + 10 * MS, &d, 1);
		if (cases[i].rst_at_ms)
			feed_segment(&r, r.t0 + cases[i].rst_at_ms * MS, 0x04, 1);
		if (cases[i].relisted)
			obs_feed_diag(r.o, r.t0 + 14 * MS, r.t0 + 14 * MS, &d, 1);
		obs_feed_diag(r.o, r.t0 + 110 * MS, r.t0 + 110 * MS, NULL, 0);
		obs_stop(r.o);
		obs = events_of(&r, "observation");
		assert_int_equal(json_array_size(obs), 2);
		assert_string_equal(str(json_array_get(obs, 1), "reason"), cases[i].reason);
		assert_int_equal(json_object_get(json_array_get(obs, 1), "evidence") != NULL,
				 !strcmp(cases[i].reason, "rst"));
		json_decref(obs);
		finish(&r);
	}
}

/* The tracepoint's CLOSE already said it: a socket that then leaves
 * sock_diag's list is nothing new. Transitions keep their kernel order even
 * when fed after a later sample. */
static void transitions_and_time_order(void **state)
{
	struct run r;
	struct tcpst_diag_sock d = listed(TCPST_ESTABLISHED, 0, 0);
	json_t *ev;
	size_t i;
	const char *types[8];
	size_t n = 0;

	(void)state;
	start(&r);
	obs_feed_diag(r.o, r.t0 + 10 * MS, r.t0 + 10 * MS, &d, 1);
	obs_feed_diag(r.o, r.t0 + 40 * MS, r.t0 + 40 * MS, NULL, 0);
	obs_feed_transition(r.o, r.t0 + 5 * MS, 0, TCPST_SYN_SENT, TCPST_ESTABLISHED);
	obs_feed_transition(r.o, r.t0 + 30 * MS, 0, TCPST_ESTABLISHED, TCPST_CLOSE);
	obs_stop(r.o);
	json_array_foreach(r.events, i, ev)
		if (n < 8)
			types[n++] = str(ev, "type");
	/* 5 ms: SYN_SENT -> ESTABLISHED; 10 ms: the sample agrees (nothing);
	 * 30 ms: ESTABLISHED -> CLOSED; 40 ms: not listed (known: nothing). */
	assert_int_equal(n, 2);
	assert_string_equal(types[0], "state");
	assert_string_equal(types[1], "state");
	assert_string_equal(str(json_array_get(r.events, 0), "kind"), "transition");
	assert_string_equal(str(json_array_get(r.events, 1), "to"), "CLOSED");
	assert_true(r.calls >= 2);
	finish(&r);
}

/* A tracepoint event from 10.0.0.1:sport to 10.0.0.2:dport at t_ns. */
static struct tcpst_trace_ev trace_ev(int64_t t_ns, uint16_t sport, uint16_t dport, int from, int to)
{
	struct tcpst_trace_ev e;

	memset(&e, 0, sizeof e);
	e.t_mono_ns = t_ns;
	e.family = AF_INET;
	inet_pton(AF_INET, "10.0.0.1", e.saddr);
	inet_pton(AF_INET, "10.0.0.2", e.daddr);
	e.sport = sport;
	e.dport = dport;
	e.oldstate = from;
	e.newstate = to;
	return e;
}

/* A lab that learns a socket's addresses from a record (obs_watch, after
 * the socket's first transitions were read): the queued ones are matched
 * when delivered. The connect()'s SYN_SENT (sport 0) is the socket's only
 * inside its connect() window; nothing before from_ns is; a socket watched
 * with sock_diag only is given none; the bound is OBS_MAX_WATCH. */
static void sockets_watched_while_running(void **state)
{
	struct run r;
	struct obs_config cfg;
	struct obs_sock s = client_sock, lst = {"listener", {0}, {0}, 40000, 0, 0};
	struct obs_watch_opts opt = {0}, no_trace = {0, 0, OBS_SOCK_NO_TRACE};
	struct tcpst_trace_ev e;
	int i, n_state = 0;
	json_t *ev;
	size_t k;

	(void)state;
	start(&r);
	/* An observer told of its sockets up front cannot be told more. */
	assert_int_equal(obs_watch(r.o, &s, NULL), -EINVAL);
	finish(&r);

	start(&r);
	obs_destroy(r.o);
	memset(&cfg, 0, sizeof cfg);
	cfg.ctx = &r.ctx;
	cfg.fn = on_item;
	cfg.arg = &r;
	cfg.watch_later = 1;
	assert_int_equal(obs_open_offline(&r.o, &cfg), 0);
	/* Read before the lab knew the socket. */
	e = trace_ev(r.t0 + 1 * MS, 40000, 80, TCPST_ESTABLISHED, TCPST_FIN_WAIT1); /* before from_ns */
	obs_feed_trace(r.o, &e);
	e = trace_ev(r.t0 + 3 * MS, 0, 80, TCPST_CLOSE, TCPST_SYN_SENT);
	obs_feed_trace(r.o, &e);
	e = trace_ev(r.t0 + 4 * MS, 40000, 80, TCPST_SYN_SENT, TCPST_ESTABLISHED);
	obs_feed_trace(r.o, &e);
	e = trace_ev(r.t0 + 4 * MS, 40001, 80, TCPST_SYN_SENT, TCPST_ESTABLISHED); /* another port */
	obs_feed_trace(r.o, &e);
	e = trace_ev(r.t0 + 6 * MS, 0, 80, TCPST_CLOSE, TCPST_SYN_SENT); /* after its connect() */
	obs_feed_trace(r.o, &e);
	e = trace_ev(r.t0 + 7 * MS, 40000, 0, TCPST_CLOSE, TCPST_LISTEN); /* the sampled listener */
	obs_feed_trace(r.o, &e);
	inet_pton(AF_INET, "10.0.0.1", &s.laddr);
	inet_pton(AF_INET, "10.0.0.2", &s.raddr);
	lst.laddr = s.laddr;
	opt.from_ns = r.t0 + 2 * MS;
	opt.until_ns = r.t0 + 5 * MS;
	assert_int_equal(obs_watch(r.o, &s, &opt), 0);
	assert_int_equal(obs_watch(r.o, &lst, &no_trace), 1);
	e = trace_ev(r.t0 + 8 * MS, 40000, 80, TCPST_ESTABLISHED, TCPST_FIN_WAIT1); /* after */
	obs_feed_trace(r.o, &e);
	obs_deliver(r.o, INT64_MAX);
	json_array_foreach(r.events, k, ev) {
		if (strcmp(str(ev, "type"), "state"))
			continue;
		assert_string_equal(str(ev, "who"), "client");
		assert_string_equal(str(ev, "to"), n_state == 0   ? "SYN_SENT"
						   : n_state == 1 ? "ESTABLISHED"
								  : "FIN_WAIT_1");
		n_state++;
	}
	assert_int_equal(n_state, 3);
	for (i = 2; i < OBS_MAX_WATCH; i++)
		assert_int_equal(obs_watch(r.o, &s, &opt), i);
	assert_int_equal(obs_watch(r.o, &s, &opt), -ENOSPC);
	finish(&r);
}

/* A lab that learns a socket's port when its connect() returns holds
 * delivery from just before the call: the handshake's transitions, read
 * before the socket was watched, wait and are then matched to it; released
 * later than it needed, nothing is lost either. Without the hold they would
 * have been delivered about no socket. */
static void a_hold_keeps_transitions_until_the_socket_is_watched(void **state)
{
	struct run r;
	struct obs_config cfg;
	struct obs_sock s = client_sock;
	struct obs_watch_opts opt = {0};
	struct tcpst_trace_ev e;
	json_t *st;
	int h;

	(void)state;
	start(&r);
	obs_destroy(r.o);
	memset(&cfg, 0, sizeof cfg);
	cfg.ctx = &r.ctx;
	cfg.fn = on_item;
	cfg.arg = &r;
	cfg.watch_later = 1;
	assert_int_equal(obs_open_offline(&r.o, &cfg), 0);
	h = obs_hold(r.o, r.t0 + 2 * MS); /* connect() begins */
	assert_true(h >= 0);
	e = trace_ev(r.t0 + 3 * MS, 0, 80, TCPST_CLOSE, TCPST_SYN_SENT);
	obs_feed_trace(r.o, &e);
	e = trace_ev(r.t0 + 4 * MS, 40000, 80, TCPST_SYN_SENT, TCPST_ESTABLISHED);
	obs_feed_trace(r.o, &e);
	obs_deliver(r.o, r.t0 + 10 * MS); /* the observer's turn: held */
	st = events_of(&r, "state");
	assert_int_equal(json_array_size(st), 0);
	json_decref(st);
	inet_pton(AF_INET, "10.0.0.1", &s.laddr);
	inet_pton(AF_INET, "10.0.0.2", &s.raddr);
	opt.from_ns = r.t0 + 2 * MS;
	opt.until_ns = r.t0 + 5 * MS;
	assert_int_equal(obs_watch(r.o, &s, &opt), 0);
	obs_release(r.o, h);
	obs_deliver(r.o, r.t0 + 10 * MS);
	st = events_of(&r, "state");
	assert_int_equal(json_array_size(st), 2);
	assert_string_equal(str(json_array_get(st, 0), "to"), "SYN_SENT");
	assert_string_equal(str(json_array_get(st, 1), "to"), "ESTABLISHED");
	json_decref(st);
	/* Every hold taken: the next is refused, and releasing one frees it. */
	for (h = 0; h < OBS_MAX_HOLDS; h++)
		assert_int_equal(obs_hold(r.o, r.t0 + 20 * MS), h);
	assert_int_equal(obs_hold(r.o, r.t0 + 20 * MS), -ENOSPC);
	obs_release(r.o, 3);
	assert_int_equal(obs_hold(r.o, r.t0 + 20 * MS), 3);
	finish(&r);
}

/* A dump that began before a transition the tracepoint reported and
 * returned after it may have seen the state the socket left: not shown. A
 * state the tracepoint cannot show (TIME_WAIT) in such a window is. */
static void a_sample_older_than_a_transition_is_not_shown(void **state)
{
	struct run r;
	struct tcpst_diag_sock est = listed(TCPST_ESTABLISHED, 0, 0);
	struct tcpst_diag_sock tw = listed(TCPST_TIME_WAIT, TCPST_TIMER_TIME_WAIT, 60000);
	json_t *obs;

	(void)state;
	start(&r);
	obs_feed_transition(r.o, r.t0 + 5 * MS, 0, TCPST_SYN_SENT, TCPST_ESTABLISHED);
	obs_feed_transition(r.o, r.t0 + 12 * MS, 0, TCPST_ESTABLISHED, TCPST_FIN_WAIT1);
	obs_feed_transition(r.o, r.t0 + 14 * MS, 0, TCPST_FIN_WAIT1, TCPST_FIN_WAIT2);
	obs_feed_transition(r.o, r.t0 + 16 * MS, 0, TCPST_FIN_WAIT2, TCPST_CLOSE);
	obs_feed_diag(r.o, r.t0 + 10 * MS, r.t0 + 20 * MS, &est, 1);
	obs_feed_diag(r.o, r.t0 + 15 * MS, r.t0 + 25 * MS, &tw, 1);
	obs_stop(r.o);
	obs = events_of(&r, "observation");
	assert_int_equal(json_array_size(obs), 1);
	assert_string_equal(str(json_array_get(obs, 0), "state"), "TIME_WAIT");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(obs, 0), "t_from_us")), 15000);
	json_decref(obs);
	finish(&r);
}

/* The kernel discards a segment whose checksum is bad: such an RST ended
 * nothing. */
static void an_rst_with_a_bad_checksum_is_no_evidence(void **state)
{
	struct run r;
	struct tcpst_diag_sock d = listed(TCPST_TIME_WAIT, TCPST_TIMER_TIME_WAIT, 60000);
	uint8_t b[40] = {0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0x12, 0x34, 10, 0, 0, 2, 10, 0, 0, 1,
			 0, 80, 0x9c, 0x40, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x04, 0, 0, 0x56, 0x78, 0, 0};
	struct cap_frame f;
	json_t *obs;

	(void)state;
	start(&r);
	obs_feed_diag(r.o, r.t0 + 10 * MS, r.t0 + 10 * MS, &d, 1);
	memset(&f, 0, sizeof f);
	f.t_mono_ns = r.t0 + 15 * MS;
	f.data = b;
	f.caplen = f.len = sizeof b;
	f.link = CAP_LINK_RAW;
	assert_int_equal(obs_feed_frame(r.o, &f, -1), 0);
	obs_feed_diag(r.o, r.t0 + 20 * MS, r.t0 + 20 * MS, NULL, 0);
	obs_stop(r.o);
	obs = events_of(&r, "observation");
	assert_int_equal(json_array_size(obs), 2);
	assert_string_equal(str(json_array_get(obs, 1), "reason"), "not_listed");
	json_decref(obs);
	finish(&r);
}

/* A lab's own records (a program's calls, output, exit) are its evidence:
 * with the queue full and delivery held back (a lab that has not caught up
 * is waited for up to 500 ms), the thread queueing one more waits for room
 * instead of losing it. Before, records past 65,536 queued were refused. */
static json_t *count_record(void *arg, const struct obs_event *ev)
{
	struct run *r = arg;

	if (ev->kind == OBS_RECORD && *(int *)ev->rec == r->calls)
		r->calls++; /* in order, none missing */
	return NULL;
}

static void records_wait_for_room_and_are_never_lost(void **state)
{
	struct run r;
	struct obs_config cfg;
	int i, n = 65536 + 256;

	(void)state;
	if (geteuid() != 0)
		skip(); /* obs_start opens a capture (CAP_NET_RAW) */
	memset(&r, 0, sizeof r);
	assert_int_equal(ev_init(&r.em, "0123456789abcdef", "test"), 0);
	r.events = json_array();
	ev_add_sink(&r.em, sink, &r);
	r.ctx.em = &r.em;
	r.ctx.summary = json_object();
	memset(&cfg, 0, sizeof cfg);
	cfg.ctx = &r.ctx;
	cfg.filter = "tcp port 1"; /* nothing: only records are queued */
	cfg.fn = count_record;
	cfg.arg = &r;
	cfg.free_rec = free;
	cfg.watch_later = 1; /* never caught up: delivery 500 ms behind */
	assert_int_equal(obs_start(&r.o, &cfg), 0);
	for (i = 0; i < n; i++) {
		int *rec = malloc(sizeof *rec);

		assert_non_null(rec);
		*rec = i;
		assert_int_equal(obs_record(r.o, obs_now_ns(), rec), 0);
	}
	obs_stop(r.o);
	assert_int_equal(r.calls, n);
	assert_int_equal(obs_records_lost(r.o), 0);
	finish(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(samples_are_observations_never_transitions),
		cmocka_unit_test(records_wait_for_room_and_are_never_lost),
		cmocka_unit_test(an_rst_ends_time_wait_and_is_named),
		cmocka_unit_test(gone_without_an_rst),
		cmocka_unit_test(transitions_and_time_order),
		cmocka_unit_test(sockets_watched_while_running),
		cmocka_unit_test(a_hold_keeps_transitions_until_the_socket_is_watched),
		cmocka_unit_test(a_sample_older_than_a_transition_is_not_shown),
		cmocka_unit_test(an_rst_with_a_bad_checksum_is_no_evidence),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
