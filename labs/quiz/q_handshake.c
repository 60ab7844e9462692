/* q_handshake.c: the handshake lab's questions, graded from the captured segments and the kernel's own state reports. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "quiz/quiz.h"

/* Segments are only evidence when the capture saw every frame. */
static int capture_complete(const json_t *events, struct quiz_truth *t)
{
	const json_t *end = quiz_run_end(events);
	const json_t *cap = json_object_get(json_object_get(end, "summary"), "capture");

	if (!quiz_ended_ok(events, t))
		return 0;
	if (cap && !json_is_true(json_object_get(cap, "complete"))) {
		t->why = "*capture_incomplete";
		json_object_set_new(t->params, "drops", json_integer(quiz_int(cap, "drops", 0)));
		return 0;
	}
	return 1;
}

static int is_seg(const json_t *e)
{
	return !strcmp(quiz_ev_type(e), "segment");
}

static int has_flag(const json_t *e, const char *flag)
{
	const json_t *f;
	size_t i;

	json_array_foreach(json_object_get(e, "flags"), i, f)
		if (json_is_string(f) && !strcmp(json_string_value(f), flag))
			return 1;
	return 0;
}

/* The sequence number just past a FIN: what acknowledges it. */
static uint32_t fin_end(const json_t *fin)
{
	return (uint32_t)quiz_int(fin, "seq_raw", 0) + (uint32_t)quiz_int(fin, "len", 0) + 1u;
}

static int acks(const json_t *e, uint32_t end)
{
	return has_flag(e, "ACK") && (int32_t)((uint32_t)quiz_int(e, "ack_raw", 0) - end) >= 0;
}

/* How many segments the close takes: every FIN, and every segment that
 * acknowledges a FIN and carries nothing else (no data, no FIN). The ACK of
 * a FIN that rides on the other side's FIN makes three instead of four. */
static int rule_close_segments(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *f, *fins[8];
	size_t i, j;
	int n_fins = 0;
	long long n = 0, piggy = -1;

	if (!capture_complete(events, t))
		return 0;
	json_array_foreach(events, i, e)
		if (is_seg(e) && has_flag(e, "FIN") && n_fins < 8)
			fins[n_fins++] = e;
	if (n_fins < 2) {
		t->why = "no_close";
		json_object_set_new(t->params, "fins", json_integer(n_fins));
		return 0;
	}
	json_array_foreach(events, i, e) {
		int counted = 0;
		if (!is_seg(e) || has_flag(e, "RST") || has_flag(e, "SYN"))
			continue;
		if (has_flag(e, "FIN")) {
			counted = 1;
		} else if (quiz_int(e, "len", 0) == 0) {
			/* A pure ACK: does it acknowledge exactly the other side's FIN? */
			for (j = 0; j < (size_t)n_fins; j++) {
				f = fins[j];
				if (strcmp(quiz_str(f, "from"), quiz_str(e, "from")) &&
				    quiz_ev_seq(f) < quiz_ev_seq(e) &&
				    (uint32_t)quiz_int(e, "ack_raw", 0) == fin_end(f))
					counted = 1;
			}
		}
		if (!counted)
			continue;
		n++;
		quiz_evidence(t, e);
	}
	/* Does the second FIN also acknowledge the first? */
	if (strcmp(quiz_str(fins[0], "from"), quiz_str(fins[1], "from")) &&
	    acks(fins[1], fin_end(fins[0])))
		piggy = quiz_int(fins[1], "n", 0);
	t->decided = 1;
	t->num = n;
	t->why = n == 3 && piggy > 0 ? "three" : n == 4 && piggy > 0 ? "four" : n == 4 ? "crossed"
												      : "other";
	json_object_set_new(t->params, "n", json_integer(n));
	json_object_set_new(t->params, "first_fin", json_integer(quiz_int(fins[0], "n", 0)));
	json_object_set_new(t->params, "first_from", json_string(quiz_str(fins[0], "from")));
	json_object_set_new(t->params, "second_fin", json_integer(quiz_int(fins[1], "n", 0)));
	json_object_set_new(t->params, "second_from", json_string(quiz_str(fins[1], "from")));
	/* The sides read in the reader's language (role.client, role.server). */
	json_object_set_new(t->params, "first_from_key",
			    json_string(strcmp(quiz_str(fins[0], "from"), "server") ? "role.client"
										: "role.server"));
	json_object_set_new(t->params, "second_from_key",
			    json_string(strcmp(quiz_str(fins[1], "from"), "server") ? "role.client"
										: "role.server"));
	json_object_set_new(t->params, "ack", json_integer(quiz_int(fins[1], "rel_ack", 0)));
	json_object_set_new(t->params, "first_seq", json_integer(quiz_int(fins[0], "rel_seq", 0)));
	return 0;
}

