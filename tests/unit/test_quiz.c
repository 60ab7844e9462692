/* test_quiz.c: every question of every lab graded on recorded runs (tests/data/quiz), right and wrong, and the answer parser's limits. */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quiz/quiz.h"

#define DATA_DIR "tests/data/quiz"

static json_t *load(const char *name)
{
	char path[256], err[300];
	json_t *ev;

	snprintf(path, sizeof path, "%s/%s", DATA_DIR, name);
	ev = quiz_load_events(path, 16u << 20, err, sizeof err);
	if (!ev)
		fail_msg("%s: %s", path, err);
	return ev;
}

/* Grade one answer (text form) to lab's question qid on the recorded run
 * file; check the result and, when want_truth is not NULL, the truth as
 * JSON text. Returns the verdict (the caller frees it). */
static json_t *check(const char *file, const char *qid, const char *answer, const char *want_result,
		     const char *want_truth)
{
	json_t *ev = load(file);
	const char *lab = quiz_events_lab(ev);
	const struct quiz_question *q = quiz_find(lab, qid);
	struct quiz_truth t;
	json_t *a = NULL, *v;
	char err[200];
	char *truth;

	if (!q)
		fail_msg("%s has no question %s", lab, qid);
	if (answer) {
		a = quiz_parse_answer(q, answer, err, sizeof err);
		if (!a)
			fail_msg("%s: %s", file, err);
	}
	assert_int_equal(quiz_truth_of(q, ev, &t), 0);
	v = quiz_verdict(lab, q, &t, a, "en");
	truth = json_dumps(json_object_get(v, "truth"), JSON_ENCODE_ANY | JSON_COMPACT);
	if (strcmp(json_string_value(json_object_get(v, "result")), want_result) ||
	    (want_truth && strcmp(truth, want_truth)))
		fail_msg("%s %s answer %s: got %s (truth %s), want %s (truth %s); why: %s", file, qid,
			 answer ? answer : "-", json_string_value(json_object_get(v, "result")), truth,
			 want_result, want_truth ? want_truth : "any",
			 json_string_value(json_object_get(json_object_get(v, "why"), "text")));
	free(truth);
	quiz_truth_cleanup(&t);
	json_decref(a);
	json_decref(ev);
	return v;
}

static void check_free(const char *file, const char *qid, const char *answer, const char *want,
		       const char *truth)
{
	json_decref(check(file, qid, answer, want, truth));
}

static const char *why_key(const json_t *v)
{
	return json_string_value(json_object_get(json_object_get(v, "why"), "key"));
}

static void evidence_is(const json_t *v, const long long *want, size_t n)
{
	const json_t *e = json_object_get(v, "evidence");
	size_t i;

	assert_int_equal(json_array_size(e), n);
	for (i = 0; i < n; i++)
		assert_int_equal(json_integer_value(json_array_get(e, i)), want[i]);
}

/* The close: three segments when the second FIN carries the ACK of the
 * first, four with close_delay_ms=300 (longer than Linux's delayed ACK),
 * four when the FINs cross (simultaneous), none to count after an abort. */
static void test_handshake_close_segments(void **st)
{
	static const long long three_ev[] = {55, 62, 69};
	json_t *v;

	v = check("handshake-three.jsonl", "close_segments", "3", "right", "3");
	assert_string_equal(why_key(v), "quiz.handshake.close_segments.why.three");
	evidence_is(v, three_ev, 3);
	json_decref(v);
	check_free("handshake-three.jsonl", "close_segments", "4", "wrong", "3");
	v = check("handshake-four.jsonl", "close_segments", "4", "right", "4");
	assert_string_equal(why_key(v), "quiz.handshake.close_segments.why.four");
	json_decref(v);
	check_free("handshake-four.jsonl", "close_segments", "3", "wrong", "4");
	v = check("handshake-simultaneous.jsonl", "close_segments", "4", "right", "4");
	assert_string_equal(why_key(v), "quiz.handshake.close_segments.why.crossed");
	json_decref(v);
	v = check("handshake-abort.jsonl", "close_segments", "4", "undecided", "null");
	assert_string_equal(why_key(v), "quiz.handshake.close_segments.why.no_close");
	json_decref(v);
}

