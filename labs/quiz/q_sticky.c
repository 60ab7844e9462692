/* q_sticky.c: the sticky lab's questions, graded from its send, segment and recv lanes. */
#include <stdio.h>
#include <string.h>

#include "quiz/quiz.h"

/* The lanes are only evidence when the capture saw every byte (the lab's
 * own sticky.verdict.incomplete says when it did not). */
static int lanes_complete(const json_t *events, struct quiz_truth *t)
{
	const json_t *end = quiz_run_end(events);
	const json_t *cap = json_object_get(json_object_get(end, "summary"), "capture");

	if (!quiz_ended_ok(events, t))
		return 0;
	if (quiz_find_note(events, "sticky.verdict.incomplete") ||
	    (cap && !json_is_true(json_object_get(cap, "complete")))) {
		t->why = "*capture_incomplete";
		json_object_set_new(t->params, "drops", json_integer(quiz_int(cap, "drops", 0)));
		return 0;
	}
	return 1;
}

static int is_data_seg(const json_t *e)
{
	return !strcmp(quiz_ev_type(e), "segment") && !strcmp(quiz_str(e, "dir"), "c2s") &&
	       quiz_int(e, "bytes", 0) > 0 && !json_is_true(json_object_get(e, "retransmit"));
}

static int is_data_recv(const json_t *e)
{
	return !strcmp(quiz_ev_type(e), "recv") && quiz_int(e, "bytes", 0) > 0;
}

static long long count_sends(const json_t *events)
{
	const json_t *e;
	size_t i;
	long long n = 0;

	json_array_foreach(events, i, e)
		if (!strcmp(quiz_ev_type(e), "send"))
			n++;
	return n;
}

/* How many data segments carry the messages (retransmissions aside). */
static int rule_segments(const json_t *events, struct quiz_truth *t)
{
	const json_t *e;
	size_t i;
	long long n = 0, bytes = 0;

	if (!lanes_complete(events, t))
		return 0;
	json_array_foreach(events, i, e) {
		if (!is_data_seg(e))
			continue;
		n++;
		bytes += quiz_int(e, "bytes", 0);
		quiz_evidence(t, e);
	}
	t->decided = 1;
	t->num = n;
	t->why = "count";
	json_object_set_new(t->params, "n", json_integer(n));
	json_object_set_new(t->params, "sends", json_integer(count_sends(events)));
	json_object_set_new(t->params, "bytes", json_integer(bytes));
	return 0;
}

/* How many recv() calls return data. */
static int rule_recvs(const json_t *events, struct quiz_truth *t)
{
	const json_t *e;
	size_t i;
	long long n = 0, bytes = 0;

	if (!lanes_complete(events, t))
		return 0;
	json_array_foreach(events, i, e) {
		if (!is_data_recv(e))
			continue;
		n++;
		bytes += quiz_int(e, "bytes", 0);
		quiz_evidence(t, e);
	}
	t->decided = 1;
	t->num = n;
	t->why = "count";
	json_object_set_new(t->params, "n", json_integer(n));
	json_object_set_new(t->params, "sends", json_integer(count_sends(events)));
	json_object_set_new(t->params, "bytes", json_integer(bytes));
	return 0;
}

/* Where the message boundaries are lost: on the wire (a segment carries
 * bytes of several send() calls), at the receiver (one recv() returns
 * several messages that came in separate segments), by a split (a recv()
 * returns part of a message) or nowhere. */
static int rule_boundaries(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *wire = NULL, *glued = NULL, *split = NULL;
	size_t i, j;

	if (!lanes_complete(events, t))
		return 0;
	json_array_foreach(events, i, e) {
		const json_t *m;
		if (is_data_seg(e) && !wire) {
			const json_t *s = json_object_get(e, "sends");
			if (json_array_size(s) == 2 &&
			    json_integer_value(json_array_get(s, 0)) !=
				    json_integer_value(json_array_get(s, 1)))
				wire = e;
		}
		if (!is_data_recv(e))
			continue;
		if (!glued && json_array_size(json_object_get(e, "msgs")) > 1)
			glued = e;
		json_array_foreach(json_object_get(e, "msgs"), j, m)
			if (!split && json_is_false(json_object_get(m, "whole")))
				split = e;
	}
	t->decided = 1;
	t->choice = wire ? "wire" : glued ? "receiver" : split ? "split" : "none";
	t->why = t->choice;
	e = wire ? wire : glued ? glued : split;
	quiz_evidence(t, e);
	if (e) {
		const json_t *s = json_object_get(e, "sends");
		json_object_set_new(t->params, "i", json_integer(quiz_int(e, "i", 0)));
		json_object_set_new(t->params, "bytes", json_integer(quiz_int(e, "bytes", 0)));
		json_object_set_new(t->params, "msgs",
				    json_integer((json_int_t)json_array_size(json_object_get(e, "msgs"))));
		json_object_set_new(t->params, "send_from",
				    json_integer(json_integer_value(json_array_get(s, 0))));
		json_object_set_new(t->params, "send_to",
				    json_integer(json_integer_value(json_array_get(s, 1))));
	}
	return 0;
}

static const char *const tcp_modes[] = {"stream", "framed", NULL};
static const char *const stream_mode[] = {"stream", NULL};
static const char *const where[] = {"wire", "receiver", "split", "none", NULL};

static const struct quiz_question questions[] = {
	{.id = "segments", .kind = QUIZ_NUMBER, .min = 0, .max = 100000, .unit = "segments",
	 .when_param = "mode", .when_in = tcp_modes, .rule = rule_segments},
	{.id = "recvs", .kind = QUIZ_NUMBER, .min = 0, .max = 100000, .unit = "calls",
	 .when_param = "mode", .when_in = tcp_modes, .rule = rule_recvs},
	{.id = "boundaries", .kind = QUIZ_CHOICE, .choices = where, .when_param = "mode",
	 .when_in = stream_mode, .rule = rule_boundaries},
};

const struct quiz_bank quiz_bank_sticky = {"sticky", questions,
					   sizeof questions / sizeof questions[0]};
