/* q_own.c: questions for a student's own programs, whose code the lab does not know, graded from the calls the shim traced and the kernel's state reports. */
#include <stdio.h>
#include <string.h>

#include "quiz/quiz.h"
#include "sock.h"

/*
 * The lab cannot know what a program will do, so every rule first checks
 * that the run holds the evidence the question is about (the program ran
 * and was traced, it made the call asked about) and otherwise says the run
 * cannot decide, naming what is missing: a program that never calls recv()
 * has no "first recv()" to be right or wrong about.
 */

/* Program who ran and every record of its calls was shown (none lost to a
 * tampered record socket). */
static int traced(const json_t *events, struct quiz_truth *t, const char *who)
{
	const json_t *e, *prog;
	int started = 0;
	size_t i;

	json_array_foreach(events, i, e)
		if (!strcmp(quiz_ev_type(e), "program.start") && !strcmp(quiz_str(e, "who"), who))
			started = 1;
	json_object_set_new(t->params, "program", json_string(who));
	json_object_set_new(t->params, "program_key", json_string(!strcmp(who, "server")
									  ? "role.server"
									  : "role.client"));
	if (!started) {
		t->why = "no_program";
		return 0;
	}
	prog = json_object_get(
		json_object_get(json_object_get(quiz_run_end(events), "summary"), "programs"), who);
	if (prog && (json_is_false(json_object_get(prog, "traced")) ||
		     quiz_int(prog, "bad_records", 0) > 0)) {
		t->why = "untraced";
		return 0;
	}
	return 1;
}

static int is_call(const json_t *e, const char *who, const char *call)
{
	return !strcmp(quiz_ev_type(e), "syscall") && !strcmp(quiz_str(e, "who"), who) &&
	       (!call || !strcmp(quiz_str(e, "call"), call));
}

/* A call that reads from a socket: recv, recvfrom, recvmsg, or read (the
 * shim records read() only on sockets). */
static int is_receive(const json_t *e, const char *who)
{
	const char *c = quiz_str(e, "call");

	return is_call(e, who, NULL) && (!strcmp(c, "recv") || !strcmp(c, "recvfrom") ||
					 !strcmp(c, "recvmsg") || !strcmp(c, "read"));
}

/* How many receive calls the server's program made (each one the shim
 * recorded: a call still blocked when the program was stopped never
 * returned and is not counted). */
static int rule_server_recvs(const json_t *events, struct quiz_truth *t)
{
	long long n = 0, data = 0, eof = 0, failed = 0, bytes = 0;
	const json_t *e;
	size_t i;

	if (!quiz_ended_ok(events, t) || !traced(events, t, "server"))
		return 0;
	json_array_foreach(events, i, e) {
		long long ret;
		if (!is_receive(e, "server"))
			continue;
		n++;
		ret = quiz_int(e, "ret", -1);
		if (ret > 0) {
			data++;
			bytes += ret;
		} else if (ret == 0) {
			eof++;
		} else {
			failed++;
		}
		quiz_evidence(t, e);
	}
	if (!n) {
		t->why = "no_recv";
		return 0;
	}
	t->decided = 1;
	t->num = n;
	t->why = "count";
	json_object_set_new(t->params, "n", json_integer(n));
	json_object_set_new(t->params, "data", json_integer(data));
	json_object_set_new(t->params, "bytes", json_integer(bytes));
	json_object_set_new(t->params, "eof", json_integer(eof));
	json_object_set_new(t->params, "failed", json_integer(failed));
	return 0;
}

/* Whether the socket a call used is a datagram (UDP) socket: the type the
 * program's socket() call for that descriptor asked for. */
static int is_datagram(const json_t *events, const json_t *call)
{
	const json_t *e, *sock = NULL;
	size_t i;

	json_array_foreach(events, i, e) {
		if (e == call)
			break;
		if (is_call(e, quiz_str(call, "who"), "socket") &&
		    quiz_int(e, "ret", -1) == quiz_int(call, "fd", -2))
			sock = e;
	}
	return sock && !strcmp(quiz_str(json_object_get(sock, "args"), "type"), "SOCK_DGRAM");
}