/* TIME_WAIT as sock_diag listed it: the client (it closed first), both
 * (simultaneous), neither (abort: RST, no TIME_WAIT). */
static void test_handshake_time_wait(void **st)
{
	check_free("handshake-three.jsonl", "time_wait_side", "client", "right", "\"client\"");
	check_free("handshake-three.jsonl", "time_wait_side", "server", "wrong", "\"client\"");
	check_free("handshake-simultaneous.jsonl", "time_wait_side", "both", "right", "\"both\"");
	check_free("handshake-simultaneous.jsonl", "time_wait_side", "client", "wrong", "\"both\"");
	check_free("handshake-abort.jsonl", "time_wait_side", "neither", "right", "\"neither\"");
	check_free("handshake-abort.jsonl", "time_wait_side", "client", "wrong", "\"neither\"");
}

/* The first segment acknowledging the client's FIN: the server's FIN in a
 * three-segment close, a bare ACK in a four-segment one. */
static void test_handshake_fin_acked_by(void **st)
{
	json_t *v = check("handshake-three.jsonl", "fin_acked_by", "9", "right", "[9]");
	assert_string_equal(why_key(v), "quiz.handshake.fin_acked_by.why.with_fin");
	json_decref(v);
	check_free("handshake-three.jsonl", "fin_acked_by", "10", "wrong", "[9]");
	v = check("handshake-four.jsonl", "fin_acked_by", "9", "right", "[9]");
	assert_string_equal(why_key(v), "quiz.handshake.fin_acked_by.why.pure");
	json_decref(v);
	check_free("handshake-four.jsonl", "fin_acked_by", "8", "wrong", "[9]");
	check_free("handshake-abort.jsonl", "fin_acked_by", "8", "undecided", "null");
}

static void test_tcp_echo(void **st)
{
	static const long long eof_ev[] = {27, 24};
	json_t *v;

	/* 3 messages: 3 recv() with data and the one that returns 0. */
	check_free("tcp-echo.jsonl", "server_recvs", "4", "right", "4");
	check_free("tcp-echo.jsonl", "server_recvs", "3", "wrong", "4");
	/* Two clients, the server closing: it never reads an EOF. */
	check_free("tcp-echo-server-closes.jsonl", "server_recvs", "2", "right", "2");
	check_free("tcp-echo-two-clients.jsonl", "server_recvs", "8", "right", "8");
	v = check("tcp-echo.jsonl", "eof_side", "server", "right", "\"server\"");
	evidence_is(v, eof_ev, 2);
	json_decref(v);
	check_free("tcp-echo.jsonl", "eof_side", "client", "wrong", "\"server\"");
	check_free("tcp-echo-server-closes.jsonl", "eof_side", "client", "right", "\"client\"");
	/* Client 2's connect() returns while the iterative server still
	 * serves client 1 (closer=client holds it), and also here. */
	check_free("tcp-echo-two-clients.jsonl", "second_connect", "before", "right", "\"before\"");
	check_free("tcp-echo-two-clients.jsonl", "second_connect", "after", "wrong", "\"before\"");
	check_free("tcp-echo-server-closes.jsonl", "second_connect", "before", "right", "\"before\"");
	/* One client: no second connect() to compare. */
	check_free("tcp-echo.jsonl", "second_connect", "before", "undecided", "null");
}

/* Loss depends on the wire and its seed: 30% c2s with seed 7 dropped
 * probes 4, 6, 8, 9 and 12. */
