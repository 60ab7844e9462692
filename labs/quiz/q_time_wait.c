/* q_time_wait.c: the time-wait lab's question, graded from sock_diag's lists of each host's TIME_WAIT sockets. */
#include <stdio.h>
#include <string.h>

#include "quiz/quiz.h"

/* Which host's sockets sock_diag listed in TIME_WAIT: its per-host lists
 * (tw_list) and the per-socket samples (observation, timer). */
static int rule_tw_side(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *seen[2] = {NULL, NULL};
	int lists = 0;
	size_t i;

	if (!quiz_ended_ok(events, t))
		return 0;
	json_array_foreach(events, i, e) {
		const char *side = NULL;
		if (!strcmp(quiz_ev_type(e), "tw_list")) {
			lists++;
			if (quiz_int(e, "count", 0) > 0)
				side = quiz_str(e, "host");
		} else if ((!strcmp(quiz_ev_type(e), "observation") ||
			    !strcmp(quiz_ev_type(e), "timer")) &&
			   !strcmp(quiz_str(e, "state"), "TIME_WAIT")) {
			side = quiz_str(e, "who");
		}
		if (side && !strcmp(side, "client") && !seen[0])
			seen[0] = e;
		if (side && !strcmp(side, "server") && !seen[1])
			seen[1] = e;
	}
	if (!lists && !seen[0] && !seen[1]) {
		t->why = "no_samples";
		return 0;
	}
	quiz_tw_sides(t, seen);
	json_object_set_new(t->params, "lists", json_integer(lists));
	return 0;
}

static const char *const sides[] = {"client", "server", "both", "neither", NULL};
static const char *const who_closes[] = {"who-closes", NULL};

static const struct quiz_question questions[] = {
	{.id = "tw_side", .kind = QUIZ_CHOICE, .choices = sides, .when_param = "scenario",
	 .when_in = who_closes, .rule = rule_tw_side},
};

const struct quiz_bank quiz_bank_time_wait = {"time-wait", questions,
					      sizeof questions / sizeof questions[0]};
