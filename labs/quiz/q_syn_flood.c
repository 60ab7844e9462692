/* q_syn_flood.c: the syn-flood lab's questions, graded from the legitimate client's connect() results. */
#include <stdio.h>
#include <string.h>

#include "quiz/quiz.h"

/* Does a connect() made while the flood was on succeed? */
static int rule_during_flood(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *ok = NULL;
	size_t i;
	long long during = 0, failed = 0;
	const char *err = "";

	if (!quiz_ended_ok(events, t))
		return 0;
	json_array_foreach(events, i, e) {
		if (strcmp(quiz_ev_type(e), "connect") ||
		    !json_is_true(json_object_get(e, "during_attack")))
			continue;
		during++;
		quiz_evidence(t, e);
		if (json_is_true(json_object_get(e, "ok"))) {
			if (!ok)
				ok = e;
		} else {
			failed++;
			if (!*err)
				err = quiz_str(e, "errno");
		}
	}
	if (!during) {
		t->why = "none_during";
		return 0;
	}
	t->decided = 1;
	t->choice = ok ? "yes" : "no";
	t->why = t->choice;
	json_object_set_new(t->params, "during", json_integer(during));
	json_object_set_new(t->params, "failed", json_integer(failed));
	json_object_set_new(t->params, "errno", json_string(*err ? err : "-"));
	json_object_set_new(t->params, "ms", json_real(ok ? (double)quiz_int(ok, "took_us", 0) / 1000.0
						     : 0.0));
	json_object_set_new(t->params, "syncookies",
			    json_integer(quiz_int(quiz_run_params(events), "syncookies", -1)));
	{
		/* What the kernel said about its queues (the run's summary of
		 * TcpExt counters and sock_diag samples). */
		const json_t *sum = json_object_get(quiz_run_end(events), "summary");
		const json_t *k = json_object_get(sum, "counters");
		json_object_set_new(t->params, "drops",
				    json_integer(quiz_int(k, "TCPReqQFullDrop", 0)));
		json_object_set_new(t->params, "cookies",
				    json_integer(quiz_int(k, "SyncookiesSent", 0)));
		json_object_set_new(t->params, "half_open",
				    json_integer(quiz_int(json_object_get(sum, "queues"),
							  "half_open_peak", 0)));
		quiz_evidence(t, quiz_run_end(events));
	}
	return 0;
}

/* How many of the client's connect() calls succeed in all. */
static int rule_connects_ok(const json_t *events, struct quiz_truth *t)
{
	const json_t *e;
	size_t i;
	long long n = 0, ok = 0;

	if (!quiz_ended_ok(events, t))
		return 0;
	json_array_foreach(events, i, e) {
		if (strcmp(quiz_ev_type(e), "connect"))
			continue;
		n++;
		quiz_evidence(t, e);
		ok += json_is_true(json_object_get(e, "ok"));
	}
	t->decided = 1;
	t->num = ok;
	t->why = "count";
	json_object_set_new(t->params, "ok", json_integer(ok));
	json_object_set_new(t->params, "n", json_integer(n));
	return 0;
}

static const char *const yes_no[] = {"yes", "no", NULL};
static const char *const flooding[] = {"spoofed", "real", NULL};

static const struct quiz_question questions[] = {
	{.id = "during_flood", .kind = QUIZ_CHOICE, .choices = yes_no, .when_param = "attack",
	 .when_in = flooding, .rule = rule_during_flood},
	{.id = "connects_ok", .kind = QUIZ_NUMBER, .min = 0, .max = 1000, .unit = "calls",
	 .rule = rule_connects_ok},
};

const struct quiz_bank quiz_bank_syn_flood = {"syn-flood", questions,
					      sizeof questions / sizeof questions[0]};