static void test_udp_ping(void **st)
{
	json_t *v = check("udp-ping-loss.jsonl", "lost", "5", "right", "5");
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(json_object_get(v, "why"), "params"), "probes")),
			    "4, 6, 8, 9, 12");
	/* All five dropped by the wire on the way to the server, by its own
	 * report (lost_by), counted: the explanation is all translated. */
	assert_string_equal(why_key(v), "quiz.udp-ping.lost.why.wire");
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(json_object_get(v, "why"), "params"), "to_server")),
			 5);
	assert_int_equal(json_array_size(json_object_get(v, "evidence")), 5);
	json_decref(v);
	check_free("udp-ping-loss.jsonl", "lost", "0", "wrong", "5");
	check_free("udp-ping.jsonl", "lost", "0", "right", "0");
	check_free("udp-ping.jsonl", "lost", "1", "wrong", "0");
	/* Over a 30 ms wire each way probe 1 waits for ARP first. */
	check_free("udp-ping-arp.jsonl", "first_slowest", "yes", "right", "\"yes\"");
	check_free("udp-ping-arp.jsonl", "first_slowest", "no", "wrong", "\"yes\"");
	check_free("udp-ping-loss.jsonl", "first_slowest", "no", "right", "\"no\"");
}

/* Nagle on a 20 ms wire: the first message alone, the other seven in one
 * segment; NODELAY: eight segments, glued by the receiver; loopback: five
 * segments, one recv(). */
static void test_sticky(void **st)
{
	check_free("sticky-nagle.jsonl", "segments", "2", "right", "2");
	check_free("sticky-nagle.jsonl", "segments", "8", "wrong", "2");
	check_free("sticky-nagle.jsonl", "boundaries", "wire", "right", "\"wire\"");
	check_free("sticky-nodelay.jsonl", "segments", "8", "right", "8");
	check_free("sticky-nodelay.jsonl", "boundaries", "wire", "wrong", "\"receiver\"");
	check_free("sticky-nodelay.jsonl", "boundaries", "receiver", "right", "\"receiver\"");
	check_free("sticky.jsonl", "recvs", "1", "right", "1");
	check_free("sticky.jsonl", "recvs", "5", "wrong", "1");
	check_free("sticky.jsonl", "segments", "5", "right", "5");
}

/* SYN cookies off: the flood's full SYN queue times the client's connect()
 * out (597 SYNs dropped); on: every connect() succeeds (598 cookies). */
static void test_syn_flood(void **st)
{
	json_t *v = check("syn-flood.jsonl", "during_flood", "no", "right", "\"no\"");
	json_t *p = json_object_get(json_object_get(v, "why"), "params");

	assert_int_equal(json_integer_value(json_object_get(p, "drops")), 597);
	assert_string_equal(json_string_value(json_object_get(p, "errno")), "ETIMEDOUT");
	json_decref(v);
	check_free("syn-flood.jsonl", "during_flood", "yes", "wrong", "\"no\"");
	check_free("syn-flood-cookies.jsonl", "during_flood", "yes", "right", "\"yes\"");
	check_free("syn-flood-cookies.jsonl", "during_flood", "no", "wrong", "\"yes\"");
	check_free("syn-flood.jsonl", "connects_ok", "0", "right", "0");
	check_free("syn-flood-cookies.jsonl", "connects_ok", "0", "wrong", "7");
}

/* The closer's host holds the TIME_WAIT socket. */
static void test_time_wait(void **st)
{
	check_free("time-wait.jsonl", "tw_side", "client", "right", "\"client\"");
	check_free("time-wait.jsonl", "tw_side", "server", "wrong", "\"client\"");
	check_free("time-wait-server.jsonl", "tw_side", "server", "right", "\"server\"");
	check_free("time-wait-server.jsonl", "tw_side", "both", "wrong", "\"server\"");
}

static const json_t *why_params(const json_t *v)
{
	return json_object_get(json_object_get(v, "why"), "params");
}

