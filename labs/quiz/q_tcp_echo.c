/* q_tcp_echo.c: tcp-echo's questions and the rules that grade them from the run's socket calls. */
#include <stdio.h>
#include <string.h>

#include "quiz/quiz.h"

static int is_call(const json_t *e, const char *who, const char *call)
{
	return !strcmp(quiz_ev_type(e), "syscall") && (!who || !strcmp(quiz_str(e, "who"), who)) &&
	       !strcmp(quiz_str(e, "call"), call);
}

/* How many recv() calls the server makes, the one returning 0 included. */
static int rule_server_recvs(const json_t *events, struct quiz_truth *t)
{
	long long n = 0, data = 0, eof = 0, failed = 0;
	const json_t *e;
	size_t i;

	if (!quiz_ended_ok(events, t))
		return 0;
	json_array_foreach(events, i, e) {
		if (!is_call(e, "server", "recv"))
			continue;
		n++;
		if (quiz_int(e, "ret", -1) > 0)
			data++;
		else if (quiz_int(e, "ret", -1) == 0)
			eof++;
		else
			failed++;
		quiz_evidence(t, e);
	}
	t->decided = 1;
	t->num = n;
	t->why = "count";
	json_object_set_new(t->params, "n", json_integer(n));
	json_object_set_new(t->params, "data", json_integer(data));
	json_object_set_new(t->params, "eof", json_integer(eof));
	json_object_set_new(t->params, "failed", json_integer(failed));
	json_object_set_new(t->params, "messages",
			    json_integer(quiz_int(quiz_run_params(events), "messages", 0) *
					 quiz_int(quiz_run_params(events), "clients", 1)));
	return 0;
}

/* Whose recv() returns 0 first: the peer of the side that closed first. */
static int rule_eof_side(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *eof = NULL, *close = NULL;
	size_t i;

	if (!quiz_ended_ok(events, t))
		return 0;
	json_array_foreach(events, i, e) {
		if (is_call(e, NULL, "recv") && quiz_int(e, "ret", -1) == 0) {
			eof = e;
			break;
		}
	}
	if (!eof) {
		t->why = "none";
		return 0;
	}
	/* The other side's close() of the same connection. On loopback it may
	 * return after the peer's recv() saw its FIN (the FIN is delivered
	 * inside the close() call), so it is looked for anywhere. */
	json_array_foreach(events, i, e) {
		if (is_call(e, NULL, "close") && strcmp(quiz_str(e, "who"), quiz_str(eof, "who")) &&
		    quiz_int(e, "conn", -1) == quiz_int(eof, "conn", -2)) {
			close = e;
			break;
		}
	}
	t->decided = 1;
	t->choice = !strcmp(quiz_str(eof, "who"), "client") ? "client" : "server";
	t->why = t->choice;
	quiz_evidence(t, close);
	quiz_evidence(t, eof);
	json_object_set_new(t->params, "eof_seq", json_integer(quiz_ev_seq(eof)));
	json_object_set_new(t->params, "close_seq", json_integer(close ? quiz_ev_seq(close) : -1));
	json_object_set_new(t->params, "conn", json_integer(quiz_int(eof, "conn", 0)));
	return 0;
}

/* Does client 2's connect() return before the server's accept() of it? The
 * events are in the order the calls returned (t_us). */
static int rule_second_connect(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *conn = NULL, *acc = NULL;
	const json_t *local;
	size_t i;

	if (!quiz_ended_ok(events, t))
		return 0;
	json_array_foreach(events, i, e)
		if (is_call(e, "client", "connect") && quiz_int(e, "conn", 0) == 2)
			conn = e;
	if (!conn || quiz_int(conn, "ret", -1) != 0) {
		t->why = "no_second";
		return 0;
	}
	local = json_object_get(conn, "local");
	json_array_foreach(events, i, e) {
		const json_t *peer = json_object_get(e, "peer");
		if (is_call(e, "server", "accept") && peer && local &&
		    quiz_int(peer, "port", -1) == quiz_int(local, "port", -2) &&
		    !strcmp(quiz_str(peer, "addr"), quiz_str(local, "addr")))
			acc = e;
	}
	if (!acc) {
		t->why = "no_accept";
		return 0;
	}
	t->decided = 1;
	t->choice = quiz_ev_seq(conn) < quiz_ev_seq(acc) ? "before" : "after";
	t->why = t->choice;
	quiz_evidence(t, conn);
	quiz_evidence(t, acc);
	json_object_set_new(t->params, "connect_seq", json_integer(quiz_ev_seq(conn)));
	json_object_set_new(t->params, "accept_seq", json_integer(quiz_ev_seq(acc)));
	json_object_set_new(t->params, "connect_ms",
			    json_real((double)quiz_int(conn, "t_us", 0) / 1000.0));
	json_object_set_new(t->params, "accept_ms",
			    json_real((double)quiz_int(acc, "t_us", 0) / 1000.0));
	return 0;
}

static const char *const sides[] = {"client", "server", NULL};
static const char *const before_after[] = {"before", "after", NULL};
static const char *const both_mode[] = {"both", NULL};

static const struct quiz_question questions[] = {
	{.id = "server_recvs", .kind = QUIZ_NUMBER, .min = 0, .max = 100000, .unit = "calls",
	 .when_param = "mode", .when_in = both_mode, .rule = rule_server_recvs},
	{.id = "eof_side", .kind = QUIZ_CHOICE, .choices = sides, .when_param = "mode",
	 .when_in = both_mode, .rule = rule_eof_side},
	{.id = "second_connect", .kind = QUIZ_CHOICE, .choices = before_after,
	 .when_param = "clients", .when_min = 2, .rule = rule_second_connect},
};

const struct quiz_bank quiz_bank_tcp_echo = {"tcp-echo", questions,
					     sizeof questions / sizeof questions[0]};