/* Which socket the kernel showed in TIME_WAIT (sock_diag's samples and its
 * timer: the tracepoint never reports TIME_WAIT). */
static int rule_time_wait_side(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *seen[2] = {NULL, NULL};
	const json_t *end = quiz_run_end(events);
	const json_t *samples = json_object_get(json_object_get(end, "summary"), "kernel_samples");
	int have_diag = 0;
	size_t i;

	if (!quiz_ended_ok(events, t))
		return 0;
	json_array_foreach(samples, i, e)
		if (json_is_string(e) && !strcmp(json_string_value(e), "sock_diag"))
			have_diag = 1;
	json_array_foreach(events, i, e) {
		int side;
		if (strcmp(quiz_ev_type(e), "observation") && strcmp(quiz_ev_type(e), "timer"))
			continue;
		if (strcmp(quiz_str(e, "state"), "TIME_WAIT"))
			continue;
		side = !strcmp(quiz_str(e, "who"), "server");
		if (!seen[side] && (side || !strcmp(quiz_str(e, "who"), "client")))
			seen[side] = e;
	}
	if (!seen[0] && !seen[1] && !have_diag) {
		t->why = "no_samples";
		return 0;
	}
	quiz_tw_sides(t, seen);
	json_object_set_new(t->params, "timer_s",
			    json_real((double)quiz_int(seen[0] ? seen[0] : seen[1], "timer_ms",
						       quiz_int(seen[0] ? seen[0] : seen[1],
								"ms_left", 0)) /
				      1000.0));
	return 0;
}

/* Which segment first acknowledges the client's FIN. */
static int rule_fin_acked_by(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *fin = NULL, *ack = NULL;
	size_t i;

	if (!capture_complete(events, t))
		return 0;
	json_array_foreach(events, i, e) {
		if (!is_seg(e))
			continue;
		if (!fin && !strcmp(quiz_str(e, "from"), "client") && has_flag(e, "FIN"))
			fin = e;
		else if (fin && !strcmp(quiz_str(e, "from"), "server") && acks(e, fin_end(fin))) {
			ack = e;
			break;
		}
	}
	if (!fin || !ack) {
		t->why = fin ? "not_acked" : "no_fin";
		return 0;
	}
	t->decided = 1;
	t->picks[t->n_picks++] = quiz_int(ack, "n", 0);
	t->why = has_flag(ack, "FIN") ? "with_fin" : quiz_int(ack, "len", 0) ? "with_data" : "pure";
	quiz_evidence(t, fin);
	quiz_evidence(t, ack);
	json_object_set_new(t->params, "fin", json_integer(quiz_int(fin, "n", 0)));
	json_object_set_new(t->params, "fin_seq", json_integer(quiz_int(fin, "rel_seq", 0)));
	json_object_set_new(t->params, "fin_len", json_integer(quiz_int(fin, "len", 0)));
	json_object_set_new(t->params, "seg", json_integer(quiz_int(ack, "n", 0)));
	json_object_set_new(t->params, "ack", json_integer(quiz_int(ack, "rel_ack", 0)));
	return 0;
}

static const char *const closing[] = {"client-closes", "server-closes", "simultaneous",
				      "half-close",    "data-close",    NULL};
static const char *const client_fin[] = {"client-closes", "half-close", "data-close", NULL};
static const char *const tw_sides[] = {"client", "server", "both", "neither", NULL};

static const struct quiz_question questions[] = {
	{.id = "close_segments", .kind = QUIZ_NUMBER, .min = 1, .max = 20, .unit = "segments",
	 .when_param = "scenario", .when_in = closing, .rule = rule_close_segments},
	{.id = "time_wait_side", .kind = QUIZ_CHOICE, .choices = tw_sides,
	 .rule = rule_time_wait_side},
	{.id = "fin_acked_by", .kind = QUIZ_PICK, .min = 1, .max = 100000, .pick = "segment",
	 .when_param = "scenario", .when_in = client_fin, .rule = rule_fin_acked_by},
};

const struct quiz_bank quiz_bank_handshake = {"handshake", questions,
					      sizeof questions / sizeof questions[0]};