/* The text of a verdict's explanation in lang. */
static char *why_in(const char *file, const char *qid, const char *lang)
{
	json_t *ev = load(file);
	const char *lab = quiz_events_lab(ev);
	const struct quiz_question *q = quiz_find(lab, qid);
	struct quiz_truth t;
	json_t *v;
	char *text;

	assert_non_null(q);
	assert_int_equal(quiz_truth_of(q, ev, &t), 0);
	v = quiz_verdict(lab, q, &t, NULL, lang);
	text = strdup(json_string_value(json_object_get(json_object_get(v, "why"), "text")));
	json_decref(v);
	quiz_truth_cleanup(&t);
	json_decref(ev);
	return text;
}

/* layers, all five scenarios (layers.jsonl): A's frame to C carries R's
 * MAC (frame 13; A's ARP for the gateway, frames 8 and 12, before it), to
 * B B's own; A's broadcast request reached B and R, no link of subnet 2;
 * TTL 1 dies at R (ICMP 11 back to A); 3000 bytes leave A as 3 fragments;
 * the probe of a STALE entry is unicast to B's MAC. */
static void test_layers(void **st)
{
	static const long long mac_ev[] = {38, 42, 43};
	static const long long heard_ev[] = {17, 18, 19};
	json_t *v;

	v = check("layers.jsonl", "mac_to_c", "router", "right", "\"router\"");
	assert_string_equal(why_key(v), "quiz.layers.mac_to_c.why.router");
	evidence_is(v, mac_ev, 3);
	assert_int_equal(json_integer_value(json_object_get(why_params(v), "frame")), 13);
	assert_string_equal(json_string_value(json_object_get(why_params(v), "dst")),
			    "02:73:6c:01:38:01");
	json_decref(v);
	check_free("layers.jsonl", "mac_to_c", "c", "wrong", "\"router\"");
	check_free("layers.jsonl", "mac_to_c", "broadcast", "wrong", "\"router\"");
	v = check("layers.jsonl", "mac_to_b", "b", "right", "\"b\"");
	assert_string_equal(why_key(v), "quiz.layers.mac_to_b.why.own");
	assert_string_equal(json_string_value(json_object_get(why_params(v), "dst")),
			    "02:73:6c:01:38:03");
	json_decref(v);
	check_free("layers.jsonl", "mac_to_b", "router", "wrong", "\"b\"");
	v = check("layers.jsonl", "arp_heard", "b_r", "right", "\"b_r\"");
	evidence_is(v, heard_ev, 3);
	assert_string_equal(json_string_value(json_object_get(why_params(v), "ports")),
			    "b-eth0, r-eth0");
	json_decref(v);
	check_free("layers.jsonl", "arp_heard", "all", "wrong", "\"b_r\"");
	check_free("layers.jsonl", "arp_heard", "b", "wrong", "\"b_r\"");
	v = check("layers.jsonl", "ttl_reaches_c", "no", "right", "\"no\"");
	assert_string_equal(why_key(v), "quiz.layers.ttl_reaches_c.why.no");
	assert_string_equal(json_string_value(json_object_get(why_params(v), "router")),
			    "198.18.4.225");
	json_decref(v);
	check_free("layers.jsonl", "ttl_reaches_c", "yes", "wrong", "\"no\"");
	check_free("layers.jsonl", "fragments", "3", "right", "3");
	check_free("layers.jsonl", "fragments", "2", "wrong", "3");
	v = check("layers.jsonl", "probe_dst", "unicast", "right", "\"unicast\"");
	assert_int_equal(json_integer_value(json_object_get(why_params(v), "frame")), 50);
	json_decref(v);
	check_free("layers.jsonl", "probe_dst", "broadcast", "wrong", "\"unicast\"");
	/* ttl=2: the datagram reaches C with TTL 1. */
	v = check("layers-ttl2.jsonl", "ttl_reaches_c", "yes", "right", "\"yes\"");
	assert_int_equal(json_integer_value(json_object_get(why_params(v), "ttl_at_c")), 1);
	json_decref(v);
	check_free("layers-ttl2.jsonl", "ttl_reaches_c", "no", "wrong", "\"yes\"");
	/* ttl=2 with R's link to subnet 2 dropping everything (seed 7): neither
	 * C's frame nor an ICMP error: the run cannot tell. */
	v = check("layers-ttl2-lost.jsonl", "ttl_reaches_c", "no", "undecided", "null");
	assert_string_equal(why_key(v), "quiz.layers.ttl_reaches_c.why.lost");
	json_decref(v);
	/* 6000 bytes over a 1500-byte MTU: 5 fragments leave A. */
	v = check("layers-frag.jsonl", "fragments", "5", "right", "5");
	assert_string_equal(json_string_value(json_object_get(why_params(v), "offsets")),
			    "0, 1480, 2960, 4440, 5920");
	json_decref(v);
	check_free("layers-frag.jsonl", "fragments", "4", "wrong", "5");
	/* The scenarios a run did not play: nothing to grade. */
	check_free("layers-frag.jsonl", "mac_to_b", "b", "undecided", "null");
	check_free("layers-ttl2.jsonl", "probe_dst", "unicast", "undecided", "null");
}