/* How many bytes the server's first receive call returned, and how many
 * the client's send calls before it had written. */
static int rule_first_recv_bytes(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *first = NULL;
	long long sends = 0, sent = 0;
	size_t i;

	if (!quiz_ended_ok(events, t) || !traced(events, t, "server"))
		return 0;
	json_array_foreach(events, i, e) {
		if (is_receive(e, "server")) {
			first = e;
			break;
		}
	}
	if (!first) {
		t->why = "no_recv";
		return 0;
	}
	quiz_evidence(t, first);
	json_object_set_new(t->params, "call", json_string(quiz_str(first, "call")));
	json_object_set_new(t->params, "seq", json_integer(quiz_ev_seq(first)));
	json_object_set_new(t->params, "asked", json_integer(quiz_int(json_object_get(first, "args"),
								      "len", 0)));
	if (quiz_int(first, "ret", -1) < 0) {
		t->why = "failed";
		json_object_set_new(t->params, "errno", json_string(quiz_str(first, "errno_name")));
		return 0;
	}
	/* The client's send calls made before the receive returned: where
	 * the bytes it returned can have come from. */
	json_array_foreach(events, i, e) {
		const char *c = quiz_str(e, "call");
		if (is_call(e, "client", NULL) && quiz_int(e, "ret", -1) > 0 &&
		    quiz_int(e, "t_call_us", 0) <
			    quiz_int(first, "t_call_us", 0) + quiz_int(first, "blocked_us", 0) &&
		    (!strcmp(c, "send") || !strcmp(c, "sendto") || !strcmp(c, "sendmsg") ||
		     !strcmp(c, "write"))) {
			sends++;
			sent += quiz_int(e, "ret", 0);
		}
	}
	t->decided = 1;
	t->num = quiz_int(first, "ret", 0);
	t->why = t->num == 0 ? "eof" : is_datagram(events, first) ? "datagram" : "bytes";
	json_object_set_new(t->params, "n", json_integer(t->num));
	json_object_set_new(t->params, "sends", json_integer(sends));
	json_object_set_new(t->params, "sent", json_integer(sent));
	return 0;
}

/* Which program's socket the kernel (sock_diag) listed in TIME_WAIT. */
static int rule_time_wait_side(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *seen[2] = {NULL, NULL};
	long long conns = 0, samples = 0;
	size_t i;

	if (!quiz_ended_ok(events, t))
		return 0;
	if (quiz_find_note(events, "own.watch_full")) {
		t->why = "watch_full";
		return 0;
	}
	json_array_foreach(events, i, e) {
		const char *type = quiz_ev_type(e);
		int side;
		if (!strcmp(type, "syscall") && quiz_int(e, "ret", -1) >= 0 &&
		    (!strcmp(quiz_str(e, "call"), "accept") ||
		     (!strcmp(quiz_str(e, "call"), "connect") && json_object_get(e, "local"))))
			conns++;
		if (strcmp(type, "observation") && strcmp(type, "timer"))
			continue;
		if (strcmp(quiz_str(e, "source"), "sock_diag"))
			continue;
		samples++;
		if (strcmp(quiz_str(e, "state"), "TIME_WAIT"))
			continue;
		side = !strcmp(quiz_str(e, "program"), "server");
		if (!seen[side])
			seen[side] = e;
	}
	json_object_set_new(t->params, "conns", json_integer(conns));
	if (!conns && !seen[0] && !seen[1]) {
		/* No TCP connection was made: nothing could reach TIME_WAIT. */
		t->why = "no_connection";
		return 0;
	}
	if (!samples) {
		t->why = "no_samples";
		return 0;
	}
	quiz_tw_sides(t, seen);
	json_object_set_new(t->params, "client_port",
			    json_integer(seen[0] ? quiz_int(seen[0], "port", 0) : 0));
	json_object_set_new(t->params, "server_port",
			    json_integer(seen[1] ? quiz_int(seen[1], "port", 0) : 0));
	json_object_set_new(t->params, "samples", json_integer(samples));
	return 0;
}

