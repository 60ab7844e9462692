/* q_udp_ping.c: udp-ping's questions, graded from the run's probe events (and the wire's report of each probe). */
#include <stdio.h>
#include <string.h>

#include "quiz/quiz.h"

static int is_probe(const json_t *e, const char *status)
{
	return !strcmp(quiz_ev_type(e), "probe") && !strcmp(quiz_str(e, "status"), status);
}

/* How many probes get no reply at all (ping's "lost"; a late reply is not
 * lost). */
static int rule_lost(const json_t *events, struct quiz_truth *t)
{
	const json_t *e;
	size_t i;
	long long n = 0, sent = 0, by_c2s = 0, by_s2c = 0;
	char list[256] = "";
	size_t off = 0;

	if (!quiz_ended_ok(events, t))
		return 0;
	json_array_foreach(events, i, e) {
		if (!strcmp(quiz_ev_type(e), "syscall") && !strcmp(quiz_str(e, "call"), "sendto") &&
		    !strcmp(quiz_str(e, "who"), "client"))
			sent++;
		if (!is_probe(e, "lost"))
			continue;
		n++;
		quiz_evidence(t, e);
		if (off < sizeof list - 16) {
			int w = snprintf(list + off, sizeof list - off, "%s%lld", off ? ", " : "",
					 quiz_int(e, "probe", 0));
			if (w > 0)
				off += (size_t)w;
		}
		/* Where the wire's own report puts the loss (lost_by), as counts:
		 * the explanation is a message in the reader's language, never
		 * the lab's English cause. */
		if (!strcmp(quiz_str(e, "lost_by"), "c2s"))
			by_c2s++;
		else if (!strcmp(quiz_str(e, "lost_by"), "s2c"))
			by_s2c++;
	}
	t->decided = 1;
	t->num = n;
	t->why = !n			      ? "none"
		 : by_c2s + by_s2c == n	      ? "wire"
		 : by_c2s + by_s2c == 0	      ? "timeout"
					      : "some";
	json_object_set_new(t->params, "n", json_integer(n));
	json_object_set_new(t->params, "sent", json_integer(sent));
	json_object_set_new(t->params, "probes", json_string(list));
	json_object_set_new(t->params, "to_server", json_integer(by_c2s));
	json_object_set_new(t->params, "to_client", json_integer(by_s2c));
	json_object_set_new(t->params, "other", json_integer(n - by_c2s - by_s2c));
	return 0;
}

/* Is probe 1's round trip the longest of the run (the ARP exchange before
 * it, on two hosts)? */
static int rule_first_slowest(const json_t *events, struct quiz_truth *t)
{
	const json_t *e, *first = NULL, *max = NULL;
	size_t i;

	if (!quiz_ended_ok(events, t))
		return 0;
	json_array_foreach(events, i, e) {
		if (!is_probe(e, "reply"))
			continue;
		if (quiz_int(e, "probe", 0) == 1)
			first = e;
		else if (!max || quiz_int(e, "rtt_us", 0) > quiz_int(max, "rtt_us", 0))
			max = e;
	}
	if (!first || !max) {
		t->why = "no_reply";
		return 0;
	}
	t->decided = 1;
	t->choice = quiz_int(first, "rtt_us", 0) > quiz_int(max, "rtt_us", 0) ? "yes" : "no";
	t->why = t->choice;
	quiz_evidence(t, first);
	quiz_evidence(t, max);
	json_object_set_new(t->params, "first_ms",
			    json_real((double)quiz_int(first, "rtt_us", 0) / 1000.0));
	json_object_set_new(t->params, "other", json_integer(quiz_int(max, "probe", 0)));
	json_object_set_new(t->params, "other_ms",
			    json_real((double)quiz_int(max, "rtt_us", 0) / 1000.0));
	return 0;
}

static const char *const yes_no[] = {"yes", "no", NULL};
static const char *const both_mode[] = {"both", NULL};
static const char *const two_hosts[] = {"two-hosts", NULL};

static const struct quiz_question questions[] = {
	{.id = "lost", .kind = QUIZ_NUMBER, .min = 0, .max = 10000, .unit = "probes",
	 .when_param = "mode", .when_in = both_mode, .rule = rule_lost},
	{.id = "first_slowest", .kind = QUIZ_CHOICE, .choices = yes_no, .when_param = "network",
	 .when_in = two_hosts, .rule = rule_first_slowest},
};

const struct quiz_bank quiz_bank_udp_ping = {"udp-ping", questions,
					     sizeof questions / sizeof questions[0]};