/* A capture that lost frames decides no frame question. */
static void test_layers_incomplete_capture(void **st)
{
	json_t *ev = load("layers.jsonl");
	const struct quiz_question *q = quiz_find("layers", "mac_to_c");
	json_t *end = json_array_get(ev, json_array_size(ev) - 1);
	json_t *cap = json_object_get(json_object_get(end, "summary"), "capture");
	struct quiz_truth t;

	json_object_set_new(cap, "complete", json_false());
	json_object_set_new(cap, "drops", json_integer(2));
	assert_int_equal(quiz_truth_of(q, ev, &t), 0);
	assert_int_equal(t.decided, 0);
	assert_string_equal(t.why, "*capture_incomplete");
	quiz_truth_cleanup(&t);
	json_decref(ev);
}

/* A student's own programs: an echo pair (3 receive calls, the first
 * returns 5 bytes, the client closes first and holds TIME_WAIT); three
 * sends glued into the server's first recv() (14 bytes); a server that
 * closes first; UDP (one datagram of 1200 bytes, no connection); a client
 * alone, refused, blocking and non-blocking (SO_ERROR). What a run lacks
 * is undecided, never right or wrong. */
static void test_own(void **st)
{
	static const long long refused_ev[] = {9, 7};
	json_t *v;

	check_free("own-echo.jsonl", "server_recvs", "3", "right", "3");
	check_free("own-echo.jsonl", "server_recvs", "2", "wrong", "3");
	check_free("own-echo.jsonl", "first_recv_bytes", "5", "right", "5");
	check_free("own-echo.jsonl", "first_recv_bytes", "12", "wrong", "5");
	check_free("own-echo.jsonl", "time_wait_side", "client", "right", "\"client\"");
	check_free("own-echo.jsonl", "time_wait_side", "server", "wrong", "\"client\"");
	check_free("own-echo.jsonl", "connect_result", "ok", "right", "\"ok\"");
	check_free("own-echo.jsonl", "connect_result", "refused", "wrong", "\"ok\"");
	v = check("own-glued.jsonl", "first_recv_bytes", "14", "right", "14");
	assert_string_equal(why_key(v), "quiz.own.first_recv_bytes.why.bytes");
	assert_int_equal(json_integer_value(json_object_get(why_params(v), "sends")), 3);
	json_decref(v);
	check_free("own-glued.jsonl", "first_recv_bytes", "4", "wrong", "14");
	check_free("own-glued.jsonl", "server_recvs", "2", "right", "2");
	check_free("own-server-closes.jsonl", "time_wait_side", "server", "right", "\"server\"");
	check_free("own-server-closes.jsonl", "time_wait_side", "client", "wrong", "\"server\"");
	v = check("own-server-closes.jsonl", "server_recvs", "0", "undecided", "null");
	assert_string_equal(why_key(v), "quiz.own.server_recvs.why.no_recv");
	json_decref(v);
	v = check("own-server-closes.jsonl", "first_recv_bytes", "0", "undecided", "null");
	assert_string_equal(why_key(v), "quiz.own.first_recv_bytes.why.no_recv");
	json_decref(v);
	v = check("own-udp.jsonl", "first_recv_bytes", "1200", "right", "1200");
	assert_string_equal(why_key(v), "quiz.own.first_recv_bytes.why.datagram");
	json_decref(v);
	v = check("own-udp.jsonl", "time_wait_side", "neither", "undecided", "null");
	assert_string_equal(why_key(v), "quiz.own.time_wait_side.why.no_connection");
	json_decref(v);
	v = check("own-udp.jsonl", "connect_result", "ok", "undecided", "null");
	assert_string_equal(why_key(v), "quiz.own.connect_result.why.no_connect");
	json_decref(v);
	v = check("own-refused.jsonl", "connect_result", "refused", "right", "\"refused\"");
	assert_string_equal(why_key(v), "quiz.own.connect_result.why.refused_rst");
	assert_string_equal(json_string_value(json_object_get(why_params(v), "errno")),
			    "ECONNREFUSED");
	evidence_is(v, refused_ev, 2);
	json_decref(v);
	check_free("own-refused.jsonl", "connect_result", "ok", "wrong", "\"refused\"");
	check_free("own-refused.jsonl", "connect_result", "timeout", "wrong", "\"refused\"");
	v = check("own-refused.jsonl", "server_recvs", "1", "undecided", "null");
	assert_string_equal(why_key(v), "quiz.own.server_recvs.why.no_program");
	json_decref(v);
	/* create_connection(timeout=2): EINPROGRESS, then SO_ERROR 111. */
	v = check("own-refused-nb.jsonl", "connect_result", "refused", "right", "\"refused\"");
	assert_int_equal(json_array_size(json_object_get(v, "evidence")), 3);
	json_decref(v);
}