/* The errno a connect() ended with, as one of the question's choices. */
static const char *connect_choice(long long err)
{
	switch (err) {
	case 0:
		return "ok";
	case 111: /* ECONNREFUSED */
		return "refused";
	case 110: /* ETIMEDOUT */
		return "timeout";
	case 101: /* ENETUNREACH */
	case 113: /* EHOSTUNREACH */
		return "unreachable";
	default:
		return "other";
	}
}

/* Does the client's first connect() succeed, and if not, with which errno?
 * A non-blocking connect() (Python's with a timeout) returns EINPROGRESS;
 * its result is the SO_ERROR the program read next on that socket. */
static int rule_connect_result(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *conn = NULL, *soerr = NULL, *rst = NULL;
	const json_t *to;
	long long err;
	size_t i;

	if (!quiz_ended_ok(events, t) || !traced(events, t, "client"))
		return 0;
	json_array_foreach(events, i, e) {
		if (!conn) {
			if (is_call(e, "client", "connect"))
				conn = e;
			continue;
		}
		if (is_call(e, "client", "getsockopt") && quiz_int(e, "fd", -1) == quiz_int(conn, "fd", -2) &&
		    !strcmp(quiz_str(json_object_get(e, "args"), "name"), "SO_ERROR") &&
		    quiz_int(e, "ret", -1) == 0) {
			soerr = e;
			break;
		}
	}
	if (!conn) {
		t->why = "no_connect";
		return 0;
	}
	quiz_evidence(t, conn);
	to = json_object_get(conn, "args");
	json_object_set_new(t->params, "addr", json_string(quiz_str(to, "addr")));
	json_object_set_new(t->params, "port", json_integer(quiz_int(to, "port", 0)));
	json_object_set_new(t->params, "seq", json_integer(quiz_ev_seq(conn)));
	err = quiz_int(conn, "ret", -1) == 0 ? 0 : quiz_int(conn, "errno", -1);
	if (err == 115) { /* EINPROGRESS */
		if (!soerr) {
			t->why = "in_progress";
			return 0;
		}
		quiz_evidence(t, soerr);
		err = quiz_int(json_object_get(soerr, "args"), "value", -1);
	}
	if (err < 0) {
		t->why = "no_errno";
		return 0;
	}
	t->decided = 1;
	t->choice = connect_choice(err);
	t->why = t->choice;
	json_object_set_new(t->params, "errno", json_string(err ? lsock_errno_name((int)err) : "-"));
	/* A refused connect(): the RST the server's host answered with. */
	json_array_foreach(events, i, e) {
		if (!strcmp(t->choice, "refused") && !strcmp(quiz_ev_type(e), "segment") &&
		    quiz_int(json_object_get(e, "src"), "port", -1) == quiz_int(to, "port", -2) &&
		    (quiz_int(e, "flags_raw", 0) & 0x04)) {
			rst = e;
			break;
		}
	}
	quiz_evidence(t, rst);
	json_object_set_new(t->params, "rst_seq", json_integer(rst ? quiz_ev_seq(rst) : -1));
	if (rst && !strcmp(t->choice, "refused"))
		t->why = "refused_rst";
	return 0;
}

static const char *const sides[] = {"client", "server", "both", "neither", NULL};
static const char *const outcomes[] = {"ok", "refused", "timeout", "unreachable", "other", NULL};

static const struct quiz_question questions[] = {
	{.id = "server_recvs", .kind = QUIZ_NUMBER, .min = 0, .max = 100000, .unit = "calls",
	 .rule = rule_server_recvs},
	{.id = "first_recv_bytes", .kind = QUIZ_NUMBER, .min = 0, .max = 1048576, .unit = "bytes",
	 .rule = rule_first_recv_bytes},
	{.id = "time_wait_side", .kind = QUIZ_CHOICE, .choices = sides, .rule = rule_time_wait_side},
	{.id = "connect_result", .kind = QUIZ_CHOICE, .choices = outcomes,
	 .rule = rule_connect_result},
};

const struct quiz_bank quiz_bank_own = {"own", questions, sizeof questions / sizeof questions[0]};