/* A program whose records were tampered with is not counted. */
static void test_own_untraced(void **st)
{
	json_t *ev = load("own-echo.jsonl");
	const struct quiz_question *q = quiz_find("own", "server_recvs");
	json_t *end = json_array_get(ev, json_array_size(ev) - 1);
	json_t *srv = json_object_get(json_object_get(json_object_get(end, "summary"), "programs"),
				      "server");
	struct quiz_truth t;

	json_object_set_new(srv, "bad_records", json_integer(1));
	assert_int_equal(quiz_truth_of(q, ev, &t), 0);
	assert_int_equal(t.decided, 0);
	assert_string_equal(t.why, "untraced");
	quiz_truth_cleanup(&t);
	json_decref(ev);
}

/* Explanations name roles and run statuses in the reader's language (a
 * NAME_key parameter), not in English inside a Chinese sentence. */
static void test_explanations_in_chinese(void **st)
{
	char *s = why_in("handshake-three.jsonl", "close_segments", "zh-CN");
	json_t *ev;
	const struct quiz_question *q = quiz_find("tcp-echo", "server_recvs");
	struct quiz_truth t;
	json_t *v;

	assert_non_null(strstr(s, "服务器的 FIN"));
	assert_non_null(strstr(s, "客户端的 FIN"));
	assert_null(strstr(s, "server"));
	assert_null(strstr(s, "client"));
	free(s);
	s = why_in("own-echo.jsonl", "server_recvs", "zh-CN");
	assert_non_null(strstr(s, "服务器程序"));
	assert_null(strstr(s, "server"));
	free(s);
	s = why_in("udp-ping-loss.jsonl", "lost", "zh-CN");
	assert_null(strstr(s, "wire"));
	assert_null(strstr(s, "{"));
	free(s);
	ev = load("tcp-echo.jsonl");
	json_array_remove(ev, json_array_size(ev) - 1);
	assert_int_equal(quiz_truth_of(q, ev, &t), 0);
	v = quiz_verdict("tcp-echo", q, &t, NULL, "zh-CN");
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(v, "why"), "text")),
			       "运行中"));
	json_decref(v);
	quiz_truth_cleanup(&t);
	json_decref(ev);
}

/* A run that did not end ok decides nothing. */
static void test_unfinished_run(void **st)
{
	json_t *ev = load("tcp-echo.jsonl");
	const struct quiz_question *q = quiz_find("tcp-echo", "server_recvs");
	struct quiz_truth t;

	json_array_remove(ev, json_array_size(ev) - 1); /* no run.end */
	assert_int_equal(quiz_truth_of(q, ev, &t), 0);
	assert_int_equal(t.decided, 0);
	assert_string_equal(t.why, "*run_not_ok");
	quiz_truth_cleanup(&t);
	json_array_clear(ev);
	assert_int_equal(quiz_truth_of(q, ev, &t), 0);
	assert_string_equal(t.why, "*no_run");
	quiz_truth_cleanup(&t);
	json_decref(ev);
}

static void test_answers(void **st)
{
	const struct quiz_question *n = quiz_find("handshake", "close_segments");
	const struct quiz_question *c = quiz_find("handshake", "time_wait_side");
	char err[200], big[QUIZ_ANSWER_MAX + 2];
	json_t *a;

	assert_null(quiz_parse_answer(n, "21", err, sizeof err));
	assert_string_equal(err, "answer to 'close_segments' must be an integer 1..20");
	assert_null(quiz_parse_answer(n, "3x", err, sizeof err));
	assert_null(quiz_parse_answer(n, "", err, sizeof err));
	assert_string_equal(err, "answer to 'close_segments' must be 1..64 bytes");
	memset(big, '1', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_null(quiz_parse_answer(n, big, err, sizeof err));
	assert_null(quiz_parse_answer(c, "alice", err, sizeof err));
	assert_string_equal(err, "answer to 'time_wait_side' must be one of: client, server, both, neither");
	a = json_integer(3);
	assert_null(quiz_answer_from_json(c, a, err, sizeof err));
	assert_string_equal(err, "answer to 'time_wait_side' must be a string (one of its choices)");
	json_decref(a);
	a = quiz_parse_answer(n, "3", err, sizeof err);
	assert_int_equal(json_integer_value(a), 3);
	json_decref(a);
	assert_null(quiz_find("handshake", "nope"));
	assert_null(quiz_bank_find("nope"));
}

/* Questions ask only where they apply, and every lab's bank is described
 * with its schema. */
static void test_describe(void **st)
{
	json_t *d = quiz_describe("handshake");
	json_t *p = json_pack("{s:s}", "scenario", "refused");

	assert_int_equal(json_array_size(d), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(d, 2), "kind")), "pick");
	assert_false(quiz_applies(quiz_find("handshake", "close_segments"), p));
	assert_true(quiz_applies(quiz_find("handshake", "time_wait_side"), p));
	json_decref(p);
	p = json_pack("{s:i}", "clients", 1);
	assert_false(quiz_applies(quiz_find("tcp-echo", "second_connect"), p));
	json_decref(p);
	json_decref(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_close_segments),
		cmocka_unit_test(test_handshake_time_wait),
		cmocka_unit_test(test_handshake_fin_acked_by),
		cmocka_unit_test(test_tcp_echo),
		cmocka_unit_test(test_udp_ping),
		cmocka_unit_test(test_sticky),
		cmocka_unit_test(test_syn_flood),
		cmocka_unit_test(test_time_wait),
		cmocka_unit_test(test_layers),
		cmocka_unit_test(test_layers_incomplete_capture),
		cmocka_unit_test(test_own),
		cmocka_unit_test(test_own_untraced),
		cmocka_unit_test(test_explanations_in_chinese),
		cmocka_unit_test(test_unfinished_run),
		cmocka_unit_test(test_answers),
		cmocka_unit_test(test_describe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
